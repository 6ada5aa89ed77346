// swift-tools-version:6.3
import PackageDescription

// Micro-benchmarks of the relay's hot paths, kept out of the main package so that CI (which
// builds the main package only) never resolves ordo-one/benchmark.
//
//   cd Benchmarks && swift package --disable-sandbox benchmark
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
  ],
  targets: [
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
      swiftSettings: [
        .swiftLanguageMode(.v6),
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
        .treatAllWarnings(as: .error),
      ],
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    )
  ]
)
