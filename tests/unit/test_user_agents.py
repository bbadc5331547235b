"""What a User-Agent tells: robots by COUNTER's lists, in any locale."""

from __future__ import annotations

import os
import subprocess
import sys

import counter_robots
import pytest

from app.domain.user_agents import UNKNOWN_CLIENT, client_traits, is_http_library

AGENTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "\u7834\u89e3\u540e\u7684",  # a line of COUNTER's robot list that is not ASCII
    "Wget/1.21",
    "facebookexternalhit/1.1",
]


@pytest.mark.parametrize("agent", AGENTS)
def test_counter_lists_read_as_the_package_reads_them(agent: str) -> None:
    assert client_traits(agent).is_bot >= counter_robots.is_robot(agent)
    assert is_http_library(agent) >= counter_robots.is_machine(agent)


def test_an_http_library_with_a_credential_is_the_sites_own_integration() -> None:
    assert client_traits("curl/8.5.0").is_bot
    assert client_traits("curl/8.5.0", with_credential=True) == UNKNOWN_CLIENT


def test_robots_are_told_apart_under_an_ascii_locale_without_utf8_mode() -> None:
    """COUNTER's robot list is UTF-8; the package reads it in the locale's encoding."""
    script = (
        "from app.domain.user_agents import client_traits\n"
        f"print([client_traits(agent).is_bot for agent in {AGENTS!a}])\n"
    )
    environment = os.environ | {"PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "LC_ALL": "C"}
    shown = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, check=True
    )
    assert shown.stdout.decode().strip() == str([client_traits(a).is_bot for a in AGENTS])
