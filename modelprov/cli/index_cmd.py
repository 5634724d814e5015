"""`modelprov index`: add, list, show, remove and verify references; pull them from the Hub; fetch, export
and import published indexes."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

import click
from rich.text import Text

from modelprov.choices import ARCHIVE_NAME
from modelprov.findings import Reference

from ._common import index_option, json_flag, plain_table, progress, stdout

if TYPE_CHECKING:  # annotations only
    from modelprov.index import PullResult


@click.group(name="index")
def command() -> None:
    """Manage the reference index of public models (fingerprints and catalogue)."""


@command.command(name="add")
@click.argument("path")
@click.option("--name", required=True, help="Reference name (letters, digits, ._+-), e.g. all-MiniLM-L6-v2.")
@click.option("--family", default=None, help="Model family, e.g. Qwen2.5.")
@click.option("--org", default=None, help="Organisation that published the model.")
@click.option("--country", default=None, help="ISO 3166-1 alpha-2 country of the organisation, e.g. CN, US.")
@click.option("--license", "license_", default=None, help="SPDX id or LicenseRef-… of the weights.")
@click.option("--repo-id", default=None, help="Hugging Face repo id the weights come from.")
@click.option("--revision", default=None, help="Commit or tag of that repo.")
@index_option()
def add(path: str, name: str, family: str | None, org: str | None, country: str | None, license_: str | None,
        repo_id: str | None, revision: str | None, index_dir: str | None) -> None:
    """Fingerprint the checkpoint at PATH (full read) and add it to the index as NAME."""
    from modelprov.index import ReferenceIndex, add_checkpoint, default_index_dir  # on use: --help stays fast
    idx = ReferenceIndex.open_or_create(index_dir or default_index_dir())
    ref = Reference(name=name, family=family, org=org, country=country.upper() if country else None,
                    license=license_, repo_id=repo_id, revision=revision)
    with progress(f"fingerprinting {name}") as feed:
        entry = add_checkpoint(idx, path, ref, progress=feed.stages)
    click.echo(f"added {entry.name}: {entry.summary['tensors']} tensors, {entry.summary['parameters']:,} parameters; "
               f"index {idx.name} v{idx.version} {idx.digest}")


@command.command(name="list")
@index_option()
@json_flag()
def list_(index_dir: str | None, as_json: bool) -> None:
    """List the references of the index and the catalogued families not yet fingerprinted."""
    from modelprov.index import ReferenceIndex  # on use: --help stays fast
    idx = ReferenceIndex.load(index_dir)
    if as_json:
        click.echo(json.dumps({"index": idx.summary(), "entries": [e.to_dict() for e in idx.entries],
                               "catalog": idx.catalog()}, indent=1))
        return
    out = stdout()
    out.print(Text(f"index {idx.name} v{idx.version} {idx.digest} ({idx.root})"))
    table = plain_table("name", "kind", "family", "org", "country", "license", "parameters", title="references",
                        numbers=("parameters",), keep=("kind", "country"))
    for e in idx.entries:
        r = e.reference
        params = e.summary.get("parameters")
        table.add_row(e.name, e.kind, r.family or "", r.org or "", r.country or "", r.license or "",
                      f"{params:,}" if isinstance(params, int) else "")
    out.print(table)
    models = idx.catalog().get("model", [])
    pending = [m for m in models if not m.get("fingerprinted")]
    if pending:
        out.print(f"{len(pending)} catalogued models not yet fingerprinted (see `index show` or catalog.toml)",
                  highlight=False)


@command.command(name="show")
@click.argument("name")
@index_option()
def show(name: str, index_dir: str | None) -> None:
    """Show one reference: its metadata, source files and fingerprinted tensors, as JSON."""
    from modelprov.index import ReferenceIndex  # on use: --help stays fast
    idx = ReferenceIndex.load(index_dir)
    entries = [e.to_dict() for e in idx.entries if e.name == name]
    catalogued = [m for m in idx.catalog().get("model", []) if m.get("name") == name]
    if not entries and not catalogued:
        idx.entry(name)  # raises the one-line error
    out: dict = {"entries": entries}
    if catalogued:
        out["catalog"] = catalogued[0]
    if any(e["kind"] == "weights" for e in entries):
        fp = idx.fingerprint(name)
        roles: dict[str, int] = {}
        for t in fp.tensors:
            roles[t.role] = roles.get(t.role, 0) + 1
        out["weights"] = {"sketch": fp.spec.to_dict(), "source": fp.source, "tensors": len(fp.tensors),
                          "parameters": fp.parameter_count, "roles": roles}
    click.echo(json.dumps(out, indent=1))


@command.command(name="remove")
@click.argument("name")
@index_option()
def remove(name: str, index_dir: str | None) -> None:
    """Remove reference NAME (all kinds) and its files from the index."""
    from modelprov.index import ReferenceIndex  # on use: --help stays fast
    idx = ReferenceIndex.load(index_dir)
    files = idx.remove(name)
    click.echo(f"removed {name} ({len(files)} files); index v{idx.version} {idx.digest}")


@command.command(name="verify")
@index_option()
def verify(index_dir: str | None) -> None:
    """Check the index digest against every file (exit 2 on mismatch)."""
    from modelprov.index import ReferenceIndex  # on use: --help stays fast
    idx = ReferenceIndex.load(index_dir)
    idx.verify()
    click.echo(f"ok: {idx.name} v{idx.version} {idx.digest}")


@command.command(name="reindex")
@index_option()
def reindex(index_dir: str | None) -> None:
    """Recompute the retrieval signatures of every reference (an index from before format 2) and reseal."""
    from modelprov.index import ReferenceIndex  # on use: --help stays fast
    idx = ReferenceIndex.load(index_dir)
    found = idx.rebuild_retrieval()
    click.echo(f"retrieval index of {len(found.references)} references in {len(found.classes)} classes; "
               f"index v{idx.version} {idx.digest}")


@command.command(name="pull")
@click.argument("source", required=False)
@click.option("--family", "family", default=None, help="Pull every catalogued model of this family, e.g. qwen2.5.")
@click.option("--catalog", "catalog", is_flag=True, help="Pull every catalogued model that names a Hub repo.")
@click.option("--name", default=None, help="Reference name (default: catalogue name or the repo's name).")
@click.option("--full", is_flag=True, help="Read every byte (exact digests of every tensor) instead of sampled rows.")
@click.option("--org", default=None, help="Organisation (default: from the catalogue).")
@click.option("--country", default=None, help="ISO 3166-1 alpha-2 country (default: from the catalogue).")
@click.option("--license", "license_", default=None, help="SPDX id or LicenseRef-… (default: from the catalogue).")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Repositories fingerprinted at once (--family/--catalog).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS|auto",
              help="Run one Ray task per repository on the cluster at ADDRESS, or on a local Ray instance (auto).")
@index_option()
@json_flag("Print the result as JSON.")
def pull(source: str | None, family: str | None, catalog: bool, name: str | None, full: bool, org: str | None,
         country: str | None, license_: str | None, concurrency: int, ray_address: str | None,
         index_dir: str | None, as_json: bool) -> None:
    """Fingerprint Hub model SOURCE (REPO_ID[@REVISION][/subfolder]) into the index over HTTP range reads.

    Reads safetensors headers and the sampled rows only; pins and records the commit. Honours HF_ENDPOINT,
    HF_TOKEN and HF_HUB_OFFLINE. An interrupted pull resumes where it stopped when run again. With --family
    or --catalog many repositories are pulled at once (--concurrency, or --ray), under one progress bar.
    """
    from modelprov.index import (  # on use: --help stays fast
        HubClient, ReferenceIndex, catalogue_source, catalogue_sources, default_index_dir, family_sources,
        pull_job, pull_many, pull_reference,
    )
    if sum(map(bool, (source, family, catalog))) != 1:
        raise click.UsageError("give one of SOURCE (REPO_ID[@REVISION]), --family or --catalog")
    if (family or catalog) and name:
        raise click.UsageError("--name applies to one SOURCE, not to --family or --catalog")
    idx = ReferenceIndex.open_or_create(index_dir or default_index_dir())
    base = Reference(name="", org=org, country=country.upper() if country else None, license=license_)
    if source:
        with progress(f"pull {source}", unit="bytes") as feed:
            client = HubClient(on_bytes=feed.bytes)
            results = [pull_reference(idx, source, name=name, reference=replace(base, name=name or ""), full=full,
                                      client=client, progress=feed.stages)]
    else:
        models = family_sources(idx, family) if family else catalogue_sources(idx)
        jobs = [pull_job(idx, catalogue_source(m), name=m.get("name"), reference=replace(base, name=m.get("name") or ""),
                         full=full) for m in models]
        with progress(f"pull {len(jobs)} repositories", total=len(jobs)) as feed:
            results = pull_many(idx, jobs, concurrency=concurrency, ray=ray_address,
                                progress=lambda done, total, item: feed.stages("pulled", done, total, item))
    if as_json:
        click.echo(json.dumps({"index": ReferenceIndex.load(idx.root).summary(),
                               "pulled": [r.to_dict() for r in results]}, indent=1))
        return
    for result in results:
        click.echo(_pull_line(result, idx))


def _pull_line(result: PullResult, idx: ReferenceIndex) -> str:
    where = f"{result.repo_id}@{result.commit[:12]}"
    if result.skipped:
        return f"{result.name}: already in the index from {where} ({result.mode}); nothing read"
    return (f"pulled {result.name} from {where} ({result.mode}): {result.tensors} tensors, "
            f"{result.parameters:,} parameters; read {result.bytes_transferred:,} of {result.checkpoint_bytes:,} "
            f"bytes ({100 * result.fraction:.2f}%) in {result.requests} requests; "
            f"index {idx.name} v{idx.version} {idx.digest}")


@command.command(name="fetch")
@click.argument("source")
@click.option("--digest", default=None, help="Expected sha256 of the archive (sha256:HEX), pinned by you.")
@click.option("--filename", default=ARCHIVE_NAME, show_default=True, help="Archive name in the dataset.")
@click.option("--force", is_flag=True, help="Replace a non-empty index folder.")
@index_option()
@json_flag("Print the result as JSON.")
def fetch(source: str, digest: str | None, filename: str, force: bool, index_dir: str | None, as_json: bool) -> None:
    """Download a reference index published as Hub dataset SOURCE (REPO_ID[@REVISION]), verify and install it."""
    from modelprov.index import HubClient, default_index_dir, fetch_index  # on use: --help stays fast
    with progress(f"fetch {source}", unit="bytes") as feed:
        result = fetch_index(source, index_dir or default_index_dir(), digest=digest, filename=filename,
                             client=HubClient(on_bytes=feed.bytes), force=force)
    _echo_archive(result, as_json, f"installed {result.index_name} v{result.index_version} {result.index_digest} "
                                   f"into {result.installed_to}; archive {result.sha256} verified against "
                                   f"{', '.join((result.source or {}).get('verified_against', []))}")


@command.command(name="export")
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
@index_option()
@json_flag("Print the result as JSON.")
def export(out: str, index_dir: str | None, as_json: bool) -> None:
    """Write the verified index as one tar OUT (plus OUT.sha256) for reviewers without network."""
    from modelprov.index import export_index  # on use: --help stays fast
    result = export_index(index_dir, out)
    _echo_archive(result, as_json, f"wrote {result.archive} ({result.files} files) {result.sha256}; "
                                   f"index {result.index_name} v{result.index_version} {result.index_digest}")


@command.command(name="import")
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("--digest", default=None, help="Expected sha256 of ARCHIVE (default: ARCHIVE.sha256 beside it).")
@click.option("--force", is_flag=True, help="Replace a non-empty index folder.")
@index_option()
@json_flag("Print the result as JSON.")
def import_(archive: str, digest: str | None, force: bool, index_dir: str | None, as_json: bool) -> None:
    """Verify ARCHIVE (its sha256, then the index digest) and install it as the index."""
    from modelprov.index import default_index_dir, import_index  # on use: --help stays fast
    result = import_index(archive, index_dir or default_index_dir(), digest=digest, force=force)
    _echo_archive(result, as_json, f"installed {result.index_name} v{result.index_version} {result.index_digest} "
                                   f"into {result.installed_to}; archive {result.sha256} verified")


def _echo_archive(result, as_json: bool, line: str) -> None:
    click.echo(json.dumps(result.to_dict(), indent=1) if as_json else line)
