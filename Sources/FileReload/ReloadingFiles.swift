import Synchronization

/// Material built from files (a TLS context, a token) that is built again when the files change
/// on disk, so rotated certificates and Secrets take effect without a restart. Readers take
/// ``current`` on each use (a new connection, a call); a failed rebuild keeps the old material.
package final class ReloadingFiles<Material: Sendable, Failure: Error>: Sendable {
  /// The files the material is built from, in the order `load` reads them.
  package let paths: [String]
  private let load: @Sendable () throws(Failure) -> Material
  private let state: Mutex<(material: Material, watch: FileWatch)>

  /// Builds the material once: a failure here is a startup error, as there is nothing to keep.
  package init(
    paths: [String], load: @escaping @Sendable () throws(Failure) -> Material
  ) throws(Failure) {
    let seen = paths.map(FileIdentity.init(path:))
    let material = try load()
    self.paths = paths
    self.load = load
    self.state = Mutex((material, FileWatch(loaded: seen)))
  }

  /// The material built last.
  package var current: Material {
    state.withLock { $0.material }
  }

  /// Builds the material again when the files changed since it was built (or when `forced`).
  /// Meant for one caller at a time (a watch loop); readers are never held up by the load.
  package func reload(forced: Bool) -> ReloadOutcome<Failure> {
    // Looked at before reading, so a file replaced during the load is seen at the next poll.
    let seen = paths.map(FileIdentity.init(path:))
    guard state.withLock({ $0.watch.poll(seen: seen, forced: forced) }) == .load else {
      return .unchanged
    }
    do {
      let material = try load()
      state.withLock {
        $0.material = material
        $0.watch.loaded(seen: seen)
      }
      return .reloaded
    } catch {
      state.withLock { $0.watch.failed(seen: seen) }
      return .failed(error)
    }
  }
}

/// What a reload did.
package enum ReloadOutcome<Failure: Error> {
  /// The files did not change; nothing was read.
  case unchanged
  /// The material was built again and is now ``ReloadingFiles/current``.
  case reloaded
  /// Building failed; the old material stays in use.
  case failed(Failure)
}
