/// A failure of the load generator that ends the run with a message naming what to fix.
struct LoadgenError: Error, CustomStringConvertible {
  struct Code: Hashable, Sendable {
    let name: String
    static let invalidArgument = Code(name: "invalidArgument")
    static let connectFailed = Code(name: "connectFailed")
    static let kafka = Code(name: "kafka")
    static let io = Code(name: "io")
  }

  let code: Code
  let message: String

  init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  var description: String { "\(code.name): \(message)" }
}
