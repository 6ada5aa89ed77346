/// The failure of a module, in the one shape every module's error has: a stable `code` callers
/// branch on (never the message), a `message` for people, the configuration `field` to fix
/// when there is one, and the lower-level `cause` it came from.
public struct ModuleError<Kind: ModuleErrorCode>: Error, CustomStringConvertible {
  /// The module's codes, named as callers spell them (`QueueError.Code.full`).
  public typealias Code = Kind

  public var code: Code
  /// Which field of the module's configuration to fix; the program that set it from an
  /// environment variable or a flag maps it to that name.
  public var field: Code.Field
  public var message: String
  /// The lower-level failure (a system call, a TLS library), kept for the description and for
  /// callers that look inside it.
  public var cause: (any Error)?

  public init(code: Code, field: Code.Field, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.field = field
    self.message = message
    self.cause = cause
  }

  /// `message (field): cause`; a message that already quotes its cause whole (one an agent is
  /// sent, which must stand alone) does not repeat it.
  public var description: String {
    let field = "\(field)"
    var text = field.isEmpty ? message : "\(message) (\(field))"
    if let cause = cause.map({ "\($0)" }), !message.contains(cause) {
      text += ": \(cause)"
    }
    return text
  }
}

extension ModuleError where Kind.Field == NoField {
  public init(code: Code, message: String, cause: (any Error)? = nil) {
    self.init(code: code, field: NoField(), message: message, cause: cause)
  }
}

/// The kinds of failure of one module: an enum whose raw values are the stable names logs and
/// metrics use.
public protocol ModuleErrorCode: RawRepresentable<String>, Hashable, Sendable,
  CustomStringConvertible
{
  /// The module configuration's fields its errors name, or ``NoField``.
  associatedtype Field: Sendable, CustomStringConvertible = NoField
}

extension ModuleErrorCode {
  public var description: String { rawValue }
}

/// The field of a module whose errors name none (the failure is not the operator's setting).
public struct NoField: Sendable, CustomStringConvertible {
  public init() {}
  public var description: String { "" }
}
