import AgentIngest
import ConnectionLimiter
import DurableQueue
import Inflate
import NIOCore
import NIOHTTP1

/// Serves one keep-alive HTTP/1.1 connection, one request at a time (NIO's pipelining handler
/// holds a pipelined request back until the previous answer is written), performing what
/// ``HTTPRequestStateMachine`` decides.
///
/// A publishing request is answered once every record it produced is durable in the sink, or
/// the sink refused it: the same rule, and the same `PublishingCall`, as a gRPC call. While it
/// waits, the connection reads nothing more.
final class HTTPRequestHandler: ChannelDuplexHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundIn = HTTPServerResponsePart
  typealias OutboundOut = HTTPServerResponsePart

  private let shared: HTTPReceiverShared
  private var machine: HTTPRequestStateMachine
  private var context: ChannelHandlerContext?
  private var loopBoundSelf: NIOLoopBound<HTTPRequestHandler>?
  private var requestTimer: Scheduled<Void>?
  private var isReadHeld = false
  private let memory: ConnectionMemoryShare
  /// What the body being read holds of the memory budget.
  private var reservedBytes = 0

  init(shared: HTTPReceiverShared) {
    self.shared = shared
    self.machine = shared.makeRequestMachine()
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
      perform(machine.receivedHead(head), context: context)
    case .body(let part):
      perform(
        machine.receivedBody(part) { memory.resize(&reservedBytes, to: $0) }, context: context)
    case .end:
      perform(machine.receivedEnd(), context: context)
    }
  }

  func read(context: ChannelHandlerContext) {
    if machine.holdsReads {
      isReadHeld = true
    } else {
      context.read()
    }
  }

  private func perform(_ action: HTTPRequestStateMachine.Action, context: ChannelHandlerContext) {
    switch action {
    case .none:
      break
    case .process(let head, let route, let body):
      requestTimer?.cancel()
      process(head, route: route, body: body, context: context)
      // The body was converted (or handed to the OAP link, which owns it now).
      _ = memory.resize(&reservedBytes, to: 0)
    case .answer(let reply, let head, let then):
      answer(reply, to: head, then: then, context: context)
    case .close:
      context.close(promise: nil)
    }
  }

  /// Feeds the machine an answer that arrived from another thread (the sink, the OAP link),
  /// once back on the connection's event loop; nothing happens once the handler is gone.
  private func performIfActive(
    _ event: (inout HTTPRequestStateMachine) -> HTTPRequestStateMachine.Action
  ) {
    guard let context else { return }
    perform(event(&machine), context: context)
  }

  private func process(
    _ head: HTTPRequestHead, route: HTTPRoute, body: ByteBuffer, context: ChannelHandlerContext
  ) {
    var body = body
    if let coding = head.headers.first(name: "Content-Encoding").flatMap(ContentCoding.init) {
      switch inflate(body, coding: coding) {
      case .body(let inflated):
        body = inflated
      case .refused(let reply):
        perform(machine.bodyRefused(reply), context: context)
        return
      }
    }
    switch route {
    case .forward:
      machine.forwarding()
      let handler = loopBoundSelf!
      shared.forwarder!.forward(
        uri: head.uri, headers: head.headers, body: body, on: context.eventLoop
      ).whenSuccess { reply in
        handler.value.performIfActive { $0.forwarded(reply) }
      }
    case .publish(let kind, let isBatch, let converter):
      var call = shared.makeCall(kind)
      body.withUnsafeReadableBytes { bytes in
        convert(bytes, isBatch: isBatch, converter: converter, into: &call, context: context)
      }
      if let batch = call.takeBatch() { submit(batch, context: context) }
      perform(machine.publishing(call), context: context)
    }
  }

  /// Converts every element of the body and adds its records to `call`; a malformed element
  /// is refused alone, naming its index and field, and the others still go to the sink.
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
      if call.isBatchFull, let batch = call.takeBatch() {
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
      return .refused(.tooLarge(shared.configuration))
    case .failure(let error):
      return .refused(
        HTTPReply(status: .badRequest, text: "cannot inflate the \(coding) body: \(error)"))
    }
  }

  /// Hands a batch to the sink; its answer always hops back, so it reaches the machine only
  /// after `publishing(_:)` has taken the call.
  private func submit(_ batch: RecordBatch, context: ChannelHandlerContext) {
    let handler = loopBoundSelf!
    let (records, bytes) = (batch.count, batch.byteCount)
    shared.queue.append(
      batch, answeringOn: context.eventLoop, eventLoopWait: shared.recordMetrics.eventLoopWait
    ) { result in
      handler.value.performIfActive { $0.appendFinished(result, records: records, bytes: bytes) }
    }
  }

  private func answer(
    _ reply: HTTPReply, to head: HTTPRequestHead,
    then: HTTPRequestStateMachine.AfterAnswer, context: ChannelHandlerContext
  ) {
    _ = memory.resize(&reservedBytes, to: 0)
    let route = HTTPRoute(target: head.uri)?.label ?? "unknown"
    shared.metrics.request(route: route, status: reply.status)
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: reply.contentType)
    headers.add(name: "Content-Length", value: String(reply.body.count))
    if let seconds = reply.retryAfterSeconds {
      headers.add(name: "Retry-After", value: String(seconds))
    }
    if then != .awaitNextRequest { headers.add(name: "Connection", value: "close") }
    context.write(
      wrapOutboundOut(
        .head(HTTPResponseHead(version: head.version, status: reply.status, headers: headers))),
      promise: nil)
    context.write(
      wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: reply.body)))),
      promise: nil)
    switch then {
    case .awaitNextRequest:
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
      armRequestTimer(context: context)
      if isReadHeld {
        isReadHeld = false
        context.read()
      }
    case .discardBody:
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    case .close:
      requestTimer?.cancel()
      let promise = context.eventLoop.makePromise(of: Void.self)
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
      promise.futureResult.whenComplete { [channel = context.channel] _ in
        channel.close(promise: nil)
      }
    }
  }
}
