import ModuleError

/// A configuration value the relay cannot run with, naming the variable and the accepted form.
public struct ConfigurationError: Error, CustomStringConvertible {
  public enum Code: String, ModuleErrorCode {
    /// The value does not parse, or is out of its range.
    case invalidValue
    /// A `SW_RELAY_*` variable the relay does not read: a typo must not fall back to a default.
    case unknownVariable
    /// A file the variable names cannot be loaded (a TLS certificate or key).
    case unusableFile
  }

  public var code: Code
  /// The variable to fix, as the operator sets it.
  public var variable: String
  /// Nil when the value must not be echoed: an unknown variable may be a misspelt secret.
  var value: String?
  var expected: String
  public var cause: (any Error)?

  init(
    code: Code = .invalidValue, variable: String, value: String?, expected: String,
    cause: (any Error)? = nil
  ) {
    self.code = code
    self.variable = variable
    self.value = value
    self.expected = expected
    self.cause = cause
  }

  public var description: String {
    let setting = value.map { "\(variable)=\"\($0)\"" } ?? variable
    return "invalid \(setting): expected \(expected)" + (cause.map { " (\($0))" } ?? "")
  }
}
