import CZlib
import DurableQueue
import HTTPReceiver
import NIOHTTP1
import SkyWalkingProtocol
import SwiftProtobuf
import Testing

@Suite(.timeLimit(.minutes(1))) struct AgentHTTPServerTests {
  /// An nginx-lua agent's segment, written from the protocol with every span field.
  static func nginxSegment(_ traceID: String, segment: String = "seg") -> String {
    """
    {"traceId": "\(traceID)", "traceSegmentId": "\(segment)", "service": "nginx",
     "serviceInstance": "nginx-1", "isSizeLimited": false,
     "spans": [{"spanId": 0, "parentSpanId": -1, "startTime": 1700000000000,
                "endTime": 1700000000010, "operationName": "/api", "peer": "backend:80",
                "spanType": "Entry", "spanLayer": "Http", "componentId": 6000, "isError": false,
                "skipAnalysis": false,
                "tags": [{"key": "http.method", "value": "GET"}],
                "logs": [{"time": 1700000000005, "data": [{"key": "event", "value": "x"}]}],
                "refs": [{"refType": "CrossProcess", "traceId": "\(traceID)",
                          "parentTraceSegmentId": "up", "parentSpanId": 1,
                          "parentService": "gw", "parentServiceInstance": "gw-1",
                          "parentEndpoint": "/", "networkAddressUsedAtPeer": "nginx:80"}]}]}
    """
  }

  @Test func anNginxBatchIsQueuedAsSegmentObjectsKeyedByTraceIDBeforeThe200() async throws {
    try await HTTPHarness.with { harness in
      let body =
        "[\(Self.nginxSegment("trace-a", segment: "s1")),\(Self.nginxSegment("trace-b", segment: "s2"))]"
      let response = try await harness.post("/v3/segments", body)
      #expect(response.status == .ok)
      #expect(response.body == "{}")
      let records = harness.queuedRecords()
      #expect(records.map { String(decoding: $0.key, as: UTF8.self) } == ["trace-a", "trace-b"])
      #expect(records.allSatisfy { $0.topic == "skywalking-segments" })
      let segment = try Skywalking_V3_SegmentObject(serializedBytes: Array(records[0].value))
      let span = try #require(segment.spans.first)
      #expect(segment.traceSegmentID == "s1" && segment.serviceInstance == "nginx-1")
      #expect(span.parentSpanID == -1 && span.peer == "backend:80" && span.componentID == 6000)
      #expect(span.tags[0].key == "http.method" && span.logs[0].data[0].value == "x")
      #expect(span.refs[0].networkAddressUsedAtPeer == "nginx:80" && span.refs[0].parentSpanID == 1)
    }
  }

  @Test func aPartialBatchQueuesTheValidElementsAndNamesTheBadOnes() async throws {
    try await HTTPHarness.with { harness in
      let body = """
        [\(Self.nginxSegment("good-1")),
         {"traceId": "bad", "spans": [{"spanId": "one"}]},
         {"traceId": "", "traceSegmentId": "no-trace"},
         \(Self.nginxSegment("good-2"))]
        """
      let response = try await harness.post("/v3/segments", body)
      #expect(response.status == .badRequest)
      #expect(response.body.contains("rejected 2 of 4 segments"), "\(response.body)")
      #expect(response.body.contains("element 1: field spans[0].spanId"), "\(response.body)")
      #expect(response.body.contains("the 2 valid ones were queued"), "\(response.body)")
      let keys = harness.queuedRecords().map { String(decoding: $0.key, as: UTF8.self) }
      #expect(keys == ["good-1", "good-2"])
    }
  }

  @Test func aBodyThatIsNotAnArrayOrNotJSONIsRefused400() async throws {
    try await HTTPHarness.with { harness in
      let notArray = try await harness.post("/v3/segments", Self.nginxSegment("t"))
      #expect(notArray.status == .badRequest)
      #expect(notArray.body.contains("the body is not a JSON array"), "\(notArray.body)")
      let broken = try await harness.post("/v3/segment", #"{"traceId": "#)
      #expect(broken.status == .badRequest)
      #expect(harness.queuedRecords().isEmpty)
    }
  }

  @Test func managementAndLogsGetTheKeysAndCompletionOfTheirGRPCForms() async throws {
    try await HTTPHarness.with { harness in
      let properties = try await harness.post(
        "/v3/management/reportProperties",
        #"{"service": "py", "serviceInstance": "py-1", "properties": [{"key": "language", "value": "python"}]}"#
      )
      #expect(properties.status == .ok)
      let ping = try await harness.post(
        "/v3/management/keepAlive", #"{"service": "py", "serviceInstance": "py-1"}"#)
      #expect(ping.status == .ok)
      let logs = try await harness.post(
        "/v3/logs",
        #"[{"service": "py", "serviceInstance": "py-1", "body": {"text": {"text": "one"}}},"#
          + #" {"body": {"text": {"text": "two"}}, "traceContext": {"traceId": "t7"}}]"#)
      #expect(logs.status == .ok)
      let records = harness.queuedRecords()
      try #require(records.count == 4)
      #expect(
        records.map { "\($0.topic) \(String(decoding: $0.key, as: UTF8.self))" } == [
          "skywalking-managements register-py-1", "skywalking-managements py-1",
          "skywalking-logs py", "skywalking-logs t7",
        ])
      // The second log named no service: it carries the first one's, as on a gRPC stream.
      let second = try Skywalking_V3_LogData(serializedBytes: Array(records[3].value))
      #expect(second.service == "py" && second.serviceInstance == "py-1")
    }
  }

  @Test func aBodyOverTheLimitIsRefused413AndTheConnectionClosed() async throws {
    try await HTTPHarness.with(configuration: .loopback { $0.maxBodyBytes = 2048 }) { harness in
      try await harness.withConnection { connection in
        let big =
          "[" + Array(repeating: Self.nginxSegment("t"), count: 5).joined(separator: ",") + "]"
        let response = try await connection.post("/v3/segments", Array(big.utf8))
        #expect(response.status == .payloadTooLarge)
        #expect(response.body.contains("2048 bytes (maxBodyBytes)"))
        #expect(try await connection.isClosedByServer())
      }
      #expect(harness.queuedRecords().isEmpty)
    }
  }

  @Test func aWrongTokenIsRefused401AndTheRightOneAccepted() async throws {
    try await HTTPHarness.with(configuration: .loopback { $0.authenticationToken = "s3cret" }) {
      harness in
      let refused = try await harness.post(
        "/v3/segment", Self.nginxSegment("t"), headers: [("authentication", "guess")])
      #expect(refused.status == .unauthorized)
      let missing = try await harness.post("/v3/segment", Self.nginxSegment("t"))
      #expect(missing.status == .unauthorized)
      #expect(harness.queuedRecords().isEmpty)
      let accepted = try await harness.post(
        "/v3/segment", Self.nginxSegment("t"), headers: [("authentication", "s3cret")])
      #expect(accepted.status == .ok)
      #expect(harness.queuedRecords().count == 1)
    }
  }

  static func deflated(_ bytes: [UInt8]) -> [UInt8] {
    var size = compressBound(uLong(bytes.count))
    var compressed = [UInt8](repeating: 0, count: Int(size))
    #expect(compress2(&compressed, &size, bytes, uLong(bytes.count), 6) == Z_OK)
    return Array(compressed[0..<Int(size)])
  }

  /// A gateway that compresses its posts (the OAP's REST server inflates them): queued as the
  /// plain JSON would be; a decompression bomb gets 413 and queues nothing; an encoding the OAP
  /// cannot read either gets 415.
  @Test func compressedBodiesAreInflatedUnderTheBodyLimit() async throws {
    try await HTTPHarness.with(configuration: .loopback { $0.maxBodyBytes = 1 << 20 }) {
      harness in
      let body = Self.deflated(
        Array("[\(Self.nginxSegment("z1")),\(Self.nginxSegment("z2"))]".utf8))
      let accepted = try await harness.withConnection { connection in
        try await connection.post(
          "/v3/segments", body, headers: [("Content-Encoding", "deflate")])
      }
      #expect(accepted.status == .ok)
      #expect(harness.queuedRecords().count == 2)
      let bomb = Self.deflated([UInt8](repeating: 0x20, count: 32 << 20))
      let refused = try await harness.withConnection { connection in
        try await connection.post("/v3/segments", bomb, headers: [("Content-Encoding", "deflate")])
      }
      #expect(refused.status == .payloadTooLarge)
      let unknown = try await harness.withConnection { connection in
        try await connection.post("/v3/segments", body, headers: [("Content-Encoding", "br")])
      }
      #expect(unknown.status == .unsupportedMediaType)
      #expect(harness.queuedRecords().count == 2)
    }
  }

  @Test func oneKeepAliveConnectionServesRequestsOneAfterAnother() async throws {
    try await HTTPHarness.with { harness in
      let statuses = try await harness.withConnection { connection in
        var statuses: [HTTPResponseStatus] = []
        for index in 0..<3 {
          statuses.append(
            try await connection.post("/v3/segment", Array(Self.nginxSegment("k\(index)").utf8))
              .status)
        }
        statuses.append(try await connection.post("/nowhere", Array("{}".utf8)).status)
        statuses.append(
          try await connection.post("/v3/segment", Array(Self.nginxSegment("k3").utf8)).status)
        return statuses
      }
      #expect(statuses == [.ok, .ok, .ok, .notFound, .ok])
      #expect(harness.queuedRecords().count == 4)
    }
  }

  @Test func aFullQueueIsAnswered429WithRetryAfter() async throws {
    try await HTTPHarness.with(queueMaxBytes: 1 << 20) { harness in
      let operation = String(repeating: "y", count: 300_000)
      let segment =
        #"{"traceId": "fill", "traceSegmentId": "s", "spans": [{"operationName": "\#(operation)"}]}"#
      var responses: [TestResponse] = []
      for _ in 0..<5 { responses.append(try await harness.post("/v3/segment", segment)) }
      #expect(responses.first?.status == .ok)
      let refused = try #require(responses.first { $0.status != .ok })
      #expect(refused.status == .tooManyRequests)
      #expect(refused.headers.first(name: "Retry-After") == "5")
      #expect(refused.body.contains("queue full"))
    }
  }

  @Test func aQueueThatCannotTakeDataIsAnswered503WithRetryAfter() async throws {
    try await HTTPHarness.with { harness in
      harness.queue.close()
      let response = try await harness.post("/v3/segment", Self.nginxSegment("late"))
      #expect(response.status == .serviceUnavailable)
      #expect(response.headers.first(name: "Retry-After") == "5")
      #expect(
        response.body.contains("0 of 1 segments in this call were queued"), "\(response.body)")
    }
  }

  @Test func browserDataWithoutAnOAPIsRefusedNamingTheSetting() async throws {
    try await HTTPHarness.with(
      configuration: .loopback { $0.settingName = { $0 == .oapHTTP ? "OAP_REST" : $0.rawValue } }
    ) {
      harness in
      let response = try await harness.post("/browser/perfData", #"{"service": "web"}"#)
      #expect(response.status == .notImplemented)
      #expect(response.body.contains("OAP_REST"))
      #expect(harness.queuedRecords().isEmpty)
    }
  }

  @Test func anUnreachableOAPIsAnswered503AndNothingClaimsDelivery() async throws {
    try await HTTPHarness.with(
      configuration: .loopback {
        // Port 1 on loopback refuses connections.
        $0.oapHTTP = OAPHTTPAddress(host: "127.0.0.1", port: 1)
      }
    ) { harness in
      let response = try await harness.post("/browser/errorLogs", #"[{"service": "web"}]"#)
      #expect(response.status == .serviceUnavailable)
      #expect(response.headers.first(name: "Retry-After") == "5")
      #expect(response.body.contains("127.0.0.1:1"))
    }
  }

  @Test func forwardsBrowserDataToTheOAPAndPassesItsAnswerBack() async throws {
    // A second endpoint stands in for the OAP; it has no OAP itself, so it answers 501 naming
    // its own setting and the path it got: that answer coming back proves the request was
    // forwarded, path and token intact, and the OAP's answer passed through.
    try await HTTPHarness.with(
      configuration: .loopback {
        $0.authenticationToken = "t0k"
        $0.settingName = { $0 == .oapHTTP ? "STAND_IN" : $0.rawValue }
      }
    ) { oap in
      try await HTTPHarness.with(
        configuration: .loopback {
          $0.oapHTTP = OAPHTTPAddress(host: "127.0.0.1", port: oap.port)
          $0.authenticationToken = "t0k"
        }
      ) { relay in
        let response = try await relay.post(
          "/browser/perfData/webVitals", #"{"service": "web"}"#,
          headers: [("authentication", "t0k")])
        #expect(response.status == .notImplemented)
        #expect(response.body.contains("/browser/perfData/webVitals"), "\(response.body)")
        #expect(response.body.contains("STAND_IN"), "\(response.body)")
      }
    }
  }
}
