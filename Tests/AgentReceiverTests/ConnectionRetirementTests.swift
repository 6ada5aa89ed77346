import Testing

@testable import AgentReceiver

/// When a connection ends, as plain values: the rules behind the closer, without a socket.
@Suite(.timeLimit(.minutes(1))) struct ConnectionRetirementTests {
  /// A gateway's SW_RELAY_GRPC_MAX_CONNECTION_AGE_S against a Go agent, whose segment, log and
  /// profile streams live as long as the agent: the age sends GOAWAY and nothing more, however
  /// long the stream stays open, as long as the peer answers.
  @Test func anAgedConnectionIsNeverCutWhileItsStreamsLive() {
    var retirement = ConnectionRetirement(probesPeer: true)
    retirement.streamOpened()
    #expect(retirement.maxAgeReached() == .sendGoAwayAndScheduleDrainCheck)
    #expect(retirement.goAwayWritten() == .none, "the age's GOAWAY arms no forced close")
    #expect(retirement.goAwayWritten() == .none, "nor does the manager's second GOAWAY")
    for _ in 0..<100 {
      #expect(retirement.drainCheckDue() == .probeAndScheduleDrainCheck)
      retirement.frameRead()
    }
    #expect(retirement.maxAgeReached() == .none)
    retirement.streamClosed()
    #expect(retirement.drainCheckDue() == .close, "closed once the last stream is gone")
  }

  /// An agent host that vanished (power cut, network partition) while its aged connection
  /// drains: the probe goes unanswered for a whole interval and the connection is closed.
  @Test func aRetiringConnectionWhosePeerVanishedIsClosed() {
    var retirement = ConnectionRetirement(probesPeer: true)
    retirement.streamOpened()
    _ = retirement.maxAgeReached()
    #expect(retirement.drainCheckDue() == .probeAndScheduleDrainCheck)
    #expect(retirement.drainCheckDue() == .close)
  }

  /// With keepalive pings turned off (SW_RELAY_GRPC_KEEPALIVE_S=0) the relay never pings, as
  /// the operator asked; the stream's own end closes the connection.
  @Test func withoutKeepaliveARetiringConnectionIsOnlyChecked() {
    var retirement = ConnectionRetirement(probesPeer: false)
    retirement.streamOpened()
    _ = retirement.maxAgeReached()
    #expect(retirement.drainCheckDue() == .scheduleDrainCheck)
    #expect(retirement.drainCheckDue() == .scheduleDrainCheck)
  }

  /// SIGTERM while a connection drains after its age: the shutdown's deadline applies after all.
  @Test func shutdownForcesTheCloseOfAnAgedConnection() {
    var retirement = ConnectionRetirement(probesPeer: true)
    retirement.streamOpened()
    _ = retirement.maxAgeReached()
    _ = retirement.goAwayWritten()
    #expect(retirement.shutdownRequested() == .scheduleForcedClose)
    #expect(retirement.shutdownRequested() == .none, "armed once")
    #expect(retirement.drainCheckDue() == .none)
  }

  /// The manager's own GOAWAY (idle connection, keepalive unanswered) keeps its deadline: a
  /// peer that never acknowledges it is still closed.
  @Test func theManagersOwnGoAwayArmsTheForcedClose() {
    var retirement = ConnectionRetirement(probesPeer: true)
    #expect(retirement.goAwayWritten() == .scheduleForcedClose)
    #expect(retirement.goAwayWritten() == .none)
    #expect(retirement.maxAgeReached() == .none, "already ending")
  }
}
