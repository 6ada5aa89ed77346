"""Just enough HTTP/2 to misbehave on purpose: a client that speaks the connection preface,
opens a gRPC stream with literal (unindexed, non-Huffman) HPACK headers, and sends partial
gRPC messages, then vanishes. grpcio cannot be made to do any of this."""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Optional

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
PING_ACK = 0x1
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(name: str, value: str) -> bytes:
    encoded_name, encoded_value = name.encode(), value.encode()
    assert len(encoded_name) < 127 and len(encoded_value) < 127
    return b"\x00" + bytes([len(encoded_name)]) + encoded_name + bytes([len(encoded_value)]) + encoded_value


def grpc_request_headers(authority: str, path: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority),
              ("content-type", "application/grpc"), ("te", "trailers"), *extra]
    return b"".join(_literal(name, value) for name, value in fields)


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(payload)) + payload


@dataclass(frozen=True)
class Frame:
    kind: int
    flags: int
    stream: int
    payload: bytes


class RawHTTP2Client:
    def __init__(self, port: int, timeout: float = 5) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.port = port
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def start(self) -> "RawHTTP2Client":
        self.send(PREFACE + frame(SETTINGS, 0, 0))
        return self

    def open_stream(self, path: str, stream: int = 1, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send(frame(HEADERS, END_HEADERS, stream, grpc_request_headers(f"127.0.0.1:{self.port}", path, extra)))

    def data(self, payload: bytes, stream: int = 1, end_stream: bool = False) -> None:
        self.send(frame(DATA, END_STREAM if end_stream else 0, stream, payload))

    def frames(self, within: float) -> tuple[list[Frame], bool]:
        """Frames the server sends within `within` seconds, and whether it closed the connection
        (returns as soon as it does). PINGs are acknowledged, as RFC 9113 requires of every
        client: a graceful GOAWAY waits for that acknowledgement."""
        deadline = time.monotonic() + within
        closed = False
        received: list[Frame] = []
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            self._buffer += chunk
            for parsed in self._parse():
                received.append(parsed)
                if parsed.kind == PING and not parsed.flags & PING_ACK:
                    self.send(frame(PING, PING_ACK, 0, parsed.payload))
        return received + self._parse(), closed

    def _parse(self) -> list[Frame]:
        parsed = []
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                break
            kind, flags = self._buffer[3], self._buffer[4]
            stream = struct.unpack(">I", self._buffer[5:9])[0] & 0x7FFFFFFF
            parsed.append(Frame(kind, flags, stream, self._buffer[9:9 + length]))
            self._buffer = self._buffer[9 + length:]
        return parsed

    def reset_close(self) -> None:
        """Vanish: close with SO_LINGER 0, which sends a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def wait_closed(sock: socket.socket, timeout: float) -> Optional[bytes]:
    """Reads until the peer closes; returns everything read, or None if it stayed open."""
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return None
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return received
        if not chunk:
            return received
        received += chunk
    return None
