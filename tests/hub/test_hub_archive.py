"""`index export`/`import` for air-gapped reviewers and `index fetch` of an index published as a Hub dataset."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from modelprov.errors import CheckpointError, ReferenceIndexError
from modelprov._hub import HubClient, RetryPolicy
from modelprov.index import export_index, fetch_index, import_index, pull_reference
from modelprov.index import ReferenceIndex
from tests.hub.conftest import TINY_REPO
from tests.hub.hub_server import HubRepo

FAST = RetryPolicy(max_retries=2, base_wait=0.01, max_wait=0.02)


@pytest.fixture(scope="module")
def built_index(hub_server, tmp_path_factory) -> Path:
    """An index holding two MiniLM layers pulled from the test Hub (built once; tests copy it)."""
    idx = ReferenceIndex.create(tmp_path_factory.mktemp("built") / "index")
    client = HubClient(endpoint=hub_server.url, token=False, retry=FAST)
    pull_reference(idx, f"hf://{TINY_REPO}", name="smol-tower", client=client)
    return idx.root


@pytest.fixture()
def small_index(built_index, tmp_path) -> Path:
    return Path(shutil.copytree(built_index, tmp_path / "built"))


def test_export_is_reproducible_and_import_installs_a_verified_copy(small_index, tmp_path):
    a = export_index(small_index, tmp_path / "a.tar")
    b = export_index(small_index, tmp_path / "b.tar")
    assert a.sha256 == b.sha256 and (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert (tmp_path / "a.tar.sha256").read_text().split()[0] == a.sha256.split(":")[1]
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert not any(n.startswith(".") for n in tar.getnames()) and "index.json" in tar.getnames()
    got = import_index(tmp_path / "a.tar", tmp_path / "installed")
    installed = ReferenceIndex.load(tmp_path / "installed")
    installed.verify()
    assert got.index_digest == installed.digest == ReferenceIndex.load(small_index).digest
    assert installed.fingerprint("smol-tower").tensors == ReferenceIndex.load(small_index).fingerprint("smol-tower").tensors


def test_import_refuses_a_tampered_archive_and_installs_nothing(small_index, tmp_path):
    export_index(small_index, tmp_path / "a.tar")
    data = bytearray((tmp_path / "a.tar").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "a.tar").write_bytes(bytes(data))
    with pytest.raises(ReferenceIndexError, match="digest mismatch"):
        import_index(tmp_path / "a.tar", tmp_path / "installed")
    assert not (tmp_path / "installed").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".installed")]


def test_import_needs_a_digest_and_an_empty_destination(small_index, tmp_path):
    result = export_index(small_index, tmp_path / "a.tar")
    (tmp_path / "a.tar.sha256").unlink()
    with pytest.raises(ReferenceIndexError, match="no digest to verify"):
        import_index(tmp_path / "a.tar", tmp_path / "installed")
    import_index(tmp_path / "a.tar", tmp_path / "installed", digest=result.sha256)
    with pytest.raises(ReferenceIndexError, match="not empty"):
        import_index(tmp_path / "a.tar", tmp_path / "installed", digest=result.sha256)
    import_index(tmp_path / "a.tar", tmp_path / "installed", digest=result.sha256, force=True)
    ReferenceIndex.load(tmp_path / "installed").verify()


def test_import_refuses_an_archive_whose_index_digest_does_not_hold(small_index, tmp_path):
    (small_index / "weights" / "smol-tower.json").write_text("{}")  # content no longer matches index.json
    with pytest.raises(ReferenceIndexError, match="digest mismatch"):
        export_index(small_index, tmp_path / "a.tar")


def test_fetch_downloads_a_published_index_and_verifies_it(hub, small_index, tmp_path):
    exported = export_index(small_index, tmp_path / "pub" / "reference-index.tar")
    repo = HubRepo("test-org/provenance-index", {
        "reference-index.tar": tmp_path / "pub" / "reference-index.tar",
        "reference-index.tar.sha256": tmp_path / "pub" / "reference-index.tar.sha256",
    }, repo_type="dataset")
    hub.add(repo)
    got = fetch_index("test-org/provenance-index", tmp_path / "fetched", digest=exported.sha256,
                      client=HubClient(retry=FAST))
    ReferenceIndex.load(tmp_path / "fetched").verify()
    assert got.source["commit"] == repo.sha
    assert got.source["verified_against"] == ["--digest", "Hub LFS sha256", "reference-index.tar.sha256"]
    with pytest.raises(ReferenceIndexError, match="digest mismatch with --digest"):
        fetch_index("test-org/provenance-index", tmp_path / "other", digest="sha256:" + "0" * 64,
                    client=HubClient(retry=FAST))
    assert not (tmp_path / "other").exists()
    with pytest.raises(CheckpointError, match="repository not found"):
        fetch_index("test-org/no-such-index", tmp_path / "other", client=HubClient(retry=FAST))
