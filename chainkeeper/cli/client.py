"""Client mode: the CLI acting through a running server's API instead of opening the store.

When ``CHAINKEEPER_URL`` (setting ``url``) is set, each command that has a remote
counterpart sends one HTTP request (or a few) with the user's API token
(``CHAINKEEPER_TOKEN``) and renders the answer: ``--json`` prints the server's JSON as it
came, otherwise a table or a line like the local command's. The user needs a token, never
the database's credentials; the server's services decide, as for any API call.

``ROUTES`` maps a command's path (``("data", "versions")``) to its API route: the method,
the path (formatted from the command's parameters), the query or body built from them, and
how to render the answer. A command absent from it (``up``, ``init``, ``users reset-admin``
…) answers with a message that says it runs only on the host holding the store.
``install`` gives every command a callback that picks the mode when it runs.

Tokens never cross a network in clear: an ``http://`` URL is refused unless its host is
this machine (loopback) or ``--insecure`` / ``CHAINKEEPER_INSECURE=1`` says so.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

import typer
from typer._click.globals import get_current_context  # the click that Typer bundles

from chainkeeper import __version__
from chainkeeper.cli.state import console, new_table, parse_overrides, parse_spans, print_json, settings_of
from chainkeeper.core.errors import (
    ChainkeeperError,
    ConfigError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
)
from chainkeeper.governance.anchors import append_anchor, is_url

if TYPE_CHECKING:
    import httpx

Params = Mapping[str, Any]

# Commands that stay local in client mode: they read neither the store nor the server.
RUN_LOCALLY = {("config", "show"), ("roles", "actions")}

# Why a command has no remote counterpart (those not named get a generic reason).
LOCAL_ONLY = {
    ("init",): "it creates the store itself",
    ("up",): "it starts the server, the web UI and a worker on the host that holds the store",
    ("serve",): "it starts the server on the host that holds the store",
    ("worker",): "a worker claims jobs from the store directly",
    ("scheduler",): "the scheduler runs recurring jobs from the store directly",
    ("quickstart",): "it builds a sample store on this machine",
    ("users", "reset-admin"): "it recovers the admin through direct access to the store (host access is the "
    "proof of authority)",
    ("audit", "rotate-key"): "it adds a key to the ledger key file on the store's host (access to that file is "
    "the proof of authority)",
}


@dataclass(frozen=True)
class Remote:
    """Where the server is and the token to act with (never printed)."""

    url: str
    token: str
    timeout_s: float = 30.0

    def request(self, method: str, path: str, *, query: Params | None = None, body: Any = None,
                files: Any = None, data: Any = None) -> Any:
        """Send one request; answer its JSON (or text), or raise the matching ChainkeeperError.

        Raises:
            ServiceUnavailable: the server cannot be reached, or answered 5xx.
            Unauthenticated, Forbidden, NotFound, InvalidInput, Conflict, RateLimited: its 4xx answers.
        """
        import httpx  # only client mode pays for it

        headers = {"Authorization": f"Bearer {self.token}", "User-Agent": f"chainkeeper-cli/{__version__}"}
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        try:
            with httpx.Client(base_url=self.url, timeout=httpx.Timeout(self.timeout_s, connect=5.0)) as http:
                answer = http.request(method, path, params=params, json=body, files=files, data=data,
                                      headers=headers)
        except httpx.TimeoutException:
            raise ServiceUnavailable(f"The Chainkeeper server at {self.url} did not answer in time "
                                     f"({method} {path}).",
                                     hint="Try again; if it persists, check the server's load and log.") from None
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"Cannot reach the Chainkeeper server at {self.url}: {_reason(exc)}.",
                hint="Is it running ('chainkeeper up' on its host) and is CHAINKEEPER_URL right? To use a store "
                "on this machine instead, unset CHAINKEEPER_URL.") from None
        if answer.status_code >= 400:
            raise _error_of(answer, self.url)
        if answer.headers.get("content-type", "").startswith("application/json"):
            return answer.json()
        return answer.text


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return "connection refused" if "refused" in text.lower() else text


def _error_of(answer: httpx.Response, url: str) -> ChainkeeperError:
    """The error a refused request means, with the server's own message and hint."""
    try:
        problem = answer.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    detail = str(problem.get("detail") or answer.reason_phrase or "no detail")
    hint = problem.get("hint")
    status = answer.status_code
    if status == 401:
        return Unauthenticated(f"The server at {url} refused the token: {detail}",
                               hint="Set CHAINKEEPER_TOKEN (or --token) to a valid API token of that server; an admin "
                               "issues one with 'chainkeeper users token NAME'.")
    if status == 403:
        return Forbidden(detail, hint=hint or "Ask an admin for a role that allows it ('chainkeeper users grant').")
    if status == 404:
        if detail == "Not Found":  # the route itself is unknown: an older server
            return NotFound(f"The server at {url} has no route {answer.request.url.path}.",
                            hint="The server may run an older Chainkeeper; upgrade it, or run the command on its "
                            "host with CHAINKEEPER_URL unset.")
        return NotFound(detail, hint=hint)
    if status == 409:
        return Conflict(detail, hint=hint)
    if status == 429:
        return RateLimited(detail, hint=hint or "Wait a moment and try again.")
    if status < 500:
        return InvalidInput(detail, hint=hint or "Check the command's arguments ('--help').")
    return ServiceUnavailable(f"The server at {url} failed (HTTP {status}): {detail}",
                              hint=hint or "Its log says why; try again later.")


def check_url(url: str, *, insecure: bool) -> str:
    """URL without a trailing slash, refused when it would send a token in clear.

    Raises:
        ConfigError: not http(s), or http:// to a host other than this machine without ``insecure``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"CHAINKEEPER_URL {url!r} is not an http(s) address.",
                          hint="For example CHAINKEEPER_URL=https://chainkeeper.example.org")
    if parts.scheme == "http" and not insecure and not _loopback(parts.hostname):
        raise ConfigError(
            f"Refusing to send the API token in clear to {parts.hostname} over http://.",
            hint="Use an https:// address (a TLS proxy in front of the server), or, on a network you trust, "
            "pass --insecure or set CHAINKEEPER_INSECURE=1.")
    return url.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_of(ctx: typer.Context) -> Remote | None:
    """The server this invocation talks to, or None in local mode.

    Raises:
        ConfigError: a URL that is not http(s), or http:// off this machine (see ``check_url``).
        Unauthenticated: client mode without a token.
    """
    settings = settings_of(ctx)
    if not settings.url:
        return None
    url = check_url(settings.url, insecure=settings.insecure)
    if settings.token is None:
        raise Unauthenticated(f"Client mode (CHAINKEEPER_URL={url}) needs an API token.",
                              hint="Set CHAINKEEPER_TOKEN (or pass --token); an admin issues one with "
                              "'chainkeeper users token NAME'.")
    return Remote(url, settings.token.get_secret_value())


# --- rendering --------------------------------------------------------------------------------


Render = Callable[[Any, Params], None]
Cell = str | Callable[[dict[str, Any]], Any]


def _cell(row: dict[str, Any], spec: Cell) -> str:
    value = spec(row) if callable(spec) else _at(row, spec)
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":  # an ISO time: minutes suffice
        return value[:16].replace("T", " ")
    if isinstance(value, (list, dict)):
        return ", ".join(map(str, value)) if isinstance(value, list) else json.dumps(value, ensure_ascii=False)
    return str(value)


def _at(row: dict[str, Any], key: str) -> Any:
    """``row[key]``; a dotted key reads nested objects (``stats.rows``)."""
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def rows(*columns: tuple[str, Cell], items: str | None = None, empty: str = "Nothing yet.") -> Render:
    """A table of the answer's objects (or of ``answer[items]``), one column per (header, key)."""
    def render(answer: Any, params: Params) -> None:
        found = answer[items] if items else answer
        if not found:
            console.print(empty)
            return
        table = new_table(*(header for header, _ in columns))
        for row in found:
            table.add_row(*(_cell(row, spec) for _, spec in columns))
        console.print(table)
    return render


def fields(*keys: str) -> Render:
    """One object as a table of its fields (all of them, or KEYS first)."""
    def render(answer: Any, params: Params) -> None:
        if not isinstance(answer, dict):
            console.print(answer, markup=False, highlight=False)
            return
        table = new_table("field", "value")
        for key in [*keys, *(k for k in answer if k not in keys)]:
            if key in answer:
                table.add_row(key, _cell(answer, key))
        console.print(table)
    return render


def line(template: str) -> Render:
    """One line from the answer's fields (``{id}``, ``{state}`` …) and the command's (``{p[name]}``)."""
    def render(answer: Any, params: Params) -> None:
        console.print(template.format_map({**(answer if isinstance(answer, dict) else {}), "p": params}),
                      markup=False, highlight=False)
    return render


def text(answer: Any, params: Params) -> None:
    """A text answer (a model card, a RACI table, the ledger's lines) as it came."""
    console.print(answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False),
                  markup=False, highlight=False, end="" if isinstance(answer, str) else "\n")


def _checks(answer: dict[str, Any], params: Params) -> None:
    checks = ", ".join(f"{c['name']} {'ok' if c['passed'] else 'FAILED'}" for c in answer.get("checks", [])) or "none"
    console.print(f"approval request {answer['id']} for {answer['object_kind']} {answer['object_id']}: "
                  f"{answer['state']} (checks: {checks}); approve with 'chainkeeper approvals approve "
                  f"{answer['id']}'", markup=False)


def ledger_broken(verdict: Mapping[str, Any]) -> Conflict:
    """The error of a ledger that fails verification: where, why, and what to do (local and remote)."""
    where = (f"is broken at entry {verdict['first_bad_seq']}" if verdict.get("first_bad_seq") is not None
             else "fails verification")
    return Conflict(f"The audit ledger {where} ({verdict.get('reason')}): {verdict.get('problem')}.",
                    hint=verdict.get("hint") or f"{verdict.get('entries')} entries before it are intact; restore the "
                    "database from a backup and investigate who had write access.")


def ledger_intact(verdict: Mapping[str, Any]) -> str:
    """The line of a ledger that verifies (local and remote)."""
    anchored = (f"; matches {verdict['anchors']:,} anchor(s), the latest at entry {verdict['anchored_seq']:,}"
                if verdict.get("anchors") else "")
    return f"ledger intact: {verdict['entries']:,} entries, head {verdict['head']}{anchored}"


def _verdict(answer: dict[str, Any], params: Params) -> None:
    if not answer.get("ok"):  # as the local command: an error naming the first bad entry
        raise ledger_broken(answer)
    console.print(ledger_intact(answer), markup=False, highlight=False)


# The most anchors ``audit verify --anchor`` sends to a server: the file's last lines, the newest
# (the newest anchor alone vouches for every entry up to it; older ones narrow down where a rewrite
# began), about 260 KB, within the API's default body limit.
MAX_REMOTE_ANCHORS = 1_000


def _verify(remote: Remote, params: Params) -> Any:
    if params.get("anchor") is None:
        return remote.request("GET", "/api/audit/verify")
    path = Path(params["anchor"])
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"The anchor file {path} cannot be read: {exc}.",
                           hint="Give the file 'chainkeeper audit anchor --to FILE' wrote.") from None
    first = max(0, len(lines) - MAX_REMOTE_ANCHORS)
    return remote.request("POST", "/api/audit/verify", body={"anchors": lines[first:], "source": str(path),
                                                             "first_line": first + 1})


def _anchor(remote: Remote, params: Params) -> Any:
    if is_url(params["to"]):
        raise InvalidInput("In client mode, 'audit anchor --to' takes a file on this machine.",
                           hint="Give a file; to POST anchors to a URL, run the command on the server's host with "
                           "CHAINKEEPER_URL unset.")
    answer = remote.request("GET", "/api/audit/anchor")
    append_anchor(Path(params["to"]), answer)
    return answer


def _feedback_body(params: Params) -> dict[str, Any]:
    """A label, or a tagger's spans as ``--spans`` writes them (``monitor.parse_spans``)."""
    truth = ({"label": params["label"]} if params.get("spans") is None
             else {"spans": parse_spans(params["spans"])})
    return {"request_id": params["request_id"], **truth, "source": params.get("source")}


def _feedback(answer: dict[str, Any], params: Params) -> None:
    [f] = answer["results"]
    if f.get("spans") is not None:
        console.print(f"{f['status']}: {f['request_id']} has {len(f['spans'])} true entities — the model "
                      + ("found exactly those" if f["correct"] else "found others"), markup=False)
        return
    verdict = "right" if f["correct"] else f"wrong (predicted {f['predicted']})"
    console.print(f"{f['status']}: {f['request_id']} is {f['label']!r} — the model was {verdict}"
                  + (f"; was {f['previous_label']!r}" if f["status"] == "corrected" else ""), markup=False)


# --- what each command sends ------------------------------------------------------------------


Build = Callable[[Params], Any]


@dataclass(frozen=True)
class Route:
    """How one CLI command is answered by the API.

    ``path`` is formatted with the command's parameters (URL-quoted); ``query`` maps a
    query key to the parameter holding its value (None values are left out); ``body``
    builds the JSON body; ``render`` shows the answer without ``--json``.
    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    body: Build | None = None
    render: Render = fields()
    send: Callable[[Remote, Params], Any] | None = None  # a command needing more than one request

    def call(self, remote: Remote, params: Params) -> Any:
        if self.send is not None:
            return self.send(remote, params)
        path = self.path.format_map({k: quote(str(v), safe="") for k, v in params.items()})
        return remote.request(self.method, path, query={key: params.get(name) for key, name in self.query.items()},
                              body=self.body(params) if self.body else None)


def _get(path: str, render: Render = fields(), **query: str) -> Route:
    return Route("GET", path, query=query, render=render)


def _post(path: str, body: Build | None, render: Render) -> Route:
    return Route("POST", path, body=body or (lambda p: {}), render=render)


def _train_values(params: Params) -> dict[str, Any]:
    """``train start``'s config: the TOML file (read here, on the client) and the --set pairs."""
    if params.get("base_model"):
        raise InvalidInput("--base-model names a folder on this machine; over the API runs train on the "
                           "server's base model (its CHAINKEEPER_BASE_MODEL).",
                           hint="Leave out --base-model, or run the command on the server's host with "
                           "CHAINKEEPER_URL unset.")
    values: dict[str, Any] = {}
    if params.get("config_file"):
        try:
            values.update(tomllib.loads(Path(params["config_file"]).read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInput(f"Cannot read config file {params['config_file']}: {exc}.") from None
    values.update(parse_overrides(list(params.get("set_") or [])))
    return {"dataset_version_id": params["dataset_version"], "config": values, "allow_draft": params.get("allow_draft")}


def _request_path(params: Params) -> str:
    action, object_id = params["action"], params["object_id"]
    paths = {"dataset.release": f"/api/datasets/{object_id}/release-requests",
             "model.promote": f"/api/models/{object_id}/promotion-requests",
             "deployment.create": f"/api/models/{object_id}/deployment-requests"}
    if action not in paths:
        raise InvalidInput(f"Unknown gated action {action!r}.", hint=f"One of {', '.join(paths)}.")
    return paths[action]


def _approval_request(remote: Remote, params: Params) -> Any:
    body: dict[str, Any] = {"comment": params.get("comment") or ""}
    if params["action"] == "deployment.create":
        body["name"] = params.get("name")
    return remote.request("POST", _request_path(params), body=body)


def _upload(remote: Remote, params: Params) -> Any:
    path = Path(params["path"])
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file; over the API a source is one uploaded file.",
                           hint="Upload one file at a time, or import a folder on the server's host with "
                           "CHAINKEEPER_URL unset.")
    if params.get("metadata_column") or params.get("limit") is not None:
        raise InvalidInput("--metadata-column and --limit are not taken over the API.",
                           hint="Leave them out, or run the import on the server's host with CHAINKEEPER_URL unset.")
    form = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in
            {"format": params.get("format"), "text_column": params.get("text_column"),
             "label_column": params.get("label_column"), "no_label": params.get("no_label"),
             "split": params.get("split")}.items() if v is not None}
    with path.open("rb") as fh:
        return remote.request("POST", "/api/sources", files={"file": (path.name, fh)}, data=form)


_JOB_ROWS = rows(("id", "id"), ("kind", "kind"), ("state", "state"), ("progress", lambda j: f"{j['progress']:.0f}%"),
                 ("message", "message"), ("by", "created_by"), ("created (UTC)", "created_at"),
                 empty="No jobs yet.")
_APPROVAL_ROWS = rows(("id", "id"), ("action", "action"),
                      ("object", lambda a: f"{a['object_kind']} {a['object_id']}"), ("state", "state"),
                      ("requested by", "requested_by"), ("decided by", "decided_by"),
                      ("checks", lambda a: "pass" if all(c["passed"] for c in a["checks"]) else "FAIL"),
                      empty="No approval requests.")

ROUTES: dict[tuple[str, ...], Route] = {
    # data
    ("data", "import"): Route("POST", "/api/sources", send=_upload, render=line(
        "source {id}: {name} ({format}, {encoding}) — {rows_accepted} rows accepted, {rows_quarantined} "
        "quarantined; sha256 {sha256:.12}")),
    ("data", "sources"): _get("/api/sources", rows(
        ("id", "id"), ("name", "name"), ("format", "format"), ("encoding", "encoding"), ("accepted", "rows_accepted"),
        ("quarantined", "rows_quarantined"), ("by", "created_by"), ("imported (UTC)", "created_at"),
        empty="No sources yet."), limit="limit"),
    ("data", "source"): _get("/api/sources/{source_id}"),
    ("data", "versions"): _get("/api/datasets", rows(
        ("id", "id"), ("dataset", "name"), ("version", "version"), ("task", "task"), ("state", "state"),
        ("rows", "stats.rows"), ("sources", "source_ids"), ("owner", "owner"), ("created (UTC)", "created_at"),
        empty="No dataset versions yet."), name="name", limit="limit"),
    ("data", "show"): _get("/api/datasets/{version_id}", fields("id", "name", "version", "task", "state", "owner")),
    ("data", "diff"): _get("/api/datasets/{a}/diff/{b}", fields("a", "b", "counts")),
    ("data", "report"): _get("/api/datasets/{version_id}/report", fields("dataset", "rows", "removed", "leakage")),
    ("data", "create"): _post("/api/datasets", lambda p: {
        "name": p["name"], "source_ids": list(p["source"]), "seed": p["seed"], "task": p.get("task"),
        "recipe": list(p["step"]) if p.get("step") else None, "redact": not p.get("no_redact")},
        line("dataset {name} v{version} (id {id}): {state}, content {content_hash:.12}")),
    ("data", "release-request"): _post("/api/datasets/{version_id}/release-requests",
                                       lambda p: {"comment": p.get("comment") or ""}, _checks),
    # approvals
    ("approvals", "list"): _get("/api/approvals", _APPROVAL_ROWS, state="state"),
    ("approvals", "show"): _get("/api/approvals/{approval_id}"),
    ("approvals", "approve"): _post("/api/approvals/{approval_id}/decision",
                                    lambda p: {"approve": True, "comment": p["comment"]},
                                    line("request {id} {state} by {decided_by}")),
    ("approvals", "reject"): _post("/api/approvals/{approval_id}/decision",
                                   lambda p: {"approve": False, "comment": p["comment"]},
                                   line("request {id} {state} by {decided_by}")),
    ("approvals", "request"): Route("POST", "", send=_approval_request, render=_checks),
    # training
    ("train", "start"): _post("/api/runs", _train_values, line(
        "run {id} {state} (job {job_id}); follow it with 'chainkeeper train show {id}'")),
    ("train", "list"): _get("/api/runs", rows(
        ("id", "id"), ("state", "state"), ("dataset version", "dataset_version_id"),
        ("test accuracy", "metrics.test.accuracy"), ("test macro-F1", "metrics.test.macro_f1"),
        ("search", "search_job_id"), ("by", "created_by"), ("created (UTC)", "created_at"),
        empty="No training runs yet."), limit="limit", search_job_id="search"),
    ("train", "show"): _get("/api/runs/{run_id}", fields("id", "state", "task", "dataset_version_id", "created_by")),
    ("train", "cancel"): _post("/api/runs/{run_id}/cancel", None, line("run {id}: {state}")),
    ("train", "compare"): _get("/api/runs/{run_a}/compare/{run_b}"),
    ("train", "search", "show"): _get("/api/searches/{job_id}"),
    # registry
    ("models", "register"): _post("/api/models", lambda p: {"run_id": p["run_id"], "name": p["name"]}, line(
        "registered run {run_id} as {label} (model version {id}, {stage}); ask for its promotion with "
        "'chainkeeper approvals request model.promote {id}'")),
    ("models", "list"): _get("/api/models", rows(
        ("id", "id"), ("model", "label"), ("stage", "stage"), ("test macro-F1", "metrics.test.macro_f1"),
        ("created by", "created_by"), ("created (UTC)", "created_at"), empty="No model versions yet."),
        name="name", stage="stage"),
    ("models", "show"): _get("/api/models/{model_version_id}", fields("id", "label", "stage", "run_id")),
    ("models", "evaluations"): _get("/api/models/{model_version_id}/evaluations", rows(
        ("id", "id"), ("file", "file"), ("rows", "rows"), ("by", "evaluated_by"), ("at (UTC)", "evaluated_at"),
        empty="No evaluations yet.")),
    ("models", "card"): _get("/api/models/{model_version_id}/card", text),
    ("models", "production-at"): _get("/api/models/production-at", name="name", when="when"),
    ("models", "gates", "show"): _get("/api/models/{model_version_id}/gates"),
    # deployments
    ("deploy", "list"): _get("/api/deployments", rows(
        ("name", "name"), ("state", "state"), ("mode", "live.mode"), ("primary", "live.primary.label"),
        ("candidate", "live.candidate.label"), ("owner", "owner"), ("updated (UTC)", "updated_at"),
        empty="No deployments yet."), limit="limit"),
    ("deploy", "show"): _get("/api/deployments/{name}", fields("id", "name", "state", "owner", "live")),
    ("deploy", "status"): _get("/api/deployments/{name}/rollout"),
    ("deploy", "promote"): _post("/api/deployments/{name}/promote", None, fields()),
    ("deploy", "rollback"): _post("/api/deployments/{name}/rollback", lambda p: {"comment": p.get("comment") or ""},
                                  fields()),
    ("deploy", "keys", "list"): _get("/api/deployments/{name}/keys", rows(
        ("id", "id"), ("name", "name"), ("scopes", "scopes"), ("rate/s", "rate_per_s"), ("expires (UTC)", "expires_at"),
        ("active", "active"), ("created by", "created_by"), empty="No keys.")),
    # jobs
    ("jobs", "list"): _get("/api/jobs", _JOB_ROWS, limit="limit"),
    ("jobs", "show"): _get("/api/jobs/{job_id}", fields("id", "kind", "state", "progress", "message")),
    ("jobs", "cancel"): _post("/api/jobs/{job_id}/cancel", None, line("job {id}: {state}")),
    # schedules (recurring jobs)
    ("schedules", "list"): _get("/api/schedules", rows(
        ("id", "id"), ("name", "name"), ("job kind", "kind"), ("every (s)", "every_s"),
        ("next (UTC)", "next_run_at"), ("paused", "paused"), ("by", "created_by"), empty="No schedules yet."),
        kind="kind"),
    ("schedules", "show"): _get("/api/schedules/{schedule_id}", fields("id", "name", "kind", "every_s", "paused")),
    ("schedules", "pause"): _post("/api/schedules/{schedule_id}/pause", None,
                                  line("schedule {id} ({name}) paused")),
    ("schedules", "resume"): _post("/api/schedules/{schedule_id}/resume", None,
                                   line("schedule {id} ({name}) resumed; next at {next_run_at}")),
    ("schedules", "delete"): Route("DELETE", "/api/schedules/{schedule_id}",
                                   render=line("schedule {id} ({name}) deleted")),
    # monitoring
    ("monitor", "feedback"): _post("/api/feedback", _feedback_body, _feedback),
    ("monitor", "quality"): _get("/api/monitoring/deployments/{deployment}/quality", window="window", since="since"),
    ("monitor", "report"): _get("/api/monitoring/deployments/{deployment}/report", since="since"),
    ("monitor", "alerts", "list"): _get("/api/alerts", rows(
        ("id", "id"), ("rule", "rule_id"), ("deployment", "deployment_id"), ("state", "state"),
        ("severity", "severity"), ("value", "value"), ("started (UTC)", "started_at"),
        ("resolved (UTC)", "resolved_at"), ("message", "message"), empty="No alerts."), state="state"),
    ("monitor", "alerts", "rules"): _get("/api/alert-rules", rows(
        ("id", "id"), ("name", "name"), ("condition", "condition"), ("severity", "severity"),
        ("deployment", "deployment_id"), ("webhook", "webhook"), ("enabled", "enabled"), empty="No rules.")),
    ("monitor", "alerts", "metrics"): _get("/api/alert-metrics", rows(
        ("name", "name"), ("source", "source"), ("what", "description"))),
    ("monitor", "alerts", "silences"): _get("/api/alert-silences", rows(
        ("id", "id"), ("rule", "rule_id"), ("deployment", "deployment_id"), ("reason", "reason"),
        ("until (UTC)", "ends_at"), ("by", "created_by"), empty="No silences.")),
    ("monitor", "tickets", "list"): _get("/api/tickets", rows(
        ("id", "id"), ("state", "state"), ("owner role", "owner_role"), ("title", "title"),
        ("opened (UTC)", "created_at"), items="tickets", empty="No tickets."), state="state", owner_role="owner"),
    ("monitor", "tickets", "show"): _get("/api/tickets/{ticket_id}"),
    # governance
    ("users", "list"): _get("/api/users", rows(
        ("user", "name"), ("roles", "roles"), ("state", "state"), ("created (UTC)", "created_at"))),
    ("users", "tokens"): _get("/api/users/{name}/tokens", rows(
        ("id", "id"), ("name", "name"), ("created (UTC)", "created_at"), ("expires (UTC)", "expires_at"),
        ("last seen (UTC)", "last_seen_at"), ("revoked", "revoked"))),
    ("users", "sessions"): _get("/api/users/{name}/sessions", rows(
        ("id", "id"), ("signed in (UTC)", "created_at"), ("from", "address"), ("last seen (UTC)", "last_seen_at"),
        ("expires (UTC)", "expires_at"), empty="No open web session.")),
    ("users", "end-sessions"): Route("DELETE", "/api/users/{name}/sessions",
                                     render=line("{sessions_ended} session(s) of {user} ended")),
    ("users", "disable"): _post("/api/users/{name}/disable", None, line("{name} is {state}")),
    ("users", "enable"): _post("/api/users/{name}/enable", None, line("{name} is {state}")),
    ("users", "delete"): Route("DELETE", "/api/users/{name}", render=line("{name} is {state}")),
    ("roles", "list"): _get("/api/roles", lambda answer, p: rows(("role", "role"), ("actions", "actions"))(
        [{"role": r, "actions": a} for r, a in answer.items()], p)),
    ("roles", "raci"): Route("GET", "/api/roles/raci", query={"format": "fmt"}, render=text),
    ("audit", "entries"): _get("/api/audit", rows(
        ("seq", "seq"), ("at (UTC)", "at"), ("actor", "actor"), ("role", "role"), ("action", "action"),
        ("object", lambda e: f"{e['object_kind']} {e['object_id']}"), ("details", "details")),
        after_seq="after_seq", limit="limit", object_kind="object_kind", object_id="object_id"),
    ("audit", "verify"): Route("GET", "/api/audit/verify", send=_verify, render=_verdict),
    ("audit", "anchor"): Route("GET", "/api/audit/anchor", send=_anchor, render=line(
        "anchored the ledger at entry {seq} (head {head}) to {p[to]}; check it later with 'chainkeeper audit "
        "verify --anchor FILE'")),
    ("lineage",): _get("/api/lineage/{kind}/{object_id}"),
    ("owner",): _get("/api/owners/{kind}/{object_id}", fields("object_kind", "object_id", "owner")),
    # annotation
    ("annotate", "schemas"): _get("/api/annotation/schemas", rows(
        ("id", "id"), ("name", "name"), ("version", "version"), ("kind", "kind"), ("labels", "labels")), name="name"),
    ("annotate", "projects"): _get("/api/annotation/projects", rows(
        ("id", "id"), ("name", "name"), ("dataset version", "dataset_version_id"), ("state", "state"),
        empty="No annotation projects."), dataset="dataset"),
    ("annotate", "figures"): _get("/api/annotation/projects/{project_id}/figures"),
    ("annotate", "disputes"): _get("/api/annotation/projects/{project_id}/disputes"),
}

# Commands whose remote answer is printed as the server wrote it (the same bytes as --json).
_ALWAYS_JSON = {("owner",), ("lineage",)}


def run_remote(remote: Remote, path: tuple[str, ...], params: Params) -> None:
    """Answer the command at PATH through the API.

    Raises:
        ConfigError: the command has no remote counterpart (it says how to run it).
    """
    route = ROUTES.get(path)
    if route is None:
        raise local_only(path, remote.url)
    if path == ("owner",) and params.get("assign"):
        route = Route("PUT", "/api/owners/{kind}/{object_id}", body=lambda p: {"owner": p["assign"]})
    if params.get("html") is not None and path == ("data", "report"):
        Path(params["html"]).write_text(remote.request("GET", f"/api/datasets/{params['version_id']}/report.html"),
                                        encoding="utf-8")
    answer = route.call(remote, params)
    if params.get("as_json") or path in _ALWAYS_JSON:
        print_json(answer)
        if path == ("audit", "verify") and not answer.get("ok"):
            _verdict(answer, params)  # the error, with its exit code, as the local command
        return
    route.render(answer, params)


def local_only(path: tuple[str, ...], url: str) -> ConfigError:
    """The message of a command that runs only where the store is."""
    command = "chainkeeper " + " ".join(path)
    why = LOCAL_ONLY.get(path, "it needs direct access to the store and has no API counterpart yet")
    return ConfigError(f"'{command}' is local-only: {why}. This CLI is in client mode (CHAINKEEPER_URL={url}).",
                       hint=f"Run it on the server's host with CHAINKEEPER_URL unset (e.g. 'env -u CHAINKEEPER_URL "
                       f"{command} ...'), or use the web UI.")


def install(command: Any, path: tuple[str, ...]) -> None:
    """Give COMMAND (and every subcommand) a callback that, in client mode, answers through the API.

    The command's parameters, help and checks stay the local command's; only what runs
    after parsing changes, decided when it runs (the settings are known only then).
    """
    if hasattr(command, "list_commands"):
        for name, sub in getattr(command, "commands", {}).items():
            install(sub, (*path, name))
        return
    local = command.callback
    if local is None or getattr(local, "_client_mode", False):
        return

    @functools.wraps(local)
    def dispatch(*args: Any, **params: Any) -> Any:
        remote = None if path in RUN_LOCALLY else remote_of(cast("typer.Context", get_current_context()))
        if remote is None:
            return local(*args, **params)
        run_remote(remote, path, params)
        return None

    dispatch._client_mode = True  # type: ignore[attr-defined]
    command.callback = dispatch
