import CoreMetrics
import NIOCore

/// The admin endpoint's open connections, applying `ConnectionAdmission` to real channels.
///
/// Lives on the admin endpoint's one event loop, with every connection it tracks, so it needs no
/// lock. The metric names are the ones the accept-time cap had: `relay_admin_connections` (open
/// now) and `relay_admin_connections_rejected_total` (closed to keep within the cap).
final class AdminConnections {
  typealias ID = ConnectionAdmission<any Channel>.ID

  private var admission: ConnectionAdmission<any Channel>
  private let open: Meter
  private let closedForRoom: Counter

  init(maxConnections: Int, metricsFactory: any MetricsFactory) {
    admission = ConnectionAdmission(maxConnections: maxConnections)
    open = Meter(label: "relay_admin_connections", factory: metricsFactory)
    closedForRoom = Counter(
      label: "relay_admin_connections_rejected_total", factory: metricsFactory)
  }

  func opened(_ channel: any Channel) -> ID {
    let (id, action) = admission.admit(channel)
    switch action {
    case .admit:
      break
    case .admitAfterClosing(let oldest):
      closedForRoom.increment()
      oldest.close(promise: nil)
    }
    open.set(admission.count)
    return id
  }

  func completedRequest(_ id: ID) {
    admission.completedRequest(id)
  }

  func closed(_ id: ID) {
    admission.closed(id)
    open.set(admission.count)
  }
}
