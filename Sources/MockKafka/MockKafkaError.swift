@_exported import ModuleError

/// A mock-cluster operation that librdkafka refused, or a command the tool did not understand.
package typealias MockKafkaError = ModuleError<MockKafkaErrorCode>

package enum MockKafkaErrorCode: String, ModuleErrorCode {
  /// librdkafka could not create the cluster or apply an operation to it.
  case clusterFailed
  /// A control command was malformed.
  case invalidCommand
}
