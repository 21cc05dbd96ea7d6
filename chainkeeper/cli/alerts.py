"""``chainkeeper monitor alerts …`` and ``chainkeeper monitor tickets …``: rules, alerts, silences, tickets.

Each command acts as the user behind --token / CHAINKEEPER_TOKEN; the services decide, in
the project of the deployment the object belongs to, as they do for the API: reading needs
``monitoring.read``, changing rules, silences and ticket steps ``alert.manage`` (operator),
retraining ``maintenance.retrain`` (ml_engineer).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from chainkeeper import chain, monitoring, training
from chainkeeper.cli.schedules import describe
from chainkeeper.cli.state import JSON_OPTION, console, current_actor, new_table, open_context, print_json
from chainkeeper.core.errors import InvalidInput

alerts_app = typer.Typer(help="Alert rules, alerts and silences.", no_args_is_help=True)
tickets_app = typer.Typer(help="Maintenance tickets and the retraining loop.", no_args_is_help=True)


def _when(value: object) -> str:
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


# --- alerts ------------------------------------------------------------------------------


@alerts_app.command("metrics")
def alerts_metrics(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """The metrics and checks a rule may watch."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        signals = monitoring.find_signals(c, actor=actor)
    if as_json:
        print_json([{"name": s.name, "description": s.description, "source": s.source} for s in signals])
        return
    table = new_table("name", "source", "what")
    for signal in signals:
        table.add_row(signal.name, signal.source, signal.description)
    console.print(table)


@alerts_app.command("add")
def alerts_add(ctx: typer.Context, name: str = typer.Option(..., help="A unique name for the rule."),
               metric: str = typer.Option(..., help="A metric or check ('monitor alerts metrics' lists them)."),
               comparator: str = typer.Option(..., "--when", help="One of > >= < <=."),
               threshold: float = typer.Option(..., help="The value compared with."),
               window: int = typer.Option(300, "--window-s", help="Seconds of history the metric is read over."),
               severity: str = typer.Option("warning", help="info, warning or critical."),
               deployment: str | None = typer.Option(None, help="Only this deployment (default: all)."),
               webhook: str | None = typer.Option(None, help="POST firing and resolution to this http(s) URL.")
               ) -> None:
    """Create an alert rule: fire when METRIC WHEN THRESHOLD over the window."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        rule = monitoring.create_rule(c, name=name, metric=metric, comparator=comparator, threshold=threshold,
                                  window_s=window, severity=severity, deployment=deployment, webhook_url=webhook,
                                  actor=actor)
    console.print(f"rule {rule.id} {rule.name}: {rule.condition} ({rule.severity})")


@alerts_app.command("rules")
def alerts_rules(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Every rule."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        rules = monitoring.find_rules(c, actor=actor)
    if as_json:  # as the API: whether a webhook is set, never its URL (it may hold a secret path)
        print_json([{**{k: v for k, v in asdict(r).items() if k != "webhook_url"},
                     "webhook": r.webhook_url is not None, "condition": r.condition} for r in rules])
        return
    table = new_table("id", "name", "condition", "severity", "deployment", "webhook", "enabled")
    for r in rules:
        table.add_row(str(r.id), r.name, r.condition, r.severity, str(r.deployment_id or "all"),
                      "yes" if r.webhook_url else "no", "yes" if r.enabled else "no")
    console.print(table)


@alerts_app.command("disable")
def alerts_disable(ctx: typer.Context, rule_id: int = typer.Argument(..., metavar="RULE_ID"),
                   enable: bool = typer.Option(False, "--enable", help="Turn it back on instead.")) -> None:
    """Turn a rule off (its open alerts resolve), or on again with --enable."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        rule = monitoring.set_rule_enabled(c, rule_id, enabled=enable, actor=actor)
    console.print(f"rule {rule.id} {rule.name} is {'enabled' if rule.enabled else 'disabled'}")


@alerts_app.command("webhook-secret")
def alerts_webhook_secret(ctx: typer.Context, rule_id: int = typer.Argument(..., metavar="RULE_ID")) -> None:
    """Print the secret a rule's webhook receiver checks X-Chainkeeper-Signature with (docs/security.md)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        secret = monitoring.webhook_secret(c, rule_id, actor=actor)
    print(secret)


@alerts_app.command("evaluate")
def alerts_evaluate(ctx: typer.Context,
                    every: float | None = typer.Option(None, "--every-s", help="Evaluate every this many seconds: "
                                                       "creates a schedule (see 'chainkeeper schedules list')."),
                    ) -> None:
    """Evaluate every enabled rule now, or schedule the evaluation with --every-s."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        if every is not None:
            console.print(describe(monitoring.schedule_rule_evaluation(c, every, actor=actor)))
            return
        result = monitoring.evaluate_rules_now(c, actor=actor)
    console.print(f"{result.rules} rules: {len(result.fired)} fired, {len(result.still_firing)} still firing, "
                  f"{len(result.resolved)} resolved, {len(result.silenced)} silenced, {result.no_data} without data; "
                  f"tickets opened: {', '.join(map(str, result.tickets)) or 'none'}")


@alerts_app.command("list")
def alerts_list(ctx: typer.Context, state: str | None = typer.Option(None, help="firing or resolved."),
                as_json: bool = JSON_OPTION) -> None:
    """Alerts, newest first."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        found = monitoring.find_alerts(c, actor=actor, state=state)
    if as_json:
        print_json(found)
        return
    table = new_table("id", "rule", "deployment", "state", "severity", "value", "started (UTC)", "resolved (UTC)",
                  "message")
    for a in found:
        table.add_row(str(a.id), str(a.rule_id), str(a.deployment_id), a.state, a.severity, f"{a.value:.4g}",
                      _when(a.started_at), _when(a.resolved_at), a.message)
    console.print(table)


@alerts_app.command("resolve")
def alerts_resolve(ctx: typer.Context, alert_id: int = typer.Argument(..., metavar="ALERT_ID"),
                   comment: str = typer.Option(..., help="Why it is resolved by hand.")) -> None:
    """Resolve a firing alert by hand."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        alert = monitoring.resolve_alert(c, alert_id, actor=actor, comment=comment)
    console.print(f"alert {alert.id} resolved")


@alerts_app.command("silence")
def alerts_silence(ctx: typer.Context, reason: str = typer.Option(..., help="Why (kept in the ledger)."),
                   minutes: int = typer.Option(60, help="How long, in minutes."),
                   rule_id: int | None = typer.Option(None, "--rule", help="Only this rule."),
                   deployment: str | None = typer.Option(None, help="Only this deployment.")) -> None:
    """Mute notifications and tickets of a rule and/or a deployment for a while."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        silence = monitoring.create_silence(c, duration_s=minutes * 60, reason=reason, rule_id=rule_id,
                                        deployment=deployment, actor=actor)
    console.print(f"silence {silence.id} until {_when(silence.ends_at)} UTC")


@alerts_app.command("silences")
def alerts_silences(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Silences, newest first."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        found = monitoring.find_silences(c, actor=actor)
    if as_json:
        print_json(found)
        return
    table = new_table("id", "rule", "deployment", "from (UTC)", "until (UTC)", "by", "reason")
    for s in found:
        table.add_row(str(s.id), str(s.rule_id or "all"), str(s.deployment_id or "all"), _when(s.starts_at),
                      _when(s.ends_at), s.created_by, s.reason)
    console.print(table)


@alerts_app.command("unsilence")
def alerts_unsilence(ctx: typer.Context, silence_id: int = typer.Argument(..., metavar="SILENCE_ID")) -> None:
    """End a silence now."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        monitoring.end_silence(c, silence_id, actor=actor)
    console.print(f"silence {silence_id} ended")


# --- tickets -----------------------------------------------------------------------------


@tickets_app.command("list")
def tickets_list(ctx: typer.Context, state: str | None = typer.Option(None, help="Only tickets in this state."),
                 owner: str | None = typer.Option(None, "--owner-role", help="Only tickets this role owns."),
                 as_json: bool = JSON_OPTION) -> None:
    """Tickets, newest first, with the mean time-to-acknowledge."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        board = monitoring.find_tickets(c, actor=actor, state=state, owner_role=owner)
    if as_json:
        print_json({"tickets": board.tickets, "stats": board.stats})
        return
    found, stats = board.tickets, board.stats
    table = new_table("id", "state", "owner role", "alert", "opened (UTC)", "acknowledged by", "time to ack (s)",
                      "title")
    for t in found:
        ack = "—" if t.time_to_acknowledge_s is None else f"{t.time_to_acknowledge_s:.1f}"
        table.add_row(str(t.id), t.state, t.owner_role, str(t.alert_id or "—"), _when(t.opened_at),
                      t.acknowledged_by or "—", ack, t.title)
    console.print(table)
    mean = stats["mean_time_to_acknowledge_s"]
    console.print(f"mean time to acknowledge: {'—' if mean is None else f'{mean:.1f} s'}")


@tickets_app.command("show")
def tickets_show(ctx: typer.Context, ticket_id: int = typer.Argument(..., metavar="TICKET_ID")) -> None:
    """One ticket, with what the retraining loop recorded on it (JSON)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        ticket = monitoring.show_ticket(c, ticket_id, actor=actor)
    print_json(ticket)


@tickets_app.command("ack")
def tickets_ack(ctx: typer.Context, ticket_id: int = typer.Argument(..., metavar="TICKET_ID"),
                comment: str = typer.Option("", help="A note for the ledger.")) -> None:
    """Acknowledge a ticket (operator)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        ticket = monitoring.acknowledge_ticket(c, ticket_id, actor=actor, comment=comment)
    console.print(f"ticket {ticket.id} acknowledged by {ticket.acknowledged_by} after "
                  f"{ticket.time_to_acknowledge_s:.1f} s")


@tickets_app.command("handover")
def tickets_handover(ctx: typer.Context, ticket_id: int = typer.Argument(..., metavar="TICKET_ID"),
                     note: str = typer.Option(..., help="What the ML engineer should know.")) -> None:
    """Hand an acknowledged ticket over to ml_engineer for retraining."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        ticket = monitoring.hand_over_ticket(c, ticket_id, actor=actor, note=note)
    console.print(f"ticket {ticket.id} now owned by {ticket.owner_role}")


@tickets_app.command("close")
def tickets_close(ctx: typer.Context, ticket_id: int = typer.Argument(..., metavar="TICKET_ID"),
                  resolution: str | None = typer.Option(None, help="What was done; without it the ticket closes "
                                                        "only if its deployment serves the retrained version.")
                  ) -> None:
    """Close a ticket: with a resolution, or as served once the retrained version is live."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        ticket = (monitoring.close_ticket(c, ticket_id, actor=actor, resolution=resolution) if resolution is not None
                  else chain.close_when_served(c, ticket_id, actor=actor))
    console.print(f"ticket {ticket.id} closed: {ticket.resolution}")


@tickets_app.command("retrain")
def tickets_retrain(ctx: typer.Context, ticket_id: int = typer.Argument(..., metavar="TICKET_ID"),
                    comment: str = typer.Option("", help="What the data steward should know about the new "
                                                "version.")) -> None:
    """Build the next dataset version from the released one plus labelled traffic; ask a steward to release it."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        started = chain.start_retraining(c, ticket_id, actor=actor, comment=comment)
    console.print(f"dataset version {started.dataset_version_id} ({started.feedback_train} feedback rows to train, "
                  f"{started.feedback_test} to test); release request {started.release_approval_id} awaits a data "
                  f"steward ('chainkeeper approvals show {started.release_approval_id}'), then run "
                  f"'chainkeeper monitor tickets train {ticket_id}'")


@tickets_app.command("train")
def tickets_train(ctx: typer.Context, ticket_id: int = typer.Argument(..., metavar="TICKET_ID"),
                  config: Path | None = typer.Option(None, help="JSON file of training options (default: the "
                                                     "serving run's).")) -> None:
    """Queue the training run on the retraining version, once a data steward released it (ml_engineer)."""
    options = None
    if config is not None:
        try:
            options = training.parse_train_config(json.loads(config.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"Cannot read training options from {config}: {exc}.",
                               hint="Give a JSON object, e.g. {\"epochs\": 3}.") from None
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        started = chain.train_on_released(c, ticket_id, actor=actor, config=options)
    console.print(f"run {started.run_id} on released dataset version {started.dataset_version_id} queued as job "
                  f"{started.job_id}")


@tickets_app.command("evaluate")
def tickets_evaluate(ctx: typer.Context, ticket_id: int = typer.Argument(..., metavar="TICKET_ID")) -> None:
    """Compare the retrained candidate with the serving version on the same test split."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        comparison = chain.evaluate_retraining(c, ticket_id, actor=actor)
    table = new_table("model", "rows", "accuracy", "macro-F1", title="test split of the retraining dataset version")
    for model in ("serving", "candidate"):
        for part in ("all", "released", "feedback"):
            s = comparison[model][part]
            table.add_row(f"{model} · {part}", str(s["rows"]), f"{s.get('accuracy', 0):.4f}",
                          f"{s.get('macro_f1', 0):.4f}")
    console.print(table)
    console.print("better on the feedback rows: " + ("yes" if comparison["better_on_feedback"] else "[red]no[/]"))


@tickets_app.command("release")
def tickets_release(ctx: typer.Context, ticket_id: int = typer.Argument(..., metavar="TICKET_ID")) -> None:
    """Register the better candidate and ask for its promotion (a release manager decides)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        version, approval = chain.hand_to_release_gate(c, ticket_id, actor=actor)
    console.print(f"{version.label} registered; promotion request {approval.id} awaits a release manager "
                  f"('chainkeeper approvals show {approval.id}')")
