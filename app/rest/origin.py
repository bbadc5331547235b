"""The scheme and host clients reach this server by, for the absolute links a door answers."""

from __future__ import annotations

import re

from starlette.requests import Request

from app.auth.addresses import ClientAddresses

# A host name, IPv4 or bracketed IPv6 address, with an optional port: nothing else is put in a link.
FORWARDED_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)


def public_origin(request: Request, addresses: ClientAddresses) -> str:
    """The request's own scheme and host (and root path); from a trusted proxy, those its
    ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` name, as a TLS proxy's clients reach it
    (``https``, the public name). From anyone else the headers are ignored, as for
    ``X-Forwarded-For``. Where a header holds a list, the entry the nearest proxy added (the last)
    counts; a value that is not a scheme or a host is ignored."""
    url = request.base_url
    client = request.client
    if addresses.is_trusted_proxy(client.host if client else None):
        scheme = _last(request.headers.get("x-forwarded-proto")).lower()
        host = _last(request.headers.get("x-forwarded-host"))
        if scheme in ("http", "https"):
            url = url.replace(scheme=scheme)
        if FORWARDED_HOST.fullmatch(host):
            url = url.replace(netloc=host)
    return str(url).rstrip("/")


def _last(value: str | None) -> str:
    return value.rsplit(",", 1)[-1].strip() if value else ""
