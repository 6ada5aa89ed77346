import CoreMetrics
import DurableQueue
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import SkyWalkingWire

/// Calls only the OAP can answer: handed to the forwarder, its answer written back.
extension GRPCStreamHandler {
  func forward(isQuery: Bool, isClientStreaming: Bool, context: ChannelHandlerContext) {
    guard forwardedBytes <= shared.configuration.maxMessageBytes else {
      answer(
        .trailersOnly(
          GRPCStatus(
            code: .resourceExhausted,
            message: "call of \(forwardedBytes) bytes exceeds the limit of "
              + "\(shared.configuration.maxMessageBytes) bytes (SW_RELAY_GRPC_MAX_MESSAGE_BYTES)")),
        context: context)
      return
    }
    guard let forwarder = shared.forwarder else {
      answer(GRPCResponse(status: Self.withoutOAP(isQuery: isQuery)), context: context)
      return
    }
    let handler = loopBoundSelf!
    let (path, messages, metadata) = (forwardPath, forwardedMessages, forwardMetadata)
    forwardedMessages = []
    Task {
      let outcome = await forwarder.forward(
        path: path, messages: messages, metadata: metadata, isClientStreaming: isClientStreaming)
      handler.eventLoop.execute { handler.value.forwardFinished(outcome, isQuery: isQuery) }
    }
  }

  func forwardFinished(_ outcome: ForwardOutcome, isQuery: Bool) {
    guard let context, case .receiving = state else { return }
    switch outcome {
    case .answered(let code, let message, let response):
      let status = GRPCStatus(code: GRPCStatus.Code(rawValue: code) ?? .unknown, message: message)
      answer(GRPCResponse(status: status, message: response), context: context)
    case .unreachable(let reason):
      // Never a status that makes agents stop tracing: queries get "nothing new", data calls
      // ABORTED, which agents log and move on from.
      let status =
        isQuery
        ? GRPCStatus.ok
        : GRPCStatus(code: .aborted, message: "not delivered: \(reason)")
      answer(GRPCResponse(status: status), context: context)
    }
  }

  /// With no OAP to forward to, a query is answered "no tasks, no configuration change", and
  /// data the OAP's Kafka fetcher cannot take is refused with a status agents tolerate.
  static func withoutOAP(isQuery: Bool) -> GRPCStatus {
    if isQuery { return .ok }
    return GRPCStatus(
      code: .unimplemented,
      message: "this call has no Kafka topic in the OAP's fetcher; set SW_RELAY_OAP_ADDRESS so "
        + "the relay forwards it to the OAP")
  }
}
