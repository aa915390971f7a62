"""Start and stop a SEKMET FHIR server on 127.0.0.1 for integration tests and benchmarks.

Installs SEKMET into `.fhir-server/venv` from the pinned lock file when missing, writes a settings
file (loopback only, simulator off, base_url matching the port), waits for `/metadata` and stops
the server by its PID. If the server dies while starting, its log is printed.

Run as a script, it serves a folder of transaction Bundles until stopped (Ctrl-C or SIGTERM), for
trying the CLI, cron or systemd by hand:

    .venv/bin/python tests/fhir_server.py fixtures/salvage2004 --port 8090
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVER_DIR = ROOT / ".fhir-server"
LOCK_FILE = ROOT / "tests" / "integration" / "sekmet-requirements.lock"
START_TIMEOUT = 60.0


def ensure_installed(server_dir: Path = SERVER_DIR) -> Path:
    """The `sekmet` executable, installing the pinned set into its own venv if missing."""
    executable = server_dir / "venv" / "bin" / "sekmet"
    if executable.exists():
        return executable
    venv = server_dir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(LOCK_FILE)], check=True)
    return executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SekmetServer:
    """One SEKMET process; `db_path` ":memory:" gives an empty store per start."""

    def __init__(self, work_dir: Path, db_path: str = ":memory:", port: int | None = None) -> None:
        self.work_dir = work_dir
        self.db_path = db_path
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self.log_path = work_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SekmetServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        executable = ensure_installed()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        settings = self._write_settings()
        command = [
            str(executable), "serve", "--config", str(settings),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir
            )
        (self.work_dir / "server.pid").write_text(str(self.process.pid))
        self._wait_until_ready()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _write_settings(self) -> Path:
        # JSON is valid YAML, so no YAML writer is needed.
        settings = {
            "base_url": self.base_url,
            "host": "127.0.0.1",
            "port": self.port,
            "db_path": self.db_path,
            "data_dir": str(self.work_dir / "data"),
            "simulator": {"enabled": False},
            "log_inbound": False,
        }
        path = self.work_dir / "settings.yaml"
        path.write_text(json.dumps(settings, indent=2))
        return path

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"SEKMET exited while starting; its log:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.base_url}/metadata", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"SEKMET did not answer /metadata in {START_TIMEOUT} s:\n{self.log_text()}"
        )


def post_transaction(base_url: str, bundle: dict[str, Any], client: httpx.Client) -> None:
    """Load one transaction Bundle; a rolled-back transaction fails loudly."""
    response = client.post(
        base_url,
        content=json.dumps(bundle),
        headers={"Content-Type": "application/fhir+json"},
        timeout=300,
    )
    if response.status_code != 200:
        raise RuntimeError(
            f"transaction failed: HTTP {response.status_code}: {response.text[:500]}"
        )


def load_bundles(base_url: str, folder: Path) -> None:
    """Post every `*.json` transaction Bundle of `folder`, in name order."""
    bundles = sorted(folder.glob("*.json"))
    if not bundles:
        raise RuntimeError(f"no bundles in {folder}")
    with httpx.Client() as client:
        for path in bundles:
            post_transaction(base_url, json.loads(path.read_bytes()), client)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve FHIR transaction Bundles with SEKMET.")
    parser.add_argument("folder", type=Path, help="folder of transaction Bundles to load")
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--work-dir", type=Path, default=SERVER_DIR / "serve")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through the `with` below
    with SekmetServer(args.work_dir, port=args.port) as server:
        load_bundles(server.base_url, args.folder)
        print(server.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
