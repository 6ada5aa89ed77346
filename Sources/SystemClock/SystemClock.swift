import Dispatch

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The relay's two clocks, read without Foundation, so every timestamp in a file, a record, a
/// log line or a metric comes from one place and one system clock.
public enum SystemClock {
  /// Wall time since the Unix epoch, split the way log timestamps are formatted.
  public static func epochTime() -> (seconds: Int, nanoseconds: Int) {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return (Int(now.tv_sec), Int(now.tv_nsec))
  }

  /// Milliseconds since the Unix epoch: the unit of the queue's record stamps, Kafka timestamps
  /// and SkyWalking's own times.
  public static func epochMilliseconds() -> UInt64 {
    let now = epochTime()
    return UInt64(now.seconds) * 1000 + UInt64(now.nanoseconds) / 1_000_000
  }

  /// Monotonic nanoseconds on the clock that `DispatchSemaphore` deadlines use, for the
  /// intervals and deadlines of threads that sleep on a semaphore, and for latencies.
  public static func uptimeNanoseconds() -> UInt64 {
    DispatchTime.now().uptimeNanoseconds
  }
}
