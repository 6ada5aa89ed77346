/// A response of the admin endpoint: always small, always complete, never streamed.
package struct AdminResponse: Sendable {
  package var status: Int
  package var contentType: String
  /// Beyond the `Content-Type`, `Content-Length` and `Cache-Control` every answer has.
  package var headers: [(name: String, value: String)] = []
  package var body: [UInt8]

  package init(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
    self.status = status
    self.contentType = contentType
    self.body = body
  }

  package init(status: Int, text: String) {
    self.init(status: status, body: Array(text.utf8))
  }

  static let notFound = AdminResponse(status: 404, text: "not found\n")
  static let methodNotAllowed = AdminResponse(status: 405, text: "only GET and HEAD are served\n")
  /// Names the scheme (RFC 6750 §3), never the token.
  static let unauthorized = {
    var response = AdminResponse(
      status: 401, text: "this path needs Authorization: Bearer <the admin token>\n")
    response.headers = [(name: "WWW-Authenticate", value: "Bearer realm=\"relay admin\"")]
    return response
  }()
}
