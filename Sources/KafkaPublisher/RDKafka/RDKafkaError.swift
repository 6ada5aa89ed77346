import CRdKafka

/// How the publisher reacts to a librdkafka error attached to one record.
enum DeliveryFailureKind: Equatable {
  /// The cluster is unreachable or busy; retry the record for as long as it takes.
  case transient
  /// Probably temporary, but a record failing this way again and again is dead-lettered.
  case retriable
  /// Kafka will never accept this record: dead-letter it.
  case permanent
  /// librdkafka's local queue is full: stop reading the disk queue until deliveries catch up.
  case backpressure
  /// The producer instance is unusable: recreate it.
  case fatal
}

extension rd_kafka_resp_err_t {
  /// librdkafka's symbolic name, e.g. `_MSG_TIMED_OUT`; a bounded set, so usable as a label.
  package var name: String { String(cString: rd_kafka_err2name(self)) }

  /// librdkafka's human-readable description.
  package var text: String { String(cString: rd_kafka_err2str(self)) }

  var failureKind: DeliveryFailureKind {
    switch self {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      return .backpressure
    case RD_KAFKA_RESP_ERR__FATAL:
      return .fatal
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG,
      RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE, RD_KAFKA_RESP_ERR_INVALID_RECORD,
      RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR__INVALID_ARG,
      RD_KAFKA_RESP_ERR__BAD_MSG, RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
      return .permanent
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TIMED_OUT,
      RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE, RD_KAFKA_RESP_ERR__TRANSPORT,
      RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
      RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
      RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR__PURGE_QUEUE,
      RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, RD_KAFKA_RESP_ERR__RESOLVE, RD_KAFKA_RESP_ERR__DESTROY,
      RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR, RD_KAFKA_RESP_ERR__RETRY, RD_KAFKA_RESP_ERR__STATE,
      RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID, RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
      RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH, RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH,
      RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
      RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR__AUTHENTICATION,
      RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED, RD_KAFKA_RESP_ERR__SSL,
      RD_KAFKA_RESP_ERR__INCONSISTENT, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER:
      return .transient
    default:
      return .retriable
    }
  }
}
