import NIOCore
import NIOExtras
import NIOPosix

extension ServerBootstrap {
  /// The listener of an agent endpoint: a deep accept backlog, address reuse, `limiter` and
  /// `quiescing`'s handler on the listening channel (a cap at accept, a drain at shutdown), and
  /// no Nagle delay on connections, whose answers are small and awaited.
  package static func agentListener(
    group: any EventLoopGroup, limiter: some ChannelHandler & Sendable,
    quiescing: ServerQuiescingHelper
  ) -> ServerBootstrap {
    ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 1024)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .serverChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandlers(
            limiter, quiescing.makeServerChannelHandler(channel: channel))
        }
      }
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
  }
}
