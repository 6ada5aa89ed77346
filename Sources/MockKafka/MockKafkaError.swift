/// A mock-cluster operation that librdkafka refused, or a command the tool did not understand.
package struct MockKafkaError: Error, Sendable, CustomStringConvertible {
  package struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String {
      case clusterFailed, invalidCommand
    }
    private let value: Value

    /// librdkafka could not create the cluster or apply an operation to it.
    package static let clusterFailed = Code(value: .clusterFailed)
    /// A control command was malformed.
    package static let invalidCommand = Code(value: .invalidCommand)

    package var description: String { value.rawValue }
  }

  package var code: Code
  package var message: String
  /// The lower-level failure, when there is one.
  package var cause: (any Error)?

  package init(_ message: String, code: Code = .clusterFailed, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  package var description: String {
    cause.map { "\(message): \($0)" } ?? message
  }
}
