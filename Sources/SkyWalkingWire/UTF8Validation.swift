extension UnsafeRawBufferPointer {
  /// Whether `range` holds valid UTF-8, as proto3 requires of every `string` field.
  ///
  /// Trace and segment ids are almost always ASCII, so the common case is one pass over bytes
  /// below 0x80; anything else falls back to the standard library's validating decoder.
  func isValidUTF8(_ range: Range<Int>) -> Bool {
    var index = range.lowerBound
    while index < range.upperBound, self[index] < 0x80 { index += 1 }
    if index == range.upperBound { return true }
    let slice = UnsafeRawBufferPointer(rebasing: self[range])
    return String(validating: slice, as: UTF8.self) != nil
  }
}
