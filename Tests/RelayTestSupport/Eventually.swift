/// Thrown when a condition did not become true in time.
package struct ConditionTimeoutError: Error, Sendable, CustomStringConvertible {
  package let description: String
}

/// Repeats `attempt` every few milliseconds until `isDone` accepts its result or `deadline`
/// passes, and returns the last result either way, so the caller's expectation shows what was
/// seen: for effects that happen asynchronously, without sleeping a guessed amount of time.
package func poll<Value: Sendable>(
  for deadline: Duration = .seconds(20),
  _ attempt: () async throws -> Value,
  until isDone: (Value) -> Bool
) async throws -> Value {
  let end = ContinuousClock.now + deadline
  while true {
    let value = try await attempt()
    if isDone(value) || ContinuousClock.now >= end { return value }
    try await Task.sleep(for: .milliseconds(10))
  }
}

/// Waits until `condition` holds; throws, naming `what`, when `timeout` passes first.
package func waitUntil(
  _ what: String, timeout: Duration = .seconds(30), _ condition: () throws -> Bool
) async throws {
  guard try await poll(for: timeout, { try condition() }, until: { $0 }) else {
    throw ConditionTimeoutError(description: "timed out after \(timeout) waiting until \(what)")
  }
}

/// Whether `condition` holds within `timeout`, for `#expect(await eventually { … })`.
package func eventually(within timeout: Duration = .seconds(5), _ condition: () -> Bool) async
  -> Bool
{
  (try? await poll(for: timeout, { condition() }, until: { $0 })) == true
}
