import SkyWalkingProtocol
import SkyWalkingWire
import SwiftProtobuf
import Testing

/// Each kind of agent data becomes the record the OAP's Kafka fetcher can read on its own.
@Suite(.timeLimit(.minutes(1))) struct RecordExtractorTests {
  struct Extracted {
    var key: String
    var value: [UInt8]
  }

  static func extract(
    _ kind: RecordKind, _ messages: [some SwiftProtobuf.Message]
  ) throws -> (records: [Extracted], final: Extracted?) {
    var extractor = RecordExtractor(kind: kind)
    var records: [Extracted] = []
    for message in messages {
      let bytes: [UInt8] = try message.serializedBytes()
      try bytes.withUnsafeBytes { buffer in
        if let record = try extractor.extract(buffer) { records.append(resolve(record, buffer)) }
      }
    }
    let final = try extractor.finish().map {
      resolve($0, UnsafeRawBufferPointer(start: nil, count: 0))
    }
    return (records, final)
  }

  static func resolve(_ record: ExtractedRecord, _ message: UnsafeRawBufferPointer) -> Extracted {
    Extracted(
      key: record.key.withBytes(in: message) { String(decoding: $0, as: UTF8.self) },
      value: record.value.withBytes(in: message) { Array($0) })
  }

  @Test func managementRecordsAreKeyedSoTheOAPCanTellThemApart() throws {
    let properties = Skywalking_V3_InstanceProperties.with {
      $0.service = "cart"
      $0.serviceInstance = "cart-1"
      $0.properties = [
        .with {
          $0.key = "os"
          $0.value = "linux"
        }
      ]
    }
    let ping = Skywalking_V3_InstancePingPkg.with {
      $0.service = "cart"
      $0.serviceInstance = "cart-1"
    }
    let registered = try Self.extract(.instanceProperties, [properties]).records
    #expect(registered.map(\.key) == ["register-cart-1"])
    #expect(registered.first?.value == (try properties.serializedBytes()))
    #expect(try Self.extract(.keepAlive, [ping]).records.map(\.key) == ["cart-1"])
    #expect(throws: WireFormatError.self) {
      try Self.extract(.keepAlive, [Skywalking_V3_InstancePingPkg.with { $0.service = "cart" }])
    }
  }

  @Test func jvmMetricsAreKeyedByInstance() throws {
    let collection = Skywalking_V3_JVMMetricCollection.with {
      $0.service = "cart"
      $0.serviceInstance = "cart-2"
      $0.metrics = [.with { $0.time = 1_700_000_000_000 }]
    }
    let records = try Self.extract(.jvmMetrics, [collection]).records
    #expect(records.map(\.key) == ["cart-2"])
    #expect(records.first?.value == (try collection.serializedBytes()))
  }

  @Test func aMeterStreamBecomesOneCompleteCollection() throws {
    let first = Skywalking_V3_MeterData.with {
      $0.service = "cart"
      $0.serviceInstance = "cart-3"
      $0.timestamp = 1_700_000_000_000
      $0.singleValue = .with {
        $0.name = "requests"
        $0.value = 3
      }
    }
    let second = Skywalking_V3_MeterData.with {
      $0.histogram = .with {
        $0.name = "latency"
        $0.values = [
          .with {
            $0.bucket = 10
            $0.count = 2
          }
        ]
      }
    }
    let (records, final) = try Self.extract(.meterStream, [first, second])
    #expect(records.isEmpty)
    let record = try #require(final)
    #expect(record.key == "cart-3")
    let decoded = try Skywalking_V3_MeterDataCollection(serializedBytes: record.value)
    #expect(decoded.meterData == [first, second])
  }

  @Test func meterDataWithoutATimestampIsRefused() throws {
    let incomplete = Skywalking_V3_MeterData.with {
      $0.service = "cart"
      $0.serviceInstance = "cart-3"
      $0.singleValue = .with {
        $0.name = "requests"
        $0.value = 3
      }
    }
    #expect { try Self.extract(.meterStream, [incomplete]) } throws: {
      ($0 as? WireFormatError)?.code == .missingField
    }
    let batch = Skywalking_V3_MeterDataCollection.with { $0.meterData = [incomplete] }
    #expect { try Self.extract(.meterCollection, [batch]) } throws: {
      ($0 as? WireFormatError)?.code == .missingField
    }
  }

  @Test func logsInheritServiceAndInstanceAndAreKeyedByTraceOrService() throws {
    let first = Skywalking_V3_LogData.with {
      $0.service = "cart"
      $0.serviceInstance = "cart-4"
      $0.body = .with { $0.text = .with { $0.text = "started" } }
    }
    let traced = Skywalking_V3_LogData.with {
      $0.traceContext = .with {
        $0.traceID = "trace-9"
        $0.spanID = 1
      }
      $0.body = .with { $0.text = .with { $0.text = "handled" } }
    }
    let records = try Self.extract(.log, [first, traced]).records
    #expect(records.map(\.key) == ["cart", "trace-9"])
    let completed = try Skywalking_V3_LogData(serializedBytes: records[1].value)
    #expect(completed.service == "cart")
    #expect(completed.serviceInstance == "cart-4")
    #expect(completed.traceContext.traceID == "trace-9")
    #expect(completed.body.text.text == "handled")
    #expect(records[0].value == (try first.serializedBytes()))
  }

  @Test func aLogWithoutAnyServiceIsRefused() {
    #expect { try Self.extract(.log, [Skywalking_V3_LogData.with { $0.timestamp = 1 }]) } throws: {
      ($0 as? WireFormatError)?.code == .missingField
    }
  }

  @Test func threadSnapshotsAreKeyedByTaskAndSequence() throws {
    let snapshot = Skywalking_V3_ThreadSnapshot.with {
      $0.taskID = "task-7"
      $0.traceSegmentID = "segment-1"
      $0.time = 1_700_000_000_000
      $0.sequence = 12
      $0.stack = .with { $0.codeSignatures = ["main()"] }
    }
    let records = try Self.extract(.threadSnapshot, [snapshot]).records
    #expect(records.map(\.key) == ["task-712"])
    #expect(records.first?.value == (try snapshot.serializedBytes()))
  }
}
