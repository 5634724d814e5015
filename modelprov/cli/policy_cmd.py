"""`modelprov policy list|show|validate|check`: inspect policies, validate policy and declaration files,
and judge a saved scan report."""

from __future__ import annotations

import json

import click
from rich.text import Text

from ._common import plain_table, policy_options, print_policy_result, stdout


@click.group(name="policy")
def command() -> None:
    """Policies that judge findings: list presets, show or validate a policy, check a saved scan report.

    Exit status of `check`: 0 pass, 1 policy failure (see --fail-on), 2 error, 3 nothing scannable.
    """


@command.command(name="list")
def list_command() -> None:
    """List the built-in policies."""
    from modelprov.policy import list_presets, load_policy  # on use: --help stays fast
    table = plain_table("policy", "rules", "description", title="built-in policies", numbers=("rules",), keep=("policy",))
    for name in list_presets():
        policy = load_policy(name)
        table.add_row(name, str(len(policy.rules)), policy.description)
    stdout(wide=False).print(table)


@command.command(name="show")
@click.argument("policy")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved policy as JSON.")
def show_command(policy: str, as_json: bool) -> None:
    """Show the rules, severities, parameters and thresholds of POLICY (a preset name or a TOML file)."""
    from modelprov.policy import load_policy  # on use: --help stays fast
    loaded = load_policy(policy)
    if as_json:
        click.echo(json.dumps(loaded.to_dict(), indent=2))
        return
    out = stdout(wide=False)
    out.print(Text.assemble((loaded.name, "bold"), f" ({loaded.source})"))
    if loaded.description:
        out.print(Text(loaded.description))
    out.print(Text(f"home country: {loaded.home_country or '(not set: use --home-country)'}"))
    out.print(Text("thresholds: " + ", ".join(f"{k}={v:g}" for k, v in loaded.thresholds.to_dict().items())))
    table = plain_table("rule", "severity", "description", "parameters", title="rules", keep=("rule", "severity"))
    for rule in loaded.rules:
        params = ", ".join(f"{k}={_show_value(v)}" for k, v in rule.parameters.items())
        if rule.thresholds != loaded.thresholds:
            params += (", " if params else "") + "thresholds overridden"
        table.add_row(rule.id, rule.severity.value, rule.description, params)
    out.print(table)


def _show_value(value: object) -> str:
    from modelprov.policy import Status  # on use: --help stays fast
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
    from modelprov.policy import Policy, validate_file  # on use: --help stays fast
    loaded = validate_file(file, kind)
    if isinstance(loaded, Policy):
        click.echo(f"{file}: valid policy {loaded.name!r} with {len(loaded.rules)} rule(s)")
    else:
        declaration = loaded
        click.echo(f"{file}: valid declaration with {len(declaration.items)} declared reuse item(s) "
                   f"and {len(declaration.training_evidence)} training evidence item(s)")


@command.command(name="check")
@click.argument("report", type=click.Path(dir_okay=False))
@policy_options(required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@click.pass_context
def check_command(ctx: click.Context, report: str, policy_name: str, declaration: str | None, fail_on: str,
                  home_country: str | None, as_json: bool) -> None:
    """Judge the findings of a saved scan REPORT (JSON) against a policy and, optionally, a declaration."""
    from modelprov.policy import check_report  # on use: --help stays fast
    result = check_report(report, policy_name, declaration, home_country=home_country)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_policy_result(result, stdout(wide=False))
    ctx.exit(result.exit_code(fail_on))
