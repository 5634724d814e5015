"""Entry point of the `provenance` command: registers sub-commands and turns user errors into one line, exit 2."""

from __future__ import annotations

import sys
import traceback

import click

from provenance import __version__
from provenance.errors import ProvenanceError


class ProvenanceGroup(click.Group):
    """A click group that reports `ProvenanceError`s as `provenance: error: <file>: <problem>`, no traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ProvenanceError as err:
            click.echo(f"provenance: error: {err.one_line()}", err=True)
            ctx.exit(err.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:  # a bug, not bad input: keep the trace, and never exit 1 ("policy failure")
            traceback.print_exc()
            click.echo(f"provenance: internal error (a bug; please report it with the trace above): "
                       f"{type(err).__name__}: {err}", err=True)
            ctx.exit(2)


@click.group(cls=ProvenanceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provenance")
def app() -> None:
    """Audit where an AI model's weights, tokenizer and inference code came from.

    Exit status: 0 pass, 1 policy failure, 2 error, 3 nothing scannable.
    """


def _register() -> None:
    from . import code_cmd, compare_cmd, index_cmd, inspect_cmd, policy_cmd, report_cmd, scan_cmd, tokenizer_cmd

    for module in (inspect_cmd, scan_cmd, compare_cmd, index_cmd, tokenizer_cmd, code_cmd, policy_cmd, report_cmd):
        app.add_command(module.command)


_register()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="provenance")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
