import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A non-blocking pipe the publisher thread sleeps on: librdkafka writes to it when an event
/// lands on its empty main queue, the disk queue's append handler (unless the publisher said
/// appends need not wake it) and `stop` write to it too.
///
/// `@unchecked Sendable`: the descriptors are immutable after init; `wake` only calls `write(2)`,
/// which is thread-safe; the descriptors are closed in `deinit`, so as long as anyone (e.g. the
/// disk queue's append handler) holds a reference they stay valid and are never reused.
final class PublisherWakeup: @unchecked Sendable {
  private let readDescriptor: Int32
  /// Also given to librdkafka (`rd_kafka_queue_io_event_enable`).
  let writeDescriptor: Int32
  private let appendsWake = Atomic<Bool>(true)

  init() throws(KafkaPublisherError) {
    var descriptors: [Int32] = [-1, -1]
    guard pipe(&descriptors) == 0 else {
      throw KafkaPublisherError(
        code: .startFailed, message: "cannot create the wake-up pipe (errno \(errno))")
    }
    for descriptor in descriptors {
      _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
      _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
    }
    readDescriptor = descriptors[0]
    writeDescriptor = descriptors[1]
  }

  deinit {
    close(readDescriptor)
    close(writeDescriptor)
  }

  /// Never blocks: a full pipe already holds a pending wake-up.
  func wake() {
    var byte: UInt8 = 1
    _ = write(writeDescriptor, &byte, 1)
  }

  /// What the queue's append handler calls: a wake-up unless the publisher waits for
  /// deliveries and takes appended records with their reports.
  func appended() {
    if appendsWake.load(ordering: .sequentiallyConsistent) { wake() }
  }

  /// Says whether appends wake the publisher from now on. Returns true when they start to
  /// again: an append just before that saw them off and did not wake anyone, so the caller must
  /// look at the queue once more before it sleeps.
  func setAppendsWake(_ wake: Bool) -> Bool {
    appendsWake.exchange(wake, ordering: .sequentiallyConsistent) != wake && wake
  }

  /// Sleeps until woken or `timeout` passes, then swallows every pending wake-up byte.
  func wait(timeout: Duration) {
    let milliseconds = Int32(
      clamping: timeout.components.seconds * 1000
        + timeout.components.attoseconds / 1_000_000_000_000_000)
    var descriptor = pollfd(fd: readDescriptor, events: Int16(POLLIN), revents: 0)
    _ = poll(&descriptor, 1, max(0, milliseconds))
    var sink = [UInt8](repeating: 0, count: 256)
    while read(readDescriptor, &sink, sink.count) > 0 {}
  }
}
