import CoreMetrics
import GRPCCore

/// How a forwarded call ended, as counted by `relay_oap_forwarded_total{outcome}`.
enum ForwardOutcome: String, Sendable, CaseIterable {
  case ok
  /// The OAP answered with a non-OK status (e.g. PERMISSION_DENIED for a wrong token).
  case oapError = "oap_error"
  case unreachable
  /// The receiver handed over a call that cannot be forwarded (a malformed path).
  case invalid

  init(_ response: ForwardedResponse) {
    if !response.reachedOAP {
      self = .unreachable
    } else {
      self = response.code == .ok ? .ok : .oapError
    }
  }
}

/// The forwarder's instruments, created once from the injected factory.
struct ForwarderMetrics: Sendable {
  private let forwarded: [ForwardOutcome: Counter]
  /// Time to the OAP's response headers, only for calls it answered: fast local failures would
  /// otherwise hide how slow the OAP is.
  let oapLatency: Timer

  init(factory: any MetricsFactory) {
    var forwarded: [ForwardOutcome: Counter] = [:]
    for outcome in ForwardOutcome.allCases {
      forwarded[outcome] = Counter(
        label: "relay_oap_forwarded_total", dimensions: [("outcome", outcome.rawValue)],
        factory: factory)
    }
    self.forwarded = forwarded
    oapLatency = Timer(label: "relay_oap_forward_latency_seconds", factory: factory)
  }

  func count(_ outcome: ForwardOutcome) {
    forwarded[outcome]?.increment()
  }
}
