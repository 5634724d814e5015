"""The catalogue of public models (`catalog.toml`): families, Hub repo ids, organisation, country, licence."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from modelprov.errors import ReferenceIndexError

from .store import CATALOG_FILE, ReferenceIndex, default_index_dir, load_toml


def catalogue_models(index: ReferenceIndex) -> list[dict[str, Any]]:
    """`[[model]]` entries of the index's catalog.toml, or of the shipped catalogue when the index has none."""
    models = index.catalog().get("model", [])
    shipped = default_index_dir() / CATALOG_FILE
    if not models and shipped.is_file():
        models = load_toml(shipped).get("model", [])
    return list(models)


def catalogue_entry(index: ReferenceIndex, repo_id: str) -> dict[str, Any]:
    """The catalogue entry of Hub repo `repo_id`, or {} when it is not catalogued."""
    for model in catalogue_models(index):
        if model.get("repo_id") == repo_id:
            return model
    return {}


def catalogue_source(model: dict[str, Any]) -> str:
    """`REPO_ID[@REVISION][/subfolder]` of a catalogue entry (keys `repo_id`, optional `revision`, `subfolder`)."""
    text = model["repo_id"] + (f"@{quote(str(model['revision']), safe='')}" if model.get("revision") else "")
    return text + (f"/{model['subfolder']}" if model.get("subfolder") else "")


def family_sources(index: ReferenceIndex, family: str) -> list[dict[str, Any]]:
    """Catalogue models of `family` (case-insensitive) that name a Hub repo: `name`, `repo_id`, `revision`."""
    catalogue = catalogue_models(index)
    models = [m for m in catalogue if str(m.get("family", "")).lower() == family.lower() and m.get("repo_id")]
    if not models:
        known = sorted({str(m.get("family")) for m in catalogue if m.get("family")})
        raise ReferenceIndexError(Path(index.root) / CATALOG_FILE,
                                  f"no catalogued family {family!r} with a repo_id (known: {', '.join(known) or 'none'})")
    return models


def catalogue_sources(index: ReferenceIndex) -> list[dict[str, Any]]:
    """Every catalogue model that names a Hub repo (what `index pull --catalog` fingerprints)."""
    models = [m for m in catalogue_models(index) if m.get("repo_id")]
    if not models:
        raise ReferenceIndexError(Path(index.root) / CATALOG_FILE, "the catalogue names no Hub repositories")
    return models
