/// A response of the admin endpoint: always small, always complete, never streamed.
package struct AdminResponse: Sendable {
  package var status: Int
  package var contentType: String
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
}
