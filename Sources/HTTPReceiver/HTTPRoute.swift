import SkyWalkingProtocol
import SkyWalkingWire
import SwiftProtobuf

/// What the relay does with a POST to one path of the OAP's REST protocol.
enum HTTPRoute: Sendable {
  /// The body holds one element (`isBatch` false) or a JSON array of them, each converted to
  /// protobuf and published like the gRPC message of the same kind.
  case publish(RecordKind, isBatch: Bool, converter: AgentJSONConverter)
  /// Data with no Kafka topic in the OAP (browser data, events): passed to the OAP's REST port.
  case forward

  /// The route of a request target (query ignored), or nil when the OAP serves no such path.
  init?(target: String) {
    let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
    guard let route = Self.byPath[path] else { return nil }
    self = route
  }

  /// The paths the OAP's REST port takes (`SegmentReportHandler`, `ManagementHandler`,
  /// `LogHandler`, `EventHandler` and the browser handlers of `oap-server`).
  private static let byPath: [Substring: HTTPRoute] = [
    "/v3/segment": .publish(
      .segment, isBatch: false, converter: .init(Skywalking_V3_SegmentObject.self)),
    "/v3/segments": .publish(
      .segment, isBatch: true, converter: .init(Skywalking_V3_SegmentObject.self)),
    "/v3/management/reportProperties": .publish(
      .instanceProperties, isBatch: false, converter: .init(Skywalking_V3_InstanceProperties.self)),
    "/v3/management/keepAlive": .publish(
      .keepAlive, isBatch: false, converter: .init(Skywalking_V3_InstancePingPkg.self)),
    "/v3/logs": .publish(.log, isBatch: true, converter: .init(Skywalking_V3_LogData.self)),
    "/v3/events": .forward,
    "/browser/perfData": .forward,
    "/browser/perfData/webVitals": .forward,
    "/browser/perfData/resources": .forward,
    "/browser/perfData/webInteractions": .forward,
    "/browser/errorLog": .forward,
    "/browser/errorLogs": .forward,
  ]

  /// The label of metrics, e.g. `segment`, `forward`.
  var label: String {
    switch self {
    case .publish(let kind, _, _): kind.label
    case .forward: "forward"
    }
  }
}
