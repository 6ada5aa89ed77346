import AgentIngest
import AgentReceiver
import FileReload
import HTTPReceiver
import OAPForwarder

extension Relay {
  /// Everything the relay built from files that may rotate: each TLS context (the agents' two
  /// ports, the two links to the OAP) and each token read through a `*_FILE` variable.
  static func reloadTargets(
    _ configuration: RelayConfiguration, grpc: AgentGRPCServer, http: AgentHTTPServer?,
    forwarder: OAPForwarder?, adminToken: AuthenticationToken?
  ) throws(ConfigurationError) -> [FileReloader.Target] {
    var targets: [FileReloader.Target] = []
    let receiverVariable: @Sendable (AgentReceiverError) -> EnvironmentVariable = {
      .agentEndpointField($0.field)
    }
    let oapVariable: @Sendable (OAPForwarderError) -> EnvironmentVariable = {
      .oapField($0.field)
    }
    if let tls = grpc.tls {
      targets.append(
        .init("grpc_tls", paths: tls.paths, reload: tls.reload, variable: receiverVariable))
    }
    if let tls = http?.tls {
      targets.append(
        .init("http_tls", paths: tls.paths, reload: tls.reload, variable: receiverVariable))
    }
    if let forwarder, let tls = configuration.oap?.tls {
      targets.append(
        .init("oap_tls", paths: tls.paths, reload: forwarder.reloadTLS, variable: oapVariable))
    }
    if let tls = http?.oapTLS {
      targets.append(
        .init("oap_http_tls", paths: tls.paths, reload: tls.reload, variable: oapVariable))
    }
    let files = configuration.tokenFiles
    let tokens: [(String, String?, EnvironmentVariable, [@Sendable (String) -> Void])] = [
      (
        "auth_token", files.grpc, .authTokenFile,
        [grpc.authenticationToken?.replace].compactMap { $0 }
      ),
      (
        "http_auth_token", files.http, .httpAuthTokenFile,
        [http?.authenticationToken?.replace].compactMap { $0 }
      ),
      ("admin_token", files.admin, .adminTokenFile, [adminToken?.replace].compactMap { $0 }),
      (
        "oap_authentication", files.oap, .oapAuthenticationFile,
        [forwarder?.replaceAuthentication].compactMap { $0 }
      ),
    ]
    for (name, path, variable, consumers) in tokens {
      guard let path, !consumers.isEmpty else { continue }
      targets.append(try tokenTarget(name, path: path, variable: variable, consumers: consumers))
    }
    return targets
  }

  /// A token file read again when it changes; each consumer is given the new token.
  private static func tokenTarget(
    _ name: String, path: String, variable: EnvironmentVariable,
    consumers: [@Sendable (String) -> Void]
  ) throws(ConfigurationError) -> FileReloader.Target {
    let token: ReloadingFiles<String, SecretFileError>
    do {
      token = try ReloadingFiles(paths: [path]) { () throws(SecretFileError) in
        try SecretFile.read(path)
      }
    } catch {
      throw EnvironmentReader.unusableSecretFile(variable, path: path, cause: error)
    }
    return .init(
      name, paths: [path],
      reload: { forced in
        let outcome = token.reload(forced: forced)
        if case .reloaded = outcome {
          for consumer in consumers { consumer(token.current) }
        }
        return outcome
      },
      variable: { _ in variable })
  }
}
