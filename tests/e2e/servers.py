"""Real ``searchstats serve`` processes on loopback ports, always terminated."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
KEY_LINE = re.compile(r"api key: ([0-9a-f]{40})")
HASHID_LINE = re.compile(r"hashid:\s+([0-9a-f]{32})")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def bootstrap(self) -> tuple[str, str] | None:
        """The key and hashid printed on a first start, if it printed them."""
        text = self.output()
        key, hashid = KEY_LINE.search(text), HASHID_LINE.search(text)
        return (key[1], hashid[1]) if key and hashid else None


@contextmanager
def searchstats_serve(
    env: Mapping[str, str],
    workdir: Path,
    *,
    name: str = "serve",
    ready_within: float = 60,
    workers: int = 1,
    wrapper: Sequence[str] = (),
    ready_path: str = "/readyz",
) -> Iterator[ServeProcess]:
    """``searchstats serve`` on a free port, ready (``/readyz``, or ``ready_path`` answering 200)
    before the block runs; ``wrapper``, a command that runs it (``setpriv …``), exec'ing it."""
    served = _start(env, workdir, name=name, workers=workers, wrapper=wrapper)
    try:
        _wait_ready(served, ready_within, ready_path)
        yield served
    finally:
        _terminate(served.process)


@contextmanager
def searchstats_serve_together(
    env: Mapping[str, str], workdir: Path, *, count: int, ready_within: float = 60
) -> Iterator[list[ServeProcess]]:
    """``count`` ``searchstats serve`` processes started at once (nodes of one deployment
    starting together), each ready before the block runs."""
    started: list[ServeProcess] = []
    try:
        for n in range(count):
            started.append(_start(env, workdir, name=f"node{n}", workers=1, wrapper=()))
        for served in started:
            _wait_ready(served, ready_within, "/readyz")
        yield started
    finally:
        for served in started:
            _terminate(served.process)


def _start(
    env: Mapping[str, str], workdir: Path, *, name: str, workers: int, wrapper: Sequence[str]
) -> ServeProcess:
    port = free_port()
    log = workdir / f"{name}-{port}.log"
    environment = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *wrapper,
                *(sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"),
                *("--port", str(port), "--workers", str(workers)),
            ],
            cwd=workdir,
            env={**environment, "PYTHONPATH": str(ROOT)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return ServeProcess(process, port, log)


def _wait_ready(served: ServeProcess, within: float, path: str) -> None:
    deadline = time.monotonic() + within
    with httpx.Client(base_url=served.base_url, trust_env=False, timeout=2) as http:
        while time.monotonic() < deadline:
            if served.process.poll() is not None:
                raise RuntimeError(f"searchstats serve exited:\n{served.output()}")
            try:
                if http.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"searchstats serve not ready after {within} s:\n{served.output()}")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
