"""A lightweight HTTP/1.1 load generator on asyncio streams: one process, no thread per client.

Requests are pre-encoded bytes sent over a pool of keep-alive connections (a new one whenever
none is idle, at most ``size`` at once). A connection reset or an unanswered request counts as
a connection error (status -1), never silently as a retry. Two shapes of load:

- `closed_loop`: N clients, each sending its next request when the last one is answered;
- `open_loop`: Poisson arrivals at a fixed rate, whatever the server's answers.

Run as a process (what `cmal bench` does, so the generator competes with the server for the
CPU as little as possible, and its own CPU use can be reported)::

    python -m cmal.bench.loadgen JOB.json   # prints the result as one JSON line

JOB is ``{"port", "requests": FILE of JSON lines {"path", "body"}, "mode": "closed"|"open",
"clients" | "rate", "seconds", "warmup_s", "seed"}``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Outcome:
    """One request's fate: HTTP status (-1: connection error) and timings in seconds."""

    status: int
    latency: float  # from arrival, waiting for a free connection included
    retry_after: bool = False
    finished: float = 0.0
    wire: float = 0.0  # from writing the request on a connection: what the server is answerable for


@dataclass
class Stats:
    """The outcomes of one load phase."""

    outcomes: list[Outcome] = field(default_factory=list)

    def summary(self, seconds: float) -> dict[str, Any]:
        """Counts by status, throughput of 200s over ``seconds``, and latency percentiles (ms)."""
        ok = [o.latency for o in self.outcomes if o.status == 200]
        wire = [o.wire for o in self.outcomes if o.status == 200]
        codes = Counter(str(o.status) for o in self.outcomes)

        def ms(values: list[float], q: float) -> float:
            return round(1000 * float(np.percentile(values, q)), 2) if values else 0.0

        return {
            "requests": len(self.outcomes),
            "status": dict(codes),
            "throughput_ok_per_s": round(len(ok) / seconds, 2),
            "p50_ms": ms(ok, 50),
            "p95_ms": ms(ok, 95),
            "p99_ms": ms(ok, 99),
            "p50_wire_ms": ms(wire, 50),
            "p99_wire_ms": ms(wire, 99),
        }


def request_bytes(path: str, body: dict[str, Any]) -> bytes:
    """A complete HTTP/1.1 POST of ``body`` as JSON to ``path`` on 127.0.0.1."""
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    return head + data


class Pool:
    """Keep-alive connections to one server, at most ``size`` at once (a fleet of clients with
    connection pools); a request takes an idle one, opens a new one, or waits for one to free."""

    # like any well-behaved client, give up idle connections well before the server would close
    # them (its keep-alive is 75 s): reusing one the server is closing loses the request
    IDLE_EXPIRY_S = 30.0

    def __init__(self, port: int, size: int):
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.slots = asyncio.Semaphore(size)

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.perf_counter() - since < self.IDLE_EXPIRY_S and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def send(self, raw: bytes) -> Outcome:
        """Send one pre-encoded request and read its whole answer."""
        start = time.perf_counter()  # arrival: waiting for a free connection counts as latency
        async with self.slots:
            return await self._send(raw, start)

    async def _send(self, raw: bytes, start: float) -> Outcome:
        sent = time.perf_counter()
        writer = None
        try:
            reader, writer = await self._connection()
            writer.write(raw)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("server closed the connection without answering")
            status = int(status_line.split()[1])
            length, retry_after, close = 0, False, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "retry-after":
                    retry_after = True
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
            if close:
                writer.close()
            else:
                self.idle.append((reader, writer, time.perf_counter()))
            now = time.perf_counter()
            return Outcome(status, now - start, retry_after, now, now - sent)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            if writer is not None:
                writer.close()
            now = time.perf_counter()
            return Outcome(-1, now - start, finished=now, wire=now - sent)

    def close(self) -> None:
        """Close every idle connection."""
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def closed_loop(pool: Pool, requests: list[bytes], clients: int, seconds: float) -> Stats:
    """``clients`` clients, each sending its next request as soon as the last is answered."""
    stats = Stats()
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def client() -> None:
        while time.perf_counter() < stop:
            stats.outcomes.append(await pool.send(requests[next(counter) % len(requests)]))

    await asyncio.gather(*(client() for _ in range(clients)))
    return stats


async def open_loop(pool: Pool, requests: list[bytes], rate: float, seconds: float, seed: int) -> Stats:
    """Poisson arrivals at ``rate`` per second for ``seconds``; waits for every answer."""
    stats = Stats()
    rng = np.random.default_rng(seed)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    next_at, i = start, 0

    async def one(raw: bytes) -> None:
        stats.outcomes.append(await pool.send(raw))

    while next_at < start + seconds:
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(requests[i % len(requests)])))
        i += 1
        next_at += float(rng.exponential(1.0 / rate))
    await asyncio.gather(*tasks)
    return stats


def read_requests(path: Path) -> list[bytes]:
    """Pre-encoded requests from a file of JSON lines ``{"path": ..., "body": {...}}``."""
    out = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        out.append(request_bytes(item["path"], item["body"]))
    return out


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One load phase as described by ``job`` (see the module docstring), warm-up first."""
    requests = read_requests(Path(job["requests"]))
    mode, seconds, warmup = job["mode"], float(job["seconds"]), float(job.get("warmup_s", 0))
    clients = int(job.get("clients", 1))
    pool = Pool(job["port"], int(job.get("connections", max(clients, 64))))
    try:
        if mode == "closed":
            if warmup:
                await closed_loop(pool, requests, clients, warmup)
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            began = time.perf_counter()
            stats = await closed_loop(pool, requests, clients, seconds)
        elif mode == "open":
            rate = float(job["rate"])
            if warmup:
                await open_loop(pool, requests, rate, warmup, seed=int(job.get("seed", 0)) + 1)
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            began = time.perf_counter()
            stats = await open_loop(pool, requests, rate, seconds, seed=int(job.get("seed", 0)))
        else:
            raise ValueError(f"unknown mode {mode!r}: closed or open")
        elapsed = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        pool.close()
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    # a closed loop's last answers arrive after `seconds`: throughput is over the real span
    return {**stats.summary(elapsed), "seconds": round(elapsed, 3), "loadgen_cpu": round(used / elapsed, 3)}


def main() -> None:
    """``python -m cmal.bench.loadgen JOB.json``: run the job, print its result as JSON."""
    job = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(asyncio.run(run_job(job))))


if __name__ == "__main__":
    main()
