import NIOSSL

extension OAPForwarderTLS {
  /// The files TLS to the OAP is built from, watched for rotation.
  package var paths: [String] { Field.allCases.compactMap(path(of:)) }

  /// Loads each file once, so a bad one is reported naming the field rather than failing every
  /// handshake later.
  package func checkFiles() throws(OAPForwarderError) {
    for field in Field.allCases {
      guard let path = path(of: field) else { continue }
      do {
        switch field {
        case .trustedCAPath, .certificateChainPath: _ = try NIOSSLCertificate.fromPEMFile(path)
        case .privateKeyPath: _ = try NIOSSLPrivateKey(file: path, format: .pem)
        }
      } catch {
        throw OAPForwarderError(
          code: .tlsUnusable, field: .tlsFile(field), message: "cannot use \(path)", cause: error)
      }
    }
  }
}
