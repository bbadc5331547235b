"""SIGTERM under load: in-flight requests finish, the write batch is flushed, nothing acknowledged
is lost, new connections are refused, and the process exits 0 within a bound."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import orjson
import pytest

from tests.e2e.faults import RECORD_EVENTS, IngestLoad, batch_events, outcome, stored_event_ids
from tests.e2e.servers import ServeProcess, searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
EXIT_WITHIN_SECONDS = 15
HELD_IDS = tuple(f"held-{n}" for n in range(10))


def start_held_request(served: ServeProcess, key: str) -> tuple[socket.socket, bytes]:
    """A request whose headers and half its body have arrived: in flight at the SIGTERM."""
    body = orjson.dumps({"query": RECORD_EVENTS, "variables": {"input": batch_events(HELD_IDS)}})
    head = (
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Token {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    held = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    held.sendall(head + body[: len(body) // 2])
    return held, body[len(body) // 2 :]


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def read_status(held: socket.socket) -> int:
    received = b""
    while b"\r\n" not in received:
        chunk = held.recv(65536)
        if not chunk:
            break
        received += chunk
    return int(received.split(b" ", 2)[1])


def test_sigterm_under_load_finishes_in_flight_work(
    backend: str, empty_database_url: str, tmp_path: Path
) -> None:
    env = {"SEARCHSTATS_DATABASE_URL": empty_database_url, "SEARCHSTATS_SECRET_KEY": "term"}
    with searchstats_serve(env, tmp_path) as served:
        bootstrap = served.bootstrap()
        assert bootstrap is not None, served.output()
        key = bootstrap[0]
        with IngestLoad(served.base_url, key, clients=12, size=10) as load:
            load.wait_acknowledged(1000)
            held, rest = start_held_request(served, key)
            with held:
                time.sleep(0.5)  # for the server to read the headers: a request, not a bare socket
                served.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                while not refuses_connections(served.port):
                    assert time.monotonic() - signalled < 5, "still accepting connections"
                    time.sleep(0.02)
                assert served.process.poll() is None, "it must wait for the request in flight"
                held.sendall(rest)
                held_status = read_status(held)
            exit_code = served.process.wait(timeout=EXIT_WITHIN_SECONDS)
            exited_after = time.monotonic() - signalled
        batches = load.batches

    assert held_status == 200
    assert exit_code == 0, served.output()[-2000:]
    stored = stored_event_ids(empty_database_url)
    seen = outcome(batches, stored)
    print(
        seen.line(f"SIGTERM ({backend})")
        + f"; the request in flight at the signal: {held_status}"
        + f"; exited {exit_code} after {exited_after:.2f} s"
    )
    assert all(event_id in stored for event_id in HELD_IDS)
    assert (seen.lost, seen.partial_batches, seen.duplicates) == (0, 0, 0)
    assert exited_after < EXIT_WITHIN_SECONDS
