import NIOHTTP1

/// An answer of the agents' HTTP endpoint: small, complete, never streamed.
struct HTTPReply: Sendable {
  var status: HTTPResponseStatus
  var contentType = "text/plain; charset=utf-8"
  var body: [UInt8]
  /// Sent with 429 and 503, so agents and proxies back off for this many seconds.
  var retryAfterSeconds: Int?
  /// Whether the connection is closed after this answer whatever the client asked (a body
  /// left unread cannot be skipped safely).
  var closesConnection = false

  init(status: HTTPResponseStatus, text: String, retryAfterSeconds: Int? = nil) {
    self.status = status
    self.body = Array((text + "\n").utf8)
    self.retryAfterSeconds = retryAfterSeconds
  }

  init(status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
    self.status = status
    self.contentType = contentType
    self.body = body
  }

  /// What the OAP answers a report it took: an empty `Commands`.
  static let accepted = HTTPReply(
    status: .ok, contentType: "application/json", body: Array("{}".utf8))

  /// How long agents are told to wait when the queue is full or the relay cannot take data.
  static let retryAfterSeconds = 5
}
