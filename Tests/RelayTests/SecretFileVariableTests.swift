import AgentReceiver
import Foundation
import HTTPReceiver
import OAPForwarder
import RelayTestSupport
import Testing

@testable import RelayApp

/// Tokens from mounted Secrets (`*_FILE`), as an operator sets them in a Kubernetes manifest.
@Suite(.timeLimit(.minutes(1))) struct SecretFileVariableTests {
  static let minimal = ["SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "embedded"]

  /// `kubectl create secret --from-file` keeps the editor's final newline; the token has none.
  @Test func eachTokenIsReadFromItsFileWithoutTheTrailingLineBreak() throws {
    let directory = try TemporaryDirectory(prefix: "relay-secret")
    defer { directory.remove() }
    let path = try directory.write("s3cret\n", to: "token")
    let configuration = try RelayConfiguration(
      environment: Self.minimal.merging(
        [
          "SW_RELAY_AUTH_TOKEN_FILE": path, "SW_RELAY_HTTP_AUTH_TOKEN_FILE": path,
          "SW_RELAY_ADMIN_TOKEN_FILE": path, "SW_RELAY_OAP_AUTHENTICATION_FILE": path,
          "SW_RELAY_OAP_ADDRESS": "oap:11800",
        ]
      ) { $1 })
    #expect(configuration.receiver.authenticationToken == "s3cret")
    #expect(configuration.http?.authenticationToken == "s3cret")
    #expect(configuration.adminToken == "s3cret")
    #expect(configuration.oap?.authentication == "s3cret")
    #expect(
      configuration.tokenFiles == TokenFiles(grpc: path, http: path, admin: path, oap: path))
    #expect(!configuration.redactedSummary.contains("s3cret"))
  }

  /// Which of two settings wins is a guess the relay does not make; the error names both and
  /// shows neither value.
  @Test func theTokenAndItsFileTogetherAreRefusedNamingBoth() throws {
    let directory = try TemporaryDirectory(prefix: "relay-secret")
    defer { directory.remove() }
    let path = try directory.write("from-file", to: "token")
    #expect {
      try RelayConfiguration(
        environment: Self.minimal.merging(
          ["SW_RELAY_AUTH_TOKEN": "inline", "SW_RELAY_AUTH_TOKEN_FILE": path]
        ) { $1 })
    } throws: { error in
      let text = "\(error)"
      return text.contains("SW_RELAY_AUTH_TOKEN and SW_RELAY_AUTH_TOKEN_FILE")
        && !text.contains("inline") && !text.contains("from-file")
    }
  }

  /// A Secret not mounted (a typo in the path) or mounted empty stops the start, naming the
  /// variable and the file, never running without the token the operator meant to set.
  @Test(arguments: ["missing", "empty"])
  func anUnusableFileIsRefusedNamingTheVariable(kind: String) throws {
    let directory = try TemporaryDirectory(prefix: "relay-secret")
    defer { directory.remove() }
    let path =
      kind == "missing" ? "/nonexistent/relay-token" : try directory.write("\n", to: "token")
    #expect {
      try RelayConfiguration(
        environment: Self.minimal.merging(["SW_RELAY_ADMIN_TOKEN_FILE": path]) { $1 })
    } throws: { error in
      let error = error as? ConfigurationError
      return error?.variable == "SW_RELAY_ADMIN_TOKEN_FILE" && error?.code == .unusableFile
        && "\(error!)".contains(path)
    }
  }
}
