import NIOHTTP1

/// Which admin paths a request may read without credentials.
///
/// Without a token every path is open, as before. With one, every path but the probes' needs
/// `Authorization: Bearer <token>` (what Prometheus sends with `authorization` in a scrape
/// config): `/status` and `/metrics` show broker addresses and Kafka's errors. The probes' paths
/// stay open because the kubelet's HTTP probes cannot send a credential that is a secret.
package struct AdminAccess: Sendable {
  /// Compares a presented token with the expected one; the caller's, so that a constant-time
  /// comparison is written once for every port that checks a token.
  package typealias TokenCheck = @Sendable (_ presented: String) -> Bool

  private let tokenMatches: TokenCheck?
  private let openPaths: Set<String>

  /// Every path open to everyone.
  package static let unrestricted = AdminAccess(tokenMatches: nil, openPaths: [])

  /// - Parameters:
  ///   - tokenMatches: whether a presented bearer token is the expected one.
  ///   - openPaths: the paths served without a token, e.g. `/healthz`.
  package static func bearerToken(
    matching tokenMatches: @escaping TokenCheck, except openPaths: Set<String>
  ) -> AdminAccess {
    AdminAccess(tokenMatches: tokenMatches, openPaths: openPaths)
  }

  func allows(path: String, headers: HTTPHeaders) -> Bool {
    guard let tokenMatches, !openPaths.contains(path) else { return true }
    guard let presented = Self.bearerToken(in: headers) else { return false }
    return tokenMatches(presented)
  }

  /// The credentials of `Authorization: Bearer <token>`; the scheme is case-insensitive
  /// (RFC 9110 §11.1), and a request with several `Authorization` headers has none.
  private static func bearerToken(in headers: HTTPHeaders) -> String? {
    let values = headers["Authorization"]
    guard values.count == 1 else { return nil }
    let parts = values[0].split(separator: " ", maxSplits: 1)
    guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
    let token = parts[1].drop { $0 == " " }
    return token.isEmpty ? nil : String(token)
  }
}
