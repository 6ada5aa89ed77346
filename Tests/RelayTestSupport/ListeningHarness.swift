import CoreMetrics
import DurableQueue
import Logging
import NIOCore

/// A real disk queue (1 MiB files) in a fresh temporary directory, for the tests of an endpoint
/// in front of it; closed and removed once `body` ends.
package func withTemporaryQueue<Result: Sendable>(
  prefix: String, maxBytes: Int,
  _ body: (DurableQueue, TemporaryDirectory) async throws -> Result
) async throws -> Result {
  let directory = try TemporaryDirectory(prefix: prefix)
  defer { directory.remove() }
  let queue = try DurableQueue(
    configuration: DurableQueueConfiguration(
      directory: directory.path, fileBytes: 1 << 20, maxBytes: maxBytes),
    logger: Logger(label: "test"), metricsFactory: NOOPMetricsHandler.instance)
  defer { queue.close() }
  return try await body(queue, directory)
}

/// Thrown when a server ended before it reported the address it listens on.
package struct NotListeningError: Error {}

/// Runs the server that `start` makes, given the callback it reports its listening address to,
/// and hands `body` the port once it listens; the server is cancelled when `body` ends.
package func withListeningServer<Result: Sendable>(
  _ start: (@escaping @Sendable (SocketAddress) -> Void) throws ->
    @Sendable () async throws -> Void,
  _ body: (Int) async throws -> Result
) async throws -> Result {
  let (addresses, continuation) = AsyncStream.makeStream(of: SocketAddress.self)
  let run = try start { continuation.yield($0) }
  let serving = Task {
    // A server that fails before listening ends the stream, so the test fails instead of
    // waiting forever for a port.
    defer { continuation.finish() }
    try await run()
  }
  defer { serving.cancel() }
  var iterator = addresses.makeAsyncIterator()
  guard let port = await iterator.next()?.port else { throw NotListeningError() }
  return try await body(port)
}

extension DurableQueue {
  /// Every record in the queue from the confirmed position: what an endpoint made durable.
  package func recordsFromConfirmed() -> [QueuedRecord] {
    var records: [QueuedRecord] = []
    var position = confirmedPosition
    while true {
      let read = read(from: position, maxRecords: 1000, maxBytes: 8 << 20)
      if read.records.isEmpty { return records }
      records += read.records
      position = read.next
    }
  }
}
