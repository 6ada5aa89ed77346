import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Whether the tests that need root (a tmpfs mount) run, for `.enabled(if: rootTestsRun, …)`:
/// as root, and always in CI, which runs as root, so that there a missing privilege fails the
/// test instead of hiding behind a skip.
package let rootTestsRun = getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil
