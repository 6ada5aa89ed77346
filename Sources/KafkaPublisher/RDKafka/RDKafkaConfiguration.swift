import CRdKafka

/// Owns an `rd_kafka_conf_t` until `makeClient` hands it to librdkafka.
///
/// Not Sendable: built and consumed on one thread.
package final class RDKafkaConfiguration {
  private var pointer: OpaquePointer?

  package init() {
    pointer = rd_kafka_conf_new()
  }

  deinit {
    if let pointer { rd_kafka_conf_destroy(pointer) }
  }

  /// The relay's producer: its defaults, then the user's properties, each validated by
  /// librdkafka as it is set.
  convenience init(producer configuration: KafkaPublisherConfiguration) throws(KafkaPublisherError)
  {
    self.init()
    for (name, value) in configuration.effectiveProducerProperties { try set(name, value) }
  }

  /// Sets one property; librdkafka validates names and values here, so a typo fails at startup.
  package func set(_ name: String, _ value: String) throws(KafkaPublisherError) {
    var errorText = [CChar](repeating: 0, count: 512)
    let result = rd_kafka_conf_set(pointer, name, value, &errorText, errorText.count)
    guard result == RD_KAFKA_CONF_OK else {
      var reason = String(cStringBuffer: errorText)
      // librdkafka quotes rejected values; a rejected secret must not reach the logs that way.
      if KafkaPublisherConfiguration.isSecret(property: name), !value.isEmpty,
        reason.contains(value)
      {
        reason = "invalid value for \(name) (value redacted)"
      }
      throw KafkaPublisherError(
        code: .invalidProperty, message: "producer property '\(name)' rejected: \(reason)")
    }
  }

  /// Subscribes the client to events on its main queue instead of C callbacks.
  package func enableEvents(_ events: Int32) {
    rd_kafka_conf_set_events(pointer, events)
  }

  /// Drops librdkafka's log lines (a short-lived helper client whose failures are reported as
  /// errors anyway).
  func discardLogs() {
    rd_kafka_conf_set_log_cb(pointer, nil)
  }

  /// Creates the client; on success librdkafka owns the configuration.
  package func makeClient(_ type: rd_kafka_type_t) throws(KafkaPublisherError) -> OpaquePointer {
    var errorText = [CChar](repeating: 0, count: 512)
    guard let handle = rd_kafka_new(type, pointer, &errorText, errorText.count) else {
      throw KafkaPublisherError(
        code: .clientCreationFailed,
        message: "librdkafka refused the configuration: \(String(cStringBuffer: errorText))")
    }
    pointer = nil
    return handle
  }
}

extension String {
  /// Decodes a NUL-terminated C buffer filled in by librdkafka.
  package init(cStringBuffer buffer: [CChar]) {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    self = String(decoding: bytes, as: UTF8.self)
  }
}
