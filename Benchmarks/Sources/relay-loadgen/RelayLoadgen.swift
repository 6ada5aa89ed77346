import ArgumentParser

/// Behaves like many SkyWalking agents at once, and measures the machine's own ceilings, so the
/// relay's numbers can be read as fractions of what the hardware allows.
@main
struct RelayLoadgen: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "relay-loadgen",
    abstract: "Load generator and ceiling probes for skywalking-kafka-relay.",
    subcommands: [
      LoadCommand.self, SinkCommand.self, ProduceCeilingCommand.self, DiskCeilingCommand.self,
      IdleCommand.self,
    ])
}

/// How the segments look; shared by every mode that sends them.
struct SegmentOptions: ParsableArguments {
  @Option(help: "Segment size in bytes, or 'mixed' (0.5–20 KiB, several spans each).")
  var segmentSize = "mixed"

  @Option(help: "Distinct segment templates encoded before the run.")
  var templates = 256

  func corpus() throws -> SegmentCorpus {
    guard let sizes = SegmentSizes(argument: segmentSize) else {
      throw ValidationError("--segment-size must be 'mixed' or a byte count in 256...1048576")
    }
    guard templates >= 1 else { throw ValidationError("--templates must be >= 1") }
    let runID = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    let padded = String(repeating: "0", count: 16 - runID.count) + runID
    return SegmentCorpus(sizes: sizes, templateCount: templates, runID: "lg" + padded)
  }
}

/// A bounded run: a duration and an optional segment count, whichever ends first.
struct BoundOptions: ParsableArguments {
  @Option(help: "Seconds to run (bounded; at most 600).")
  var duration: Double = 10

  @Option(help: "Stop after this many segments.")
  var count: UInt64?

  func validate() throws {
    guard duration > 0, duration <= 600 else {
      throw ValidationError("--duration must be in (0, 600] seconds")
    }
  }

  var bound: Duration { .milliseconds(Int64(duration * 1000)) }
}

/// `host:port` as given on the command line.
struct Endpoint: ExpressibleByArgument, CustomStringConvertible, Sendable {
  var host: String
  var port: Int

  init?(argument: String) {
    guard let colon = argument.lastIndex(of: ":"),
      let port = Int(argument[argument.index(after: colon)...]),
      (0...65535).contains(port)
    else { return nil }
    host = String(argument[..<colon])
    self.port = port
  }

  var description: String { "\(host):\(port)" }
}
