import Testing

@testable import AdminServer

/// The admin port's cap as a value: which connection gives way when a new one arrives.
@Suite(.timeLimit(.minutes(1))) struct ConnectionAdmissionTests {
  func closedForRoom(_ action: ConnectionAdmission<String>.Action) -> String? {
    switch action {
    case .admit: nil
    case .admitAfterClosing(let connection): connection
    }
  }

  /// Scrapers and probes under the cap: nobody is closed.
  @Test func admitsUpToTheCapWithoutClosingAnything() {
    var admission = ConnectionAdmission<String>(maxConnections: 3)
    for name in ["a", "b", "c"] {
      #expect(closedForRoom(admission.admit(name).1) == nil)
    }
    #expect(admission.count == 3)
  }

  /// Attacker fills the cap, then a probe arrives: the probe is admitted and the connection
  /// inactive longest is closed, again and again, so the count never passes the cap.
  @Test func atTheCapTheLeastRecentlyActiveGivesWay() {
    var admission = ConnectionAdmission<String>(maxConnections: 3)
    let (a, _) = admission.admit("a")
    _ = admission.admit("b")
    _ = admission.admit("c")
    admission.completedRequest(a)
    #expect(closedForRoom(admission.admit("probe-1").1) == "b")
    #expect(closedForRoom(admission.admit("probe-2").1) == "c")
    #expect(closedForRoom(admission.admit("probe-3").1) == "a")
    #expect(admission.count == 3)
  }

  /// A connection closed to make room later reports its own close; it must not free a second
  /// place, or the cap would drift upwards under a flood.
  @Test func aConnectionClosedForRoomIsNotCountedTwice() {
    var admission = ConnectionAdmission<String>(maxConnections: 2)
    let (a, _) = admission.admit("a")
    let (b, _) = admission.admit("b")
    #expect(closedForRoom(admission.admit("c").1) == "a")
    admission.closed(a)
    admission.completedRequest(a)
    #expect(admission.count == 2)
    admission.closed(b)
    #expect(admission.count == 1)
    #expect(closedForRoom(admission.admit("d").1) == nil)
  }
}
