"""`modelprov code`: index licensed reference code and scan inference code against it, per function."""

from __future__ import annotations

import json
from pathlib import Path

import click

from modelprov import atomic_write
from modelprov.text import printable

from ._common import index_option, plain_table, progress, stdout

_INDEX = index_option("Code index folder (default: code/ in the reference index).")


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text)
    else:
        with atomic_write(output) as handle:
            handle.write(text + "\n")


@click.group(name="code")
def command() -> None:
    """Find reference inference code (and its license duties) in a code base, function by function."""


@command.group(name="index")
def index_group() -> None:
    """Manage the code reference index."""


@index_group.command(name="add")
@click.argument("source")
@click.option("--name", required=True, help="Reference name, e.g. transformers or glm-4.5.")
@click.option("--version", "version", default=None, help="Version or revision (default: installed version / git HEAD).")
@click.option("--license", "license_", default=None, help="SPDX expression, or LicenseRef-… for model licenses.")
@click.option("--parent", default=None, help="Reference this code base declares as its parent (name or name@version).")
@click.option("--repo-id", default=None, help="Public repository the code comes from.")
@click.option("--family", default=None, help="Model family the code implements, e.g. glm, deepseek, qwen.")
@click.option("--org", default=None, help="Publishing organisation.")
@click.option("--country", default=None, help="ISO 3166-1 alpha-2 country of the organisation, e.g. CN.")
@click.option("--include", multiple=True, help="Glob of relative paths to index, e.g. 'models/*/modeling_*.py'.")
@click.option("--background", is_flag=True, help="Index as background (generic code whose fingerprints are ignored).")
@_INDEX
def index_add(source, name, version, license_, parent, repo_id, family, org, country, include, background, index_dir) -> None:
    """Index SOURCE: a folder, a git checkout, a file or `pip:package[/sub/folder]`."""
    from modelprov.code import CodeIndex  # on use: --help stays fast
    with progress(f"indexing {source}") as feed:
        reference = CodeIndex(index_dir).add(
            source,
            name=name,
            version=version,
            license=license_,
            role="background" if background else "reference",
            parent=parent,
            repo_id=repo_id,
            family=family,
            org=org,
            country=country,
            include=include,
            progress=feed.stages,
        )
    click.echo(
        f"indexed {reference.key}: {reference.files} files, {reference.units} units, "
        f"{reference.fingerprints} fingerprints ({reference.role}, license {reference.license or 'unknown'})"
    )


@index_group.command(name="build")
@click.option("--check", is_flag=True, help="Rebuild in a staging folder and compare digests; change nothing. Exit 1 if any differs.")
@click.option("--fetch-only", is_flag=True, help="Only download (when missing) and check the pinned wheels.")
@click.option("--no-download", is_flag=True, help="Use only wheels already in the wheels folder.")
@click.option("--wheels", "wheels_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the pinned wheels (default: .wheels/ in the code index).")
@_INDEX
def index_build(check: bool, fetch_only: bool, no_download: bool, wheels_dir: Path | None, index_dir) -> None:
    """Rebuild the shipped code index from the wheels pinned in its sources.toml (byte-reproducible)."""
    from modelprov.code import CodeIndex, build_code_index, fetch_wheels  # on use: --help stays fast
    code_dir = CodeIndex(index_dir).directory
    if fetch_only:
        for wheel in fetch_wheels(code_dir, wheels_dir):
            click.echo(f"{wheel} (sha256 checked)")
        return
    with progress("building the code index") as feed:
        results = build_code_index(code_dir, wheels_dir=wheels_dir, download=not no_download, replace=not check,
                                   progress=feed.stages)
    table = plain_table("reference", "files", "units", "fingerprints", "tokens", "digest", "shipped",
                        numbers=("files", "units", "fingerprints", "tokens"))
    for r in results:
        table.add_row(r.reference.key, str(r.reference.files), str(r.reference.units), str(r.reference.fingerprints),
                      str(r.reference.tokens), r.digest[:19], "same" if r.same else (r.shipped or "absent")[:19])
    stdout().print(table)
    differing = [r.reference.key for r in results if not r.same]
    if check and differing:
        click.echo(f"the rebuilt index differs from the shipped one: {', '.join(differing)}", err=True)
        raise SystemExit(1)
    if not check:
        click.echo(f"wrote {len(results)} entries into {code_dir}; reseal the reference index digest "
                   "(ReferenceIndex.load(None).save()) before shipping")


@index_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_INDEX
def index_list(as_json: bool, index_dir) -> None:
    """List the indexed code references."""
    from modelprov.code import CodeIndex  # on use: --help stays fast
    references = CodeIndex(index_dir).list()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in references], indent=2))
        return
    table = plain_table("reference", "role", "license", "files", "units", "fingerprints", "source",
                        numbers=("files", "units", "fingerprints"))
    for r in references:
        table.add_row(r.key, r.role, r.license or "-", str(r.files), str(r.units), str(r.fingerprints), r.source)
    stdout(wide=False).print(table)


@index_group.command(name="show")
@click.argument("name")
@_INDEX
def index_show(name: str, index_dir) -> None:
    """Show one reference (NAME or NAME@VERSION) as JSON: license evidence and files."""
    from modelprov.code import CodeIndex  # on use: --help stays fast
    click.echo(json.dumps(CodeIndex(index_dir).show(name), indent=2))


@index_group.command(name="remove")
@click.argument("name")
@_INDEX
def index_remove(name: str, index_dir) -> None:
    """Remove one reference (NAME or NAME@VERSION) from the index."""
    from modelprov.code import CodeIndex  # on use: --help stays fast
    reference = CodeIndex(index_dir).remove(name)
    click.echo(f"removed {reference.key}")


@command.command(name="scan")
@click.argument("path", type=click.Path(path_type=Path))
@_INDEX
@click.option("--base-code", multiple=True, type=click.Path(path_type=Path), help="Code to ignore as boilerplate (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to a file.")
def scan(path: Path, index_dir, base_code, fmt: str, output: Path | None) -> None:
    """Scan a source file or folder (Python, C++, CUDA) against the code index."""
    from modelprov.code import scan_code, to_sarif  # on use: --help stays fast
    from modelprov.index.licenses import unmet_summary  # on use: --help stays fast
    result = scan_code(path, index_dir, base_code=base_code)
    if fmt == "json":
        _emit(json.dumps(result.to_dict(), indent=2), output)
        return
    if fmt == "sarif":
        _emit(json.dumps(to_sarif(result), indent=2), output)
        return
    console = stdout(wide=False, record=output is not None)
    table = plain_table("function", "verdict", "similarity", "tokens", "origin", "renamed", "unmet obligations",
                        numbers=("similarity", "tokens", "renamed"), keep=("verdict",))
    for file in result.files:
        for m in file.matches:
            table.add_row(
                m.subject_qualname if len(result.files) == 1 else m.subject,
                m.verdict,
                f"{m.similarity:.0%}",
                str(m.matched_tokens),
                f"{m.reference_path}::{m.reference_qualname}",
                str(len(m.rename_map)),
                unmet_summary(m.license_obligations),
            )
    console.print(table)
    for file in result.files:
        console.print(f"{file.path}: {file.coverage:.0%} of {file.tokens} tokens match reference code")
    if output is not None:
        _emit(printable(console.export_text(), newlines=True), output)
