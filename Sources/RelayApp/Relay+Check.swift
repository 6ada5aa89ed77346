import AgentIngest
import AgentReceiver
import CoreMetrics
import DurableQueue
import KafkaPublisher
import Logging

/// `--check-config`: everything a start would refuse, found without starting.
extension Relay {
  /// What `--check-config` adds to parsing: the TLS files loaded, the OAP link built, a
  /// throwaway producer created and destroyed (librdkafka reads its TLS files only then), and
  /// the queue directory probed as a start uses it. Each refusal names the variable to fix;
  /// returns warnings that do not stop a start.
  static func check(_ configuration: RelayConfiguration) throws -> [String] {
    if let tls = configuration.receiver.tls {
      do {
        try tls.validate()
      } catch {
        throw StartupError(error, variable: EnvironmentVariable.agentEndpointField)
      }
    }
    _ = try makeForwarder(
      configuration, logger: Logger(label: "check"), metrics: NOOPMetricsHandler.instance)
    var publisher = configuration.publisher
    if configuration.embeddedKafka { publisher.bootstrapServers = "127.0.0.1:9092" }
    do {
      try publisher.validateProducer()
    } catch {
      throw producerError(error, publisher: publisher)
    }
    let directory = configuration.queue.directory
    let probe: QueueDirectoryProbe
    do {
      probe = try QueueDirectoryProbe.probe(directory)
    } catch {
      throw ConfigurationError(
        code: .unusableFile, variable: EnvironmentVariable.queueDirectory.name, value: directory,
        expected: error.code == .directoryInUse
          ? "a queue directory no running relay holds"
          : "a directory the relay can create, write and lock",
        cause: error)
    }
    let space = QueueSpace(configuration: configuration, probe: probe)
    if let refusal = space.refusal { throw refusal }
    return (publisher.producerLimitWarning.map { [$0] } ?? []) + (space.warning.map { [$0] } ?? [])
  }

  /// A producer refusal, naming the variable of the property librdkafka names in it (`ssl.ca.
  /// location failed: …` is `SW_RELAY_KAFKA_PRODUCER_SSL_CA_LOCATION`). A secret's value is not
  /// shown.
  static func producerError(_ error: KafkaPublisherError, publisher: KafkaPublisherConfiguration)
    -> ConfigurationError
  {
    let named = publisher.producerProperties.keys.filter { error.message.contains($0) }
      .max { $0.count < $1.count }
    guard let property = named else {
      let bootstrap = error.message.contains("bootstrap.servers")
      return ConfigurationError(
        code: .invalidValue,
        variable: bootstrap
          ? EnvironmentVariable.kafkaBootstrapServers.name
          : EnvironmentVariable.kafkaProducerPrefix.name,
        value: bootstrap ? publisher.bootstrapServers : nil,
        expected: "Kafka producer settings librdkafka accepts", cause: error)
    }
    let variable =
      EnvironmentVariable.producerPropertyPrefix
      + property.uppercased().split(separator: ".").joined(separator: "_")
    return ConfigurationError(
      code: property.hasSuffix(".location") ? .unusableFile : .invalidValue, variable: variable,
      value: KafkaPublisherConfiguration.isSecret(property: property)
        ? nil : publisher.producerProperties[property],
      expected: property.hasSuffix(".location")
        ? "a file librdkafka can load" : "a value librdkafka accepts for \(property)",
      cause: error)
  }
}

/// Whether the queue directory's filesystem can hold what the relay may write there: the
/// capacity, two log files past it (the file being written when the capacity is reached and the
/// next one), and the dead letters' cap.
struct QueueSpace {
  let configuration: RelayConfiguration
  let probe: QueueDirectoryProbe

  var needed: UInt64 {
    UInt64(configuration.queue.maxBytes) + 2 * UInt64(configuration.queue.fileBytes)
      + UInt64(configuration.publisher.deadLetterMaxBytes)
  }

  /// More than the whole filesystem: no cleaning up ever makes it fit, so the capacity is a
  /// mistake (a unit, a zero too many), refused like any other value a start cannot honour.
  var refusal: ConfigurationError? {
    guard needed > probe.filesystemBytes else { return nil }
    return ConfigurationError(
      variable: EnvironmentVariable.queueMaxBytes.name,
      value: String(configuration.queue.maxBytes),
      expected: "a capacity its filesystem can hold: \(breakdown) is more than the whole "
        + "filesystem of \(configuration.queue.directory) (\(probe.filesystemBytes.binarySize))")
  }

  /// More than is free now: other files may yet be removed, or the volume grown, so a start is
  /// not refused; but the disk fills before the capacity is reached, and agents then get
  /// RESOURCE_EXHAUSTED early.
  var warning: String? {
    let room = probe.availableBytes + probe.heldBytes
    guard needed > room else { return nil }
    return
      "\(EnvironmentVariable.queueMaxBytes.name)=\(configuration.queue.maxBytes): \(breakdown) "
      + "is more than \(configuration.queue.directory) has room for: "
      + "\(probe.availableBytes.binarySize) (\(probe.availableBytes) bytes) free plus "
      + "\(probe.heldBytes) bytes its files hold; the disk fills first, and agents are refused "
      + "with RESOURCE_EXHAUSTED \((needed - room).binarySize) short of the capacity"
  }

  private var breakdown: String {
    let queue = configuration.queue
    return "the queue may need \(needed.binarySize) (\(needed) bytes: "
      + "\(EnvironmentVariable.queueMaxBytes.name) \(UInt64(queue.maxBytes).binarySize) + 2 × "
      + "\(EnvironmentVariable.queueSegmentBytes.name) \(UInt64(queue.fileBytes).binarySize) + "
      + "\(EnvironmentVariable.deadLetterMaxBytes.name) "
      + "\(UInt64(configuration.publisher.deadLetterMaxBytes).binarySize))"
  }
}

extension UInt64 {
  /// `900.0 TiB`, `1.5 GiB`, `512 B`: for people, next to the exact byte count.
  var binarySize: String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var value = Double(self)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
      value /= 1024
      unit += 1
    }
    guard unit > 0 else { return "\(self) B" }
    return "\((value * 10).rounded() / 10) \(units[unit])"
  }
}
