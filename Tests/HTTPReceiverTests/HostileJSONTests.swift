import NIOHTTP1
import SkyWalkingProtocol
import Testing

@testable import HTTPReceiver

/// JSON shaped by an attacker to make the relay work far more than the bytes it sends; the
/// converter and the body's split run on an event loop that other agents and `/healthz` share.
@Suite(.timeLimit(.minutes(1))) struct HostileJSONTests {
  static let segments = AgentJSONConverter(Skywalking_V3_SegmentObject.self)

  /// `{"x":{"x":…{}…}}` of about `size` bytes: unknown fields the decoder skips, nested far
  /// deeper than its depth limit, so the element is refused and the field search starts.
  static func nestedUnknownFields(_ size: Int) -> [UInt8] {
    let levels = size / 6
    return Array(String(repeating: #"{"x":"#, count: levels).utf8) + Array("{}".utf8)
      + Array(repeating: UInt8(ascii: "}"), count: levels)
  }

  /// The attacker's 24 KB element took two minutes of an event loop (the search rebuilt the
  /// whole element for every attempt at every level); now the search decodes at most a few
  /// times the element's bytes, and names no field when it gives up.
  @Test(arguments: [24 << 10, 200 << 10])
  func nestedUnknownFieldsCostAFewTimesTheElementToDiagnose(size: Int) {
    let element = Self.nestedUnknownFields(size)
    element.withUnsafeBytes { bytes in
      var search = Self.segments.refusedFieldSearch(bytes)
      #expect(search.field(in: 0..<bytes.count) == nil)
      #expect(search.decodedBytes <= 5 * bytes.count, "decoded \(search.decodedBytes) bytes")
      #expect(search.decodes <= 10, "\(search.decodes) decodes")
      #expect {
        try Self.segments.convert(bytes, range: 0..<bytes.count)
      } throws: { error in
        (error as? AgentJSONError).map { $0.field == nil } ?? false
      }
    }
  }

  /// An nginx-lua agent's large segment with one bad span deep in it: the bounded search still
  /// names the field, as an agent developer needs.
  @Test func anOrdinaryMistakeInALargeElementIsStillNamed() {
    let spans = (0..<300).map { index in
      index == 250
        ? #"{"spanId": 250, "startTime": "soon"}"#
        : #"{"spanId": \#(index), "startTime": 1700000000000, "operationName": "/op"}"#
    }
    let element = Array(
      #"{"traceId": "t", "refs": [], "spans": [\#(spans.joined(separator: ","))]}"#.utf8)
    element.withUnsafeBytes { bytes in
      var search = Self.segments.refusedFieldSearch(bytes)
      #expect(search.field(in: 0..<bytes.count) == "spans[250].startTime")
      #expect(search.decodedBytes <= 4 * bytes.count, "decoded \(search.decodedBytes) bytes")
    }
  }

  /// A client whose body is cut short: the shape is checked whole before the first element is
  /// handed out, so nothing of it is converted or queued.
  @Test func aBodyCutShortIsRefusedBeforeAnyElementIsHandedOut() {
    let body = Array(#"[{"traceId": "a"}, {"traceId": "b"}, {"traceId": "#.utf8)
    #expect(throws: JSONShapeError.self) {
      try body.withUnsafeBytes { bytes in _ = try JSONStructure.arrayElements(bytes) }
    }
  }

  /// The 15 MiB `[0,0,…]` body's elements are counted and handed out one at a time, never
  /// collected into an array of millions of ranges.
  @Test func elementsAreCountedUpFrontAndHandedOutInOrder() throws {
    let body = Array(
      ("[" + Array(repeating: "0", count: 100_000).joined(separator: ",") + "]").utf8)
    try body.withUnsafeBytes { bytes in
      let elements = try JSONStructure.arrayElements(bytes)
      #expect(elements.count == 100_000)
      var handedOut = 0
      for element in elements {
        #expect(element == (1 + 2 * handedOut)..<(2 + 2 * handedOut))
        handedOut += 1
      }
      #expect(handedOut == 100_000)
    }
  }

  /// The attacker's body of zeros over HTTP: a thousand are refused one by one, the rest in one
  /// count, and the answer says so.
  @Test func aBodyOfThousandsOfBadElementsIsRefusedAfterAThousand() async throws {
    try await HTTPHarness.with { harness in
      let body = "[" + Array(repeating: "0", count: 5000).joined(separator: ",") + "]"
      let response = try await harness.post("/v3/segments", body)
      #expect(response.status == .badRequest)
      #expect(response.body.contains("rejected 5000 of 5000 segments"), "\(response.body)")
      #expect(response.body.contains("1000 malformed_json (first: element 0: "), "\(response.body)")
      #expect(response.body.contains("4000 unexamined"), "\(response.body)")
      #expect(harness.queuedRecords().isEmpty)
    }
  }
}
