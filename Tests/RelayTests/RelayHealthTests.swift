import AdminServer
import CoreMetrics
import DurableQueue
import Foundation
import KafkaPublisher
import Logging
import RelayTestSupport
import SystemClock
import Testing

@testable import RelayApp

/// What `/readyz`, `/status` and grpc.health report, from real stages that are not running: a
/// queue in a temporary directory and a publisher whose brokers are never contacted.
@Suite(.timeLimit(.minutes(1))) struct RelayHealthTests {
  static func withHealth(_ body: (RelayHealth) throws -> Void) throws {
    let temporary = try TemporaryDirectory(prefix: "relay-health")
    defer { temporary.remove() }
    let directory = temporary.path
    let queue = try DurableQueue(
      configuration: DurableQueueConfiguration(directory: directory),
      logger: Logger(label: "health-tests"), metricsFactory: NOOPMetricsHandler.instance)
    defer { queue.close() }
    let publisher = try KafkaPublisher(
      configuration: KafkaPublisherConfiguration(
        bootstrapServers: "127.0.0.1:1", deadLetterDirectory: directory),
      queue: queue, logger: Logger(label: "health-tests"),
      metricsFactory: NOOPMetricsHandler.instance)
    try body(RelayHealth(queue: queue, publisher: publisher))
  }

  /// A probe before the gRPC port listens (or after shutdown began) keeps traffic away.
  @Test func isReadyOnlyWhileTheGRPCEndpointServes() throws {
    try Self.withHealth { health in
      #expect(health.readiness.status == 503)
      #expect(health.readinessLabel == "not_serving")
      health.setGRPCServing(true)
      #expect(health.readiness.status == 200)
      #expect(health.notReadyReason == nil)
      #expect(health.readinessLabel == "ok")
      health.setGRPCServing(false)
      #expect(health.readiness.status == 503)
    }
  }

  /// A Kafka outage is what the disk is for: still ready, but the stall is said, with the count
  /// and the last error, once records waited and nothing was delivered for 10 s.
  @Test func reportsAStalledDeliveryWithoutTurningUnready() throws {
    try Self.withHealth { health in
      let now = SystemClock.epochMilliseconds() + 60_000
      let waiting = QueueStatus(
        bytes: 1000, unconfirmedRecords: 42, oldestUnconfirmedMillis: now - 30_000, isFull: false,
        lastWriteError: nil, corruptRecordsSkipped: 0)
      let down = PublisherStatus(lastError: "_TRANSPORT: connection refused")
      let stall = try #require(
        health.deliveryStall(queueStatus: waiting, publisherStatus: down, now: now))
      #expect(stall.contains("42 records waiting on disk"))
      #expect(stall.contains("connection refused"))

      let fresh = QueueStatus(
        bytes: 1000, unconfirmedRecords: 42, oldestUnconfirmedMillis: now - 5_000, isFull: false,
        lastWriteError: nil, corruptRecordsSkipped: 0)
      #expect(
        health.deliveryStall(queueStatus: fresh, publisherStatus: down, now: now) == nil,
        "records younger than the threshold are not a stall")
      let delivering = PublisherStatus(lastDeliveryMillis: now - 1_000, delivered: 10)
      #expect(
        health.deliveryStall(queueStatus: waiting, publisherStatus: delivering, now: now) == nil)
      let empty = QueueStatus(
        bytes: 0, unconfirmedRecords: 0, oldestUnconfirmedMillis: nil, isFull: false,
        lastWriteError: nil, corruptRecordsSkipped: 0)
      #expect(health.deliveryStall(queueStatus: empty, publisherStatus: down, now: now) == nil)
    }
  }

  @Test func statusDocumentNamesEachStage() throws {
    try Self.withHealth { health in
      health.setGRPCServing(true)
      let document = String(decoding: health.statusJSON.body, as: UTF8.self)
      let object = try #require(
        try JSONSerialization.jsonObject(with: Data(document.utf8)) as? [String: Any])
      #expect(Set(object.keys).isSuperset(of: ["grpc", "queue", "kafka"]), "\(document)")
      #expect((object["grpc"] as? [String: Any])?["serving"] as? Bool == true)
    }
  }
}
