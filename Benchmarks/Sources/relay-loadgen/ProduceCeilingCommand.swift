import ArgumentParser
import CRdKafka
import KafkaPublisher
import SystemClock

/// Ceiling (a): librdkafka producing the same segments straight to the same cluster, with the
/// relay's producer settings, so the Kafka side of the relay can be read as a fraction of it.
struct ProduceCeilingCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "produce-ceiling",
    abstract: "Produce segments directly with librdkafka and measure delivered segments/s.")

  @Option(help: "Kafka bootstrap servers.")
  var kafka: String

  @Option(help: "Topic to produce to.")
  var topic = "skywalking-segments"

  @Option(
    name: .customLong("producer-property"),
    help: "Extra librdkafka property name=value (applied after the relay's defaults).")
  var producerProperties: [String] = []

  @OptionGroup var segments: SegmentOptions
  @OptionGroup var bounds: BoundOptions

  func run() async throws {
    let corpus = try segments.corpus()
    var extra: [String: String] = [:]
    for property in producerProperties {
      let parts = property.split(separator: "=", maxSplits: 1).map(String.init)
      guard parts.count == 2 else { throw ValidationError("--producer-property needs name=value") }
      extra[parts[0]] = parts[1]
    }
    // Exactly the relay's producer (its defaults, then the same overrides), minus the relay's
    // log forwarding, which needs a consumer of librdkafka's log queue.
    let relay = KafkaPublisherConfiguration(
      bootstrapServers: kafka, producerProperties: extra, deadLetterDirectory: "")
    let properties = relay.effectiveProducerProperties.filter { $0.name != "log.queue" }
    let producer = try KafkaClient.make(
      RD_KAFKA_PRODUCER, properties: properties.map { ($0.name, $0.value) })
    defer { rd_kafka_destroy(producer) }
    let events = rd_kafka_queue_get_main(producer)
    defer { rd_kafka_queue_destroy(events) }
    guard let topicHandle = rd_kafka_topic_new(producer, topic, nil) else {
      throw LoadgenError(.kafka, "cannot create a handle for topic \(topic)")
    }
    defer { rd_kafka_topic_destroy(topicHandle) }
    _ = try KafkaClient.partitionCount(handle: producer, topic: topic)

    var produced: UInt64 = 0
    var delivered = 0
    var failed = 0
    let start = SystemClock.uptimeNanoseconds()
    let deadline = start + UInt64(bounds.duration * 1e9)
    var lastDelivery = start
    func drainEvents(timeoutMillis: Int32) {
      while let event = rd_kafka_queue_poll(events, timeoutMillis) {
        defer { rd_kafka_event_destroy(event) }
        guard rd_kafka_event_type(event) == RD_KAFKA_EVENT_DR else { continue }
        while let message = rd_kafka_event_message_next(event) {
          if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            delivered += 1
          } else {
            failed += 1
          }
        }
        lastDelivery = SystemClock.uptimeNanoseconds()
        if timeoutMillis > 0 { return }
      }
    }
    while SystemClock.uptimeNanoseconds() < deadline && produced < (bounds.count ?? .max) {
      let value = corpus.segment(sequence: produced)
      let key = corpus.traceID(sequence: produced)
      let result = value.withUnsafeBytes { value in
        key.withUnsafeBytes { key in
          rd_kafka_produce(
            topicHandle, KafkaClient.unassignedPartition, RD_KAFKA_MSG_F_COPY,
            UnsafeMutableRawPointer(mutating: value.baseAddress), value.count,
            key.baseAddress, key.count, nil)
        }
      }
      if result == 0 {
        produced += 1
        if produced % 64 == 0 { drainEvents(timeoutMillis: 0) }
      } else if rd_kafka_last_error() == RD_KAFKA_RESP_ERR__QUEUE_FULL {
        drainEvents(timeoutMillis: 10)
      } else {
        throw LoadgenError(
          .kafka, "produce failed: \(String(cString: rd_kafka_err2str(rd_kafka_last_error())))")
      }
    }
    let flushDeadline = SystemClock.uptimeNanoseconds() + 60_000_000_000
    while delivered + failed < Int(produced) && SystemClock.uptimeNanoseconds() < flushDeadline {
      drainEvents(timeoutMillis: 100)
    }
    var report = RunReport(
      mode: "produce-ceiling", seconds: Double(lastDelivery - start) / 1e9, segments: delivered,
      averageSegmentBytes: corpus.averageBytes)
    report.target = kafka
    report.segmentSizes = segments.segmentSize
    report.failedStreams = failed
    report.print()
  }
}
