/// A byte position in the log: the log file number and an offset inside that file.
/// Ordering is lexicographic, which is also log order because log file numbers only grow.
public struct QueuePosition: Hashable, Comparable, Sendable, CustomStringConvertible {
  public var file: UInt64
  public var offset: UInt64

  public init(file: UInt64, offset: UInt64) {
    self.file = file
    self.offset = offset
  }

  public static func < (lhs: QueuePosition, rhs: QueuePosition) -> Bool {
    (lhs.file, lhs.offset) < (rhs.file, rhs.offset)
  }

  public var description: String { "\(file):\(offset)" }
}
