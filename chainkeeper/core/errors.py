"""The one exception hierarchy of Chainkeeper.

Every error a user can meet is a ``ChainkeeperError``: it carries a message that says
what is wrong (with the value) and what to do next, an HTTP status for the API and an
exit code for the CLI. The shells translate these; they never invent their own.

    ChainkeeperError                      500 / exit 1
    ├── ConfigError                       500 / exit 2   bad setting, unknown key, bad URL
    ├── StoreError                        503 / exit 3   database unreachable or refusing
    │   ├── SchemaError                   503 / exit 3   schema older/newer than the code
    │   ├── DiskFull                      507 / exit 3   no space left for the store or the artefacts
    │   └── StorageDenied                 503 / exit 3   not allowed to write there (permissions, read-only)
    ├── ArtifactError                     500 / exit 4
    │   └── ArtifactCorrupted             500 / exit 4   content does not match its hash
    ├── InvalidInput                      422 / exit 2   malformed file, missing column, bad value
    │   └── OutboundRefused               422 / exit 2   a URL whose address the outbound policy refuses
    ├── NotFound                          404 / exit 2
    ├── Conflict                          409 / exit 2   state does not allow the action
    ├── Unauthenticated                   401 / exit 5
    ├── Forbidden                         403 / exit 5
    ├── RateLimited                       429 / exit 5   too many attempts or requests
    ├── JobCancelled                      409 / exit 1   raised inside a job whose cancel was asked
    └── ServiceUnavailable                503 / exit 3   port in use, model not ready

An error is ``transient`` when doing the same again later may succeed (a full disk, a
locked or unreachable database): a job that fails with one is retried with back-off
(``core.worker``), the API adds ``Retry-After``. Any other error fails a job at once.
"""

from __future__ import annotations

__all__ = [
    "ChainkeeperError",
    "ConfigError",
    "StoreError",
    "SchemaError",
    "DiskFull",
    "StorageDenied",
    "ArtifactError",
    "ArtifactCorrupted",
    "InvalidInput",
    "OutboundRefused",
    "NotFound",
    "Conflict",
    "Unauthenticated",
    "Forbidden",
    "RateLimited",
    "JobCancelled",
    "ServiceUnavailable",
]


class ChainkeeperError(Exception):
    """Base class: a message a person can act on, plus how each shell reports it."""

    status: int = 500
    exit_code: int = 1
    title: str = "Internal error"
    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None, transient: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if transient is not None:
            self.transient = transient

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(ChainkeeperError):
    status, exit_code, title = 500, 2, "Configuration error"


class StoreError(ChainkeeperError):
    status, exit_code, title = 503, 3, "Metadata store unavailable"


class SchemaError(StoreError):
    title = "Database schema out of date"


class DiskFull(StoreError):
    """No space left on the disk holding the metadata store or the artefacts (ENOSPC, a quota)."""

    status, title, transient = 507, "Disk full", True


class StorageDenied(StoreError):
    """This process may not write where the store or the artefacts live (EACCES, EPERM, EROFS)."""

    title, transient = "Permission denied", False


class ArtifactError(ChainkeeperError):
    status, exit_code, title = 500, 4, "Artefact store error"


class ArtifactCorrupted(ArtifactError):
    title = "Artefact corrupted"


class InvalidInput(ChainkeeperError):
    status, exit_code, title = 422, 2, "Invalid input"


class OutboundRefused(InvalidInput):
    """An outbound request (crawl, webhook) to an address the policy refuses (issue 15 item 6)."""

    title = "Outbound request refused"


class NotFound(ChainkeeperError):
    status, exit_code, title = 404, 2, "Not found"


class Conflict(ChainkeeperError):
    status, exit_code, title = 409, 2, "Conflict"


class Unauthenticated(ChainkeeperError):
    status, exit_code, title = 401, 5, "Authentication required"


class Forbidden(ChainkeeperError):
    status, exit_code, title = 403, 5, "Forbidden"


class RateLimited(ChainkeeperError):
    status, exit_code, title = 429, 5, "Too many requests"

    def __init__(self, message: str, *, hint: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, hint=hint)
        # Seconds until a try may succeed; the API answers it as Retry-After (issue 15 item 5).
        self.retry_after_s = retry_after_s


class JobCancelled(ChainkeeperError):
    status, exit_code, title = 409, 1, "Job cancelled"


class ServiceUnavailable(ChainkeeperError):
    status, exit_code, title = 503, 3, "Service unavailable"
