"""`index pull --family/--catalog`: many repositories at once (bounded concurrency, resumable, one progress bar),
in threads or as one Ray task per repository on a local Ray instance (issue 18)."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelprov.cli.main import app
from modelprov.findings import Reference
from modelprov.index import PullJob, PullResult, ReferenceIndex, pull_many
from modelprov.index import pull as pull_module
from modelprov.reader import TensorInfo
from modelprov.weights import ModelFingerprint, SketchSpec
from modelprov.weights.fingerprint import describe_tensor
from tests.hub.hub_server import HubRepo

REPOS = 104
FAMILY = "synthetic-tiny"


def _tiny_model(folder: Path, seed: int) -> Path:
    """A two-layer Llama-shaped model (width 64) with weights of its own."""
    rng = np.random.default_rng(seed)
    tensors = {"model.embed_tokens.weight": rng.standard_normal((256, 64), dtype=np.float32) * 0.02}
    for layer in range(2):
        pre = f"model.layers.{layer}."
        for part in ("q_proj", "k_proj", "v_proj", "o_proj"):
            tensors[f"{pre}self_attn.{part}.weight"] = rng.standard_normal((64, 64), dtype=np.float32) * 0.02
        tensors[f"{pre}mlp.up_proj.weight"] = rng.standard_normal((128, 64), dtype=np.float32) * 0.02
        tensors[f"{pre}mlp.down_proj.weight"] = rng.standard_normal((64, 128), dtype=np.float32) * 0.02
        tensors[f"{pre}input_layernorm.weight"] = np.ones(64, dtype=np.float32)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64,
                                                    "num_attention_heads": 4, "num_key_value_heads": 4}))
    return folder


@pytest.fixture(scope="module")
def tiny_repos(hub_server, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """REPOS synthetic repositories on the test Hub server, and their catalogue."""
    root = tmp_path_factory.mktemp("tiny-repos")
    ids = []
    for i in range(REPOS):
        repo_id = f"synthetic-org/tiny-{i:03d}"
        folder = _tiny_model(root / f"tiny-{i:03d}", seed=100 + i)
        hub_server.add(HubRepo(repo_id, {p.name: p for p in folder.iterdir()}))
        ids.append(repo_id)
    hub_server.warm()
    return ids


def _catalogued_index(folder: Path, repo_ids: list[str]) -> Path:
    folder.mkdir(parents=True)
    rows = [f'[[model]]\nname = "tiny-{i:03d}"\nfamily = "{FAMILY}"\nrepo_id = "{r}"\norg = "Synthetic"\n'
            f'country = "US"\nlicense = "Apache-2.0"\nfingerprinted = false\n' for i, r in enumerate(repo_ids)]
    (folder / "catalog.toml").write_text("\n".join(rows))
    return folder


def _stored(folder: Path) -> dict[str, str]:
    idx = ReferenceIndex.load(folder)
    return {e.name: idx.fingerprint(e.name).tensors[0].digests.get("f32", "") for e in idx.entries_of("weights")}


def test_family_pull_is_concurrent_sealed_and_resumable(hub, tiny_repos, tmp_path, cli):
    index = _catalogued_index(tmp_path / "index", tiny_repos)
    first = cli.invoke(app, ["index", "pull", "tiny-000", "--index", str(index)])  # no such repository: one line
    assert first.exit_code == 2 and "Traceback" not in first.stderr
    one = cli.invoke(app, ["index", "pull", tiny_repos[7], "--index", str(index)])
    assert one.exit_code == 0, one.stderr
    r = cli.invoke(app, ["index", "pull", "--family", FAMILY, "--concurrency", "8", "--index", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["pulled"]) == REPOS
    assert [p["name"] for p in out["pulled"] if p["skipped"]] == ["tiny-007"]  # stored before: not fetched again
    assert r.stderr.count("Traceback") == 0
    idx = ReferenceIndex.load(index)
    idx.verify()
    assert len(idx.entries_of("weights")) == REPOS and idx.retrieval() is not None
    assert idx.entry("tiny-042").reference.license == "Apache-2.0"
    assert not (index / ".pull").exists() or not any((index / ".pull").iterdir())
    again = cli.invoke(app, ["index", "pull", "--catalog", "--index", str(index), "--json"])
    assert again.exit_code == 0 and all(p["skipped"] for p in json.loads(again.stdout)["pulled"])


def test_ray_pull_runs_one_task_per_repository_on_a_local_instance(hub, tiny_repos, tmp_path, cli):
    pytest.importorskip("ray")
    threads = _catalogued_index(tmp_path / "threads", tiny_repos)
    on_ray = _catalogued_index(tmp_path / "ray", tiny_repos)
    assert cli.invoke(app, ["index", "pull", "--family", FAMILY, "--index", str(threads)]).exit_code == 0
    r = cli.invoke(app, ["index", "pull", "--family", FAMILY, "--ray", "auto", "--concurrency", "16",
                         "--index", str(on_ray), "--json"])
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["pulled"]) == REPOS
    ReferenceIndex.load(on_ray).verify()
    assert _stored(on_ray) == _stored(threads) and len(_stored(on_ray)) == REPOS


def test_a_long_pull_holds_no_more_fingerprints_than_it_runs_at_once(tmp_path, monkeypatch):
    """Memory of a pull of many repositories is bounded by its concurrency: each fingerprint is dropped once stored
    (all 40 were kept until the end when every job was submitted at once and its future kept)."""
    made: list[weakref.ref[ModelFingerprint]] = []

    def fingerprint_job(job: PullJob, client: object, **_: object) -> pull_module.Fingerprinted:
        t = describe_tensor(TensorInfo("model.layers.0.mlp.up_proj.weight", "F32", (64, 32), tmp_path, (0, 0)))
        t.sketch_shape = (64, 32)
        sketches = {t.name: np.random.default_rng(len(made)).standard_normal((64, 32), dtype=np.float32)}
        fp = ModelFingerprint([t], sketches, SketchSpec(), {"format": "safetensors"})
        made.append(weakref.ref(fp))
        result = PullResult(job.name, f"org/{job.name}", "0" * 40, "", "sampled", 1, t.numel, 8192, 8192, 1)
        return pull_module.Fingerprinted(result, job.reference, fp)

    monkeypatch.setattr(pull_module, "fingerprint_job", fingerprint_job)
    index = ReferenceIndex.create(tmp_path / "index")
    jobs = [PullJob(f"org/m{i:02d}", f"m{i:02d}", Reference(name=f"m{i:02d}"), False, str(tmp_path / "work" / str(i)))
            for i in range(40)]
    held: list[int] = []

    def progress(done: int, total: int, name: str) -> None:
        gc.collect()
        held.append(sum(r() is not None for r in made))

    results = pull_many(index, jobs, concurrency=2, client_factory=lambda: None, progress=progress)
    assert [r.name for r in results] == [j.name for j in jobs] and len(held) == 40
    assert len(ReferenceIndex.load(index.root).entries_of("weights")) == 40
    assert max(held) <= 2 + 1  # the jobs in flight and the one being stored
