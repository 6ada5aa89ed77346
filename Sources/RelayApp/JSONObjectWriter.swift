/// Writes the small, flat JSON documents of `/status` without pulling in Foundation.
struct JSONObjectWriter {
  private var text = "{"
  private var needsComma = false

  mutating func object(_ key: String, _ body: (inout JSONObjectWriter) -> Void) {
    var nested = JSONObjectWriter()
    body(&nested)
    raw(key, nested.finish())
  }

  mutating func string(_ key: String, _ value: String) { raw(key, Self.quoted(value)) }
  mutating func int(_ key: String, _ value: Int) { raw(key, String(value)) }
  mutating func bool(_ key: String, _ value: Bool) { raw(key, value ? "true" : "false") }
  mutating func optionalString(_ key: String, _ value: String?) {
    raw(key, value.map(Self.quoted) ?? "null")
  }
  mutating func optionalInt(_ key: String, _ value: Int?) {
    raw(key, value.map(String.init) ?? "null")
  }

  func finish() -> String { text + "}" }

  private mutating func raw(_ key: String, _ value: String) {
    if needsComma { text += "," }
    needsComma = true
    text += Self.quoted(key) + ":" + value
  }

  static func quoted(_ value: String) -> String {
    var out = "\""
    for scalar in value.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}
