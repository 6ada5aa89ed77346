"""Smaller doors a hostile client or network could use: outdated TLS on the agent ports, and
browser data and events forwarded to the OAP's REST port in the clear while the gRPC link to the
OAP is TLS (the agent's `authentication` header travels with them).

Certificates are the throwaway ones of test_security.py.
"""

from __future__ import annotations

import socket
import ssl
from typing import Callable, Iterator

import pytest

from conftest import Relay
from test_http_agents import StubOAPRest, post
from test_security import Certificates, certificates, tls_env  # noqa: F401 (certificates is a fixture)

PERF = {"service": "web", "serviceVersion": "v1", "pagePath": "/index.html", "redirectTime": 3}


def handshake(address: str, certs: Certificates, version: ssl.TLSVersion) -> str:
    """The TLS version agreed when the client offers exactly `version`, or raises ssl.SSLError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(certs.ca))
    context.minimum_version = context.maximum_version = version
    # OpenSSL's default security level will not offer TLS 1.0/1.1 at all; level 0 lets this
    # client offer them, as an old or downgrading client would, so the refusal is the relay's.
    context.set_ciphers("DEFAULT@SECLEVEL=0")
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version() or ""


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused_and_tls_1_2_is_served_on_both_agent_ports(
        relay_factory: Callable[..., Relay], certificates: Certificates):  # noqa: F811
    """A client (or a man in the middle downgrading one) that offers only TLS 1.1 gets the
    relay's protocol-version alert on the gRPC and the HTTP port; TLS 1.2 is served."""
    relay = relay_factory(extra_env=tls_env(certificates)).start()
    for address in (relay.grpc_address, relay.http_address):
        with pytest.raises(ssl.SSLError) as refused:
            handshake(address, certificates, ssl.TLSVersion.TLSv1_1)
        assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", (address, refused.value)
        assert handshake(address, certificates, ssl.TLSVersion.TLSv1_2) == "TLSv1.2", address


class TLSStubOAPRest(StubOAPRest):
    """The OAP's REST port with `restSSLEnabled`: the stub's requests, plus the TLS version and
    client certificate of every connection that completed a handshake."""

    def __init__(self, certs: Certificates) -> None:
        self.tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls_context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
        self.tls_context.load_verify_locations(cafile=str(certs.ca))
        self.tls_context.verify_mode = ssl.CERT_REQUIRED
        self.handshakes: list[tuple[str, dict]] = []
        super().__init__()

    def server_activate(self) -> None:
        super().server_activate()
        self.socket = self.tls_context.wrap_socket(self.socket, server_side=True)

    def get_request(self):
        connection, address = super().get_request()
        self.handshakes.append((connection.version(), connection.getpeercert()))
        return connection, address


@pytest.fixture
def tls_stub_oap_rest(certificates: Certificates) -> Iterator[TLSStubOAPRest]:  # noqa: F811
    stub = TLSStubOAPRest(certificates)
    yield stub
    stub.shutdown()
    stub.server_close()


@pytest.fixture
def plain_stub_oap_rest() -> Iterator[StubOAPRest]:
    stub = StubOAPRest()
    yield stub
    stub.shutdown()
    stub.server_close()


def oap_tls_env(certs: Certificates, oap_rest_address: str) -> dict[str, str]:
    """TLS to the OAP as an operator sets it for the gRPC link, with a client certificate."""
    return {"SW_RELAY_OAP_HTTP_ADDRESS": oap_rest_address, "SW_RELAY_OAP_TLS": "on",
            "SW_RELAY_OAP_TLS_CA": str(certs.ca), "SW_RELAY_OAP_TLS_CERT": str(certs.client_cert),
            "SW_RELAY_OAP_TLS_KEY": str(certs.client_key)}


def test_browser_data_reaches_the_oap_rest_port_over_mutual_tls(
        relay_factory: Callable[..., Relay], certificates: Certificates,  # noqa: F811
        tls_stub_oap_rest: TLSStubOAPRest):
    """Someone on the network between relay and OAP sees no browser data and no agent token:
    with SW_RELAY_OAP_TLS=on the forwarded POST travels over TLS, with the relay's client
    certificate, and the OAP's answer comes back."""
    relay = relay_factory(extra_env=oap_tls_env(certificates, tls_stub_oap_rest.address)).start()

    status, _, text = post(relay.http_address, "/browser/perfData", PERF, {"authentication": "agent-token"})

    assert (status, text) == (200, "{}"), (status, text)
    assert [path for path, _, _ in tls_stub_oap_rest.requests] == ["/browser/perfData"]
    assert tls_stub_oap_rest.requests[0][1].get("authentication") == "agent-token"
    version, client_certificate = tls_stub_oap_rest.handshakes[-1]
    assert version in ("TLSv1.2", "TLSv1.3"), version
    assert dict(field[0] for field in client_certificate["subject"])["commonName"] == "client"


def test_a_plaintext_oap_rest_port_gets_nothing_when_oap_tls_is_on(
        relay_factory: Callable[..., Relay], certificates: Certificates,  # noqa: F811
        plain_stub_oap_rest: StubOAPRest):
    """A rogue plaintext listener at the OAP's REST address receives no request in the clear:
    the relay answers 503 (retry later) and delivers nothing."""
    relay = relay_factory(extra_env=oap_tls_env(certificates, plain_stub_oap_rest.address)).start()

    status, headers, text = post(relay.http_address, "/browser/perfData", PERF, {"authentication": "agent-token"})

    assert status == 503 and "Retry-After" in headers, (status, text)
    assert plain_stub_oap_rest.requests == []
