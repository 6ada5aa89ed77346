/// A byte position in the log: the segment file number and an offset inside that file.
/// Ordering is lexicographic, which is also log order because segment numbers only grow.
public struct QueuePosition: Hashable, Comparable, Sendable, CustomStringConvertible {
  public var segment: UInt64
  public var offset: UInt64

  public init(segment: UInt64, offset: UInt64) {
    self.segment = segment
    self.offset = offset
  }

  public static func < (lhs: QueuePosition, rhs: QueuePosition) -> Bool {
    (lhs.segment, lhs.offset) < (rhs.segment, rhs.offset)
  }

  public var description: String { "\(segment):\(offset)" }
}
