"""The ids events are known by outside the service: their row numbers, encrypted.

Row numbers are counted across every account. Handed out as they are, the gap between two of an
account's ids would tell how many events all the other accounts recorded in between. An event's
id is instead its row number as one AES block under a key derived from the service's secret key:
a permutation, so ids stay unique (an event keeps its one id, a duplicate answers with the id of
the event it repeats), and without the key neither their order nor their gaps tell anything. Every
node that shares the secret key gives an event the same id.

One block costs about half a microsecond; the REST doors, which return no id, never pay it.
"""

from __future__ import annotations

import hashlib
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes


def event_id_key(secret: str) -> bytes:
    """The AES-128 key of the ids, derived from the secret key (and of no use for anything else)."""
    return hashlib.sha256(b"searchstats-event-ids:" + secret.encode()).digest()[:16]


class EventIds:
    def __init__(self, secret: str) -> None:
        self._key = event_id_key(secret)
        # A cipher context is not to be shared between threads; the event loop's thread is the
        # only caller in a server, the command line's or a test's may be another.
        self._contexts = threading.local()

    def of(self, row: int) -> str:
        """The id of the event stored as row ``row``: 32 lowercase hex digits."""
        return self._encryptor().update(row.to_bytes(16, "big")).hex()

    def _encryptor(self) -> CipherContext:
        encryptor: CipherContext | None = getattr(self._contexts, "encryptor", None)
        if encryptor is None:
            # ECB is sound here: each id is one block, and no two rows share a plaintext.
            encryptor = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()
            self._contexts.encryptor = encryptor
        return encryptor
