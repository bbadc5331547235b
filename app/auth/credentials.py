"""Turn an ``Authorization`` header into the account it proves, or refuse with a 401."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import jwt

from app.auth.keys import KeyVault, key_digest
from app.auth.principal import Principal
from app.domain.tenancy import ACCOUNT_NAME
from app.errors import NotAuthenticated
from app.single_flight import SingleFlight
from app.storage import directory
from app.storage.database import Database
from app.storage.outages import unavailable_when_down

MAX_JWT_LIFETIME = 7 * 24 * 3600
# Clocks of the clients that sign tokens and of this server differ: a token issued "now" by a
# clock a few seconds ahead must not be refused as issued in the future. The skew is granted to
# ``iat`` and ``nbf`` only: a token expires at its ``exp``, on every door (``Principal.expired``).
JWT_CLOCK_SKEW_SECONDS = 60
MAX_HEADER = 4096
CACHE_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Cached:
    value: Any
    expires: float


class Authenticator:
    """Verifies credentials against the database, remembering answers for a few seconds."""

    def __init__(
        self,
        database: Database,
        vault: KeyVault,
        *,
        cache_seconds: float,
        lookup_seconds: float | None = None,
    ) -> None:
        self._database = database
        self._vault = vault
        self._ttl = cache_seconds
        self._cache: dict[str, _Cached] = {}
        # ``lookup_seconds``: the longest a request waits for a lookup (then 503).
        self._lookups: SingleFlight[Any] = SingleFlight(within=lookup_seconds)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or len(authorization) > MAX_HEADER:
            raise NotAuthenticated()
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if not credential:
            raise NotAuthenticated()
        scheme = scheme.lower()
        if scheme == "token" or (scheme == "bearer" and credential.count(".") != 2):
            return await self._by_api_key(credential)
        if scheme == "bearer":
            return await self._by_jwt(credential)
        raise NotAuthenticated()

    async def _by_api_key(self, api_key: str) -> Principal:
        digest = key_digest(api_key)
        cached = self._recall("key:" + digest)
        if cached is None:
            cached = await self._looked_up_once("key:" + digest, self._account_of_key, digest)
        if cached is None:
            raise NotAuthenticated("Invalid API key")
        principal: Principal = cached
        return principal

    async def _account_of_key(self, digest: str) -> Principal | None:
        async with unavailable_when_down(), self._database.sessions() as session:
            account = await directory.account_by_key_digest(session, digest)
        return None if account is None else Principal(account.id, account.name)

    async def _looked_up_once(
        self, key: str, look_up: Callable[[str], Awaitable[Any]], argument: str
    ) -> Any:
        """``look_up(argument)``, remembered under ``key``; concurrent callers share one lookup.

        Remembered from when the database was asked, not from when it answered: a key revoked
        while a slow answer was on its way (or while later callers joined the lookup) is
        refused one memory after its revocation at the latest, as documented.
        """
        value, asked = await self._lookups.run(key, _asked_at, look_up, argument)
        self._remember(key, value, asked)
        return value

    async def _by_jwt(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            name = claims.get("name")
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            raise NotAuthenticated("Malformed token") from None
        if not isinstance(name, str) or not name:
            raise NotAuthenticated("The token must carry a name claim")
        if not ACCOUNT_NAME.fullmatch(name):
            # No account is called so; not looked up (a NUL, a lone surrogate: neither database
            # could even take it as a parameter).
            raise NotAuthenticated("Invalid or expired token")
        principal, keys = await self._account_keys(name)
        for key in keys:
            expires = _verify(token, key, name)
            if expires is not None:
                verified = replace(principal, expires_at=expires)
                if verified.expired:  # the rule of every door, GraphQL's and websockets' too
                    break
                return verified
        raise NotAuthenticated("Invalid or expired token")

    async def _account_keys(self, name: str) -> tuple[Principal, list[str]]:
        cached = self._recall("account:" + name)
        if cached is None:
            cached = await self._looked_up_once("account:" + name, self._keys_of_account, name)
        if cached is None:
            raise NotAuthenticated("Invalid or expired token")
        found: tuple[Principal, list[str]] = cached
        return found

    async def _keys_of_account(self, name: str) -> tuple[Principal, list[str]] | None:
        async with unavailable_when_down(), self._database.sessions() as session:
            account = await directory.account_by_name(session, name)
            sealed = [] if account is None else await directory.key_ciphertexts(session, account.id)
        keys = [key for key in map(self._vault.open, sealed) if key]
        return None if account is None else (Principal(account.id, account.name), keys)

    def _recall(self, key: str) -> Any:
        entry = self._cache.get(key)
        if entry is None or entry.expires < time.monotonic():
            return None
        return entry.value

    def _remember(self, key: str, value: Any, asked: float) -> None:
        if self._ttl <= 0 or value is None:
            return
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = _Cached(value, asked + self._ttl)


async def _asked_at(look_up: Callable[[str], Awaitable[Any]], argument: str) -> tuple[Any, float]:
    """``look_up(argument)``'s answer, and when it was asked for."""
    asked = time.monotonic()
    return await look_up(argument), asked


def _verify(token: str, key: str, name: str) -> float | None:
    """HS256 with the key; ``iat``, ``exp``, ``name`` required; ``exp - iat`` under a week.

    The token's expiry when it is valid, else None. ``iat`` and ``nbf`` are checked within
    ``JWT_CLOCK_SKEW_SECONDS``; ``exp`` is left to the caller, which checks it with no leeway
    (PyJWT would grant the skew to ``exp`` too: a minute of life after expiry). Claims the vendor
    does not define (``aud``, ``iss``, ``sub``, ``jti``, a client's own) are the client's
    business and do not make a token invalid, whatever their type.
    """
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            leeway=JWT_CLOCK_SKEW_SECONDS,
            options={
                "require": ["iat", "exp", "name"],
                "verify_aud": False,
                "verify_exp": False,
                # PyJWT refuses a ``sub`` or ``jti`` that is not a string: a client's own.
                "verify_sub": False,
                "verify_jti": False,
            },
        )
        issued, expires = claims["iat"], claims["exp"]
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in (issued, expires)
        ):
            return None
        lifetime = float(expires) - float(issued)
        if claims["name"] == name and 0 < lifetime < MAX_JWT_LIFETIME:
            return float(expires)
        return None
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
        return None
