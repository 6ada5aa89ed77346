/// How the relay treats the messages of one agent-facing gRPC method.
public enum AgentCall: Sendable, Hashable {
  /// `TraceSegmentReportService/collect`: a client stream of SegmentObject.
  case segmentStream
  /// `TraceSegmentReportService/collectInSync`: one SegmentCollection.
  case segmentCollection

  /// The method served at an HTTP/2 `:path`, or nil when the relay does not serve it.
  ///
  /// Agents on protocol 8.0–8.3 call the same services without the `skywalking.v3` package, and
  /// the OAP still answers them, so the relay does too.
  public init?(path: Substring) {
    guard let call = Self.byPath[path] else { return nil }
    self = call
  }

  private static let byPath: [Substring: AgentCall] = [
    "/skywalking.v3.TraceSegmentReportService/collect": .segmentStream,
    "/skywalking.v3.TraceSegmentReportService/collectInSync": .segmentCollection,
    "/TraceSegmentReportService/collect": .segmentStream,
  ]
}
