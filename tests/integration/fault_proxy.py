"""A seeded, bounded fault-injecting HTTP proxy on 127.0.0.1, in front of a local FHIR server.

Per request it may answer 429 with Retry-After, answer 500, respond slowly, drop the connection
before answering, or cut a response body short; otherwise it forwards the request and rewrites
the upstream origin in the answer (so next links keep going through the proxy). With
`--drop-next-link TYPE` it removes next links from searches of TYPE, playing a server that
truncates silently.

It runs as its own process (`FaultProxy` starts it and stops it by PID), so its event loop never
shares an interpreter with the test run. On SIGTERM it writes what it injected to `--stats`.
`ProxyProcess`, `read_request`, `write_response` and `serve` are shared with the EHR emulator
(`ehr_emulator.py`), which runs the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

FAULTS = ("429", "500", "slow", "drop", "cut")
FORWARDED_HEADERS = ("accept", "content-type", "prefer")
TESTS = Path(__file__).resolve().parent.parent
Request = tuple[str, str, dict[str, str], bytes]


class ProxyProcess:
    """Test-side handle of a proxy script: starts its process, exposes `origin`, reads the
    counts it wrote when stopped (by PID)."""

    module = "integration.fault_proxy"  # run with `python -m` from the tests folder

    def __init__(self, upstream: str, work_dir: Path, **settings: Any) -> None:
        self.upstream = upstream
        self.stats_path = work_dir / f"proxy-stats-{os.getpid()}-{id(self)}.json"
        self.settings = settings
        self.counts: Counter[str] = Counter()
        self.origin = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ProxyProcess:
        flags = [f"--{name.replace('_', '-')}={value}" for name, value in self.settings.items()]
        command = [sys.executable, "-m", self.module, self.upstream, f"--stats={self.stats_path}"]
        self._process = subprocess.Popen(
            [*command, *flags], stdout=subprocess.PIPE, text=True, cwd=TESTS
        )
        assert self._process.stdout is not None
        self.origin = self._process.stdout.readline().strip()
        if not self.origin.startswith("http://127.0.0.1:"):
            self._process.kill()
            raise RuntimeError(f"{self.module} did not start: {self.origin!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGTERM)
        self._process.wait(timeout=10)
        self.counts = Counter(json.loads(self.stats_path.read_text()))

    def base_url(self, upstream_base: str) -> str:
        """The upstream FHIR base URL as seen through this proxy."""
        return upstream_base.replace(self.upstream, self.origin)


class FaultProxy(ProxyProcess):
    """The fault proxy; `injected` counts the faults it injected."""

    @property
    def injected(self) -> Counter[str]:
        return self.counts


class _Proxy:
    def __init__(self, args: argparse.Namespace) -> None:
        self.upstream = args.upstream.rstrip("/")
        self.rng = random.Random(args.seed)
        self.fault_rate = args.fault_rate
        self.max_faults = args.max_faults
        self.slow_seconds = args.slow_seconds
        self.drop_next_link = args.drop_next_link
        self.injected: Counter[str] = Counter()
        self.client = httpx.AsyncClient(timeout=60)
        self.origin = ""

    def choose_fault(self) -> str | None:
        if sum(self.injected.values()) >= self.max_faults or self.rng.random() >= self.fault_rate:
            return None
        fault = self.rng.choice(FAULTS)
        self.injected[fault] += 1
        return fault

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await read_request(reader):
                if not await self.answer(request, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a client that went away, or the proxy shutting down
        finally:
            writer.close()

    async def answer(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        fault = self.choose_fault()
        if fault == "drop":
            return False
        if fault == "429":
            write_response(writer, 429, b"", {"Retry-After": "1"})
            return True
        if fault == "500":
            write_response(writer, 500, b'{"resourceType":"OperationOutcome","issue":[]}', {})
            return True
        if fault == "slow":
            await asyncio.sleep(self.rng.uniform(0, self.slow_seconds))
        status, content, content_type = await self.forward(*request)
        headers = {"Content-Type": content_type}
        write_response(writer, status, content, headers, cut=fault == "cut")
        await writer.drain()
        return fault != "cut"

    async def forward(self, method: str, target: str, headers: dict[str, str], body: bytes):
        passed = {k: v for k, v in headers.items() if k in FORWARDED_HEADERS}
        response = await self.client.request(
            method, f"{self.upstream}{target}", headers=passed, content=body
        )
        content = response.content.replace(self.upstream.encode(), self.origin.encode())
        if self.drop_next_link and f"/{self.drop_next_link}" in target.split("?")[0]:
            content = _without_next_link(content)
        return response.status_code, content, response.headers.get("content-type", "")


def _without_next_link(content: bytes) -> bytes:
    body = orjson.loads(content)
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        body["link"] = [link for link in body.get("link", []) if link.get("relation") != "next"]
    return orjson.dumps(body)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return method, target, headers, body


def write_response(
    writer: asyncio.StreamWriter,
    status: int,
    content: bytes,
    headers: dict[str, str],
    cut: bool = False,
) -> None:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if value]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    writer.write(content[: len(content) // 2] if cut else content)


async def serve(proxy: Any, stats: Path) -> None:
    """Serve `proxy.serve` on a free loopback port until SIGTERM, then write `proxy.injected`
    (its counts) to `stats`. The origin is printed first, for `ProxyProcess`."""
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    proxy.origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    print(proxy.origin, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    stats.write_text(json.dumps(proxy.injected))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", help="origin of the real server, e.g. http://127.0.0.1:8090")
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--max-faults", type=int, default=100)
    parser.add_argument("--slow-seconds", type=float, default=0.5)
    parser.add_argument("--drop-next-link", default="")
    arguments = parser.parse_args()
    asyncio.run(serve(_Proxy(arguments), arguments.stats))
