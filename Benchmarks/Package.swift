// swift-tools-version:6.3
import PackageDescription

// The load generator (scripts/benchmark.sh) and micro-benchmarks of the relay's hot paths, kept
// out of the main package so that the relay resolves no benchmark-only dependency.
//
//   cd Benchmarks && swift package --disable-sandbox benchmark
let strictSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
  .treatAllWarnings(as: .error),
]

let package = Package(
  name: "RelayBenchmarks",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(name: "skywalking-kafka-relay", path: ".."),
    // The trait keeps the Linux manifest from pulling swift-runtime-interposer, which the
    // package mirror does not carry.
    .package(
      url: "https://github.com/ordo-one/benchmark.git", exact: "1.38.1",
      traits: ["MallocInterposer"]),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
    .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
  ],
  targets: [
    // Behaves like many agents at once and measures the relay against the machine's ceilings
    // (scripts/benchmark.sh).
    .executableTarget(
      name: "relay-loadgen",
      dependencies: [
        .product(name: "KafkaPublisher", package: "skywalking-kafka-relay"),
        .product(name: "SkyWalkingProtocol", package: "skywalking-kafka-relay"),
        .product(name: "SystemClock", package: "skywalking-kafka-relay"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP2", package: "swift-nio-http2"),
        .product(name: "NIOHPACK", package: "swift-nio-http2"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      path: "Sources/relay-loadgen",
      swiftSettings: strictSettings
    ),
    .executableTarget(
      name: "RelayBenchmarks",
      dependencies: [
        .product(name: "Benchmark", package: "benchmark"),
        .product(name: "SkyWalkingWire", package: "skywalking-kafka-relay"),
        .product(name: "DurableQueue", package: "skywalking-kafka-relay"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
      ],
      path: "Benchmarks/RelayBenchmarks",
      swiftSettings: strictSettings,
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ),
  ]
)
