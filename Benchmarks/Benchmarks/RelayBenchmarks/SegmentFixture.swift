/// A 1 KiB `SegmentObject` shaped like a Java agent's (an entry span with a reference and
/// tags, an exit span, a local span), encoded by hand so the benchmarks need no protobuf
/// runtime. Field numbers are those of skywalking.v3 `Tracing.proto`.
enum SegmentFixture {
  static let oneKiB: [UInt8] = segment(paddedTo: 1024)

  static func segment(paddedTo size: Int) -> [UInt8] {
    let traceID = "8f2c7a1e4b5d4e6f9a0b1c2d3e4f5a6b.51.17000000000000001"
    var entry = Encoder()
    entry.varint(1, 0)  // spanId
    entry.varint(2, 0xFFFF_FFFF_FFFF_FFFF)  // parentSpanId -1
    entry.varint(3, 1_700_000_000_000)
    entry.varint(4, 1_700_000_000_025)
    var reference = Encoder()
    reference.string(2, traceID)
    reference.string(3, "a1b2c3d4e5f6.42.17000000000000000")
    reference.varint(4, 1)
    reference.string(5, "gateway")
    reference.string(6, "gateway-0@10.0.0.1")
    reference.string(7, "GET:/api/orders/{id}/items")
    reference.string(8, "orders:8080")
    entry.message(5, reference)
    entry.string(6, "GET:/api/orders/{id}/items")
    entry.varint(8, 0)  // Entry
    entry.varint(9, 3)  // Http
    entry.varint(10, 1)
    entry.message(12, pair("http.method", "GET"))
    entry.message(12, pair("url", "http://orders:8080/api/orders/42/items"))
    var exit = Encoder()
    exit.varint(1, 1)
    exit.varint(2, 0)
    exit.varint(3, 1_700_000_000_002)
    exit.varint(4, 1_700_000_000_020)
    exit.string(6, "Mysql/JDBC/PreparedStatement/executeQuery")
    exit.string(7, "mysql:3306")
    exit.varint(8, 1)  // Exit
    exit.varint(9, 1)  // Database
    exit.varint(10, 33)
    exit.message(12, pair("db.type", "sql"))
    var local = Encoder()
    local.varint(1, 2)
    local.varint(2, 0)
    local.varint(3, 1_700_000_000_021)
    local.varint(4, 1_700_000_000_024)
    local.string(6, "OrderService.loadItems")
    local.varint(8, 2)  // Local
    var segment = Encoder()
    segment.string(1, traceID)
    segment.string(2, "3c4d5e6f7a8b.51.17000000000000001")
    segment.message(3, entry)
    segment.message(3, local)
    let statementPrefix = "SELECT id, sku, quantity FROM items WHERE order_id = ? /* "
    let base = segment.bytes.count + exit.bytes.count + 60
    exit.message(
      12,
      pair("db.statement", statementPrefix + String(repeating: "x", count: max(size - base, 1))))
    segment.message(3, exit)
    segment.string(4, "orders")
    segment.string(5, "orders-7f9c@10.0.3.17")
    return segment.bytes
  }

  private static func pair(_ key: String, _ value: String) -> Encoder {
    var encoder = Encoder()
    encoder.string(1, key)
    encoder.string(2, value)
    return encoder
  }

  /// The protobuf wire format, as little of it as a SegmentObject needs.
  private struct Encoder {
    var bytes: [UInt8] = []

    mutating func varint(_ field: Int, _ value: UInt64) {
      rawVarint(UInt64(field << 3))
      rawVarint(value)
    }

    mutating func string(_ field: Int, _ value: String) {
      lengthDelimited(field, Array(value.utf8))
    }

    mutating func message(_ field: Int, _ value: Encoder) {
      lengthDelimited(field, value.bytes)
    }

    private mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
      rawVarint(UInt64(field << 3 | 2))
      rawVarint(UInt64(payload.count))
      bytes += payload
    }

    private mutating func rawVarint(_ value: UInt64) {
      var remaining = value
      while remaining >= 0x80 {
        bytes.append(UInt8(truncatingIfNeeded: remaining) | 0x80)
        remaining >>= 7
      }
      bytes.append(UInt8(remaining))
    }
  }
}
