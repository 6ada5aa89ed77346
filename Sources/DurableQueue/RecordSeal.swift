/// What makes a record this queue's own: a 32-bit mask, derived from the queue's secret
/// (`QueueKey`), that is XORed into every record's CRC. A reader that resynchronises after a torn
/// write or a damaged region tries every byte offset, and some of those bytes are agents'
/// payloads; a frame an attacker forged inside a payload carries a CRC computed without the mask,
/// so it passes only if the attacker guessed the mask: one chance in 2^32 per forged frame.
///
/// A CRC is linear, so a seal on it is worth 32 bits whatever the secret's size, and whoever
/// learns one record's stored CRC can work the mask out: the key file is its user's only (0600),
/// like the log files themselves. The XOR costs nothing beside the CRC, which is why the seal is
/// not a keyed hash: that would cost a second pass over every byte on the event loops.
public struct RecordSeal: Sendable, Equatable {
  let mask: UInt32

  /// The seal of records written before the queue had a key (and of the queue files' format
  /// before it): the CRC as it is.
  static let unkeyed = RecordSeal(mask: 0)

  package init(mask: UInt32) {
    self.mask = mask
  }

  /// The CRC a record whose body is `body` carries under this seal.
  func checksum(_ body: UnsafeRawBufferPointer) -> UInt32 {
    CRC32C.checksum(body) ^ mask
  }
}
