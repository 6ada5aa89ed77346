/// Thrown when a condition did not become true in time.
public struct ConditionTimeoutError: Error, Sendable, CustomStringConvertible {
  public let description: String
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes; for tests that
/// wait for asynchronous effects without sleeping a guessed amount of time.
public func waitUntil(
  _ what: String, timeout: Duration = .seconds(30), _ condition: () throws -> Bool
) async throws {
  let deadline = ContinuousClock.now + timeout
  while try !condition() {
    guard ContinuousClock.now < deadline else {
      throw ConditionTimeoutError(description: "timed out after \(timeout) waiting until \(what)")
    }
    try await Task.sleep(for: .milliseconds(10))
  }
}
