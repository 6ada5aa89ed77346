import CoreMetrics
import DurableQueue
import Foundation
import KafkaPublisher
import Logging
import MockKafka
import RelayTestSupport
import ServiceLifecycle

/// A mock cluster, a temp queue directory and helpers to run a publisher between them.
struct PublisherTestHarness: Sendable {
  let cluster: KafkaMockCluster
  let directory: String
  let topic = "skywalking-segments"
  let logger: Logger

  init(partitions: Int = 3, brokers: Int = 1) throws {
    cluster = try KafkaMockCluster(brokers: brokers)
    try cluster.createTopic(topic, partitions: partitions)
    directory =
      FileManager.default.temporaryDirectory
      .appendingPathComponent("kafka-publisher-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    var logger = Logger(label: "kafka-publisher-tests")
    logger.logLevel = .notice
    self.logger = logger
  }

  var deadLetterDirectory: String { directory + "/dead-letter" }
  var deadLetterPath: String { deadLetterDirectory + "/dead-letter.log" }
  var queueDirectory: String { directory + "/queue" }

  /// Small segments so that a few hundred records span several files.
  func openQueue() throws -> DurableQueue {
    try DurableQueue(
      configuration: DurableQueueConfiguration(directory: queueDirectory, fileBytes: 64 << 10),
      logger: logger, metricsFactory: NOOPMetricsHandler.instance)
  }

  func makePublisher(
    queue: DurableQueue, properties: [String: String] = [:],
    shutdownTimeout: Duration = .seconds(5)
  ) throws(KafkaPublisherError) -> KafkaPublisher {
    try KafkaPublisher(
      configuration: KafkaPublisherConfiguration(
        bootstrapServers: cluster.bootstrapServers,
        producerProperties: ["reconnect.backoff.max.ms": "200"].merging(properties) { $1 },
        shutdownTimeout: shutdownTimeout, deadLetterDirectory: deadLetterDirectory),
      queue: queue, logger: logger, metricsFactory: NOOPMetricsHandler.instance)
  }

  func makeConsumer() throws -> TestKafkaConsumer {
    try TestKafkaConsumer(bootstrapServers: cluster.bootstrapServers, topic: topic)
  }

  func append(_ records: [(key: [UInt8], value: [UInt8])], to queue: DurableQueue) async throws {
    var batch = RecordBatch()
    for record in records {
      try batch.append(topic: topic, key: record.key, value: record.value)
    }
    try await queue.append(batch)
  }

  func segmentFileCount() throws -> Int {
    try FileManager.default.contentsOfDirectory(atPath: queueDirectory)
      .filter { $0.hasSuffix(".log") }.count
  }

  func removeDirectory() {
    try? FileManager.default.removeItem(atPath: directory)
  }
}

/// A publisher running in a ServiceGroup, as in the relay, so shutdown is the real graceful path.
struct RunningPublisher: Sendable {
  let publisher: KafkaPublisher
  private let group: ServiceGroup
  private let task: Task<Void, any Error>

  init(_ publisher: KafkaPublisher, logger: Logger) {
    self.publisher = publisher
    let group = ServiceGroup(services: [publisher], logger: logger)
    self.group = group
    task = Task { try await group.run() }
  }

  func shutDown() async throws {
    await group.triggerGracefulShutdown()
    try await task.value
  }
}

extension DurableQueue {
  /// True when every appended record has been confirmed.
  var isFullyConfirmed: Bool {
    read(from: confirmedPosition, maxRecords: 1, maxBytes: 1 << 20).records.isEmpty
  }
}

/// Distinct, non-text payloads (every byte value occurs) so byte-exactness is really checked.
func makeValue(index: Int, length: Int) -> [UInt8] {
  (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &* 7) }
}
