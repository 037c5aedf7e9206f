"""A TCP proxy in front of PostgreSQL that a test can cut, partition and restore: an outage on
demand, without stopping the server other tests share.

``cut`` is a server that died: connections reset, new ones refused. ``partition`` is a network
that stopped carrying packets: nothing is closed or refused, nothing gets through either way,
and connections made meanwhile hang in their handshake; ``restore`` lets everything held back
through, as TCP retransmission does when a partition heals."""

from __future__ import annotations

import asyncio
import threading


class TcpProxy:
    """127.0.0.1:<port> -> PostgreSQL's Unix socket (host starting with /) or host:port."""

    def __init__(self, *, host: str, port: int | None):
        self.target_host, self.target_port = host, port or 5432
        self.up = True
        self.flowing = asyncio.Event()  # cleared while partitioned
        self._pipes: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        await self._close_all()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def cut(self) -> None:
        """Drop every connection and refuse new ones, as a dead server would."""
        self.up = False
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)

    def partition(self) -> None:
        """Stop forwarding, both ways, without closing or refusing anything."""
        self._loop.call_soon_threadsafe(self.flowing.clear)

    def restore(self) -> None:
        self.up = True
        self._loop.call_soon_threadsafe(self.flowing.set)

    async def _serve(self) -> int:
        self.flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _close_all(self) -> None:
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        await self.flowing.wait()  # partitioned: the client's handshake waits, as on a dead route
        try:
            if self.target_host.startswith("/"):
                up_reader, up_writer = await asyncio.open_unix_connection(
                    f"{self.target_host}/.s.PGSQL.{self.target_port}"
                )
            else:
                up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()  # partitioned: held back, neither lost nor refused
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._pipes.discard(writer)
            writer.transport.abort()
