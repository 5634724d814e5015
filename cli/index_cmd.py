"""`provenance index`: add, list, show and remove references of a reference index."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from provenance.findings import Reference
from provenance.refindex import ReferenceIndex, add_checkpoint, default_index_dir

from .index_hub_cmd import COMMANDS
from .scan_cmd import progress_bar

_INDEX_OPTION = click.option(
    "--index", "index_dir", type=click.Path(file_okay=False), default=None,
    help="Reference index folder (default: $PROVENANCE_INDEX or the shipped reference_index/).")


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
@_INDEX_OPTION
def add(path: str, name: str, family: str | None, org: str | None, country: str | None, license_: str | None,
        repo_id: str | None, revision: str | None, index_dir: str | None) -> None:
    """Fingerprint the checkpoint at PATH (full read) and add it to the index as NAME."""
    idx = ReferenceIndex.open_or_create(index_dir or default_index_dir())
    ref = Reference(name=name, family=family, org=org, country=country.upper() if country else None,
                    license=license_, repo_id=repo_id, revision=revision)
    with progress_bar(f"fingerprinting {name}") as update:
        entry = add_checkpoint(idx, path, ref, progress=update)
    click.echo(f"added {entry.name}: {entry.summary['tensors']} tensors, {entry.summary['parameters']:,} parameters; "
               f"index {idx.name} v{idx.version} {idx.digest}")


@command.command(name="list")
@_INDEX_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def list_(index_dir: str | None, as_json: bool) -> None:
    """List the references of the index and the catalogued families not yet fingerprinted."""
    idx = ReferenceIndex.load(index_dir)
    if as_json:
        click.echo(json.dumps({"index": idx.summary(), "entries": [e.to_dict() for e in idx.entries],
                               "catalog": idx.catalog()}, indent=1))
        return
    out = Console(file=sys.stdout, soft_wrap=True)
    out.print(f"index {idx.name} v{idx.version} {idx.digest} ({idx.root})", highlight=False)
    table = Table("name", "kind", "family", "org", "country", "license", "parameters", title="references",
                  title_justify="left")
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
@_INDEX_OPTION
def show(name: str, index_dir: str | None) -> None:
    """Show one reference: its metadata, source files and fingerprinted tensors, as JSON."""
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
@_INDEX_OPTION
def remove(name: str, index_dir: str | None) -> None:
    """Remove reference NAME (all kinds) and its files from the index."""
    idx = ReferenceIndex.load(index_dir)
    files = idx.remove(name)
    click.echo(f"removed {name} ({len(files)} files); index v{idx.version} {idx.digest}")


@command.command(name="verify")
@_INDEX_OPTION
def verify(index_dir: str | None) -> None:
    """Check the index digest against every file (exit 2 on mismatch)."""
    idx = ReferenceIndex.load(index_dir)
    idx.verify()
    click.echo(f"ok: {idx.name} v{idx.version} {idx.digest}")


for _c in COMMANDS:
    command.add_command(_c)
