import AgentReceiver
import ConnectionLimiter
import DurableQueue
import Inflate
import NIOCore
import NIOHTTP1
import SkyWalkingWire

/// Serves one keep-alive HTTP/1.1 connection, one request at a time (NIO's pipelining handler
/// holds a pipelined request back until the previous answer is written).
///
/// A publishing request is answered once every record it produced is durable in the queue, or
/// the queue refused it: the same rule, and the same `PublishingCall`, as a gRPC call.
final class HTTPRequestHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  /// Where the connection's current request is.
  private enum State {
    /// Between requests.
    case idle
    /// Reading the body of a request the relay will publish or forward.
    case reading(head: HTTPRequestHead, route: HTTPRoute, body: ByteBuffer)
    /// Refused at its head (unknown path, wrong method, token, no OAP): the body is read and
    /// dropped, and the answer written at its end, so the connection stays usable.
    case refusing(head: HTTPRequestHead, reply: HTTPReply)
    /// Waiting for the queue to make the request's records durable.
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

  private let shared: HTTPReceiverShared
  private var state = State.idle
  private var context: ChannelHandlerContext?
  private var loopBoundSelf: NIOLoopBound<HTTPRequestHandler>?
  private var requestTimer: Scheduled<Void>?
  private let memory: ConnectionMemoryShare
  /// What the body being read holds of the memory budget.
  private var reservedBytes = 0

  init(shared: HTTPReceiverShared) {
    self.shared = shared
    self.memory = ConnectionMemoryShare(budget: shared.memoryBudget)
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    loopBoundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
    armRequestTimer(context: context)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    requestTimer?.cancel()
    _ = memory.resize(&reservedBytes, to: 0)
    self.context = nil
    loopBoundSelf = nil
  }

  /// A connection that does not complete its next request in time is closed, so idle or
  /// trickling clients cannot hold descriptors forever.
  private func armRequestTimer(context: ChannelHandlerContext) {
    requestTimer?.cancel()
    requestTimer = context.eventLoop.assumeIsolated().scheduleTask(
      in: TimeAmount(shared.configuration.requestTimeout)
    ) {
      context.close(promise: nil)
    }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      begin(head, context: context)
    case .body(var part):
      switch state {
      case .reading(let head, let route, var body):
        let size = body.readableBytes + part.readableBytes
        guard size <= shared.configuration.maxBodyBytes else {
          answer(shared.tooLarge(), to: head, bodyPending: true, context: context)
          return
        }
        guard
          size < ClientMemoryBudget.unbudgetedMessageBytes
            || memory.resize(&reservedBytes, to: size)
        else {
          answer(shared.memorySpent(), to: head, bodyPending: true, context: context)
          return
        }
        state = .idle  // drops the state's reference, so the append does not copy the body
        body.writeBuffer(&part)
        state = .reading(head: head, route: route, body: body)
      default:
        break
      }
    case .end:
      switch state {
      case .reading(let head, let route, let body):
        requestTimer?.cancel()
        finish(head, route: route, body: body, context: context)
        // The body was converted (or handed to the OAP link, which owns it now).
        _ = memory.resize(&reservedBytes, to: 0)
      case .refusing(let head, let reply):
        answer(reply, to: head, context: context)
      case .discarding:
        state = .closing
        context.close(promise: nil)
      default:
        break
      }
    }
  }

  private func begin(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
    guard case .idle = state else { return }
    let configuration = shared.configuration
    guard let route = HTTPRoute(target: head.uri) else {
      state = .refusing(
        head: head,
        reply: HTTPReply(status: .notFound, text: "no such path on this relay: \(head.uri)"))
      return
    }
    guard head.method == .POST else {
      state = .refusing(
        head: head,
        reply: HTTPReply(status: .methodNotAllowed, text: "only POST is served on \(head.uri)"))
      return
    }
    if let token = shared.authenticationToken,
      !token.matches(head.headers.first(name: "authentication") ?? "")
    {
      state = .refusing(
        head: head,
        reply: HTTPReply(
          status: .unauthorized, text: "the authentication header does not match the relay's token")
      )
      return
    }
    if let encoding = head.headers.first(name: "Content-Encoding"), encoding != "identity",
      ContentCoding(name: encoding) == nil
    {
      state = .refusing(
        head: head,
        reply: HTTPReply(
          status: .unsupportedMediaType,
          text: "Content-Encoding \(encoding) is not supported; send gzip, deflate or identity"))
      return
    }
    if let length = head.headers.first(name: "Content-Length").flatMap({ Int($0) }),
      length > configuration.maxBodyBytes
    {
      answer(shared.tooLarge(), to: head, bodyPending: true, context: context)
      return
    }
    if case .forward = route, shared.forwarder == nil {
      state = .refusing(
        head: head,
        reply: HTTPReply(
          status: .notImplemented,
          text:
            "\(head.uri) has no Kafka topic in the OAP; set \(configuration.settingNames.oapHTTP) "
            + "to forward it to the OAP's REST port"))
      return
    }
    state = .reading(head: head, route: route, body: context.channel.allocator.buffer(capacity: 0))
  }

  private func finish(
    _ head: HTTPRequestHead, route: HTTPRoute, body: ByteBuffer, context: ChannelHandlerContext
  ) {
    var body = body
    if let coding = head.headers.first(name: "Content-Encoding").flatMap(ContentCoding.init) {
      switch inflate(body, coding: coding) {
      case .body(let inflated):
        body = inflated
      case .refused(let reply):
        answer(reply, to: head, context: context)
        return
      }
    }
    switch route {
    case .forward:
      state = .forwarding(head: head)
      let handler = loopBoundSelf!
      shared.forwarder!.forward(
        uri: head.uri, headers: head.headers, body: body, on: context.eventLoop
      ).whenSuccess { reply in
        handler.value.forwarded(reply)
      }
    case .publish(let kind, let isBatch, let converter):
      var call = shared.makeCall(kind)
      body.withUnsafeReadableBytes { bytes in
        convert(bytes, isBatch: isBatch, converter: converter, into: &call, context: context)
      }
      if let batch = call.takeBatch() { submit(batch, context: context) }
      if call.pendingAppends == 0 {
        answer(call.httpReply, to: head, context: context)
      } else {
        state = .publishing(head: head, call: call)
      }
    }
  }

  /// Converts every element of the body and adds its records to `call`; a malformed element
  /// is refused alone, naming its index and field, and the others still go to the queue.
  private func convert(
    _ bytes: UnsafeRawBufferPointer, isBatch: Bool, converter: AgentJSONConverter,
    into call: inout PublishingCall, context: ChannelHandlerContext
  ) {
    guard isBatch else {
      convert(bytes, element: 0..<bytes.count, named: nil, converter: converter, into: &call)
      return
    }
    let elements: JSONPieces<Range<Int>>
    do throws(JSONShapeError) {
      elements = try JSONStructure.arrayElements(bytes)
    } catch {
      call.reject(reason: "malformed_json", example: "the body is not a JSON array: \(error)")
      return
    }
    call.examineEach(of: elements.enumerated(), count: elements.count) { call, numbered in
      convert(
        bytes, element: numbered.element, named: "element \(numbered.offset)",
        converter: converter, into: &call)
      if call.batchBytes >= HTTPReceiverShared.maxBatchBytes, let batch = call.takeBatch() {
        submit(batch, context: context)
      }
    }
  }

  /// - Parameter name: how a refusal names the element within its body, nil for a whole body.
  private func convert(
    _ bytes: UnsafeRawBufferPointer, element: Range<Int>, named name: @autoclosure () -> String?,
    converter: AgentJSONConverter, into call: inout PublishingCall
  ) {
    do throws(AgentJSONError) {
      let message = try converter.convert(bytes, range: element)
      message.withUnsafeBytes { call.accept($0) }
    } catch {
      call.reject(
        reason: "malformed_json", example: name().map { "\($0): \(error)" } ?? "\(error)")
    }
  }

  /// A compressed body, as the OAP's REST server (Armeria) takes it: inflated under the same
  /// limit as a plain body, so a bomb is refused 413 instead of filling memory.
  private enum Inflated {
    case body(ByteBuffer)
    case refused(HTTPReply)
  }

  private func inflate(_ body: ByteBuffer, coding: ContentCoding) -> Inflated {
    let inflated = body.withUnsafeReadableBytes { bytes in
      Result { () throws(InflateError) in
        try Inflater.inflate(bytes, coding: coding, limit: shared.configuration.maxBodyBytes)
      }
    }
    switch inflated {
    case .success(let bytes):
      return .body(ByteBuffer(bytes: bytes))
    case .failure(let error) where error.code == .tooLarge:
      return .refused(shared.tooLarge())
    case .failure(let error):
      return .refused(
        HTTPReply(status: .badRequest, text: "cannot inflate the \(coding) body: \(error)"))
    }
  }

  private func submit(_ batch: RecordBatch, context: ChannelHandlerContext) {
    let handler = loopBoundSelf!
    let (records, bytes) = (batch.count, batch.byteCount)
    shared.queue.append(
      batch, answeringOn: context.eventLoop, eventLoopWait: shared.recordMetrics.eventLoopWait
    ) { result in
      handler.value.appendFinished(result, records: records, bytes: bytes)
    }
  }

  /// A queue completion, back on the event loop; even a batch the queue refuses at once gets
  /// here only after `finish` has moved to `.publishing`, as completions always hop.
  private func appendFinished(_ result: Result<Void, QueueError>, records: Int, bytes: Int) {
    guard case .publishing(let head, var call) = state, let context else { return }
    call.appendFinished(result, records: records, bytes: bytes)
    if call.pendingAppends == 0 {
      answer(call.httpReply, to: head, context: context)
    } else {
      state = .publishing(head: head, call: call)
    }
  }

  private func forwarded(_ reply: HTTPReply) {
    guard case .forwarding(let head) = state, let context else { return }
    answer(reply, to: head, context: context)
  }

  /// - Parameter bodyPending: the request's body has not all arrived; a closing answer then
  ///   waits for it (`.discarding`) before closing.
  private func answer(
    _ reply: HTTPReply, to head: HTTPRequestHead, bodyPending: Bool = false,
    context: ChannelHandlerContext
  ) {
    _ = memory.resize(&reservedBytes, to: 0)
    let route = HTTPRoute(target: head.uri)?.label ?? "unknown"
    shared.metrics.request(route: route, status: reply.status)
    let keepAlive = head.isKeepAlive && !reply.closesConnection
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: reply.contentType)
    headers.add(name: "Content-Length", value: String(reply.body.count))
    if let seconds = reply.retryAfterSeconds {
      headers.add(name: "Retry-After", value: String(seconds))
    }
    if !keepAlive { headers.add(name: "Connection", value: "close") }
    context.write(
      wrapOutboundOut(
        .head(HTTPResponseHead(version: head.version, status: reply.status, headers: headers))),
      promise: nil)
    context.write(
      wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: reply.body)))),
      promise: nil)
    if keepAlive {
      state = .idle
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
      armRequestTimer(context: context)
    } else if bodyPending {
      state = .discarding
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    } else {
      state = .closing
      requestTimer?.cancel()
      let promise = context.eventLoop.makePromise(of: Void.self)
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
      promise.futureResult.whenComplete { [channel = context.channel] _ in
        channel.close(promise: nil)
      }
    }
  }
}
