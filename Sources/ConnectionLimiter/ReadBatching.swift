/// How many reads an agent connection makes each time its socket turns readable: a batch while
/// a call streams in, one while the connection is quiet, as an agent's is between reports.
///
/// SwiftNIO keeps up to that many receive buffers per connection for reuse (as many as were
/// still held by the HTTP/2 decoder when the next read came), each at the largest size it ever
/// reached: 2 KiB after one small call, 16 KiB after a burst (``agentConnections``). Lowering the
/// count to one drops all but one of them, so a quiet connection holds a single buffer.
package struct ReadBatching: Sendable {
  /// Reads per wake-up while no call is open.
  package static let quiet: UInt = 1

  /// Reads per wake-up while a call is open: fewer wake-ups for an agent's burst.
  private let busy: UInt
  private var openStreams = 0

  package init(busy: UInt) {
    self.busy = busy
  }

  /// - Returns: the reads per wake-up to set now, when they change (the first open stream).
  package mutating func streamOpened() -> UInt? {
    openStreams += 1
    return openStreams == 1 ? busy : nil
  }

  /// - Returns: the reads per wake-up to set now, when they change (the last stream closed).
  package mutating func streamClosed() -> UInt? {
    guard openStreams > 0 else { return nil }
    openStreams -= 1
    return openStreams == 0 ? Self.quiet : nil
  }
}
