"""Event ids: row numbers encrypted under the secret key, so they tell nothing of other accounts."""

from __future__ import annotations

import itertools
import re
from concurrent.futures import ThreadPoolExecutor

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.domain.event_ids import EventIds, event_id_key

HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def _row_of(event_id: str, secret: str) -> int:
    decryptor = Cipher(algorithms.AES(event_id_key(secret)), modes.ECB()).decryptor()
    block = decryptor.update(bytes.fromhex(event_id))
    assert block[:8] == bytes(8)
    return int.from_bytes(block, "big")


def test_an_id_is_its_row_encrypted_under_the_secret_key() -> None:
    ids = EventIds("secret")
    for row in (1, 2, 41, 2**31, 2**63 - 1):
        event_id = ids.of(row)
        assert HEX_ID.match(event_id)
        assert _row_of(event_id, "secret") == row


def test_ids_are_unique_and_their_order_and_gaps_follow_no_row_order() -> None:
    ids = EventIds("secret")
    rows = range(1, 20_001)
    values = [int(ids.of(row), 16) for row in rows]

    assert len(set(values)) == len(values)
    rises = sum(b > a for a, b in itertools.pairwise(values))
    assert 0.45 < rises / (len(values) - 1) < 0.55  # as random: no hint of which came first
    gaps = {b - a for a, b in itertools.pairwise(values)}
    assert len(gaps) == len(values) - 1  # no constant step between consecutive rows


def test_every_node_with_the_secret_gives_the_same_id_and_another_secret_another() -> None:
    assert EventIds("secret").of(7) == EventIds("secret").of(7)
    assert EventIds("secret").of(7) != EventIds("other secret").of(7)


def test_threads_get_the_same_ids_as_one_thread() -> None:
    ids = EventIds("secret")
    expected = [ids.of(row) for row in range(2_000)]

    def all_ids(_: int) -> list[str]:
        return [ids.of(row) for row in range(2_000)]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(all_ids, range(8))) == [expected] * 8
