import FileReload
import Glibc
import RelayTestSupport
import Synchronization
import Testing

/// `ReloadingFiles` and `SecretFile` on real files, rotated the way the kubelet updates a mounted
/// Secret (new directory, `..data` link swapped) and the way an operator edits one in place.
@Suite(.timeLimit(.minutes(1))) struct ReloadingFilesTests {
  /// A Secret's layout: `token` → `..data/token`, `..data` → `..<version>`.
  final class MountedSecret: Sendable {
    private let directory: TemporaryDirectory
    private let versions = Mutex(0)

    init() throws {
      directory = try TemporaryDirectory(prefix: "reload-test")
    }

    deinit { directory.remove() }

    var root: String { directory.path }

    var path: String { "\(root)/token" }

    /// What the kubelet does: the new contents in a new directory, then one atomic rename of a
    /// new `..data` link over the old one.
    func publish(_ contents: String) {
      let version = versions.withLock {
        $0 += 1
        return $0
      }
      let directory = "\(root)/..v\(version)"
      mkdir(directory, 0o755)
      write("\(directory)/token", contents)
      symlink("..v\(version)", "\(root)/..data_tmp")
      rename("\(root)/..data_tmp", "\(root)/..data")
      if version == 1 { symlink("..data/token", path) }
    }

    func write(_ path: String, _ contents: String) {
      let file = fopen(path, "w")!
      fputs(contents, file)
      fclose(file)
    }
  }

  @Test func aSymlinkSwapIsSeenAndLoaded() throws {
    let secret = try MountedSecret()
    secret.publish("first\n")
    let path = secret.path
    let token = try ReloadingFiles(paths: [path]) { () throws(SecretFileError) in
      try SecretFile.read(path)
    }
    #expect(token.current == "first")
    guard case .unchanged = token.reload(forced: false) else {
      Issue.record("nothing changed, yet it loaded")
      return
    }
    secret.publish("second\n")
    guard case .reloaded = token.reload(forced: false) else {
      Issue.record("the swapped link was not seen")
      return
    }
    #expect(token.current == "second")
  }

  /// A file emptied mid-write fails, the old token stays, and the fixed file is loaded next.
  @Test func aFailedLoadKeepsTheOldMaterial() throws {
    let secret = try MountedSecret()
    secret.publish("first")
    let path = secret.path
    let token = try ReloadingFiles(paths: [path]) { () throws(SecretFileError) in
      try SecretFile.read(path)
    }
    secret.write("\(secret.root)/..v1/token", "")
    guard case .failed(let error) = token.reload(forced: false) else {
      Issue.record("an empty token file was accepted")
      return
    }
    #expect(error.code == .empty && error.path == path)
    #expect(token.current == "first")
    guard case .unchanged = token.reload(forced: false) else {
      Issue.record("the same broken file was read again")
      return
    }
    secret.write("\(secret.root)/..v1/token", "fixed\r\n")
    guard case .reloaded = token.reload(forced: false) else {
      Issue.record("the fixed file was not loaded")
      return
    }
    #expect(token.current == "fixed")
  }

  @Test func aMissingSecretFileIsNamed() {
    #expect {
      try SecretFile.read("/nonexistent/relay-token")
    } throws: { error in
      let error = error as? SecretFileError
      return error?.code == .unreadable
        && error?.description.contains("/nonexistent/relay-token") == true
    }
  }

  /// A load running while the files are replaced must not be mistaken for the newer files.
  @Test func filesChangedDuringALoadAreLoadedAgainAtTheNextPoll() throws {
    let secret = try MountedSecret()
    secret.publish("first")
    let path = secret.path
    let replaceDuringLoad = Mutex(false)
    let token = try ReloadingFiles(paths: [path]) { () throws(SecretFileError) in
      let value = try SecretFile.read(path)
      if replaceDuringLoad.withLock({ $0 }) {
        replaceDuringLoad.withLock { $0 = false }
        secret.publish("third")
      }
      return value
    }
    secret.publish("second")
    replaceDuringLoad.withLock { $0 = true }
    _ = token.reload(forced: false)
    #expect(token.current == "second")
    guard case .reloaded = token.reload(forced: false) else {
      Issue.record("the file replaced during the load was not seen")
      return
    }
    #expect(token.current == "third")
  }
}
