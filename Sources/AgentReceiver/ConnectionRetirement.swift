/// When a connection ends, as a value: the rules behind `ConnectionCloser`, tested without a
/// socket or a clock.
///
/// A connection is closed by force only when it will not end by itself: after the GOAWAY of a
/// shutdown, an idle connection or a failed keepalive, once the deadline passes. A connection
/// that reached its maximum age is different: its GOAWAY only stops new streams (agents open the
/// next ones elsewhere), and it stays until its last stream ends, because the Go agent's
/// life-long segment, log and profile streams lose the element in flight when they are cut.
/// While it drains, the relay pings it, so a peer that vanished is still found.
struct ConnectionRetirement {
  enum Phase: Equatable {
    case serving
    /// Aged out: GOAWAY sent, streams left to finish on their own.
    case retiring
    /// Ending for a reason that allows a forced close once the deadline passes.
    case closing
  }

  enum Action: Equatable {
    case none
    /// Ask the connection manager for its graceful GOAWAY, and check on the drain later.
    case sendGoAwayAndScheduleDrainCheck
    case scheduleForcedClose
    case close
    /// Ping the peer and check again after the interval.
    case probeAndScheduleDrainCheck
    case scheduleDrainCheck
  }

  private(set) var phase = Phase.serving
  private(set) var openStreams = 0
  private var forcedCloseScheduled = false
  private var readSinceProbe = true
  /// Whether a retiring connection is pinged to find a vanished peer.
  let probesPeer: Bool

  init(probesPeer: Bool) {
    self.probesPeer = probesPeer
  }

  mutating func streamOpened() {
    openStreams += 1
  }

  mutating func streamClosed() {
    openStreams -= 1
  }

  mutating func frameRead() {
    readSinceProbe = true
  }

  mutating func maxAgeReached() -> Action {
    guard phase == .serving else { return .none }
    phase = .retiring
    return .sendGoAwayAndScheduleDrainCheck
  }

  /// The relay is shutting down: every connection closes within the deadline, aged or not.
  mutating func shutdownRequested() -> Action {
    phase = .closing
    return scheduleForcedCloseOnce()
  }

  /// The connection manager wrote a GOAWAY. Its own (idle, keepalive unanswered) ends the
  /// connection within the deadline; the one the age asked for does not.
  mutating func goAwayWritten() -> Action {
    switch phase {
    case .serving:
      phase = .closing
      return scheduleForcedCloseOnce()
    case .retiring:
      return .none
    case .closing:
      return scheduleForcedCloseOnce()
    }
  }

  /// Periodically while retiring: closes once no stream is left (the manager does too, unless
  /// the peer never acknowledged its GOAWAY ping), or once a probed peer stayed silent for a
  /// whole interval.
  mutating func drainCheckDue() -> Action {
    guard phase == .retiring else { return .none }
    if openStreams == 0 || !readSinceProbe { return .close }
    guard probesPeer else { return .scheduleDrainCheck }
    readSinceProbe = false
    return .probeAndScheduleDrainCheck
  }

  private mutating func scheduleForcedCloseOnce() -> Action {
    guard !forcedCloseScheduled else { return .none }
    forcedCloseScheduled = true
    return .scheduleForcedClose
  }
}
