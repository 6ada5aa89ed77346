import CoreMetrics
import FileReload
import Logging
internal import ServiceLifecycle
import UnixSignals

/// Reads TLS files and token files again when they change on disk, and on SIGHUP, so that
/// cert-manager's renewals and rotated Secrets take effect without a restart (the OAP reloads its
/// own key pairs every 10 s too). Each target keeps what it loaded before when a reload fails.
struct FileReloader: Service {
  /// One thing built from files: the gRPC endpoint's TLS, a token, …
  struct Target: Sendable {
    /// `grpc_tls`, `auth_token`, …: the log's and the metric's name for it.
    let name: String
    let paths: [String]
    let reload: @Sendable (_ forced: Bool) -> Outcome
  }

  enum Outcome: Sendable {
    case unchanged, reloaded
    /// Told in the operator's terms: the variable naming the file that failed, and why.
    case failed(variable: String, reason: String)
  }

  private let targets: [Target]
  private let interval: Duration
  private let hangups: UnixSignalsSequence
  private let logger: Logger
  private let counters: [String: (ok: Counter, failed: Counter)]

  /// - Parameter hangups: SIGHUP, trapped by the caller before anything could send it, so the
  ///   signal's default action (ending the process) never applies once the relay starts.
  init(
    targets: [Target], interval: Duration = .seconds(10), hangups: UnixSignalsSequence,
    logger: Logger, metricsFactory: any MetricsFactory
  ) {
    self.targets = targets
    self.interval = interval
    self.hangups = hangups
    self.logger = logger
    var counters: [String: (ok: Counter, failed: Counter)] = [:]
    for target in targets {
      func counter(_ outcome: String) -> Counter {
        Counter(
          label: "relay_reloads_total", dimensions: [("files", target.name), ("outcome", outcome)],
          factory: metricsFactory)
      }
      counters[target.name] = (counter("ok"), counter("failed"))
    }
    self.counters = counters
  }

  /// Looks at the files every `interval` and at each SIGHUP until graceful shutdown; one loop
  /// does every reload, so a signal and a poll never load the same files at once.
  func run() async throws {
    let (checks, check) = AsyncStream.makeStream(of: Bool.self)
    let (hangups, interval) = (self.hangups, self.interval)
    await cancelWhenGracefulShutdown {
      await withDiscardingTaskGroup { group in
        group.addTask {
          for await _ in hangups { check.yield(true) }
          check.finish()
        }
        group.addTask {
          while (try? await Task.sleep(for: interval)) != nil { check.yield(false) }
          check.finish()
        }
        for await forced in checks {
          if forced {
            logger.notice(
              "SIGHUP: reading TLS and token files again",
              metadata: ["targets": "\(targets.map(\.name).joined(separator: ","))"])
          }
          reloadAll(forced: forced)
        }
        group.cancelAll()
      }
    }
  }

  private func reloadAll(forced: Bool) {
    for target in targets {
      switch target.reload(forced) {
      case .unchanged: break
      case .reloaded:
        counters[target.name]?.ok.increment()
        logger.notice(
          "reloaded \(target.name): new connections and calls use the files' new contents",
          metadata: ["files": "\(target.paths.joined(separator: ","))"])
      case .failed(let variable, let reason):
        counters[target.name]?.failed.increment()
        logger.error(
          "cannot reload \(target.name); still using what was loaded before",
          metadata: ["variable": "\(variable)", "error": "\(reason)"])
      }
    }
  }
}

extension FileReloader.Target {
  /// A target over a reload whose error names a configuration field or file, which `variable`
  /// turns into the variable the operator sets.
  init<Failure: Error>(
    _ name: String, paths: [String],
    reload: @escaping @Sendable (_ forced: Bool) -> ReloadOutcome<Failure>,
    variable: @escaping @Sendable (Failure) -> EnvironmentVariable
  ) {
    self.init(name: name, paths: paths) { forced in
      switch reload(forced) {
      case .unchanged: .unchanged
      case .reloaded: .reloaded
      case .failed(let error): .failed(variable: variable(error).name, reason: "\(error)")
      }
    }
  }
}
