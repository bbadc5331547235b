"""What the benchmarks share: fresh databases, real server processes, wrk, the results page."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import statistics
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
    folder = Path(tempfile.mkdtemp(prefix="searchstats-serve-"))
    log = folder / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "app.cli", "serve"),
                *("--port", str(port), "--workers", str(workers)),
            ],
            cwd=folder,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    try:
        key, hashid = (api_key, "") if api_key else _read_bootstrap(process)
        # Keep reading the server's output: a full pipe would block its logging, and so it.
        threading.Thread(target=_drain, args=(process,), daemon=True).start()
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, log, workers)
        yield Server(url=url, api_key=key, hashid=hashid, process=process)
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


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


def _wait_ready(url: str, log: Path, workers: int) -> None:
    """Until the server answers ready and every worker has started (its log says so): wrk
    opens its connections at once, and a worker that starts after it gets none of them."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and log.read_text().count(_STARTED) >= workers:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready with {workers} worker(s)")


_STARTED = "Application startup complete."


@dataclass(frozen=True)
class CpuUse:
    """Cores kept busy on average while wrk ran, by whom: the server's processes (SQLite runs
    inside them), PostgreSQL's (every ``postgres`` process of the machine: its background
    writers too), and wrk itself."""

    server: float
    database: float
    load: float

    @property
    def total(self) -> float:
        return self.server + self.database + self.load


def mean_cpu(uses: list[CpuUse | None]) -> CpuUse | None:
    """The mean of several measurements, if every one was measured."""
    known = [use for use in uses if use is not None]
    if not uses or len(known) != len(uses):
        return None
    return CpuUse(
        server=statistics.fmean(u.server for u in known),
        database=statistics.fmean(u.database for u in known),
        load=statistics.fmean(u.load for u in known),
    )


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: int
    cpu: CpuUse | None = None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_HAS_PROC = Path("/proc/self/stat").exists()


def _processes() -> dict[int, tuple[int, str, float]]:
    """Every process of the machine: its parent, its name and the CPU seconds it has used
    (Linux's /proc; empty elsewhere)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:  # ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # After the name: state, ppid, ... utime and stime are the 12th and 13th.
        found[int(entry.parent.name)] = (
            int(fields[1]),
            name,
            (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS,
        )
    return found


def _cpu_seconds(server_pid: int) -> tuple[float, float]:
    """CPU seconds used so far by the server's process tree and by PostgreSQL's processes."""
    processes = _processes()
    tree = {server_pid}
    for _ in range(3):  # the server, its workers, their children
        tree |= {pid for pid, (parent, _, _) in processes.items() if parent in tree}
    server = sum(processes[pid][2] for pid in tree if pid in processes)
    database = sum(cpu for _, name, cpu in processes.values() if name == "postgres")
    return server, database


class CpuMeter:
    """Cores busy from its making to ``read``: the server's, PostgreSQL's, and those of the
    children this process waits for meanwhile (wrk)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.began = time.monotonic()
        self.server, self.database = _cpu_seconds(server_pid)
        self.load = _children_cpu_seconds()

    def read(self) -> CpuUse:
        elapsed = time.monotonic() - self.began
        server, database = _cpu_seconds(self.server_pid)
        return CpuUse(
            server=(server - self.server) / elapsed,
            database=(database - self.database) / elapsed,
            load=(_children_cpu_seconds() - self.load) / elapsed,
        )


def _children_cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def wrk_post(
    url: str,
    body: str,
    headers: dict[str, str],
    *,
    seconds: int,
    connections: int,
    server_pid: int | None = None,
) -> WrkResult:
    """Drive POSTs at ``url`` with wrk (one thread: the other core serves).

    wrk gives up on a request after 2 s by default and leaves it out of the latencies: a
    100-event batch under 64 connections can take longer, so the timeout here is 30 s.
    ``server_pid``: also how many cores the server, PostgreSQL and wrk kept busy meanwhile.
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
    meter = CpuMeter(server_pid) if server_pid is not None and _HAS_PROC else None
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
    result = _parse_wrk(output)
    if meter is not None:
        result.cpu = meter.read()
    return result


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
