import GRPCCore
import NIOCore
import NIOHPACK
import Testing

@testable import AgentReceiver

/// What the endpoint reads from and writes into headers, without a stream.
@Suite(.timeLimit(.minutes(1))) struct GRPCHeaderParsingTests {
  @Test(arguments: [
    ("2S", TimeAmount.seconds(2)), ("1H", .hours(1)), ("3M", .minutes(3)),
    ("250m", .milliseconds(250)), ("7u", .microseconds(7)), ("99999999n", .nanoseconds(99_999_999)),
    ("0S", .zero),
  ])
  func readsEveryGRPCTimeoutUnit(value: String, expected: TimeAmount) {
    #expect(TimeAmount(grpcTimeout: value[...]) == expected)
  }

  /// Anything malformed means no deadline, as other gRPC servers treat it, never an error.
  @Test(arguments: ["", "S", "5", "5s", "123456789S", "-1S", "1.5S", "1 S"])
  func ignoresMalformedTimeouts(value: String) {
    #expect(TimeAmount(grpcTimeout: value[...]) == nil)
  }

  @Test func percentEncodesTheStatusMessage() {
    let status = GRPCStatus(code: .invalidArgument, message: "100% bad\nsegment é")
    #expect(status.encodedMessage == "100%25 bad%0Asegment %C3%A9")
  }

  @Test func labelsEveryCodeForMetrics() {
    #expect(Status.Code.resourceExhausted.label == "resource_exhausted")
    #expect(Status.Code.internalError.label == "internal")
    #expect(Status.Code.ok.label == "ok")
    #expect(Status.Code.unknown.label == "unknown")
  }

  static func request(_ extra: [(String, String)] = [], method: String = "POST") -> HPACKHeaders {
    var headers: HPACKHeaders = [
      ":method": method, ":path": "/skywalking.v3.TraceSegmentReportService/collect",
      "content-type": "application/grpc",
    ]
    for (name, value) in extra { headers.replaceOrAdd(name: name, value: value) }
    return headers
  }

  /// gzip and deflate are what the OAP's grpc-java server decodes, so the relay takes them; a
  /// sender with any other encoding learns why at once, before any of its body is read.
  @Test func refusesOnlyEncodingsTheOAPCannotDecodeEither() throws {
    let refusal = try #require(
      GRPCRequestHead.refusal(of: Self.request([("grpc-encoding", "snappy")])))
    #expect(refusal.status.code == .unimplemented)
    #expect(refusal.status.message.contains("grpc-encoding snappy is not supported"))
    #expect(GRPCRequestHead.refusal(of: Self.request([("grpc-encoding", "gzip")])) == nil)
    #expect(GRPCRequestHead.refusal(of: Self.request([("grpc-encoding", "deflate")])) == nil)
    #expect(GRPCRequestHead.refusal(of: Self.request([("grpc-encoding", "identity")])) == nil)
    #expect(GRPCRequestHead.refusal(of: Self.request()) == nil)
  }

  @Test func refusesWhatIsNotAGRPCCall() throws {
    let get = try #require(GRPCRequestHead.refusal(of: Self.request(method: "GET")))
    #expect(get.status.code == .unimplemented)
    let json = try #require(
      GRPCRequestHead.refusal(of: Self.request([("content-type", "application/json")])))
    #expect(json.status.code == .internalError)
  }
}
