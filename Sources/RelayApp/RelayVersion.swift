/// The release this binary is; the image tag in the Dockerfile and the Kubernetes kit follow it.
enum RelayVersion {
  static let current = "0.2.0"
}
