import FileReload
import GRPCCore
import OAPForwarder
import Testing

/// What a rotation does to the OAP link: the relay's client certificate or the OAP's CA renewed
/// on disk, or the OAP's token rotated in its Secret.
@Suite("OAPForwarder reloads", .timeLimit(.minutes(1)))
struct OAPForwarderReloadTests {
  /// A new client replaces the old one: calls after the swap reach the OAP through it (its
  /// connection is run by the forwarder's own loop), as calls before did through the old one.
  @Test func callsAfterAReloadGoThroughTheNewClient() async throws {
    try await withStubOAP { oap, port in
      try await withForwarder(port: port) { forwarder in
        #expect(await forwarder.exchange(try AgentCalls.profileQuery()).code == .ok)
        guard case .reloaded = forwarder.reloadTLS(forced: true) else {
          Issue.record("a forced reload did not make a new client")
          return
        }
        let after = await forwarder.exchange(try AgentCalls.profileQuery(service: "after"))
        #expect(after.code == .ok && after.reachedOAP)
        #expect(oap.observed.paths.count == 2)
      }
    }
  }

  /// Without TLS there are no files, so a poll never makes a new client.
  @Test func aPlaintextLinkHasNothingToReload() async throws {
    try await withForwarder(port: try await closedPort()) { forwarder in
      guard case .unchanged = forwarder.reloadTLS(forced: false) else {
        Issue.record("a plaintext link reloaded")
        return
      }
    }
  }

  /// The OAP's token rotated in `SW_RELAY_OAP_AUTHENTICATION_FILE`: the next forwarded call
  /// carries the new one in place of the agent's header.
  @Test func aReplacedTokenIsSentFromTheNextCall() async throws {
    try await withStubOAP { oap, port in
      try await withForwarder(port: port) { forwarder in
        forwarder.replaceAuthentication(with: StubOAP.token)
        let call = try AgentCalls.profileQuery(metadata: [(name: "authentication", value: "agent")])
        #expect(await forwarder.exchange(call).code == .ok)
        forwarder.replaceAuthentication(with: "rotated")
        _ = await forwarder.exchange(call)
        #expect(oap.observed.authentications == [StubOAP.token, "rotated"])
      }
    }
  }
}
