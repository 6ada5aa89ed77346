import NIOCore
import NIOExtras
import ServiceLifecycle
import Synchronization

extension ServerQuiescingHelper {
  /// Serves `channel` until graceful shutdown, then quiesces its connections (each endpoint's
  /// handlers answer what is in flight) and waits for them to close, at most `grace` + 1 s.
  /// Returns false when connections were still open at that point; true when they closed in
  /// time, or when the channel was closed or the task cancelled without a graceful shutdown.
  func serve(
    _ channel: any Channel, on eventLoop: any EventLoop, grace: TimeAmount
  ) async -> Bool {
    let drained = eventLoop.makePromise(of: Void.self)
    let quiescingStarted = Atomic<Bool>(false)
    await withTaskCancellationHandler {
      await withGracefulShutdownHandler {
        try? await channel.closeFuture.get()
      } onGracefulShutdown: {
        quiescingStarted.store(true, ordering: .sequentiallyConsistent)
        self.initiateShutdown(promise: drained)
      }
    } onCancel: {
      channel.close(promise: nil)
    }
    guard quiescingStarted.load(ordering: .sequentiallyConsistent), !Task.isCancelled else {
      drained.succeed(())
      return true
    }
    return await drained.futureResult.completes(within: grace + .seconds(1), on: eventLoop)
  }
}
