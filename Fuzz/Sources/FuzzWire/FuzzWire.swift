import SkyWalkingWire

/// Feeds one input to every reader of agent messages: the segment scanner (a single segment and
/// a collection) and the record extractor of each kind, as one message and as a two-message
/// stream, then the stream's end. Nothing may crash or loop, whatever the bytes; every range a
/// reader returns must lie inside the message.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  guard let data, size > 0 else { return 0 }
  let message = UnsafeRawBufferPointer(start: data, count: size)
  if let identity = try? SegmentScanner.scanSegment(message) {
    precondition(identity.traceID.upperBound <= size && identity.segmentID.upperBound <= size)
  }
  if let ranges = try? SegmentScanner.scanCollection(message) {
    for range in ranges { precondition(range.upperBound <= size) }
  }
  for kind in RecordKind.allCases where kind != .segmentCollection {
    var extractor = RecordExtractor(kind: kind, maxRecordBytes: 4096)
    for _ in 0..<2 {
      if let record = try? extractor.extract(message) { check(record, size) }
    }
    if let record = try? extractor.finish() { check(record, size) }
  }
  return 0
}

private func check(_ record: ExtractedRecord, _ size: Int) {
  for bytes in [record.key, record.value] {
    if case .slice(let range) = bytes { precondition(range.upperBound <= size) }
  }
}
