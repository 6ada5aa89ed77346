import CoreMetrics
import Synchronization

/// The bytes the relay holds for clients before their data is a record: gRPC messages still
/// arriving, HTTP bodies being read. One budget for the whole process, with a share per
/// connection, so one client declaring huge messages it never finishes, or posting huge bodies
/// slowly, cannot take the memory every other agent needs.
///
/// Agents' ordinary traffic never touches it: messages below `unbudgetedMessageBytes` pass
/// without a reservation (flow control and the per-stream read hold already bound them), and
/// what waits for the disk queue has its own bound per stream.
package final class ClientMemoryBudget: Sendable {
  /// The process-wide limit.
  package let limit: Int
  /// The most one connection may hold; at least one message of the largest accepted size.
  package let connectionShare: Int
  /// A message or body below this is not reserved: an agent's segments and logs are KB-sized,
  /// and a stream or request holds only one at a time.
  package static let unbudgetedMessageBytes = 64 << 10

  private let held = Atomic<Int>(0)
  private let heldGauge: Gauge
  private let refusals: Counter

  package init(limit: Int, connectionShare: Int, metricsFactory: any MetricsFactory) {
    self.limit = limit
    self.connectionShare = min(connectionShare, limit)
    heldGauge = Gauge(label: "relay_client_memory_held_bytes", factory: metricsFactory)
    refusals = Counter(label: "relay_client_memory_refusals_total", factory: metricsFactory)
    Gauge(label: "relay_client_memory_limit_bytes", factory: metricsFactory).record(limit)
    heldGauge.record(0)
  }

  /// Takes `bytes` from the budget, or takes nothing and returns false when that would pass
  /// the limit.
  fileprivate func reserve(_ bytes: Int) -> Bool {
    var current = held.load(ordering: .relaxed)
    while current + bytes <= limit {
      let (exchanged, original) = held.compareExchange(
        expected: current, desired: current + bytes, ordering: .relaxed)
      if exchanged {
        heldGauge.record(current + bytes)
        return true
      }
      current = original
    }
    refusals.increment()
    return false
  }

  fileprivate func release(_ bytes: Int) {
    let (_, now) = held.subtract(bytes, ordering: .relaxed)
    heldGauge.record(now)
  }

  /// What the process holds now, for tests and status.
  package var heldBytes: Int { held.load(ordering: .relaxed) }
}

/// One connection's part of the budget. Used on the connection's event loop only (all its
/// streams share it), so it needs no lock of its own.
package final class ConnectionMemoryShare {
  private let budget: ClientMemoryBudget
  private var held = 0

  package init(budget: ClientMemoryBudget) {
    self.budget = budget
  }

  /// Grows or shrinks what one holder (a stream, a request) keeps, `reserved`, to `wanted`,
  /// within the connection's share and the process's budget.
  /// - Returns: false, changing nothing, when growing would pass either.
  package func resize(_ reserved: inout Int, to wanted: Int) -> Bool {
    let growth = wanted - reserved
    if growth > 0 {
      guard held + growth <= budget.connectionShare, budget.reserve(growth) else { return false }
    } else if growth < 0 {
      budget.release(-growth)
    }
    held += growth
    reserved = wanted
    return true
  }
}
