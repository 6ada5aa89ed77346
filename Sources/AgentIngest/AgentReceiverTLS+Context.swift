import FileReload
import NIOSSL

extension AgentReceiverTLS {
  /// Loads the TLS files as an endpoint will, for `--check-config`.
  package func validate() throws(AgentReceiverError) {
    _ = try makeContext(applicationProtocols: [])
  }

  /// The endpoint's context, built again when the files change, so a renewed certificate is
  /// what the next handshake presents; connections already open keep the one they started with.
  package func reloadingContext(
    applicationProtocols: [String]
  ) throws(AgentReceiverError) -> ReloadingFiles<NIOSSLContext, AgentReceiverError> {
    try ReloadingFiles(
      paths: [certificateChainPath, privateKeyPath] + (clientCAPath.map { [$0] } ?? [])
    ) { () throws(AgentReceiverError) in
      try makeContext(applicationProtocols: applicationProtocols)
    }
  }

  /// Loads the certificate chain, key and optional client CA once, so a bad file stops the relay
  /// at startup with the field to fix instead of failing every handshake. The gRPC and the
  /// HTTP endpoint share these files and differ only in the protocol they offer over ALPN.
  package func makeContext(
    applicationProtocols: [String]
  ) throws(AgentReceiverError) -> NIOSSLContext {
    func load<T>(
      _ what: String, _ path: String, _ field: Field, _ body: () throws -> T
    ) throws(AgentReceiverError) -> T {
      do { return try body() } catch {
        throw AgentReceiverError(
          code: .tlsUnusable, field: .tls(field), message: "cannot use \(what) \(path)",
          cause: error)
      }
    }
    let chain = try load("certificate chain", certificateChainPath, .certificateChainPath) {
      try NIOSSLCertificate.fromPEMFile(certificateChainPath)
    }
    let key = try load("private key", privateKeyPath, .privateKeyPath) {
      try NIOSSLPrivateKey(file: privateKeyPath, format: .pem)
    }
    var configuration = TLSConfiguration.makeServerConfiguration(
      certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    configuration.applicationProtocols = applicationProtocols
    // swift-nio-ssl's server default still completes TLS 1.0 and 1.1 handshakes, whose ciphers
    // and MACs are deprecated (RFC 8996); every agent's TLS stack speaks 1.2.
    configuration.minimumTLSVersion = .tlsv12
    if let clientCAPath {
      let roots = try load("client CA", clientCAPath, .clientCAPath) {
        try NIOSSLCertificate.fromPEMFile(clientCAPath)
      }
      configuration.trustRoots = .certificates(roots)
      configuration.certificateVerification = .noHostnameVerification
    }
    return try load("the key with the certificate", privateKeyPath, .privateKeyPath) {
      try NIOSSLContext(configuration: configuration)
    }
  }
}
