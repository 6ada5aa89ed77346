import NIOCore
import NIOHPACK
import NIOHTTP2
import SkyWalkingWire

/// Tells the connection's ``ConnectionCloser`` that a stream carries an agent call, from its
/// headers, then leaves the stream's pipeline.
///
/// It sits in front of ``GRPCStreamHandler`` and only observes: the handler routes and answers
/// the call (a health stream it reports itself, since only it can refuse one). Publishing calls
/// count only with the right token, as the handler checks it, so a client without the token
/// never earns its connection the standing of an agent's.
final class CallStandingObserver: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias InboundOut = HTTP2Frame.FramePayload

  private let shared: ReceiverShared

  init(shared: ReceiverShared) {
    self.shared = shared
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if case .headers(let headers) = unwrapInboundIn(data),
      let call = standingCall(headers.headers)
    {
      _ = ConnectionCloser.of(stream: context.channel)?.callStarted(call)
    }
    context.fireChannelRead(data)
    context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
  }

  private func standingCall(_ headers: HPACKHeaders) -> ConnectionStanding.Call? {
    switch AgentCall(path: headers.first(name: ":path")?[...] ?? "") {
    case .publish: shared.authorizes(headers) ? .publishing : nil
    case .forward: .forwarded
    case .health, nil: nil
    }
  }
}
