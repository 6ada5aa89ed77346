import Foundation

/// A fresh directory under the system's temporary directory, for one test's files; the test
/// removes it with `remove()` (usually in a `defer`).
package struct TemporaryDirectory: Sendable {
  package let path: String

  /// `prefix` names the test area in the directory's name, for whoever finds one left behind.
  package init(prefix: String = "relay-test") throws {
    path =
      FileManager.default.temporaryDirectory
      .appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }

  /// An existing path, e.g. one that cannot be a directory of ours.
  package init(existing path: String) {
    self.path = path
  }

  package var url: URL { URL(fileURLWithPath: path) }

  package func remove() {
    try? FileManager.default.removeItem(atPath: path)
  }

  /// Writes `contents` to the file `name` in the directory and returns its path.
  package func write(_ contents: String, to name: String) throws -> String {
    let file = path + "/" + name
    try contents.write(toFile: file, atomically: true, encoding: .utf8)
    return file
  }
}
