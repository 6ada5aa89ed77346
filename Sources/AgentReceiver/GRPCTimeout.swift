import NIOCore

extension TimeAmount {
  /// Parses a `grpc-timeout` header value: up to eight ASCII digits followed by a unit
  /// (`H`, `M`, `S`, `m`, `u`, `n`). Returns nil for anything else, which is treated as no
  /// deadline rather than as an error, as other gRPC servers do.
  init?(grpcTimeout value: Substring) {
    guard let unit = value.last, value.count >= 2, value.count <= 9,
      let amount = Int64(value.dropLast()), amount >= 0
    else { return nil }
    switch unit {
    case "H": self = .hours(amount)
    case "M": self = .minutes(amount)
    case "S": self = .seconds(amount)
    case "m": self = .milliseconds(amount)
    case "u": self = .microseconds(amount)
    case "n": self = .nanoseconds(amount)
    default: return nil
    }
  }
}
