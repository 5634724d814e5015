"""The HTML report: verdict first, evidence drawn, untrusted text escaped, self-contained; checked in Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from modelprov.report import render_html

from .synthetic import HOSTILE, build_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class _Elements(HTMLParser):
    """Start tags with their attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.tags


@pytest.fixture(scope="module")
def html() -> str:
    """The synthetic report rendered once for the tests that only read it."""
    return render_html(build_report())


def test_summary_verdict_comes_first(html):
    sections = [a.get("id") for tag, a in _elements(html) if tag == "section"]
    assert sections[0] == "verdict"
    assert sections.index("findings") < sections.index("weights") < sections.index("reproduce")
    headline = re.search(r'<h1 id="verdict-headline">(.*?)</h1>', html, re.S).group(1)
    assert headline.startswith("FAIL: sovereign-foundation-model") and "visual" in headline


def test_no_policy_says_so_instead_of_inventing_a_verdict():
    html = render_html(build_report(policy=False))
    assert 'data-outcome="NONE"' in html and "no policy was applied" in html


def test_untrusted_text_is_escaped_everywhere(html):
    assert "<script" not in html.lower()
    assert [tag for tag, _ in _elements(html) if tag in ("script", "b", "iframe")] == []
    assert html.count("&lt;script&gt;alert(") >= 3  # file name, tokenizer special token, code line
    assert "&lt;/pre&gt;&lt;script&gt;" in html  # the code line that tries to close its <pre>


def test_hostile_names_inside_plots_are_escaped(report):
    stack = report["details"]["weights"]["references"][0]["stacks"][0]
    stack["suspect_stack"] = HOSTILE
    html = render_html(report)
    assert "<script" not in html.lower()


def test_self_contained_no_network_references(html):
    for tag, attrs in _elements(html):
        for name in ("src", "href", "data", "action"):
            value = attrs.get(name) or ""
            assert not re.match(r"(https?:)?//", value), (tag, name, value)
    assert "@import" not in html and not re.search(r"url\(\s*['\"]?(https?:)?//", html)
    assert [t for t, a in _elements(html) if t == "link"] == []


def test_heatmaps_and_code_regions_are_drawn(html):
    heatmaps = re.findall(r'<figure class="heatmap"[^>]*>\s*<svg', html)
    assert len(heatmaps) == 2  # one per (reference, stack) in details.weights
    marks = [a for t, a in _elements(html) if t == "mark" and "region" in (a.get("class") or "")]
    # both sides of both matched regions: lines 41-44 and 46-51 of the subject, 59-62 and 64-69 of the reference
    assert len(marks) == 2 * (4 + 6)
    assert {a["data-region"] for a in marks} == {"0", "1"}


def test_norm_weights_show_raw_cosine_only_beside_centred(html):
    row = re.search(r'<table class="weak-matches">.*?</table>', html, re.S).group(0)
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    vectors, raw, centred = cells[0], float(cells[1]), float(cells[2])
    assert vectors == "28" and raw > 0.98 and abs(centred) < 0.05  # the false-accusation pattern, explained


def test_html_is_byte_stable(html, report):
    assert render_html(report) == html


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def chromium():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Debian's `chromium` is not installed: apt-get install -y chromium")
        pytest.skip("headless Chromium not installed (apt-get install -y chromium); CI runs this test")
    return CHROMIUM


def test_page_renders_in_headless_chromium(chromium, html, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    dom = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert re.search(r'<section id="verdict" class="verdict FAIL"', text)
    assert "FAIL: sovereign-foundation-model" in text
    assert len(re.findall(r'<figure class="heatmap"[^>]*><svg', text)) == 2
    assert len(re.findall(r'<mark class="region r[01]"', text)) == 20
    assert "<script" not in text.lower()  # nothing the page contained was turned into a script

    shot = tmp_path / "report.png"
    run = _chromium([f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars", page.as_uri()], tmp_path)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape == (1600, 1280, 3)
    assert pixels.std() > 20  # not blank
    banner = pixels[20:120, 60:1200]  # the FAIL banner is red: R well above G and B
    assert banner[..., 0].mean() > 150 and banner[..., 0].mean() - banner[..., 1].mean() > 80
