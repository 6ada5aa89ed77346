import CoreMetrics
import SystemClock

/// The queue's instruments, created once from the injected factory.
struct QueueMetrics: Sendable {
  let bytes: Gauge
  let unconfirmedRecords: Gauge
  let oldestUnconfirmedAge: Gauge
  /// What the queue's filesystem still has for the relay's user: the room left before appends
  /// fail with ENOSPC, whatever the configured capacity says.
  let diskFree: Gauge
  let appendedBatches: Counter
  /// Group commits; `appendedBatches / writes` is the group-commit factor.
  let writes: Counter
  let diskFullErrors: Counter
  let ioErrors: Counter
  /// Appends refused up front because the queue reached `maxBytes`.
  let capacityRejections: Counter
  let corruptRecords: Counter
  let corruptBytes: Counter
  let tornTailBytes: Counter
  let fsyncDuration: Timer
  /// An append's two stages inside the queue: waiting for the writer thread to take it, then
  /// its group's write (and sync under `always`). With the receiver's hop back to the event
  /// loop they add up to most of an acknowledgement's latency.
  let appendWait: Timer
  let appendWrite: Timer

  init(factory: any MetricsFactory) {
    bytes = Gauge(label: "relay_queue_bytes", factory: factory)
    unconfirmedRecords = Gauge(label: "relay_queue_unconfirmed_records", factory: factory)
    oldestUnconfirmedAge = Gauge(
      label: "relay_queue_oldest_unconfirmed_age_seconds", factory: factory)
    diskFree = Gauge(label: "relay_queue_disk_free_bytes", factory: factory)
    appendedBatches = Counter(label: "relay_queue_append_batches_total", factory: factory)
    writes = Counter(label: "relay_queue_writes_total", factory: factory)
    diskFullErrors = Counter(
      label: "relay_queue_write_errors_total", dimensions: [("reason", "disk_full")],
      factory: factory)
    ioErrors = Counter(
      label: "relay_queue_write_errors_total", dimensions: [("reason", "io")], factory: factory)
    capacityRejections = Counter(
      label: "relay_queue_full_rejections_total", factory: factory)
    corruptRecords = Counter(label: "relay_queue_corrupt_records_total", factory: factory)
    corruptBytes = Counter(label: "relay_queue_corrupt_bytes_total", factory: factory)
    tornTailBytes = Counter(label: "relay_queue_torn_tail_bytes_total", factory: factory)
    fsyncDuration = Timer(label: "relay_queue_fsync_seconds", factory: factory)
    appendWait = Timer(label: "relay_queue_append_wait_seconds", factory: factory)
    appendWrite = Timer(label: "relay_queue_append_write_seconds", factory: factory)
  }

  /// Syncs `file`, times it in `fsyncDuration`, and returns when it ended (uptime nanoseconds).
  func timedSync(_ file: LogFile) throws(SystemCallError) -> UInt64 {
    let start = SystemClock.uptimeNanoseconds()
    try file.sync()
    let end = SystemClock.uptimeNanoseconds()
    fsyncDuration.recordNanoseconds(Int64(end - start))
    return end
  }

  func recordOccupancy(_ status: QueueStatus, nowMillis: UInt64) {
    bytes.record(status.bytes)
    unconfirmedRecords.record(status.unconfirmedRecords)
    let age = status.oldestUnconfirmedMillis.map { nowMillis > $0 ? nowMillis - $0 : 0 } ?? 0
    oldestUnconfirmedAge.record(Double(age) / 1000)
  }

  /// Reads the free space of `directory`'s filesystem; an unreadable one leaves the last value.
  func recordDiskFree(in directory: String) {
    guard let available = try? QueueDirectoryProbe.availableBytes(in: directory) else { return }
    diskFree.record(Double(available))
  }
}
