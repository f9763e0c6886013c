"""A TCP forwarder on 127.0.0.1 that adds a network round-trip time, for TLS measurements.

:class:`support.proxy.HttpProxy` parses HTTP/1.1 and so cannot stand in front of a TLS registry
(nor carry HTTP/2). This forwarder moves bytes without looking at them and delays them as a
network would: every piece of data arrives ``rtt / 2`` after it was sent, in order, and a new
connection costs one more ``rtt`` before its first byte arrives (the TCP handshake). A TLS
handshake, connection reuse and HTTP/2 multiplexing then cost or save what they would on a real
network.

    with TcpDelay("127.0.0.1:5000", rtt=0.05) as fwd:
        ...  # talk to fwd.host; fwd.connections counts the TCP connections opened
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Optional

__all__ = ["TcpDelay"]

CHUNK = 64 * 1024


class TcpDelay:
    """Forward ``127.0.0.1:PORT`` to ``upstream`` (``"host:port"``) with a round-trip time."""

    def __init__(self, upstream: str, rtt: float = 0.0) -> None:
        host, _, port = upstream.rpartition(":")
        self._up_host = host
        self._up_port = int(port)
        self.rtt = rtt
        self._port = 0
        self._lock = threading.Lock()
        self._connections = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TcpDelay:
        self._thread = threading.Thread(target=self._run, name="tcp-delay", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError("tcp delay forwarder failed to start") from self._error
        return self

    def stop(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> TcpDelay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def connections(self) -> int:
        """TCP connections accepted since start or :meth:`reset`."""
        with self._lock:
            return self._connections

    def reset(self) -> None:
        with self._lock:
            self._connections = 0

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._connection(reader, writer)
            except asyncio.CancelledError:
                writer.close()  # stopping with connections open (kept alive): not an error
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._connections += 1
        loop = asyncio.get_running_loop()
        # The TCP handshake: the client's first byte cannot arrive before one round trip.
        handshake_done = loop.time() + self.rtt
        try:
            up_reader, up_writer = await asyncio.open_connection(self._up_host, self._up_port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, handshake_done),
                self._pipe(up_reader, writer, 0.0),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, not_before: float
    ) -> None:
        """Copy one direction, each piece delivered ``rtt / 2`` after it was read, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                when, data = await queue.get()
                wait = when - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        deliverer = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                queue.put_nowait((max(loop.time(), not_before) + self.rtt / 2, data))
                if not data:
                    break
            await deliverer
        finally:
            deliverer.cancel()
