"""Entry point of the `modelprov` command: sub-commands load on first use; user errors are one line, exit 2."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from modelprov import __version__
from modelprov.errors import ProvenanceError

PROG = "modelprov"

# command -> (module under modelprov.cli, one-line help shown by `modelprov --help` without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("inspect_cmd", "Show what a checkpoint holds without loading its weights."),
    "scan": ("scan_cmd", "Find which parts of a checkpoint come from which reference model."),
    "compare": ("compare_cmd", "Compare two checkpoints tensor by tensor (full read)."),
    "index": ("index_cmd", "Manage the reference index (fingerprints, catalogue, Hub pulls)."),
    "tokenizer": ("tokenizer_cmd", "Tokenizer provenance: fingerprint and compare tokenizers."),
    "code": ("code_cmd", "Inference-code provenance, function by function, with licence duties."),
    "policy": ("policy_cmd", "Policies: list, show, validate, and judge a saved report."),
    "report": ("report_cmd", "Render a saved report in another format, or verify a checkpoint against it."),
}


class ModelprovGroup(click.Group):
    """A click group that loads sub-commands lazily and reports `ProvenanceError`s as one line, no traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ProvenanceError as err:
            click.echo(f"{PROG}: error: {err.one_line()}", err=True)
            ctx.exit(err.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:  # a bug, not bad input: keep the trace, and never exit 1 ("policy failure")
            traceback.print_exc()
            click.echo(f"{PROG}: internal error (a bug; please report it with the trace above): "
                       f"{type(err).__name__}: {err}", err=True)
            ctx.exit(2)


def _hub_timeout(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """`--hub-timeout` reaches every Hub client of this run through the variable they read."""
    if value is not None:
        if not 0 < value <= 86400:
            raise click.BadParameter("must be between 0 and 86400 seconds")
        os.environ["MODELPROV_HUB_TIMEOUT"] = repr(value)
    return value


@click.group(cls=ModelprovGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG)
@click.option("--hub-timeout", type=float, default=None, callback=_hub_timeout, expose_value=False, is_eager=True,
              metavar="SECONDS", help="Give up on a Hub request after this many seconds without an answer, retries "
                                      "included (default: $MODELPROV_HUB_TIMEOUT or 6).")
def app() -> None:
    """Audit where an AI model's weights, tokenizer and inference code came from.

    Exit status: 0 pass, 1 policy failure, 2 error, 3 nothing scannable.
    """


def main() -> None:
    """Console-script entry point."""
    app(prog_name=PROG)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
