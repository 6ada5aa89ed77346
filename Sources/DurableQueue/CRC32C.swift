import CCRC32C

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum Kafka, ext4 and iSCSI use.
/// Every record is checksummed when it is framed and again when it is read back, so it runs on
/// the CPU's CRC instruction where there is one (SSE4.2 on x86-64, about 8× faster than tables;
/// the CRC32 extension on arm64) and on slicing-by-8 tables elsewhere. Public so tools (and
/// tests) can verify queue files and `position` independently.
public enum CRC32C {
  /// Decided once per process.
  static let usesHardware = relay_crc32c_hardware_available() != 0

  public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    guard usesHardware, let base = bytes.baseAddress else { return tableChecksum(bytes) }
    return relay_crc32c_hardware(base, bytes.count)
  }

  private static let polynomial: UInt32 = 0x82F6_3B78

  /// Eight consecutive 256-entry tables: table k maps a byte to its CRC contribution k bytes on.
  private static let table: [UInt32] = {
    var table = [UInt32](repeating: 0, count: 8 * 256)
    for byte in 0..<256 {
      var crc = UInt32(byte)
      for _ in 0..<8 {
        crc = (crc & 1) == 1 ? (crc >> 1) ^ polynomial : crc >> 1
      }
      table[byte] = crc
    }
    for slice in 1..<8 {
      for byte in 0..<256 {
        let previous = table[(slice - 1) * 256 + byte]
        table[slice * 256 + byte] = (previous >> 8) ^ table[Int(previous & 0xFF)]
      }
    }
    return table
  }()

  /// The portable version, also what the hardware result is tested against.
  static func tableChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    table.withUnsafeBufferPointer { table in
      var crc: UInt32 = 0xFFFF_FFFF
      var index = 0
      let count = bytes.count
      while count - index >= 8 {
        let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
        let low = UInt32(truncatingIfNeeded: word) ^ crc
        let high = UInt32(truncatingIfNeeded: word >> 32)
        crc =
          table[7 * 256 + Int(low & 0xFF)] ^ table[6 * 256 + Int((low >> 8) & 0xFF)]
          ^ table[5 * 256 + Int((low >> 16) & 0xFF)] ^ table[4 * 256 + Int(low >> 24)]
          ^ table[3 * 256 + Int(high & 0xFF)] ^ table[2 * 256 + Int((high >> 8) & 0xFF)]
          ^ table[1 * 256 + Int((high >> 16) & 0xFF)] ^ table[Int(high >> 24)]
        index += 8
      }
      while index < count {
        crc = table[Int((crc ^ UInt32(bytes[index])) & 0xFF)] ^ (crc >> 8)
        index += 1
      }
      return ~crc
    }
  }
}
