import Synchronization

/// The token agents must present in their `authentication` header, as the OAP checks it.
///
/// A reference, so that a token read from a mounted Secret can be replaced when the Secret
/// rotates while every call keeps checking against the current one.
package final class AuthenticationToken: Sendable {
  private let expected: Mutex<[UInt8]>

  package init(_ token: String) {
    expected = Mutex(Array(token.utf8))
  }

  /// Calls checked from now on need `token`.
  package func replace(with token: String) {
    expected.withLock { $0 = Array(token.utf8) }
  }

  /// Compares every byte without an early exit, so response timing does not reveal how much of
  /// a guessed token was right.
  package func matches(_ given: String) -> Bool {
    let given = Array(given.utf8)
    return expected.withLock { expected in
      var difference: UInt8 = given.count == expected.count ? 0 : 1
      for index in 0..<max(given.count, expected.count) {
        let left = index < given.count ? given[index] : 0
        let right = index < expected.count ? expected[index] : 0
        difference |= left ^ right
      }
      return difference == 0
    }
  }
}
