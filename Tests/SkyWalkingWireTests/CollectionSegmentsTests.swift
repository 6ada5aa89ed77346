import SkyWalkingWire
import Testing

/// How a `SegmentCollection` is split: counted and checked up front, then handed out one
/// segment at a time, so a collection of millions costs no array of millions of ranges.
@Suite(.timeLimit(.minutes(1))) struct CollectionSegmentsTests {
  /// The attacker's collection of empty segments (field 1, zero bytes, repeated), between
  /// unknown fields a newer agent might send.
  @Test func countsAndHandsOutEverySegmentSkippingOtherFields() throws {
    let unknown: [UInt8] = [0x10, 0x01]  // field 2, varint 1
    let message =
      unknown + Array([[UInt8]](repeating: [0x0A, 0x00], count: 100_000).joined()) + unknown
    try message.withUnsafeBytes { bytes in
      let segments = try SegmentScanner.scanCollection(bytes)
      #expect(segments.count == 100_000)
      var handedOut = 0
      for range in segments {
        #expect(range == (4 + 2 * handedOut)..<(4 + 2 * handedOut))
        handedOut += 1
      }
      #expect(handedOut == 100_000)
    }
  }

  /// A client whose collection is torn, or whose field 1 is no message: refused before any
  /// segment is handed out, so none of it can be queued.
  @Test(arguments: [
    [0x0A, 0x01, 0x41, 0x0A, 0x05, 0x41] as [UInt8],  // the second segment runs past the end
    [0x0A, 0x01, 0x41, 0x08, 0x01],  // field 1 as a varint
  ])
  func aMalformedCollectionIsRefusedWhole(_ message: [UInt8]) {
    #expect(throws: WireFormatError.self) {
      try message.withUnsafeBytes { bytes in _ = try SegmentScanner.scanCollection(bytes) }
    }
  }
}
