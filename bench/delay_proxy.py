"""A TCP proxy that delays every byte by a fixed time in each direction, like a network link.

    python bench/delay_proxy.py --upstream /path/.s.PGSQL.5432 --delay-ms 0.5
    python bench/delay_proxy.py --upstream 127.0.0.1:5432 --listen 127.0.0.1:6543

It prints "listening on HOST:PORT" once ready, then serves until killed. Each chunk read
from one side is written to the other `delay` seconds after it arrived; chunks of one
direction leave in arrival order, so the byte stream is unchanged. The upstream is a Unix
socket path (the embedded server listens on nothing else) or host:port.

The delay is a link latency, not a bandwidth limit: the proxy does not apply back-pressure,
which is fine for the small messages of a database benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import selectors
import socket
import sys
from collections import deque

PR_SET_TIMERSLACK = 29


class WakeUpLateness:
    """How late this process typically wakes up for a timer (tens of microseconds here).

    Left alone it would add to every delay; pipes wake up that much early instead, so a
    chunk typically leaves `delay` after it arrived. The estimate follows the median, not the
    mean: on a busy machine a few very late wake-ups would otherwise make every other chunk
    early. Late wake-ups beyond the median stay, as jitter does on a real network.
    """

    STEP = 1e-6  # seconds per observation: the estimate moves towards the median

    def __init__(self):
        self.estimate = 0.0

    def observe(self, seconds: float) -> None:
        self.estimate = max(self.estimate + (self.STEP if seconds > self.estimate else -self.STEP), 0.0)


class DelayedPipe:
    """One direction of a connection: chunks leave `delay` seconds after they arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, lateness: WakeUpLateness):
        self.loop = loop
        self.delay = delay
        self.lateness = lateness
        self.sink: asyncio.Transport | None = None
        self.pending: deque[tuple[float, bytes | None]] = deque()  # (due, chunk); None: close the sink
        self.timer: asyncio.TimerHandle | None = None

    def push(self, chunk: bytes | None) -> None:
        self.pending.append((self.loop.time() + self.delay, chunk))
        if self.timer is None:
            self._schedule()

    def _schedule(self) -> None:
        wake_at = max(self.pending[0][0] - self.lateness.estimate, self.loop.time())
        self.timer = self.loop.call_at(wake_at, self._deliver_due, wake_at)

    def _deliver_due(self, wake_at: float) -> None:
        # One timer per direction, always for the oldest chunk: order is preserved even when
        # two chunks are due at the same instant (the loop's timer heap does not keep ties in order).
        self.timer = None
        now = self.loop.time()
        self.lateness.observe(now - wake_at)
        while self.pending and self.pending[0][0] - self.lateness.estimate <= now:
            _, chunk = self.pending.popleft()
            if self.sink is None:
                continue  # the client left before the upstream connection existed
            if chunk is None:
                self.sink.close()
            elif not self.sink.is_closing():
                self.sink.write(chunk)
        if self.pending:
            self._schedule()


class Endpoint(asyncio.Protocol):
    """One socket of a proxied connection; what it receives goes into `outgoing`."""

    def __init__(self, outgoing: DelayedPipe):
        self.outgoing = outgoing
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.outgoing.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.outgoing.push(None)


class ClientEndpoint(Endpoint):
    """The accepted side: holds its bytes until the upstream connection exists."""

    def __init__(self, loop: asyncio.AbstractEventLoop, upstream: str, delay: float, lateness: WakeUpLateness):
        super().__init__(DelayedPipe(loop, delay, lateness))
        self.loop = loop
        self.upstream = upstream
        self.to_client = DelayedPipe(loop, delay, lateness)

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self.to_client.sink = transport
        transport.pause_reading()
        self.loop.create_task(self._connect_upstream())

    async def _connect_upstream(self) -> None:
        def server_side() -> Endpoint:
            return Endpoint(self.to_client)

        try:
            if self.upstream.startswith("/"):
                upstream, _ = await self.loop.create_unix_connection(server_side, self.upstream)
            else:
                host, port = self.upstream.rsplit(":", 1)
                upstream, _ = await self.loop.create_connection(server_side, host, int(port))
        except OSError as error:
            print(f"delay_proxy: cannot reach {self.upstream}: {error}", flush=True)
            self.transport.close()
            return
        self.outgoing.sink = upstream
        if self.transport.is_closing():
            upstream.close()
        else:
            self.transport.resume_reading()


async def serve(listen: str, upstream: str, delay: float) -> None:
    loop = asyncio.get_running_loop()
    lateness = WakeUpLateness()
    host, port = listen.rsplit(":", 1)
    server = await loop.create_server(
        lambda: ClientEndpoint(loop, upstream, delay, lateness), host, int(port), family=socket.AF_INET
    )
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="Unix socket path or host:port of the server")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on (port 0: any free port)")
    parser.add_argument("--delay-ms", type=float, default=0.5, help="one-way delay added in each direction")
    args = parser.parse_args()
    if sys.platform == "linux":
        # Linux lets a sleeping thread oversleep by its timer slack (50 us by default), in each
        # direction of every round trip; 1 ns asks for the wake-up as scheduled.
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    # The default epoll selector rounds every wait up to a whole millisecond, which would turn
    # a 0.5 ms delay into about 1 ms; select() waits with microsecond resolution.
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())) as runner:
        runner.run(serve(args.listen, args.upstream, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
