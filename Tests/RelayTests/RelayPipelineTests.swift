import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import KafkaPublisher
import Logging
import MockKafka
import NIOCore
import RelayTestSupport
import SkyWalkingGRPC
import SkyWalkingProtocol
import SwiftProtobuf
import Testing

@testable import RelayApp

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// The whole relay in-process, between a grpc-swift 2 client and librdkafka's mock cluster.
@Suite(.serialized, .timeLimit(.minutes(2))) struct RelayPipelineTests {
  struct Running {
    let grpcPort: Int
    let adminPort: Int
  }

  static func withRelay(
    cluster: KafkaMockCluster, directory: TemporaryDirectory, extra: [String: String] = [:],
    _ body: (Running) async throws -> Void
  ) async throws {
    let configuration = try RelayConfiguration(
      environment: [
        "SW_RELAY_GRPC_ADDRESS": "127.0.0.1:0",
        "SW_RELAY_ADMIN_ADDRESS": "127.0.0.1:0",
        // Not the default 0.0.0.0:12800, which another relay on the machine may hold.
        "SW_RELAY_HTTP_ADDRESS": "127.0.0.1:0",
        "SW_RELAY_QUEUE_DIR": directory.path,
        "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrapServers,
        "SW_RELAY_SHUTDOWN_TIMEOUT_S": "2",
      ].merging(extra) { $1 })
    let (ready, continuation) = AsyncStream.makeStream(of: Running.self)
    var relay = Relay(configuration: configuration, logger: Logger(label: "relay-test"))
    relay.onReady = { grpc, admin in
      continuation.yield(Running(grpcPort: grpc.port!, adminPort: admin.port!))
    }
    let running = Task { [relay] in
      defer { continuation.finish() }
      try await relay.run()
    }
    defer { running.cancel() }
    var iterator = ready.makeAsyncIterator()
    let addresses = try #require(await iterator.next())
    try await body(addresses)
    running.cancel()
    _ = await running.result
  }

  static func segment(trace: Int, part: Int) -> Skywalking_V3_SegmentObject {
    .with {
      $0.traceID = "trace-\(trace)"
      $0.traceSegmentID = "trace-\(trace)-segment-\(part)"
      $0.service = "checkout"
      $0.serviceInstance = "checkout-1"
      $0.spans = [
        .with {
          $0.operationName = "op-\(trace)-\(part)"
          $0.parentSpanID = -1
        }
      ]
    }
  }

  static func send(_ segments: [Skywalking_V3_SegmentObject], port: Int) async throws {
    let transport = try HTTP2ClientTransport.Posix(
      target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
    try await withGRPCClient(transport: transport) { client in
      let service = Skywalking_V3_TraceSegmentReportService.Client(wrapping: client)
      for chunk in stride(from: 0, to: segments.count, by: 25) {
        let batch = Array(segments[chunk..<min(chunk + 25, segments.count)])
        _ = try await service.collect(
          request: StreamingClientRequest { try await $0.write(contentsOf: batch) })
      }
    }
  }

  static func httpGet(_ port: Int, _ path: String) async throws -> (Int, String) {
    let url = URL(string: "http://127.0.0.1:\(port)\(path)")!
    let (data, response) = try await URLSession.shared.data(from: url)
    return ((response as! HTTPURLResponse).statusCode, String(decoding: data, as: UTF8.self))
  }

  @Test func publishesEverySegmentKeyedByTraceIDWithOneTracePerPartition() async throws {
    let cluster = try KafkaMockCluster(brokers: 3)
    try cluster.createTopic("skywalking-segments", partitions: 6)
    let directory = try TemporaryDirectory(prefix: "relay")
    defer { directory.remove() }
    let segments = (0..<20).flatMap { trace in (0..<5).map { Self.segment(trace: trace, part: $0) }
    }

    try await Self.withRelay(cluster: cluster, directory: directory) { relay in
      try await Self.send(segments, port: relay.grpcPort)
      let consumer = try TestKafkaConsumer(
        bootstrapServers: cluster.bootstrapServers, topic: "skywalking-segments")
      let records = try await consumer.waitForRecords(count: segments.count)
      #expect(records.count == segments.count)

      var partitionsByTrace: [String: Set<Int32>] = [:]
      var valuesByKey: [String: Set<[UInt8]>] = [:]
      for record in records {
        let key = String(decoding: record.key, as: UTF8.self)
        let decoded = try Skywalking_V3_SegmentObject(serializedBytes: record.value)
        #expect(decoded.traceID == key)
        partitionsByTrace[key, default: []].insert(record.partition)
        valuesByKey[key, default: []].insert(record.value)
      }
      for segment in segments {
        #expect(valuesByKey[segment.traceID]?.contains(try segment.serializedBytes()) == true)
      }
      #expect(partitionsByTrace.count == 20)
      #expect(partitionsByTrace.values.allSatisfy { $0.count == 1 })
      #expect(Set(partitionsByTrace.values.flatMap { $0 }).count > 1)

      let (metricsStatus, metrics) = try await Self.httpGet(relay.adminPort, "/metrics")
      #expect(metricsStatus == 200)
      #expect(metrics.contains(#"relay_queued_total{type="segment"} 100"#))
    }
  }

  @Test func namespacePrefixesTheTopic() async throws {
    let cluster = try KafkaMockCluster(brokers: 1)
    let directory = try TemporaryDirectory(prefix: "relay")
    defer { directory.remove() }
    try await Self.withRelay(
      cluster: cluster, directory: directory, extra: ["SW_RELAY_KAFKA_NAMESPACE": "prod"]
    ) { relay in
      try await Self.send([Self.segment(trace: 1, part: 0)], port: relay.grpcPort)
      let consumer = try TestKafkaConsumer(
        bootstrapServers: cluster.bootstrapServers, topic: "prod-skywalking-segments")
      let records = try await consumer.waitForRecords(count: 1)
      #expect(records.map { String(decoding: $0.key, as: UTF8.self) } == ["trace-1"])
    }
  }

  @Test func keepsAcceptingWhileKafkaIsDownAndDeliversEverythingAfterwards() async throws {
    let cluster = try KafkaMockCluster(brokers: 1)
    try cluster.createTopic("skywalking-segments", partitions: 3)
    let directory = try TemporaryDirectory(prefix: "relay")
    defer { directory.remove() }
    try await Self.withRelay(cluster: cluster, directory: directory) { relay in
      try cluster.setBrokerDown(1)
      let segments = (0..<40).map { Self.segment(trace: $0, part: 0) }
      try await Self.send(segments, port: relay.grpcPort)
      let (readyStatus, _) = try await Self.httpGet(relay.adminPort, "/readyz")
      #expect(readyStatus == 200)
      try cluster.setBrokerUp(1)
      let consumer = try TestKafkaConsumer(
        bootstrapServers: cluster.bootstrapServers, topic: "skywalking-segments")
      let records = try await consumer.waitForRecords(count: 40, timeout: .seconds(60))
      #expect(Set(records.map(\.key)) == Set(segments.map { Array($0.traceID.utf8) }))
    }
  }

  @Test func replaysUndeliveredRecordsAfterARestart() async throws {
    let cluster = try KafkaMockCluster(brokers: 1)
    try cluster.createTopic("skywalking-segments", partitions: 3)
    let directory = try TemporaryDirectory(prefix: "relay")
    defer { directory.remove() }
    try cluster.setBrokerDown(1)
    let segments = (0..<10).map { Self.segment(trace: $0, part: 0) }
    try await Self.withRelay(cluster: cluster, directory: directory) { relay in
      try await Self.send(segments, port: relay.grpcPort)
    }
    try cluster.setBrokerUp(1)
    try await Self.withRelay(cluster: cluster, directory: directory) { _ in
      let consumer = try TestKafkaConsumer(
        bootstrapServers: cluster.bootstrapServers, topic: "skywalking-segments")
      let records = try await consumer.waitForRecords(count: 10, timeout: .seconds(60))
      #expect(Set(records.map(\.key)) == Set(segments.map { Array($0.traceID.utf8) }))
    }
  }
}
