import ModuleError

/// A module's startup failure (a port in use, an unusable TLS file), told in the operator's
/// terms: the module names its field, this names the variable that sets it.
struct StartupError: Error, CustomStringConvertible {
  let description: String

  init<Code>(_ error: ModuleError<Code>, variable: (Code.Field) -> EnvironmentVariable) {
    description =
      "\(error.message) (\(variable(error.field).name))" + (error.cause.map { ": \($0)" } ?? "")
  }
}
