"""The lineage a checkpoint claims about itself: its model card's YAML front matter and adapter_config.json.

Hugging Face convention: `base_model` (one or more repo ids), `base_model_relation` (finetune, adapter, merge,
quantized), `license`, and prose such as "trained from scratch". `adapter_config.json` names its base in
`base_model_name_or_path`. Both are untrusted input: read within a byte bound, YAML without aliases, one-line
errors naming the file.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from typing import Any

import yaml

from modelprov.errors import ModelCardError
from modelprov.reader import Checkpoint

CARD_NAME = "README.md"
ADAPTER_NAME = "adapter_config.json"
MAX_CARD_BYTES = 1 << 20  # model cards are a few KiB to a few hundred KiB; only the front matter is parsed
MAX_FRONT_MATTER_BYTES = 64 << 10
MAX_BASE_MODELS = 64
MAX_NAME_CHARS = 200
RELATIONS = ("finetune", "adapter", "merge", "quantized")
# Prose that claims the weights were not initialised from anyone's model ("trained this model from scratch"),
# unless the sentence denies it ("was not trained from scratch", "instead of training from scratch").
_SCRATCH = re.compile(r"[^.\n]*\b(?:trained|pre-?trained|built|training|pre-?training)\b[^.\n]{0,60}?\bfrom[\s-]+scratch\b[^.\n]*",
                      re.IGNORECASE)
_DENIAL = re.compile(r"\b(?:not|never|no|without|instead|rather)\b|n't\b", re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    """One statement the checkpoint makes about its lineage, quoted as written, and where it was read."""

    key: str  # base_model | base_model_relation | license | from_scratch | adapter_base
    value: str
    where: str  # "README.md: base_model", "adapter_config.json: base_model_name_or_path"

    def quoted(self) -> str:
        return f'{self.where} says "{self.value}"'


@dataclass(frozen=True)
class ModelCard:
    """The lineage claims read from a checkpoint's card and adapter config (empty when it ships neither)."""

    base_models: tuple[Claim, ...] = ()
    relation: Claim | None = None
    license: Claim | None = None
    from_scratch: Claim | None = None
    files: tuple[str, ...] = ()  # the files the claims were read from

    @property
    def empty(self) -> bool:
        """True when the card claims nothing about lineage (a licence alone says nothing of where weights came from)."""
        return not (self.base_models or self.relation or self.from_scratch)

    def to_dict(self) -> dict[str, Any]:
        def c(claim: Claim | None) -> dict[str, str] | None:
            return None if claim is None else {"value": claim.value, "where": claim.where}
        return {"files": list(self.files), "base_model": [c(b) for b in self.base_models],
                "base_model_relation": c(self.relation), "license": c(self.license),
                "from_scratch": c(self.from_scratch)}


def card_from_dict(d: Any) -> ModelCard | None:
    """The inverse of `ModelCard.to_dict` (a saved report's `details.claims.card`); None when absent or malformed."""
    if not isinstance(d, dict):
        return None

    def c(key: str, v: Any) -> Claim | None:
        ok = isinstance(v, dict) and isinstance(v.get("value"), str) and isinstance(v.get("where"), str)
        return Claim(key, v["value"], v["where"]) if ok else None

    bases = d.get("base_model") if isinstance(d.get("base_model"), list) else []
    files = d.get("files") if isinstance(d.get("files"), list) else []
    return ModelCard(tuple(b for b in (c("base_model", v) for v in bases[:MAX_BASE_MODELS]) if b),
                     c("base_model_relation", d.get("base_model_relation")), c("license", d.get("license")),
                     c("from_scratch", d.get("from_scratch")), tuple(f for f in files if isinstance(f, str)))


def read_model_card(ckpt: Checkpoint) -> ModelCard:
    """The claims of a local checkpoint folder's README.md and adapter_config.json, or of an `hf://` repo's."""
    card = _side_file(ckpt, CARD_NAME)
    adapter = _side_file(ckpt, ADAPTER_NAME)
    return parse_claims(card, adapter)


def parse_claims(card: tuple[str, bytes] | None, adapter: tuple[str, bytes] | None) -> ModelCard:
    """Claims from the card's (name, bytes) and the adapter config's; either may be None."""
    bases: list[Claim] = []
    relation = license = scratch = None
    files: list[str] = []
    if card is not None:
        where, data = card
        files.append(where)
        text = _text(where, data)
        meta, body = front_matter(where, text)
        for value in _names(where, meta.get("base_model"), "base_model"):
            bases.append(Claim("base_model", value, f"{where}: base_model"))
        rel = meta.get("base_model_relation")
        if rel is not None:
            relation = Claim("base_model_relation", _scalar(where, rel, "base_model_relation"),
                             f"{where}: base_model_relation")
        lic = meta.get("license")
        if lic is not None:
            license = Claim("license", _scalar(where, lic, "license"), f"{where}: license")
        found = next((m for m in _SCRATCH.finditer(body) if not _DENIAL.search(m.group(0))), None)
        if found:
            scratch = Claim("from_scratch", " ".join(found.group(0).split())[:MAX_NAME_CHARS], f"{where}: prose")
    if adapter is not None:
        where, data = adapter
        files.append(where)
        try:
            config = json.loads(_text(where, data))
        except ValueError as exc:
            raise ModelCardError(where, f"not valid JSON ({exc.__class__.__name__})") from None
        if not isinstance(config, dict):
            raise ModelCardError(where, "not a JSON object")
        base = config.get("base_model_name_or_path")
        if base is not None:
            name = _scalar(where, base, "base_model_name_or_path")
            if name and all(b.value != name for b in bases):
                bases.append(Claim("base_model", name, f"{where}: base_model_name_or_path"))
            if relation is None:
                relation = Claim("base_model_relation", "adapter", f"{where}: (an adapter config)")
    return ModelCard(tuple(bases), relation, license, scratch, tuple(files))


def parse_claims_text(card: str | None, adapter: str | None = None) -> ModelCard:
    """Claims from a README.md text and an adapter_config.json text (for checking a card before publishing it)."""
    return parse_claims(None if card is None else (CARD_NAME, card.encode()),
                        None if adapter is None else (ADAPTER_NAME, adapter.encode()))


def front_matter(where: str, text: str) -> tuple[dict[str, Any], str]:
    """The YAML mapping between the leading `---` lines and the text after it ({} and the text when none)."""
    lines = text.split("\n", 1)
    if lines[0].strip() != "---" or len(lines) < 2:
        return {}, text
    end = re.search(r"^(?:---|\.\.\.)[ \t]*$", lines[1], re.MULTILINE)
    if end is None:
        raise ModelCardError(where, "front matter opened with '---' is never closed")
    block, body = lines[1][:end.start()], lines[1][end.end():]
    if len(block.encode()) > MAX_FRONT_MATTER_BYTES:
        raise ModelCardError(where, f"front matter longer than {MAX_FRONT_MATTER_BYTES:,} bytes")
    try:
        for event in yaml.parse(block, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):  # aliases can expand a small block exponentially
                raise ModelCardError(where, "front matter uses YAML aliases, which a model card does not need")
        meta = yaml.safe_load(block)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line = f"line {mark.line + 2}: " if mark is not None else ""
        raise ModelCardError(where, f"{line}invalid YAML front matter: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ModelCardError(where, f"invalid YAML front matter ({err.__class__.__name__})") from None
    if meta is None:
        return {}, body
    if not isinstance(meta, dict):
        raise ModelCardError(where, "front matter is not a mapping of keys to values")
    return meta, body


def _names(where: str, value: Any, key: str) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_BASE_MODELS:
        raise ModelCardError(where, f"{key}: more than {MAX_BASE_MODELS} entries")
    return [_scalar(where, v, key) for v in items]


def _scalar(where: str, value: Any, key: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ModelCardError(where, f"{key}: expected a string, got {type(value).__name__}")
    text = str(value).strip()
    if len(text) > MAX_NAME_CHARS:
        raise ModelCardError(where, f"{key}: longer than {MAX_NAME_CHARS} characters")
    return text


def _text(where: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelCardError(where, "not UTF-8 text") from None


def _side_file(ckpt: Checkpoint, name: str) -> tuple[str, bytes] | None:
    """(where, bytes) of a small file beside the checkpoint, at most MAX_CARD_BYTES read; None when absent."""
    root = ckpt.path
    if root.exists():
        folder = root if root.is_dir() else root.parent
        path = folder / name
        try:
            st = path.stat()  # follows links: the Hugging Face cache links snapshot files to its blobs
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise ModelCardError(str(path), "not a regular file")
        with path.open("rb") as handle:
            data = handle.read(MAX_CARD_BYTES + 1)
        return str(path), _bounded(str(path), data, name)
    client, snapshot = getattr(ckpt, "client", None), getattr(ckpt, "snapshot", None)
    if client is None or snapshot is None or name not in getattr(snapshot, "files", {}):
        return None
    where = f"{getattr(ckpt, 'uri', root)}/{name}"
    size = snapshot.files[name].size or 0
    data = client.read_range(snapshot, name, 0, min(size, MAX_CARD_BYTES + 1)) if size else b""
    return where, _bounded(where, data, name)


def _bounded(where: str, data: bytes, name: str) -> bytes:
    """A card longer than the bound is cut there (its front matter comes first); a config must fit whole."""
    if len(data) <= MAX_CARD_BYTES:
        return data
    if name == ADAPTER_NAME:
        raise ModelCardError(where, f"larger than {MAX_CARD_BYTES:,} bytes")
    return data[:MAX_CARD_BYTES].rsplit(b"\n", 1)[0]
