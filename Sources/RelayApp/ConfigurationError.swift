/// A configuration value the relay cannot run with, naming the variable and the accepted form.
public struct ConfigurationError: Error, Equatable, CustomStringConvertible {
  /// The variable to fix, as the operator sets it.
  public let variable: String
  let value: String
  let expected: String

  public var description: String {
    "invalid \(variable)=\"\(value)\": expected \(expected)"
  }
}
