import DurableQueue
import Testing

@testable import KafkaPublisher

@Suite("InFlightWindow", .timeLimit(.minutes(1)))
struct InFlightWindowTests {
  private func entry(_ index: UInt64) -> InFlightWindow.Entry {
    InFlightWindow.Entry(
      position: QueuePosition(file: 1, offset: index * 10),
      end: QueuePosition(file: 1, offset: index * 10 + 10), timestampMillis: 0, byteCount: 10,
      state: .producing)
  }

  @Test("only the contiguous finished prefix is confirmable")
  func confirmsContiguousPrefix() {
    var window = InFlightWindow()
    let sequences = (0..<4).map { window.append(entry($0)) }
    #expect(sequences == [1, 2, 3, 4])
    window.update(sequences[1], to: .finished)
    window.update(sequences[2], to: .finished)
    #expect(window.removeFinishedPrefix() == nil)
    window.update(sequences[0], to: .finished)
    #expect(window.removeFinishedPrefix() == QueuePosition(file: 1, offset: 30))
    #expect(window.count == 1)
    #expect(window.byteCount == 10)
    #expect(window.entry(sequences[0]) == nil)
    #expect(window.entry(sequences[3])?.position == QueuePosition(file: 1, offset: 30))
  }

  @Test("records waiting for another attempt are listed in order and counted")
  func tracksAwaitingProduce() {
    var window = InFlightWindow()
    let sequences = (0..<3).map { window.append(entry($0)) }
    window.update(sequences[2], to: .awaitingProduce, countingFailure: true)
    let attempts = window.update(sequences[0], to: .awaitingProduce, countingFailure: true)
    #expect(attempts == 1)
    #expect(window.sequencesAwaitingProduce() == [sequences[0], sequences[2]])
    #expect(window.awaitingProduceCount == 2)
    #expect(window.producingCount == 1)
    window.reset()
    #expect(window.isEmpty)
    #expect(window.append(entry(9)) == sequences[2] + 1)
  }
}
