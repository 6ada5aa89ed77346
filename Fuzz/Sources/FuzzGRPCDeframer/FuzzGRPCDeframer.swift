import NIOCore

@testable import AgentReceiver

/// Any bytes as a gRPC request body, cut into DATA frames at places the input chooses: the first
/// byte picks the message size limit, the second seeds the frame sizes. Deframing the body in
/// frames must give the same messages and the same ending (a failure, or the bytes of a torn
/// message left over) as deframing it whole, every message must respect the limit, and the
/// messages plus their prefixes plus what is left must account for every byte.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGRPCDeframer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  guard let data, size >= 2 else { return 0 }
  let input = UnsafeBufferPointer(start: data, count: size)
  let limit = [0, 1, 16, 255, 4096, 1 << 20][Int(input[0]) % 6]
  let body = input.dropFirst(2)
  let whole = deframe(frames: [ByteBuffer(bytes: body)], limit: limit)
  var frames: [ByteBuffer] = []
  var generator = FrameSizes(seed: input[1])
  var start = body.startIndex
  while start < body.endIndex {
    let end = min(body.endIndex, start + generator.next())
    frames.append(ByteBuffer(bytes: body[start..<end]))
    start = end
  }
  let framed = deframe(frames: frames, limit: limit)
  precondition(whole == framed, "frame boundaries changed what the deframer read")
  for message in whole.messages { precondition(message.count <= limit) }
  if whole.failure == nil {
    let accounted = whole.messages.reduce(whole.pendingBytes) { $0 + 5 + $1.count }
    precondition(accounted == body.count, "\(accounted) bytes accounted for of \(body.count)")
  }
  return 0
}

private struct Deframed: Equatable {
  var messages: [[UInt8]] = []
  var failure: GRPCMessageDeframer.Failure?
  var pendingBytes = 0
}

/// Reads every message after each frame, as the stream handler does per DATA frame, and stops
/// at the first failure, as the handler answers the call then.
private func deframe(frames: [ByteBuffer], limit: Int) -> Deframed {
  var deframer = GRPCMessageDeframer(maxMessageBytes: limit)
  var result = Deframed()
  for frame in frames {
    deframer.append(frame)
    do {
      while let message = try deframer.next() {
        result.messages.append(Array(message.readableBytesView))
      }
    } catch {
      result.failure = error
      return result
    }
  }
  result.pendingBytes = deframer.pendingBytes
  return result
}

/// Frame sizes from 1 to 64 bytes, from a byte of the input, so a crash replays exactly.
private struct FrameSizes {
  var state: UInt32

  init(seed: UInt8) { state = UInt32(seed) &* 2_654_435_761 | 1 }

  mutating func next() -> Int {
    state ^= state << 13
    state ^= state >> 17
    state ^= state << 5
    return Int(state % 64) + 1
  }
}
