"""Who an anonymous caller is: its address, never kept raw.

The address is the connection's peer, or, when the peer is a configured proxy, the right-most
``X-Forwarded-For`` entry that no configured proxy added: entries to its left were written by the
client and prove nothing. It is only ever kept as a pseudonym, a keyed hash that changes every UTC
day: rate limits and the access log can tell one client from another without storing or logging
its address.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PSEUDONYM_HEX = 16
MAX_FORWARDED_ENTRIES = 32
_SCOPE_KEY = "searchstats.client"


class ClientAddresses:
    def __init__(self, *, trusted_proxies: Sequence[str], secret: str) -> None:
        self._proxies = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        self._secret = secret.encode()
        self._day = ""
        self._day_key = b""

    def address(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """The client's address as this server can know it; ``unknown`` without a peer."""
        if peer is None:
            return "unknown"
        if not self._proxies or not self._is_proxy(peer):
            return peer
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops[-MAX_FORWARDED_ENTRIES:]):
            if hop and not self._is_proxy(hop):
                return hop[:64]
        return hops[0][:64] if hops and hops[0] else peer

    def pseudonym(self, address: str) -> str:
        """A keyed hash of the address: stable for a UTC day, meaningless without the secret."""
        digest = hmac.digest(self._key_of_today(), address.encode(), "sha256")
        return digest.hex()[:PSEUDONYM_HEX]

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

    def _is_proxy(self, text: str) -> bool:
        return _within(text, self._proxies)

    def _key_of_today(self) -> bytes:
        day = datetime.now(UTC).date().isoformat()
        if day != self._day:
            salt = b"client-address:" + day.encode()
            self._day_key = hmac.new(self._secret, salt, hashlib.sha256).digest()
            self._day = day
        return self._day_key


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
