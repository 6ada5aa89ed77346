import CoreMetrics
import DurableQueue
import KafkaPublisher
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// The process: arguments, environment, logging, then the relay until it stops.
package enum RelayMain {
  package static func main() async {
    let arguments = CommandLine.arguments.dropFirst()
    if arguments.contains("--help") || arguments.contains("-h") {
      print(RelayConfiguration.helpText)
      return
    }
    let command = arguments.first.flatMap(Command.init(rawValue:))
    if let unknown = arguments.dropFirst(command == nil ? 0 : 1).first {
      fail("unknown argument \(unknown): the relay is configured by environment variables only")
    }
    if command == .version {
      print("skywalking-kafka-relay \(RelayVersion.current)")
      return
    }
    let configuration: RelayConfiguration
    do {
      configuration = try RelayConfiguration(environment: processEnvironment())
    } catch {
      fail("\(error)")
    }
    switch command {
    case .checkConfig:
      do {
        for warning in try Relay.check(configuration) { print("warning: \(warning)") }
      } catch {
        fail("\(error)")
      }
      print("configuration is valid: \(configuration.redactedSummary)")
      return
    case .replayDeadLetters:
      await replayDeadLetters(configuration)
      return
    case .verifyQueue:
      exit(verifyQueue(configuration))
    case .version, nil:
      break
    }
    let (level, format) = (configuration.logLevel, configuration.logFormat)
    LoggingSystem.bootstrap { label in
      var handler: any LogHandler =
        switch format {
        case .text: StreamLogHandler.standardError(label: label)
        case .json: JSONLogHandler(label: label)
        }
      handler.logLevel = level
      return handler
    }
    let logger = Logger(label: "skywalking-kafka-relay")
    do {
      try await Relay(configuration: configuration, logger: logger).run()
    } catch {
      logger.critical("relay stopped on an error: \(error)")
      exit(1)
    }
  }

  enum Command: String {
    case version = "--version"
    case checkConfig = "--check-config"
    case replayDeadLetters = "--replay-dead-letters"
    case verifyQueue = "--verify-queue"
  }

  /// Queues the dead letters again, with the relay stopped (the queue's lock says if it is not).
  private static func replayDeadLetters(_ configuration: RelayConfiguration) async {
    do {
      let queue = try DurableQueue(
        configuration: configuration.queue, logger: Logger(label: "replay"),
        metricsFactory: NOOPMetricsHandler.instance)
      defer { queue.close() }
      let replayed = try await DeadLetterFile.replay(
        directory: configuration.queue.directory, into: queue)
      guard let movedTo = replayed.movedTo else {
        print("no dead letters in \(configuration.queue.directory)")
        return
      }
      print(
        "queued \(replayed.records) dead-lettered records again; the relay delivers them when it "
          + "starts. The replayed file is now \(movedTo): remove it once they are delivered.")
    } catch {
      fail("cannot replay the dead letters: \(error)")
    }
  }

  static func fail(_ message: String) -> Never {
    let text = "skywalking-kafka-relay: \(message)\nRun with --help to list every variable.\n"
    _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    exit(2)
  }
}

extension RelayConfiguration {
  static var helpText: String {
    var text = """
      skywalking-kafka-relay: receives SkyWalking agents' gRPC reports, stores them in a disk
      queue, answers the agent, then publishes each segment to Kafka keyed by trace id.

      Configured only by environment variables:

      """
    let width = EnvironmentVariable.all.map(\.name.count).max() ?? 0
    for variable in EnvironmentVariable.all {
      let padding = String(repeating: " ", count: width - variable.name.count)
      let shown = variable.defaultValue.isEmpty ? "(unset)" : variable.defaultValue
      text += "  \(variable.name)\(padding)  default \(shown)\n"
      text += "  \(String(repeating: " ", count: width))  \(variable.meaning)\n"
    }
    text += """

      Endpoints: gRPC for agents; HTTP /healthz, /readyz, /status and /metrics for operators.
      --check-config validates the environment and exits without starting: TLS files loaded,
      a throwaway Kafka producer created (properties and its TLS files checked by librdkafka,
      no connection made), the queue directory created if missing, written, locked and removed
      again if it was created, refused when a running relay holds it, and its free space
      compared with the capacity + two segment files + the dead-letter cap (more than the
      whole filesystem: refused; more than is free: a warning). Exit 2 names the variable.
      --verify-queue reads a stopped relay's queue without changing it and reports its
      records, bytes, age range, damaged spans (file, offsets, bytes), confirmed position and
      dead letters; exit 0 when sound, 1 when damaged, 2 when it cannot (a running relay).
      --replay-dead-letters queues dead-letter.log again (relay stopped); the next start
      delivers it. --version prints the version.

      """
    return text
  }
}
