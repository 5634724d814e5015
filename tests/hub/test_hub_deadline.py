"""A Hub endpoint that accepts connections and never answers: the command gives up at the deadline with one line,
having said it was waiting (issue 17; before, 60 s × 6 tries passed in silence, then "ReadTimeout")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hub.hub_server import HubServer

REPO_ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 60  # kills the old behaviour (390 s); the deadline under test is 3 s


@pytest.fixture()
def silent_hub():
    with HubServer([]) as server:
        server.state.silent = True
        yield server


def _run(args: list[str], server: HubServer, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    full_env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO_ROOT), **env}
    for var in ("HF_TOKEN", "HF_HUB_OFFLINE", "MODELPROV_HUB_TIMEOUT"):
        if var not in env:
            full_env.pop(var, None)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "modelprov.cli.main", *args], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, env=full_env, cwd=REPO_ROOT)
    return done, time.monotonic() - start


@pytest.mark.parametrize("how", ["environment", "flag"])
def test_silent_endpoint_gives_up_at_the_deadline_with_one_line(silent_hub, tmp_path, how) -> None:
    args = ["inspect", "hf://stalled-org/stalled-model", "--no-hash"]
    if how == "flag":
        done, _ = _run(["--hub-timeout", "3", *args], silent_hub, tmp_path)
    else:
        done, _ = _run(args, silent_hub, tmp_path, MODELPROV_HUB_TIMEOUT="3")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in lines if line.startswith("modelprov: error: ")]
    assert errors == [lines[-1]], done.stderr
    assert "hf://stalled-org/stalled-model" in errors[0] and "no answer from the Hub within 3 s" in errors[0]
    assert any(line.startswith("modelprov: waiting for the Hub:") for line in lines), done.stderr  # a status line


def test_a_bad_deadline_is_one_line(silent_hub, tmp_path) -> None:
    done, _ = _run(["inspect", "hf://stalled-org/stalled-model"], silent_hub, tmp_path, MODELPROV_HUB_TIMEOUT="soon")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["modelprov: error: MODELPROV_HUB_TIMEOUT='soon' is not a number of seconds"]
