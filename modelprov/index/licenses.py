"""License evidence in source trees and the obligations a reference license places on copied code.

SPDX-License-Identifier tags are parsed with `license-expression`; free-text headers and LICENSE/NOTICE
files are recognised from a table of each license's distinctive sentence (data, not a regex per case).
Obligations follow the license texts: Apache-2.0 §4(a)-(d), the MIT/BSD notice condition, GPL-family
copyleft, and model-specific `LicenseRef-…` terms that cannot be judged from files alone.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from license_expression import ExpressionError, get_spdx_licensing

from modelprov.errors import ProvenanceError
from modelprov.findings import LicenseObligation

HEADER_LINES = 60  # license headers sit at the top of a file
LICENSE_FILE_PREFIXES = ("license", "licence", "copying", "notice", "copyright")

# Distinctive sentences of license texts and headers, lower-cased with whitespace collapsed.
# Order matters only for readability; every matching row contributes its id.
LICENSE_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Apache-2.0", ("licensed under the apache license, version 2.0",)),
    ("Apache-2.0", ("apache license", "version 2.0, january 2004")),
    ("MIT", ("permission is hereby granted, free of charge, to any person obtaining a copy",)),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "neither the name of")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
    ("GPL-3.0-or-later", ("gnu general public license", "version 3 of the license, or", "any later version")),
    ("GPL-3.0-only", ("gnu general public license", "version 3, 29 june 2007")),
    ("GPL-2.0-or-later", ("gnu general public license", "version 2 of the license, or", "any later version")),
    ("GPL-2.0-only", ("gnu general public license", "version 2, june 1991")),
    ("LGPL-2.1-or-later", ("gnu lesser general public", "version 2.1 of the license, or")),
    ("LGPL-3.0-or-later", ("gnu lesser general public license", "version 3 of the license, or")),
    ("AGPL-3.0-or-later", ("gnu affero general public license", "version 3 of the license, or")),
    ("MPL-2.0", ("mozilla public license", "v. 2.0")),
    ("LicenseRef-llama-community", ("llama", "community license agreement")),
    ("LicenseRef-deepseek", ("deepseek license agreement",)),
    ("LicenseRef-qwen", ("qwen license agreement",)),
    ("LicenseRef-qwen", ("tongyi qianwen license agreement",)),
    ("LicenseRef-gemma", ("gemma terms of use",)),
)
# When a more specific row matched, drop the generic one it implies.
_SUBSUMES = {"BSD-3-Clause": "BSD-2-Clause"}

_SPDX_TAG = "spdx-license-identifier:"
_COPYRIGHT = re.compile(r"copyright\s*(?:\(c\)|©|\d{4})|©\s*\d{4}", re.IGNORECASE)
_CHANGE_NOTICE = re.compile(r"\b(modified|modifications|changes made|changed by|adapted from|derived from)\b", re.I)
_COMMENT_MARKERS = re.compile(r"^\s*(?:#+|//+|/\*+|\*+/?|--)\s?")


@dataclass
class LicenseInfo:
    """License evidence found in one file: SPDX tags, recognised license texts, copyright lines."""

    spdx: list[str] = field(default_factory=list)  # normalised SPDX-License-Identifier expressions
    recognised: list[str] = field(default_factory=list)  # ids whose header or text was recognised
    copyrights: list[str] = field(default_factory=list)
    change_notice: bool = False  # the header says the file was modified

    @property
    def ids(self) -> list[str]:
        """Every license id the file names, tags first."""
        out: list[str] = []
        for expression in self.spdx:
            out.extend(license_keys(expression))
        out.extend(self.recognised)
        return sorted(set(out), key=out.index)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ids"] = self.ids
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LicenseInfo":
        return cls(
            spdx=list(d.get("spdx", [])),
            recognised=list(d.get("recognised", [])),
            copyrights=list(d.get("copyrights", [])),
            change_notice=bool(d.get("change_notice", False)),
        )


@lru_cache(maxsize=1)
def _licensing():
    return get_spdx_licensing()


def normalise_expression(expression: str, *, path: str | None = None) -> str:
    """Parse and normalise an SPDX expression (LicenseRef-… allowed); a malformed one is a user error."""
    try:
        parsed = _licensing().parse(expression, validate=False)
    except ExpressionError as err:
        raise ProvenanceError(path, f"malformed license expression {expression!r}: {err}") from None
    if parsed is None:
        raise ProvenanceError(path, "empty license expression")
    info = _licensing().validate(str(parsed))
    unknown = [key for key in info.invalid_symbols if not str(key).startswith("LicenseRef-")]
    if unknown:
        raise ProvenanceError(path, f"unknown SPDX license id(s) {', '.join(map(str, unknown))} in {expression!r}")
    return str(parsed)


def license_keys(expression: str) -> list[str]:
    """The license ids an expression mentions (e.g. `MIT OR Apache-2.0` -> ['MIT', 'Apache-2.0'])."""
    return list(_license_keys(expression))


@lru_cache(maxsize=1024)
def _license_keys(expression: str) -> tuple[str, ...]:
    try:
        return tuple(str(key) for key in _licensing().license_keys(expression))
    except ExpressionError:
        return ()


def _normalised(text: str) -> str:
    return " ".join(_COMMENT_MARKERS.sub("", line) for line in text.splitlines()).lower().replace("  ", " ")


def recognise_license_text(text: str) -> list[str]:
    """License ids whose distinctive sentences appear in `text` (a header or a LICENSE file)."""
    flat = " ".join(_normalised(text).split())
    found = [spdx for spdx, phrases in LICENSE_SIGNATURES if all(p in flat for p in phrases)]
    found = [spdx for spdx in found if not any(_SUBSUMES.get(other) == spdx for other in found)]
    return sorted(set(found), key=found.index)


def detect_file_license(text: str) -> LicenseInfo:
    """License evidence in the header (first lines) of a source file."""
    head = text.splitlines()[:HEADER_LINES]
    info = LicenseInfo()
    for line in head:
        lower = line.lower()
        if _SPDX_TAG in lower:
            expression = line[lower.index(_SPDX_TAG) + len(_SPDX_TAG) :].strip().rstrip("*/").strip()
            try:
                info.spdx.append(normalise_expression(expression))
            except ProvenanceError:
                info.recognised.append(f"LicenseRef-unparsed-{re.sub(r'[^A-Za-z0-9.-]+', '-', expression)[:40]}")
        if _COPYRIGHT.search(line):
            info.copyrights.append(_COMMENT_MARKERS.sub("", line).strip())
        if _CHANGE_NOTICE.search(line) and line.lstrip().startswith(("#", "//", "/*", "*")):
            info.change_notice = True
    info.recognised.extend(x for x in recognise_license_text("\n".join(head)) if x not in info.recognised)
    return info


def is_license_file(path: Path) -> bool:
    """LICENSE, LICENCE, COPYING, NOTICE (any suffix such as .txt or .md)."""
    return path.is_file() and path.name.lower().startswith(LICENSE_FILE_PREFIXES)


@dataclass
class TreeLicenses:
    """License files that accompany code: ids recognised, NOTICE text, copyright lines."""

    files: dict[str, list[str]] = field(default_factory=dict)  # file path -> recognised ids
    notice: str = ""  # concatenated NOTICE file text
    copyrights: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return sorted({i for ids in self.files.values() for i in ids})

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "ids": self.ids, "notice": self.notice, "copyrights": self.copyrights}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TreeLicenses":
        return cls(files=dict(d.get("files", {})), notice=d.get("notice", ""), copyrights=list(d.get("copyrights", [])))


def read_license_files(paths: Iterable[Path]) -> TreeLicenses:
    """Recognise the license and NOTICE files given (unreadable ones are skipped, not guessed)."""
    tree = TreeLicenses()
    for path in sorted(set(paths)):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        tree.files[str(path)] = recognise_license_text(text) or detect_file_license(text).ids
        if path.name.lower().startswith("notice"):
            tree.notice += text.strip() + "\n"
        tree.copyrights.extend(
            _COMMENT_MARKERS.sub("", line).strip()
            for line in text.splitlines()
            if _COPYRIGHT.search(line) and "notice" not in line.lower()
        )
    return tree


def license_files_around(path: Path, root: Path) -> list[Path]:
    """License files in the folder of `path` and each parent folder up to `root`."""
    found: list[Path] = []
    folder = path if path.is_dir() else path.parent
    root = root if root.is_dir() else root.parent
    while True:
        found.extend(p for p in sorted(folder.iterdir()) if is_license_file(p))
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    return found


def _holder(copyright_line: str) -> str:
    """The holder part of a copyright line, without years and boilerplate, for comparison."""
    text = re.sub(r"(?i)copyright|\(c\)|©|all rights reserved\.?|\d{4}(\s*[-,]\s*\d{4})*", " ", copyright_line)
    return " ".join(text.lower().replace(",", " ").split()).strip(" .")


def _notices_kept(required: list[str], kept: list[str]) -> bool:
    holders = {_holder(line) for line in kept}
    return all(_holder(line) in holders for line in required)


def license_obligations(
    reference_license: str | None,
    reference_file: LicenseInfo,
    reference_tree: TreeLicenses,
    subject_file: LicenseInfo,
    subject_tree: TreeLicenses,
    *,
    modified: bool | None,
) -> list[LicenseObligation]:
    """What the reference license demands of code copied from it, and whether the subject meets each duty.

    `modified` None: the copy's verbatim text could not be compared (the reference text is not shipped).
    """
    ids = license_keys(reference_license) if reference_license else []
    ids += [i for i in reference_file.ids if i not in ids]
    subject_ids = set(subject_file.ids) | set(subject_tree.ids)
    kept_copyrights = subject_file.copyrights + subject_tree.copyrights
    required = reference_file.copyrights
    out: list[LicenseObligation] = []
    for spdx in ids:
        if spdx == "Apache-2.0":
            has_copy = "Apache-2.0" in subject_tree.ids
            out.append(
                LicenseObligation(
                    spdx,
                    "Apache-2.0 §4(a): give recipients a copy of the License",
                    has_copy,
                    "a LICENSE file with the Apache-2.0 text accompanies the code"
                    if has_copy
                    else "no LICENSE file with the Apache-2.0 text found beside the scanned code",
                )
            )
            out.append(
                LicenseObligation(
                    spdx,
                    "Apache-2.0 §4(b): modified files carry prominent notices stating that they were changed",
                    True if subject_file.change_notice or modified is False else (None if modified is None else False),
                    "the file states its changes" if subject_file.change_notice
                    else "unmodified copy" if modified is False
                    else "no change notice; whether the copy was modified cannot be told without the reference text"
                    if modified is None else "modified, no change notice",
                )
            )
            kept = _notices_kept(required, kept_copyrights) if required else "Apache-2.0" in subject_file.ids
            out.append(
                LicenseObligation(
                    spdx,
                    "Apache-2.0 §4(c): retain the copyright, patent, trademark and attribution notices of the source",
                    kept,
                    ("kept: " if kept else "missing: ") + ("; ".join(required) or "the Apache-2.0 license header"),
                )
            )
            if reference_tree.notice.strip():
                first = next(line for line in reference_tree.notice.splitlines() if line.strip())
                met = first.strip() in subject_tree.notice
                out.append(
                    LicenseObligation(
                        spdx,
                        "Apache-2.0 §4(d): include the attribution notices of the NOTICE file",
                        met,
                        "NOTICE reproduced" if met else "the reference's NOTICE file is not reproduced",
                    )
                )
        elif spdx == "MIT" or spdx.startswith("BSD-"):
            permission = spdx in subject_ids or any(i.startswith("BSD-") for i in subject_ids) and spdx != "MIT"
            kept = _notices_kept(required, kept_copyrights) and permission
            out.append(
                LicenseObligation(
                    spdx,
                    f"{spdx}: keep the copyright notice and the license's permission notice/conditions in copies",
                    kept,
                    ("kept" if kept else "missing") + f": {'; '.join(required) or 'copyright notice'} and the {spdx} text",
                )
            )
        elif spdx.startswith(("GPL-", "LGPL-", "AGPL-", "MPL-")):
            family = spdx.split("-")[0]
            same = any(i.split("-")[0] == family for i in subject_ids)
            out.append(
                LicenseObligation(
                    spdx,
                    f"{spdx}: copyleft — the derived code must be offered under {family} terms with its source",
                    same,
                    f"the subject is licensed under {', '.join(sorted(subject_ids)) or 'nothing stated'}",
                )
            )
        elif spdx.startswith("LicenseRef-"):
            out.append(
                LicenseObligation(
                    spdx,
                    f"{spdx}: model-specific terms (use restrictions, attribution) pass on to derivatives",
                    True if spdx in subject_ids else None,
                    "the terms accompany the code" if spdx in subject_ids else "cannot be decided from the files",
                )
            )
        else:
            out.append(LicenseObligation(spdx, f"{spdx}: comply with the license terms", None, "not assessed"))
    return out


def unmet_summary(obligations: Iterable[LicenseObligation]) -> str:
    """The unmet obligations of a match grouped by licence, e.g. `Apache-2.0 §4(a)(c)`; "-" when none is unmet."""
    grouped: dict[str, list[str]] = {}
    for o in obligations:
        if o.met is False:
            head = o.obligation.split(":")[0]
            license_id, _, section = head.partition(" ")
            grouped.setdefault(license_id, []).append(section.replace("§4", "") if section.startswith("§4") else section)
    return "; ".join(
        f"{lic} §4{''.join(parts)}" if lic == "Apache-2.0" else f"{lic} {' '.join(parts)}".strip()
        for lic, parts in grouped.items()
    ) or "-"
