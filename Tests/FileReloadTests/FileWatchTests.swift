import FileReload
import Testing

/// The decisions behind a certificate rotation, without files: what cert-manager and the kubelet
/// do to a Secret's files, and an operator's SIGHUP.
@Suite(.timeLimit(.minutes(1))) struct FileWatchTests {
  static func identity(inode: UInt64, size: Int64 = 100, modified: Int64 = 1) -> FileIdentity {
    FileIdentity(device: 1, inode: inode, size: size, modifiedSeconds: modified)
  }
  let certificate = identity(inode: 1)
  let key = identity(inode: 2)

  /// Nothing changed: nothing is read, at every poll.
  @Test func keepsWhatWasLoadedWhileNothingChanges() {
    let watch = FileWatch(loaded: [certificate, key])
    #expect(watch.poll(seen: [certificate, key], forced: false) == .keep)
  }

  /// The kubelet's symlink swap gives the path a new inode; an in-place rewrite a new size or
  /// time. Either is a change.
  @Test(arguments: [
    identity(inode: 9), identity(inode: 1, size: 101), identity(inode: 1, modified: 2),
  ])
  func loadsWhenAFileChangesInAnyWay(rotated: FileIdentity) {
    let watch = FileWatch(loaded: [certificate, key])
    #expect(watch.poll(seen: [rotated, key], forced: false) == .load)
  }

  /// A file deleted (a dangling link mid-swap) is a change too: the load then fails and is
  /// reported, and the old context is kept.
  @Test func aFileThatDisappearsIsAChange() {
    let watch = FileWatch(loaded: [certificate, key])
    #expect(watch.poll(seen: [certificate, nil], forced: false) == .load)
  }

  /// A half-written file fails once and is not read again at every poll (one error line, not
  /// one every 10 s); once the writer finishes, the file changes again and is loaded.
  @Test func aFailedLoadIsRetriedOnlyWhenTheFilesChangeAgain() {
    var watch = FileWatch(loaded: [certificate, key])
    let halfWritten = Self.identity(inode: 1, size: 40, modified: 2)
    #expect(watch.poll(seen: [halfWritten, key], forced: false) == .load)
    watch.failed(seen: [halfWritten, key])
    #expect(watch.state == .failing(loaded: [certificate, key], failed: [halfWritten, key]))
    #expect(watch.poll(seen: [halfWritten, key], forced: false) == .keep)

    let complete = Self.identity(inode: 1, size: 120, modified: 3)
    #expect(watch.poll(seen: [complete, key], forced: false) == .load)
    watch.loaded(seen: [complete, key])
    #expect(watch.state == .current(loaded: [complete, key]))
    #expect(watch.poll(seen: [complete, key], forced: false) == .keep)
  }

  /// Files put back as they were loaded while failing: nothing to do, the old material is theirs.
  @Test func filesRestoredToWhatWasLoadedNeedNoLoad() {
    var watch = FileWatch(loaded: [certificate, key])
    let broken = [Self.identity(inode: 7), key]
    watch.failed(seen: broken)
    #expect(watch.poll(seen: [certificate, key], forced: false) == .keep)
  }

  /// SIGHUP loads whatever the files look like, even after a failure on the same files (the
  /// operator may have fixed permissions, which `stat`'s identity does not show).
  @Test func aForcedPollAlwaysLoads() {
    var watch = FileWatch(loaded: [certificate, key])
    #expect(watch.poll(seen: [certificate, key], forced: true) == .load)
    watch.failed(seen: [certificate, key])
    #expect(watch.poll(seen: [certificate, key], forced: true) == .load)
  }
}
