// swift-tools-version:6.2
import PackageDescription

let strictSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
  .treatAllWarnings(as: .error),
]

let package = Package(
  name: "skywalking-kafka-relay",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "skywalking-kafka-relay", targets: ["skywalking-kafka-relay"]),
    .executable(name: "relay-mock-kafka", targets: ["relay-mock-kafka"]),
    // For Benchmarks/ (micro-benchmarks and the load generator), a separate package.
    .library(name: "SkyWalkingWire", targets: ["SkyWalkingWire"]),
    .library(name: "SkyWalkingProtocol", targets: ["SkyWalkingProtocol"]),
    .library(name: "SkyWalkingGRPC", targets: ["SkyWalkingGRPC"]),
    .library(name: "DurableQueue", targets: ["DurableQueue"]),
    .library(name: "KafkaPublisher", targets: ["KafkaPublisher"]),
    .library(name: "SystemClock", targets: ["SystemClock"]),
    // For Fuzz/ (the environment parser, the gRPC deframer and the HTTP JSON converter).
    .library(name: "RelayApp", targets: ["RelayApp"]),
    .library(name: "AgentReceiver", targets: ["AgentReceiver"]),
    .library(name: "HTTPReceiver", targets: ["HTTPReceiver"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
    .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    // Without its default BinaryDelimitedStreams trait, whose one file imports Foundation and
    // so would link libFoundation.so into the relay (the HTTP endpoint decodes JSON with it).
    .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0", traits: []),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
  ],
  targets: [
    // The skywalking.v3 wire format: a copy-free scanner and the table of agent calls.
    .target(name: "SkyWalkingWire", swiftSettings: strictSettings),
    // Messages generated from protos/ by scripts/generate-protos.sh: the HTTP endpoint decodes
    // agents' JSON with them, so they depend on nothing that links Foundation.
    .target(
      name: "SkyWalkingProtocol",
      dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // The gRPC stubs of the same protos (tests and tools): GRPCProtobuf imports Foundation, so
    // they stay out of the relay.
    .target(
      name: "SkyWalkingGRPC",
      dependencies: [
        "SkyWalkingProtocol",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // The CPU's CRC-32C instruction, which Swift cannot reach without C.
    .target(name: "CCRC32C"),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    // gzip and deflate, as the OAP decodes them on both ports, with a limit on the output.
    .target(name: "Inflate", dependencies: ["CZlib"], swiftSettings: strictSettings),
    // OS threads for loops that block in system calls, without Foundation.
    .target(name: "DedicatedThread", swiftSettings: strictSettings),
    // The wall clock and the semaphores' monotonic clock, in the units files and protocols use.
    .target(name: "SystemClock", swiftSettings: strictSettings),
    // One warning per interval with a count of the ones held back, for repeating failures.
    .target(name: "LogThrottling", swiftSettings: strictSettings),
    // The one shape of every module's error: code, message, field to fix, cause.
    .target(name: "ModuleError", swiftSettings: strictSettings),
    // TLS files and secrets built again when they change on disk (rotation without restart).
    .target(name: "FileReload", dependencies: ["ModuleError"], swiftSettings: strictSettings),
    // The durable, group-committed, CRC-framed record log. Knows nothing of gRPC or Kafka.
    .target(
      name: "DurableQueue",
      dependencies: [
        "CCRC32C",
        "DedicatedThread",
        "ModuleError",
        "SystemClock",
        .product(name: "DequeModule", package: "swift-collections"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
      ],
      swiftSettings: strictSettings
    ),
    .systemLibrary(
      name: "CRdKafka",
      pkgConfig: "rdkafka",
      providers: [.apt(["librdkafka-dev"])]
    ),
    // Drains the queue into Kafka through librdkafka.
    .target(
      name: "KafkaPublisher",
      dependencies: [
        "CRdKafka",
        "DedicatedThread",
        "DurableQueue",
        "LogThrottling",
        "SystemClock",
        .product(name: "DequeModule", package: "swift-collections"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),
    // Closes connections beyond a cap at accept; one per listening endpoint.
    .target(
      name: "ConnectionLimiter",
      dependencies: [
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
      ],
      swiftSettings: strictSettings
    ),
    // What both agent endpoints share: a publishing call's records and outcome, the sink they
    // go to (the disk queue), the token, TLS files and ingest metrics. Knows no protocol.
    .target(
      name: "AgentIngest",
      dependencies: [
        "DurableQueue",
        "FileReload",
        "SkyWalkingWire",
        "SystemClock",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
      ],
      swiftSettings: strictSettings
    ),
    // Bind, listen, serve and quiesce: the life of each of the three listening endpoints.
    .target(
      name: "EndpointLifecycle",
      dependencies: [
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOExtras", package: "swift-nio-extras"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),
    // The agent-facing gRPC endpoint, written directly on swift-nio-http2.
    .target(
      name: "AgentReceiver",
      dependencies: [
        "AgentIngest",
        "ConnectionLimiter",
        "EndpointLifecycle",
        "FileReload",
        "Inflate",
        "SkyWalkingWire",
        "DurableQueue",
        "SystemClock",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP2", package: "swift-nio-http2"),
        .product(name: "NIOHPACK", package: "swift-nio-http2"),
        .product(name: "NIOExtras", package: "swift-nio-extras"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),
    // The OAP's REST protocol (port 12800) for the agents that speak HTTP: JSON to protobuf,
    // into the same queue as gRPC.
    .target(
      name: "HTTPReceiver",
      dependencies: [
        "AgentIngest",
        "EndpointLifecycle",
        "OAPForwarder",
        "ConnectionLimiter",
        "FileReload",
        "Inflate",
        "DurableQueue",
        "SkyWalkingProtocol",
        "SkyWalkingWire",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOExtras", package: "swift-nio-extras"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),
    // Proxies the calls the relay does not publish to the OAP, as live streams over one shared
    // grpc-swift 2 connection.
    .target(
      name: "OAPForwarder",
      dependencies: [
        "ModuleError",
        "FileReload",
        "LogThrottling",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),
    // /healthz, /readyz and /metrics over HTTP/1.1.
    .target(
      name: "AdminServer",
      dependencies: [
        "ModuleError",
        "EndpointLifecycle",
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),
    // librdkafka's in-process mock cluster: the tests' Kafka, and the relay's opt-in embedded
    // development Kafka.
    .target(
      name: "MockKafka",
      dependencies: ["CRdKafka", "KafkaPublisher", "ModuleError"],
      swiftSettings: strictSettings
    ),
    // Reads the environment and wires the modules together; the executable only calls it.
    .target(
      name: "RelayApp",
      dependencies: [
        "ConnectionLimiter",
        "FileReload",
        .product(name: "NIOCore", package: "swift-nio"),
        "SkyWalkingWire",
        "AgentIngest",
        "AgentReceiver",
        "AdminServer",
        "DurableQueue",
        "HTTPReceiver",
        "KafkaPublisher",
        "MockKafka",
        "OAPForwarder",
        "SystemClock",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),
    .executableTarget(
      name: "skywalking-kafka-relay",
      dependencies: ["RelayApp"],
      swiftSettings: strictSettings
    ),
    // A standalone librdkafka mock cluster for tests and local development.
    .executableTarget(
      name: "relay-mock-kafka",
      dependencies: ["MockKafka"],
      swiftSettings: strictSettings
    ),
    .target(
      name: "RelayTestSupport",
      dependencies: [
        "AgentIngest",
        "CRdKafka",
        "DurableQueue",
        .product(name: "NIOCore", package: "swift-nio"),
        "KafkaPublisher",
        "MockKafka",
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Tests/RelayTestSupport",
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "AdminServerTests",
      dependencies: [
        "AdminServer",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "LogThrottlingTests", dependencies: ["LogThrottling"], swiftSettings: strictSettings),
    .testTarget(
      name: "FileReloadTests", dependencies: ["FileReload", "RelayTestSupport"],
      swiftSettings: strictSettings),
    .testTarget(
      name: "InflateTests", dependencies: ["Inflate", "CZlib"], swiftSettings: strictSettings),
    .testTarget(
      name: "SkyWalkingWireTests",
      dependencies: [
        .product(name: "SwiftProtobuf", package: "swift-protobuf"), "SkyWalkingWire",
        "SkyWalkingProtocol",
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "DurableQueueTests",
      dependencies: [
        "DurableQueue", "SystemClock", "RelayTestSupport",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "MetricsTestKit", package: "swift-metrics"),
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "KafkaPublisherTests",
      dependencies: [
        "KafkaPublisher", "DurableQueue", "MockKafka", "RelayTestSupport",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "AgentReceiverTests",
      dependencies: [
        "CZlib",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "NIOHTTP2", package: "swift-nio-http2"),
        .product(name: "NIOHPACK", package: "swift-nio-http2"),
        "SkyWalkingWire",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        "AgentIngest",
        "AgentReceiver",
        "DurableQueue",
        "SkyWalkingProtocol",
        "SkyWalkingGRPC",
        "RelayTestSupport",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "HTTPReceiverTests",
      dependencies: [
        "CZlib",
        "HTTPReceiver",
        "AgentIngest",
        "ConnectionLimiter",
        "DurableQueue",
        "RelayTestSupport",
        "SkyWalkingProtocol",
        "SkyWalkingWire",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "OAPForwarderTests",
      dependencies: [
        "FileReload",
        "OAPForwarder",
        "RelayTestSupport",
        "SkyWalkingProtocol",
        "SkyWalkingGRPC",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "RelayTests",
      dependencies: [
        "AdminServer",
        "AgentIngest",
        "AgentReceiver",
        "DurableQueue",
        "HTTPReceiver",
        "KafkaPublisher",
        "SkyWalkingWire",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        "MockKafka",
        "OAPForwarder",
        "RelayApp",
        "SkyWalkingProtocol",
        "SkyWalkingGRPC",
        "SystemClock",
        "RelayTestSupport",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
      ],
      swiftSettings: strictSettings
    ),
  ]
)
