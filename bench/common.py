"""What the benchmarks share: fresh databases, real server processes, wrk, the results page."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE_MD = ROOT / "docs" / "performance.md"
POSTGRES_ADMIN = os.environ.get("SEARCHSTATS_BENCH_POSTGRES", "postgres@127.0.0.1:5432")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A new, empty database URL of the backend; dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="searchstats-bench-") as folder:
            yield f"sqlite+aiosqlite:///{folder}/bench.db"
        return
    name = f"searchstats_bench_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://{POSTGRES_ADMIN}/{name}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _psql(statement: str) -> None:
    user, _, hostport = POSTGRES_ADMIN.partition("@")
    host, _, port = hostport.partition(":")
    subprocess.run(
        ["psql", "-h", host, "-p", port or "5432", "-U", user, "-d", "postgres", "-qc", statement],
        check=True,
        capture_output=True,
    )


@dataclass
class Server:
    url: str
    api_key: str
    hashid: str
    process: subprocess.Popen[str]


@contextmanager
def searchstats_server(
    database_url: str,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    api_key: str | None = None,
) -> Iterator[Server]:
    """``searchstats serve`` as a real process; stopped (SIGTERM, then SIGKILL) on exit.

    On an empty database it creates the ``default`` account and prints its key, which is read
    here; for a database that has accounts already, pass the ``api_key`` to use.
    """
    port = free_port()
    environment = {
        **os.environ,
        "SEARCHSTATS_DATABASE_URL": database_url,
        "SEARCHSTATS_SECRET_KEY": "bench-secret",
        "SEARCHSTATS_READ_RATE_LIMIT": "1000000/second",
        "SEARCHSTATS_WRITE_RATE_LIMIT": "1000000/second",
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=tempfile.mkdtemp(prefix="searchstats-serve-"),
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        key, hashid = (api_key, "") if api_key else _read_bootstrap(process)
        # Keep reading the server's output: a full pipe would block its logging, and so it.
        threading.Thread(target=_drain, args=(process,), daemon=True).start()
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url)
        yield Server(url=url, api_key=key, hashid=hashid, process=process)
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for _line in process.stdout:
        pass


def _read_bootstrap(process: subprocess.Popen[str]) -> tuple[str, str]:
    assert process.stdout is not None
    key = hashid = ""
    deadline = time.monotonic() + 60
    while not (key and hashid) and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if match := re.search(r"api key:\s*([0-9a-f]{40})", line):
            key = match[1]
        if match := re.search(r"hashid:\s*([0-9a-f]{32})", line):
            hashid = match[1]
    if not (key and hashid):
        raise RuntimeError("searchstats serve did not print its bootstrap key and hashid")
    return key, hashid


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: int


def wrk_post(
    url: str, body: str, headers: dict[str, str], *, seconds: int, connections: int
) -> WrkResult:
    """Drive POSTs at ``url`` with wrk (one thread: the other core serves).

    wrk gives up on a request after 2 s by default and leaves it out of the latencies: a
    100-event batch under 64 connections can take longer, so the timeout here is 30 s.
    """
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    lua = "\n".join(
        [
            'wrk.method = "POST"',
            f"wrk.body = [[{body}]]",
            *(f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()),
        ]
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    output = subprocess.run(
        [
            *("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s"),
            *("--latency", "-s", script.name, url),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 90,
    ).stdout
    os.unlink(script.name)
    return _parse_wrk(output)


def _parse_wrk(output: str) -> WrkResult:
    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match[2]]
        return float(match[1]) * scale

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests_per_second=float(rps[1]) if rps else 0.0,
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(total[1]) if total else 0,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def write_section(name: str, markdown: str) -> None:
    """Replace one generated section of docs/performance.md, leaving the rest alone."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    text = PERFORMANCE_MD.read_text() if PERFORMANCE_MD.exists() else "# Performance\n"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    PERFORMANCE_MD.write_text(text)
