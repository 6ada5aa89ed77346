import DurableQueue
import KafkaPublisher
internal import Prometheus
import SystemClock

#if canImport(Glibc)
  import Glibc
#endif

/// `/metrics`: the registry's series with a `# HELP` line for each, followed by what is read at
/// scrape time (readiness, capacity, the last delivery, the build and the process).
///
/// swift-metrics has no place for help text, so it is added here, from one table that the
/// README's metric list mirrors.
struct MetricsExposition: Sendable {
  let registry: PrometheusCollectorRegistry
  let health: RelayHealth
  let publisher: KafkaPublisher
  let queueCapacityBytes: Int
  /// When the kernel started this process, as `process_start_time_seconds` means it (and as
  /// Prometheus's client libraries read it), so a restart shows even if startup was slow.
  let startedAtSeconds = ProcessSample.startTimeSeconds()

  func render() -> [UInt8] {
    var emitted: [UInt8] = []
    registry.emit(into: &emitted)
    var text = ""
    for line in String(decoding: emitted, as: UTF8.self).split(separator: "\n") {
      if line.hasPrefix("# TYPE ") {
        let name = line.dropFirst(7).prefix { $0 != " " }
        if let help = Self.help[String(name)] { text += "# HELP \(name) \(help)\n" }
      }
      text += line + "\n"
    }
    let readiness = health.readinessLabel
    gauge(&text, "relay_ready", readiness == "ok" ? 1 : 0, labels: "reason=\"\(readiness)\"")
    gauge(&text, "relay_queue_capacity_bytes", Double(queueCapacityBytes))
    let lastDelivery = publisher.status.lastDeliveryMillis.map { Double($0) / 1000 }
    gauge(
      &text, "relay_kafka_last_delivery_timestamp_seconds", max(lastDelivery ?? 0, startedAtSeconds)
    )
    gauge(&text, "relay_kafka_brokers_up", publisher.status.brokersUp == false ? 0 : 1)
    gauge(&text, "relay_build_info", 1, labels: "version=\"\(RelayVersion.current)\"")
    let process = ProcessSample()
    gauge(&text, "process_cpu_seconds_total", process.cpuSeconds, type: "counter")
    gauge(&text, "process_resident_memory_bytes", process.residentBytes)
    gauge(&text, "process_open_fds", process.openDescriptors)
    gauge(&text, "process_max_fds", process.maxDescriptors)
    gauge(&text, "process_start_time_seconds", startedAtSeconds)
    return Array(text.utf8)
  }

  private func gauge(
    _ text: inout String, _ name: String, _ value: Double, labels: String = "",
    type: String = "gauge"
  ) {
    text += "# HELP \(name) \(Self.help[name] ?? "")\n# TYPE \(name) \(type)\n"
    text += labels.isEmpty ? "\(name) \(value)\n" : "\(name){\(labels)} \(value)\n"
  }

  /// Every metric the relay exports and what it means.
  static let help: [String: String] = [
    "relay_received_total": "Agent messages received, by type.",
    "relay_queued_total": "Records durably appended to the disk queue, by type.",
    "relay_rejected_total":
      "Messages refused, by type and reason (malformed, too_large, queue_full, ...).",
    "relay_grpc_calls_total": "gRPC calls answered, by status code.",
    "relay_grpc_active_streams": "HTTP/2 streams (agent calls) open now.",
    "relay_grpc_connections": "Agent connections open now.",
    "relay_grpc_connections_rejected_total":
      "Connections closed because SW_RELAY_GRPC_MAX_CONNECTIONS or _PER_PEER was reached: "
      + "refused at accept, or shed to make room.",
    "relay_grpc_connections_shed_total":
      "Connections that never carried agent data, closed at the cap to make room for a new one.",
    "relay_client_memory_held_bytes":
      "Bytes held now for large gRPC messages and HTTP bodies still arriving.",
    "relay_client_memory_limit_bytes": "SW_RELAY_CLIENT_MEMORY_BYTES: what they may hold at once.",
    "relay_client_memory_refusals_total":
      "Large messages and bodies refused (RESOURCE_EXHAUSTED, 503) because the budget was spent.",
    "relay_http_connections": "HTTP agent connections (the OAP's REST protocol) open now.",
    "relay_http_connections_rejected_total":
      "HTTP agent connections closed at accept because SW_RELAY_GRPC_MAX_CONNECTIONS was reached.",
    "relay_http_requests_total":
      "HTTP agent requests answered, by route (segment, log, forward, ...) and HTTP status.",
    "relay_admin_connections": "Admin HTTP connections open now.",
    "relay_admin_connections_rejected_total":
      "Admin HTTP connections closed to make room at the cap of 512 (the one longest without a "
      + "complete request).",
    "relay_grpc_unknown_calls_total":
      "Calls to paths without a row in the relay's call table, by path (at most 50, then other).",
    "relay_grpc_ack_latency_seconds":
      "Time from a call's last message to its answer (the disk queue's acknowledgement).",
    "relay_queue_bytes": "Bytes in the disk queue's files.",
    "relay_queue_unconfirmed_records": "Records in the disk queue not yet confirmed by Kafka.",
    "relay_queue_oldest_unconfirmed_age_seconds":
      "Age of the oldest record Kafka has not confirmed.",
    "relay_queue_corrupt_records_total": "Damaged queue records skipped by recovery.",
    "relay_queue_corrupt_bytes_total": "Bytes of damaged queue data skipped by recovery.",
    "relay_queue_torn_tail_bytes_total":
      "Bytes of a torn last record truncated by recovery after a crash.",
    "relay_queue_write_errors_total": "Failed queue writes, by reason (disk_full, io).",
    "relay_queue_full_rejections_total":
      "Batches refused because the queue was at SW_RELAY_QUEUE_MAX_BYTES.",
    "relay_queue_writes_total": "Group-commit writes to the queue files.",
    "relay_queue_append_batches_total": "Batches appended to the queue.",
    "relay_queue_fsync_seconds": "Duration of the queue's fsync calls.",
    "relay_queue_append_wait_seconds":
      "Time an appended batch waited for the queue's writer thread to take it.",
    "relay_queue_append_write_seconds":
      "Time from the writer taking a batch to its group written (and synced under always).",
    "relay_ack_event_loop_wait_seconds":
      "Time a queue answer waited for its connection's event loop to run it.",
    "relay_queue_capacity_bytes": "SW_RELAY_QUEUE_MAX_BYTES: the queue's capacity.",
    "relay_queue_disk_free_bytes":
      "Bytes the queue directory's file system still has for the relay; appends fail at 0.",
    "relay_kafka_delivered_total":
      "Records Kafka acknowledged, including those a restart found already there.",
    "relay_kafka_brokers_up":
      "0 after librdkafka reported every broker down, until one answers again (traffic or not).",
    "relay_kafka_failed_total": "Failed delivery attempts, by librdkafka error.",
    "relay_kafka_dead_lettered_total":
      "Records Kafka refused for good, written to dead-letter.log.",
    "relay_kafka_dead_letter_bytes": "Size of dead-letter.log.",
    "relay_replay_already_delivered_total":
      "Records read again after a restart that were found in Kafka and not produced again.",
    "relay_replayed_unverified_total":
      "Records read again after a restart whose earlier delivery could not be checked (produced at least once).",
    "relay_kafka_in_flight_records": "Records handed to librdkafka and not yet acknowledged.",
    "relay_kafka_delivery_latency_seconds":
      "Time from a record's append to the queue to Kafka's acknowledgement.",
    "relay_kafka_last_delivery_timestamp_seconds":
      "Unix time of the last Kafka acknowledgement (the start time before the first).",
    "relay_oap_forwarded_total":
      "Calls proxied to the OAP, by outcome (ok, oap_error, unreachable, invalid).",
    "relay_oap_forward_latency_seconds":
      "Time until the OAP's response headers, for calls it answered.",
    "relay_reloads_total":
      "Reloads of files that may rotate (TLS certificates, *_FILE tokens), by files and outcome.",
    "relay_ready":
      "1 when agents can be served; the reason label says why not (not_serving, queue_full).",
    "relay_build_info": "The relay's version, as a label; always 1.",
    "process_cpu_seconds_total": "User and system CPU time of the relay process.",
    "process_resident_memory_bytes": "Resident memory of the relay process.",
    "process_open_fds": "Open file descriptors of the relay process.",
    "process_max_fds": "The relay process's limit of open file descriptors.",
    "process_start_time_seconds": "Unix time the relay process started.",
  ]
}

/// CPU time, resident memory and descriptors from `/proc/self`, read once per scrape.
private struct ProcessSample {
  var cpuSeconds = 0.0
  var residentBytes = 0.0
  var openDescriptors = 0.0
  var maxDescriptors = 0.0

  init() {
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    if let stat = Self.read("/proc/self/stat"), let close = stat.lastIndex(of: ")") {
      let fields = stat[stat.index(after: close)...].split(separator: " ")
      if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
        cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
      }
    }
    if let statm = Self.read("/proc/self/statm") {
      let fields = statm.split(separator: " ")
      if fields.count > 1, let pages = Double(fields[1]) {
        residentBytes = pages * Double(sysconf(Int32(_SC_PAGESIZE)))
      }
    }
    if let directory = opendir("/proc/self/fd") {
      var count = 0
      while let entry = readdir(directory) {
        if entry.pointee.d_name.0 != UInt8(ascii: ".") { count += 1 }
      }
      closedir(directory)
      openDescriptors = Double(count - 1)  // the descriptor opendir itself holds
    }
    var limit = rlimit()
    if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
      maxDescriptors = Double(limit.rlim_cur)
    }
  }

  /// Boot time (`btime` in /proc/stat) plus the process's start in clock ticks after boot
  /// (field 22 of /proc/self/stat); the current time where /proc cannot say.
  static func startTimeSeconds() -> Double {
    guard let stat = read("/proc/self/stat"), let close = stat.lastIndex(of: ")"),
      let system = read("/proc/stat")
    else { return now() }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    let bootLine = system.split(separator: "\n").first { $0.hasPrefix("btime ") }
    guard fields.count > 19, let ticks = Double(fields[19]),
      let boot = bootLine.flatMap({ Double($0.dropFirst(6)) })
    else { return now() }
    return boot + ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
  }

  private static func now() -> Double {
    Double(SystemClock.epochMilliseconds()) / 1000
  }

  /// The whole file: /proc/stat outgrows one page on machines with many CPUs or interrupts.
  private static func read(_ path: String) -> String? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { Glibc.close(descriptor) }
    var contents: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let count = buffer.withUnsafeMutableBytes {
        Glibc.read(descriptor, $0.baseAddress, $0.count)
      }
      guard count > 0 else { break }
      contents += buffer[..<count]
    }
    return contents.isEmpty ? nil : String(decoding: contents, as: UTF8.self)
  }
}
