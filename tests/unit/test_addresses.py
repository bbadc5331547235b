"""Which address a client has, as the server can know it, and its pseudonym."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from app.auth import addresses
from app.auth.addresses import ClientAddresses

PROXIES = ClientAddresses(trusted_proxies=["10.0.0.0/8", "2001:db8::/32"], secret="s")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", [], "203.0.113.9"),
        # From a peer that is no configured proxy, the header proves nothing.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("10.1.1.1", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.1.1", [], "10.1.1.1"),
        # The right-most entry no proxy of ours wrote: what the client wrote before it is ignored.
        ("10.1.1.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        ("10.1.1.1", ["6.6.6.6, 198.51.100.1, 10.2.2.2"], "198.51.100.1"),
        ("10.1.1.1", ["6.6.6.6", "198.51.100.1, 10.2.2.2"], "198.51.100.1"),  # repeated headers
        ("10.1.1.1", ["10.3.3.3, 10.2.2.2"], "10.3.3.3"),  # only proxies: the farthest
        ("10.1.1.1", ["garbage, 198.51.100.1"], "198.51.100.1"),
        ("10.1.1.1", ["198.51.100.1, not-an-address"], "not-an-address"),  # as our proxy wrote it
        ("2001:db8::1", ["2001:db9::5"], "2001:db9::5"),
        ("::ffff:10.1.1.1", ["198.51.100.7"], "198.51.100.7"),  # an IPv4 proxy over IPv6
        (None, ["198.51.100.1"], "unknown"),
        # The port some proxies add is not part of the client: each connection has its own.
        ("10.1.1.1", ["198.51.100.1:51234"], "198.51.100.1"),
        ("10.1.1.1", ["[2001:db9::5]:443"], "2001:db9::5"),
        ("10.1.1.1", ["[2001:db9::5]"], "2001:db9::5"),
        ("10.1.1.1", ["198.51.100.1:51234, 10.2.2.2:8080"], "198.51.100.1"),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], client: str) -> None:
    assert PROXIES.address(peer, forwarded) == client


def test_without_configured_proxies_the_peer_is_the_client() -> None:
    plain = ClientAddresses(trusted_proxies=[], secret="s")
    assert plain.address("10.1.1.1", ["198.51.100.1"]) == "10.1.1.1"


def test_a_flood_of_forwarded_entries_is_bounded() -> None:
    hops = ", ".join(["10.0.0.1"] * 10_000)
    assert PROXIES.address("10.1.1.1", [hops]) == "10.0.0.1"


def test_pseudonyms_are_keyed_stable_for_a_day_and_change_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one, other = (
        ClientAddresses(trusted_proxies=[], secret="a"),
        ClientAddresses(trusted_proxies=[], secret="b"),
    )
    today = one.pseudonym("203.0.113.9")
    assert today == one.pseudonym("203.0.113.9")
    assert today != one.pseudonym("203.0.113.10")
    assert today != other.pseudonym("203.0.113.9")  # useless without the secret
    assert len(today) == 16

    tomorrow = time.time() + 86_400
    monkeypatch.setattr(addresses, "time", SimpleNamespace(time=lambda: tomorrow))
    assert one.pseudonym("203.0.113.9") != today
    assert one.pseudonym("203.0.113.9") == one.pseudonym("203.0.113.9")


def test_the_pseudonym_of_a_request_is_worked_out_once() -> None:
    scope = {"client": ("10.1.1.1", 5), "headers": [(b"x-forwarded-for", b"198.51.100.1")]}
    first = PROXIES.of_scope(scope)
    assert first == PROXIES.pseudonym("198.51.100.1")
    scope["headers"] = []
    assert PROXIES.of_scope(scope) == first


def test_an_ipv6_client_is_its_64_network_and_a_mapped_ipv4_its_ipv4_address() -> None:
    plain = ClientAddresses(trusted_proxies=[], secret="s")
    assert plain.pseudonym("2001:db8:1:2::10") == plain.pseudonym("2001:db8:1:2:ffff:1:2:3")
    assert plain.pseudonym("2001:db8:1:2::10") != plain.pseudonym("2001:db8:1:3::10")
    assert plain.pseudonym("::ffff:203.0.113.7") == plain.pseudonym("203.0.113.7")
    assert plain.pseudonym("203.0.113.7") != plain.pseudonym("203.0.113.8")
    assert plain.pseudonym("unknown") != plain.pseudonym("not-an-address")
