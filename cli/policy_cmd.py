"""`provenance policy list|show|validate|check`: inspect policies, validate policy and declaration files,
and judge a saved scan report."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provenance.errors import NothingToScanError
from provenance.policy import (
    FAIL_ON_CHOICES,
    PolicyResult,
    Status,
    evaluate,
    list_presets,
    load_declaration,
    load_policy,
    load_report_findings,
)
from provenance.policy.source import read_document

F = TypeVar("F", bound=Callable[..., Any])
_STATUS_STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.REVIEW: "magenta", Status.FAIL: "bold red"}


def _out() -> Console:
    return Console(file=sys.stdout, soft_wrap=True, highlight=False)


@click.group(name="policy")
def command() -> None:
    """Policies that judge findings: list presets, show or validate a policy, check a saved scan report.

    Exit status of `check`: 0 pass, 1 policy failure (see --fail-on), 2 error, 3 nothing scannable.
    """


@command.command(name="list")
def list_command() -> None:
    """List the built-in policies."""
    table = Table(title="built-in policies", title_justify="left")
    table.add_column("policy", no_wrap=True)
    table.add_column("rules")
    table.add_column("description")
    for name in list_presets():
        policy = load_policy(name)
        table.add_row(name, str(len(policy.rules)), escape(policy.description))
    _out().print(table)


@command.command(name="show")
@click.argument("policy")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved policy as JSON.")
def show_command(policy: str, as_json: bool) -> None:
    """Show the rules, severities, parameters and thresholds of POLICY (a preset name or a TOML file)."""
    loaded = load_policy(policy)
    if as_json:
        click.echo(json.dumps(loaded.to_dict(), indent=2))
        return
    out = _out()
    out.print(f"[bold]{loaded.name}[/bold] ({loaded.source})")
    if loaded.description:
        out.print(loaded.description)
    out.print(f"home country: {loaded.home_country or '(not set: use --home-country)'}")
    out.print("thresholds: " + ", ".join(f"{k}={v:g}" for k, v in loaded.thresholds.to_dict().items()))
    table = Table(title="rules", title_justify="left")
    table.add_column("rule", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("description")
    table.add_column("parameters")
    for rule in loaded.rules:
        params = ", ".join(f"{k}={_show_value(v)}" for k, v in rule.parameters.items())
        if rule.thresholds != loaded.thresholds:
            params += (", " if params else "") + "thresholds overridden"
        table.add_row(rule.id, rule.severity.value, escape(rule.description), escape(params))
    out.print(table)


def _show_value(value: object) -> str:
    if isinstance(value, Status):
        return value.value.lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


@command.command(name="validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--as", "kind", type=click.Choice(["auto", "policy", "declaration"]), default="auto", show_default=True,
              help="What FILE is; auto: a TOML file with [policy] or [rules] is a policy, anything else a declaration.")
def validate_command(file: str, kind: str) -> None:
    """Check a policy (TOML) or declaration (TOML or YAML) file; errors name the line and the key."""
    if kind == "auto":
        path = Path(file)
        is_toml = path.suffix.lower() not in (".yaml", ".yml")
        kind = "policy" if is_toml and {"policy", "rules"} & set(read_document(path).data) else "declaration"
    if kind == "policy":
        policy = load_policy(file)
        click.echo(f"{file}: valid policy {policy.name!r} with {len(policy.rules)} rule(s)")
    else:
        declaration = load_declaration(file)
        click.echo(f"{file}: valid declaration with {len(declaration.items)} declared reuse item(s) "
                   f"and {len(declaration.training_evidence)} training evidence item(s)")


def policy_options(*, required: bool) -> Callable[[F], F]:
    """The `--policy/--declaration/--fail-on/--home-country` options, shared by `policy check` and `scan`."""

    def decorate(f: F) -> F:
        f = click.option("--home-country",
                         help="ISO 3166-1 alpha-2 code of the programme's country (overrides the policy).")(f)
        f = click.option("--fail-on", type=click.Choice(FAIL_ON_CHOICES), default="fail", show_default=True,
                         help="Lowest overall verdict that makes the exit status 1.")(f)
        f = click.option("--declaration", type=click.Path(dir_okay=False),
                         help="The bidder's declaration (TOML or YAML).")(f)
        return click.option("--policy", "policy_name", required=required,
                            help="Preset name (see `provenance policy list`) or policy TOML file.")(f)

    return decorate


@command.command(name="check")
@click.argument("report", type=click.Path(dir_okay=False))
@policy_options(required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@click.pass_context
def check_command(ctx: click.Context, report: str, policy_name: str, declaration: str | None, fail_on: str,
                  home_country: str | None, as_json: bool) -> None:
    """Judge the findings of a saved scan REPORT (JSON) against a policy and, optionally, a declaration."""
    findings, subject = load_report_findings(report)
    if not findings and subject.get("tensor_count") == 0:
        raise NothingToScanError(report, "the report's subject holds no tensors: nothing was scanned")
    result = evaluate(
        findings,
        load_policy(policy_name),
        load_declaration(declaration) if declaration else None,
        subject=subject,
        home_country=home_country,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_result(result, _out())
    ctx.exit(result.exit_code(fail_on))


def print_result(result: PolicyResult, out: Console) -> None:
    """Per-rule verdicts with their reasons, then the overall verdict (also used by `provenance scan`)."""
    table = Table(title=f"policy {result.policy.name}", title_justify="left")
    table.add_column("rule", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("reasons")
    for rule in result.rules:
        style = _STATUS_STYLE[rule.status]
        table.add_row(rule.id, f"[{style}]{rule.status.value}[/{style}]", escape("\n".join(rule.reasons)))
    out.print(table)
    style = _STATUS_STYLE[result.overall]
    out.print(f"overall: [{style}]{result.overall.value}[/{style}]")
