import GRPCCore
import Inflate
import NIOCore
import NIOHPACK
import NIOHTTP2

/// The frames that answer a call.
///
/// Every call the relay answers itself returns one `Commands` message, and the relay never has
/// commands for an agent, so a success is always the same three frames: headers, an empty
/// message and trailers. Failures use the trailers-only form, and malformed HTTP requests get a
/// bare HTTP status, as the gRPC over HTTP/2 specification asks. Proxied and health calls build
/// their frames from the pieces below.
struct GRPCResponse {
  let status: GRPCStatus
  let frames: [HTTP2Frame.FramePayload]

  /// - Parameter message: the serialized response (an OAP's `Commands`), empty by default.
  init(status: GRPCStatus, message: [UInt8] = []) {
    guard status.code == .ok else {
      self = .trailersOnly(status)
      return
    }
    self.status = status
    frames = [
      .headers(.init(headers: Self.okHeaders)),
      message.isEmpty
        ? .data(.init(data: .byteBuffer(Self.emptyCommandsMessage))) : Self.message(message),
      .headers(.init(headers: Self.okTrailers, endStream: true)),
    ]
  }

  init(status: GRPCStatus, frames: [HTTP2Frame.FramePayload]) {
    self.status = status
    self.frames = frames
  }

  /// Response headers, with the OAP's own metadata when proxying.
  static func responseHeaders(_ metadata: [(name: String, value: String)] = [])
    -> HTTP2Frame.FramePayload
  {
    var headers = okHeaders
    for (name, value) in metadata where !GRPCMetadata.isReserved(name) {
      headers.add(name: name, value: value)
    }
    return .headers(.init(headers: headers))
  }

  /// One length-prefixed, uncompressed message.
  static func message(_ bytes: [UInt8]) -> HTTP2Frame.FramePayload {
    var framed = ByteBuffer()
    framed.reserveCapacity(5 + bytes.count)
    framed.writeInteger(UInt8(0))
    framed.writeInteger(UInt32(bytes.count))
    framed.writeBytes(bytes)
    return .data(.init(data: .byteBuffer(framed)))
  }

  /// Trailers ending a call whose headers were sent.
  static func trailers(
    _ status: GRPCStatus, metadata: [(name: String, value: String)] = []
  ) -> [HTTP2Frame.FramePayload] {
    var headers: HPACKHeaders = ["grpc-status": String(status.code.rawValue)]
    if !status.message.isEmpty { headers.add(name: "grpc-message", value: status.encodedMessage) }
    for (name, value) in metadata where !GRPCMetadata.isReserved(name) {
      headers.add(name: name, value: value)
    }
    return [.headers(.init(headers: headers, endStream: true))]
  }

  static func trailersOnly(
    _ status: GRPCStatus, extraHeaders: [(name: String, value: String)] = []
  )
    -> GRPCResponse
  {
    var headers = okHeaders
    headers.add(name: "grpc-status", value: String(status.code.rawValue))
    if !status.message.isEmpty { headers.add(name: "grpc-message", value: status.encodedMessage) }
    for (name, value) in extraHeaders where !GRPCMetadata.isReserved(name) {
      headers.add(name: name, value: value)
    }
    return GRPCResponse(
      status: status, frames: [.headers(.init(headers: headers, endStream: true))])
  }

  /// A plain HTTP refusal for requests that are not gRPC at all.
  static func http(status: Int, reason: GRPCStatus) -> GRPCResponse {
    let headers: HPACKHeaders = [":status": String(status)]
    return GRPCResponse(
      status: reason, frames: [.headers(.init(headers: headers, endStream: true))])
  }

  private static let okHeaders: HPACKHeaders = [
    ":status": "200",
    "content-type": "application/grpc",
    "grpc-accept-encoding": GRPCRequestHead.acceptedEncodings,
  ]
  private static let okTrailers: HPACKHeaders = ["grpc-status": "0"]
  /// A gRPC frame holding `skywalking.v3.Commands{}`, whose encoding is zero bytes.
  private static let emptyCommandsMessage = ByteBuffer(bytes: [0, 0, 0, 0, 0])
}

/// Checks a request's headers before any of its body is read.
enum GRPCRequestHead {
  /// What the OAP's grpc-java server decodes, and so the relay too.
  static let acceptedEncodings = "identity,gzip,deflate"

  /// The answer for a request the relay will not serve, or nil when it is a gRPC call it can
  /// read. The path itself is checked by the caller against the calls it serves.
  static func refusal(of headers: HPACKHeaders) -> GRPCResponse? {
    guard headers.first(name: ":method") == "POST" else {
      return .http(
        status: 405, reason: GRPCStatus(code: .unimplemented, message: "method must be POST"))
    }
    guard let contentType = headers.first(name: "content-type"),
      contentType.hasPrefix("application/grpc")
    else {
      return .http(
        status: 415,
        reason: GRPCStatus(code: .internalError, message: "content-type must be application/grpc"))
    }
    if let encoding = headers.first(name: "grpc-encoding"), encoding != "identity",
      ContentCoding(name: encoding) == nil
    {
      return .trailersOnly(
        GRPCStatus(
          code: .unimplemented,
          message: "grpc-encoding \(encoding) is not supported; send \(acceptedEncodings)"))
    }
    return nil
  }
}
