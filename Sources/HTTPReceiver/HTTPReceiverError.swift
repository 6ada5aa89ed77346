@_exported import ModuleError

/// A failure of the agents' HTTP endpoint itself, naming the configuration field to fix.
package typealias HTTPReceiverError = ModuleError<HTTPReceiverErrorCode>

package enum HTTPReceiverErrorCode: String, ModuleErrorCode {
  package typealias Field = HTTPReceiverConfiguration.Field

  /// The address cannot be listened on (in use, not local, no permission).
  case bindFailed
}
