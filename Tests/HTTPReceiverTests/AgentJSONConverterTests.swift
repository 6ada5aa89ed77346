import SkyWalkingProtocol
import SwiftProtobuf
import Testing

@testable import HTTPReceiver

@Suite(.timeLimit(.minutes(1))) struct AgentJSONConverterTests {
  static let segments = AgentJSONConverter(Skywalking_V3_SegmentObject.self)

  static func convert(_ converter: AgentJSONConverter, _ json: String) throws -> [UInt8] {
    let bytes = Array(json.utf8)
    return try bytes.withUnsafeBytes { buffer in
      try converter.convert(buffer, range: 0..<buffer.count)
    }
  }

  static func refusal(_ converter: AgentJSONConverter, _ json: String) -> AgentJSONError? {
    do {
      _ = try convert(converter, json)
      return nil
    } catch {
      return error as? AgentJSONError
    }
  }

  /// The skywalking.v3 protos name their fields in lowerCamelCase, so a field's proto name and
  /// its JSON name are the same (`traceId`); what varies between agents is how values are
  /// written: enums by name or number, 64-bit integers as strings or numbers.
  @Test func enumNamesAndNumbersAndInt64StringsAndNumbersAgree() throws {
    let canonical = """
      {"traceId": "t1", "traceSegmentId": "s1", "service": "svc", "serviceInstance": "i1",
       "spans": [{"spanId": 1, "parentSpanId": 0, "startTime": "1700000000000",
                  "endTime": "1700000000005", "spanType": "Exit", "spanLayer": "Http",
                  "componentId": 6000, "isError": true, "peer": "db:5432",
                  "refs": [{"refType": "CrossThread", "traceId": "t1"}]}]}
      """
    let original = """
      {"traceId": "t1", "traceSegmentId": "s1", "service": "svc", "serviceInstance": "i1",
       "spans": [{"spanId": 1, "parentSpanId": 0, "startTime": 1700000000000,
                  "endTime": 1700000000005, "spanType": 1, "spanLayer": 3,
                  "componentId": 6000, "isError": true, "peer": "db:5432",
                  "refs": [{"refType": 1, "traceId": "t1"}]}]}
      """
    let fromCanonical = try Self.convert(Self.segments, canonical)
    #expect(fromCanonical == (try Self.convert(Self.segments, original)))
    let segment = try Skywalking_V3_SegmentObject(serializedBytes: fromCanonical)
    #expect(segment.traceID == "t1")
    #expect(segment.spans[0].spanType == .exit)
    #expect(segment.spans[0].spanLayer == .http)
    #expect(segment.spans[0].startTime == 1_700_000_000_000)
    #expect(segment.spans[0].refs[0].refType == .crossThread)
  }

  @Test func nullsUnknownFieldsAndUnknownEnumNamesAreAcceptedAsTheOAPAcceptsThem() throws {
    // The Python agent sends `"peer": null` for entry spans; newer agents may add fields or
    // enum values, which the OAP's ignoringUnknownFields() parser skips.
    let bytes = try Self.convert(
      Self.segments,
      #"{"traceId": "t", "traceSegmentId": "s", "futureField": {"x": [1]}, "#
        + #""spans": [{"peer": null, "spanLayer": "Quantum", "spanType": "Exit"}]}"#)
    let segment = try Skywalking_V3_SegmentObject(serializedBytes: bytes)
    #expect(segment.spans.count == 1 && segment.spans[0].peer.isEmpty)
    #expect(segment.spans[0].spanLayer == .unknown && segment.spans[0].spanType == .exit)
  }

  @Test func aRefusalNamesTheFieldDownToTheSpan() {
    let error = Self.refusal(
      Self.segments,
      #"{"traceId": "t", "spans": [{"spanId": 0}, {"spanId": 1, "startTime": "soon"}]}"#)
    #expect(error?.field == "spans[1].startTime")
    #expect(error?.description.hasPrefix("field spans[1].startTime: ") == true)
    #expect(Self.refusal(Self.segments, #"{"traceId": 12.5e}"#)?.field == "traceId")
    #expect(Self.refusal(Self.segments, #"[1, 2]"#)?.field == nil)
  }

  @Test func managementAndLogElementsConvertWithTheirOwnTypes() throws {
    let properties = try Skywalking_V3_InstanceProperties(
      serializedBytes: try Self.convert(
        AgentJSONConverter(Skywalking_V3_InstanceProperties.self),
        #"{"service": "s", "serviceInstance": "i", "properties": [{"key": "language", "value": "lua"}]}"#
      ))
    #expect(properties.serviceInstance == "i" && properties.properties[0].value == "lua")
    let log = try Skywalking_V3_LogData(
      serializedBytes: try Self.convert(
        AgentJSONConverter(Skywalking_V3_LogData.self),
        #"{"timestamp": "1700000000000", "service": "s", "body": {"text": {"text": "hello"}}, "#
          + #""traceContext": {"traceId": "t9"}, "tags": {"data": [{"key": "level", "value": "WARN"}]}}"#
      ))
    #expect(log.timestamp == 1_700_000_000_000 && log.body.text.text == "hello")
    #expect(log.traceContext.traceID == "t9" && log.tags.data[0].value == "WARN")
  }
}

@Suite(.timeLimit(.minutes(1))) struct JSONStructureTests {
  static func pieces(_ json: String) throws -> [String] {
    let bytes = Array(json.utf8)
    return try bytes.withUnsafeBytes { buffer in
      try JSONStructure.arrayElements(buffer).map { String(decoding: buffer[$0], as: UTF8.self) }
    }
  }

  @Test func splitsElementsWhateverTheirStringsHold() throws {
    #expect(
      try Self.pieces(#" [ {"a": "]},\"["}, [1, {"b": 2}] ,"x",  -1.5e3, null ] "#)
        == [#"{"a": "]},\"["}"#, #"[1, {"b": 2}]"#, #""x""#, "-1.5e3", "null"])
    #expect(try Self.pieces("[]").isEmpty)
  }

  @Test(arguments: [#"{"a": 1}"#, "[1, 2", #"[{"a": "x]"#, "[1 2]", "[1,]", "[1] x", ""])
  func refusesWhatIsNotOneArray(_ json: String) {
    #expect(throws: JSONShapeError.self) { try Self.pieces(json) }
  }
}
