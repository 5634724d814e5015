"""`index pull` stores the fingerprint a local `index add` stores, reading a fraction of the bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelprov.findings import Reference
from modelprov._hub import HubClient, RetryPolicy
from modelprov.index import pull_reference
from modelprov.index import ReferenceIndex, add_checkpoint
from tests.hub.conftest import MINILM_REPO, TINY_REPO

FAST = RetryPolicy(max_retries=3, base_wait=0.01, max_wait=0.02)
NAME = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def local_minilm(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ReferenceIndex:
    """The MiniLM fingerprint a local `index add` writes."""
    idx = ReferenceIndex.create(tmp_path_factory.mktemp("local-index"))
    add_checkpoint(idx, minilm_dir, Reference(name=NAME))
    return idx


def _descriptor(t) -> dict:
    d = t.to_dict()
    return {k: v for k, v in d.items() if k not in ("statistics", "digests")}


def test_sampled_pull_equals_local_add_on_sketches_and_reads_a_fraction(hub, local_minilm, tmp_path):
    idx = ReferenceIndex.create(tmp_path / "index")
    result = pull_reference(idx, MINILM_REPO, name=NAME, client=HubClient(retry=FAST))
    local, remote = ReferenceIndex.load(local_minilm.root).fingerprint(NAME), ReferenceIndex.load(idx.root).fingerprint(NAME)
    assert [_descriptor(t) for t in remote.tensors] == [_descriptor(t) for t in local.tensors]
    for t in local.tensors:
        np.testing.assert_array_equal(remote.sketches[t.name], local.sketches[t.name])
        r = remote.tensor(t.name)
        if r.digests:  # read whole (no more rows than the sketch takes): exact statistics and digests
            assert r.digests == t.digests and r.statistics == pytest.approx(t.statistics, rel=1e-9, abs=1e-12)
    assert sum(bool(remote.tensor(t.name).digests) for t in local.tensors) > len(local.tensors) // 2
    served = hub.state.total_bytes(MINILM_REPO)
    assert result.bytes_transferred == served - hub.state.bytes_served[(MINILM_REPO, "config.json")] or \
        result.bytes_transferred == served
    print(f"\nsampled pull of {MINILM_REPO}: {served} of {result.checkpoint_bytes} bytes = {result.fraction:.1%}")
    assert result.fraction < 0.8  # MiniLM's 384-row layers are read whole; its 30522-row embedding is sampled
    stored = ReferenceIndex.load(idx.root)
    stored.verify()
    ref = stored.entry(NAME).reference
    assert ref.repo_id == MINILM_REPO and ref.revision == hub.repos[("model", MINILM_REPO)].sha
    manifest = json.loads((idx.root / f"weights/{NAME}.json").read_text())
    assert manifest["source"]["hub"]["commit"] == ref.revision
    assert manifest["source"]["files"][0]["sha256"] == json.loads(
        (local_minilm.root / f"weights/{NAME}.json").read_text())["source"]["files"][0]["sha256"]
    assert not (idx.root / ".pull" / NAME).exists()  # work dir removed once stored


def test_full_pull_equals_local_add_exactly(hub, local_minilm, tmp_path):
    idx = ReferenceIndex.create(tmp_path / "index")
    result = pull_reference(idx, MINILM_REPO, name=NAME, full=True, client=HubClient(retry=FAST))
    local, remote = ReferenceIndex.load(local_minilm.root).fingerprint(NAME), ReferenceIndex.load(idx.root).fingerprint(NAME)
    assert [t.to_dict() for t in remote.tensors] == [t.to_dict() for t in local.tensors]
    for t in local.tensors:
        np.testing.assert_array_equal(remote.sketches[t.name], local.sketches[t.name])
    assert result.fraction >= 1.0


def test_interrupted_pull_resumes_without_refetching(hub, tmp_path):
    idx = ReferenceIndex.create(tmp_path / "index")
    client = HubClient(retry=RetryPolicy(max_retries=0, base_wait=0.01))
    calls = {"n": 0}

    def stop_halfway(stage: str, done: int, total: int, item: str) -> None:
        calls["n"] += 1
        if calls["n"] == 12:
            hub.state.fail_next = 10**6  # the Hub goes away
    with pytest.raises(Exception):
        pull_reference(idx, TINY_REPO, name="tiny", client=client, progress=stop_halfway)
    first = dict(hub.state.bytes_served)
    assert (idx.root / ".pull" / "tiny" / "ranges").is_dir()
    hub.state.fail_next = 0
    hub.state.bytes_served.clear()
    result = pull_reference(idx, TINY_REPO, name="tiny", client=HubClient(retry=FAST))
    fresh = ReferenceIndex.create(tmp_path / "fresh")
    hub.state.bytes_served.clear()
    whole = pull_reference(fresh, TINY_REPO, name="tiny", client=HubClient(retry=FAST))
    assert 0 < result.bytes_transferred < whole.bytes_transferred  # the resumed run skipped what it had
    assert sum(first.values()) + result.bytes_transferred >= whole.bytes_transferred
    a = ReferenceIndex.load(idx.root).fingerprint("tiny")
    b = ReferenceIndex.load(fresh.root).fingerprint("tiny")
    assert [t.to_dict() for t in a.tensors] == [t.to_dict() for t in b.tensors]


def test_pull_again_at_the_same_commit_is_skipped(hub, tmp_path):
    idx = ReferenceIndex.create(tmp_path / "index")
    pull_reference(idx, f"hf://{TINY_REPO}", name="tiny", client=HubClient(retry=FAST))
    version = ReferenceIndex.load(idx.root).version
    hub.state.bytes_served.clear()
    again = pull_reference(ReferenceIndex.load(idx.root), f"hf://{TINY_REPO}", name="tiny",
                           client=HubClient(retry=FAST))
    assert again.skipped and ReferenceIndex.load(idx.root).version == version
    assert hub.state.total_bytes() == 0  # only the commit was looked up
