/// When appended data is forced to stable storage.
public enum FsyncPolicy: String, Sendable, CaseIterable {
  /// Acknowledge after `write`: survives a process crash or kill -9; a power loss can lose up to
  /// `fsyncInterval` of acknowledged data.
  case interval
  /// Acknowledge only after `fdatasync`: survives power loss, costs one sync per group commit.
  case always
}

public struct DurableQueueConfiguration: Sendable {
  public var directory: String
  /// A log file is rolled once the next batch would push it past this size.
  public var fileBytes: Int
  /// Appends are refused once the live log files (plus batches waiting to be written) would
  /// exceed this many bytes.
  public var maxBytes: Int
  public var fsyncPolicy: FsyncPolicy
  /// How often the writer thread syncs data under `.interval`.
  public var fsyncInterval: Duration
  /// How refusals name the setting behind a field, so the message says what to change: the
  /// field's own name unless a program configured otherwise (environment variables, flags)
  /// passes its names.
  public var settingName: @Sendable (Field) -> String = { $0.rawValue }

  /// The fields refusals name.
  public enum Field: String, Sendable, CaseIterable {
    case maxBytes
  }

  public init(
    directory: String, fileBytes: Int = 64 << 20, maxBytes: Int = 1 << 30,
    fsyncPolicy: FsyncPolicy = .interval, fsyncInterval: Duration = .milliseconds(200)
  ) {
    self.directory = directory
    self.fileBytes = fileBytes
    self.maxBytes = maxBytes
    self.fsyncPolicy = fsyncPolicy
    self.fsyncInterval = fsyncInterval
  }
}
