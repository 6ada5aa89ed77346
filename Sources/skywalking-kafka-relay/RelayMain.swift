import Logging

#if canImport(Glibc)
  import Glibc
#endif

@main
enum RelayMain {
  static func main() async {
    let arguments = CommandLine.arguments.dropFirst()
    if arguments.contains("--help") || arguments.contains("-h") {
      print(RelayConfiguration.helpText)
      return
    }
    let checkOnly = arguments.first == "--check-config"
    if let unknown = arguments.dropFirst(checkOnly ? 1 : 0).first {
      fail("unknown argument \(unknown): the relay is configured by environment variables only")
    }
    let configuration: RelayConfiguration
    do {
      configuration = try RelayConfiguration(environment: processEnvironment())
    } catch {
      fail("\(error)")
    }
    if checkOnly {
      print("configuration is valid: \(configuration.redactedSummary)")
      return
    }
    let level = configuration.logLevel
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
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

  private static func fail(_ message: String) -> Never {
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
      --check-config validates the environment and exits without starting.

      """
    return text
  }
}
