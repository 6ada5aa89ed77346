import NIOSSL

extension OAPForwarderTLS {
  /// The files TLS to the OAP is built from, watched for rotation.
  package var paths: [String] {
    [trustedCAPath, certificateChainPath, privateKeyPath].compactMap { $0 }
  }

  /// Loads each file once, so a bad one is reported naming the field rather than failing every
  /// handshake later.
  package func checkFiles() throws(OAPForwarderError) {
    func check(_ field: String, _ path: String?, _ load: (String) throws -> Void)
      throws(OAPForwarderError)
    {
      guard let path else { return }
      do { try load(path) } catch {
        throw OAPForwarderError(
          code: .tlsUnusable, field: field, message: "cannot use \(path)", cause: error)
      }
    }
    try check("tls.trustedCAPath", trustedCAPath) { _ = try NIOSSLCertificate.fromPEMFile($0) }
    try check("tls.certificateChainPath", certificateChainPath) {
      _ = try NIOSSLCertificate.fromPEMFile($0)
    }
    try check("tls.privateKeyPath", privateKeyPath) {
      _ = try NIOSSLPrivateKey(file: $0, format: .pem)
    }
  }
}
