import AgentIngest
import CoreMetrics
import NIOHTTP1

/// Requests answered, by route and status, so operators see refusals (`400`, `401`, `413`,
/// `429`, `501`, `503`) per kind of data.
final class HTTPReceiverMetrics: Sendable {
  private let counters: CounterCache

  init(factory: any MetricsFactory) {
    counters = CounterCache(factory: factory)
  }

  /// `relay_http_requests_total{route="segment",status="200"}`.
  func request(route: String, status: HTTPResponseStatus) {
    counters.counter(
      "relay_http_requests_total", [("route", route), ("status", String(status.code))]
    ).increment()
  }
}
