"""What the User-Agent tells about a client: its device class and whether it is a robot.

Only these two facts are kept; the raw User-Agent string is never stored.

Sites often record events from their own servers, with an API key, through an HTTP library
(python-requests, axios, curl, ...). COUNTER lists those libraries as robots, which they are when
they reach an anonymous door (a scraper posting DSpace's statistics); but with a credential the
library is the site's own integration, speaking for a user it does not name: its events count,
from an unknown device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files

import counter_robots
import ua_parser

from app.domain.events import Device

MOBILE_OS = frozenset({"iOS", "iPadOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS"})
MAX_USER_AGENT = 1024
# HTTP client libraries that COUNTER's "machine" list (curl, wget, python-requests, Go, PHP, ...)
# leaves out, by the product token they send.
HTTP_LIBRARIES = re.compile(
    r"^(?:axios|okhttp|node-fetch|undici|got|Apache-HttpClient|Java|Faraday|GuzzleHttp|Guzzle"
    r"|aiohttp|Dart|RestSharp|reqwest|Ktor|http\.rb|Typhoeus|libwww-perl|Jetty|Dalvik)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ClientTraits:
    device: Device
    is_bot: bool


UNKNOWN_CLIENT = ClientTraits(device=Device.UNKNOWN, is_bot=False)


def client_traits(user_agent: str | None, *, with_credential: bool = False) -> ClientTraits:
    """``with_credential``: the request proved an account (see the module's docstring)."""
    if not user_agent:
        return UNKNOWN_CLIENT
    user_agent = user_agent[:MAX_USER_AGENT]
    traits = _traits(user_agent)
    if traits.is_bot and with_credential and is_http_library(user_agent):
        return UNKNOWN_CLIENT
    return traits


@lru_cache(maxsize=1024)
def is_http_library(user_agent: str) -> bool:
    return bool(_counter_list("machine.txt").search(user_agent) or HTTP_LIBRARIES.match(user_agent))


@lru_cache(maxsize=4096)
def _traits(user_agent: str) -> ClientTraits:
    # COUNTER's robot list is the reference for crawlers in usage statistics.
    is_bot = bool(_counter_list("robot.txt").search(user_agent))
    parsed = ua_parser.parse(user_agent)
    device_family = parsed.device.family if parsed.device else "Other"
    os_family = parsed.os.family if parsed.os else "Other"
    if device_family == "Spider":
        is_bot = True
    if os_family in MOBILE_OS or "Mobile" in user_agent:
        return ClientTraits(device=Device.MOBILE, is_bot=is_bot)
    if parsed.user_agent is None or parsed.user_agent.family == "Other":
        return ClientTraits(device=Device.UNKNOWN, is_bot=is_bot)
    return ClientTraits(device=Device.DESKTOP, is_bot=is_bot)


@cache
def _counter_list(name: str) -> re.Pattern[str]:
    """One of COUNTER's lists (``robot.txt``, ``machine.txt``), as ``counter_robots`` compiles it
    (one pattern a line), but read as UTF-8. The package reads its files in the locale's encoding,
    and its robot list is not ASCII: under an ASCII locale without Python's UTF-8 mode, every
    event failed to record."""
    text = (files(counter_robots) / "data" / name).read_text(encoding="utf-8")
    return re.compile("|".join(text.splitlines()))
