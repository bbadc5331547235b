"""Who an anonymous caller is: its address, never kept raw.

The address is the connection's peer, or, when the peer is a configured proxy, the right-most
``X-Forwarded-For`` entry that no configured proxy added: entries to its left were written by the
client and prove nothing. It is only ever kept as a pseudonym, a keyed hash that changes every UTC
day: rate limits and the access log can tell one client from another without storing or logging
its address. An IPv6 client is its /64 network, as it is given it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PSEUDONYM_HEX = 16
IPV6_CLIENT_PREFIX = 64
MAX_FORWARDED_ENTRIES = 32
# Pseudonyms remembered for the day, so a busy client costs one keyed hash a day, not one a
# request; bounded, the memory of a flood of addresses is cleared rather than grown.
MAX_REMEMBERED = 65_536
DAY_SECONDS = 86_400
_SCOPE_KEY = "searchstats.client"


class ClientAddresses:
    def __init__(self, *, trusted_proxies: Sequence[str], secret: str) -> None:
        self._proxies = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        self._secret = secret.encode()
        self._day = -1
        self._day_key = b""
        self._pseudonyms: dict[str, str] = {}

    def address(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """The client's address as this server can know it; ``unknown`` without a peer."""
        if peer is None:
            return "unknown"
        if not self._proxies or not self._is_proxy(peer):
            return peer
        hops = [_host_of(hop.strip()) for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops[-MAX_FORWARDED_ENTRIES:]):
            if hop and not self._is_proxy(hop):
                return hop[:64]
        return hops[0][:64] if hops and hops[0] else peer

    def pseudonym(self, address: str) -> str:
        """A keyed hash of the client: stable for a UTC day, meaningless without the secret."""
        key = self._key_of_today()
        known = self._pseudonyms.get(address)
        if known is None:
            if len(self._pseudonyms) >= MAX_REMEMBERED:
                self._pseudonyms.clear()
            digest = hmac.digest(key, _client_of(address).encode(), "sha256")
            known = self._pseudonyms[address] = digest.hex()[:PSEUDONYM_HEX]
        return known

    def of_scope(self, scope: Any) -> str:
        """The pseudonym of an ASGI request's (or websocket's) client, worked out once."""
        known = scope.get(_SCOPE_KEY)
        if known is None:
            client = scope.get("client")
            forwarded = [
                value.decode("latin-1")
                for name, value in scope.get("headers", ())
                if name == b"x-forwarded-for"
            ]
            known = scope[_SCOPE_KEY] = self.pseudonym(
                self.address(client[0] if client else None, forwarded)
            )
        pseudonym: str = known
        return pseudonym

    def is_trusted_proxy(self, peer: str | None) -> bool:
        """Whether the connection comes from a proxy listed in ``SEARCHSTATS_TRUSTED_PROXIES``,
        whose ``X-Forwarded-*`` headers are then believed."""
        return peer is not None and bool(self._proxies) and self._is_proxy(peer)

    def _is_proxy(self, text: str) -> bool:
        return _within(text, self._proxies)

    def _key_of_today(self) -> bytes:
        day = int(time.time() // DAY_SECONDS)
        if day != self._day:
            date = datetime.fromtimestamp(day * DAY_SECONDS, UTC).date().isoformat()
            salt = b"client-address:" + date.encode()
            self._day_key = hmac.new(self._secret, salt, hashlib.sha256).digest()
            self._day = day
            self._pseudonyms.clear()  # yesterday's pseudonyms are not today's
        return self._day_key


def _host_of(hop: str) -> str:
    """A forwarded entry without the port some proxies add (Azure's ``203.0.113.7:51234``,
    ``[2001:db8::1]:443``): with it, each connection of one client would be a client, and a
    rate budget, of its own, and a proxy of ours writing it would not be known as one."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    host, colon, port = hop.partition(":")
    if colon and port.isdigit():  # one colon: a host and its port (IPv6 has two or more)
        return host
    return hop


def _client_of(address: str) -> str:
    """What one client is: an IPv4 address (also seen as IPv4-mapped IPv6), or an IPv6 address's
    /64 network, which a host or a subscriber is given whole: counted by address, it would have
    2^64 of them, each a new rate budget."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return address


@functools.lru_cache(maxsize=4096)
def _within(text: str, networks: tuple[Network, ...]) -> bool:
    """Whether the address is in one of the networks (remembered: ipaddress is slow to parse)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
