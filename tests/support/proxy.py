"""A small HTTP/1.1 reverse proxy for tests: count requests, measure depth, add latency, faults.

Put :class:`HttpProxy` in front of a plain-HTTP registry on 127.0.0.1 and point the client under
test at :attr:`HttpProxy.url` (or :attr:`HttpProxy.host`)::

    with HttpProxy(upstream="127.0.0.1:5000", delay=0.05) as proxy:
        push(..., registry=proxy.host)
        assert proxy.count(method="PUT", path_contains="/manifests/") == 3
        assert proxy.depth() <= 4
        assert proxy.connections == 1

The proxy runs its own asyncio event loop in a daemon thread, so sync test code can use it. It is
stdlib only and HTTP/1.1 aware: each client connection gets its own persistent upstream
connection, requests and responses are parsed (Content-Length, chunked, close-delimited; HEAD,
1xx, 204 and 304 carry no body) and relayed byte for byte, bodies streamed in 64 KiB pieces.
Nothing is rewritten unless a test asks (``rewrite_path``, ``rewrite_response_header``): the
client's ``Host`` header goes upstream unchanged, so the registry builds its absolute ``Location``
URLs with the proxy's address and they stay valid for the client. The one exception is
``Expect: 100-continue``: the proxy answers ``100 Continue`` itself and drops the header from the
forwarded request.

Timing: a request's ``start`` is when its request line and headers were received (before the
injected delay and before its body is read: see :class:`RecordedRequest`), its ``end`` is when the
last byte of its response was written to the client. A record is appended *before* that last byte
goes out, so once the client has the whole response, :attr:`HttpProxy.requests` includes it.

Depth in waves (:class:`WaveGate`). Judging depth by wall-clock overlap (:func:`depth_of`) is
load-sensitive: a client that is merely slow to send an independent request B (descheduled on a
busy machine) sends it after A's response and B looks as if it waited for A. Waiting for a quiet
period before answering is load-sensitive too (a client descheduled for longer than the period
looks done), and so is any rule in seconds. With a gate, the
proxy *holds* every arriving request and the gate releases the held ones together, as one wave,
only when the client can send nothing more without a response: when

1. every request of the previous wave has been answered in full, and the client's kernel has
   acknowledged every byte of those answers (so they are in the client's sockets);
2. then the client process is blocked: every one of its threads sleeps in the kernel
   (``/proc/PID/task/*/stat`` state ``S``). A thread that has something to do is ``R`` even when
   it is not on a CPU, and a thread woken by data arriving in its socket becomes ``R`` at once;
3. then every byte the client sent has reached the proxy's sockets (its side of each connection
   to the proxy has nothing unacknowledged, and no connection is still being opened), and
4. then each proxy has parsed all of it (after some turns of its event loop, no connection has
   unread input or half a request, and no connection waits to be accepted),

and no request arrived during 1-4. A request's wave number is then its causal depth: 1 + the
deepest wave whose answer it needed, however slowly any process ran: every step is an ordering
of kernel and event-loop states, none a duration. Besides answers, only the client's own waiting
on time (a sleep, a retry's backoff) ends a wave early. The gate needs Linux ``/proc`` and the
client's process id (:meth:`WaveGate.watch`); it serves any number of proxies (put one in front of
a token server, and have the registry's proxy point ``realm`` at it with
``rewrite_response_header``, so token requests are in the waves too). The client must be a
process of its own (a thread of the test process is never seen blocked) that talks to nothing
but the gated proxies while it is measured. If it never blocks, a wave is released after
``stall_timeout`` seconds and an error recorded (a test asserting ``errors == []`` fails).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import random
import select
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = [
    "FAULT_KINDS",
    "HttpProxy",
    "RecordedRequest",
    "WaveGate",
    "depth_of",
    "process_blocked",
]

#: Fault kinds understood by :meth:`HttpProxy.set_faults`.
FAULT_KINDS = ("reset", "503", "429", "delay")

CHUNK = 64 * 1024
_MAX_LINE = 64 * 1024  # the StreamReader limit: longest request/status/header line accepted
_MAX_HEADERS = 200

_REASONS = {
    429: b"Too Many Requests",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    400: b"Bad Request",
}
_FAULT_BODIES = {
    429: b'{"errors":[{"code":"TOOMANYREQUESTS","message":"injected by test proxy"}]}',
    503: b'{"errors":[{"code":"UNAVAILABLE","message":"injected by test proxy"}]}',
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request seen by the proxy.

    ``start``/``end`` are :func:`time.monotonic` values. ``start`` is when the request line and
    headers had been received; ``end`` when the response had been written in full (or the
    connection dropped). ``start`` deliberately does not wait for the request body: with it, a
    large upload sent alongside a quick request would look as if it had waited for that request,
    inflating :meth:`HttpProxy.depth`.

    ``status`` is the status sent to the client (``None`` when none was: a ``reset`` fault, or a
    client or upstream connection that died mid-way). ``fault`` names the injected fault, if any;
    ``error`` describes what went wrong when the proxy could not complete the exchange.
    """

    method: str
    path: str
    status: Optional[int]
    start: float
    end: float
    connection_id: int
    fault: Optional[str] = None
    error: Optional[str] = None
    wave: Optional[int] = None  # with a WaveGate: the wave it was released in (1, 2, ...)

    @property
    def duration(self) -> float:
        return self.end - self.start


def depth_of(intervals: Iterable[tuple[float, float]]) -> int:
    """Longest chain of ``(start, end)`` intervals, each starting at or after the previous end.

    O(n log n): intervals in order of end; for each, the best chain ending at or before its start
    is a prefix maximum found by bisection.
    """
    items = sorted(intervals, key=lambda se: se[1])
    ends = [end for _, end in items]
    best = [0] * (len(items) + 1)  # best[k]: longest chain among the first k intervals by end
    for pos, (start, _) in enumerate(items):
        k = min(bisect.bisect_right(ends, start), pos)
        best[pos + 1] = max(best[pos], best[k] + 1)
    return best[-1]


# -- waves ---------------------------------------------------------------------------------------

_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_TCP_SYN_SENT = 0x02
_TCP_LISTEN = 0x0A
#: Event-loop turns a proxy takes before it looks for unprocessed input: an accepted socket needs
#: a few (accept, transport, connection_made, handler task) before its handler reads.
_SETTLE_TURNS = 16


def process_blocked(pid: int) -> bool:
    """Whether every thread of process ``pid`` sleeps waiting for an event (Linux ``/proc``).

    State ``S`` (interruptible sleep) only: ``R`` (running or runnable) and ``D`` (disk) mean the
    process is still working. A process that has exited (or is a zombie) sends nothing more and
    counts as blocked.
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return True
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended
        state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
        if state not in (b"S", b"Z", b"X"):
            return False
    return True


@dataclass(frozen=True)
class _TcpSocket:
    local_port: int
    remote_port: int
    state: int
    tx_queue: int  # sent, not yet acknowledged by the peer's kernel (LISTEN: backlog limit)
    rx_queue: int  # received, not yet read by the process (LISTEN: connections to accept)


def _tcp_sockets() -> list[_TcpSocket]:
    found = []
    for table in _TCP_TABLES:
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    tx, rx = fields[4].split(":")
                    found.append(
                        _TcpSocket(
                            int(fields[1].rsplit(":", 1)[1], 16),
                            int(fields[2].rsplit(":", 1)[1], 16),
                            int(fields[3], 16),
                            int(tx, 16),
                            int(rx, 16),
                        )
                    )
        except FileNotFoundError:
            continue
    return found


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Held:
    """A request held at the gate: its proxy's loop and the future its handler waits on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[int]) -> None:
        self.loop = loop
        self.future = future


class WaveGate:
    """Releases the requests of one or more :class:`HttpProxy` in waves (see the module text).

    ``gate = WaveGate(); HttpProxy(upstream, gate=gate)``; start the client, then
    ``gate.watch(pid)`` (requests wait until then). Each :class:`RecordedRequest` gets its
    ``wave``; :attr:`waves` is how many were released since :meth:`reset`.
    """

    def __init__(self, *, stall_timeout: float = 60.0, poll_interval: float = 0.001) -> None:
        self.stall_timeout = stall_timeout
        self.poll_interval = poll_interval
        self._cond = threading.Condition()
        self._proxies: list[HttpProxy] = []
        self._pid: Optional[int] = None
        self._held: list[_Held] = []
        self._held_since = 0.0
        self._released = 0  # requests released and not finished
        self._arrivals = 0
        self._waves = 0
        self._errors: list[str] = []
        self._thread: Optional[threading.Thread] = None

    def watch(self, pid: Optional[int]) -> None:
        """The client's process id (``None``: no client; requests are held until there is)."""
        with self._cond:
            self._pid = pid
            self._cond.notify_all()

    @property
    def waves(self) -> int:
        with self._cond:
            return self._waves

    @property
    def errors(self) -> list[str]:
        with self._cond:
            return list(self._errors)

    def reset(self) -> None:
        """Number waves from 1 again, forget errors (call between two runs of the client)."""
        with self._cond:
            self._waves = 0
            self._errors.clear()

    # -- used by HttpProxy (in its event loop's thread) -------------------------------------------

    def _attach(self, proxy: HttpProxy) -> None:
        with self._cond:
            self._proxies.append(proxy)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._coordinate, name="test-proxy-wave-gate", daemon=True
                )
                self._thread.start()

    def _detach(self, proxy: HttpProxy) -> None:
        with self._cond:
            if proxy in self._proxies:
                self._proxies.remove(proxy)
            thread = self._thread if not self._proxies else None
            if thread is not None:
                self._thread = None
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _arrive(self) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._cond:
            if not self._held:
                self._held_since = time.monotonic()
            self._held.append(_Held(loop, future))
            self._arrivals += 1
            self._cond.notify_all()
        return future

    def _withdraw(self, future: asyncio.Future[int]) -> None:
        """A held request's handler was cancelled (the proxy is stopping)."""
        with self._cond:
            kept = [item for item in self._held if item.future is not future]
            if len(kept) == len(self._held):
                self._released -= 1  # it had been released already
            self._held = kept
            self._cond.notify_all()

    def _finished(self) -> None:
        with self._cond:
            self._released -= 1
            self._cond.notify_all()

    # -- the coordinator thread ------------------------------------------------------------------

    def _coordinate(self) -> None:
        while True:
            with self._cond:
                while self._proxies and not (self._held and self._released == 0):
                    if self._held and time.monotonic() - self._held_since > self.stall_timeout:
                        break
                    self._cond.wait(timeout=0.1)
                if not self._proxies:
                    return
                arrivals, pid = self._arrivals, self._pid
                stalled = time.monotonic() - self._held_since > self.stall_timeout
            quiet = pid is not None and not stalled and self._quiet(pid)
            with self._cond:
                if not self._proxies:
                    return
                if self._arrivals != arrivals:
                    continue  # something arrived meanwhile: look again
                if stalled:
                    self._errors.append(
                        f"wave {self._waves + 1} released after {self.stall_timeout} s "
                        "without the client blocking (or without a client to watch): "
                        "depth unreliable"
                    )
                if quiet or stalled:
                    self._release()
                    continue
            time.sleep(self.poll_interval)

    def _release(self) -> None:
        """Release every held request as the next wave (called with the lock held)."""
        self._waves += 1
        wave = self._waves
        held, self._held = self._held, []
        self._released += len(held)
        for item in held:
            with contextlib.suppress(RuntimeError):  # that proxy's loop has closed
                item.loop.call_soon_threadsafe(_resolve, item.future, wave)

    def _quiet(self, pid: int) -> bool:
        """Steps 1-4 of the module text, in that order (step 1's "answered" is checked by the
        caller: nothing released is unfinished)."""
        with self._cond:
            proxies = list(self._proxies)
        ports = {proxy.port for proxy in proxies}
        held_peers: set[int] = set()
        for proxy in proxies:
            held_peers |= proxy._held_peer_ports()
        if not self._kernel_quiet(ports, held_peers, answers_only=True):
            return False
        if not process_blocked(pid):
            return False
        if not self._kernel_quiet(ports, held_peers, answers_only=False):
            return False
        return all(proxy._settled() for proxy in proxies)

    @staticmethod
    def _kernel_quiet(ports: set[int], held_peers: set[int], *, answers_only: bool) -> bool:
        for sock in _tcp_sockets():
            if sock.local_port in ports:  # the proxy's side
                if sock.state == _TCP_LISTEN:
                    if sock.rx_queue and not answers_only:
                        return False  # connections waiting to be accepted
                elif sock.tx_queue:
                    return False  # an answer not yet in the client's socket
                elif sock.rx_queue and not answers_only and sock.remote_port not in held_peers:
                    return False  # the proxy has not read what the client sent
            elif sock.remote_port in ports and not answers_only:  # the client's side
                if sock.state == _TCP_SYN_SENT:
                    return False
                if sock.tx_queue and sock.local_port not in held_peers:
                    return False  # a request still on its way (a held one's body may wait)
        return True


def _resolve(future: asyncio.Future[int], wave: int) -> None:
    if not future.done():
        future.set_result(wave)


class _BadRequest(Exception):
    pass


class _UpstreamError(Exception):
    pass


class _ClientGone(Exception):
    pass


@dataclass
class _Head:
    """A parsed request or response head. ``lines`` are the raw header lines, CRLF included."""

    first: bytes
    lines: list[bytes]
    headers: list[tuple[str, str]]  # lower-cased names, stripped values

    def get(self, name: str) -> Optional[str]:
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> list[str]:
        value = self.get(name)
        return [t.strip().lower() for t in value.split(",") if t.strip()] if value else []

    def raw(self, drop: Sequence[str] = ()) -> bytes:
        kept = [
            line
            for line, (k, _) in zip(self.lines, self.headers)
            if k not in drop  # names in drop are lower case
        ]
        return self.first + b"".join(kept) + b"\r\n"


async def _read_head(
    reader: asyncio.StreamReader,
    *,
    skip_blank: bool,
    started: Optional[Callable[[], None]] = None,
) -> Optional[_Head]:
    """Read a head; ``None`` on a clean EOF before its first byte. ``started()`` is called once
    its first line is in."""
    first = await reader.readline()
    while skip_blank and first in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore CRLFs before a request
        first = await reader.readline()
    if not first:
        return None
    if started is not None:
        started()
    if not first.endswith(b"\n"):
        raise asyncio.IncompleteReadError(first, None)
    lines: list[bytes] = []
    headers: list[tuple[str, str]] = []
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise asyncio.IncompleteReadError(line, None)
        if line in (b"\r\n", b"\n"):
            break
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(f"malformed header line {line!r}")
        lines.append(line)
        headers.append((name.decode("latin-1").lower(), value.decode("latin-1").strip()))
        if len(lines) > _MAX_HEADERS:
            raise _BadRequest("too many header lines")
    return _Head(first, lines, headers)


def _content_length(head: _Head) -> Optional[int]:
    value = head.get("content-length")
    if value is None:
        return None
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise _BadRequest(f"bad Content-Length {value!r}")
    return int(values.pop())


def _is_chunked(head: _Head) -> bool:
    codings = head.tokens("transfer-encoding")
    return bool(codings) and codings[-1] == "chunked"


async def _fixed_pieces(reader: asyncio.StreamReader, length: int) -> AsyncIterator[bytes]:
    remaining = length
    while remaining > 0:
        data = await reader.read(min(CHUNK, remaining))
        if not data:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(data)
        yield data


async def _chunked_pieces(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The chunked body as it came (sizes, extensions and trailers kept), in pieces."""
    while True:
        size_line = await reader.readline()
        if not size_line.endswith(b"\n"):
            raise asyncio.IncompleteReadError(size_line, None)
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest(f"bad chunk size line {size_line!r}") from None
        if size == 0:
            trailer = [size_line]
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    raise asyncio.IncompleteReadError(line, None)
                trailer.append(line)
                if line in (b"\r\n", b"\n"):
                    yield b"".join(trailer)
                    return
        pending = size_line
        async for data in _fixed_pieces(reader, size):
            yield pending + data
            pending = b""
        crlf = await reader.readline()
        if crlf not in (b"\r\n", b"\n"):
            raise _BadRequest(f"missing CRLF after chunk data: {crlf!r}")
        yield crlf


async def _eof_pieces(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        data = await reader.read(CHUNK)
        if not data:
            return
        yield data


def _rewritten(head: _Head, rewrite: Callable[[str, str], str]) -> _Head:
    """``head`` with each header value replaced by ``rewrite(lower-case name, value)``."""
    lines: list[bytes] = []
    headers: list[tuple[str, str]] = []
    for line, (name, value) in zip(head.lines, head.headers):
        new = rewrite(name, value)
        if new != value:
            line = line.split(b":", 1)[0] + b": " + new.encode("latin-1") + b"\r\n"
        lines.append(line)
        headers.append((name, new))
    return _Head(head.first, lines, headers)


def _status_of(head: _Head) -> int:
    parts = head.first.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise _UpstreamError(f"malformed status line {head.first!r}")
    return int(parts[1])


def _simple_response(
    status: int, body: bytes, extra: Sequence[str] = (), close: bool = False
) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error"))]
    lines.append(b"Content-Type: application/json\r\n")
    lines.append(b"Content-Length: %d\r\n" % len(body))
    lines.extend(h.encode("latin-1") + b"\r\n" for h in extra)
    if close:
        lines.append(b"Connection: close\r\n")
    return b"".join(lines) + b"\r\n" + body


class _Upstream:
    """The upstream connection of one client connection, opened lazily, reopened when closed."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    @property
    def usable(self) -> bool:
        return (
            self.reader is not None
            and self.writer is not None
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """The open connection and whether it is a reused one."""
        if self.usable:
            assert self.reader is not None and self.writer is not None
            return self.reader, self.writer, True
        self.close()
        try:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=_MAX_LINE
            )
        except OSError as exc:
            raise _UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return self.reader, self.writer, False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class _Connection:
    """What a client connection's handler is doing, for the :class:`WaveGate`: ``idle``
    (waiting for a request), ``reading`` (part of a request head in), ``held`` (at the gate),
    ``busy`` (relaying a released request)."""

    def __init__(self, fd: int, peer_port: int) -> None:
        self.fd = fd
        self.peer_port = peer_port
        self.state = "idle"
        self.released = False  # released by the gate, not yet finished


class HttpProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream`` (``"host:port"``, plain HTTP).

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``delay`` seconds are slept
    before each request is forwarded (concurrent requests overlap, as real round trips do); it
    may be changed at any time through the attribute. ``port=0`` picks a free port. With a
    ``gate`` (:class:`WaveGate`), requests are held and released in waves.
    ``rewrite_response_header(name, value) -> value`` changes response headers (names in lower
    case), e.g. a ``www-authenticate`` realm, to send the client's token requests through
    another proxy.

    All accessors are thread-safe. :attr:`requests` lists completed requests in order of
    completion; :meth:`reset` clears them and the connection count.
    """

    def __init__(
        self,
        upstream: str,
        delay: float = 0.0,
        *,
        listen_host: str = "127.0.0.1",
        port: int = 0,
        gate: Optional[WaveGate] = None,
        rewrite_response_header: Optional[Callable[[str, str], str]] = None,
    ) -> None:
        target = upstream.removeprefix("http://").rstrip("/")
        if "://" in target or "/" in target:
            raise ValueError(f"upstream must be 'host:port' (plain HTTP), got {upstream!r}")
        up_host, sep, up_port = target.rpartition(":")
        if not sep or not up_port.isdigit():
            raise ValueError(f"upstream must be 'host:port', got {upstream!r}")
        self.upstream = target
        self._up_host = up_host.strip("[]")
        self._up_port = int(up_port)
        self.delay = delay
        #: ``rewrite_path(method, path) -> path``: change a request's target before forwarding.
        self.rewrite_path: Optional[Callable[[str, str], str]] = None
        self.gate = gate
        self.rewrite_response_header = rewrite_response_header
        self._conns: dict[int, _Connection] = {}
        self._server_fd: Optional[int] = None
        self._listen_host = listen_host
        self._port = port

        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._connections = 0
        self._next_connection_id = 0
        self._errors: list[str] = []

        self._fault_rate = 0.0
        self._fault_kinds: tuple[str, ...] = FAULT_KINDS
        self._fault_delay = 1.0
        self._fault_match: Optional[Callable[[str, str], bool]] = None
        self._rng = random.Random(0)

        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop_event: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._client_writers: set[asyncio.StreamWriter] = set()
        self._upstreams: set[_Upstream] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> HttpProxy:
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        self._thread = threading.Thread(target=self._run, name="test-http-proxy", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("test proxy failed to start") from self._startup_error
        if self.gate is not None:
            self.gate._attach(self)
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection; wait for the thread to end."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if self.gate is not None:
            self.gate._detach(self)
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout=10)
        if thread.is_alive():
            raise RuntimeError("test proxy thread did not stop")
        self._thread = None

    def __enter__(self) -> HttpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._ready.is_set() or self._port == 0:
            raise RuntimeError("proxy not started")
        return self._port

    @property
    def host(self) -> str:
        """``"127.0.0.1:PORT"``: the registry host name to give the client under test."""
        return f"{self._listen_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # -- observations --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the completed requests, in order of completion."""
        with self._lock:
            return list(self._records)

    @property
    def connections(self) -> int:
        """Client TCP connections accepted since start (or :meth:`reset`)."""
        with self._lock:
            return self._connections

    @property
    def faults(self) -> list[RecordedRequest]:
        """The requests that got an injected fault."""
        return [r for r in self.requests if r.fault is not None]

    @property
    def errors(self) -> list[str]:
        """Unexpected errors in the proxy itself, and its gate's (a test may assert this stays
        empty)."""
        with self._lock:
            errors = list(self._errors)
        return errors + (self.gate.errors if self.gate is not None else [])

    def _select(self, method: Optional[str], path_contains: Optional[str]) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (path_contains is None or path_contains in r.path)
        ]

    def count(self, method: Optional[str] = None, path_contains: Optional[str] = None) -> int:
        """Completed requests, optionally only those with ``method`` / a path containing a text."""
        return len(self._select(method, path_contains))

    def depth(self, method: Optional[str] = None, path_contains: Optional[str] = None) -> int:
        """Over all completed requests or those selected as in :meth:`count`: with a gate, the
        number of waves they were released in; else the longest chain of requests each starting
        after the previous one ended (see :func:`depth_of`; load-sensitive)."""
        selected = self._select(method, path_contains)
        if self.gate is not None:
            return len({r.wave for r in selected if r.wave is not None})
        return depth_of((r.start, r.end) for r in selected)

    def widest_wave(self) -> int:
        """With a gate: the most requests released together (all of them were in flight at the
        client at once)."""
        waves = [r.wave for r in self.requests if r.wave is not None]
        return max((waves.count(w) for w in set(waves)), default=0)

    def reset(self) -> None:
        """Forget recorded requests, errors and the connection count (faults stay configured);
        the gate's waves count from 1 again."""
        with self._lock:
            self._records.clear()
            self._errors.clear()
            self._connections = 0
        if self.gate is not None:
            self.gate.reset()

    # -- for the WaveGate (from its thread) ----------------------------------------------------

    def _held_peer_ports(self) -> set[int]:
        with self._lock:
            return {c.peer_port for c in self._conns.values() if c.state == "held"}

    async def _settle(self) -> bool:
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
        if self._server_fd is not None and _readable(self._server_fd):
            return False
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            if conn.state == "held":
                continue  # its socket may hold its body: read once released
            if conn.state != "idle" or _readable(conn.fd):
                return False
        return True

    def _settled(self) -> bool:
        """Whether everything that reached this proxy's sockets has been parsed (step 4)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return True
        try:
            future = asyncio.run_coroutine_threadsafe(self._settle(), loop)
            return future.result(timeout=60)
        except Exception:  # the loop stopped meanwhile
            return False

    def set_faults(
        self,
        rate: float,
        kinds: Sequence[str] = FAULT_KINDS,
        seed: Optional[int] = None,
        *,
        extra_delay: float = 1.0,
        match: Optional[Callable[[str, str], bool]] = None,
    ) -> None:
        """Inject a fault into each request with probability ``rate`` (0 turns faults off).

        The kind is drawn uniformly from ``kinds``: ``"reset"`` drops the client connection (TCP
        RST) without a response; ``"503"`` and ``"429"`` answer that status (429 with
        ``Retry-After: 0``, both with a registry-style JSON error body) without forwarding;
        ``"delay"`` sleeps ``extra_delay`` more seconds, then forwards normally. Draws come from
        ``random.Random(seed)``, one or two per request in arrival order, so a sequential client
        sees the same faults on every run. ``match(method, path)``, if given, limits faults (and
        draws) to the requests it accepts. The normal ``delay`` applies to faulted requests too.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {rate}")
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"fault kinds must be a non-empty subset of {FAULT_KINDS}")
        with self._lock:
            self._fault_rate = rate
            self._fault_kinds = tuple(kinds)
            self._fault_delay = extra_delay
            self._fault_match = match
            self._rng = random.Random(seed)

    def _draw_fault(self, method: str, path: str) -> Optional[str]:
        with self._lock:
            if self._fault_rate <= 0.0:
                return None
            if self._fault_match is not None and not self._fault_match(method, path):
                return None
            if self._rng.random() >= self._fault_rate:
                return None
            return self._rng.choice(self._fault_kinds)

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._records.append(record)

    def _error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    # -- event loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._startup_error = exc
            else:
                self._error(f"proxy loop crashed: {exc!r}")
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(
            self._on_client, self._listen_host, self._port, limit=_MAX_LINE
        )
        self._port = server.sockets[0].getsockname()[1]
        self._server_fd = server.sockets[0].fileno()
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            for writer in list(self._client_writers):
                writer.transport.abort()
            for upstream in list(self._upstreams):
                if upstream.writer is not None:
                    upstream.writer.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._client_writers.add(writer)
        with self._lock:
            self._connections += 1
            self._next_connection_id += 1
            connection_id = self._next_connection_id
        upstream = _Upstream(self._up_host, self._up_port)
        self._upstreams.add(upstream)
        sock = writer.get_extra_info("socket")
        peer = writer.get_extra_info("peername")
        conn = _Connection(sock.fileno() if sock is not None else -1, peer[1] if peer else 0)
        with self._lock:
            self._conns[connection_id] = conn
        try:
            keep = True
            while keep:
                conn.state = "idle"
                try:
                    keep = await self._exchange(reader, writer, upstream, connection_id, conn)
                finally:
                    if conn.released and self.gate is not None:
                        conn.released = False
                        self.gate._finished()
        except asyncio.CancelledError:
            pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except Exception as exc:
            self._error(f"connection {connection_id}: {exc!r}")
        finally:
            with self._lock:
                self._conns.pop(connection_id, None)
            upstream.close()
            self._upstreams.discard(upstream)
            self._client_writers.discard(writer)
            writer.transport.abort()
            self._tasks.discard(task)

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: _Upstream,
        connection_id: int,
        conn: _Connection,
    ) -> bool:
        """Relay one request and its response; whether the client connection stays open."""

        def reading() -> None:
            conn.state = "reading"

        try:
            head = await _read_head(reader, skip_blank=True, started=reading)
        except (_BadRequest, asyncio.LimitOverrunError, ValueError) as exc:
            writer.write(_simple_response(400, b"", close=True))
            await writer.drain()
            self._error(f"connection {connection_id}: bad request: {exc}")
            return False
        if head is None:
            return False
        start = time.monotonic()
        parts = head.first.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            writer.write(_simple_response(400, b"", close=True))
            await writer.drain()
            self._error(f"connection {connection_id}: bad request line {head.first!r}")
            return False
        method = parts[0].decode("latin-1").upper()
        path = parts[1].decode("latin-1")
        http10 = parts[2] == b"HTTP/1.0"
        conn_tokens = head.tokens("connection")
        client_close = "close" in conn_tokens or (http10 and "keep-alive" not in conn_tokens)
        expect_continue = "100-continue" in head.tokens("expect") and not http10

        wave: Optional[int] = None
        if self.gate is not None:
            conn.state = "held"
            arrived = self.gate._arrive()
            try:
                wave = await arrived
            except asyncio.CancelledError:
                self.gate._withdraw(arrived)
                raise
            conn.released = True
            conn.state = "busy"

        def record(
            status: Optional[int], fault: Optional[str] = None, error: Optional[str] = None
        ) -> None:
            self._record(
                RecordedRequest(
                    method, path, status, start, time.monotonic(), connection_id, fault, error, wave
                )
            )

        try:
            body_length = None if _is_chunked(head) else _content_length(head)
        except _BadRequest as exc:
            record(400, error=str(exc))
            writer.write(_simple_response(400, b"", close=True))
            await writer.drain()
            return False
        has_body = _is_chunked(head) or bool(body_length)

        fault = self._draw_fault(method, path)
        delay = self.delay + (self._fault_delay if fault == "delay" else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)

        if fault == "reset":
            record(None, fault=fault)
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False

        if fault in ("503", "429"):
            status = int(fault)
            # A client waiting for 100 Continue has not sent its body: answer and close.
            close = client_close or (has_body and expect_continue)
            if has_body and not expect_continue:
                async for _ in self._body_pieces(reader, head, body_length):
                    pass
            extra = ["Retry-After: 0"] if status == 429 else []
            record(status, fault=fault)
            writer.write(_simple_response(status, _FAULT_BODIES[status], extra, close=close))
            await writer.drain()
            return not close

        return await self._forward(
            reader,
            writer,
            upstream,
            head,
            method,
            body_length,
            has_body,
            expect_continue,
            client_close,
            record,
            fault,
        )

    @staticmethod
    def _body_pieces(
        reader: asyncio.StreamReader, head: _Head, body_length: Optional[int]
    ) -> AsyncIterator[bytes]:
        if _is_chunked(head):
            return _chunked_pieces(reader)
        return _fixed_pieces(reader, body_length or 0)

    @staticmethod
    async def _bad_gateway(
        writer: asyncio.StreamWriter,
        record: Callable[..., None],
        fault: Optional[str],
        error: str,
    ) -> bool:
        record(502, fault=fault, error=error)
        writer.write(_simple_response(502, b"", close=True))
        await writer.drain()
        return False

    async def _send_body(
        self,
        reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        head: _Head,
        body_length: Optional[int],
    ) -> bool:
        """Stream the request body upstream; ``False`` if the upstream stopped taking it."""
        pieces = self._body_pieces(reader, head, body_length)
        while True:
            try:
                piece = await pieces.__anext__()
            except StopAsyncIteration:
                return True
            except (ConnectionError, asyncio.IncompleteReadError, _BadRequest) as exc:
                raise _ClientGone(f"client request body: {exc!r}") from exc
            try:
                up_writer.write(piece)
                await up_writer.drain()
            except ConnectionError:
                return False

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: _Upstream,
        head: _Head,
        method: str,
        body_length: Optional[int],
        has_body: bool,
        expect_continue: bool,
        client_close: bool,
        record: Callable[..., None],
        fault: Optional[str],
    ) -> bool:
        request_head = head.raw(drop=("expect",) if expect_continue else ())
        if self.rewrite_path is not None:
            # Tests stand in for registry behaviour this way (e.g. one that refuses mounts).
            path = head.first.split()[1].decode("latin-1")
            new_path = self.rewrite_path(method, path)
            if new_path != path:
                first = head.first.replace(path.encode("latin-1"), new_path.encode("latin-1"), 1)
                request_head = first + request_head[len(head.first) :]
        for attempt in (1, 2):
            try:
                up_reader, up_writer, reused = await upstream.connect()
            except _UpstreamError as exc:
                return await self._bad_gateway(writer, record, fault, str(exc))
            body_sent = False  # whether any of the body went upstream (then no retry is possible)
            try:
                up_writer.write(request_head)
                await up_writer.drain()
                if has_body:
                    if expect_continue:
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                        await writer.drain()
                        expect_continue = False
                    body_sent = True
                    if not await self._send_body(reader, up_writer, head, body_length):
                        # The upstream stopped reading the body; it may have answered early. The
                        # rest of the client's body was not read: the connection must close.
                        client_close = True
                response = await _read_head(up_reader, skip_blank=False)
                if response is None:
                    raise ConnectionResetError("upstream closed the connection")
                # Interim (1xx) responses go to the client as they are; then the final one.
                status = _status_of(response)
                while 100 <= status < 200 and status != 101:
                    writer.write(response.raw())
                    await writer.drain()
                    next_response = await _read_head(up_reader, skip_blank=False)
                    if next_response is None:
                        raise ConnectionResetError("upstream closed after an interim response")
                    response = next_response
                    status = _status_of(response)
                if self.rewrite_response_header is not None:
                    response = _rewritten(response, self.rewrite_response_header)
            except _ClientGone as exc:
                upstream.close()
                record(None, fault=fault, error=str(exc))
                return False
            except (
                ConnectionError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,  # a line over the StreamReader limit
                _BadRequest,
                _UpstreamError,
            ) as exc:
                upstream.close()
                if reused and not body_sent and attempt == 1 and isinstance(exc, ConnectionError):
                    continue  # a stale keep-alive connection: retry once on a fresh one
                return await self._bad_gateway(writer, record, fault, f"upstream: {exc!r}")
            break
        else:  # pragma: no cover - the loop always breaks or returns
            raise AssertionError("unreachable")

        up_tokens = response.tokens("connection")
        upstream_close = "close" in up_tokens or (
            response.first.startswith(b"HTTP/1.0") and "keep-alive" not in up_tokens
        )
        pieces: Optional[AsyncIterator[bytes]]
        if method == "HEAD" or status in (101, 204, 304) or status < 200:
            pieces = None
        elif _is_chunked(response):
            pieces = _chunked_pieces(up_reader)
        elif response.get("transfer-encoding") is None and response.get("content-length"):
            try:
                pieces = _fixed_pieces(up_reader, _content_length(response) or 0)
            except _BadRequest as exc:
                raise _UpstreamError(str(exc)) from None
        else:
            pieces = _eof_pieces(up_reader)  # delimited by the upstream closing the connection
            upstream_close = True
        if status == 101:
            upstream_close = True

        # Hold the last piece back so that the request is recorded before the client can have
        # the complete response.
        pending = response.raw()
        try:
            if pieces is not None:
                async for piece in pieces:
                    writer.write(pending)
                    await writer.drain()
                    pending = piece
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, _BadRequest) as exc:
            upstream.close()
            record(None, fault=fault, error=f"upstream response cut short: {exc!r}")
            writer.transport.abort()
            return False
        if upstream_close:
            upstream.close()
        record(status, fault=fault)
        writer.write(pending)
        await writer.drain()
        return not (client_close or upstream_close)
