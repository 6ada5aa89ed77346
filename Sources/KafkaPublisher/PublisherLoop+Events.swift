import CRdKafka
import CoreMetrics
import LogThrottling
import Logging
import SystemClock

extension PublisherLoop {
  /// Serves librdkafka's main queue until it is empty (so its io-event fd fires again) or a
  /// generous cap is reached. Returns whether there was anything.
  func serveEvents() -> Bool {
    guard let producer else { return false }
    var served = 0
    while served < 10_000, let event = producer.nextEvent() {
      served += 1
      switch rd_kafka_event_type(event) {
      case RD_KAFKA_EVENT_DR: handleDeliveryReports(event)
      case RD_KAFKA_EVENT_ERROR: handleErrorEvent(event)
      case RD_KAFKA_EVENT_LOG: forwardLog(event)
      default: break
      }
      rd_kafka_event_destroy(event)
    }
    return served > 0
  }

  private func handleDeliveryReports(_ event: OpaquePointer) {
    let now = SystemClock.epochMilliseconds()
    var delivered = 0
    while let message = rd_kafka_event_message_next(event) {
      let report = message.pointee
      let sequence = UInt64(UInt(bitPattern: report._private))
      // Reports for records forgotten by a producer recreation are ignored; they come back.
      guard let entry = window.entry(sequence), entry.state == .producing else { continue }
      if report.err == RD_KAFKA_RESP_ERR_NO_ERROR {
        window.update(sequence, to: .finished)
        if let topic = report.rkt.flatMap({ producer?.topicName(of: $0) }) {
          ledger.delivered(
            entry.position, to: .init(topic: topic, partition: report.partition),
            offset: report.offset)
        }
        delivered += 1
        let latencyMillis = now > entry.timestampMillis ? now - entry.timestampMillis : 0
        metrics.deliveryLatency.recordNanoseconds(latencyMillis * 1_000_000)
      } else {
        let topic = report.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        handleFailure(
          sequence, error: report.err, topic: topic,
          key: UnsafeRawBufferPointer(start: report.key, count: report.key_len),
          value: UnsafeRawBufferPointer(start: report.payload, count: report.len))
      }
    }
    guard delivered > 0 else { return }
    status.delivered += delivered
    status.lastDeliveryMillis = now
    status.brokersUp = true
    metrics.delivered.increment(by: delivered)
    machine.recordsDelivered()
  }

  /// librdkafka says when every broker is down but not when one is back, and a quiet relay
  /// delivers nothing that would show it: so while they are down, a broker is asked for
  /// metadata every `brokerProbeInterval` (the thread has nothing to deliver meanwhile).
  func probeBrokersWhileDown() {
    let now = ContinuousClock.now
    guard status.brokersUp == false, now >= nextBrokerProbe, let producer else { return }
    nextBrokerProbe = now + Self.brokerProbeInterval
    guard producer.brokerAnswers(timeoutMilliseconds: 500) else { return }
    status.brokersUp = true
    logger.notice("Kafka brokers reachable again")
  }

  static let brokerProbeInterval = Duration.seconds(5)

  private func handleErrorEvent(_ event: OpaquePointer) {
    let code = rd_kafka_event_error(event)
    let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? code.text
    noteError("\(code.name): \(text)")
    if rd_kafka_event_error_is_fatal(event) != 0 {
      machine.producerFailedFatally(now: .now)
      metrics.failed(reason: RD_KAFKA_RESP_ERR__FATAL.name)
      logger.error("librdkafka producer hit a fatal error", metadata: ["error": "\(text)"])
      return
    }
    if code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN {
      if status.brokersUp != false { nextBrokerProbe = .now + Self.brokerProbeInterval }
      status.brokersUp = false
    }
    if let suppressed = errorThrottle.admit() {
      logger.warning(
        "kafka client error",
        metadata: ["error": "\(code.name): \(text)", "similarSuppressed": "\(suppressed)"])
    }
  }

  private func forwardLog(_ event: OpaquePointer) {
    var facility: UnsafePointer<CChar>?
    var text: UnsafePointer<CChar>?
    var level: Int32 = 0
    guard rd_kafka_event_log(event, &facility, &text, &level) == 0 else { return }
    logger.log(
      level: Self.loggerLevel(syslogLevel: level),
      "\(text.map { String(cString: $0) } ?? "")",
      metadata: ["librdkafka": "\(facility.map { String(cString: $0) } ?? "")"])
  }

  /// librdkafka logs with syslog severities (0 emergency … 7 debug).
  private static func loggerLevel(syslogLevel: Int32) -> Logger.Level {
    switch syslogLevel {
    case ...2: .critical
    case 3: .error
    case 4: .warning
    case 5: .notice
    case 6: .info
    default: .debug
    }
  }

  /// Replaces a producer that librdkafka declared unusable; the new one reads Kafka back first
  /// and then produces again what the old one did not deliver.
  func recreateProducer() {
    let reason = producer?.fatalError().map { "\($0.code.name): \($0.reason)" } ?? "unknown"
    logger.error(
      "recreating the kafka producer after a fatal error",
      metadata: ["error": "\(reason)", "restartFrom": "\(confirmedThrough)"])
    producer?.discardOutstanding()
    producer = nil
    window.reset()
    replayEnd = max(replayEnd, readPosition)
    readPosition = confirmedThrough
    do {
      producer = try RDKafkaProducer(
        configuration: configuration, wakeDescriptor: control.wakeup.writeDescriptor)
      machine.producerRecreated(now: .now)
    } catch {
      logger.critical("cannot recreate the kafka producer", metadata: ["error": "\(error)"])
      noteError(error.message)
      machine.producerRecreationFailed(now: .now)
    }
  }
}
