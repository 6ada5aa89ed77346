/// `grpc.health.v1.HealthCheckResponse.ServingStatus`, from the relay's own readiness.
///
/// Every service name a client asks about is answered with the relay's status: everything an
/// agent calls is served by the relay as a whole.
package enum HealthStatus: UInt8, Sendable, Equatable {
  case serving = 1
  case notServing = 2

  /// `HealthCheckResponse { status = 1 }`: the enum as a varint field, two bytes.
  var encodedResponse: [UInt8] { [0x08, rawValue] }
}
