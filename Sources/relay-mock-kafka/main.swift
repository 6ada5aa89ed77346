// relay-mock-kafka: librdkafka's mock Kafka cluster as a process, for integration tests and for
// running the relay locally without Kafka.
//
//   relay-mock-kafka [--brokers N] [--partitions N] [--topic NAME ...]
//
// Prints exactly one line `BOOTSTRAP=<host:port,...>` on stdout, then reads one command per line
// from stdin and answers each with `OK` or `ERR <reason>`:
//   down <brokerId> | up <brokerId> | rtt <brokerId> <ms> | errors <apiKey> <err> [<err> ...]
//   topic <name> <partitions>
// Exits 0 on stdin EOF, SIGTERM or SIGINT.

import MockKafka

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Unbuffered, so a test reading the pipe sees each line as soon as it is written.
func writeLine(_ line: String, to descriptor: Int32) {
  var bytes = Array((line + "\n").utf8)[...]
  while !bytes.isEmpty {
    let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    if written < 0 {
      if errno == EINTR { continue }
      exit(errno == EPIPE ? 0 : 1)
    }
    bytes = bytes.dropFirst(written)
  }
}

func emit(_ line: String) {
  writeLine(line, to: STDOUT_FILENO)
}

func fail(_ message: String) -> Never {
  writeLine("relay-mock-kafka: \(message)", to: STDERR_FILENO)
  exit(2)
}

struct Options {
  var brokers = 1
  var partitions = 3
  var topics: [String] = []

  init(arguments: ArraySlice<String>) {
    var remaining = arguments
    while let flag = remaining.popFirst() {
      guard let value = remaining.popFirst() else { fail("\(flag) needs a value") }
      switch flag {
      case "--brokers":
        guard let count = Int(value), count >= 1 else { fail("--brokers must be >= 1") }
        brokers = count
      case "--partitions":
        guard let count = Int(value), count >= 1 else { fail("--partitions must be >= 1") }
        partitions = count
      case "--topic":
        topics.append(value)
      default:
        fail(
          "unknown option \(flag); usage: relay-mock-kafka [--brokers N] [--partitions N] [--topic NAME ...]"
        )
      }
    }
  }
}

/// Runs one stdin command against the cluster; the error text becomes the `ERR` reason.
func execute(_ words: [Substring], on cluster: KafkaMockCluster) throws(MockKafkaError) {
  func invalid(_ usage: String) -> MockKafkaError {
    MockKafkaError(code: .invalidCommand, message: "usage: \(usage)")
  }
  func integer<T: FixedWidthInteger>(_ word: Substring, _ usage: String)
    throws(MockKafkaError) -> T
  {
    guard let value = T(word) else { throw invalid(usage) }
    return value
  }
  switch words.first {
  case "down":
    guard words.count == 2 else { throw invalid("down <brokerId>") }
    try cluster.setBrokerDown(integer(words[1], "down <brokerId>"))
  case "up":
    guard words.count == 2 else { throw invalid("up <brokerId>") }
    try cluster.setBrokerUp(integer(words[1], "up <brokerId>"))
  case "rtt":
    let usage = "rtt <brokerId> <ms>"
    guard words.count == 3 else { throw invalid(usage) }
    try cluster.setRoundTripTime(
      broker: integer(words[1], usage), milliseconds: integer(words[2], usage))
  case "errors":
    let usage = "errors <apiKey> <err> [<err> ...]"
    guard words.count >= 3 else { throw invalid(usage) }
    var codes: [Int32] = []
    for word in words.dropFirst(2) { codes.append(try integer(word, usage)) }
    cluster.pushRequestErrors(apiKey: try integer(words[1], usage), errors: codes)
  case "topic":
    let usage = "topic <name> <partitions>"
    guard words.count == 3 else { throw invalid(usage) }
    try cluster.createTopic(String(words[1]), partitions: integer(words[2], usage))
  default:
    throw MockKafkaError(
      code: .invalidCommand, message: "unknown command '\(words.first ?? "")'")
  }
}

// Termination is immediate: the cluster lives in this process only, there is nothing to save.
signal(SIGTERM) { _ in _exit(0) }
signal(SIGINT) { _ in _exit(0) }
signal(SIGPIPE, SIG_IGN)

let options = Options(arguments: CommandLine.arguments.dropFirst())
let cluster: KafkaMockCluster
do {
  cluster = try KafkaMockCluster(brokers: options.brokers)
  for topic in options.topics {
    try cluster.createTopic(
      topic, partitions: options.partitions, replicationFactor: min(options.brokers, 3))
  }
} catch {
  fail(error.description)
}

emit("BOOTSTRAP=\(cluster.bootstrapServers)")
while let line = readLine() {
  let words = line.split(whereSeparator: \.isWhitespace)
  guard !words.isEmpty else { continue }
  do {
    try execute(words, on: cluster)
    emit("OK")
  } catch {
    emit("ERR \(error)")
  }
}
exit(0)
