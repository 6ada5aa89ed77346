import CoreMetrics
import DurableQueue
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// Writes one input as the only queue file (after a valid record, so a damaged file still has
/// something intact to keep) and opens the queue on it: recovery must never crash or hang,
/// must keep the valid record in front of the damage, and every record it then reads must
/// have a readable topic.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQueueRecovery(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  guard let data, size > 0 else { return 0 }
  var template = Array("/tmp/fuzz-queue-XXXXXX".utf8CString)
  guard
    let directory = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) })
      .map({ String(cString: $0) })
  else { return 0 }
  defer { removeDirectory(directory) }

  var intact = RecordBatch(timestampMillis: 1)
  try! intact.append(topic: "fuzz", key: Array("key".utf8), value: Array("intact".utf8))
  let file = directory + "/00000000000000000001.log"
  let bytes = intact.encodedBytes + Array(UnsafeBufferPointer(start: data, count: size))
  let descriptor = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
  precondition(descriptor >= 0)
  bytes.withUnsafeBytes { _ = write(descriptor, $0.baseAddress, $0.count) }
  close(descriptor)

  let queue = try! DurableQueue(
    configuration: DurableQueueConfiguration(
      directory: directory, fileBytes: 1 << 20, maxBytes: 64 << 20),
    logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }),
    metricsFactory: NOOPMetricsHandler.instance)
  var position = queue.confirmedPosition
  var first = true
  for _ in 0..<10_000 {
    let read = queue.read(from: position, maxRecords: 100, maxBytes: 1 << 20)
    if read.records.isEmpty { break }
    for record in read.records {
      if first {
        precondition(Array(record.value) == Array("intact".utf8), "the intact record was lost")
        first = false
      }
      precondition(!record.topic.isEmpty)
    }
    position = read.next
  }
  precondition(!first, "the intact record in front of the damage was lost")
  queue.close()
  return 0
}

private func removeDirectory(_ path: String) {
  guard let handle = opendir(path) else { return }
  while let entry = readdir(handle) {
    let name = withUnsafeBytes(of: entry.pointee.d_name) {
      String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
    }
    if name != "." && name != ".." { unlink(path + "/" + name) }
  }
  closedir(handle)
  rmdir(path)
}
