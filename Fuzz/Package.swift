// swift-tools-version:6.2
import PackageDescription

// Coverage-guided fuzzers (libFuzzer) of the code that reads bytes an attacker or a crash
// controls, kept out of the main package: build and run them with scripts/fuzz.sh.
//
// SwiftPM gives every executable its own `main`, so each target hands its entry point to
// libFuzzer's driver (`LLVMFuzzerRunDriver`) instead of relying on libFuzzer's `main`.
let fuzzerSettings: [SwiftSetting] = [.swiftLanguageMode(.v6)]
let package = Package(
  name: "RelayFuzzers",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "fuzz-wire", targets: ["FuzzWire"]),
    .executable(name: "fuzz-queue-recovery", targets: ["FuzzQueueRecovery"]),
    .executable(name: "fuzz-environment", targets: ["FuzzEnvironment"]),
    .executable(name: "fuzz-grpc-deframer", targets: ["FuzzGRPCDeframer"]),
    .executable(name: "fuzz-http-json", targets: ["FuzzHTTPJSON"]),
  ],
  dependencies: [
    .package(name: "skywalking-kafka-relay", path: ".."),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
  ],
  targets: [
    .target(name: "FuzzDriver", swiftSettings: fuzzerSettings),
    // Any bytes, as the message of every kind of agent call.
    .executableTarget(
      name: "FuzzWire",
      dependencies: [
        "FuzzDriver", .product(name: "SkyWalkingWire", package: "skywalking-kafka-relay"),
      ],
      swiftSettings: fuzzerSettings
    ),
    // Any bytes, as a queue file that recovery must open, read and report on.
    .executableTarget(
      name: "FuzzQueueRecovery",
      dependencies: [
        "FuzzDriver",
        .product(name: "DurableQueue", package: "skywalking-kafka-relay"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
      ],
      swiftSettings: fuzzerSettings
    ),
    // Any bytes, as the environment the relay is started with.
    .executableTarget(
      name: "FuzzEnvironment",
      dependencies: [
        "FuzzDriver", .product(name: "RelayApp", package: "skywalking-kafka-relay"),
      ],
      swiftSettings: fuzzerSettings
    ),
    // Any bytes, as a gRPC request body cut into frames anywhere. The deframer is internal to
    // the receiver: a debug build is built for testing, so `@testable import` reaches it.
    .executableTarget(
      name: "FuzzGRPCDeframer",
      dependencies: [
        "FuzzDriver",
        .product(name: "AgentReceiver", package: "skywalking-kafka-relay"),
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      swiftSettings: fuzzerSettings
    ),
    // Any bytes, as the body of an HTTP agent's segments: split into elements and converted from
    // JSON. The converter is internal to the receiver, reached by `@testable import`.
    .executableTarget(
      name: "FuzzHTTPJSON",
      dependencies: [
        "FuzzDriver",
        .product(name: "HTTPReceiver", package: "skywalking-kafka-relay"),
        .product(name: "SkyWalkingProtocol", package: "skywalking-kafka-relay"),
      ],
      swiftSettings: fuzzerSettings
    ),
  ]
)
