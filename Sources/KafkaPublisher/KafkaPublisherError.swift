/// A failure of the Kafka side of the relay, with a stable code for callers and a message for people.
public struct KafkaPublisherError: Error, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String {
      case invalidProperty, clientCreationFailed, deadLetterWriteFailed, deadLetterFull,
        deadLetterReplayFailed, deadLetterReadFailed, alreadyRunning, startFailed,
        deliveryLedgerWriteFailed, recoveryScanFailed
    }
    private let value: Value

    /// librdkafka rejected a configuration property (its name is in the message).
    public static let invalidProperty = Code(value: .invalidProperty)
    /// librdkafka could not create a client handle from an otherwise accepted configuration.
    public static let clientCreationFailed = Code(value: .clientCreationFailed)
    /// A dead-lettered record could not be written to `dead-letter.log`.
    public static let deadLetterWriteFailed = Code(value: .deadLetterWriteFailed)
    /// `dead-letter.log` reached its size cap.
    public static let deadLetterFull = Code(value: .deadLetterFull)
    /// `dead-letter.log` could not be read back into the queue.
    public static let deadLetterReplayFailed = Code(value: .deadLetterReplayFailed)
    /// `dead-letter.log` could not be opened or read to be counted.
    public static let deadLetterReadFailed = Code(value: .deadLetterReadFailed)
    /// `run()` was called on a publisher that is already running or has finished.
    public static let alreadyRunning = Code(value: .alreadyRunning)
    /// The publisher could not start its thread or wake-up channel.
    public static let startFailed = Code(value: .startFailed)
    /// `kafka-delivery-ledger` could not be replaced (a restart may then replay more records
    /// unverified).
    public static let deliveryLedgerWriteFailed = Code(value: .deliveryLedgerWriteFailed)
    /// Kafka could not be read back after a restart; the publisher tries again before producing.
    public static let recoveryScanFailed = Code(value: .recoveryScanFailed)

    public var description: String { value.rawValue }
  }

  public var code: Code
  public var message: String
  /// The lower-level failure, when there is one.
  public var cause: (any Error)?

  public init(code: Code, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  public var description: String { "KafkaPublisherError.\(code): \(message)" }
}
