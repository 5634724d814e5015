"""What every command shares: the --index and --json options, the consoles, tables that fit the terminal,
and the one progress display."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Iterator, TypeVar

import click
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn,
)
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from modelprov.choices import FAIL_ON_CHOICES
from modelprov.text import printable

if TYPE_CHECKING:  # annotations only
    from modelprov.policy import PolicyResult

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


def follow_symlinks_option() -> Callable[[F], F]:
    """`--no-follow-symlinks`: refuse checkpoint files that are symbolic links out of the checkpoint folder."""
    return click.option("--no-follow-symlinks", "no_follow_symlinks", is_flag=True,
                        help="Refuse files that are symbolic links leaving the checkpoint folder (by default they "
                             "are read and named in the output).")


class SafeConsole(Console):
    """A console for text that comes from untrusted files: strings are never read as markup (a tensor named `[/]`
    or `[bold red]…` prints as itself) and control characters in any printed text show as escapes (`\\x1b`), so
    a name cannot clear the screen, retitle the window or reorder what the reviewer reads. Styles we apply (rich's
    own escape codes) are untouched."""

    def __init__(self, **options: Any) -> None:
        super().__init__(markup=False, highlight=False, **options)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        # the one place every printed segment passes; control segments (cursor moves of the progress bar) are rich's
        return super()._render_buffer(
            Segment(printable(text, newlines=True), style, control) if text and not control else Segment(text, style, control)
            for text, style, control in buffer)


def stdout(*, wide: bool = True, record: bool = False) -> Console:
    """The console for results (a `SafeConsole`); `wide`: 200 columns when piped (for long tables) unless $COLUMNS
    says otherwise."""
    piped_width = None if sys.stdout.isatty() or not wide or os.environ.get("COLUMNS", "").isdigit() else 200
    return SafeConsole(file=sys.stdout, soft_wrap=True, width=piped_width, record=record)


class PlainTable(Table):
    """A table that fits the terminal: text columns fold onto more lines, numbers and short codes keep their
    width, and no cell is ever cut short with "…". String cells are plain text, never markup (names come from
    untrusted files); pass a `Text` to style a cell."""

    def add_row(self, *cells: Any, **options: Any) -> None:
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **options)


def plain_table(*columns: str, title: str | None = None, numbers: Collection[str] = (),
                keep: Collection[str] = ()) -> PlainTable:
    """A `PlainTable` with these column headers and a plain-text title; `numbers` are right-aligned and, like
    `keep`, not wrapped."""
    table = PlainTable(title=None if title is None else Text(title), title_justify="left", box=box.SIMPLE_HEAD,
                       pad_edge=False, highlight=False)
    for name in columns:
        table.add_column(name, justify="right" if name in numbers else "left", no_wrap=name in numbers or name in keep,
                         overflow="fold")
    return table


def stderr() -> Console:
    """The console for progress and notes (never results); long lines are left to the terminal or log."""
    return SafeConsole(stderr=True, soft_wrap=True)


PROGRESS_INTERVAL = 10.0  # seconds between plain progress lines (CI logs) within one stage


class ProgressFeed:
    """What the library's progress callbacks reach: `stages(stage, done, total, item)` (the library's
    `ProgressFn`) and `bytes(n)` for byte counts. A rich bar on a terminal (`RichFeed`), plain periodic
    lines otherwise (`PlainFeed`)."""

    def stages(self, stage: str, done: int, total: int, item: str) -> None:
        raise NotImplementedError

    def bytes(self, n: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop any background work; called when the display ends."""


class RichFeed(ProgressFeed):
    """A transient rich progress bar: the current stage, its bar and percentage, elapsed time, the item."""

    def __init__(self, bar: Progress, description: str, unit: str, total: int | None) -> None:
        self._bar, self._unit, self._stage = bar, unit, ""
        self._task = bar.add_task(description, total=total, item="")

    def stages(self, stage: str, done: int, total: int, item: str) -> None:
        if self._unit == "bytes":  # the bar counts bytes; a stage only names what is being read
            self._bar.update(self._task, item=item[-36:])
            return
        if stage != self._stage:
            self._stage = stage
            self._bar.reset(self._task, description=stage)
        self._bar.update(self._task, completed=done, total=total or None, item=item[-36:])

    def bytes(self, n: int) -> None:
        self._bar.advance(self._task, n)


class PlainFeed(ProgressFeed):
    """Progress as plain lines for logs: `modelprov: <stage> <percent> after <elapsed>: <item>` when a stage
    starts, at most every `interval` seconds while it runs, and when it completes; a heartbeat line
    ("still working") when the library has been quiet for `interval` seconds."""

    def __init__(self, out: Console, description: str, unit: str, total: int | None, interval: float) -> None:
        self._out, self._unit, self._interval = out, unit, interval
        self._start = self._last = self._heard = time.monotonic()  # start, last line printed, last call
        self._stage, self._done, self._total, self._item = description, 0, total or 0, ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="modelprov-progress", daemon=True)
        self._heartbeat.start()

    def stages(self, stage: str, done: int, total: int, item: str) -> None:
        with self._lock:
            self._heard = time.monotonic()
            if self._unit == "bytes":
                self._item = item
                return
            started = stage != self._stage or done < self._done
            finished = total > 0 and done >= total and not (stage == self._stage and self._done >= self._total > 0)
            self._stage, self._done, self._total, self._item = stage, done, total, item
            if started or finished or time.monotonic() - self._last >= self._interval:
                self._emit()

    def bytes(self, n: int) -> None:
        with self._lock:
            self._heard = time.monotonic()
            before, self._done = self._done, self._done + n
            finished = 0 < self._total <= self._done and before < self._total
            if finished or time.monotonic() - self._last >= self._interval:
                self._emit()

    def close(self) -> None:
        self._stop.set()
        self._heartbeat.join()

    def _beat(self) -> None:
        while not self._stop.wait(max(self._interval / 4, 0.05)):
            with self._lock:
                now = time.monotonic()
                if now - self._heard >= self._interval and now - self._last >= self._interval:
                    self._emit(quiet=True)

    def _emit(self, quiet: bool = False) -> None:
        self._last = time.monotonic()
        if self._total:
            amount = f"{min(self._done / self._total, 1.0):>4.0%}"
        else:
            amount = f"{self._done:,} bytes" if self._unit == "bytes" else f"{self._done:,} done"
        item = f": {self._item}" if self._item and not quiet else ""
        still = " (still working)" if quiet else ""
        self._out.print(Text(f"modelprov: {self._stage} {amount} after {_elapsed(self._last - self._start)}"
                             f"{still}{item}"))


def _elapsed(seconds: float) -> str:
    """Elapsed time as a log reads it: "4.2 s", "3 min 05 s"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


@contextmanager
def progress(description: str, *, unit: str = "stages", total: int | None = None,
             interval: float = PROGRESS_INTERVAL) -> Iterator[ProgressFeed]:
    """The one progress display, on stderr: a transient rich bar on a terminal, plain periodic lines (stage,
    percent, elapsed) when stderr is a log or a pipe.

    `unit` "stages": the library's `progress(stage, done, total, item)` drives it; "bytes": byte counts fed
    to `bytes(n)` (with `total` when known), and stage calls only name the item.
    """
    err = stderr()
    if not err.is_terminal:
        feed: ProgressFeed = PlainFeed(err, description, unit, total, interval)
        try:
            yield feed
        finally:
            feed.close()
        return
    counter = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (TaskProgressColumn(),)
    bar = Progress(TextColumn("{task.description}", style="progress.description", markup=False), BarColumn(), *counter,
                   TimeElapsedColumn(), TextColumn("{task.fields[item]}", markup=False), console=err, transient=True)
    with bar:
        yield RichFeed(bar, description, unit, total)


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
