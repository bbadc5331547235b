"""API keys: made at random, looked up by digest, kept encrypted for JWT verification."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from app.errors import BadParams
from app.settings import Settings

API_KEY = re.compile(r"^[0-9a-f]{40}$")


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


def resolve_secret(settings: Settings) -> str:
    """The configured secret key, or one kept in a private file beside the embedded database."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.secret_key_file)
    try:
        if path.exists():
            return path.read_text().strip()
    except OSError as error:
        raise _file_problem("cannot read", path, error) from None
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
    except OSError as error:
        raise _file_problem("cannot create", path, error) from None
    return secret


def _file_problem(what: str, path: Path, error: OSError) -> BadParams:
    reason = error.strerror or str(error)
    return BadParams(f"{what} the secret key file {path} (SEARCHSTATS_SECRET_KEY_FILE): {reason}")
