import CoreMetrics
import NIOHTTP1
import Synchronization

/// Requests answered, by route and status, so operators see refusals (`400`, `401`, `413`,
/// `429`, `501`, `503`) per kind of data.
final class HTTPReceiverMetrics: Sendable {
  private let factory: any MetricsFactory
  private let counters = Mutex<[String: Counter]>([:])

  init(factory: any MetricsFactory) {
    self.factory = factory
  }

  /// `relay_http_requests_total{route="segment",status="200"}`.
  func request(route: String, status: HTTPResponseStatus) {
    let code = String(status.code)
    let counter = counters.withLock { cache in
      let key = route + " " + code
      if let counter = cache[key] { return counter }
      let counter = Counter(
        label: "relay_http_requests_total", dimensions: [("route", route), ("status", code)],
        factory: factory)
      cache[key] = counter
      return counter
    }
    counter.increment()
  }
}
