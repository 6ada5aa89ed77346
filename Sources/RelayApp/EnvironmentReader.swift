import AgentIngest
import AgentReceiver
import DurableQueue
import FileReload
import Logging
import OAPForwarder

/// Reads typed values out of the environment, remembering which variables it consumed so that
/// a misspelt `SW_RELAY_*` variable is an error rather than a silently ignored setting.
struct EnvironmentReader {
  private let environment: [String: String]
  private var consumed: Set<String> = []

  init(_ environment: [String: String]) {
    self.environment = environment
  }

  mutating func string(_ variable: EnvironmentVariable) -> String {
    consumed.insert(variable.name)
    return environment[variable.name] ?? variable.defaultValue
  }

  mutating func nonEmptyString(
    _ variable: EnvironmentVariable, expected: String = "a non-empty value"
  ) throws(ConfigurationError) -> String {
    let value = string(variable)
    guard !value.isEmpty else { throw error(variable, value, expected) }
    return value
  }

  mutating func integer(
    _ variable: EnvironmentVariable, range: ClosedRange<Int>
  ) throws(ConfigurationError) -> Int {
    let value = string(variable)
    guard let number = Int(value), range.contains(number) else {
      throw error(variable, value, "an integer from \(range.lowerBound) to \(range.upperBound)")
    }
    return number
  }

  /// Bytes as a plain integer or with a binary suffix: `1048576`, `512KiB`, `64MiB`, `1GiB`.
  mutating func byteSize(
    _ variable: EnvironmentVariable, range: ClosedRange<Int>
  ) throws(ConfigurationError) -> Int {
    let value = string(variable)
    let units: [(suffix: String, shift: Int)] = [
      ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10), ("B", 0), ("", 0),
    ]
    let expected =
      "a byte size from \(range.lowerBound) to \(range.upperBound), e.g. 1048576, 512KiB, 64MiB or 1GiB"
    for (suffix, shift) in units where value.hasSuffix(suffix) {
      guard let number = Int(value.dropLast(suffix.count)), number >= 0,
        number <= Int.max >> shift, range.contains(number << shift)
      else { throw error(variable, value, expected) }
      return number << shift
    }
    throw error(variable, value, expected)
  }

  mutating func choice<Choice: RawRepresentable & CaseIterable>(
    _ variable: EnvironmentVariable
  ) throws(ConfigurationError) -> Choice where Choice.RawValue == String {
    let value = string(variable)
    guard let choice = Choice(rawValue: value.lowercased()) else {
      throw error(
        variable, value, "one of " + Choice.allCases.map(\.rawValue).joined(separator: ", "))
    }
    return choice
  }

  mutating func address(_ variable: EnvironmentVariable) throws(ConfigurationError) -> HostAndPort {
    let value = string(variable)
    let expected = "host:port, [ipv6]:port or :port with a port from 0 to 65535"
    guard let colon = value.lastIndex(of: ":"),
      let port = Int(value[value.index(after: colon)...]), (0...65535).contains(port)
    else { throw error(variable, value, expected) }
    var host = String(value[..<colon])
    if host.hasPrefix("[") {
      guard host.hasSuffix("]"), host.count > 2 else { throw error(variable, value, expected) }
      host = String(host.dropFirst().dropLast())
    } else if host.contains(":") {
      throw error(variable, value, expected)
    }
    return HostAndPort(host: host.isEmpty ? "0.0.0.0" : host, port: port)
  }

  /// An address, or nil when the variable is unset or empty.
  mutating func optionalAddress(
    _ variable: EnvironmentVariable
  ) throws(ConfigurationError) -> HostAndPort? {
    guard let value = environment[variable.name], !value.isEmpty else {
      consumed.insert(variable.name)
      return nil
    }
    return try address(variable)
  }

  /// A secret set directly or through `<NAME>_FILE` (one of the two): the value, and the file
  /// to watch for rotation when it came from one. Empty when neither is set.
  mutating func secret(
    _ variable: EnvironmentVariable
  ) throws(ConfigurationError) -> (value: String, file: String?) {
    let fileVariable = EnvironmentVariable.file(of: variable)
    let value = string(variable)
    let path = string(fileVariable)
    guard !path.isEmpty else { return (value, nil) }
    guard value.isEmpty else {
      throw ConfigurationError(
        variable: "\(variable.name) and \(fileVariable.name)", value: nil,
        expected: "only one of them set: the token itself, or the file that holds it")
    }
    do {
      return (try SecretFile.read(path), path)
    } catch {
      throw Self.unusableSecretFile(fileVariable, path: path, cause: error)
    }
  }

  /// A `*_FILE` variable whose file holds no usable token, at start or when read again.
  static func unusableSecretFile(
    _ variable: EnvironmentVariable, path: String, cause: SecretFileError
  ) -> ConfigurationError {
    ConfigurationError(
      code: .unusableFile, variable: variable.name, value: path,
      expected: "a readable file holding the token", cause: cause)
  }

  /// Certificate and key together, or neither; a client CA only with them.
  mutating func tls() throws(ConfigurationError) -> AgentReceiverTLS? {
    let certificate = string(.grpcTLSCertificate)
    let key = string(.grpcTLSKey)
    let clientCA = string(.grpcTLSClientCA)
    if certificate.isEmpty && key.isEmpty {
      guard clientCA.isEmpty else {
        throw error(
          .grpcTLSClientCA, clientCA, "SW_RELAY_GRPC_TLS_CERT and SW_RELAY_GRPC_TLS_KEY set too")
      }
      return nil
    }
    guard !certificate.isEmpty else {
      throw error(
        .grpcTLSCertificate, certificate, "a PEM file path when SW_RELAY_GRPC_TLS_KEY is set")
    }
    guard !key.isEmpty else {
      throw error(.grpcTLSKey, key, "a PEM file path when SW_RELAY_GRPC_TLS_CERT is set")
    }
    return AgentReceiverTLS(
      certificateChainPath: certificate, privateKeyPath: key,
      clientCAPath: clientCA.isEmpty ? nil : clientCA)
  }

  /// TLS to the OAP: off unless `SW_RELAY_OAP_TLS=on`; files only with it, certificate and key
  /// together.
  mutating func oapTLS() throws(ConfigurationError) -> OAPForwarderTLS? {
    let enabled = try choice(.oapTLS) as Switch
    let ca = string(.oapTLSCA)
    let certificate = string(.oapTLSCertificate)
    let key = string(.oapTLSKey)
    let serverName = string(.oapTLSServerName)
    guard enabled == .on else {
      for (variable, value) in [
        (EnvironmentVariable.oapTLSCA, ca), (.oapTLSCertificate, certificate), (.oapTLSKey, key),
        (.oapTLSServerName, serverName),
      ] where !value.isEmpty {
        throw error(variable, value, "SW_RELAY_OAP_TLS=on as well (TLS to the OAP is off)")
      }
      return nil
    }
    if certificate.isEmpty != key.isEmpty {
      let (variable, value) =
        certificate.isEmpty
        ? (EnvironmentVariable.oapTLSKey, key) : (.oapTLSCertificate, certificate)
      throw error(
        variable, value,
        "SW_RELAY_OAP_TLS_CERT and SW_RELAY_OAP_TLS_KEY set together (mutual TLS) or neither")
    }
    return OAPForwarderTLS(
      trustedCAPath: ca.isEmpty ? nil : ca,
      certificateChainPath: certificate.isEmpty ? nil : certificate,
      privateKeyPath: key.isEmpty ? nil : key, serverName: serverName.isEmpty ? nil : serverName)
  }

  mutating func topicName(_ variable: EnvironmentVariable) throws(ConfigurationError) -> String {
    let value = string(variable)
    try Self.validateTopic(value, variable: variable, value: value)
    return value
  }

  /// Kafka's rule: 1 to 249 characters of ASCII letters, digits, `.`, `_` and `-`.
  static func validateTopic(
    _ topic: String, variable: EnvironmentVariable, value: String
  ) throws(ConfigurationError) {
    let allowed = topic.utf8.allSatisfy { byte in
      (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A)
        || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2E || byte == 0x5F || byte == 0x2D
    }
    guard allowed, (1...249).contains(topic.utf8.count), topic != ".", topic != ".." else {
      throw ConfigurationError(
        variable: variable.name, value: value,
        expected: "a Kafka topic name of 1 to 249 letters, digits, '.', '_' or '-'")
    }
  }

  /// `SW_RELAY_KAFKA_PRODUCER_COMPRESSION_TYPE=lz4` becomes `compression.type=lz4`; librdkafka
  /// itself validates names and values when the publisher starts.
  mutating func producerProperties() -> [String: String] {
    var properties: [String: String] = [:]
    let prefix = EnvironmentVariable.producerPropertyPrefix
    for (name, value) in environment where name.hasPrefix(prefix) && name.count > prefix.count {
      consumed.insert(name)
      let property = name.dropFirst(prefix.count).lowercased().split(separator: "_")
        .joined(separator: ".")
      properties[property] = value
    }
    return properties
  }

  /// Refuses a `SW_RELAY_*` variable the relay does not read (a typo must not fall back to a
  /// default silently), except the ones Kubernetes derives from a Service's name, which are
  /// returned to be logged.
  func rejectUnknownVariables() throws(ConfigurationError) -> [String] {
    let unknown = environment.keys.filter { $0.hasPrefix("SW_RELAY_") && !consumed.contains($0) }
    var serviceLinks: [String] = []
    for name in unknown.sorted() {
      guard Self.isServiceLink(name: name, value: environment[name] ?? "") else {
        throw ConfigurationError(
          code: .unknownVariable, variable: name, value: nil,
          expected:
            "a known variable; this one is not read by the relay (see --help), and its value "
            + "is not shown in case it is a misspelt secret")
      }
      serviceLinks.append(name)
    }
    return serviceLinks
  }

  /// Kubernetes' service links for a Service `sw-relay-x` with port 11800: `SW_RELAY_X_SERVICE_HOST`
  /// (an address), `_SERVICE_PORT` and `_SERVICE_PORT_<NAME>` (a number), `_PORT` and
  /// `_PORT_11800_TCP` (`tcp://address:port`), `_PORT_11800_TCP_PROTO` (`tcp`), `_PORT` (a
  /// number) and `_ADDR` (an address). The value must have that shape too, so a misspelt setting
  /// of ours still fails.
  static func isServiceLink(name: String, value: String) -> Bool {
    let isNumber = !value.isEmpty && value.allSatisfy(\.isNumber)
    let isAddress = !value.isEmpty && value.allSatisfy { $0.isHexDigit || $0 == "." || $0 == ":" }
    let isURL = ["tcp://", "udp://", "sctp://"].contains { value.hasPrefix($0) }
    if name.hasSuffix("_SERVICE_HOST") { return isAddress }
    if name.hasSuffix("_SERVICE_PORT") || name.contains("_SERVICE_PORT_") { return isNumber }
    let parts = name.split(separator: "_")
    return parts.indices.contains { index in
      parts[index] == "PORT"
        && isPortLink(
          tail: parts[(index + 1)...], isURL: isURL, isNumber: isNumber, isAddress: isAddress,
          value: value)
    }
  }

  private static func isPortLink(
    tail: ArraySlice<Substring>, isURL: Bool, isNumber: Bool, isAddress: Bool, value: String
  ) -> Bool {
    switch tail.count {
    case 0: return isURL
    case 2, 3:
      let protocols: Set<Substring> = ["TCP", "UDP", "SCTP"]
      guard tail.first!.allSatisfy(\.isNumber), protocols.contains(tail[tail.startIndex + 1]) else {
        return false
      }
      guard tail.count == 3 else { return isURL }
      switch tail.last! {
      case "PROTO": return ["tcp", "udp", "sctp"].contains(value)
      case "PORT": return isNumber
      case "ADDR": return isAddress
      default: return false
      }
    default: return false
    }
  }

  enum Switch: String, CaseIterable {
    case on, off
  }

  private func error(
    _ variable: EnvironmentVariable, _ value: String, _ expected: String
  ) -> ConfigurationError {
    ConfigurationError(variable: variable.name, value: value, expected: expected)
  }
}
