"""What the User-Agent tells about a client: its device class and whether it is a robot.

Only these two facts are kept; the raw User-Agent string is never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import counter_robots
import ua_parser

from app.domain.events import Device

MOBILE_OS = frozenset({"iOS", "iPadOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS"})
MAX_USER_AGENT = 1024


@dataclass(frozen=True, slots=True)
class ClientTraits:
    device: Device
    is_bot: bool


UNKNOWN_CLIENT = ClientTraits(device=Device.UNKNOWN, is_bot=False)


def client_traits(user_agent: str | None) -> ClientTraits:
    if not user_agent:
        return UNKNOWN_CLIENT
    return _traits(user_agent[:MAX_USER_AGENT])


@lru_cache(maxsize=4096)
def _traits(user_agent: str) -> ClientTraits:
    # COUNTER's robot list is the reference for crawlers in usage statistics. Its "machine"
    # list (curl, HTTP libraries) is not used: sites often record events from their servers.
    is_bot = bool(counter_robots.is_robot(user_agent))
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
