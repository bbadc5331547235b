"""The examples in frontend_examples/ run against a real server, as a newcomer would run them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import ROOT, ServeProcess, searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
EXAMPLES = ROOT / "frontend_examples"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str]]:
    folder = tmp_path_factory.mktemp("examples")
    env = {
        "SEARCHSTATS_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'examples.db'}",
        "SEARCHSTATS_SECRET_KEY": "examples",
        "SEARCHSTATS_BROKER_URL": "",
    }
    with searchstats_serve(env, folder, name="examples") as served:
        bootstrap = served.bootstrap()
        assert bootstrap is not None, served.output()
        yield served, bootstrap[0]


def run(command: list[str], service: tuple[ServeProcess, str]) -> str:
    served, key = service
    result = subprocess.run(
        command,
        env={
            "PATH": "/usr/bin:/bin",
            "SEARCHSTATS_API_KEY": key,
            "SEARCHSTATS_URL": served.base_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_graphql_client_example(service: tuple[ServeProcess, str]) -> None:
    output = run([sys.executable, str(EXAMPLES / "graphql_client.py")], service)
    assert "recorded search" in output
    assert '"searches": {"totalCount": ' in output  # a liveStats message after the new search
    assert '"query": "live example"' in output  # the eventRecorded message


def test_rest_client_example(service: tuple[ServeProcess, str]) -> None:
    output = run([sys.executable, str(EXAMPLES / "rest_client.py")], service)
    assert "DSpace searchevents: 201" in output
    assert "Doofinder visit: 200 {'status': 'registered'}" in output
    assert "Workplace click: 200" in output


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples(service: tuple[ServeProcess, str]) -> None:
    output = run(["sh", str(EXAMPLES / "rest_examples.sh")], service)
    assert output.count("201\n") == 2
    assert '{"status":"registered"}' in output
    assert "200\n" in output  # the Workplace click
    # The day's clicks, read last (other examples may have clicked on this server too): curl
    # with the key is the site's integration, not a robot.
    clicks = json.loads(output.rstrip().splitlines()[-1])
    assert clicks["total"] == 1
    assert clicks["total_count"] >= 1


def test_examples_name_only_local_files() -> None:
    page = (EXAMPLES / "dashboard" / "static" / "index.html").read_text()
    assert "http://" not in page
    assert "https://" not in page
    assert Path(EXAMPLES / "dashboard" / "static" / "dashboard.js").stat().st_size > 10_000
