import NIOCore

/// Which connections of a capped endpoint are admitted and which one makes room, as a value: the
/// rules behind ``ConnectionLimiter``, tested without sockets.
///
/// A connection counts against the cap and, when it has a peer address, against that address's
/// own cap. With shedding on, a newcomer at the cap is not refused: the oldest connection that
/// was never vouched for (it carried no agent data: a silent one, or one that only holds health
/// streams) is closed instead. Clients without the token can then fill the cap only with
/// connections that the next agent pushes out, and a fresh agent connection is the youngest, so
/// a cap's worth of newer connections must arrive before it makes its first call to lose it.
package struct ConnectionRoster<ID: Hashable, Connection> {
  package enum Decision {
    case admit
    /// Admitted once `shed`, no longer counted, is closed.
    case admitAfterShedding(Connection)
    case refuse(ConnectionRefusal)
  }

  private struct Entry {
    let connection: Connection
    let peer: String?
    /// Admission order, never reused: it tells an entry from a stale place in `unvouched` left
    /// by an earlier connection with the same ID.
    let serial: UInt64
    var vouched = false
  }

  package let limits: ConnectionLimits
  private var entries: [ID: Entry] = [:]
  private var perPeer: [String: Int] = [:]
  /// Connections in admission order, oldest first, for shedding; vouched and removed ones are
  /// skipped when met and dropped when they outnumber the live ones.
  private var unvouched = CircularBuffer<(ID, serial: UInt64)>()
  private var serials: UInt64 = 0

  package init(limits: ConnectionLimits) {
    self.limits = limits
  }

  /// Connections admitted and neither closed nor shed.
  package var count: Int { entries.count }

  /// Places kept in admission order, live or stale: at most about twice `count`.
  package var shedOrderCount: Int { unvouched.count }

  /// - Parameter peer: the client's address without its port; nil for a connection with no
  ///   address to share (a Unix socket), which only the total cap counts.
  package mutating func admit(_ id: ID, _ connection: Connection, peer: String?) -> Decision {
    if let peer, let maxPerPeer = limits.maxConnectionsPerPeer,
      perPeer[peer, default: 0] >= maxPerPeer
    {
      return .refuse(.peerFull)
    }
    var decision = Decision.admit
    if entries.count >= limits.maxConnections {
      guard limits.shedsUnvouched, let oldest = popOldestUnvouched() else {
        return .refuse(.full)
      }
      decision = .admitAfterShedding(oldest.connection)
      remove(oldest.id)
    }
    serials += 1
    entries[id] = Entry(connection: connection, peer: peer, serial: serials)
    if let peer { perPeer[peer, default: 0] += 1 }
    unvouched.append((id, serials))
    return decision
  }

  /// The connection carried agent data: it is never shed.
  package mutating func vouch(for id: ID) {
    entries[id]?.vouched = true
    compactIfStale()
  }

  /// The connection closed (or was shed): it no longer counts. Removing twice is harmless.
  package mutating func remove(_ id: ID) {
    guard let entry = entries.removeValue(forKey: id) else { return }
    if let peer = entry.peer {
      perPeer[peer]! -= 1
      if perPeer[peer] == 0 { perPeer[peer] = nil }
    }
    compactIfStale()
  }

  private mutating func popOldestUnvouched() -> (id: ID, connection: Connection)? {
    while let (id, serial) = unvouched.popFirst() {
      if let entry = entries[id], entry.serial == serial, !entry.vouched {
        return (id, entry.connection)
      }
    }
    return nil
  }

  /// Keeps `unvouched` within twice the live connections, so vouched and closed ones cost
  /// amortised constant time and memory.
  private mutating func compactIfStale() {
    guard unvouched.count > 2 * entries.count + 64 else { return }
    let live = unvouched.filter { place in
      entries[place.0].map { $0.serial == place.serial && !$0.vouched } ?? false
    }
    unvouched = CircularBuffer(live)
  }
}

package struct ConnectionLimits: Sendable {
  package var maxConnections: Int
  /// nil: no cap per address.
  package var maxConnectionsPerPeer: Int?
  /// Whether a newcomer at the cap closes the oldest connection never vouched for, rather
  /// than being refused.
  package var shedsUnvouched: Bool

  package init(maxConnections: Int, maxConnectionsPerPeer: Int? = nil, shedsUnvouched: Bool = false)
  {
    precondition(maxConnections >= 1, "a capped endpoint needs room for one connection")
    self.maxConnections = maxConnections
    self.maxConnectionsPerPeer = maxConnectionsPerPeer
    self.shedsUnvouched = shedsUnvouched
  }
}

package enum ConnectionRefusal: Equatable, Sendable {
  /// At the cap, with nothing to shed.
  case full
  /// Its address holds `maxConnectionsPerPeer` already.
  case peerFull
}
