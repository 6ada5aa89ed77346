"""Inbound security on the agent port: the `authentication` token (SW_RELAY_AUTH_TOKEN, refused
with PERMISSION_DENIED as the OAP does) and TLS / mutual TLS (SW_RELAY_GRPC_TLS_CERT,
SW_RELAY_GRPC_TLS_KEY, SW_RELAY_GRPC_TLS_CLIENT_CA), tested with grpcio clients. Secrets never
appear in the relay's log, /metrics or /status. The HTTP port (the OAP's REST protocol) uses the same
files and token.

Certificates are throwaway ones made with the openssl CLI in the test's temp dir.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import grpc
import pytest

from conftest import KafkaTopicReader, Relay, encode_segment
from reliability_support import COLLECT, SegmentIdCollector

TOKEN = "relay-test-token-" + uuid.uuid4().hex


def call(channel: grpc.Channel, trace_id: str, segment_id: str,
         metadata: Optional[list[tuple[str, str]]] = None) -> grpc.StatusCode:
    try:
        channel.stream_unary(COLLECT)(iter([encode_segment(trace_id, segment_id)]), timeout=10, metadata=metadata)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def assert_secret_absent(relay: Relay, *secrets: str) -> None:
    exposed = {"log": relay.log_text(), "/metrics": relay.http_text("/metrics"), "/status": relay.http_text("/status")}
    for secret in secrets:
        for where, text in exposed.items():
            assert secret not in text, f"a secret appears in the relay's {where}"


# --------------------------------------------------------------------------- token


def test_calls_without_the_token_are_permission_denied(relay_factory: Callable[..., Relay],
                                                       segments_reader: KafkaTopicReader):
    relay = relay_factory(extra_env={"SW_RELAY_AUTH_TOKEN": TOKEN}).start()
    trace_id = uuid.uuid4().hex  # one key, one partition: later records prove earlier absences
    with grpc.insecure_channel(relay.grpc_address) as channel:
        assert call(channel, trace_id, "no-token") == grpc.StatusCode.PERMISSION_DENIED
        assert call(channel, trace_id, "wrong-token", [("authentication", TOKEN + "x")]) == \
            grpc.StatusCode.PERMISSION_DENIED
        assert call(channel, trace_id, "prefix-token", [("authentication", TOKEN[:-1])]) == \
            grpc.StatusCode.PERMISSION_DENIED
        assert call(channel, trace_id, "right-token", [("authentication", TOKEN)]) == grpc.StatusCode.OK
    collector = SegmentIdCollector(segments_reader)
    collector.wait_for({"right-token"}, 30)
    delivered = set(collector.update())
    assert not {"no-token", "wrong-token", "prefix-token"} & delivered, "a refused call was published"
    assert_secret_absent(relay, TOKEN)


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*arguments: str) -> None:
    result = subprocess.run(["openssl", *arguments], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"openssl {' '.join(arguments)} failed: {result.stderr}"


def _leaf(directory: Path, name: str, ca: Path, ca_key: Path, extensions: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt",
                           directory / f"{name}.ext")
    ext.write_text(extensions)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
             "-out", str(csr), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return cert, key


def certificate_authority(directory: Path, name: str) -> tuple[Path, Path]:
    """A throwaway CA valid for a day: its certificate and key."""
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", f"/CN={name}")
    return ca, ca_key


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca, ca_key = certificate_authority(directory, "relay-test-ca")
    server_cert, server_key = _leaf(directory, "server", ca, ca_key,
                                    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    client_cert, client_key = _leaf(directory, "client", ca, ca_key, "extendedKeyUsage=clientAuth\n")
    return Certificates(ca, server_cert, server_key, client_cert, client_key)


def tls_env(certs: Certificates, mutual: bool = False) -> dict[str, str]:
    env = {"SW_RELAY_GRPC_TLS_CERT": str(certs.server_cert), "SW_RELAY_GRPC_TLS_KEY": str(certs.server_key)}
    if mutual:
        env["SW_RELAY_GRPC_TLS_CLIENT_CA"] = str(certs.ca)
    return env


def tls_channel(relay: Relay, certs: Certificates, with_client_cert: bool = False) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(),
        private_key=certs.client_key.read_bytes() if with_client_cert else None,
        certificate_chain=certs.client_cert.read_bytes() if with_client_cert else None)
    return grpc.secure_channel(relay.grpc_address, credentials, options=[("grpc.use_local_subchannel_pool", 1)])


def test_tls_client_is_served_and_plaintext_is_refused(relay_factory: Callable[..., Relay],
                                                      certificates: Certificates,
                                                      segments_reader: KafkaTopicReader):
    relay = relay_factory(extra_env=tls_env(certificates)).start()
    trace_id = uuid.uuid4().hex
    with tls_channel(relay, certificates) as channel:
        assert call(channel, trace_id, "over-tls") == grpc.StatusCode.OK
    with grpc.insecure_channel(relay.grpc_address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        assert call(channel, trace_id, "plaintext") == grpc.StatusCode.UNAVAILABLE
    SegmentIdCollector(segments_reader).wait_for({"over-tls"}, 30)
    key_body = certificates.server_key.read_text().splitlines()[1]
    assert_secret_absent(relay, key_body)


def test_mutual_tls_requires_a_client_certificate(relay_factory: Callable[..., Relay], certificates: Certificates):
    relay = relay_factory(extra_env=tls_env(certificates, mutual=True)).start()
    with tls_channel(relay, certificates, with_client_cert=False) as channel:
        assert call(channel, uuid.uuid4().hex, "no-client-cert") == grpc.StatusCode.UNAVAILABLE
    with tls_channel(relay, certificates, with_client_cert=True) as channel:
        assert call(channel, uuid.uuid4().hex, "client-cert") == grpc.StatusCode.OK


def test_token_and_tls_together(relay_factory: Callable[..., Relay], certificates: Certificates):
    relay = relay_factory(extra_env={**tls_env(certificates), "SW_RELAY_AUTH_TOKEN": TOKEN}).start()
    with tls_channel(relay, certificates) as channel:
        assert call(channel, uuid.uuid4().hex, "tls-no-token") == grpc.StatusCode.PERMISSION_DENIED
        assert call(channel, uuid.uuid4().hex, "tls-token", [("authentication", TOKEN)]) == grpc.StatusCode.OK
    assert_secret_absent(relay, TOKEN)


def test_the_http_port_uses_the_same_tls_files_and_its_own_opt_in_token(relay_factory: Callable[..., Relay],
                                                                        certificates: Certificates,
                                                                        segments_reader: KafkaTopicReader):
    """HTTP agents (the OAP's REST protocol) get the gRPC port's certificate; the token on port 12800 is
    the operator's explicit SW_RELAY_HTTP_AUTH_TOKEN (the HTTP agents cannot send one)."""
    relay = relay_factory(extra_env={**tls_env(certificates), "SW_RELAY_HTTP_AUTH_TOKEN": TOKEN}).start()
    context = ssl.create_default_context(cafile=str(certificates.ca))
    trace_id = uuid.uuid4().hex
    body = json.dumps({"traceId": trace_id, "traceSegmentId": "over-https", "service": "nginx",
                       "serviceInstance": "nginx-1", "spans": [{"operationName": "/"}]}).encode()

    def post(headers: dict) -> int:
        request = urllib.request.Request(f"https://{relay.http_address}/v3/segment", data=body, method="POST",
                                         headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert post({}) == 401
    assert post({"authentication": TOKEN}) == 200
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(urllib.request.Request(f"http://{relay.http_address}/v3/segment", data=body,
                                                      method="POST"), timeout=10)
    SegmentIdCollector(segments_reader).wait_for({"over-https"}, 30)
    assert_secret_absent(relay, TOKEN)
