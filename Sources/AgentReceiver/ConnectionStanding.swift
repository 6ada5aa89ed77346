/// What a connection has been used for, as a value: the rules that keep clients without the
/// token from holding connections agents need, behind ``ConnectionCloser``, tested without a
/// socket.
///
/// `grpc.health.v1.Health` needs no token (probes cannot send one), so on its own it must not
/// let a client hold a connection for ever:
/// - at most ``maxHealthStreams`` health streams are open on a connection at once: a prober
///   needs one (a Kubernetes probe's `Check`, grpc-go's client-side health `Watch`), and each
///   open `Watch` keeps the connection from ever going idle;
/// - when the relay has a token, a connection that made no agent call within the grace period
///   is closed: a publishing call whose token matched, or any call the relay forwards to the
///   OAP (the OAP checks those; the Go agent's first call may be `fetchConfigurations`, without
///   the token, and Envoy's access-log and metrics streams are forwarded, never published);
/// - a connection that carried a publishing call is vouched for to the connection limiter,
///   which never sheds it to make room: with a token set only agents can publish, while a
///   forwarded call costs a hostile client nothing.
struct ConnectionStanding {
  /// A call's kind, as far as the connection's standing is concerned.
  enum Call: Equatable {
    case health
    /// A publishing call that passed the token check (or the relay has no token).
    case publishing
    case forwarded
  }

  enum Action: Equatable {
    case none
    /// Answer the call RESOURCE_EXHAUSTED: the connection holds its health streams already.
    case refuseHealthStream
    /// Tell the connection limiter that this connection carries agent data.
    case vouch
    case close
  }

  /// A prober needs one at a time; two leave room for a Check beside a Watch.
  static let maxHealthStreams = 2

  private(set) var openHealthStreams = 0
  private(set) var madeAgentCall = false
  private(set) var carriedPublishingCall = false

  mutating func callStarted(_ call: Call) -> Action {
    switch call {
    case .health:
      guard openHealthStreams < Self.maxHealthStreams else { return .refuseHealthStream }
      openHealthStreams += 1
      return .none
    case .forwarded:
      madeAgentCall = true
      return .none
    case .publishing:
      madeAgentCall = true
      guard !carriedPublishingCall else { return .none }
      carriedPublishingCall = true
      return .vouch
    }
  }

  mutating func healthStreamEnded() {
    openHealthStreams -= 1
  }

  /// The grace period a connection has for its first agent call (when the relay has a token)
  /// is over.
  func graceEnded() -> Action {
    madeAgentCall ? .none : .close
  }
}
