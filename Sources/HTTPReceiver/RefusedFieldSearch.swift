/// Finds the field a decoder refuses in an agent's JSON element, e.g. `spans[1].startTime`:
/// swift-protobuf's errors say what is wrong but not where, and an agent's developer needs both.
///
/// It decodes each member of a refused object alone, wrapped in its parents, and descends into
/// the first one that is still refused. The element is the attacker's to shape, and the search
/// runs on an event loop, so its cost is bounded whatever the element: it descends no deeper than
/// the decoder's depth limit, decodes at most a few times the element's bytes in all, and builds
/// each level's wrapping once, appending to it as it descends. When a bound is reached the field
/// goes unnamed. (Rebuilding the whole wrapping for every attempt at every level cost two minutes
/// of an event loop for a 24 KB element of nested unknown fields.)
struct RefusedFieldSearch {
  /// Bytes the search may decode per byte of the element: naming a field in an ordinary
  /// element takes two to three times its size (the refused member, then its parts).
  static let budgetPerElementByte = 4
  /// Bytes the search may decode beyond that, so a small element's wrapping always fits.
  static let budgetFloor = 4096

  private let bytes: UnsafeRawBufferPointer
  private let maxDepth: Int
  private let refuses: ([UInt8]) -> Bool
  private var budget = 0
  /// The bytes handed to the decoder so far, wrappings included.
  private(set) var decodedBytes = 0
  /// The decodes so far.
  private(set) var decodes = 0
  /// The parents of the value being searched, opened (`{"spans":[`), and the brackets that
  /// close them, innermost last.
  private var opening: [UInt8] = []
  private var closing: [UInt8] = []

  /// - Parameters:
  ///   - maxDepth: the decoder's own depth limit; nothing nested deeper can be decoded alone.
  ///   - refuses: whether the decoder refuses a JSON text.
  init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int, refuses: @escaping ([UInt8]) -> Bool) {
    self.bytes = bytes
    self.maxDepth = maxDepth
    self.refuses = refuses
  }

  /// The path of the refused field in the element at `element`, or nil when no single field is
  /// to blame or the search reached a bound.
  mutating func field(in element: Range<Int>) -> String? {
    budget = decodedBytes + Self.budgetPerElementByte * element.count + Self.budgetFloor
    do {
      return try field(inObject: element)
    } catch {
      return nil
    }
  }

  /// The refused member of the object at `range` and the path inside it; nil when `range`
  /// holds no object or each member alone is accepted.
  private mutating func field(inObject range: Range<Int>) throws(SearchBoundReached) -> String? {
    guard JSONStructure.firstByte(bytes, range: range) == UInt8(ascii: "{") else { return nil }
    guard closing.count < maxDepth else { throw SearchBoundReached() }
    guard let members = try? JSONStructure.objectMembers(bytes, range: range) else { return nil }
    for (key, value) in members {
      let parents = enter(
        Array("{".utf8) + bytes[key] + Array(":".utf8), closedBy: UInt8(ascii: "}"))
      defer { leave(to: parents) }
      guard try decoderRefuses(value) else { continue }
      let name = String(decoding: bytes[key].dropFirst().dropLast(), as: UTF8.self)
      return try path(named: name, of: value)
    }
    return nil
  }

  /// The path inside a refused member: for a list, the index of its first refused element and
  /// the path inside that element.
  private mutating func path(
    named name: String, of value: Range<Int>
  ) throws(SearchBoundReached) -> String {
    guard JSONStructure.firstByte(bytes, range: value) == UInt8(ascii: "["),
      let elements = try? JSONStructure.arrayElements(bytes, range: value)
    else {
      return name + ((try field(inObject: value)).map { ".\($0)" } ?? "")
    }
    let parents = enter(Array("[".utf8), closedBy: UInt8(ascii: "]"))
    defer { leave(to: parents) }
    for (index, element) in elements.enumerated() {
      guard try decoderRefuses(element) else { continue }
      return "\(name)[\(index)]" + ((try field(inObject: element)).map { ".\($0)" } ?? "")
    }
    return name
  }

  /// Decodes the value at `range` wrapped in its parents.
  private mutating func decoderRefuses(_ range: Range<Int>) throws(SearchBoundReached) -> Bool {
    let size = opening.count + range.count + closing.count
    guard decodedBytes + size <= budget else { throw SearchBoundReached() }
    decodedBytes += size
    decodes += 1
    var document = opening
    document.reserveCapacity(size)
    document.append(contentsOf: bytes[range])
    document.append(contentsOf: closing.reversed())
    return refuses(document)
  }

  /// Opens one more parent; returns where the wrapping stood before, for `leave(to:)`.
  private mutating func enter(_ prefix: [UInt8], closedBy bracket: UInt8) -> Int {
    let before = opening.count
    opening.append(contentsOf: prefix)
    closing.append(bracket)
    return before
  }

  private mutating func leave(to openingCount: Int) {
    opening.removeLast(opening.count - openingCount)
    closing.removeLast()
  }
}

/// The search for a refused field reached its depth or byte bound.
private struct SearchBoundReached: Error {}
