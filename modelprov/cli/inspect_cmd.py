"""`modelprov inspect PATH`: files and sha256, format and quantisation, counts by component, dtypes, config facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text


from ._common import follow_symlinks_option, plain_table, progress, stdout

if TYPE_CHECKING:  # annotations only
    from modelprov.weights import Inspection


@click.command(name="inspect")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the same facts as JSON.")
@click.option("--no-hash", is_flag=True, help="Skip the sha256 of every file (faster on large checkpoints).")
@click.option("--tensors", "list_tensors", is_flag=True, help="Also list every tensor (name, dtype, shape).")
@click.option("--tensor-hashes", is_flag=True, help="Also the sha256 of every tensor's stored bytes (implies --tensors).")
@follow_symlinks_option()
def command(path: str, as_json: bool, no_hash: bool, list_tensors: bool, tensor_hashes: bool,
            no_follow_symlinks: bool) -> None:
    """Show what the checkpoint at PATH holds (file, folder, sharded or GGUF) without loading its weights."""
    from modelprov.reader import open_checkpoint  # on use: --help stays fast
    from modelprov.weights import inspect_checkpoint  # on use: --help stays fast
    with open_checkpoint(path, follow_symlinks=not no_follow_symlinks) as ckpt:
        total = sum(f.size for f in ckpt.files())
        options = {"list_tensors": list_tensors, "tensor_hashes": tensor_hashes}
        if no_hash:
            result = inspect_checkpoint(ckpt, hash_files=False, **options)
        else:
            with progress("sha256", unit="bytes", total=total) as feed:
                result = inspect_checkpoint(ckpt, progress=feed.bytes, **options)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print(result)


def _print(result: Inspection) -> None:
    out = stdout()
    quant = f", quantisation {result.quantisation}" if result.quantisation else ""
    out.print(Text(result.path, style="bold"))
    out.print(Text(f"format {result.format}{quant}; {result.tensor_count} tensors, {result.parameter_count:,} parameters"))

    out.print("files (sha256, bytes, role, path):")
    root = Path(result.path)
    for f in result.files:
        shown = Path(f.path).relative_to(root) if root.is_dir() and Path(f.path).is_relative_to(root) else f.path
        out.print(Text(f"  {f.sha256 or '(not hashed)':64}  {f.size:>14,}  {f.role:9}  {shown}"))
        if f.link_target:
            out.print(Text(f"  {'':64}  {'':>14}  {'':9}  -> {f.link_target} (symbolic link: leaves the checkpoint "
                           "folder)", style="yellow"))

    comps = plain_table("component", "parameters", "share", title="parameters by component", numbers=("parameters", "share"))
    for name, count in result.components.items():
        share = count / result.parameter_count if result.parameter_count else 0.0
        comps.add_row(name, f"{count:,}", f"{share:.1%}")
    out.print(comps)

    dtypes = plain_table("dtype", "tensors", "parameters", title="dtypes", numbers=("tensors", "parameters"))
    for name, counts in result.dtypes.items():
        dtypes.add_row(name, str(counts.tensors), f"{counts.parameters:,}")
    out.print(dtypes)

    if result.config:
        cfg = plain_table("config", "value", title="config facts")
        for key, value in result.config.items():
            cfg.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
        out.print(cfg)
    if result.tensors is not None:
        out.print("tensors (name, dtype, shape[, sha256]):")
        for t in result.tensors:
            digest = f"  {t.sha256}" if t.sha256 else ""
            out.print(Text(f"  {t.name}  {t.dtype}  {tuple(t.shape)}{digest}"))
    for ignored in result.ignored_files:
        out.print(Text(f"ignored (another format is preferred): {ignored}"))
