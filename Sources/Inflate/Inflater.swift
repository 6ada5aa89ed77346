import CZlib

/// How a message or request body may be compressed: what the OAP's gRPC server (grpc-java) and
/// REST server (Armeria) decode. No stock agent compresses, but gateways and custom senders do.
public enum ContentCoding: Sendable, Equatable {
  case gzip
  /// The zlib format, which gRPC's and HTTP's `deflate` name.
  case deflate

  /// The coding a `grpc-encoding` or `Content-Encoding` value names; nil for an unknown one.
  /// `identity` is not a coding: callers treat it as no header at all.
  public init?(name: some StringProtocol) {
    switch name.lowercased() {
    case "gzip", "x-gzip": self = .gzip
    case "deflate": self = .deflate
    default: return nil
    }
  }

  /// Gzip's header and trailer, or zlib's, around the same deflate data.
  fileprivate var windowBits: Int32 { self == .gzip ? 15 + 16 : 15 }
}

/// Why compressed bytes were refused.
public struct InflateError: Error, Sendable, CustomStringConvertible {
  public enum Code: Sendable, Equatable {
    /// The output would pass the caller's limit: a decompression bomb, or a message that is
    /// simply too large once inflated.
    case tooLarge
    case malformed
  }

  public let code: Code
  public let message: String

  public var description: String { message }
}

/// Inflates a whole compressed message at once, stopping as soon as the output would pass a
/// limit, so a bomb (a few kilobytes that inflate to gigabytes) costs at most `limit` bytes of
/// memory and the CPU to produce them.
public enum Inflater {
  public static func inflate(
    _ compressed: UnsafeRawBufferPointer, coding: ContentCoding, limit: Int
  ) throws(InflateError) -> [UInt8] {
    var stream = z_stream()
    guard relay_inflate_init(&stream, coding.windowBits) == Z_OK else {
      throw InflateError(code: .malformed, message: "zlib could not start inflating")
    }
    defer { inflateEnd(&stream) }
    stream.next_in = UnsafeMutablePointer(
      mutating: compressed.baseAddress?.assumingMemoryBound(to: Bytef.self))
    stream.avail_in = uInt(compressed.count)
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: min(64 << 10, limit + 1))
    while true {
      let (result, produced) = chunk.withUnsafeMutableBytes { buffer in
        stream.next_out = buffer.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(buffer.count)
        let result = CZlib.inflate(&stream, Z_NO_FLUSH)
        return (result, buffer.count - Int(stream.avail_out))
      }
      guard output.count + produced <= limit else {
        throw InflateError(
          code: .tooLarge, message: "inflates to more than the limit of \(limit) bytes")
      }
      output.append(contentsOf: chunk[0..<produced])
      switch result {
      case Z_STREAM_END:
        return output
      case Z_OK where produced > 0 || stream.avail_in > 0:
        continue
      case Z_OK, Z_BUF_ERROR:
        throw InflateError(code: .malformed, message: "compressed data ends before its end mark")
      default:
        let reason = stream.msg.map { String(cString: $0) } ?? "zlib error \(result)"
        throw InflateError(code: .malformed, message: "not valid \(coding) data: \(reason)")
      }
    }
  }
}
