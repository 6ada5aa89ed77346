"""Rotation without restart (issue 23 item 3): the TLS files of the agents' ports and the token
files (SW_RELAY_*_FILE) are read again when they change on disk and on SIGHUP, as cert-manager
renews a certificate and the kubelet updates a mounted Secret (new files in a new directory, then
the `..data` link swapped). New handshakes present the new certificate, open connections stay,
the process is the same, and SIGHUP never ends it.

Certificates are throwaway ones made with the openssl CLI (test_security's helpers).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import struct
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

import grpc
import pytest

from conftest import Relay, run_relay_once, wait_for
from test_security import _leaf, call, certificate_authority

# The relay looks at the files every 10 s; a rotation must show within that plus a margin.
POLL_DEADLINE = 25


class MountedSecret:
    """A directory laid out as the kubelet mounts a Secret: `name` → `..data/name`, `..data` →
    `..<version>`; `publish` makes a new version and swaps the link in one rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir()
        self.version = 0

    def path(self, name: str) -> Path:
        return self.root / name

    def publish(self, files: dict[str, bytes]) -> None:
        self.version += 1
        directory = self.root / f"..v{self.version}"
        directory.mkdir()
        for name, contents in files.items():
            (directory / name).write_bytes(contents)
        temporary = self.root / "..data_tmp"
        temporary.symlink_to(directory.name)
        os.replace(temporary, self.root / "..data")
        for name in files:
            if not self.path(name).is_symlink():
                self.path(name).symlink_to(f"..data/{name}")


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """One CA and two server certificates it signed (the one in use and its renewal)."""
    directory = tmp_path / "pki"
    directory.mkdir()
    ca, ca_key = certificate_authority(directory, "reload-test-ca")
    extensions = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    first_cert, first_key = _leaf(directory, "first", ca, ca_key, extensions)
    second_cert, second_key = _leaf(directory, "second", ca, ca_key, extensions)
    return {"ca": ca, "first.crt": first_cert, "first.key": first_key, "second.crt": second_cert,
            "second.key": second_key}


def tls_files(pki: dict[str, Path], which: str, key: str = "") -> dict[str, bytes]:
    return {"tls.crt": pki[f"{which}.crt"].read_bytes(), "tls.key": pki[f"{key or which}.key"].read_bytes()}


def der(certificate: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certificate.read_text())


def open_tls(address: str, alpn: str) -> ssl.SSLSocket:
    """A new handshake, as an agent's next connection makes it (no verification: the test
    compares the certificate itself)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    host, port = address.rsplit(":", 1)
    return context.wrap_socket(socket.create_connection((host, int(port)), timeout=5))


def presented(address: str, alpn: str) -> bytes:
    with open_tls(address, alpn) as connection:
        return connection.getpeercert(binary_form=True)


def h2_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", 0) + payload


def read_frame(connection: ssl.SSLSocket) -> tuple[int, int, bytes]:
    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = connection.recv(count - len(data))
            assert chunk, "the connection opened before the rotation was closed"
            data += chunk
        return data
    header = exactly(9)
    length = int.from_bytes(header[:3], "big")
    return header[3], header[4], exactly(length)


def answers_ping(connection: ssl.SSLSocket, data: bytes) -> bool:
    """Sends an HTTP/2 PING on an open connection and reads frames until its ACK."""
    connection.sendall(h2_frame(6, 0, data))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kind, flags, payload = read_frame(connection)
        if kind == 6 and flags & 1 and payload == data:
            return True
    return False


def reload_count(relay: Relay, files: str, outcome: str) -> int:
    match = re.search(rf'relay_reloads_total{{files="{files}",outcome="{outcome}"}} (\d+)',
                      relay.http_text("/metrics"))
    return int(match.group(1)) if match else -1


def tls_channel(relay: Relay, ca: Path) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    return grpc.secure_channel(relay.grpc_address, credentials, options=[("grpc.use_local_subchannel_pool", 1)])


def test_a_renewed_certificate_is_presented_to_new_handshakes_and_open_connections_stay(
        relay_factory: Callable[..., Relay], pki: dict[str, Path], tmp_path: Path):
    """cert-manager renews the relay's certificate in its Secret; the kubelet swaps the files. A
    half-done rotation (the new certificate beside the old key) is refused and reported, naming
    the variable, while the old certificate keeps being served; the complete one is then taken,
    on the gRPC and the HTTP port, without a restart and without closing an agent's connection."""
    secret = MountedSecret(tmp_path / "relay-tls")
    secret.publish(tls_files(pki, "first"))
    relay = relay_factory(extra_env={"SW_RELAY_GRPC_TLS_CERT": str(secret.path("tls.crt")),
                                     "SW_RELAY_GRPC_TLS_KEY": str(secret.path("tls.key"))}).start()
    pid = relay.process.pid
    assert presented(relay.grpc_address, "h2") == der(pki["first.crt"])
    assert presented(relay.http_address, "http/1.1") == der(pki["first.crt"])
    assert reload_count(relay, "grpc_tls", "ok") == 0 and reload_count(relay, "grpc_tls", "failed") == 0

    # An agent's connection, open across both rotations.
    agent = open_tls(relay.grpc_address, "h2")
    agent.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, b""))
    assert answers_ping(agent, b"before!!")
    channel = tls_channel(relay, pki["ca"])
    assert call(channel, uuid.uuid4().hex, "before-rotation") == grpc.StatusCode.OK

    secret.publish(tls_files(pki, "second", key="first"))
    wait_for(lambda: reload_count(relay, "grpc_tls", "failed") == 1, POLL_DEADLINE,
             "the mismatched key to be refused")
    assert "SW_RELAY_GRPC_TLS_KEY" in relay.log_text()
    assert presented(relay.grpc_address, "h2") == der(pki["first.crt"])

    secret.publish(tls_files(pki, "second"))
    wait_for(lambda: presented(relay.grpc_address, "h2") == der(pki["second.crt"]), POLL_DEADLINE,
             "a new gRPC handshake to present the renewed certificate")
    wait_for(lambda: presented(relay.http_address, "http/1.1") == der(pki["second.crt"]), POLL_DEADLINE,
             "a new HTTP handshake to present the renewed certificate")
    assert reload_count(relay, "grpc_tls", "ok") == 1
    assert answers_ping(agent, b"after!!!"), "the connection opened before the rotation stopped answering"
    assert call(channel, uuid.uuid4().hex, "after-rotation") == grpc.StatusCode.OK
    agent.close()
    channel.close()
    assert relay.process.poll() is None and relay.process.pid == pid


def test_sighup_reloads_and_never_ends_the_relay(relay_factory: Callable[..., Relay], pki: dict[str, Path]):
    """An operator (or a config-reloader sidecar) sends SIGHUP after replacing files: the relay
    reads them again at once, logs it, keeps serving, and later still drains on SIGTERM with its
    normal exit code. Before, SIGHUP ended the process at once with 129."""
    relay = relay_factory(extra_env={"SW_RELAY_GRPC_TLS_CERT": str(pki["first.crt"]),
                                     "SW_RELAY_GRPC_TLS_KEY": str(pki["first.key"])}).start()
    for sent in (1, 2):
        relay.process.send_signal(signal.SIGHUP)
        # The files did not change, so only the signal can cause these reloads.
        wait_for(lambda: reload_count(relay, "grpc_tls", "ok") == sent, 5, f"reload {sent} after SIGHUP")
    assert relay.process.poll() is None
    assert "SIGHUP: reading TLS and token files again" in relay.log_text()
    assert presented(relay.grpc_address, "h2") == der(pki["first.crt"])
    assert relay.http_status("/readyz") == 200
    assert relay.stop() == 0, relay.log_tail()


def test_a_rotated_token_file_takes_effect_without_a_restart(relay_factory: Callable[..., Relay], tmp_path: Path):
    """The agents' token and the admin token come from mounted Secrets (SW_RELAY_AUTH_TOKEN_FILE,
    SW_RELAY_ADMIN_TOKEN_FILE); the operator rotates them: the old token is refused and the new one
    accepted, by the same process."""
    secret = MountedSecret(tmp_path / "relay-token")
    old, new = "old-" + uuid.uuid4().hex, "new-" + uuid.uuid4().hex
    secret.publish({"token": (old + "\n").encode()})
    relay = relay_factory(extra_env={"SW_RELAY_AUTH_TOKEN_FILE": str(secret.path("token")),
                                     "SW_RELAY_ADMIN_TOKEN_FILE": str(secret.path("token"))}).start()
    pid = relay.process.pid

    def metrics_status(token: str) -> int:
        request = urllib.request.Request(relay.admin_url + "/metrics", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    with grpc.insecure_channel(relay.grpc_address) as channel:
        def with_token(token: str) -> grpc.StatusCode:
            return call(channel, uuid.uuid4().hex, "token-" + token[:3], [("authentication", token)])

        assert with_token(old) == grpc.StatusCode.OK
        assert with_token(new) == grpc.StatusCode.PERMISSION_DENIED
        assert metrics_status(old) == 200
        secret.publish({"token": (new + "\n").encode()})
        wait_for(lambda: with_token(new) == grpc.StatusCode.OK, POLL_DEADLINE, "the rotated token to be accepted")
        assert with_token(old) == grpc.StatusCode.PERMISSION_DENIED
        assert metrics_status(new) == 200 and metrics_status(old) == 401
    assert relay.process.poll() is None and relay.process.pid == pid
    assert old not in relay.log_text() and new not in relay.log_text()


def test_a_token_and_its_file_together_are_refused_naming_both(tmp_path: Path):
    """An operator sets the token inline and, later, through a Secret as well: which one the
    relay would use is a guess it does not make."""
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    result = run_relay_once({"SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "embedded", "SW_RELAY_AUTH_TOKEN": "inline",
                             "SW_RELAY_AUTH_TOKEN_FILE": str(token_file)})
    assert result.returncode == 2, result.stderr
    assert "SW_RELAY_AUTH_TOKEN and SW_RELAY_AUTH_TOKEN_FILE" in result.stderr
    assert "inline" not in result.stderr and "from-file" not in result.stderr
