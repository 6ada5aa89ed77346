#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A failed system call, described the way an operator needs to read it in a log line:
/// "No space left on device (ENOSPC) writing 00000000000000000007.log".
struct SystemCallError: Error, CustomStringConvertible {
  var errno: Int32
  var operation: String
  var path: String

  var isOutOfSpace: Bool { errno == ENOSPC || errno == EDQUOT }

  var description: String {
    if errno == ELOOP {
      return "refused \(operation) \(path): it is a symbolic link, and the queue never follows "
        + "one (someone else could point the relay's writes, or agents' data, elsewhere)"
    }
    let fileName = path.split(separator: "/").last.map(String.init) ?? path
    return "\(String(cString: strerror(errno))) (\(Self.name(of: errno))) \(operation) \(fileName)"
  }

  /// The queue error a caller sees: out-of-space is distinguished so it can be reported as
  /// "full" rather than as a fault. The message quotes this error whole, since agents are sent
  /// it alone; the error itself stays the cause for callers that look at the errno.
  var queueError: QueueError {
    QueueError(code: isOutOfSpace ? .diskFull : .ioFailure, message: description, cause: self)
  }

  private static func name(of errno: Int32) -> String {
    switch errno {
    case ENOSPC: "ENOSPC"
    case EDQUOT: "EDQUOT"
    case EIO: "EIO"
    case EROFS: "EROFS"
    case EACCES: "EACCES"
    case EPERM: "EPERM"
    case ENOENT: "ENOENT"
    case EMFILE: "EMFILE"
    case ENFILE: "ENFILE"
    case EFBIG: "EFBIG"
    case ENOTDIR: "ENOTDIR"
    case EWOULDBLOCK: "EWOULDBLOCK"
    default: "errno \(errno)"
    }
  }
}

/// An open file descriptor with the handful of positioned operations the queue needs. Every
/// call retries EINTR and short transfers, so callers only see complete results or an error.
struct LogFile: Sendable {
  let descriptor: Int32
  let path: String

  /// IOV_MAX, which Glibc does not export to Swift as a constant.
  private static let maximumBuffersPerCall = max(16, sysconf(Int32(_SC_IOV_MAX)))

  /// Opens a file of the queue, never through a symbolic link (`ELOOP` then), so a link planted
  /// in the directory cannot send agents' data to, or truncate, a file elsewhere. A file it
  /// creates is readable by the relay's user only: it holds what agents sent.
  static func open(_ path: String, flags: Int32) throws(SystemCallError) -> LogFile {
    try openFollowingLinks(path, flags: flags | O_NOFOLLOW)
  }

  private static func openFollowingLinks(_ path: String, flags: Int32) throws(SystemCallError)
    -> LogFile
  {
    while true {
      let descriptor = posixOpen(path, flags | O_CLOEXEC)
      if descriptor >= 0 { return LogFile(descriptor: descriptor, path: path) }
      if errno != EINTR { throw SystemCallError(errno: errno, operation: "opening", path: path) }
    }
  }

  static func logFileName(_ number: UInt64) -> String {
    let digits = String(number)
    return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".log"
  }

  /// The log file number of a file name like `00000000000000000007.log`, nil for other files.
  static func logFileNumber(fileName: String) -> UInt64? {
    guard fileName.utf8.count == 24, fileName.hasSuffix(".log") else { return nil }
    let digits = fileName.utf8.prefix(20)
    guard digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
      return nil
    }
    return UInt64(Substring(digits))
  }

  func close() {
    posixClose(descriptor)
  }

  func size() throws(SystemCallError) -> UInt64 {
    var info = stat()
    guard fstat(descriptor, &info) == 0 else {
      throw SystemCallError(errno: errno, operation: "inspecting", path: path)
    }
    return UInt64(info.st_size)
  }

  /// Reads until `buffer` is full or the end of the file; returns the bytes read.
  func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(SystemCallError)
    -> Int
  {
    var done = 0
    while done < buffer.count {
      let result = pread(
        descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
      if result > 0 {
        done += result
      } else if result == 0 {
        break
      } else if errno != EINTR {
        throw SystemCallError(errno: errno, operation: "reading", path: path)
      }
    }
    return done
  }

  /// Appends up to `count` bytes read at `offset` to `buffer`; returns how many it got (fewer
  /// only at the end of the file). Reads into uninitialized memory: zero-filling megabytes only
  /// to overwrite them cost more than the read itself.
  func read(appendingTo buffer: inout [UInt8], count: Int, at offset: UInt64)
    throws(SystemCallError) -> Int
  {
    var failure: SystemCallError?
    let chunk = [UInt8](unsafeUninitializedCapacity: count) { bytes, initialized in
      do throws(SystemCallError) {
        initialized = try read(into: UnsafeMutableRawBufferPointer(bytes), at: offset)
      } catch {
        failure = error
        initialized = 0
      }
    }
    if let failure { throw failure }
    if buffer.isEmpty {
      buffer = chunk
    } else {
      buffer.append(contentsOf: chunk)
    }
    return chunk.count
  }

  /// Writes all of `bytes` at `offset`.
  func write(_ bytes: [UInt8], at offset: UInt64) throws(SystemCallError) {
    var bytes = bytes
    let result = bytes.withUnsafeMutableBytes { buffer in
      Result { () throws(SystemCallError) in
        var buffers = [iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)]
        try write(&buffers, at: offset)
      }
    }
    try result.get()
  }

  /// Writes every byte of `buffers` at `offset` with as few `pwritev` calls as possible (one,
  /// unless there are more than IOV_MAX buffers or the kernel transfers less).
  func write(_ buffers: inout [iovec], at offset: UInt64) throws(SystemCallError) {
    var position = off_t(offset)
    var first = 0
    while first < buffers.count {
      let chunk = min(buffers.count - first, Self.maximumBuffersPerCall)
      let written = buffers.withUnsafeMutableBufferPointer { pointer in
        pwritev(descriptor, pointer.baseAddress! + first, Int32(chunk), position)
      }
      if written < 0 {
        if errno == EINTR { continue }
        throw SystemCallError(errno: errno, operation: "writing", path: path)
      }
      position += off_t(written)
      var remaining = written
      while remaining > 0 && remaining >= buffers[first].iov_len {
        remaining -= buffers[first].iov_len
        first += 1
      }
      if remaining > 0 {
        buffers[first].iov_base += remaining
        buffers[first].iov_len -= remaining
      }
      while first < buffers.count && buffers[first].iov_len == 0 { first += 1 }
    }
  }

  func sync() throws(SystemCallError) {
    while fdatasync(descriptor) != 0 {
      if errno != EINTR { throw SystemCallError(errno: errno, operation: "syncing", path: path) }
    }
  }

  /// A second descriptor for the same open file, which outlives this one's `close`; nil when
  /// the process is out of descriptors.
  func duplicate() -> LogFile? {
    let copy = dup(descriptor)
    return copy >= 0 ? LogFile(descriptor: copy, path: path) : nil
  }

  func truncate(to size: UInt64) throws(SystemCallError) {
    while ftruncate(descriptor, off_t(size)) != 0 {
      if errno != EINTR {
        throw SystemCallError(errno: errno, operation: "truncating", path: path)
      }
    }
  }

  /// Creates `directory` and any missing ancestors, syncing each new one's parent: without that,
  /// a power cut can undo the queue directory itself, and every record acknowledged in it. New
  /// directories are the relay user's only (0700); an existing one keeps the mode its operator
  /// gave it (a volume shared through a group, say). Returns the directories it created,
  /// deepest first.
  @discardableResult
  static func createDirectoryDurably(_ directory: String) throws(SystemCallError) -> [String] {
    var missing: [String] = []
    var path = directory
    while !path.isEmpty, path != "/", access(path, F_OK) != 0 {
      missing.append(path)
      path = parent(of: path)
    }
    for created in missing.reversed() {
      if mkdir(created, 0o700) != 0, errno != EEXIST {
        throw SystemCallError(errno: errno, operation: "creating directory", path: created)
      }
      try syncDirectory(parent(of: created))
    }
    return missing
  }

  private static func parent(of path: String) -> String {
    let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
    guard let slash = trimmed.lastIndex(of: "/") else { return "." }
    return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
  }

  /// The names in `directory` (without `.` and `..`), read with `readdir` so the queue needs
  /// no Foundation.
  static func fileNames(in directory: String) throws(SystemCallError) -> [String] {
    guard let stream = opendir(directory) else {
      throw SystemCallError(errno: errno, operation: "listing", path: directory)
    }
    defer { closedir(stream) }
    var names: [String] = []
    while let entry = readdir(stream) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  /// Makes a create, rename or unlink inside `directory` durable. The queue directory itself
  /// may be a link an operator made (to a mounted volume), so this one open follows links.
  static func syncDirectory(_ directory: String) throws(SystemCallError) {
    let handle = try openFollowingLinks(directory, flags: O_RDONLY | O_DIRECTORY)
    defer { handle.close() }
    while fsync(handle.descriptor) != 0 {
      if errno != EINTR {
        throw SystemCallError(errno: errno, operation: "syncing directory", path: directory)
      }
    }
  }
}

/// File-scope shims: inside `LogFile`, `open` and `close` name its own methods.
private func posixOpen(_ path: String, _ flags: Int32) -> Int32 {
  open(path, flags, 0o600)
}

private func posixClose(_ descriptor: Int32) {
  _ = close(descriptor)
}
