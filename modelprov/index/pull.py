"""Fingerprint Hub models into the index over HTTP range reads, pinned to a commit and resumable; many at once\nwith bounded concurrency, in threads or as Ray tasks (`pull_many`)."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from modelprov._hub import HubClient, HubRef, parse_hub_ref
from modelprov._inputs import load_json
from modelprov.errors import CheckpointError, ReferenceIndexError
from modelprov.findings import Reference
from modelprov.progress import ProgressFn
from modelprov.reader import open_hub_checkpoint
from modelprov.weights.fingerprint import ModelFingerprint, SketchSpec, fingerprint_checkpoint, sampled_fingerprint

from .catalog import catalogue_entry
from .store import ReferenceIndex, check_name

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
    job = pull_job(index, source, name=name, reference=reference, full=full)
    done = fingerprint_job(job, client or HubClient(), spec=spec, progress=progress)
    return _store(index, job, done, keep_work=keep_work)


@dataclass
class PullJob:
    """One repository to fingerprint, resolved against the index (catalogue fields, what is stored already)
    before any worker runs, so a worker needs no index."""

    source: str
    name: str
    reference: Reference
    full: bool
    work: str  # the folder its fetched byte ranges are kept in
    stored: dict[str, str] | None = None  # repo_id, commit and read mode of a reference of this name


@dataclass
class Fingerprinted:
    """What a worker returns: the result line and, unless skipped, the fingerprint to store."""

    result: PullResult
    reference: Reference | None = None
    fingerprint: ModelFingerprint | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


def pull_job(index: ReferenceIndex, source: str, *, name: str | None = None, reference: Reference | None = None,
             full: bool = False) -> PullJob:
    """The job for `source`: its reference name and catalogue fields, and what the index holds under that name."""
    ref = parse_hub_ref(source)
    catalogued = catalogue_entry(index, ref.repo_id)
    name = check_name(name or catalogued.get("name") or ref.repo_id.split("/")[-1])
    base = reference or Reference(name=name)
    fields = {k: catalogued.get(k) for k in ("family", "org", "country", "license")}
    merged = Reference(name=name, family=base.family or fields["family"], org=base.org or fields["org"],
                       country=base.country or fields["country"], license=base.license or fields["license"],
                       repo_id=ref.repo_id)
    return PullJob(source, name, merged, full, str(Path(index.root) / PULL_WORK_DIR / name), _stored(index, name))


def fingerprint_job(job: PullJob, client: HubClient, *, spec: SketchSpec | None = None,
                    progress: ProgressFn | None = None) -> Fingerprinted:
    """Fingerprint one repository over range reads (no index writes: safe in a thread or a Ray worker)."""
    ref = parse_hub_ref(job.source)
    snap = client.snapshot(ref)
    full = job.full
    mode = "full" if full else "sampled"
    stored = job.stored or {}
    if stored.get("repo_id") == ref.repo_id and stored.get("commit") == snap.commit and stored.get("mode") == mode:
        return Fingerprinted(PullResult(job.name, ref.repo_id, snap.commit, ref.uri(snap.commit), mode,
                                        int(stored.get("tensors", 0)), int(stored.get("parameters", 0)), 0, 0, 0,
                                        skipped=True))
    start_bytes, start_requests = client.stats.bytes, client.stats.requests
    ckpt = open_hub_checkpoint(HubRef(ref.repo_id, snap.commit, ref.subfolder).uri(), client=client,
                               cache_dir=Path(job.work))
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
        weights_bytes = sum(f.size for f in ckpt.files() if f.role == "weights")
    finally:
        ckpt.close()
    result = PullResult(job.name, ref.repo_id, snap.commit, ckpt.uri, mode, len(fp.tensors), fp.parameter_count,
                        weights_bytes, client.stats.bytes - start_bytes, client.stats.requests - start_requests)
    return Fingerprinted(result, replace(job.reference, revision=snap.commit), fp, files)


def _store(index: ReferenceIndex, job: PullJob, done: Fingerprinted, *, keep_work: bool = False,
           seal: bool = True) -> PullResult:
    """Add a worker's fingerprint to the index (the driver's only write) and drop its fetched ranges."""
    if done.fingerprint is not None and done.reference is not None:
        index.add_weights(done.reference, done.fingerprint, files=done.files, seal=seal)
    if not keep_work:
        shutil.rmtree(job.work, ignore_errors=True)
    return done.result


SEAL_EVERY = 16  # a long pull seals the index after this many references: an interruption loses at most these


def pull_many(index: ReferenceIndex, jobs: list[PullJob], *, concurrency: int = 4, ray: str | None = None,
              full: bool = False, client_factory: Callable[[], HubClient] = HubClient,
              progress: Callable[[int, int, str], None] | None = None) -> list[PullResult]:
    """Fingerprint many repositories concurrently (at most `concurrency` at a time, in threads, or as one Ray
    task per repository with `ray` = a cluster address or "auto" for a local Ray instance) and store them.

    Only this process writes the index: results are added as they arrive and sealed every SEAL_EVERY
    references and at the end, so an interrupted pull keeps what it stored and a rerun skips it (and resumes
    a half-fetched repository from its kept byte ranges). `progress(done, total, name)` counts repositories.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    results: dict[int, PullResult] = {}
    pending = 0

    def take(i: int, done: Fingerprinted) -> None:
        nonlocal pending
        results[i] = _store(index, jobs[i], done, seal=False)
        pending += done.fingerprint is not None
        if pending >= SEAL_EVERY:
            index.seal()
            pending = 0
        if progress is not None:
            progress(len(results), len(jobs), jobs[i].name)

    try:
        if ray:
            _run_on_ray(jobs, ray, concurrency, take)
        else:
            _run_in_threads(jobs, concurrency, client_factory, take)
    finally:
        if pending:
            index.seal()
    return [results[i] for i in range(len(jobs))]


def _run_in_threads(jobs: list[PullJob], concurrency: int, client_factory: Callable[[], HubClient],
                    take: Callable[[int, Fingerprinted], None]) -> None:
    """Workers fetch and fingerprint (network waits and numpy release the GIL); results are taken in this thread.
    At most `concurrency` jobs are submitted at a time and a taken future is dropped, so a long pull holds no
    more fingerprints than it runs at once."""
    queue = iter(enumerate(jobs))
    running: dict[Future[Fingerprinted], int] = {}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:

        def submit_next() -> None:
            for i, job in queue:
                running[pool.submit(fingerprint_job, job, client_factory())] = i
                return

        for _ in range(concurrency):
            submit_next()
        try:
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    take(running.pop(future), future.result())
                    submit_next()
        except BaseException:
            for future in running:
                future.cancel()
            raise


def _ray_fingerprint(job: PullJob) -> Fingerprinted:
    """One Ray task: a fresh client in the worker (HF_* settings come with the task's environment)."""
    return fingerprint_job(job, HubClient())


def _run_on_ray(jobs: list[PullJob], address: str, concurrency: int,
                take: Callable[[int, Fingerprinted], None]) -> None:
    """One Ray task per repository, at most `concurrency` in flight; `address` "auto" starts a local instance."""
    try:
        import ray  # deferred and optional: `pip install modelprov[ray]`; the default pulls need no Ray
    except ImportError:
        raise ReferenceIndexError(None, "--ray needs Ray: pip install 'modelprov[ray]'") from None
    package_root = str(Path(__file__).resolve().parents[2])  # workers import this same modelprov
    env = {k: v for k, v in os.environ.items() if k.startswith(("HF_", "HUGGING_FACE_", "MODELPROV_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "auto" else address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, runtime_env={"env_vars": env})
    try:
        task = ray.remote(max_retries=2)(_ray_fingerprint)
        queue = list(enumerate(jobs))
        running: dict[Any, int] = {}
        while queue or running:
            while queue and len(running) < concurrency:
                i, job = queue.pop(0)
                running[task.remote(job)] = i
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                take(running.pop(ref), ray.get(ref))
    finally:
        if started:
            ray.shutdown()


def _stored(index: ReferenceIndex, name: str) -> dict[str, str] | None:
    """Repo, commit, read mode and size of the stored reference `name`, if it came from the Hub."""
    for entry in index.entries:
        if entry.name == name and entry.kind == "weights" and entry.reference.repo_id:
            try:
                manifest = load_json(Path(index.root) / f"weights/{name}.json", ReferenceIndexError)
            except ReferenceIndexError:
                return None
            read = manifest.get("source", {}).get("read") if isinstance(manifest, dict) else None
            return {"repo_id": entry.reference.repo_id, "commit": entry.reference.revision or "",
                    "mode": {"full-read": "full", "sampled-rows": "sampled"}.get(str(read), ""),
                    "tensors": entry.summary.get("tensors", 0), "parameters": entry.summary.get("parameters", 0)}
    return None
