/// Decides, from what `stat` says about a set of files, whether what was built from them must be
/// built again. A value with no I/O: the caller looks at the files, asks, loads, and reports how
/// the load went.
///
/// A load that failed (a file half written, a key that does not match its certificate yet) is
/// not tried again until the files change once more, so one bad rotation is reported once rather
/// than at every poll; the material built last keeps being used meanwhile.
package struct FileWatch: Sendable, Equatable {
  package enum State: Sendable, Equatable {
    /// The material in use was built from files that looked like this.
    case current(loaded: [FileIdentity?])
    /// The material in use was built from `loaded`; the files then looked like `failed`, and
    /// building from them failed.
    case failing(loaded: [FileIdentity?], failed: [FileIdentity?])
  }

  package enum Action: Sendable, Equatable {
    /// Keep the material in use.
    case keep
    /// Build the material again, then report `loaded` or `failed` with the same identities.
    case load
  }

  package private(set) var state: State

  /// - Parameter loaded: the files as they were when the material in use was built.
  package init(loaded: [FileIdentity?]) {
    state = .current(loaded: loaded)
  }

  /// - Parameters:
  ///   - seen: the files as they are now.
  ///   - forced: an operator asked for a reload (SIGHUP): load even when nothing changed.
  package func poll(seen: [FileIdentity?], forced: Bool) -> Action {
    if forced { return .load }
    switch state {
    case .current(let loaded): return seen == loaded ? .keep : .load
    case .failing(let loaded, let failed): return seen == loaded || seen == failed ? .keep : .load
    }
  }

  /// The material was built from files that looked like `seen`.
  package mutating func loaded(seen: [FileIdentity?]) {
    state = .current(loaded: seen)
  }

  /// Building from files that looked like `seen` failed; the old material stays in use.
  package mutating func failed(seen: [FileIdentity?]) {
    switch state {
    case .current(let loaded), .failing(let loaded, _):
      state = .failing(loaded: loaded, failed: seen)
    }
  }
}
