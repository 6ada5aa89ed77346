import ModuleError

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A secret kept in a file (a mounted Kubernetes Secret, a Docker secret): its contents without
/// the trailing line break editors and `echo` add.
package enum SecretFile {
  /// Larger than any token; a file beyond it is surely the wrong one.
  package static let maxBytes = 64 << 10

  package static func read(_ path: String) throws(SecretFileError) -> String {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
      throw SecretFileError(code: .unreadable, path: path, errno: errno)
    }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
      let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        throw SecretFileError(code: .unreadable, path: path, errno: errno)
      }
      if count == 0 { break }
      bytes += chunk[..<count]
      guard bytes.count <= maxBytes else { throw SecretFileError(code: .tooLarge, path: path) }
    }
    while let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") {
      bytes.removeLast()
    }
    guard !bytes.isEmpty else { throw SecretFileError(code: .empty, path: path) }
    return String(decoding: bytes, as: UTF8.self)
  }
}

/// A secret file that cannot be used, naming the file.
package struct SecretFileError: Error, CustomStringConvertible {
  package enum Code: String, ModuleErrorCode {
    /// Missing, a directory, or not readable by the relay's user.
    case unreadable
    /// Nothing but line breaks: a token cannot be empty.
    case empty
    /// Over ``SecretFile/maxBytes``.
    case tooLarge
  }

  package var code: Code
  package var path: String
  /// The system's reason for `unreadable`.
  package var errno: Int32?

  package init(code: Code, path: String, errno: Int32? = nil) {
    self.code = code
    self.path = path
    self.errno = errno
  }

  package var description: String {
    switch code {
    case .empty: return "\(path) holds no token (empty, or only line breaks)"
    case .tooLarge: return "\(path) is larger than \(SecretFile.maxBytes) bytes: not a token"
    default:
      let reason = errno.map { String(cString: strerror($0)) } ?? "unknown error"
      return "cannot read \(path): \(reason)"
    }
  }
}
