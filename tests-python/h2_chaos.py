"""A randomized hostile HTTP/2 client for the relay's gRPC port: a broken agent, or a buggy proxy
in front of agents.

Each connection follows a script drawn from a seeded `random.Random`. It starts as a correct
client driven by the `h2` package (HPACK, flow control, stream ids), which sends gRPC-level
damage on well-formed frames: truncated length-prefixed messages followed by END_STREAM,
RST_STREAM mid-message, the compressed flag, garbage protobuf, streams never finished, rapid
resets, odd headers, huge header blocks. At a random point it may drop `h2` and write raw frames
instead ("raw phase"): unknown frame types, wrong lengths, frames on stream 0 that must not be
there, DATA on idle or closed streams, reused and even stream ids, CONTINUATION floods, window
abuse (zero increments, overflow, more DATA than the window), garbage bytes, abrupt TCP closes.

Whatever the client sends, every byte the server sends back goes through an independent frame
parser with its own HPACK decoder (`ServerView`): that, not `h2`'s state, is the verdict of what
the relay answered on each stream. The client records what it sent on each stream and which
segment ids it sent whole, truncated or where the server must not accept them, so the test can
judge the answers and the records on Kafka.

Nothing here sleeps to synchronise: every read waits on the socket against a deadline.
"""

from __future__ import annotations

import gzip
import random
import select
import socket
import struct
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional

import hpack
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived
from h2.exceptions import H2Error

from conftest import encode_segment
from raw_http2 import (DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING, PING_ACK, PREFACE, RST_STREAM,
                       SETTINGS, WINDOW_UPDATE, frame)

COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"
COLLECT_COMPAT = "/TraceSegmentReportService/collect"  # agents on protocol 8.0-8.3
UNKNOWN_PATH = "/h2chaos.Nothing/call"  # no OAP is configured: UNIMPLEMENTED by design

PRIORITY, PUSH_PROMISE, CONTINUATION = 2, 5, 9
PADDED, PRIORITY_FLAG = 0x8, 0x20
SETTINGS_ACK = 0x1
MAX_WINDOW = (1 << 31) - 1
DEFAULT_FRAME_SIZE = 16384

# What happened to a segment id the chaos client put in a gRPC message.
FULL = "full"              # every byte sent on a properly opened stream: may be published
UNCERTAIN = "uncertain"    # the connection broke while its bytes were being written: may be published
CUT = "cut"                # deliberately truncated: must never be published
COMPRESSED = "compressed"  # flagged compressed under identity encoding: refused by design
ORPHAN = "orphan"          # in frames the server must reject (idle, even, reused, closed stream, bad frame)
MISROUTED = "misrouted"    # on a path the relay does not publish
MUST_NOT_PUBLISH = {CUT, COMPRESSED, ORPHAN, MISROUTED}

# Why an answer with grpc-status 0 on a stream would be wrong.
HALF_SENT = "half-sent"            # the assertion: nothing half-sent is acknowledged
BY_DESIGN = "refused-by-design"    # README: compressed flag, garbage protobuf, grpc-encoding, unknown path
PROTOCOL = "protocol"              # a stream the server must refuse per RFC 9113


class ConnectionGone(Exception):
    """The socket refused more bytes (closed or reset by the relay, or a send timed out)."""


# --------------------------------------------------------------------------- wire helpers


def hpack_integer(value: int, prefix_bits: int, high_bits: int = 0) -> bytes:
    """RFC 7541 5.1 integer with an N-bit prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([high_bits | value])
    out = bytearray([high_bits | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal_field(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name, no Huffman: leaves both HPACK dynamic
    tables untouched, so raw header blocks never desynchronise `h2`'s encoder from the server."""
    return b"\x00" + hpack_integer(len(name), 7) + name + hpack_integer(len(value), 7) + value


def header_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(literal_field(name, value) for name, value in headers)


def frame_header(length: int, kind: int, flags: int, stream: int) -> bytes:
    return struct.pack(">I", length)[1:] + bytes([kind, flags]) + struct.pack(">I", stream & 0x7FFFFFFF)


def grpc_frame(payload: bytes, flag: int = 0) -> bytes:
    return bytes([flag]) + struct.pack(">I", len(payload)) + payload


def leftover_after_messages(data: bytes) -> tuple[int, list[int]]:
    """Splits a request body into gRPC messages: (bytes left over in an incomplete message, the
    flags of the complete messages)."""
    offset, flags = 0, []
    while len(data) - offset >= 5:
        length = struct.unpack_from(">I", data, offset + 1)[0]
        if len(data) - offset - 5 < length:
            break
        flags.append(data[offset])
        offset += 5 + length
    return len(data) - offset, flags


def request_headers(authority: str, path: str = COLLECT,
                    extra: tuple[tuple[bytes, bytes], ...] = ()) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
            (b":authority", authority.encode()), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"), *extra]


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def garbage_protobuf(rng: random.Random) -> bytes:
    """Bytes the relay's SegmentScanner must refuse (INVALID_ARGUMENT), whatever follows them."""
    tail = rng.randbytes(rng.randrange(0, 200))
    return rng.choice([
        b"\x0f" + tail,                                       # field 1, wire type 7 (none such)
        b"\x0e" + tail,                                       # field 1, wire type 6 (none such)
        b"\x0a" + varint(len(tail) + 40) + tail,              # traceId longer than the message
        b"\x0a\x03\xff\xfe\xfd" + b"\x12\x01x",               # traceId not UTF-8
        b"\x12\x05seg-x",                                     # no traceId at all
        b"",                                                  # an empty SegmentObject
        b"\x0a\x80",                                          # truncated length varint
    ])


# --------------------------------------------------------------------------- what the server said


@dataclass
class ServerView:
    """Parses the server's bytes independently of `h2` (whose state the raw phase abandons)."""

    buffer: bytearray = field(default_factory=bytearray)
    decoder: hpack.Decoder = field(default_factory=hpack.Decoder)
    pending_block: Optional[tuple[int, bytearray]] = None
    statuses: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    resets: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    goaway: Optional[tuple[int, int, bytes]] = None
    settings: dict[int, int] = field(default_factory=dict)
    settings_seen: bool = False
    connection_window_updates: int = 0
    stream_window_updates: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    data_bytes: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    frames: Counter = field(default_factory=Counter)
    decode_error: Optional[str] = None
    eof: bool = False

    def feed(self, chunk: bytes) -> list[tuple[int, int, int, bytes]]:
        """Returns the frames completed by `chunk` as (kind, flags, stream, payload)."""
        self.buffer += chunk
        completed = []
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                break
            kind, flags = self.buffer[3], self.buffer[4]
            stream = struct.unpack_from(">I", self.buffer, 5)[0] & 0x7FFFFFFF
            payload = bytes(self.buffer[9:9 + length])
            del self.buffer[:9 + length]
            self._record(kind, flags, stream, payload)
            completed.append((kind, flags, stream, payload))
        return completed

    def _record(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        self.frames[kind] += 1
        if kind == HEADERS:
            block = payload
            if flags & PADDED:
                block = block[1:len(block) - block[0]]
            if flags & PRIORITY_FLAG:
                block = block[5:]
            self.pending_block = (stream, bytearray(block))
            if flags & END_HEADERS:
                self._decode_block()
        elif kind == CONTINUATION and self.pending_block is not None:
            self.pending_block[1].extend(payload)
            if flags & END_HEADERS:
                self._decode_block()
        elif kind == RST_STREAM and len(payload) == 4:
            self.resets[stream].append(struct.unpack(">I", payload)[0])
        elif kind == GOAWAY and len(payload) >= 8:
            last, code = struct.unpack_from(">II", payload)
            self.goaway = (last & 0x7FFFFFFF, code, payload[8:200])
        elif kind == SETTINGS and not flags & SETTINGS_ACK:
            self.settings_seen = True
            for offset in range(0, len(payload) - 5, 6):
                identifier, value = struct.unpack_from(">HI", payload, offset)
                self.settings[identifier] = value
        elif kind == WINDOW_UPDATE and len(payload) == 4:
            increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if stream == 0:
                self.connection_window_updates += increment
            else:
                self.stream_window_updates[stream] += increment
        elif kind == DATA:
            self.data_bytes[stream] += len(payload)

    def _decode_block(self) -> None:
        assert self.pending_block is not None
        stream, block = self.pending_block
        self.pending_block = None
        try:
            headers = self.decoder.decode(bytes(block), raw=True)
        except Exception as error:  # the verdict would be blind from here on: the test fails on it
            self.decode_error = f"stream {stream}: {error!r}"
            return
        for name, value in headers:
            if name == b"grpc-status":
                try:
                    self.statuses[stream].append(int(value))
                except ValueError:
                    self.statuses[stream].append(-1)

    @property
    def initial_stream_window(self) -> int:
        return self.settings.get(0x4, 65535)

    @property
    def max_frame_size(self) -> int:
        return self.settings.get(0x5, DEFAULT_FRAME_SIZE)

    def answered(self, stream: int) -> bool:
        return bool(self.statuses.get(stream)) or bool(self.resets.get(stream))


# --------------------------------------------------------------------------- what the client did


@dataclass
class ChaosStream:
    """One logical stream the chaos client opened (or pretended to)."""

    connection: str
    stream_id: int
    action: str
    proper: bool = True                 # HEADERS on a fresh odd id, well framed
    improper_why: str = ""
    sent: bytearray = field(default_factory=bytearray)   # DATA payload up to END_STREAM
    ended: bool = False                 # END_STREAM sent on a proper stream
    reset_before_end: bool = False
    design_refusal: str = ""            # why the README says this call is refused
    gzip_encoded: bool = False          # grpc-encoding gzip: a flagged message is a proper one

    def ok_forbidden(self) -> Optional[tuple[str, str]]:
        """(kind, reason) when grpc-status 0 on this stream would be a bug, else None."""
        if not self.proper:
            return PROTOCOL, f"the server must refuse this stream: {self.improper_why}"
        if self.reset_before_end:
            return HALF_SENT, "reset by the client before END_STREAM"
        if not self.ended:
            return HALF_SENT, "END_STREAM never sent"
        leftover, flags = leftover_after_messages(bytes(self.sent))
        if leftover:
            return HALF_SENT, f"ended inside a gRPC message ({leftover} bytes of it sent)"
        if any(flags) and not self.gzip_encoded:
            return BY_DESIGN, "a message flagged compressed without grpc-encoding"
        if self.design_refusal:
            return BY_DESIGN, self.design_refusal
        return None


@dataclass
class ConnectionOutcome:
    name: str
    actions: list[str]
    streams: list[ChaosStream]
    statuses: dict[int, list[int]]
    resets: dict[int, list[int]]
    goaway: Optional[tuple[int, int, bytes]]
    closed_by_server: bool
    terminal: Optional[str]
    decode_error: Optional[str]
    h2_retired_by: Optional[str]


class ChaosLedger:
    """What every chaos connection sent and got, shared by the worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.segments: dict[str, str] = {}
        self.outcomes: list[ConnectionOutcome] = []
        self.actions: Counter = Counter()
        self.errors: list[str] = []

    def segment(self, segment_id: str, category: str) -> None:
        with self._lock:
            self.segments[segment_id] = category  # ids are unique: only UNCERTAIN becomes FULL

    def record(self, outcome: ConnectionOutcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)
            self.actions.update(a for a in outcome.actions if not a.startswith("("))

    def error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)


def judge(outcome: ConnectionOutcome) -> list[tuple[str, str]]:
    """(kind, description) for every grpc-status 0 the connection should not have got. Statuses are
    per stream id, so a reused id is judged by its count of OKs against its allowed ones."""
    by_id: dict[int, list[ChaosStream]] = defaultdict(list)
    for stream in outcome.streams:
        by_id[stream.stream_id].append(stream)
    findings = []
    for stream_id, streams in by_id.items():
        oks = outcome.statuses.get(stream_id, []).count(0)
        allowed = sum(1 for s in streams if s.ok_forbidden() is None)
        if oks > allowed:
            forbidden = [s for s in streams if s.ok_forbidden() is not None]
            if forbidden:
                kind, reason = forbidden[0].ok_forbidden()  # type: ignore[misc]
                action = forbidden[0].action
            else:
                kind, reason, action = PROTOCOL, "more than one grpc-status 0 on one stream", streams[0].action
            findings.append((kind, f"{outcome.name} stream {stream_id} ({action}) got grpc-status 0 "
                                   f"x{oks}: {reason}; statuses {outcome.statuses.get(stream_id)}; "
                                   f"actions: {' '.join(outcome.actions)}"))
    for stream_id, statuses in outcome.statuses.items():
        if stream_id not in by_id and 0 in statuses:
            findings.append((PROTOCOL, f"{outcome.name} got grpc-status 0 on stream {stream_id}, which it never "
                                       f"opened; actions: {' '.join(outcome.actions)}"))
    return findings


# --------------------------------------------------------------------------- one connection


class ChaosConnection:
    """One connection's script. `run()` never raises for what the relay does to it."""

    def __init__(self, port: int, rng: random.Random, ledger: ChaosLedger, name: str, tag: str,
                 exclude: frozenset[str] = frozenset()) -> None:
        self.port = port
        self.exclude = exclude  # action names never chosen
        self.rng = rng
        self.ledger = ledger
        self.name = name
        self.tag = tag  # goes into every trace id, e.g. "h2chaos-<seed>"
        self.authority = f"127.0.0.1:{port}"
        self.sock: Optional[socket.socket] = None
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None,
                                               validate_outbound_headers=False, normalize_outbound_headers=False,
                                               validate_inbound_headers=False))
        self.h2_live = True
        self.h2_retired_by: Optional[str] = None
        self.server = ServerView()
        self.streams: list[ChaosStream] = []
        self.by_id: dict[int, ChaosStream] = {}
        self.next_id = 1
        self.actions: list[str] = []
        self.gone = False
        self.terminal: Optional[str] = None
        self.messages = 0
        # our DATA bytes on the connection and per stream, for the raw phase's flow control
        self.sent_connection = 0
        self.sent_stream: dict[int, int] = defaultdict(int)

    # ------------------------------------------------------------------ plumbing

    def note(self, text: str) -> None:
        self.actions.append(text)

    def _send(self, data: bytes) -> None:
        if self.gone:
            raise ConnectionGone()
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError as error:  # reset, broken pipe, or a send that timed out
            self.gone = True
            raise ConnectionGone() from error

    def _flush_h2(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self._send(data)

    def retire_h2(self, why: str) -> None:
        """From here on only raw frames: `h2` can no longer follow what is on the wire."""
        if self.h2_live:
            self.h2_live = False
            self.h2_retired_by = why
            self.h2.data_to_send()  # whatever a refused call may have queued is dropped

    def raw(self, data: bytes, why: str) -> None:
        self.retire_h2(why)
        self._send(data)

    def pump(self, timeout: float = 0.0) -> bool:
        """Reads what the server sent within `timeout`; returns False once it closed."""
        if self.server.eof or self.sock is None:
            return False
        try:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            self.server.eof = True
            return False
        if not ready:
            return True
        try:
            chunk = self.sock.recv(1 << 20)
        except (OSError, socket.timeout):
            chunk = b""
        if not chunk:
            self.server.eof = True
            return False
        frames = self.server.feed(chunk)
        if self.h2_live:
            try:
                for event in self.h2.receive_data(chunk):
                    if isinstance(event, DataReceived) and event.flow_controlled_length:
                        try:
                            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        except H2Error:
                            pass
                self._flush_h2()
            except H2Error as error:
                self.retire_h2(f"h2 refused the server's frames: {error!r}")
            except ConnectionGone:
                pass
        else:
            self._answer_raw(frames)
        return True

    def _answer_raw(self, frames: list[tuple[int, int, int, bytes]]) -> None:
        """In the raw phase the client still acknowledges SETTINGS and PING and opens the
        windows again, as any client must (and a graceful GOAWAY waits for the PING)."""
        replies = bytearray()
        for kind, flags, stream, payload in frames:
            if kind == SETTINGS and not flags & SETTINGS_ACK:
                replies += frame(SETTINGS, SETTINGS_ACK, 0)
            elif kind == PING and not flags & PING_ACK:
                replies += frame(PING, PING_ACK, 0, payload)
            elif kind == DATA and payload:
                replies += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload)))
                replies += frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", len(payload)))
        if replies:
            try:
                self._send(bytes(replies))
            except ConnectionGone:
                pass

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.pump(min(remaining, 0.2)):
                return condition()
        return True

    # ------------------------------------------------------------------ streams and messages

    def new_id(self) -> int:
        stream_id = self.next_id
        self.next_id += 2
        return stream_id

    def segment(self, category_if_whole: str = FULL, padding: Optional[int] = None) -> tuple[str, bytes]:
        self.messages += 1
        trace_id = f"{self.tag}-{self.name}-{self.messages}"
        segment_id = f"{trace_id}.{category_if_whole}"
        pad = padding if padding is not None else self.rng.choice([0, 0, 10, 200, 2000, 20000])
        return segment_id, encode_segment(trace_id, segment_id, ("/h2chaos",), service="h2chaos", padding=pad)

    def send_window(self, stream_id: int) -> int:
        connection = 65535 + self.server.connection_window_updates - self.sent_connection
        stream = (self.server.initial_stream_window + self.server.stream_window_updates.get(stream_id, 0)
                  - self.sent_stream[stream_id])
        return min(connection, stream)

    def open_stream(self, action: str, path: str = COLLECT, extra: tuple[tuple[bytes, bytes], ...] = (),
                    end_stream: bool = False, headers: Optional[list[tuple[bytes, bytes]]] = None,
                    design_refusal: str = "") -> ChaosStream:
        stream = ChaosStream(self.name, self.new_id(), action, design_refusal=design_refusal)
        self.streams.append(stream)
        self.by_id[stream.stream_id] = stream
        fields = headers if headers is not None else request_headers(self.authority, path, extra)
        sent = False
        if self.h2_live:
            try:
                self.h2.send_headers(stream.stream_id, fields, end_stream=end_stream)
                sent = True
            except H2Error as error:
                self.retire_h2(f"h2 refused HEADERS: {error!r}")
            if sent:
                self._flush_h2()
        if not sent:
            self._raw_headers(stream.stream_id, fields, end_stream)
        stream.ended = end_stream
        return stream

    def _raw_headers(self, stream_id: int, fields: list[tuple[bytes, bytes]], end_stream: bool,
                     why: str = "raw HEADERS") -> None:
        block = header_block(fields)
        size = self.server.max_frame_size
        chunks = [block[i:i + size] for i in range(0, len(block), size)] or [b""]
        out = bytearray()
        for n, chunk in enumerate(chunks):
            last = END_HEADERS if n == len(chunks) - 1 else 0
            if n == 0:
                out += frame(HEADERS, last | (END_STREAM if end_stream else 0), stream_id, chunk)
            else:
                out += frame(CONTINUATION, last, stream_id, chunk)
        self.raw(bytes(out), why)

    def send_data(self, stream: ChaosStream, payload: bytes, end_stream: bool = False) -> None:
        """Sends `payload` in DATA frames of random sizes, within the flow-control windows."""
        offset = 0
        while True:
            remaining = len(payload) - offset
            if remaining == 0 and not end_stream:
                break
            if remaining and not self.wait(lambda: self.send_window(stream.stream_id) > 0, 2.0):
                raise ConnectionGone()  # the server keeps its window shut: give up this connection
            limit = max(1, min(self.server.max_frame_size, self.send_window(stream.stream_id)))
            if self.h2_live:
                limit = max(1, min(limit, self.h2.max_outbound_frame_size,
                                   self._h2_window(stream.stream_id)))
            size = min(remaining, self.rng.choice([1, 4, 5, 6, 100, limit, limit, limit]), limit)
            chunk = payload[offset:offset + size]
            last = offset + size == len(payload)
            self._data_frame(stream, chunk, end_stream and last)
            offset += size
            if last:
                break

    def _h2_window(self, stream_id: int) -> int:
        try:
            return self.h2.local_flow_control_window(stream_id)
        except H2Error:
            return 1

    def _data_frame(self, stream: ChaosStream, chunk: bytes, end_stream: bool) -> None:
        sent = False
        if self.h2_live:
            try:
                self.h2.send_data(stream.stream_id, chunk, end_stream=end_stream)
                sent = True
            except H2Error as error:
                self.retire_h2(f"h2 refused DATA: {error!r}")
            if sent:
                self._flush_h2()
        if not sent:
            self.raw(frame(DATA, END_STREAM if end_stream else 0, stream.stream_id, chunk), "raw DATA")
        self.sent_connection += len(chunk)
        self.sent_stream[stream.stream_id] += len(chunk)
        if not stream.ended:
            stream.sent += chunk
            stream.ended = end_stream

    def end(self, stream: ChaosStream) -> None:
        self._data_frame(stream, b"", True)

    def reset(self, stream: ChaosStream, code: Optional[int] = None) -> None:
        code = self.rng.choice([0, 1, 2, 5, 7, 8, 0xFFFFFFFF]) if code is None else code
        if not stream.ended:
            stream.reset_before_end = True
        sent = False
        if self.h2_live and code < 0x100:
            try:
                self.h2.reset_stream(stream.stream_id, code)
                sent = True
            except H2Error as error:
                self.retire_h2(f"h2 refused RST_STREAM: {error!r}")
            if sent:
                self._flush_h2()
        if not sent:
            self.raw(frame(RST_STREAM, 0, stream.stream_id, struct.pack(">I", code)), "raw RST_STREAM")

    def send_message(self, stream: ChaosStream, end_stream: bool = False) -> str:
        """One whole valid segment; its id is FULL once every byte went out."""
        segment_id, payload = self.segment()
        self.ledger.segment(segment_id, UNCERTAIN)  # stays so if the connection breaks meanwhile
        self.send_data(stream, grpc_frame(payload), end_stream)
        self.ledger.segment(segment_id, FULL)
        return segment_id

    def send_cut_message(self, stream: ChaosStream) -> int:
        """The first bytes of a segment's gRPC message, never the rest; returns how many."""
        segment_id, payload = self.segment(CUT)
        self.ledger.segment(segment_id, CUT)
        message = grpc_frame(payload)
        cut = self.rng.choice([1, 4, 5, 6, self.rng.randrange(1, len(message)), len(message) - 1])
        self.send_data(stream, message[:cut])
        return cut

    # ------------------------------------------------------------------ the script

    def run(self) -> ConnectionOutcome:
        try:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._script()
        except ConnectionGone:
            self.note("(connection gone)")
        except Exception as error:  # a harness bug: keep the run going, fail the test at the end
            self.ledger.error(f"{self.name}: {error!r} after {' '.join(self.actions)}")
        finally:
            self._close()
        return ConnectionOutcome(self.name, self.actions, self.streams, dict(self.server.statuses),
                                 dict(self.server.resets), self.server.goaway, self.server.eof, self.terminal,
                                 self.server.decode_error, self.h2_retired_by)

    def _script(self) -> None:
        rng = self.rng
        if rng.random() < 0.04:
            self.terminal = "bad-preface"
            self._bad_preface()
            self.wait(lambda: False, 1.0)
            return
        self.h2.initiate_connection()
        self._flush_h2()
        if rng.random() < 0.8:
            self.wait(lambda: self.server.settings_seen, 2.0)
        for _ in range(rng.randrange(0, 9)):
            name, action = self._choose(NON_TERMINAL)
            self.note(name)
            action(self)
            self.pump(0)
        if rng.random() < 0.45:
            name, action = self._choose(TERMINAL)
            self.note(name)
            self.terminal = name
            action(self)
            if self.gone:
                return  # the client vanished: close at once
            # Give the server a moment to answer or close (GOAWAY); whatever it sent is judged.
            self.wait(lambda: self.server.eof, rng.choice([0.05, 0.3, 1.0]))
            return
        self._finish()

    def _choose(self, table: list[tuple[str, int, Callable[["ChaosConnection"], None]]]
                ) -> tuple[str, Callable[["ChaosConnection"], None]]:
        names = [entry[0] for entry in table]
        weights = [0 if entry[0] in self.exclude else entry[1] for entry in table]
        if not any(weights):
            return "none", lambda connection: None
        index = self.rng.choices(range(len(table)), weights)[0]
        return names[index], table[index][2]

    def _finish(self) -> None:
        ending = self.rng.choice(["wait", "wait", "goaway", "rst-now", "fin-now"])
        self.note(f"end:{ending}")
        if ending in ("wait", "goaway"):
            pending = [s for s in self.streams if s.proper and s.ended]
            self.wait(lambda: all(self.server.answered(s.stream_id) for s in pending), 2.0)
            if ending == "goaway":
                if self.h2_live:
                    try:
                        self.h2.close_connection()
                    except H2Error as error:
                        self.retire_h2(f"h2 refused GOAWAY: {error!r}")
                if self.h2_live:
                    self._flush_h2()
                else:
                    self.raw(frame(GOAWAY, 0, 0, struct.pack(">II", max(0, self.next_id - 2), 0)), "raw GOAWAY")
                self.wait(lambda: self.server.eof, 0.3)
        elif ending == "rst-now":
            self._linger_zero()

    def _linger_zero(self) -> None:
        if self.sock is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _close(self) -> None:
        if self.sock is None:
            return
        # Read what is already there (an answer that raced the close still counts).
        if not self.gone:
            self.pump(0)
        try:
            self.sock.close()
        except OSError:
            pass

    def _bad_preface(self) -> None:
        mangled = bytearray(PREFACE + frame(SETTINGS, 0, 0))
        mangled[self.rng.randrange(len(PREFACE))] ^= 1 << self.rng.randrange(8)
        self.raw(bytes(mangled[:self.rng.randrange(1, len(mangled) + 1)]), "bad preface")


# --------------------------------------------------------------------------- non-terminal actions
# Each keeps the connection usable as far as RFC 9113 goes: at worst a stream error.


def act_good_stream(c: ChaosConnection) -> None:
    path = c.rng.choice([COLLECT, COLLECT, COLLECT_COMPAT])
    extra = c.rng.choice([(), ((b"user-agent", b"grpc-java-netty/1.63"),), ((b"grpc-timeout", b"20S"),),
                          ((b"authentication", b"whatever"), (b"x-chaos", c.rng.randbytes(8).hex().encode()))])
    stream = c.open_stream("good", path, extra)
    count = c.rng.randrange(1, 4)
    for n in range(count):
        c.send_message(stream, end_stream=n == count - 1 and c.rng.random() < 0.6)
    if not stream.ended:
        c.end(stream)


def act_empty_call(c: ChaosConnection) -> None:
    c.open_stream("empty", end_stream=True)


def act_truncated_end(c: ChaosConnection) -> None:
    stream = c.open_stream("truncated-end")
    for _ in range(c.rng.randrange(0, 3)):
        c.send_message(stream)
    cut = c.send_cut_message(stream)
    c.note(f"(cut at {cut})")
    c.end(stream)


def act_reset_mid_message(c: ChaosConnection) -> None:
    stream = c.open_stream("reset-mid-message")
    for _ in range(c.rng.randrange(0, 3)):
        c.send_message(stream)
    c.send_cut_message(stream)
    c.reset(stream)


def act_reset_between_messages(c: ChaosConnection) -> None:
    stream = c.open_stream("reset-between")
    for _ in range(c.rng.randrange(1, 3)):
        c.send_message(stream)
    c.reset(stream)


def act_unfinished(c: ChaosConnection) -> None:
    stream = c.open_stream("unfinished")
    for _ in range(c.rng.randrange(0, 3)):
        c.send_message(stream)
    if c.rng.random() < 0.5:
        c.send_cut_message(stream)


def act_compressed_flag(c: ChaosConnection) -> None:
    stream = c.open_stream("compressed-flag")
    if c.rng.random() < 0.5:
        c.send_message(stream)
    segment_id, payload = c.segment(COMPRESSED)
    c.ledger.segment(segment_id, COMPRESSED)
    body = gzip.compress(payload) if c.rng.random() < 0.5 else payload
    c.send_data(stream, grpc_frame(body, flag=1))
    if c.rng.random() < 0.5:
        c.send_message(stream)
    c.end(stream)


def act_gzip_encoding(c: ChaosConnection) -> None:
    """A gateway compressing with gzip, as the OAP's grpc-java server accepts: a proper call."""
    stream = c.open_stream("grpc-encoding-gzip", extra=((b"grpc-encoding", b"gzip"),))
    stream.gzip_encoded = True
    segment_id, payload = c.segment()
    c.ledger.segment(segment_id, UNCERTAIN)
    c.send_data(stream, grpc_frame(gzip.compress(payload), flag=1), end_stream=True)
    c.ledger.segment(segment_id, FULL)


def act_garbage_protobuf(c: ChaosConnection) -> None:
    stream = c.open_stream("garbage-protobuf", design_refusal="garbage protobuf (INVALID_ARGUMENT)")
    if c.rng.random() < 0.5:
        c.send_message(stream)
    for _ in range(c.rng.randrange(1, 3)):
        c.send_data(stream, grpc_frame(garbage_protobuf(c.rng)))
    if c.rng.random() < 0.3:
        c.send_message(stream)
    c.end(stream)


def act_unknown_path(c: ChaosConnection) -> None:
    stream = c.open_stream("unknown-path", UNKNOWN_PATH, design_refusal="unknown path with no OAP (UNIMPLEMENTED)")
    segment_id, payload = c.segment(MISROUTED)
    c.ledger.segment(segment_id, MISROUTED)
    c.send_data(stream, grpc_frame(payload), end_stream=True)


def act_odd_headers(c: ChaosConnection) -> None:
    """Malformed or unusual request headers (RFC 9113 8.2, 8.3): the relay may refuse the stream
    or serve it; only the generic rules apply to its answer."""
    base = request_headers(c.authority)
    variant = c.rng.randrange(8)
    if variant == 0:
        headers = base + [(b"X-Upper-Case", b"1")]
    elif variant == 1:
        headers = base + [(b"connection", b"keep-alive")]
    elif variant == 2:
        headers = [h for h in base if h[0] != b":scheme"]
    elif variant == 3:
        headers = base[:2] + [(b"x-early", b"1")] + base[2:]  # a regular field before pseudo-fields
    elif variant == 4:
        headers = base + [(b":path", b"/other")]
    elif variant == 5:
        headers = [(b":method", b"GET")] + base[1:]
    elif variant == 6:
        headers = [h if h[0] != b"content-type" else (b"content-type", b"application/json") for h in base]
    else:
        headers = base + [(b"te", b"gzip"), (b"x-nul", b"a\x00b")]
    stream = c.open_stream(f"odd-headers-{variant}", headers=headers)
    c.send_message(stream, end_stream=True)


def act_big_headers(c: ChaosConnection) -> None:
    """A header block from 8 KiB to 300 KiB (the relay advertises a 16 KiB header list), sent
    by `h2` in HEADERS + CONTINUATION frames."""
    size = c.rng.choice([8 << 10, 15 << 10, 17 << 10, 64 << 10, 300 << 10])
    count = c.rng.choice([1, 4, 64])
    extra = tuple((f"x-pad-{n}".encode(), c.rng.randbytes(size // count // 2).hex().encode()) for n in range(count))
    stream = c.open_stream(f"big-headers-{size >> 10}KiB", extra=extra)
    c.send_message(stream, end_stream=True)


def act_continuation_flood(c: ChaosConnection) -> None:
    """HEADERS then hundreds to thousands of small (or empty) CONTINUATION frames."""
    stream = ChaosStream(c.name, c.new_id(), "continuation-flood")
    c.streams.append(stream)
    c.by_id[stream.stream_id] = stream
    block = header_block(request_headers(c.authority))
    frames = bytearray(frame(HEADERS, 0, stream.stream_id, block))
    count = c.rng.choice([100, 1000, 5000])
    empty = c.rng.random() < 0.5
    for n in range(count):
        payload = b"" if empty else literal_field(b"x-c", str(n).encode())
        frames += frame(CONTINUATION, END_HEADERS if n == count - 1 else 0, stream.stream_id, payload)
    c.note(f"({count} {'empty ' if empty else ''}CONTINUATIONs)")
    c.raw(bytes(frames), "CONTINUATION flood")
    c.send_message(stream, end_stream=True)


def act_rapid_reset(c: ChaosConnection) -> None:
    """Opens streams and resets each at once (CVE-2023-44487's pattern), some mid-message."""
    count = c.rng.choice([10, 100, 400])
    c.note(f"({count} streams)")
    for _ in range(count):
        stream = c.open_stream("rapid-reset")
        if c.rng.random() < 0.3:
            c.send_cut_message(stream)
        c.reset(stream, code=c.rng.choice([0, 8]))
    c.pump(0)


def act_many_open_streams(c: ChaosConnection) -> None:
    """More unfinished streams than SETTINGS_MAX_CONCURRENT_STREAMS (256) allows."""
    for _ in range(c.rng.choice([20, 300])):
        stream = c.open_stream("many-open")
        if c.rng.random() < 0.2:
            c.send_cut_message(stream)


def act_ping(c: ChaosConnection) -> None:
    opaque = c.rng.randbytes(8)
    if c.h2_live:
        c.h2.ping(opaque)
        c._flush_h2()
    else:
        c.raw(frame(PING, 0, 0, opaque), "raw PING")


def act_settings(c: ChaosConnection) -> None:
    """Legal but unkind SETTINGS: a tiny or huge receive window, a big frame size."""
    window = c.rng.choice([1, 16, 100, 65535, MAX_WINDOW])
    frame_size = c.rng.choice([DEFAULT_FRAME_SIZE, (1 << 24) - 1])
    c.note(f"(window {window}, frame {frame_size})")
    if c.h2_live:
        try:
            c.h2.update_settings({0x4: window, 0x5: frame_size})
            c._flush_h2()
            return
        except H2Error as error:
            c.retire_h2(f"h2 refused SETTINGS: {error!r}")
    c.raw(frame(SETTINGS, 0, 0, struct.pack(">HIHI", 0x4, window, 0x5, frame_size)), "raw SETTINGS")


def act_window_update(c: ChaosConnection) -> None:
    """A legal WINDOW_UPDATE through `h2` (connection or an open stream)."""
    open_streams = [s for s in c.streams if s.proper and not s.ended and not s.reset_before_end]
    target = c.rng.choice(open_streams).stream_id if open_streams and c.rng.random() < 0.5 else None
    if c.h2_live:
        try:
            c.h2.increment_flow_control_window(c.rng.randrange(1, 1 << 20), target)
            c._flush_h2()
            return
        except H2Error as error:
            c.retire_h2(f"h2 refused WINDOW_UPDATE: {error!r}")
    c.raw(frame(WINDOW_UPDATE, 0, target or 0, struct.pack(">I", 1000)), "raw WINDOW_UPDATE")


def act_unknown_frame(c: ChaosConnection) -> None:
    """RFC 9113 4.1: unknown frame types must be ignored (on any stream, with any flags)."""
    kind = c.rng.randrange(0x0D, 0x100)
    stream = c.rng.choice([0, 0, c.next_id, max(1, c.next_id - 2), 0x7FFFFFFF])
    payload = c.rng.randbytes(c.rng.choice([0, 1, 8, 1000, DEFAULT_FRAME_SIZE]))
    c.note(f"(type {kind:#x} on {stream})")
    c.raw(frame(kind, c.rng.randrange(256), stream, payload), "unknown frame type")


def act_priority(c: ChaosConnection) -> None:
    """PRIORITY on idle, open or closed streams (allowed), or depending on itself (stream error)."""
    stream = c.rng.choice([c.next_id + 2 * c.rng.randrange(5), max(1, c.next_id - 2)])
    depends = stream if c.rng.random() < 0.3 else c.rng.randrange(0, 1 << 31)
    c.raw(frame(PRIORITY, 0, stream, struct.pack(">IB", depends, c.rng.randrange(256))), "PRIORITY")


def _open_stream_for_abuse(c: ChaosConnection, action: str) -> ChaosStream:
    open_streams = [s for s in c.streams if s.proper and not s.ended and not s.reset_before_end]
    if open_streams and c.rng.random() < 0.5:
        return c.rng.choice(open_streams)
    stream = c.open_stream(action)
    c.send_message(stream)
    return stream


def act_stream_window_zero(c: ChaosConnection) -> None:
    """WINDOW_UPDATE with increment 0 on a stream: a stream error (RFC 9113 6.9)."""
    stream = _open_stream_for_abuse(c, "window-zero-stream")
    c.raw(frame(WINDOW_UPDATE, 0, stream.stream_id, struct.pack(">I", 0)), "zero WINDOW_UPDATE on a stream")
    if c.rng.random() < 0.5:
        c.send_message(stream, end_stream=True)


def act_stream_window_overflow(c: ChaosConnection) -> None:
    """Stream window past 2^31-1: a stream error of type FLOW_CONTROL_ERROR (RFC 9113 6.9.1)."""
    stream = _open_stream_for_abuse(c, "window-overflow-stream")
    update = frame(WINDOW_UPDATE, 0, stream.stream_id, struct.pack(">I", MAX_WINDOW))
    c.raw(update * 2, "WINDOW_UPDATE overflow on a stream")
    if c.rng.random() < 0.5:
        c.send_message(stream, end_stream=True)


def act_headers_after_end(c: ChaosConnection) -> None:
    """A complete call, then HEADERS again on its stream (after END_STREAM)."""
    stream = c.open_stream("headers-after-end")
    c.send_message(stream, end_stream=True)
    again = _improper(c, stream.stream_id, "headers-after-end", "HEADERS after END_STREAM")
    again.ended = c.rng.random() < 0.5
    c._raw_headers(stream.stream_id, request_headers(c.authority), again.ended, "HEADERS after END_STREAM")


NON_TERMINAL: list[tuple[str, int, Callable[[ChaosConnection], None]]] = [
    ("good", 8, act_good_stream),
    ("empty", 1, act_empty_call),
    ("truncated-end", 6, act_truncated_end),
    ("reset-mid-message", 5, act_reset_mid_message),
    ("reset-between", 2, act_reset_between_messages),
    ("unfinished", 3, act_unfinished),
    ("compressed-flag", 2, act_compressed_flag),
    ("grpc-encoding-gzip", 1, act_gzip_encoding),
    ("garbage-protobuf", 3, act_garbage_protobuf),
    ("unknown-path", 1, act_unknown_path),
    ("odd-headers", 2, act_odd_headers),
    ("big-headers", 1, act_big_headers),
    ("continuation-flood", 1, act_continuation_flood),
    ("rapid-reset", 1, act_rapid_reset),
    ("many-open", 1, act_many_open_streams),
    ("ping", 1, act_ping),
    ("settings", 1, act_settings),
    ("window-update", 1, act_window_update),
    ("unknown-frame", 2, act_unknown_frame),
    ("priority", 1, act_priority),
    ("window-zero-stream", 1, act_stream_window_zero),
    ("window-overflow-stream", 1, act_stream_window_overflow),
    ("headers-after-end", 1, act_headers_after_end),
]


# --------------------------------------------------------------------------- terminal actions
# Connection errors per RFC 9113 (or a vanished client): nothing is sent after them.


def _orphan_message(c: ChaosConnection) -> bytes:
    segment_id, payload = c.segment(ORPHAN)
    c.ledger.segment(segment_id, ORPHAN)
    return grpc_frame(payload)


def _improper(c: ChaosConnection, stream_id: int, action: str, why: str) -> ChaosStream:
    stream = ChaosStream(c.name, stream_id, action, proper=False, improper_why=why)
    c.streams.append(stream)
    return stream


def act_data_on_idle_stream(c: ChaosConnection) -> None:
    """DATA before any HEADERS, on a fresh odd id (idle stream: PROTOCOL_ERROR)."""
    stream = _improper(c, c.new_id(), "data-before-headers", "DATA on an idle stream")
    message = _orphan_message(c)
    c.raw(frame(DATA, END_STREAM, stream.stream_id, message), "DATA before HEADERS")
    stream.sent += message
    stream.ended = True


def act_even_stream(c: ChaosConnection) -> None:
    """A client stream on an even id (server-initiated ids: PROTOCOL_ERROR)."""
    stream_id = c.next_id + 1
    c.next_id += 2
    stream = _improper(c, stream_id, "even-stream-id", "even stream id from a client")
    c._raw_headers(stream_id, request_headers(c.authority), False, "HEADERS on an even id")
    message = _orphan_message(c)
    c.raw(frame(DATA, END_STREAM, stream_id, message), "DATA on an even id")
    stream.sent += message
    stream.ended = True


def act_reuse_stream_id(c: ChaosConnection) -> None:
    """HEADERS on an id already used, or lower than the highest used (PROTOCOL_ERROR /
    STREAM_CLOSED), carrying a whole message."""
    if not c.streams:
        act_good_stream(c)
        c.wait(lambda: c.server.answered(c.streams[-1].stream_id), 1.0)
    # ids whose streams the client already ended or reset, or skipped odd ids below the highest
    used = {s.stream_id for s in c.streams if s.stream_id % 2 == 1}
    closed = sorted({s.stream_id for s in c.streams if s.stream_id % 2 == 1 and (s.ended or s.reset_before_end)})
    skipped = [n for n in range(1, c.next_id - 2, 2) if n not in used]
    stream_id = c.rng.choice(closed + skipped) if closed + skipped else max(1, c.next_id - 2)
    stream = _improper(c, stream_id, "reused-stream-id", f"HEADERS on stream {stream_id} below the highest opened")
    c._raw_headers(stream_id, request_headers(c.authority), False, "reused stream id")
    message = _orphan_message(c)
    c.raw(frame(DATA, END_STREAM, stream_id, message), "DATA on a reused id")
    stream.sent += message
    stream.ended = True


def act_data_after_end(c: ChaosConnection) -> None:
    """A whole message in DATA after the stream's END_STREAM (STREAM_CLOSED)."""
    stream = c.open_stream("data-after-end")
    c.send_message(stream, end_stream=True)
    if c.rng.random() < 0.5:
        c.wait(lambda: c.server.answered(stream.stream_id), 1.0)
    late = _improper(c, stream.stream_id, "data-after-end", "DATA after END_STREAM")
    message = _orphan_message(c)
    c.raw(frame(DATA, END_STREAM, stream.stream_id, message), "DATA after END_STREAM")
    late.sent += message
    late.ended = True


def act_stream_zero_frame(c: ChaosConnection) -> None:
    """Frames that must not be on stream 0, or must only be on it."""
    variant = c.rng.randrange(6)
    if variant == 0:
        c.raw(frame(DATA, END_STREAM, 0, _orphan_message(c)), "DATA on stream 0")
    elif variant == 1:
        c.raw(frame(HEADERS, END_HEADERS | END_STREAM, 0, header_block(request_headers(c.authority))),
              "HEADERS on stream 0")
    elif variant == 2:
        c.raw(frame(RST_STREAM, 0, 0, struct.pack(">I", 8)), "RST_STREAM on stream 0")
    elif variant == 3:
        c.raw(frame(PRIORITY, 0, 0, struct.pack(">IB", 1, 16)), "PRIORITY on stream 0")
    elif variant == 4:
        c.raw(frame(SETTINGS, 0, c.rng.choice([1, 3, 0x7FFFFFFF]), b""), "SETTINGS on a stream")
    else:
        c.raw(frame(PING, 0, c.rng.choice([1, 3]), b"\x00" * 8), "PING on a stream")
    c.note(f"(variant {variant})")


def act_bad_length(c: ChaosConnection) -> None:
    """Fixed-size frames with the wrong length (FRAME_SIZE_ERROR)."""
    kind, stream, good = c.rng.choice([(PING, 0, 8), (SETTINGS, 0, 6), (WINDOW_UPDATE, 0, 4),
                                       (RST_STREAM, max(1, c.next_id - 2), 4), (PRIORITY, c.next_id, 5)])
    length = c.rng.choice([n for n in (0, 1, 3, 5, 7, 9, 12, 100) if n != good and (kind != SETTINGS or n % 6)])
    c.note(f"(type {kind} length {length})")
    c.raw(frame(kind, 0, stream, c.rng.randbytes(length)), "wrong frame length")


def act_oversized_frame(c: ChaosConnection) -> None:
    """A DATA frame above SETTINGS_MAX_FRAME_SIZE on an open stream (FRAME_SIZE_ERROR); the
    message inside it must never be taken."""
    stream = c.open_stream("oversized-frame")
    segment_id, payload = c.segment(ORPHAN, padding=c.server.max_frame_size + 1000)
    c.ledger.segment(segment_id, ORPHAN)
    message = grpc_frame(payload)
    stream.proper = False
    stream.improper_why = "DATA frame above SETTINGS_MAX_FRAME_SIZE"
    c.raw(frame(DATA, END_STREAM, stream.stream_id, message), "oversized DATA frame")


def act_padding_lie(c: ChaosConnection) -> None:
    """A PADDED DATA frame whose pad length is not less than its payload (PROTOCOL_ERROR)."""
    stream = c.open_stream("padding-lie")
    message = _orphan_message(c)
    stream.proper = False
    stream.improper_why = "DATA padding longer than the frame"
    c.raw(frame(DATA, PADDED | END_STREAM, stream.stream_id, bytes([255]) + message[:200]), "padding lie")


def act_connection_window_overflow(c: ChaosConnection) -> None:
    c.raw(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW)) * 2, "connection window overflow")


def act_connection_window_zero(c: ChaosConnection) -> None:
    c.raw(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)), "zero connection WINDOW_UPDATE")


def act_exceed_window(c: ChaosConnection) -> None:
    """More DATA than the flow-control window the client has seen, inside a message longer than
    that (so the message is never whole, whatever the server does). When the relay reopened its
    window while the bytes were in flight, this is no violation at all, and is not judged as one."""
    stream = c.open_stream("exceed-window")
    c.wait(lambda: c.server.settings_seen, 1.0)
    window = c.send_window(stream.stream_id)
    over = c.rng.choice([1, 100, 20000])
    segment_id, payload = c.segment(CUT, padding=window + over + 1000)
    c.ledger.segment(segment_id, CUT)
    message = grpc_frame(payload)[:window + over]
    c.note(f"(window {window}, +{over})")
    size = c.server.max_frame_size
    frames = b"".join(frame(DATA, 0, stream.stream_id, message[i:i + size]) for i in range(0, len(message), size))
    stream.sent += message
    c.raw(frames, "DATA beyond the window")
    c.sent_connection += len(message)
    c.sent_stream[stream.stream_id] += len(message)
    if c.rng.random() < 0.5:
        c.raw(frame(DATA, END_STREAM, stream.stream_id, b""), "END_STREAM after the overrun")
        stream.ended = True


def act_bad_settings(c: ChaosConnection) -> None:
    identifier, value = c.rng.choice([(0x2, 2), (0x4, 1 << 31), (0x5, 100), (0x5, 1 << 24), (0x4, 0xFFFFFFFF)])
    c.note(f"(setting {identifier}={value})")
    c.raw(frame(SETTINGS, 0, 0, struct.pack(">HI", identifier, value)), "invalid SETTINGS value")


def act_unterminated_headers(c: ChaosConnection) -> None:
    """A header block interrupted by another frame, or a CONTINUATION with no HEADERS before it
    (PROTOCOL_ERROR); the DATA that follows carries a message that must not be taken."""
    stream = _improper(c, c.new_id(), "unterminated-headers", "header block never finished")
    block = header_block(request_headers(c.authority))
    if c.rng.random() < 0.5:
        start = frame(HEADERS, 0, stream.stream_id, block)
    else:
        start = frame(CONTINUATION, END_HEADERS, stream.stream_id, block)
    message = _orphan_message(c)
    c.raw(start + frame(DATA, END_STREAM, stream.stream_id, message), "unterminated header block")
    stream.sent += message
    stream.ended = True


def act_hpack_garbage(c: ChaosConnection) -> None:
    """A header block HPACK cannot decode (COMPRESSION_ERROR)."""
    stream = _improper(c, c.new_id(), "hpack-garbage", "undecodable header block")
    block = c.rng.choice([b"\x80", b"\xff\xff\xff\xff\x0f", b"\x3f\xe1\xff\xff\x0f", b"\x00\x85abc",
                          header_block(request_headers(c.authority))[:-3]])
    message = _orphan_message(c)
    c.raw(frame(HEADERS, END_HEADERS, stream.stream_id, block) + frame(DATA, END_STREAM, stream.stream_id, message),
          "HPACK garbage")
    stream.sent += message
    stream.ended = True


def act_push_promise(c: ChaosConnection) -> None:
    """Clients must not send PUSH_PROMISE (PROTOCOL_ERROR)."""
    stream = _open_stream_for_abuse(c, "push-promise")
    c.raw(frame(PUSH_PROMISE, END_HEADERS, stream.stream_id,
                struct.pack(">I", c.next_id + 1) + header_block(request_headers(c.authority))), "PUSH_PROMISE")


def act_garbage_bytes(c: ChaosConnection) -> None:
    c.raw(c.rng.randbytes(c.rng.choice([1, 9, 100, 5000])), "garbage bytes")


def act_truncated_frame_then_close(c: ChaosConnection) -> None:
    """A DATA frame header promising more than follows, part of a message, then the TCP close
    (FIN or RST)."""
    stream = c.open_stream("truncated-frame")
    segment_id, payload = c.segment(CUT)
    c.ledger.segment(segment_id, CUT)
    message = grpc_frame(payload)
    part = message[:c.rng.randrange(0, len(message))]
    c.raw(frame_header(len(message), DATA, END_STREAM, stream.stream_id) + part, "truncated DATA frame")
    if c.rng.random() < 0.5:
        c._linger_zero()
    c.gone = True  # closed right away by _close


def act_abrupt_close(c: ChaosConnection) -> None:
    """The client vanishes (RST, or FIN) with streams mid-message."""
    stream = c.open_stream("abrupt-close")
    if c.rng.random() < 0.5:
        c.send_message(stream)
    c.send_cut_message(stream)
    if c.rng.random() < 0.6:
        c._linger_zero()
    c.gone = True


TERMINAL: list[tuple[str, int, Callable[[ChaosConnection], None]]] = [
    ("data-before-headers", 2, act_data_on_idle_stream),
    ("even-stream-id", 2, act_even_stream),
    ("reused-stream-id", 2, act_reuse_stream_id),
    ("data-after-end", 2, act_data_after_end),
    ("stream-0-frame", 2, act_stream_zero_frame),
    ("bad-length", 2, act_bad_length),
    ("oversized-frame", 1, act_oversized_frame),
    ("padding-lie", 1, act_padding_lie),
    ("connection-window-overflow", 1, act_connection_window_overflow),
    ("connection-window-zero", 1, act_connection_window_zero),
    ("exceed-window", 1, act_exceed_window),
    ("bad-settings", 1, act_bad_settings),
    ("unterminated-headers", 1, act_unterminated_headers),
    ("hpack-garbage", 1, act_hpack_garbage),
    ("push-promise", 1, act_push_promise),
    ("garbage-bytes", 1, act_garbage_bytes),
    ("truncated-frame", 2, act_truncated_frame_then_close),
    ("abrupt-close", 3, act_abrupt_close),
]


# --------------------------------------------------------------------------- the swarm


class ChaosSwarm:
    """`workers` threads, each running connections one after another until `stop()` or its
    deadline. Connection `w<worker>-<n>` draws everything from Random(f"{seed}/{worker}/{n}"), so
    one connection's script is the same in every run with that seed (timing aside)."""

    def __init__(self, port: int, seed: int, workers: int, seconds: float,
                 exclude: frozenset[str] = frozenset()) -> None:
        unknown = exclude - {entry[0] for entry in NON_TERMINAL + TERMINAL}
        if unknown:
            raise ValueError(f"no such chaos actions: {sorted(unknown)}")
        self.exclude = exclude
        self.port = port
        self.seed = seed
        self.tag = f"h2chaos-{seed}"
        self.ledger = ChaosLedger()
        self.seconds = seconds
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._worker, args=(w,), name=f"h2-chaos-{w}", daemon=True)
                         for w in range(workers)]

    def start(self) -> "ChaosSwarm":
        self.deadline = time.monotonic() + self.seconds
        for thread in self._threads:
            thread.start()
        return self

    def _worker(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            rng = random.Random(f"{self.seed}/{worker}/{n}")
            outcome = ChaosConnection(self.port, rng, self.ledger, f"w{worker}-{n}", self.tag,
                                      self.exclude).run()
            self.ledger.record(outcome)
            n += 1

    def join(self, timeout: float) -> list[str]:
        """Waits for the workers; returns the names of those still running after `timeout`."""
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    def stop(self) -> None:
        self._stop.set()
