"""What every command shares: the --index and --json options, the consoles, and one progress display."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, TypeVar

import click
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from modelprov.policy import FAIL_ON_CHOICES, PolicyResult

F = TypeVar("F", bound=Callable[..., Any])

# Colours of policy outcomes and finding verdicts in the terminal.
STATUS_STYLES = {"PASS": "green", "WARN": "yellow", "REVIEW": "magenta", "FAIL": "bold red"}
VERDICT_STYLES = {"copied": "bold red", "identical": "bold red", "derived": "magenta", "extended": "yellow",
                  "pruned": "yellow", "modified": "yellow", "unrelated": "green", "independent": "green"}


def index_option(help: str = "Reference index folder (default: $MODELPROV_INDEX or the shipped reference_index/).",
                 ) -> Callable[[F], F]:
    """`--index DIR`, the reference index every command reads (None: the default index)."""
    return click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help=help)


def json_flag(help: str = "Print JSON instead of tables.") -> Callable[[F], F]:
    """`--json`: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def stdout(*, wide: bool = True) -> Console:
    """The console for results, with no highlighting guesses; `wide`: 200 columns when piped (for long tables)
    unless $COLUMNS says otherwise."""
    piped_width = None if sys.stdout.isatty() or not wide or os.environ.get("COLUMNS", "").isdigit() else 200
    return Console(file=sys.stdout, soft_wrap=True, highlight=False, width=piped_width)


class PlainTable(Table):
    """A table that fits the terminal: text columns fold onto more lines, numbers and short codes keep their
    width, and no cell is ever cut short with "…". String cells are plain text, never markup (names come from
    untrusted files); pass a `Text` to style a cell."""

    def add_row(self, *cells: Any, **options: Any) -> None:
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **options)


def plain_table(*columns: str, title: str | None = None, numbers: Collection[str] = (),
                keep: Collection[str] = ()) -> PlainTable:
    """A `PlainTable` with these column headers; `numbers` are right-aligned and, like `keep`, not wrapped."""
    table = PlainTable(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, highlight=False)
    for name in columns:
        table.add_column(name, justify="right" if name in numbers else "left", no_wrap=name in numbers or name in keep,
                         overflow="fold")
    return table


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


class ProgressFeed:
    """Progress callbacks for the library: `items(done, total, name)` and `bytes(n)`."""

    def __init__(self, bar: Progress, task: Any) -> None:
        self._bar, self._task = bar, task

    def items(self, done: int, total: int, item: str) -> None:
        self._bar.update(self._task, completed=done, total=total, item=item[-48:])

    def item(self, done: int, total: int, item: str) -> None:
        """Name the current item only (when the bar counts bytes)."""
        self._bar.update(self._task, item=item[-48:])

    def bytes(self, n: int) -> None:
        self._bar.advance(self._task, n)


@contextmanager
def progress(description: str, *, unit: str = "items", total: int | None = None) -> Iterator[ProgressFeed]:
    """A transient rich progress display on stderr, shown only when stderr is a terminal.

    `unit` "items" counts (done, total) calls; "bytes" adds up byte counts and shows the speed.
    """
    err = Console(stderr=True)
    counter = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(), TimeRemainingColumn())
    bar = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), *counter,
                   TextColumn("{task.fields[item]}"), console=err, transient=True, disable=not err.is_terminal)
    with bar:
        yield ProgressFeed(bar, bar.add_task(description, total=total, item=""))


def policy_options(*, required: bool) -> Callable[[F], F]:
    """`--policy/--declaration/--fail-on/--home-country`, shared by `scan` and `policy check`."""
    def decorate(f: F) -> F:
        f = click.option("--home-country",
                         help="ISO 3166-1 alpha-2 code of the programme's country (overrides the policy).")(f)
        f = click.option("--fail-on", type=click.Choice(FAIL_ON_CHOICES), default="fail", show_default=True,
                         help="Lowest overall verdict that makes the exit status 1.")(f)
        f = click.option("--declaration", type=click.Path(dir_okay=False),
                         help="The bidder's declaration (TOML or YAML).")(f)
        return click.option("--policy", "policy_name", required=required,
                            help="Preset name (see `modelprov policy list`) or policy TOML file.")(f)

    return decorate


def print_policy_result(result: PolicyResult, out: Console) -> None:
    """Per-rule verdicts with their reasons, then the overall verdict."""
    table = plain_table("rule", "status", "reasons", title=f"policy {result.policy.name}", keep=("rule", "status"))
    for rule in result.rules:
        table.add_row(rule.id, Text(rule.status.value, style=STATUS_STYLES[rule.status.value]), "\n".join(rule.reasons))
    out.print(table)
    out.print(Text.assemble("overall: ", (result.overall.value, STATUS_STYLES[result.overall.value])))
