#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Whole-file reads and writes on a descriptor, retrying interrupted and short calls: the
/// publisher's small files (the ledger, the dead-letter file) are written and read whole.
enum WholeFile {
  /// Writes every byte; returns the errno of a failure, nil on success.
  static func writeAll(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32) -> Int32? {
    var written = 0
    while written < bytes.count {
      let result = write(descriptor, bytes.baseAddress! + written, bytes.count - written)
      if result < 0, errno != EINTR { return errno }
      written += max(0, result)
    }
    return nil
  }

  /// Reads to the end of the file.
  static func readAll(from descriptor: Int32) -> Result<[UInt8], ReadFailure> {
    var content: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
      if count < 0, errno == EINTR { continue }
      guard count >= 0 else { return .failure(ReadFailure(errno: errno)) }
      if count == 0 { return .success(content) }
      content.append(contentsOf: chunk[..<count])
    }
  }

  struct ReadFailure: Error {
    var errno: Int32
  }
}
