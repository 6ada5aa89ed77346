import SkyWalkingProtocol
import SkyWalkingWire
import SwiftProtobuf
import Testing

@Suite(.timeLimit(.minutes(1))) struct SegmentScannerTests {
  static func segment(traceID: String = "3f1c2a.1.17000000000001", spans: Int = 2)
    -> Skywalking_V3_SegmentObject
  {
    var segment = Skywalking_V3_SegmentObject()
    segment.traceID = traceID
    segment.traceSegmentID = "seg-\(traceID)"
    segment.service = "checkout"
    segment.serviceInstance = "checkout-7d9f"
    segment.isSizeLimited = false
    for index in 0..<spans {
      var span = Skywalking_V3_SpanObject()
      span.spanID = Int32(index)
      span.parentSpanID = Int32(index - 1)
      span.startTime = 1_700_000_000_000
      span.endTime = 1_700_000_000_042
      span.operationName = "GET /cart/\(index)"
      span.peer = "db:5432"
      span.spanType = index == 0 ? .entry : .exit
      span.spanLayer = .http
      span.componentID = 49
      span.isError = index == 1
      span.tags = [
        .with {
          $0.key = "http.method"
          $0.value = "GET"
        }
      ]
      span.logs = [
        .with {
          $0.time = 1
          $0.data = [
            .with {
              $0.key = "event"
              $0.value = "x"
            }
          ]
        }
      ]
      span.refs = [
        .with {
          $0.traceID = traceID
          $0.parentSpanID = 3
        }
      ]
      segment.spans.append(span)
    }
    return segment
  }

  static func bytes(_ message: some SwiftProtobuf.Message) throws -> [UInt8] {
    try message.serializedBytes()
  }

  static func scan(_ bytes: [UInt8]) throws(WireFormatError) -> (traceID: String, segmentID: String)
  {
    let result: Result<(String, String), WireFormatError> = bytes.withUnsafeBytes { buffer in
      do throws(WireFormatError) {
        let identity = try SegmentScanner.scanSegment(buffer)
        return .success(
          (
            String(decoding: buffer[identity.traceID], as: UTF8.self),
            String(decoding: buffer[identity.segmentID], as: UTF8.self)
          ))
      } catch {
        return .failure(error)
      }
    }
    return try result.get()
  }

  @Test func readsTraceAndSegmentIDsOfAValidSegment() throws {
    let bytes = try Self.bytes(Self.segment(traceID: "a1b2c3.42.17000000000001"))
    let identity = try Self.scan(bytes)
    #expect(identity.traceID == "a1b2c3.42.17000000000001")
    #expect(identity.segmentID == "seg-a1b2c3.42.17000000000001")
  }

  @Test func acceptsUnknownFieldsFromNewerAgents() throws {
    var bytes = try Self.bytes(Self.segment())
    bytes += [0xC8, 0x3E, 0x07]  // field 1001, varint 7
    bytes += [0xD2, 0x3E, 0x02, 0x68, 0x69]  // field 1002, "hi"
    #expect(try Self.scan(bytes).traceID == "3f1c2a.1.17000000000001")
  }

  @Test(arguments: [1, 5, 20, 57])
  func rejectsEveryTruncation(cut: Int) throws {
    let bytes = try Self.bytes(Self.segment())
    let truncated = Array(bytes.prefix(bytes.count - cut))
    #expect(throws: WireFormatError.self) { try Self.scan(truncated) }
  }

  @Test func rejectsAWrongWireTypeForTraceID() {
    let bytes: [UInt8] = [0x08, 0x01]  // field 1 as varint
    #expect { try Self.scan(bytes) } throws: {
      ($0 as? WireFormatError)?.code == .unexpectedWireType
    }
  }

  @Test func rejectsAWrongWireTypeInsideASpan() throws {
    // spans (field 3) holding spanId (field 1) as a length-delimited field.
    let bytes: [UInt8] = [0x0A, 0x01, 0x74, 0x1A, 0x03, 0x0A, 0x01, 0x00]
    #expect { try Self.scan(bytes) } throws: {
      ($0 as? WireFormatError)?.code == .unexpectedWireType
    }
  }

  @Test func rejectsAbsurdLengths() {
    // traceId claiming 2^32 bytes.
    let bytes: [UInt8] = [0x0A, 0x80, 0x80, 0x80, 0x80, 0x10, 0x61]
    #expect { try Self.scan(bytes) } throws: { ($0 as? WireFormatError)?.code == .truncated }
  }

  @Test func rejectsOverlongVarints() {
    let bytes: [UInt8] = [0x30] + Array(repeating: 0xFF, count: 11)
    #expect { try Self.scan(bytes) } throws: { ($0 as? WireFormatError)?.code == .varintTooLong }
  }

  @Test func rejectsGroupsAndFieldZero() {
    #expect { try Self.scan([0x0B]) } throws: {
      ($0 as? WireFormatError)?.code == .unsupportedWireType
    }
    #expect { try Self.scan([0x00, 0x01]) } throws: {
      ($0 as? WireFormatError)?.code == .invalidFieldNumber
    }
  }

  @Test func rejectsEmptyAndMissingTraceIDs() throws {
    let empty = try Self.bytes(Self.segment(traceID: ""))
    #expect { try Self.scan(empty) } throws: { ($0 as? WireFormatError)?.code == .emptyTraceID }
    #expect { try Self.scan([]) } throws: { ($0 as? WireFormatError)?.code == .emptyTraceID }
  }

  @Test func rejectsInvalidUTF8InTraceID() {
    let bytes: [UInt8] = [0x0A, 0x02, 0xC3, 0x28]
    #expect { try Self.scan(bytes) } throws: { ($0 as? WireFormatError)?.code == .invalidUTF8 }
  }

  @Test func acceptsNonASCIIUTF8TraceIDs() throws {
    let bytes = try Self.bytes(Self.segment(traceID: "trace-é-✓"))
    #expect(try Self.scan(bytes).traceID == "trace-é-✓")
  }

  @Test func splitsASegmentCollection() throws {
    var collection = Skywalking_V3_SegmentCollection()
    collection.segments = (0..<3).map { Self.segment(traceID: "trace-\($0)") }
    let bytes = try Self.bytes(collection)
    let traceIDs = try bytes.withUnsafeBytes { buffer in
      try SegmentScanner.scanCollection(buffer).map { range in
        let identity = try SegmentScanner.scanSegment(buffer, range: range)
        let decoded = try Skywalking_V3_SegmentObject(
          serializedBytes: Array(buffer[range]))
        #expect(decoded.traceID == String(decoding: buffer[identity.traceID], as: UTF8.self))
        return decoded.traceID
      }
    }
    #expect(traceIDs == ["trace-0", "trace-1", "trace-2"])
  }
}
