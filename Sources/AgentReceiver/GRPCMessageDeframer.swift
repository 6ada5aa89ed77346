import Inflate
import NIOCore

/// Splits a request body into gRPC length-prefixed messages.
///
/// Each message is a 1-byte compressed flag, a 4-byte big-endian length and the payload. The
/// deframer hands out slices of the received buffers, so a message that arrives in one DATA
/// frame is never copied; a compressed one is inflated, under the same size limit.
struct GRPCMessageDeframer {
  enum Failure: Error, Equatable {
    case messageTooLarge(length: Int, limit: Int)
    case compressedWithoutEncoding
    /// Inflating would pass the size limit: a decompression bomb, or simply too large.
    case inflatesTooLarge(limit: Int)
    case malformedCompression(String)
  }

  private var buffer: ByteBuffer?
  private let maxMessageBytes: Int
  /// The call's `grpc-encoding`; nil is identity.
  var coding: ContentCoding?

  init(maxMessageBytes: Int) {
    self.maxMessageBytes = maxMessageBytes
  }

  mutating func append(_ data: ByteBuffer) {
    if buffer == nil || buffer!.readableBytes == 0 {
      buffer = data
    } else {
      var data = data
      buffer!.writeBuffer(&data)
    }
  }

  /// The next complete message, or nil when more bytes are needed.
  mutating func next() throws(Failure) -> ByteBuffer? {
    guard var current = buffer, current.readableBytes >= 5,
      let flag = current.getInteger(at: current.readerIndex, as: UInt8.self),
      let length = current.getInteger(at: current.readerIndex + 1, as: UInt32.self)
    else { return nil }
    guard flag == 0 || coding != nil else { throw .compressedWithoutEncoding }
    guard length <= maxMessageBytes else {
      throw .messageTooLarge(length: Int(length), limit: maxMessageBytes)
    }
    guard current.readableBytes >= 5 + Int(length) else { return nil }
    current.moveReaderIndex(forwardBy: 5)
    let message = current.readSlice(length: Int(length))!
    buffer = current.readableBytes == 0 ? nil : current
    guard flag != 0, let coding else { return message }
    return try Self.inflate(message, coding: coding, limit: maxMessageBytes)
  }

  private static func inflate(
    _ message: ByteBuffer, coding: ContentCoding, limit: Int
  ) throws(Failure) -> ByteBuffer {
    let inflated = message.withUnsafeReadableBytes { bytes in
      Result { () throws(InflateError) in try Inflater.inflate(bytes, coding: coding, limit: limit)
      }
    }
    switch inflated {
    case .success(let bytes):
      return ByteBuffer(bytes: bytes)
    case .failure(let error) where error.code == .tooLarge:
      throw .inflatesTooLarge(limit: limit)
    case .failure(let error):
      throw .malformedCompression(error.message)
    }
  }

  /// Bytes that belong to a message not yet complete; non-zero at the end means a torn stream.
  var pendingBytes: Int { buffer?.readableBytes ?? 0 }

  /// The declared size of the message whose bytes are still arriving, or 0: what the stream
  /// will hold once that message is complete.
  var incompleteMessageBytes: Int {
    guard let buffer, buffer.readableBytes >= 5,
      let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self),
      buffer.readableBytes < 5 + Int(length)
    else { return 0 }
    return Int(length)
  }

  /// Drops what arrived of an unfinished message, once the call is answered and nothing more
  /// will be read.
  mutating func discard() {
    buffer = nil
  }
}
