"""`modelprov compare A B`: exact pairwise comparison of two checkpoints, as JSON and a heatmap."""

from __future__ import annotations

import json

import click
from rich.text import Text

from modelprov import atomic_write

from ._common import plain_table, progress, stdout


@click.command(name="compare")
@click.argument("a")
@click.argument("b")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write per-tensor and layer×layer similarities as JSON to this file.")
@click.option("--heatmap", type=click.Path(dir_okay=False), default=None,
              help="Write the layer×layer similarity heatmap (PNG) to this file.")
def command(a: str, b: str, json_out: str | None, heatmap: str | None) -> None:
    """Compare checkpoint A with checkpoint B tensor by tensor (full read of both; B plays the reference)."""
    from modelprov.weights import compare, write_heatmaps  # on use: --help stays fast
    with progress("comparing") as feed:
        result = compare(a, b, progress=feed.stages)
    if json_out:
        with atomic_write(json_out) as handle:
            json.dump(result.to_dict(), handle, indent=1)
            handle.write("\n")
    if heatmap:
        write_heatmaps(result, heatmap)
    out = stdout()
    summary = result.to_dict()["summary"]
    med = summary["median_centred_similarity"]
    same = [t for t in result.tensors if t.identical and t.a == t.b]
    if result.tensors and len(same) == len(result.tensors) and not summary["unmatched_a"]:
        out.print(Text(f"all identical: each of the {len(same)} tensors of A equals the tensor of the same name in B"))
    out.print(Text(f"{summary['tensors_compared']} tensors of A matched in B, {summary['identical']} identical, "
                   f"{summary['copies_within_storage_rounding']} copies (identical or within the rounding of A's "
                   f"storage); median centred similarity {med if med is None else round(med, 4)}; "
                   f"{summary['unmatched_a']} tensors of A without a counterpart"))
    table = plain_table("A", "B", "placement", "centred", "raw cos.", "max |Δ|", "copy", title="per tensor",
                        numbers=("centred", "raw cos.", "max |Δ|"))
    for t in result.tensors[:60]:
        table.add_row(t.a, t.b, t.placement, f"{t.centred:.4f}", f"{t.raw_cosine:.4f}", f"{t.max_abs_difference:.2e}",
                      t.copy or "-")
    out.print(table)
    if len(result.tensors) > 60:
        out.print(Text(f"… {len(result.tensors) - 60} more in --json"))
    for st in result.stacks:
        for note in st.get("notes", []):
            out.print(Text(f"{st['suspect_stack']} vs {st['reference_stack']}: {note}"))
