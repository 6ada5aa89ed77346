# syntax=docker/dockerfile:1
# Build: docker build -t skywalking-kafka-relay:0.2.0 .
# Both architectures (each built natively: under QEMU emulation, or on an arm64 builder node):
#        docker buildx build --platform linux/amd64,linux/arm64 -t skywalking-kafka-relay:0.2.0 .
# Run:   docker run --stop-timeout 30 -p 11800:11800 -p 12800:12800 -p 1234:1234 -v relay-queue:/var/lib/skywalking-kafka-relay -e SW_RELAY_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 skywalking-kafka-relay:0.2.0
#
# --stop-timeout follows the grace rule: at least SW_RELAY_SHUTDOWN_TIMEOUT_S (default 20, the
# whole shutdown: drain calls in flight, then flush Kafka) + 10. With a shorter one Docker kills
# the relay mid-flush; nothing acknowledged is lost (it stays in the volume), but it is delivered
# only after the next start. SW_RELAY_KAFKA_BOOTSTRAP_SERVERS is required.

# The Swift version the test suite runs on. Both base images are Docker Official Images published
# for linux/amd64 and linux/arm64; each stage is pulled for the platform being built.
FROM swift:6.3-bookworm AS build
# Set by BuildKit from --platform; the classic builder leaves it empty (then: this machine's).
ARG TARGETARCH
RUN apt-get update \
  && apt-get install -y --no-install-recommends binutils librdkafka-dev pkg-config zlib1g-dev \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Package.resolve[d] matches Package.resolved when the checkout has one (the exact dependency
# versions the tests ran with) and nothing otherwise, so the build works either way.
COPY Package.swift Package.resolve[d] ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
# The binary must be for the platform asked for: a build stage moved to the builder's platform
# (FROM --platform=$BUILDPLATFORM) would put an amd64 relay into the arm64 image.
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}" \
  && case "$arch" in \
       amd64) machine='Advanced Micro Devices X86-64' ;; \
       arm64) machine='AArch64' ;; \
       *) echo "unsupported TARGETARCH $arch: the image is built for amd64 and arm64" >&2; exit 1 ;; \
     esac \
  && swift build -c release --product skywalking-kafka-relay --static-swift-stdlib \
  && install -D "$(swift build -c release --show-bin-path)/skywalking-kafka-relay" /out/skywalking-kafka-relay \
  && if ! readelf -h /out/skywalking-kafka-relay | grep -qx "  Machine: *$machine"; then \
       echo "the relay was not built for $arch" >&2; exit 1; \
     fi

FROM debian:bookworm-slim
ARG VERSION=0.2.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="skywalking-kafka-relay" \
      org.opencontainers.image.description="Receives Apache SkyWalking agents' gRPC reports, queues them on disk, acknowledges them, and publishes them to Kafka for the OAP's kafka-fetcher." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
RUN apt-get update \
  && apt-get install -y --no-install-recommends librdkafka1 ca-certificates \
  && rm -rf /var/lib/apt/lists/* \
  && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin relay \
  && install -d -o 10001 -g 10001 -m 0700 /var/lib/skywalking-kafka-relay
COPY --from=build /out/skywalking-kafka-relay /usr/local/bin/skywalking-kafka-relay
USER 10001:10001
ENV SW_RELAY_QUEUE_DIR=/var/lib/skywalking-kafka-relay \
    SW_RELAY_GRPC_ADDRESS=0.0.0.0:11800 \
    SW_RELAY_HTTP_ADDRESS=0.0.0.0:12800 \
    SW_RELAY_ADMIN_ADDRESS=0.0.0.0:1234
VOLUME ["/var/lib/skywalking-kafka-relay"]
EXPOSE 11800 12800 1234
# GET /healthz on whatever SW_RELAY_ADMIN_ADDRESS says (a wildcard host means this container's
# loopback), with bash's /dev/tcp so the image needs no HTTP client.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "address=\"${SW_RELAY_ADMIN_ADDRESS:-0.0.0.0:1234}\"; port=\"${address##*:}\"; host=\"${address%:*}\"; host=\"${host#[}\"; host=\"${host%]}\"; case \"$host\" in ''|0.0.0.0|::) host=127.0.0.1 ;; esac; exec 3<>\"/dev/tcp/$host/$port\" && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && IFS= read -r -t 2 status <&3 && [[ \"$status\" == *' 200 '* ]]"]
# SIGTERM: /readyz turns 503, gRPC stops accepting and drains, Kafka is flushed, all within
# SW_RELAY_SHUTDOWN_TIMEOUT_S; the rest stays in the volume for the next start.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/skywalking-kafka-relay"]
