import CZlib
import Testing

@testable import Inflate

/// Bodies and messages compressed the way a gateway or custom sender compresses them, and the
/// decompression bombs an attacker sends instead.
@Suite(.timeLimit(.minutes(1))) struct InflaterTests {
  /// zlib's format (HTTP's and gRPC's `deflate`), made with zlib itself.
  static func deflated(_ bytes: [UInt8]) -> [UInt8] {
    var size = compressBound(uLong(bytes.count))
    var output = [UInt8](repeating: 0, count: Int(size))
    #expect(compress2(&output, &size, bytes, uLong(bytes.count), 9) == Z_OK)
    return Array(output[0..<Int(size)])
  }

  /// The same deflate data in gzip's wrapper (RFC 1952): header, data, CRC-32, length.
  static func gzipped(_ bytes: [UInt8]) -> [UInt8] {
    let zlib = deflated(bytes)
    let checksum = UInt32(crc32(0, bytes, uInt(bytes.count)))
    let length = UInt32(truncatingIfNeeded: bytes.count)
    return [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF] + zlib[2..<(zlib.count - 4)]
      + (0..<4).map { UInt8(truncatingIfNeeded: checksum >> (8 * $0)) }
      + (0..<4).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) }
  }

  static func inflate(_ bytes: [UInt8], _ coding: ContentCoding, limit: Int) throws(InflateError)
    -> [UInt8]
  {
    let result = bytes.withUnsafeBytes { buffer in
      Result { () throws(InflateError) in try Inflater.inflate(buffer, coding: coding, limit: limit)
      }
    }
    return try result.get()
  }

  @Test func gzipAndDeflateInflateToWhatWasCompressed() throws {
    let body = Array(#"[{"traceId":"t1","spans":[{"operationName":"/"}]}]"#.utf8)
    #expect(try Self.inflate(Self.gzipped(body), .gzip, limit: body.count) == body)
    #expect(try Self.inflate(Self.deflated(body), .deflate, limit: body.count) == body)
    #expect(try Self.inflate(Self.gzipped([]), .gzip, limit: 0) == [])
  }

  @Test func encodingNamesAreReadAsHTTPAndGRPCSpellThem() {
    #expect(ContentCoding(name: "gzip") == .gzip)
    #expect(ContentCoding(name: "X-GZIP") == .gzip)
    #expect(ContentCoding(name: "deflate") == .deflate)
    #expect(ContentCoding(name: "br") == nil)
    #expect(ContentCoding(name: "snappy") == nil)
  }

  /// 64 MiB of zeros compress to about 64 KiB: refused as soon as the output passes the limit.
  @Test func aDecompressionBombIsRefusedAtTheLimit() {
    let bomb = Self.gzipped([UInt8](repeating: 0, count: 64 << 20))
    #expect(bomb.count < 128 << 10)
    #expect(throws: InflateError.self) { try Self.inflate(bomb, .gzip, limit: 1 << 20) }
    do {
      _ = try Self.inflate(bomb, .gzip, limit: 1 << 20)
    } catch {
      #expect(error.code == .tooLarge)
      #expect(error.message.contains("1048576"))
    }
  }

  @Test func truncatedOrForeignBytesAreMalformed() {
    let whole = Self.gzipped(Array(repeating: 7, count: 10_000))
    for bytes in [Array(whole.dropLast(20)), Array("plain text".utf8), whole] {
      for coding in [ContentCoding.gzip, .deflate] where !(bytes == whole && coding == .gzip) {
        do {
          _ = try Self.inflate(bytes, coding, limit: 1 << 20)
          Issue.record("\(coding) accepted bytes it cannot be")
        } catch {
          #expect(error.code == .malformed)
        }
      }
    }
  }
}
