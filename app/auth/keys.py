"""API keys: made at random, looked up by digest, kept encrypted for JWT verification."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from app.errors import BadParams
from app.settings import Settings

API_KEY = re.compile(r"^[0-9a-f]{40}$")
SECRET_FILE = "searchstats.secret"


def new_api_key() -> str:
    """40 lowercase hex characters, as Doofinder's keys look."""
    return secrets.token_hex(20)


def key_digest(api_key: str) -> str:
    # Keys are 160 random bits: a plain SHA-256 is enough to make the stored digest useless.
    return hashlib.sha256(api_key.encode()).hexdigest()


class KeyVault:
    """Encrypts API keys under the service's secret key, so a database dump reveals none."""

    def __init__(self, secret: str) -> None:
        derived = hashlib.sha256(b"searchstats-api-keys:" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, api_key: str) -> str:
        return self._fernet.encrypt(api_key.encode()).decode()

    def open(self, ciphertext: str) -> str | None:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            return None


def secret_key_path(settings: Settings) -> Path:
    """SEARCHSTATS_SECRET_KEY_FILE; by default searchstats.secret beside the SQLite database, so
    that a command run from another folder finds it (for PostgreSQL, in the working directory)."""
    if settings.secret_key_file:
        return Path(settings.secret_key_file).absolute()
    database = settings.sqlite_file
    return ((database.parent if database is not None else Path()) / SECRET_FILE).absolute()


def read_secret(settings: Settings) -> str | None:
    """The configured secret key, or the one kept in the secret key file; None when neither is
    there. A file that holds no usable key is refused, never taken for the empty secret."""
    if settings.secret_key:
        return settings.secret_key
    path = secret_key_path(settings)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _file_problem("cannot read", path, error) from None
    try:
        secret = raw.decode().strip()
    except UnicodeDecodeError:
        raise BadParams(f"the secret key file {path} is not UTF-8 text: restore it") from None
    if not secret:
        raise BadParams(f"the secret key file {path} is empty: restore it, or remove it")
    return secret


def create_secret(settings: Settings) -> str:
    """A new random secret key, kept in the secret key file (mode 0600); or, when another
    process made that file first (nodes starting together), the key in it.

    The file appears whole or not at all: written under a temporary name, then linked to its
    own, which fails if it exists. Opened with ``O_EXCL`` and written in place, it was there
    empty for a moment, and a node reading it then was refused ("the secret key file is empty").
    """
    path = secret_key_path(settings)
    secret = secrets.token_urlsafe(48)
    try:
        fd, draft = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise _file_problem("cannot create", path, error) from None
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp's file is the owner's alone (0600)
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(draft, path)
    except FileExistsError:
        theirs = read_secret(settings)  # its key, or an error saying what is wrong with it
        if theirs is None:
            raise BadParams(f"the secret key file {path} was removed as it was made") from None
        return theirs
    except OSError as error:
        raise _file_problem("cannot create", path, error) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(draft)
    return secret


def resolve_secret(settings: Settings) -> str:
    """The secret key, made on first use. The command line makes it only for a database that
    holds no API key yet (``app.services.accounts.service_vault``)."""
    return read_secret(settings) or create_secret(settings)


def _file_problem(what: str, path: Path, error: OSError) -> BadParams:
    reason = error.strerror or str(error)
    return BadParams(f"{what} the secret key file {path} (SEARCHSTATS_SECRET_KEY_FILE): {reason}")
