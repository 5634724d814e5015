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
    evidence = re.search(r'<div class="evidence component" id="evidence-\d+">.*?</div>\s*</div>', html, re.S).group(0)
    assert 'data-stack="visual.blocks"' in evidence  # the copied tower's alignment sits with its finding
    marks = [a for t, a in _elements(html) if t == "mark" and "region" in (a.get("class") or "")]
    # both sides of both matched regions: lines 41-44 and 46-51 of the subject, 59-62 and 64-69 of the reference
    assert len(marks) == 2 * (4 + 6)
    assert {a["data-region"] for a in marks} == {"0", "1"}


def test_norm_weights_show_raw_cosine_only_beside_centred(html):
    row = re.search(r'<table class="weak-matches">.*?</table>', html, re.S).group(0)
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    vectors, raw, centred = cells[0], float(cells[1]), float(cells[2])
    assert vectors == "28" and raw > 0.98 and abs(centred) < 0.05  # the false-accusation pattern, explained


def test_statistics_have_human_labels_and_units(html):
    cells = re.findall(r'<td class="key-statistics">(.*?)</td>', html, re.S)
    assert cells and not [c for c in cells if re.search(r"\b[a-z]+_[a-z_]+\b", c)]  # no raw snake_case keys
    weights = cells[0]
    assert "median centred similarity: <span class=\"mono\">0.9950</span>" in weights
    assert "p-value: <span class=\"mono\">≤ 1e-300 (floor)</span>" in weights
    assert "layers matched: <span class=\"mono\">32 of 32</span>" in weights
    assert "bit-identical parameters: <span class=\"mono\">100.0%</span>" in weights


def test_each_weights_finding_states_its_evidence_in_plain_words(html):
    block = re.search(r'<div class="evidence component".*?<ul class="statements">(.*?)</ul>', html, re.S).group(1)
    items = re.findall(r"<li>(.*?)</li>", block)
    assert items[:2] == ["32 of 32 layers match",
                         "median centred similarity 0.9950 (null sd 0.0020, n = 262,144 per tensor)"]
    assert "8.2% of the model&#39;s parameters" in items and "every matched parameter bit-identical" in items


def test_verdicts_read_as_sentences():
    html = render_html(build_report())
    assert "is extended from qwen2.5-7b" in html and "is copied from qwen2.5-vl-7b" in html
    report = build_report()
    report["findings"][1]["verdict"] = "identical"
    assert "is identical to qwen2.5-7b" in render_html(report) and "identical from" not in render_html(report)


def test_a_norm_only_component_says_why_it_has_no_closest_reference(report):
    comps = report["details"]["weights"]["components"]
    comps["model.norm"] = {"parameters": 3584, "share": 4e-7, "weak_only": True, "closest": None,
                           "verdicts": {"qwen2.5-vl-7b": "copied"}}
    report["findings"][0]["statistics"]["components"] = ["visual", "model.norm"]
    html = render_html(report)
    row = re.search(r'<tr><td class="mono">model.norm</td>.*?</tr>', html, re.S).group(0)
    assert "norm weights or biases only" in row and "no closest reference" in row
    assert re.search(r'href="#evidence-\d+"><span class="badge copied">copied</span> qwen2.5-vl-7b</a>', row)
    assert "(with <span class=\"mono\">visual</span>)" in row  # the finding it belongs to


def test_a_fail_links_to_its_rule_and_the_rule_to_the_evidence(html):
    ids = {a.get("id") for _, a in _elements(html)}
    links = [a["href"][1:] for t, a in _elements(html) if t == "a" and (a.get("href") or "").startswith("#")]
    assert links and set(links) <= ids
    rules_cell = re.search(r'<tr id="finding-1".*?<td class="rules">(.*?)</td>', html, re.S).group(1)
    assert re.search(r'<a class="rule" href="#rule-\d+"><span class="badge FAIL">FAIL</span>', rules_cell)
    policy = re.search(r'<section id="policy">.*?</section>', html, re.S).group(0)
    assert re.search(r'<a href="#evidence-1">weights:visual:qwen2.5-vl-7b</a>', policy)


def test_neuron_matched_layers_get_no_analytic_band_and_their_heatmap_says_what_it_shows(report):
    from modelprov.report.view import build_view
    from modelprov.weights.matchers import NEURON_PLACEMENT

    finding = report["findings"][0]
    finding["statistics"]["matched_tensors"] = [
        {"suspect": f"visual.blocks.{i}.mlp.fc1.weight", "suspect_layer": i, "placement": f"{NEURON_PLACEMENT} (rows)"}
        for i in range(4)]
    entry = report["details"]["weights"]["references"][0]
    entry["robust"] = {"stacks": [{"suspect_stack": "visual.blocks", "stack": entry["stacks"][0]}]}
    view = build_view(report, with_plots=False)
    assert view.weight_findings[0].neuron_layers == 4
    assert view.weight_findings[0].heatmaps[0].statistic == "share of neurons matched"
    html = render_html(report)
    assert "4 layers matched neuron by neuron have no band" in html
    assert "Layer alignment by share of neurons matched" in html


def test_layer_chart_range_follows_the_data():
    from modelprov.report.plots import evidence_ylim

    lo, hi = evidence_ylim([0.30, 0.45, 0.41], [0.01, 0.01, 0.01])
    assert -0.05 < lo < -0.01 and 0.45 < hi < 0.5  # the data and the ±3 sd band, not -1..1
    lo, hi = evidence_ylim([0.004, -0.006, 0.002], [0.012, 0.012, 0.012])  # an independent-looking curve
    assert -0.02 < lo < -0.012 and 0.012 < hi < 0.02


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


# Measured in the browser on a test copy of the page (the report itself has no script): the y-range of each
# per-layer chart from its rendered tick marks and axes box, tables wider than the page, and dead links.
_MEASURE = """<script>
const out = {curves: [], overflowing: [], dead_links: []};
for (const svg of document.querySelectorAll('figure.curve svg')) {
  const box = svg.querySelector('#patch_2 path').getBoundingClientRect();
  const ticks = [...svg.querySelectorAll('g[id^="ytick_"]')].map(g => {
    const r = g.querySelector('use').getBoundingClientRect();
    return [r.top + r.height / 2, parseFloat(g.querySelector('text').textContent.replace('\u2212', '-'))];
  });
  const [y0, v0] = ticks[0], [y1, v1] = ticks[ticks.length - 1];
  const scale = (v1 - v0) / (y1 - y0);
  out.curves.push([v0 + (box.bottom - y0) * scale, v0 + (box.top - y0) * scale]);
}
const right = document.querySelector('main').getBoundingClientRect().right;
for (const t of document.querySelectorAll('table')) {
  if (t.getBoundingClientRect().right > right + 1) out.overflowing.push(t.className || t.parentElement.id);
}
for (const a of document.querySelectorAll('a[href^="#"]')) {
  if (!document.getElementById(a.getAttribute('href').slice(1))) out.dead_links.push(a.getAttribute('href'));
}
document.body.setAttribute('data-measured', JSON.stringify(out));
</script>"""


def _measure_in_chromium(html: str, tmp_path: Path, width: int = 1400) -> dict:
    import json
    from html import unescape

    page = tmp_path / "measured.html"
    page.write_text(html.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    dom = _chromium(["--dump-dom", f"--window-size={width},1200", page.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return json.loads(unescape(re.search(r'data-measured="([^"]*)"', dom.stdout).group(1)))


def test_chart_y_range_and_table_widths_in_headless_chromium(chromium, tmp_path):
    report = build_report()
    rows = report["findings"][0]["statistics"]["per_layer"]
    for i, row in enumerate(rows):  # a derived-looking stack: 0.30-0.45 centred, raw cosine a little higher
        row.update(centred_similarity=0.30 + 0.15 * i / (len(rows) - 1), raw_cosine=0.35 + 0.15 * i / (len(rows) - 1))
    measured = _measure_in_chromium(render_html(report), tmp_path)
    ((lo, hi),) = measured["curves"]
    assert -0.06 < lo < 0 and 0.5 <= hi < 0.56, (lo, hi)  # data 0.30-0.50 and the null band at 0, not -1..1
    assert measured["overflowing"] == [] and measured["dead_links"] == []


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
