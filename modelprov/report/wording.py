"""How reports and the console say things: number formats, verdict phrases, statistic labels with units, the
plain-language statements of a finding and the bytes-read line.

One module, so the HTML page, the Markdown summary and the terminal word the same evidence the same way.
Every function takes plain report-dict values (a saved report.json renders as the scan that made it did).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from modelprov.weights.similarity import LOG10_P_FLOOR

# verdict -> the preposition that makes "X is <verdict> <preposition> Y" read right
_PREPOSITIONS = {"identical": "to", "unrelated": "to", "independent": "of"}


def fmt(value: Any) -> str:
    """A number or value as a reviewer reads it: 4 significant digits, p-values in scientific notation."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e-3 or abs(value) >= 1e6:
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(value.items()))
    return str(value)


def fmt_lines(value: Any) -> str:
    """A line range `[first, last]` as `first–last` (a single line as itself)."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return str(value[0]) if value[0] == value[1] else f"{value[0]}–{value[1]}"
    return fmt(value)


def fmt_share(value: float | None) -> str:
    """A share as a percentage with one decimal ("—" when unknown)."""
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_bytes(size: int) -> str:
    """A byte count in binary units (KiB, MiB, …)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def fmt_similarity(value: Any) -> str:
    """A similarity or correlation with four decimals (what distinguishes 0.9998 from a copy's 1.0000)."""
    return f"{value:.4f}" if _is_number(value) else "—"


def fmt_count(value: Any) -> str:
    """A count with thousands separators."""
    return f"{int(value):,}" if _is_number(value) else "—"


def fmt_z(value: Any) -> str:
    """A z score: whole numbers once it is large, one decimal below 100."""
    if not _is_number(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def fmt_p(log10_p: Any, *, say_floor: bool = True) -> str:
    """A p-value from its log10, so values below the smallest float still print; the floor is said as such
    (`say_floor=False`: "≤ 1e-300" alone, for narrow tables)."""
    if not _is_number(log10_p):
        return "—"
    if log10_p <= LOG10_P_FLOOR:
        return f"≤ 1e{int(LOG10_P_FLOOR)}" + (" (floor)" if say_floor else "")
    if log10_p > -3:
        return f"{10 ** log10_p:.3f}"
    exponent = math.floor(log10_p)
    return f"{10 ** (log10_p - exponent):.1f}e{exponent}"


def verdict_phrase(verdict: str) -> str:
    """The verdict with its preposition: "copied from", "identical to", "independent of"."""
    return f"{verdict} {_PREPOSITIONS.get(verdict, 'from')}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# statistic key -> (label, formatter). Kind-specific entries ("code.reference_tokens") win over plain ones.
STATISTIC_LABELS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "centred_similarity": ("median centred similarity", fmt_similarity),
    "centred_similarity_min": ("lowest centred similarity", fmt_similarity),
    "raw_cosine": ("median raw cosine (comparison only)", fmt_similarity),
    "null_sd": ("null sd of one tensor", fmt_similarity),
    "n": ("entries compared", fmt_count),
    "z": ("combined z", fmt_z),
    "log10_p": ("p-value", fmt_p),
    "layers": ("layers matched", str),
    "tensors": ("tensors", fmt_count),
    "tensors_matched": ("tensors matched", fmt_count),
    "exact_tensors": ("bit-identical tensors", fmt_count),
    "exact_parameter_share": ("bit-identical parameters", fmt_share),
    "suspect_stack": ("subject stack", str),
    "suspect_layer": ("subject layer", fmt),
    "reference_stack": ("reference stack", str),
    "reference_layer": ("reference layer", fmt),
    "jaccard": ("token-set Jaccard", fmt_similarity),
    "shared_tokens": ("shared tokens", fmt_count),
    "suspect_tokens": ("subject tokens", fmt_count),
    "reference_tokens": ("reference tokens", fmt_count),
    "suspect_in_reference": ("subject tokens in the reference", fmt_share),
    "reference_in_suspect": ("reference tokens in the subject", fmt_share),
    "id_agreement": ("shared tokens at the same id", fmt_share),
    "merges.rank_correlation": ("merge order rank correlation", fmt_similarity),
    "merges.common_prefix": ("merges in the same order from the first", fmt_count),
    "special_tokens.shared": ("special tokens shared", fmt_count),
    "similarity": ("share of the reference function matched", fmt_share),
    "subject_coverage": ("share of the subject function matched", fmt_share),
    "matched_tokens": ("tokens matched", fmt_count),
    "code.subject_tokens": ("subject function tokens", fmt_count),
    "code.reference_tokens": ("reference function tokens", fmt_count),
    "lexical_identity": ("matched tokens verbatim", fmt_share),
    "renamed_identifiers": ("identifiers renamed", fmt_count),
}

# The statistics a findings table shows, per kind of finding, in this order (when present).
KEY_STATISTICS = {
    "weights": ("centred_similarity", "null_sd", "n", "z", "log10_p", "layers", "exact_parameter_share"),
    "tokenizer": ("jaccard", "shared_tokens", "suspect_in_reference", "reference_in_suspect", "id_agreement"),
    "code": ("similarity", "subject_coverage", "matched_tokens", "lexical_identity", "renamed_identifiers"),
}


def statistic_label(key: str, kind: str | None = None) -> str:
    """A statistic's name as a reviewer reads it ("log10_p" -> "p-value"); unknown keys lose their underscores."""
    entry = STATISTIC_LABELS.get(f"{kind}.{key}") or STATISTIC_LABELS.get(key)
    return entry[0] if entry else key.replace("_", " ").replace(".", ": ")


def statistic_value(key: str, value: Any, kind: str | None = None) -> str:
    """A statistic's value in its unit (shares as percentages, p from log10 p, counts with separators)."""
    entry = STATISTIC_LABELS.get(f"{kind}.{key}") or STATISTIC_LABELS.get(key)
    return entry[1](value) if entry and value is not None else fmt(value)


def _with_layers(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The statistics plus "layers" ("30 of 30") when the finding counts matched layers."""
    out = dict(stats)
    if _is_number(stats.get("layers_total")) and stats["layers_total"]:
        out["layers"] = f"{stats.get('layers_matched', 0)} of {stats['layers_total']}"
    return out


def key_statistics(finding: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of the statistics a findings table shows for this finding, in its kind's order; for an
    unknown kind the first six plain statistics."""
    stats = _with_layers(finding.get("statistics") or {})
    kind = finding.get("kind")
    keys = KEY_STATISTICS.get(kind) or [k for k, v in sorted(stats.items()) if not isinstance(v, (list, dict))][:6]
    return [(statistic_label(k, kind), statistic_value(k, stats[k], kind)) for k in keys
            if k in stats and not isinstance(stats[k], (list, dict))]


DIRECTION = ("shared trained weights do not show the direction: the model may be trained from the reference, or "
             "both from a common ancestor")


def finding_statements(finding: Mapping[str, Any]) -> list[str]:
    """The finding in short plain sentences a reviewer can check against the charts, e.g. "30 of 30 layers
    match", "median centred similarity 0.9998 (null sd 0.0039, n = 65,536)", then its transformations."""
    stats = finding.get("statistics") or {}
    kind = finding.get("kind")
    out: list[str] = []
    if kind == "weights":
        out += _weights_statements(stats, finding.get("parameter_share"))
        if finding.get("verdict") == "derived":
            out.append(DIRECTION)
    elif kind == "tokenizer":
        out += _tokenizer_statements(stats)
    elif kind == "code":
        out += _code_statements(stats)
    return out + [str(t) for t in finding.get("transformations") or []]


def _weights_statements(stats: Mapping[str, Any], share: Any) -> list[str]:
    out = []
    if _is_number(stats.get("layers_total")) and stats["layers_total"]:
        out.append(f"{stats.get('layers_matched', 0)} of {stats['layers_total']} layers match")
    if _is_number(stats.get("centred_similarity")):
        sd = stats.get("null_sd")
        null = f" (null sd {sd:.4f}, n = {round(sd ** -2):,} per tensor)" if _is_number(sd) and sd > 0 else ""
        out.append(f"median centred similarity {fmt_similarity(stats['centred_similarity'])}{null}")
    if _is_number(stats.get("z")):
        out.append(f"combined z {fmt_z(stats['z'])}, p {fmt_p(stats.get('log10_p'))}")
    if _is_number(share):
        out.append(f"{fmt_share(share)} of the model's parameters")
    exact = stats.get("exact_parameter_share")
    if _is_number(exact):
        out.append("every matched parameter bit-identical" if exact >= 0.9995 else
                   f"{fmt_share(exact)} of matched parameters bit-identical" if exact > 0 else
                   "no matched tensor bit-identical")
    probability = probability_words(stats.get("probability"))
    if probability:
        out.append(probability)
    return out


def probability_words(probability: Any) -> str | None:
    """A weights finding's `statistics.probability` in words (None when the scan gave no probability)."""
    if not isinstance(probability, Mapping) or not _is_number(probability.get("reuse")):
        return None
    sample = probability.get("calibration") or {}
    return (f"calibrated probability of reuse {probability['reuse']:.2f} ({probability.get('band')} band; "
            f"calibrated on {sample.get('n', '?')} suite cases)")


def _tokenizer_statements(stats: Mapping[str, Any]) -> list[str]:
    out = []
    if _is_number(stats.get("shared_tokens")):
        out.append(f"{fmt_count(stats['shared_tokens'])} shared tokens: "
                   f"{fmt_share(stats.get('suspect_in_reference'))} of the subject's, "
                   f"{fmt_share(stats.get('reference_in_suspect'))} of the reference's")
    if _is_number(stats.get("id_agreement")):
        out.append(f"{fmt_share(stats['id_agreement'])} of shared tokens at the same id")
    merges = stats.get("merges")
    if isinstance(merges, dict) and _is_number(merges.get("rank_correlation")):
        out.append(f"merge order rank correlation {fmt_similarity(merges['rank_correlation'])}")
    return out


def _code_statements(stats: Mapping[str, Any]) -> list[str]:
    out = []
    if _is_number(stats.get("similarity")):
        out.append(f"{fmt_share(stats['similarity'])} of the reference function and "
                   f"{fmt_share(stats.get('subject_coverage'))} of the subject function matched "
                   f"({fmt_count(stats.get('matched_tokens'))} tokens)")
    if _is_number(stats.get("lexical_identity")):
        out.append(f"{fmt_share(stats['lexical_identity'])} of matched tokens verbatim")
    if stats.get("renamed_identifiers"):
        out.append(f"{fmt_count(stats['renamed_identifiers'])} identifiers renamed")
    return out


def bytes_statement(counts: Mapping[str, Any]) -> str:
    """What the weights scan read: N of M checkpoint bytes for sketches (x%), then the full-tensor reads that
    confirm copies and match neurons, counted apart (a tensor may be read in full more than once)."""
    total, sketches, read = counts.get("checkpoint"), counts.get("read_for_sketches"), counts.get("read_total")
    if not (_is_number(total) and _is_number(sketches) and total):
        return ""
    line = f"read {sketches:,} of {total:,} checkpoint bytes ({sketches / total:.1%}) for sketches"
    extra = read - sketches if _is_number(read) else 0
    if extra > 0:
        return line + (f", plus {extra:,} bytes of full-tensor reads to confirm copies and match neurons "
                       "(a tensor may be read more than once)")
    return line + "; no full-tensor reads"
