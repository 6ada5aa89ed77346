import NIOCore
import SkyWalkingProtocol
import SwiftProtobuf

/// Valid `SegmentObject`s encoded once, each sent many times with a fresh trace id.
///
/// Every template starts with `traceId` (field 1) and `traceSegmentId` (field 2) of fixed
/// width, `<run id>.<20-digit sequence>`, so stamping a segment with its sequence number is an
/// overwrite of 20 ASCII digits at known offsets instead of an encode.
struct SegmentCorpus: Sendable {
  let runID: String
  let templates: [[UInt8]]
  /// Where the 20 sequence digits of the trace id and the segment id start in every template.
  let traceDigitsOffset: Int
  let segmentDigitsOffset: Int
  static let sequenceDigits = 20

  init(sizes: SegmentSizes, templateCount: Int, runID: String) {
    self.runID = runID
    let placeholder = runID + "." + String(repeating: "0", count: Self.sequenceDigits)
    templates = (0..<templateCount).map { index in
      Self.encodeSegment(
        index: index, targetBytes: sizes.size(forTemplate: index, of: templateCount),
        traceID: placeholder, segmentID: placeholder + "s")
    }
    // Tag 0x0A, one length byte, the trace id; then tag 0x12, one length byte, the segment id.
    traceDigitsOffset = 2 + runID.utf8.count + 1
    segmentDigitsOffset = 2 + placeholder.utf8.count + 2 + runID.utf8.count + 1
    for template in templates {
      precondition(template[0] == 0x0A && Int(template[1]) == placeholder.utf8.count)
    }
  }

  var averageBytes: Int { templates.reduce(0) { $0 + $1.count } / max(templates.count, 1) }

  /// The trace id the segment with `sequence` carries; also its Kafka key.
  func traceID(sequence: UInt64) -> [UInt8] {
    var id = Array((runID + ".").utf8)
    id.append(contentsOf: Self.digits(sequence))
    return id
  }

  /// The segment for `sequence`, as it is sent: the template with the sequence stamped in.
  func segment(sequence: UInt64) -> [UInt8] {
    var bytes = templates[Int(sequence % UInt64(templates.count))]
    let digits = Self.digits(sequence)
    bytes.replaceSubrange(
      traceDigitsOffset..<(traceDigitsOffset + Self.sequenceDigits), with: digits)
    bytes.replaceSubrange(
      segmentDigitsOffset..<(segmentDigitsOffset + Self.sequenceDigits), with: digits)
    return bytes
  }

  /// Appends `count` gRPC-framed segments starting at `firstSequence`: the body of one stream.
  func writeStream(firstSequence: UInt64, count: Int, into buffer: inout ByteBuffer) {
    for sequence in firstSequence..<(firstSequence + UInt64(count)) {
      let template = templates[Int(sequence % UInt64(templates.count))]
      buffer.writeInteger(UInt8(0))
      buffer.writeInteger(UInt32(template.count))
      let start = buffer.writerIndex
      buffer.writeBytes(template)
      let digits = Self.digits(sequence)
      buffer.setBytes(digits, at: start + traceDigitsOffset)
      buffer.setBytes(digits, at: start + segmentDigitsOffset)
    }
  }

  func streamBytes(count: Int, firstSequence: UInt64) -> Int {
    (firstSequence..<(firstSequence + UInt64(count))).reduce(0) {
      $0 + 5 + templates[Int($1 % UInt64(templates.count))].count
    }
  }

  /// The sequence number a key produced by ``traceID(sequence:)`` carries, if it is this run's.
  func sequence(fromKey key: UnsafeRawBufferPointer) -> UInt64? {
    let prefix = runID.utf8.count + 1
    guard key.count == prefix + Self.sequenceDigits else { return nil }
    for (index, byte) in runID.utf8.enumerated() where key[index] != byte { return nil }
    var value: UInt64 = 0
    for byte in key[prefix...] {
      guard (0x30...0x39).contains(byte) else { return nil }
      value = value * 10 + UInt64(byte - 0x30)
    }
    return value
  }

  private static func digits(_ sequence: UInt64) -> [UInt8] {
    var digits = [UInt8](repeating: 0x30, count: sequenceDigits)
    var remaining = sequence
    var index = sequenceDigits - 1
    while remaining > 0 && index >= 0 {
      digits[index] = 0x30 + UInt8(remaining % 10)
      remaining /= 10
      index -= 1
    }
    return digits
  }

  /// A segment like a Java agent's: an entry span, local and exit spans with tags, a cross-process
  /// reference, padded with a `db.statement` to about `targetBytes`.
  private static func encodeSegment(
    index: Int, targetBytes: Int, traceID: String, segmentID: String
  ) -> [UInt8] {
    var segment = Skywalking_V3_SegmentObject()
    segment.traceID = traceID
    segment.traceSegmentID = segmentID
    segment.service = "loadgen-service-\(index % 16)"
    segment.serviceInstance = "instance-\(index % 5)@10.0.\(index % 7).\(index % 250)"
    let spanCount = min(max(targetBytes / 400, 2), 48)
    let start: Int64 = 1_700_000_000_000 + Int64(index)
    for spanIndex in 0..<spanCount {
      var span = Skywalking_V3_SpanObject()
      span.spanID = Int32(spanIndex)
      span.parentSpanID = Int32(spanIndex - 1)
      span.startTime = start + Int64(spanIndex)
      span.endTime = start + Int64(spanIndex) + 3
      span.componentID = spanIndex == 0 ? 1 : 5
      if spanIndex == 0 {
        span.spanType = .entry
        span.spanLayer = .http
        span.operationName = "GET:/api/orders/{id}/items"
        span.tags = [
          tag("http.method", "GET"), tag("url", "http://orders:8080/api/orders/\(index)/items"),
          tag("http.status_code", "200"),
        ]
        var reference = Skywalking_V3_SegmentReference()
        reference.refType = .crossProcess
        reference.traceID = traceID
        reference.parentTraceSegmentID = "parent-\(index)"
        reference.parentSpanID = 1
        reference.parentService = "gateway"
        reference.parentServiceInstance = "gateway-0@10.0.0.1"
        reference.parentEndpoint = "GET:/api/orders/{id}/items"
        reference.networkAddressUsedAtPeer = "orders:8080"
        span.refs = [reference]
      } else if spanIndex % 3 == 1 {
        span.spanType = .exit
        span.spanLayer = .database
        span.operationName = "Mysql/JDBC/PreparedStatement/executeQuery"
        span.peer = "mysql:3306"
        span.tags = [tag("db.type", "sql"), tag("db.instance", "orders")]
      } else {
        span.spanType = .local
        span.operationName = "OrderService.loadItems"
      }
      segment.spans.append(span)
    }
    var bytes: [UInt8] = (try? segment.serializedBytes()) ?? []
    // The padding's own tag and length bytes are only known after encoding, so correct twice.
    let padded = spanCount > 1 ? 1 : 0
    let statementIndex = segment.spans[padded].tags.count
    var fillerLength = targetBytes - bytes.count - 64
    for _ in 0..<3 where fillerLength > 0 && bytes.count != targetBytes {
      let statement = tag(
        "db.statement",
        "SELECT id, sku, quantity FROM items WHERE order_id = ? /* "
          + String(repeating: "x", count: fillerLength) + " */")
      if segment.spans[padded].tags.count > statementIndex {
        segment.spans[padded].tags[statementIndex] = statement
      } else {
        segment.spans[padded].tags.append(statement)
      }
      bytes = (try? segment.serializedBytes()) ?? []
      fillerLength += targetBytes - bytes.count
    }
    return bytes
  }

  private static func tag(_ key: String, _ value: String) -> Skywalking_V3_KeyStringValuePair {
    var pair = Skywalking_V3_KeyStringValuePair()
    pair.key = key
    pair.value = value
    return pair
  }
}
