/// Which admin connections stay open, as a value: the rule behind `AdminConnections`, tested
/// without sockets.
///
/// The admin port is reachable by every pod, and the kubelet's probe is one fresh connection
/// among whatever else is open. Refusing connections beyond the cap would let anyone who holds
/// the cap with half-sent requests fail the liveness probe (and get the relay restarted), so a
/// new connection is always admitted, and at the cap the connection that has gone longest
/// without completing a request (since it was accepted, or since its last answer) is closed to
/// make room. A probe sends its request at once, so it would have to be outlasted by a cap's
/// worth of newer connections before its request arrives to lose its place.
struct ConnectionAdmission<Connection> {
  /// One admitted connection; never reused.
  struct ID: Hashable {
    fileprivate let value: UInt64
  }

  enum Action {
    /// Under the cap: nothing else changes.
    case admit
    /// At the cap: this connection, the least recently active, is no longer counted and is to
    /// be closed.
    case admitAfterClosing(Connection)
  }

  private struct Entry {
    let connection: Connection
    /// The tick of the last acceptance or completed request: lower is longer inactive.
    var lastActivity: UInt64
  }

  let maxConnections: Int
  private var entries: [ID: Entry] = [:]
  private var ticks: UInt64 = 0

  init(maxConnections: Int) {
    precondition(maxConnections >= 1, "the admin port needs room for at least one connection")
    self.maxConnections = maxConnections
  }

  /// Connections admitted and neither closed nor chosen to make room.
  var count: Int { entries.count }

  mutating func admit(_ connection: Connection) -> (ID, Action) {
    var action = Action.admit
    // A linear search: it runs only at the cap, over at most `maxConnections` entries, and
    // keeps `completedRequest` a single write.
    if entries.count >= maxConnections,
      let oldest = entries.min(by: { $0.value.lastActivity < $1.value.lastActivity })
    {
      entries[oldest.key] = nil
      action = .admitAfterClosing(oldest.value.connection)
    }
    let id = ID(value: tick())
    entries[id] = Entry(connection: connection, lastActivity: id.value)
    return (id, action)
  }

  /// The connection completed a request: it is the most recently active again.
  mutating func completedRequest(_ id: ID) {
    let now = tick()
    entries[id]?.lastActivity = now
  }

  /// The connection closed; one already chosen to make room is not counted twice.
  mutating func closed(_ id: ID) {
    entries[id] = nil
  }

  private mutating func tick() -> UInt64 {
    ticks += 1
    return ticks
  }
}
