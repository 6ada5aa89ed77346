import Testing

@testable import DurableQueue

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The shared error shape as the queue uses it: what an operator reads in a log line, and what
/// a caller branching on the failure finds.
@Suite(.timeLimit(.minutes(1))) struct QueueErrorTests {
  /// A disk that fills under a running relay: the agent is sent the errno text alone, the log
  /// says it once, and the errno error stays reachable as the cause.
  @Test func aFailedSystemCallStaysTheCauseAndIsToldOnce() throws {
    let failure = SystemCallError(errno: ENOSPC, operation: "writing", path: "/q/0007.log")
    let error = failure.queueError
    #expect(error.code == .diskFull)
    #expect(error.message.contains("ENOSPC") && error.message.contains("0007.log"))
    let cause = try #require(error.cause as? SystemCallError)
    #expect(cause.errno == ENOSPC)
    #expect(error.description == error.message)
  }

  /// An operator reading why the directory is unusable: the message, then the system's reason.
  @Test func aCauseTheMessageDoesNotQuoteIsChainedAfterIt() {
    let cause = SystemCallError(errno: EACCES, operation: "listing", path: "/q")
    let error = QueueError(code: .ioFailure, message: "cannot list the queue", cause: cause)
    #expect(error.description == "cannot list the queue: \(cause)")
    #expect(
      QueueError(code: .closed, message: "the queue is closed").description
        == "the queue is closed")
    #expect("\(QueueError.Code.directoryInUse)" == "directoryInUse")
  }
}
