import AgentIngest
import ConnectionLimiter
import DurableQueue
import Inflate
import NIOCore
import NIOHTTP1

/// Where a keep-alive connection's current request is, and what its handler does next: each
/// event returns the action to perform, so the handler holds no request state of its own.
///
/// One request at a time: its head is checked (path, method, token, encoding, declared size),
/// its body read under the size limit and the memory budget, then published or forwarded, and
/// answered once the sink or the OAP has answered.
struct HTTPRequestStateMachine {
  enum State {
    /// Between requests.
    case idle
    /// Reading the body of a request the relay will publish or forward.
    case reading(head: HTTPRequestHead, route: HTTPRoute, body: ByteBuffer)
    /// Refused at its head (unknown path, wrong method, token, no OAP): the body is read and
    /// dropped, and the answer written at its end, so the connection stays usable.
    case refusing(head: HTTPRequestHead, reply: HTTPReply)
    /// The body is complete and with the handler, to be converted or forwarded.
    case processing(head: HTTPRequestHead)
    /// Waiting for the sink to make the request's records durable.
    case publishing(head: HTTPRequestHead, call: PublishingCall)
    /// Waiting for the OAP's answer to a forwarded request.
    case forwarding(head: HTTPRequestHead)
    /// An answer that closes the connection was written before the body ended: the rest is
    /// read and dropped (bounded by the request timeout), so the client reads the answer
    /// instead of a reset, and the connection closes at the body's end.
    case discarding
    /// An answer that closes the connection was written; whatever still arrives is dropped.
    case closing
  }

  enum Action {
    case none
    /// The body is complete: the handler converts it and calls `publishing(_:)`, forwards it
    /// and calls `forwarding()`, or refuses it with `bodyRefused(_:)`.
    case process(head: HTTPRequestHead, route: HTTPRoute, body: ByteBuffer)
    /// Write `reply` as the answer to `head`, then go on as `then` says.
    case answer(HTTPReply, head: HTTPRequestHead, then: AfterAnswer)
    /// The body after a closing answer has ended: close the connection.
    case close
  }

  enum AfterAnswer: Equatable {
    /// Keep the connection for the client's next request.
    case awaitNextRequest
    /// The body is still arriving: read and drop it, then close.
    case discardBody
    /// Close once the answer is written.
    case close
  }

  private(set) var state = State.idle
  private let configuration: HTTPReceiverConfiguration
  private let authenticationToken: AuthenticationToken?
  /// Whether requests without a Kafka topic can go to the OAP.
  private let forwards: Bool

  init(
    configuration: HTTPReceiverConfiguration, authenticationToken: AuthenticationToken?,
    forwards: Bool
  ) {
    self.configuration = configuration
    self.authenticationToken = authenticationToken
    self.forwards = forwards
  }

  /// Whether the connection should read nothing more for now: the request waits for its body
  /// to be processed, or for the sink or the OAP, and answers come in order anyway.
  var holdsReads: Bool {
    switch state {
    case .processing, .publishing, .forwarding: true
    default: false
    }
  }

  mutating func receivedHead(_ head: HTTPRequestHead) -> Action {
    guard case .idle = state else { return .none }
    guard let route = HTTPRoute(target: head.uri) else {
      return refuse(head, .notFound, "no such path on this relay: \(head.uri)")
    }
    guard head.method == .POST else {
      return refuse(head, .methodNotAllowed, "only POST is served on \(head.uri)")
    }
    if let authenticationToken,
      !authenticationToken.matches(head.headers.first(name: "authentication") ?? "")
    {
      return refuse(
        head, .unauthorized, "the authentication header does not match the relay's token")
    }
    if let encoding = head.headers.first(name: "Content-Encoding"), encoding != "identity",
      ContentCoding(name: encoding) == nil
    {
      return refuse(
        head, .unsupportedMediaType,
        "Content-Encoding \(encoding) is not supported; send gzip, deflate or identity")
    }
    if let length = head.headers.first(name: "Content-Length").flatMap({ Int($0) }),
      length > configuration.maxBodyBytes
    {
      return answer(.tooLarge(configuration), to: head, bodyPending: true)
    }
    if case .forward = route, !forwards {
      return refuse(
        head, .notImplemented,
        "\(head.uri) has no Kafka topic in the OAP; set \(configuration.settingName(.oapHTTP)) "
          + "to forward it to the OAP's REST port")
    }
    state = .reading(head: head, route: route, body: ByteBuffer())
    return .none
  }

  /// - Parameter reserve: asks the memory budget for a body of the given size (a large one
  ///   only), false when others hold it.
  mutating func receivedBody(_ part: ByteBuffer, reserve: (Int) -> Bool) -> Action {
    guard case .reading(let head, let route, var body) = state else { return .none }
    let size = body.readableBytes + part.readableBytes
    guard size <= configuration.maxBodyBytes else {
      return answer(.tooLarge(configuration), to: head, bodyPending: true)
    }
    guard size < ClientMemoryBudget.unbudgetedMessageBytes || reserve(size) else {
      return answer(.memorySpent(configuration), to: head, bodyPending: true)
    }
    state = .idle  // drops the state's reference, so the append does not copy the body
    var part = part
    body.writeBuffer(&part)
    state = .reading(head: head, route: route, body: body)
    return .none
  }

  mutating func receivedEnd() -> Action {
    switch state {
    case .reading(let head, let route, let body):
      state = .processing(head: head)
      return .process(head: head, route: route, body: body)
    case .refusing(let head, let reply):
      return answer(reply, to: head)
    case .discarding:
      state = .closing
      return .close
    default:
      return .none
    }
  }

  /// The body could not be used (it does not inflate, or inflates past the limit).
  mutating func bodyRefused(_ reply: HTTPReply) -> Action {
    guard case .processing(let head) = state else { return .none }
    return answer(reply, to: head)
  }

  /// The body was converted into `call`, whose batches went to the sink; answered at once when
  /// none is pending (everything refused, or an empty body).
  mutating func publishing(_ call: PublishingCall) -> Action {
    guard case .processing(let head) = state else { return .none }
    return settle(call, head: head)
  }

  mutating func forwarding() {
    guard case .processing(let head) = state else { return }
    state = .forwarding(head: head)
  }

  /// A sink's answer to one of the call's batches.
  mutating func appendFinished(
    _ result: Result<Void, QueueError>, records: Int, bytes: Int
  ) -> Action {
    guard case .publishing(let head, var call) = state else { return .none }
    state = .processing(head: head)  // drops the state's copy of the call
    call.appendFinished(result, records: records, bytes: bytes)
    return settle(call, head: head)
  }

  /// The OAP's answer to a forwarded request.
  mutating func forwarded(_ reply: HTTPReply) -> Action {
    guard case .forwarding(let head) = state else { return .none }
    return answer(reply, to: head)
  }

  private mutating func settle(_ call: PublishingCall, head: HTTPRequestHead) -> Action {
    guard call.pendingAppends == 0 else {
      state = .publishing(head: head, call: call)
      return .none
    }
    return answer(HTTPReply(call.outcome), to: head)
  }

  private mutating func refuse(
    _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ text: String
  ) -> Action {
    state = .refusing(head: head, reply: HTTPReply(status: status, text: text))
    return .none
  }

  /// - Parameter bodyPending: the request's body has not all arrived; a closing answer then
  ///   waits for it (`.discarding`) before closing.
  private mutating func answer(
    _ reply: HTTPReply, to head: HTTPRequestHead, bodyPending: Bool = false
  ) -> Action {
    let then: AfterAnswer
    if head.isKeepAlive && !reply.closesConnection {
      (state, then) = (.idle, .awaitNextRequest)
    } else if bodyPending {
      (state, then) = (.discarding, .discardBody)
    } else {
      (state, then) = (.closing, .close)
    }
    return .answer(reply, head: head, then: then)
  }
}
