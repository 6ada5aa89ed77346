import SwiftProtobuf

/// Turns one element of an agent's JSON (protobuf's canonical JSON mapping, as the OAP's REST
/// handlers read it) into the protobuf bytes the OAP's Kafka fetcher reads.
///
/// swift-protobuf's decoder on the generated types accepts what the agents send: the JSON
/// (lowerCamelCase) and the original proto field names, enums by name or number, 64-bit integers
/// as strings or numbers, `null` for an absent field. Unknown fields are skipped, as the OAP's
/// `JsonFormat.parser().ignoringUnknownFields()` skips them, so a newer agent is not refused.
struct AgentJSONConverter: Sendable {
  private let decode: @Sendable ([UInt8]) throws -> [UInt8]

  init<Message: SwiftProtobuf.Message>(_ type: Message.Type) {
    decode = { json in
      try Message(jsonUTF8Bytes: json, options: Self.options).serializedBytes()
    }
  }

  private static let options: JSONDecodingOptions = {
    var options = JSONDecodingOptions()
    options.ignoreUnknownFields = true
    return options
  }()

  /// The protobuf encoding of the element in `range`.
  func convert(
    _ bytes: UnsafeRawBufferPointer, range: Range<Int>
  ) throws(AgentJSONError) -> [UInt8] {
    do {
      return try decode(Array(bytes[range]))
    } catch {
      throw AgentJSONError(field: failingField(bytes, object: range, wrap: { $0 }), cause: error)
    }
  }

  /// The path of the first field the decoder refuses, e.g. `spans[1].spanType`, found by
  /// decoding each member alone (wrapped in its parents): swift-protobuf's errors say what is
  /// wrong but not where, and an agent's developer needs both. Runs only on refusal.
  private func failingField(
    _ bytes: UnsafeRawBufferPointer, object: Range<Int>, wrap: @escaping ([UInt8]) -> [UInt8]
  ) -> String? {
    guard JSONStructure.firstByte(bytes, range: object) == UInt8(ascii: "{"),
      let members = try? JSONStructure.objectMembers(bytes, range: object)
    else { return nil }
    for (key, value) in members {
      let name = String(decoding: bytes[key].dropFirst().dropLast(), as: UTF8.self)
      let alone: ([UInt8]) -> [UInt8] = {
        wrap(Array("{".utf8) + bytes[key] + Array(":".utf8) + $0 + Array("}".utf8))
      }
      guard refuses(alone(Array(bytes[value]))) else { continue }
      guard JSONStructure.firstByte(bytes, range: value) == UInt8(ascii: "["),
        let elements = try? JSONStructure.arrayElements(bytes, range: value)
      else {
        return name + (failingField(bytes, object: value, wrap: alone).map { ".\($0)" } ?? "")
      }
      for (index, element) in elements.enumerated() {
        let inList: ([UInt8]) -> [UInt8] = { alone(Array("[".utf8) + $0 + Array("]".utf8)) }
        guard refuses(inList(Array(bytes[element]))) else { continue }
        let inner = failingField(bytes, object: element, wrap: inList)
        return "\(name)[\(index)]" + (inner.map { ".\($0)" } ?? "")
      }
      return name
    }
    return nil
  }

  private func refuses(_ json: [UInt8]) -> Bool {
    (try? decode(json)) == nil
  }
}

/// An element the decoder refused: the field where it can be found, and what was wrong.
struct AgentJSONError: Error, CustomStringConvertible {
  /// The path of the refused field, e.g. `spans[0].spanType`; nil when no single field is to
  /// blame (the element is not an object, or only a combination of fields fails).
  var field: String?
  var cause: any Error

  var description: String {
    let what = "\(cause)"
    guard let field else { return "not a valid element: \(what)" }
    return "field \(field): \(what)"
  }
}
