"""One error hierarchy: every error carries a code from the contract's vocabulary."""

from __future__ import annotations

from collections.abc import Sequence


class SearchStatsError(Exception):
    """An error a client may see: a stable code, an HTTP status and a public message."""

    code = "internal_error"
    status = 500
    default_message = "Internal error"

    def __init__(self, message: str | None = None, *, details: Sequence[str] = ()) -> None:
        self.message = message or self.default_message
        # Each problem found, so that a dialect that lists errors can list them all.
        self.details: tuple[str, ...] = tuple(details) or (self.message,)
        super().__init__(self.message)


class BadParams(SearchStatsError):
    code, status, default_message = "bad_params", 400, "Bad parameters error"

    @classmethod
    def of(cls, problems: Sequence[str]) -> BadParams:
        return cls("; ".join(problems), details=problems)


class NotAuthenticated(SearchStatsError):
    code, status, default_message = "not_authenticated", 401, "Authentication required"


class AccessDenied(SearchStatsError):
    code, status, default_message = "access_denied", 403, "Access denied"


class NotFound(SearchStatsError):
    code, status, default_message = "not_found", 404, "Not found"


class MethodNotAllowed(SearchStatsError):
    """A method the path does not answer: an invalid request, answered 405 over HTTP."""

    code, status, default_message = "bad_params", 405, "Method not allowed"


class Timeout(SearchStatsError):
    code, status, default_message = "timeout", 408, "Request timed out"


class PayloadTooLarge(SearchStatsError):
    code, status, default_message = "payload_too_large", 413, "Payload too large"


class _RetryLater(SearchStatsError):
    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyRequests(_RetryLater):
    code, status, default_message = "too_many_requests", 429, "Too many requests"


class Unavailable(_RetryLater):
    code, status, default_message = "unavailable", 503, "Service unavailable, retry later"


def retry_after(error: SearchStatsError) -> int | None:
    """Seconds a client should wait before retrying, for the errors that say so."""
    return error.retry_after if isinstance(error, _RetryLater) else None
