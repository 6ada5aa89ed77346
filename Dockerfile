# syntax=docker/dockerfile:1
# Build: docker build -t skywalking-kafka-relay .
# Run:   docker run -p 11800:11800 -p 1234:1234 -v relay-queue:/var/lib/skywalking-kafka-relay \
#          -e SW_RELAY_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 skywalking-kafka-relay

FROM swift:6.2-bookworm AS build
RUN apt-get update \
  && apt-get install -y --no-install-recommends librdkafka-dev pkg-config \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product skywalking-kafka-relay --static-swift-stdlib \
  && install -D "$(swift build -c release --show-bin-path)/skywalking-kafka-relay" /out/skywalking-kafka-relay

FROM debian:bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends librdkafka1 ca-certificates \
  && rm -rf /var/lib/apt/lists/* \
  && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin relay \
  && install -d -o 10001 -g 10001 /var/lib/skywalking-kafka-relay
COPY --from=build /out/skywalking-kafka-relay /usr/local/bin/skywalking-kafka-relay
USER 10001:10001
ENV SW_RELAY_QUEUE_DIR=/var/lib/skywalking-kafka-relay \
    SW_RELAY_GRPC_ADDRESS=0.0.0.0:11800 \
    SW_RELAY_ADMIN_ADDRESS=0.0.0.0:1234
VOLUME ["/var/lib/skywalking-kafka-relay"]
EXPOSE 11800 1234
# bash's /dev/tcp keeps the image free of an HTTP client just for the health check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/1234 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
# SIGTERM drains: gRPC stops accepting, in-flight calls finish, Kafka is flushed for up to
# SW_RELAY_SHUTDOWN_TIMEOUT_S; give Docker/Kubernetes a longer stop timeout than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/skywalking-kafka-relay"]
