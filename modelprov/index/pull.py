"""Fingerprint Hub models into the index over HTTP range reads, pinned to a commit and resumable."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelprov._hub import HubClient, HubRef, parse_hub_ref
from modelprov._inputs import load_json
from modelprov.errors import CheckpointError, ReferenceIndexError
from modelprov.findings import Reference
from modelprov.progress import ProgressFn
from modelprov.reader import open_hub_checkpoint
from modelprov.weights.fingerprint import SketchSpec, fingerprint_checkpoint, sampled_fingerprint

from .catalog import catalogue_entry
from .store import IndexEntry, ReferenceIndex, check_name

PULL_WORK_DIR = ".pull"  # inside the index folder; hidden, so the index digest ignores it


@dataclass
class PullResult:
    """One reference pulled from the Hub: where from (pinned commit), what was stored, bytes read."""

    name: str
    repo_id: str
    commit: str
    uri: str
    mode: str  # "sampled" (sketch rows only) | "full" (every byte, digests of every tensor)
    tensors: int
    parameters: int
    checkpoint_bytes: int
    bytes_transferred: int
    requests: int
    skipped: bool = False  # already in the index at this commit

    @property
    def fraction(self) -> float:
        return self.bytes_transferred / self.checkpoint_bytes if self.checkpoint_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items()}, "fraction": round(self.fraction, 6)}


def pull_reference(index: ReferenceIndex, source: str, *, name: str | None = None, reference: Reference | None = None,
                   full: bool = False, spec: SketchSpec | None = None, client: HubClient | None = None,
                   progress: ProgressFn | None = None, keep_work: bool = False) -> PullResult:
    """Fingerprint the Hub model `source` (`REPO_ID[@REV][/subfolder]`) into `index` without downloading it.

    `name` defaults to the catalogue's name for the repo, else the repo's name; family, org, country and
    license come from `reference` where set, else from the catalogue.
    The revision is pinned to its commit and recorded. Fetched byte ranges are kept in
    `<index>/.pull/<name>/` until the reference is stored, so an interrupted pull resumes where it stopped.
    """
    ref = parse_hub_ref(source)
    client = client or HubClient()
    catalogued = catalogue_entry(index, ref.repo_id)
    name = check_name(name or catalogued.get("name") or ref.repo_id.split("/")[-1])
    snap = client.snapshot(ref)
    mode = "full" if full else "sampled"
    done = _pulled_entry(index, name, ref.repo_id, snap.commit, mode)
    if done is not None:
        return PullResult(name, ref.repo_id, snap.commit, ref.uri(snap.commit), mode, done.summary.get("tensors", 0),
                          done.summary.get("parameters", 0), 0, 0, 0, skipped=True)
    work = Path(index.root) / PULL_WORK_DIR / name
    start_bytes, start_requests = client.stats.bytes, client.stats.requests
    ckpt = open_hub_checkpoint(HubRef(ref.repo_id, snap.commit, ref.subfolder).uri(), client=client, cache_dir=work)
    if ckpt.format == "gguf":  # llama.cpp's q/k row permutation is undone on whole tensors: read everything
        full, mode = True, "full"
    try:
        if full:
            fp = fingerprint_checkpoint(ckpt, spec, progress=progress)
            fp.source["read"] = "full-read"
        else:
            fp = sampled_fingerprint(ckpt, spec, progress=progress)
        if not fp.tensors:
            raise CheckpointError(ckpt.uri, "checkpoint holds no floating-point tensors to fingerprint")
        fp.source["hub"] = {"repo_id": ref.repo_id, "commit": snap.commit, "requested_revision": ref.revision,
                            "subfolder": ref.subfolder}
        files = [{"name": f.path.as_posix(), "role": f.role, "size": f.size,
                  "sha256": snap.files[f.path.as_posix()].sha256}
                 for f in ckpt.files() if f.role == "weights"]
        base = reference or Reference(name=name)
        fields = {k: catalogued.get(k) for k in ("family", "org", "country", "license")}
        merged = Reference(name=name, family=base.family or fields["family"], org=base.org or fields["org"],
                           country=base.country or fields["country"], license=base.license or fields["license"],
                           repo_id=ref.repo_id, revision=snap.commit)
        index.add_weights(merged, fp, files=files)
        weights_bytes = sum(f.size for f in ckpt.files() if f.role == "weights")
    finally:
        ckpt.close()
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return PullResult(name, ref.repo_id, snap.commit, ckpt.uri, mode, len(fp.tensors),
                      fp.parameter_count, weights_bytes, client.stats.bytes - start_bytes,
                      client.stats.requests - start_requests)


def _pulled_entry(index: ReferenceIndex, name: str, repo_id: str, commit: str, mode: str) -> IndexEntry | None:
    """The index entry `name` if it was already pulled from this repo at this commit in this mode."""
    for entry in index.entries:
        if entry.name == name and entry.kind == "weights" and entry.reference.repo_id == repo_id \
                and entry.reference.revision == commit:
            try:
                manifest = load_json(Path(index.root) / f"weights/{name}.json", ReferenceIndexError)
            except ReferenceIndexError:
                return None
            read = manifest.get("source", {}).get("read")
            return entry if read == ("full-read" if mode == "full" else "sampled-rows") else None
    return None
