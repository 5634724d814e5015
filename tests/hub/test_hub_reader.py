"""The Hub checkpoint reads the same tensors and rows as the local reader, over few ranged bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelprov.errors import CheckpointError
from modelprov.weights.fingerprint import SketchSpec, sample_indices
from modelprov._hub import HubClient, RetryPolicy, parse_hub_ref
from modelprov.reader import open_checkpoint
from modelprov.reader import open_hub_checkpoint
from tests.hub.conftest import MINILM_REPO, SHARDED_REPO
from tests.hub.hub_server import HubRepo

FAST = RetryPolicy(max_retries=3, base_wait=0.01, max_wait=0.02)


def _client(**kw) -> HubClient:
    return HubClient(retry=FAST, **kw)


def _layout(ckpt) -> list[tuple]:
    return [(t.name, t.dtype, t.shape, Path(t.file).name, t.byte_range) for t in ckpt.tensors()]


@pytest.mark.parametrize("repo_fixture", ["minilm", "sharded"])
def test_remote_tensors_and_rows_equal_local(hub, repo_fixture, minilm_dir, sharded_dir):
    repo, local_dir = {"minilm": (MINILM_REPO, minilm_dir), "sharded": (SHARDED_REPO, sharded_dir)}[repo_fixture]
    remote = open_hub_checkpoint(f"hf://{repo}", client=_client())
    local = open_checkpoint(local_dir)
    assert _layout(remote) == _layout(local)
    assert remote.config == local.config
    from modelprov._hashing import sha256_file
    assert {f.path.as_posix(): remote.known_sha256[f.path.as_posix()] for f in remote.files() if f.role == "weights"} \
        == {f.path.relative_to(local_dir).as_posix(): sha256_file(f.path).sha256 for f in local.files() if f.role == "weights"}
    rng = np.random.default_rng(0)
    for info in list(remote.tensors())[::3]:  # every dtype, shape kind and shard is among them
        n = info.rows
        picks = rng.integers(-n, n, size=min(n, 9))  # unsorted, negative, possibly repeated rows
        for rows in (picks, slice(0, min(n, 5)), slice(1, min(n, 40), 3)):
            np.testing.assert_array_equal(remote.read_rows(info.name, rows), local.read_rows(info.name, rows))


def test_sub_model_folder_tensors_are_prefixed_and_bf16_decodes(hub, sharded_dir):
    ckpt = open_hub_checkpoint(f"hf://{SHARDED_REPO}", client=_client())
    tower = [t for t in ckpt.tensors() if t.name.startswith("vision_tower.")]
    assert tower and all(t.dtype == "BF16" and str(t.file) == "vision_tower/model.safetensors" for t in tower)
    only_tower = open_hub_checkpoint(f"hf://{SHARDED_REPO}/vision_tower", client=_client())
    assert {t.name for t in only_tower.tensors()} == {t.name[len("vision_tower."):] for t in tower}
    name = "model.embed_tokens.weight"
    np.testing.assert_array_equal(only_tower.read_rows(name, [3, 4, 5, 900]),
                                  ckpt.read_rows("vision_tower." + name, [3, 4, 5, 900]))


def _sample_every_tensor(ckpt, only: str = "") -> None:
    for info in ckpt.tensors():
        if only in info.name:
            ckpt.read_rows(info.name, sample_indices(info.rows, SketchSpec().rows))


def test_sampled_rows_read_exactly_their_bytes(hub):
    ckpt = open_hub_checkpoint(f"hf://{SHARDED_REPO}/vision_tower", client=_client(), max_gap_bytes=0)
    header_bytes = hub.state.bytes_served[(SHARDED_REPO, "vision_tower/model.safetensors")]
    _sample_every_tensor(ckpt, only="embed_tokens")
    row_bytes = [min(t.rows, SketchSpec().rows) * t.nbytes // t.rows for t in ckpt.tensors() if "embed_tokens" in t.name]
    served = hub.state.bytes_served[(SHARDED_REPO, "vision_tower/model.safetensors")] - header_bytes
    assert served == sum(row_bytes)
    embed = ckpt.tensor("model.embed_tokens.weight")  # 49152 rows, 256 sampled
    assert embed.rows > 100 * SketchSpec().rows


def test_sampled_rows_are_a_small_fraction_of_a_checkpoint(hub):
    ckpt = open_hub_checkpoint(f"hf://{SHARDED_REPO}/vision_tower", client=_client())  # default gap merging
    _sample_every_tensor(ckpt)
    weights = sum(f.size for f in ckpt.files() if f.role == "weights")
    served = sum(n for (repo, name), n in hub.state.bytes_served.items()
                 if repo == SHARDED_REPO and name.endswith(".safetensors"))
    assert served == sum(n for name, n in ckpt.client.stats.per_file.items() if name.endswith(".safetensors"))
    fraction = served / weights
    print(f"\nsampled rows of {SHARDED_REPO}: {served} of {weights} bytes = {fraction:.1%}")
    # SmolLM2's 576-row layers are sampled almost whole (256 rows); its 49152-row embedding is not
    assert fraction < 0.3


def test_consecutive_rows_are_one_ranged_get(hub):
    ckpt = open_hub_checkpoint(f"hf://{MINILM_REPO}", client=_client(), max_gap_bytes=0)
    name = "embeddings.word_embeddings.weight"
    info = ckpt.tensor(name)
    before = len(hub.state.requests)
    ckpt.read_rows(name, [10, 11, 12, 13, 40, 41])
    ranges = [r for _, path, r in hub.state.requests[before:] if path.endswith("model.safetensors")]
    row_bytes = info.row_length * 4
    first = info.byte_range[0]
    assert sorted(ranges) == sorted([
        f"bytes={first + 10 * row_bytes}-{first + 14 * row_bytes - 1}",
        f"bytes={first + 40 * row_bytes}-{first + 42 * row_bytes - 1}",
    ])


def test_nearby_runs_merge_into_one_get_and_still_return_only_the_rows_asked(hub, minilm_dir):
    name = "embeddings.word_embeddings.weight"  # 1536-byte rows: a 64 KiB gap is 42 rows
    ckpt = open_hub_checkpoint(f"hf://{MINILM_REPO}", client=_client(), max_gap_bytes=64 * 1024)
    before = len(hub.state.requests)
    rows = [50, 10, 30, 31, 5000]
    got = ckpt.read_rows(name, rows)
    gets = [r for _, path, r in hub.state.requests[before:] if path.endswith("model.safetensors")]
    assert len(gets) == 2  # rows 10..50 in one GET, row 5000 in another
    np.testing.assert_array_equal(got, open_checkpoint(minilm_dir).read_rows(name, rows))


def test_revision_is_pinned_to_the_commit(hub):
    sha = hub.repos[("model", MINILM_REPO)].sha
    ckpt = open_hub_checkpoint(f"hf://{MINILM_REPO}@main", client=_client())
    assert ckpt.snapshot.commit == sha and ckpt.uri == f"hf://{MINILM_REPO}@{sha}"
    resolves = {path for method, path, _ in hub.state.requests if "/resolve/" in path}
    assert resolves and all(f"/resolve/{sha}/" in p for p in resolves)
    assert open_hub_checkpoint(f"hf://{MINILM_REPO}@{sha}", client=_client()).snapshot.commit == sha


@pytest.mark.parametrize("uri, problem", [
    (f"hf://{MINILM_REPO}@no-such-branch", "revision not found"),
    ("hf://nobody/nothing", "repository not found"),
    (f"hf://{MINILM_REPO}/no_such_folder", "no *.safetensors"),
])
def test_missing_repo_revision_or_folder_is_one_line_error(hub, uri, problem):
    with pytest.raises(CheckpointError) as err:
        open_hub_checkpoint(uri, client=_client())
    assert problem in err.value.one_line() and "\n" not in err.value.one_line()


def test_malformed_remote_header_is_reported_by_the_local_validator(hub, tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes((10**6).to_bytes(8, "little") + b"{}")  # header length beyond the file
    hub.add(HubRepo("test-org/broken", {"model.safetensors": bad}))
    with pytest.raises(CheckpointError) as err:
        open_checkpoint("hf://test-org/broken")
    assert "hf://test-org/broken@" in err.value.one_line() and "header length" in err.value.one_line()


def test_token_is_sent_as_bearer(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_secret")
    ckpt = open_hub_checkpoint(f"hf://{MINILM_REPO}", client=_client())
    ckpt.read_rows(next(iter(ckpt.tensors())).name)
    assert hub.state.authorization and set(hub.state.authorization) == {"Bearer hf_test_secret"}


def test_offline_mode_is_a_clear_error_without_requests(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(f"hf://{MINILM_REPO}")
    assert "HF_HUB_OFFLINE" in err.value.one_line()
    assert hub.state.requests == []


def test_transient_server_errors_are_retried(hub):
    hub.state.fail_next = 2  # repo info fails twice, then succeeds
    ckpt = open_hub_checkpoint(f"hf://{MINILM_REPO}", client=_client())
    hub.state.fail_next = 2  # and a ranged read fails twice
    name = next(iter(ckpt.tensors())).name
    np.testing.assert_array_equal(ckpt.read_rows(name), open_checkpoint(hub.repos[("model", MINILM_REPO)].files["model.safetensors"]).read_rows(name))
    codes = [r for r in hub.state.requests]
    assert len(codes) >= 4


def test_persistent_server_errors_give_up_with_one_line(hub):
    ckpt = open_hub_checkpoint(f"hf://{MINILM_REPO}", client=_client())
    hub.state.fail_next = 100
    with pytest.raises(CheckpointError) as err:
        ckpt.read_rows(next(iter(ckpt.tensors())).name)
    assert "HTTP 503" in err.value.one_line()


def test_cache_dir_makes_a_rerun_fetch_no_row_bytes(hub, tmp_path):
    name = "embeddings.word_embeddings.weight"
    first = open_hub_checkpoint(f"hf://{MINILM_REPO}", client=_client(), cache_dir=tmp_path / "work")
    want = first.read_rows(name, [5, 6, 7, 1000])
    hub.state.bytes_served.clear()
    again = open_hub_checkpoint(f"hf://{MINILM_REPO}", client=_client(), cache_dir=tmp_path / "work")
    np.testing.assert_array_equal(again.read_rows(name, [5, 6, 7, 1000]), want)
    assert hub.state.bytes_served[(MINILM_REPO, "model.safetensors")] == 0  # header and rows came from the cache


@pytest.mark.parametrize("text, expected", [
    ("hf://Qwen/Qwen2.5-VL-7B-Instruct", ("Qwen/Qwen2.5-VL-7B-Instruct", None, "", "model")),
    ("hf://Qwen/Qwen2.5-VL-7B-Instruct@abc123/visual", ("Qwen/Qwen2.5-VL-7B-Instruct", "abc123", "visual", "model")),
    ("hf://org/name@refs%2Fpr%2F1/a/b", ("org/name", "refs/pr/1", "a/b", "model")),
    ("gpt2@main", ("gpt2", "main", "", "model")),
    ("hf://datasets/org/index@v1", ("org/index", "v1", "", "dataset")),
])
def test_parse_hub_ref(text, expected):
    ref = parse_hub_ref(text)
    assert (ref.repo_id, ref.revision, ref.subfolder, ref.repo_type) == expected


def test_gguf_on_the_hub_reads_header_and_rows_by_range(hub, smollm2_gguf):
    from tests.hub.conftest import GGUF_REPO

    remote = open_checkpoint(f"hf://{GGUF_REPO}/{smollm2_gguf.name}")
    local = open_checkpoint(smollm2_gguf)
    assert remote.format == "gguf" and remote.quantisation == local.quantisation
    assert [(t.name, t.dtype, t.shape, t.byte_range) for t in remote.tensors()] == \
        [(t.name, t.dtype, t.shape, t.byte_range) for t in local.tensors()]
    assert remote.config == local.config
    for name in ("token_embd.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight"):
        rows = [0, 1, 7, remote.tensor(name).rows - 1]
        np.testing.assert_array_equal(remote.read_rows(name, rows), local.read_rows(name, rows))
    served = hub.state.bytes_served[(GGUF_REPO, smollm2_gguf.name)]
    print(f"\nGGUF header + 12 rows: {served} of {smollm2_gguf.stat().st_size} bytes")
    assert served < smollm2_gguf.stat().st_size // 10
    assert open_checkpoint(f"hf://{GGUF_REPO}").tensor("token_embd.weight") == remote.tensor("token_embd.weight")
