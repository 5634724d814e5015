"""Hub sub-commands of `provenance index`: pull (fingerprint Hub models over range reads), fetch, export, import."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Callable, Iterator

import click
from rich.console import Console
from rich.progress import DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from provenance.findings import Reference
from provenance.hub import (HubClient, catalogue_source, export_index, family_sources, fetch_index, import_index,
                            pull_reference)
from provenance.refindex import ReferenceIndex, default_index_dir

_INDEX = click.option("--index", "index_dir", type=click.Path(file_okay=False), default=None,
                      help="Reference index folder (default: $PROVENANCE_INDEX or the shipped reference_index/).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@contextmanager
def _transfer_bar(description: str) -> Iterator[tuple[Callable[[int], None], Callable[[int, int, str], None]]]:
    """A rich bar on stderr showing bytes received from the Hub and the tensor being read."""
    err = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), DownloadColumn(), TransferSpeedColumn(),
                   TextColumn("{task.fields[item]}"), console=err, transient=True, disable=not err.is_terminal)
    with bar:
        task = bar.add_task(description, total=None, item="")

        def on_bytes(n: int) -> None:
            bar.advance(task, n)

        def on_tensor(done: int, total: int, item: str) -> None:
            bar.update(task, item=item[-48:])

        yield on_bytes, on_tensor


@click.command(name="pull")
@click.argument("source", required=False)
@click.option("--family", "family", default=None, help="Pull every catalogued model of this family, e.g. qwen2.5.")
@click.option("--name", default=None, help="Reference name (default: catalogue name or the repo's name).")
@click.option("--full", is_flag=True, help="Read every byte (exact digests of every tensor) instead of sampled rows.")
@click.option("--org", default=None, help="Organisation (default: from the catalogue).")
@click.option("--country", default=None, help="ISO 3166-1 alpha-2 country (default: from the catalogue).")
@click.option("--license", "license_", default=None, help="SPDX id or LicenseRef-… (default: from the catalogue).")
@_INDEX
@_JSON
def pull(source: str | None, family: str | None, name: str | None, full: bool, org: str | None,
         country: str | None, license_: str | None, index_dir: str | None, as_json: bool) -> None:
    """Fingerprint Hub model SOURCE (REPO_ID[@REVISION][/subfolder]) into the index over HTTP range reads.

    Reads safetensors headers and the sampled rows only; pins and records the commit. Honours HF_ENDPOINT,
    HF_TOKEN and HF_HUB_OFFLINE. An interrupted pull resumes where it stopped when run again.
    """
    if bool(source) == bool(family):
        raise click.UsageError("give either SOURCE (REPO_ID[@REVISION]) or --family")
    if family and name:
        raise click.UsageError("--name applies to one SOURCE, not to a --family")
    idx = ReferenceIndex.open_or_create(index_dir or default_index_dir())
    if family:
        jobs = [(catalogue_source(m), m.get("name")) for m in family_sources(idx, family)]
    else:
        jobs = [(source, name)]
    results = []
    for src, ref_name in jobs:
        with _transfer_bar(f"pull {src}") as (on_bytes, on_tensor):
            client = HubClient(on_bytes=on_bytes)
            base = Reference(name=ref_name or "", org=org, country=country.upper() if country else None,
                             license=license_)
            result = pull_reference(idx, src, name=ref_name, reference=base, full=full, client=client,
                                    progress=on_tensor)
        results.append(result)
        if not as_json:
            click.echo(_pull_line(result, idx))
    if as_json:
        click.echo(json.dumps({"index": ReferenceIndex.load(idx.root).summary(),
                               "pulled": [r.to_dict() for r in results]}, indent=1))


def _pull_line(result, idx: ReferenceIndex) -> str:
    where = f"{result.repo_id}@{result.commit[:12]}"
    if result.skipped:
        return f"{result.name}: already in the index from {where} ({result.mode}); nothing read"
    return (f"pulled {result.name} from {where} ({result.mode}): {result.tensors} tensors, "
            f"{result.parameters:,} parameters; read {result.bytes_transferred:,} of {result.checkpoint_bytes:,} "
            f"bytes ({100 * result.fraction:.2f}%) in {result.requests} requests; "
            f"index {idx.name} v{idx.version} {idx.digest}")


@click.command(name="fetch")
@click.argument("source")
@click.option("--digest", default=None, help="Expected sha256 of the archive (sha256:HEX), pinned by you.")
@click.option("--filename", default="reference-index.tar", show_default=True, help="Archive name in the dataset.")
@click.option("--force", is_flag=True, help="Replace a non-empty index folder.")
@_INDEX
@_JSON
def fetch(source: str, digest: str | None, filename: str, force: bool, index_dir: str | None, as_json: bool) -> None:
    """Download a reference index published as Hub dataset SOURCE (REPO_ID[@REVISION]), verify and install it."""
    with _transfer_bar(f"fetch {source}") as (on_bytes, _):
        result = fetch_index(source, index_dir or default_index_dir(), digest=digest, filename=filename,
                             client=HubClient(on_bytes=on_bytes), force=force)
    _echo_archive(result, as_json, f"installed {result.index_name} v{result.index_version} {result.index_digest} "
                                   f"into {result.installed_to}; archive {result.sha256} verified against "
                                   f"{', '.join((result.source or {}).get('verified_against', []))}")


@click.command(name="export")
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
@_INDEX
@_JSON
def export(out: str, index_dir: str | None, as_json: bool) -> None:
    """Write the verified index as one tar OUT (plus OUT.sha256) for reviewers without network."""
    result = export_index(index_dir, out)
    _echo_archive(result, as_json, f"wrote {result.archive} ({result.files} files) {result.sha256}; "
                                   f"index {result.index_name} v{result.index_version} {result.index_digest}")


@click.command(name="import")
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("--digest", default=None, help="Expected sha256 of ARCHIVE (default: ARCHIVE.sha256 beside it).")
@click.option("--force", is_flag=True, help="Replace a non-empty index folder.")
@_INDEX
@_JSON
def import_(archive: str, digest: str | None, force: bool, index_dir: str | None, as_json: bool) -> None:
    """Verify ARCHIVE (its sha256, then the index digest) and install it as the index."""
    result = import_index(archive, index_dir or default_index_dir(), digest=digest, force=force)
    _echo_archive(result, as_json, f"installed {result.index_name} v{result.index_version} {result.index_digest} "
                                   f"into {result.installed_to}; archive {result.sha256} verified")


def _echo_archive(result, as_json: bool, line: str) -> None:
    click.echo(json.dumps(result.to_dict(), indent=1) if as_json else line)


COMMANDS: list[click.Command] = [pull, fetch, export, import_]
