/// A failure of the Kafka side of the relay, with a stable code for callers and a message for people.
public struct KafkaPublisherError: Error, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    private init(_ name: String) { self.name = name }

    /// librdkafka rejected a configuration property (its name is in the message).
    public static let invalidProperty = Code("invalidProperty")
    /// librdkafka could not create a client handle from an otherwise accepted configuration.
    public static let clientCreationFailed = Code("clientCreationFailed")
    /// A dead-lettered record could not be written to `dead-letter.log`.
    public static let deadLetterWriteFailed = Code("deadLetterWriteFailed")
    /// `dead-letter.log` reached its size cap.
    public static let deadLetterFull = Code("deadLetterFull")
    /// `dead-letter.log` could not be read back into the queue.
    public static let deadLetterReplayFailed = Code("deadLetterReplayFailed")
    /// `run()` was called on a publisher that is already running or has finished.
    public static let alreadyRunning = Code("alreadyRunning")
    /// The publisher could not start its thread or wake-up channel.
    public static let startFailed = Code("startFailed")

    public var description: String { name }
  }

  public var code: Code
  public var message: String

  public init(code: Code, message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "KafkaPublisherError.\(code): \(message)" }
}
