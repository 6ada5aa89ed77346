import Logging
import NIOCore
import NIOExtras
import ServiceLifecycle

/// The life of a listening endpoint, the same for the gRPC, HTTP and admin ports: bind, say
/// where it listens, serve until graceful shutdown, then end as its `Shutdown` says.
package enum Endpoint {
  /// What an endpoint does with its connections once graceful shutdown starts.
  package enum Shutdown {
    /// Closes the listener at once; open connections end on their own (admin: probes and
    /// scrapes are short).
    case closeListener
    /// Quiesces the connections (each handler answers what is in flight) and waits for them
    /// at most `grace` + 1 s; `helper`'s handler must be on the listener.
    case quiesce(ServerQuiescingHelper, grace: Duration)
  }

  /// Binds with `bind`, logs "<name> endpoint listening", calls `onListening` with the bound
  /// address, and serves until graceful shutdown or cancellation.
  /// - Parameter bindFailed: the endpoint's own error for a bind that failed.
  package static func serve<Failure: Error>(
    bind: () async throws -> any Channel, name: String, logger: Logger, shutdown: Shutdown,
    onListening: @Sendable (SocketAddress) -> Void,
    bindFailed: (any Error) -> Failure
  ) async throws(Failure) {
    let channel: any Channel
    do {
      channel = try await bind()
    } catch {
      throw bindFailed(error)
    }
    logger.info("\(name) endpoint listening", metadata: ["address": "\(channel.localAddress!)"])
    onListening(channel.localAddress!)
    switch shutdown {
    case .closeListener:
      await withTaskCancellationHandler {
        await withGracefulShutdownHandler {
          try? await channel.closeFuture.get()
        } onGracefulShutdown: {
          channel.close(promise: nil)
        }
      } onCancel: {
        channel.close(promise: nil)
      }
    case .quiesce(let helper, let grace):
      let inTime = await helper.serve(
        channel, on: channel.eventLoop, grace: TimeAmount(grace))
      if !inTime {
        logger.warning(
          "\(name) connections still open after the shutdown grace period; closing them",
          metadata: ["grace": "\(grace)"])
      }
    }
  }
}
