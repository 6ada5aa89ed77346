import CoreMetrics
import Synchronization

/// Labelled counters made on first use and kept, so the metrics backend never looks a series
/// up twice; shared by the endpoints' metrics.
package final class CounterCache: Sendable {
  private let factory: any MetricsFactory
  private let counters = Mutex<[[String]: Counter]>([:])

  package init(factory: any MetricsFactory) {
    self.factory = factory
  }

  package func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
    let key = [label] + dimensions.flatMap { [$0.0, $0.1] }
    return counters.withLock { cache in
      if let counter = cache[key] { return counter }
      let counter = Counter(label: label, dimensions: dimensions, factory: factory)
      cache[key] = counter
      return counter
    }
  }
}
