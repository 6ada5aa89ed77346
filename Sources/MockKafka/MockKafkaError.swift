/// A mock-cluster operation that librdkafka refused, or a command the tool did not understand.
public struct MockKafkaError: Error, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String {
      case clusterFailed, invalidCommand
    }
    private let value: Value

    /// librdkafka could not create the cluster or apply an operation to it.
    public static let clusterFailed = Code(value: .clusterFailed)
    /// A control command was malformed.
    public static let invalidCommand = Code(value: .invalidCommand)

    public var description: String { value.rawValue }
  }

  public var code: Code
  public var message: String
  /// The lower-level failure, when there is one.
  public var cause: (any Error)?

  public init(_ message: String, code: Code = .clusterFailed, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  public var description: String {
    cause.map { "\(message): \($0)" } ?? message
  }
}
