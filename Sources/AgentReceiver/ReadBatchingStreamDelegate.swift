import ConnectionLimiter
import NIOCore
import NIOHTTP2

/// Sets a connection's reads per wake-up as its calls open and close (``ReadBatching``), then
/// tells `next`.
struct ReadBatchingStreamDelegate<Next: NIOHTTP2StreamDelegate>: NIOHTTP2StreamDelegate {
  let next: Next
  let batching: NIOLoopBoundBox<ReadBatching>

  func streamCreated(_ id: HTTP2StreamID, channel: any Channel) {
    apply(batching.value.streamOpened(), to: channel)
    next.streamCreated(id, channel: channel)
  }

  func streamClosed(_ id: HTTP2StreamID, channel: any Channel) {
    apply(batching.value.streamClosed(), to: channel)
    next.streamClosed(id, channel: channel)
  }

  /// On the stream's event loop, which is its connection's (`parent`). Only a closed
  /// connection refuses the option, and it reads no more.
  private func apply(_ readsPerWakeUp: UInt?, to stream: any Channel) {
    guard let readsPerWakeUp else { return }
    try? stream.parent?.syncOptions?.setOption(.maxMessagesPerRead, value: readsPerWakeUp)
  }
}
