import SwiftProtobuf

/// Turns one element of an agent's JSON (protobuf's canonical JSON mapping, as the OAP's REST
/// handlers read it) into the protobuf bytes the OAP's Kafka fetcher reads.
///
/// swift-protobuf's decoder on the generated types accepts what the agents send: the JSON
/// (lowerCamelCase) and the original proto field names, enums by name or number, 64-bit integers
/// as strings or numbers, `null` for an absent field. Unknown fields are skipped, as the OAP's
/// `JsonFormat.parser().ignoringUnknownFields()` skips them, so a newer agent is not refused.
struct AgentJSONConverter: Sendable {
  private let decode: @Sendable ([UInt8]) throws -> any SwiftProtobuf.Message

  init<Message: SwiftProtobuf.Message>(_ type: Message.Type) {
    decode = { json in try Message(jsonUTF8Bytes: json, options: Self.options) }
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
      return try decode(Array(bytes[range])).serializedBytes()
    } catch {
      var search = refusedFieldSearch(bytes)
      throw AgentJSONError(field: search.field(in: range), cause: error)
    }
  }

  /// A search for the field this converter's decoder refuses in an element of `bytes`.
  func refusedFieldSearch(_ bytes: UnsafeRawBufferPointer) -> RefusedFieldSearch {
    RefusedFieldSearch(bytes, maxDepth: Self.options.messageDepthLimit) { [decode] json in
      (try? decode(json)) == nil
    }
  }
}

/// An element the decoder refused: the field where it can be found, and what was wrong.
struct AgentJSONError: Error, CustomStringConvertible {
  /// The path of the refused field, e.g. `spans[0].spanType`; nil when no single field is to
  /// blame (the element is not an object, or only a combination of fields fails) or the search
  /// for it ran out of budget.
  var field: String?
  var cause: any Error

  var description: String {
    let what = "\(cause)"
    guard let field else { return "not a valid element: \(what)" }
    return "field \(field): \(what)"
  }
}
