import CRdKafka
internal import KafkaPublisher

/// librdkafka's in-process mock Kafka cluster: real brokers on 127.0.0.1 ports speaking the
/// Kafka protocol, for tests, local development and the relay's embedded mode.
///
/// `@unchecked Sendable`: the pointers never change after init, and every librdkafka mock call
/// is a command posted to the cluster's own thread, safe from any thread.
package final class KafkaMockCluster: @unchecked Sendable {
  /// The client handle the cluster lives in; librdkafka requires one.
  private let client: OpaquePointer
  private let cluster: OpaquePointer
  package let bootstrapServers: String
  package let brokerCount: Int

  package init(brokers: Int = 1) throws(MockKafkaError) {
    guard brokers >= 1 else {
      throw MockKafkaError(
        code: .clusterFailed, message: "a mock cluster needs at least one broker")
    }
    let conf = RDKafkaConfiguration()
    do {
      try conf.set("client.id", "relay-mock-kafka")
      // Only warnings and worse: its notices (e.g. "no bootstrap.servers") would be noise here.
      try conf.set("log_level", "4")
      client = try conf.makeClient(RD_KAFKA_PRODUCER)
    } catch {
      throw MockKafkaError(
        code: .clusterFailed, message: "cannot create the mock cluster's client", cause: error)
    }
    guard let cluster = rd_kafka_mock_cluster_new(client, Int32(brokers)) else {
      rd_kafka_destroy(client)
      throw MockKafkaError(
        code: .clusterFailed, message: "librdkafka could not create the mock cluster")
    }
    self.cluster = cluster
    bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    brokerCount = brokers
  }

  deinit {
    rd_kafka_mock_cluster_destroy(cluster)
    rd_kafka_destroy(client)
  }

  /// Creates a topic; the replication factor cannot exceed the broker count.
  package func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1)
    throws(MockKafkaError)
  {
    try check(
      rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor)),
      "create topic \(name) with \(partitions) partitions")
  }

  /// Makes the broker drop its connections and refuse new ones.
  package func setBrokerDown(_ id: Int32) throws(MockKafkaError) {
    try check(rd_kafka_mock_broker_set_down(cluster, id), "take broker \(id) down")
  }

  package func setBrokerUp(_ id: Int32) throws(MockKafkaError) {
    try check(rd_kafka_mock_broker_set_up(cluster, id), "bring broker \(id) up")
  }

  package func setRoundTripTime(broker id: Int32, milliseconds: Int) throws(MockKafkaError) {
    try check(
      rd_kafka_mock_broker_set_rtt(cluster, id, Int32(milliseconds)),
      "set the round-trip time of broker \(id)")
  }

  /// The next requests with this API key (0 = Produce, 3 = Metadata, …) fail with these Kafka
  /// error codes, one per request, in order.
  package func pushRequestErrors(apiKey: Int16, errors: [Int32]) {
    let codes = errors.map { rd_kafka_resp_err_t(rawValue: $0) }
    codes.withUnsafeBufferPointer { buffer in
      rd_kafka_mock_push_request_errors_array(cluster, apiKey, buffer.count, buffer.baseAddress)
    }
  }

  private func check(_ result: rd_kafka_resp_err_t, _ action: String) throws(MockKafkaError) {
    guard result == RD_KAFKA_RESP_ERR_NO_ERROR else {
      throw MockKafkaError(
        code: .clusterFailed, message: "could not \(action): \(result.name) (\(result.text))")
    }
  }
}
