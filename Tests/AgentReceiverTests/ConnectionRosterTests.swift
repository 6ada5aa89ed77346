import ConnectionLimiter
import Testing

/// The accept rules of the gRPC endpoint (and the refusing cap of the HTTP and admin ones), on
/// plain values: connections are names, peers are addresses.
@Suite(.timeLimit(.minutes(1))) struct ConnectionRosterTests {
  typealias Roster = ConnectionRoster<Int, String>

  static func admitted(_ decision: Roster.Decision) -> Bool {
    if case .refuse = decision { return false }
    return true
  }

  static func shed(_ decision: Roster.Decision) -> String? {
    if case .admitAfterShedding(let connection) = decision { return connection }
    return nil
  }

  /// The HTTP and admin endpoints: a flood beyond the cap is refused, the connections in stay.
  @Test func withoutSheddingTheCapRefusesNewcomers() {
    var roster = Roster(limits: .init(maxConnections: 2))
    #expect(Self.admitted(roster.admit(1, "agent-1", peer: "10.0.0.1")))
    #expect(Self.admitted(roster.admit(2, "agent-2", peer: "10.0.0.2")))
    guard case .refuse(.full) = roster.admit(3, "flood", peer: "10.0.0.3") else {
      Issue.record("a third connection got in under a cap of 2")
      return
    }
    roster.remove(1)
    #expect(Self.admitted(roster.admit(4, "agent-1 again", peer: "10.0.0.1")))
    #expect(roster.count == 2)
  }

  /// Token-less clients fill the cap with health watchers; an agent that has published keeps its
  /// place, and every newcomer (an agent reconnecting) closes the oldest watcher.
  @Test func atTheCapTheOldestConnectionWithoutAgentDataMakesRoom() {
    var roster = Roster(limits: .init(maxConnections: 3, shedsUnvouched: true))
    _ = roster.admit(1, "agent", peer: "10.0.0.1")
    roster.vouch(for: 1)
    _ = roster.admit(2, "watcher-a", peer: "10.6.6.6")
    _ = roster.admit(3, "watcher-b", peer: "10.6.6.6")
    #expect(Self.shed(roster.admit(4, "agent-2", peer: "10.0.0.2")) == "watcher-a")
    #expect(Self.shed(roster.admit(5, "agent-3", peer: "10.0.0.3")) == "watcher-b")
    #expect(roster.count == 3)
    // The shed connections' close arrives later: removing them again changes nothing.
    roster.remove(2)
    roster.remove(3)
    #expect(roster.count == 3)
    roster.vouch(for: 4)
    roster.vouch(for: 5)
    guard case .refuse(.full) = roster.admit(6, "watcher-c", peer: "10.6.6.6") else {
      Issue.record("an agent connection was shed, or the cap was passed")
      return
    }
  }

  /// A NAT or a load balancer puts many agents on one address; loopback proxies are the
  /// limiter's to leave out (nil peer), and do not count.
  @Test func oneAddressIsCappedOnItsOwn() {
    var roster = Roster(limits: .init(maxConnections: 10, maxConnectionsPerPeer: 2))
    _ = roster.admit(1, "a", peer: "10.6.6.6")
    _ = roster.admit(2, "b", peer: "10.6.6.6")
    guard case .refuse(.peerFull) = roster.admit(3, "c", peer: "10.6.6.6") else {
      Issue.record("a third connection from one address got in under a cap of 2")
      return
    }
    #expect(Self.admitted(roster.admit(4, "other host", peer: "10.0.0.1")))
    for id in 5...9 { #expect(Self.admitted(roster.admit(id, "sidecar", peer: nil))) }
    roster.remove(1)
    #expect(Self.admitted(roster.admit(10, "c again", peer: "10.6.6.6")))
  }

  /// An ID used again (a new channel object at a freed address) is as young as its admission,
  /// not as old as the connection that had the ID before.
  @Test func aReusedIDIsNotMistakenForItsPredecessor() {
    var roster = Roster(limits: .init(maxConnections: 2, shedsUnvouched: true))
    _ = roster.admit(1, "first", peer: nil)
    _ = roster.admit(2, "second", peer: nil)
    roster.remove(1)
    _ = roster.admit(1, "reused", peer: nil)
    #expect(Self.shed(roster.admit(3, "newcomer", peer: nil)) == "second")
  }

  /// Many agents coming and going leave no trail: after 10,000 short-lived vouched connections
  /// the oldest watcher is still the one shed, and the order kept stays small.
  @Test func vouchedAndClosedConnectionsDoNotAccumulate() {
    var roster = Roster(limits: .init(maxConnections: 3, shedsUnvouched: true))
    _ = roster.admit(0, "watcher", peer: nil)
    for id in 1...10_000 {
      _ = roster.admit(id, "agent", peer: nil)
      roster.vouch(for: id)
      roster.remove(id)
    }
    _ = roster.admit(10_001, "late watcher", peer: nil)
    _ = roster.admit(10_002, "agent", peer: nil)
    #expect(Self.shed(roster.admit(10_003, "newcomer", peer: nil)) == "watcher")
    #expect(roster.shedOrderCount <= 2 * roster.count + 64)
  }
}
