/// Finds the top-level pieces of a JSON text (array elements, object members) without decoding
/// them, so each element of a batch is decoded, and refused, on its own: one bad span must not
/// cost the other segments of an nginx-lua batch.
///
/// It checks only what it must to find the pieces (brackets, strings, commas); what the pieces
/// hold is checked by swift-protobuf's decoder. The pieces are handed out one at a time, never
/// collected: a 16 MiB body of millions of tiny elements costs a pass over its bytes, not an
/// array of millions of ranges.
struct JSONStructure {
  private let bytes: UnsafeRawBufferPointer
  private var index: Int
  private let end: Int
  private let open: UInt8
  private let close: UInt8
  /// Whether the opening bracket was read, so the next piece follows a comma.
  private var opened = false

  private init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>?, open: UInt8, close: UInt8) {
    self.bytes = bytes
    let range = range ?? 0..<bytes.count
    self.index = range.lowerBound
    self.end = range.upperBound
    self.open = open
    self.close = close
  }

  /// The ranges of the elements of the array that `range` holds (surrounding space allowed).
  static func arrayElements(
    _ bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil
  ) throws(JSONShapeError) -> JSONPieces<Range<Int>> {
    try JSONPieces(
      JSONStructure(bytes, range: range, open: UInt8(ascii: "["), close: UInt8(ascii: "]"))
    ) { $0.value }
  }

  /// The raw keys (quotes included) and value ranges of the object that `range` holds.
  static func objectMembers(
    _ bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil
  ) throws(JSONShapeError) -> JSONPieces<(key: Range<Int>, value: Range<Int>)> {
    try JSONPieces(
      JSONStructure(bytes, range: range, open: UInt8(ascii: "{"), close: UInt8(ascii: "}"))
    ) { ($0.key!, $0.value) }
  }

  /// The first non-space byte of `range`, e.g. `{` or `[`, or nil when there is none.
  static func firstByte(_ bytes: UnsafeRawBufferPointer, range: Range<Int>) -> UInt8? {
    bytes[range].first { !isSpace($0) }
  }

  /// The next piece, or nil after the closing bracket (and nothing but space after it).
  fileprivate mutating func next() throws(JSONShapeError) -> (key: Range<Int>?, value: Range<Int>)?
  {
    skipSpace()
    if opened {
      guard index < end else { throw JSONShapeError(offset: index, "the JSON text ends early") }
      if bytes[index] == close { return try closed() }
      guard bytes[index] == UInt8(ascii: ",") else {
        throw JSONShapeError(offset: index, "expected ',' or '\(Character(Unicode.Scalar(close)))'")
      }
      index += 1
    } else {
      guard index < end, bytes[index] == open else {
        throw JSONShapeError(
          offset: index,
          open == UInt8(ascii: "[") ? "expected a JSON array" : "expected a JSON object")
      }
      opened = true
      index += 1
      skipSpace()
      if index < end, bytes[index] == close { return try closed() }
    }
    var key: Range<Int>?
    if open == UInt8(ascii: "{") {
      skipSpace()
      let keyStart = index
      guard index < end, bytes[index] == UInt8(ascii: "\"") else {
        throw JSONShapeError(offset: index, "expected a quoted member name")
      }
      try skipString()
      key = keyStart..<index
      skipSpace()
      guard index < end, bytes[index] == UInt8(ascii: ":") else {
        throw JSONShapeError(offset: index, "expected ':' after a member name")
      }
      index += 1
    }
    skipSpace()
    let valueStart = index
    try skipValue()
    return (key, valueStart..<index)
  }

  private mutating func closed() throws(JSONShapeError) -> (key: Range<Int>?, value: Range<Int>)? {
    index += 1
    skipSpace()
    guard index == end else {
      throw JSONShapeError(offset: index, "unexpected bytes after the JSON value")
    }
    return nil
  }

  /// Skips one value: a string, a bracketed value (strings inside it skipped whole, so their
  /// brackets do not count) or a scalar up to the next delimiter.
  private mutating func skipValue() throws(JSONShapeError) {
    guard index < end else { throw JSONShapeError(offset: index, "expected a value") }
    switch bytes[index] {
    case UInt8(ascii: "\""):
      try skipString()
    case UInt8(ascii: "{"), UInt8(ascii: "["):
      var depth = 0
      while index < end {
        switch bytes[index] {
        case UInt8(ascii: "\""):
          try skipString()
          continue
        case UInt8(ascii: "{"), UInt8(ascii: "["):
          depth += 1
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
          depth -= 1
          if depth == 0 {
            index += 1
            return
          }
        default:
          break
        }
        index += 1
      }
      throw JSONShapeError(offset: index, "an object or array is not closed")
    default:
      let start = index
      while index < end, !Self.isDelimiter(bytes[index]) { index += 1 }
      guard index > start else { throw JSONShapeError(offset: index, "expected a value") }
    }
  }

  private mutating func skipString() throws(JSONShapeError) {
    let start = index
    index += 1
    while index < end {
      switch bytes[index] {
      case UInt8(ascii: "\\"): index += 2
      case UInt8(ascii: "\""):
        index += 1
        return
      default: index += 1
      }
    }
    throw JSONShapeError(offset: start, "a string is not closed")
  }

  private mutating func skipSpace() {
    while index < end, Self.isSpace(bytes[index]) { index += 1 }
  }

  private static func isSpace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
  }

  private static func isDelimiter(_ byte: UInt8) -> Bool {
    isSpace(byte) || byte == UInt8(ascii: ",") || byte == UInt8(ascii: "]")
      || byte == UInt8(ascii: "}")
  }
}

/// The pieces of one JSON array or object, in order. The whole text is checked when they are
/// made, so a body cut short is refused before any of its elements is queued, and handing them
/// out cannot fail.
struct JSONPieces<Piece>: Sequence, IteratorProtocol {
  /// How many pieces there are, known from the check.
  let count: Int
  private var structure: JSONStructure
  private let piece: ((key: Range<Int>?, value: Range<Int>)) -> Piece

  fileprivate init(
    _ structure: JSONStructure,
    piece: @escaping ((key: Range<Int>?, value: Range<Int>)) -> Piece
  ) throws(JSONShapeError) {
    var check = structure
    var count = 0
    while try check.next() != nil { count += 1 }
    self.count = count
    self.structure = structure
    self.piece = piece
  }

  mutating func next() -> Piece? {
    // Cannot throw: the same pieces were walked without error when these were made.
    guard let found = try? structure.next() else { return nil }
    return piece(found)
  }
}

/// A JSON text whose shape is wrong where the relay needs to find its pieces.
struct JSONShapeError: Error, CustomStringConvertible {
  var offset: Int
  var message: String

  init(offset: Int, _ message: String) {
    self.offset = offset
    self.message = message
  }

  var description: String { "\(message) at byte \(offset)" }
}
