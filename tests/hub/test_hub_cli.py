"""The CLI: `index pull|fetch|export|import` and `scan hf://…` against the test Hub, errors on one line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelprov.cli.main import app
from modelprov.index import ReferenceIndex
from tests.hub.conftest import MINILM_REPO, TINY_REPO
from tests.hub.hub_server import HubRepo

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_pull_prints_bytes_and_pinned_commit_then_skips_a_second_time(hub, cli, tmp_path):
    index = tmp_path / "index"
    args = ["index", "pull", f"{TINY_REPO}@main", "--name", "tiny", "--index", str(index)]
    first = cli.invoke(app, args)
    assert first.exit_code == 0, first.output + first.stderr
    sha = hub.repos[("model", TINY_REPO)].sha
    assert f"pulled tiny from {TINY_REPO}@{sha[:12]} (sampled)" in first.stdout
    assert "bytes (" in first.stdout and "requests" in first.stdout
    second = cli.invoke(app, args + ["--json"])
    assert second.exit_code == 0
    out = json.loads(second.stdout)
    assert out["pulled"][0]["skipped"] and out["pulled"][0]["commit"] == sha
    assert ReferenceIndex.load(index).entry("tiny").reference.revision == sha


def test_pull_family_uses_the_catalogue(hub, cli, tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    (index / "catalog.toml").write_text(
        '[[model]]\nname = "tiny-pooler"\nfamily = "TinyTest"\nrepo_id = "%s"\nsubfolder = "pooler"\n'
        'revision = "main"\norg = "Example Org"\ncountry = "US"\nlicense = "Apache-2.0"\n\n'
        '[[model]]\nname = "tiny"\nfamily = "TinyTest"\nrepo_id = "%s"\n\n'
        '[[model]]\nname = "other"\nfamily = "Other"\nrepo_id = "nobody/nothing"\n' % (TINY_REPO, TINY_REPO))
    result = cli.invoke(app, ["index", "pull", "--family", "tinytest", "--index", str(index)])
    assert result.exit_code == 0, result.output + result.stderr
    stored = ReferenceIndex.load(index)
    ref = stored.entry("tiny-pooler").reference
    assert (ref.family, ref.org, ref.country, ref.license) == ("TinyTest", "Example Org", "US", "Apache-2.0")
    assert [t.name for t in stored.fingerprint("tiny-pooler").tensors] == ["pooler.dense.bias", "pooler.dense.weight"]
    assert stored.entry("tiny").reference.repo_id == TINY_REPO
    missing = cli.invoke(app, ["index", "pull", "--family", "nope", "--index", str(index)])
    assert missing.exit_code == 2 and "known: Other, TinyTest" in missing.stderr


@pytest.mark.parametrize("args, message", [
    (["index", "pull", "nobody/nothing"], "repository not found"),
    (["index", "pull", f"{MINILM_REPO}@v9"], "revision not found"),
    (["index", "fetch", "nobody/nothing"], "repository not found"),
])
def test_hub_errors_are_one_line_exit_2(hub, cli, tmp_path, args, message):
    result = cli.invoke(app, args + ["--index", str(tmp_path / "index")])
    assert result.exit_code == 2
    assert result.stderr.startswith("modelprov: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_export_import_fetch_round_trip(hub, cli, tmp_path):
    index = tmp_path / "index"
    assert cli.invoke(app, ["index", "pull", f"hf://{TINY_REPO}", "--name", "t",
                            "--index", str(index)]).exit_code == 0
    exported = cli.invoke(app, ["index", "export", str(tmp_path / "pub" / "reference-index.tar"), "--index", str(index),
                                "--json"])
    assert exported.exit_code == 0, exported.stderr
    digest = json.loads(exported.stdout)["sha256"]
    imported = cli.invoke(app, ["index", "import", str(tmp_path / "pub" / "reference-index.tar"),
                                "--index", str(tmp_path / "offline")])
    assert imported.exit_code == 0 and "verified" in imported.stdout
    hub.add(HubRepo("org/idx", {p.name: p for p in (tmp_path / "pub").iterdir()}, repo_type="dataset"))
    fetched = cli.invoke(app, ["index", "fetch", "org/idx", "--digest", digest, "--index", str(tmp_path / "net")])
    assert fetched.exit_code == 0, fetched.stderr
    assert ReferenceIndex.load(tmp_path / "net").digest == ReferenceIndex.load(index).digest
    tampered = cli.invoke(app, ["index", "import", str(tmp_path / "pub" / "reference-index.tar"), "--digest",
                                "sha256:" + "1" * 64, "--index", str(tmp_path / "x")])
    assert tampered.exit_code == 2 and "digest mismatch" in tampered.stderr


def test_scan_a_hub_model(hub, cli, tmp_path, tiny_dir):
    index = tmp_path / "index"
    assert cli.invoke(app, ["index", "pull", TINY_REPO, "--name", "minilm", "--index", str(index)]).exit_code == 0
    result = cli.invoke(app, ["scan", f"hf://{TINY_REPO}", "--index", str(index),
                              "--json", str(tmp_path / "scan.json")])
    assert result.exit_code in (0, 1), result.output + result.stderr
    report = json.loads((tmp_path / "scan.json").read_text())
    assert any(f["reference"]["name"] == "minilm" for f in report["findings"])
    # chain of custody without downloading: the Hub's stated sha256 of each weights file, equal to the local one
    weights = [f for f in report["subject"]["files"] if f["role"] == "weights"]
    assert weights and all(
        f["sha256"] == hashlib.sha256((tiny_dir / f["path"]).read_bytes()).hexdigest() for f in weights)


def test_cli_in_a_fresh_process_reads_hf_endpoint_token_and_offline(hub, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_TOKEN="hf_subprocess_token", PYTHONPATH=str(REPO_ROOT))
    cmd = [sys.executable, "-m", "modelprov.cli.main", "index", "pull", TINY_REPO, "--name", "t",
           "--index", str(tmp_path / "index")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert hub.state.authorization and set(hub.state.authorization) == {"Bearer hf_subprocess_token"}
    hub.state.requests.clear()
    offline = subprocess.run(cmd[:-1] + [str(tmp_path / "other")], env={**env, "HF_HUB_OFFLINE": "1"},
                             capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr
    assert offline.stderr.count("\n") == 1 and hub.state.requests == []
