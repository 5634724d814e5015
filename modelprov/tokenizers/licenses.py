"""What a reference tokenizer's license asks of a model that reuses it, checked against the checkpoint's files."""

from __future__ import annotations

from pathlib import Path

from modelprov.findings import LicenseObligation, Reference
from modelprov.index.licenses import license_files_around, license_keys, read_license_files


def tokenizer_obligations(reference: Reference, verdict: str, tokenizer_file: Path, root: Path) -> list[LicenseObligation]:
    """Duties of the reference license for a reused tokenizer; met where the license files beside it show it.

    License files are looked for in the tokenizer's folder and its parents up to the checkpoint `root`.
    """
    if not reference.license or verdict == "unrelated":
        return []
    tree = read_license_files(license_files_around(tokenizer_file, root))
    present = set(tree.ids)
    found = ", ".join(sorted(present)) or "none recognised"
    out: list[LicenseObligation] = []
    for spdx in license_keys(reference.license):
        if spdx == "Apache-2.0":
            out.append(LicenseObligation(spdx, "Apache-2.0 §4(a): give recipients a copy of the License",
                                         spdx in present, f"license files beside the tokenizer: {found}"))
            if verdict != "identical":
                out.append(LicenseObligation(
                    spdx, "Apache-2.0 §4(b): modified files carry prominent notices stating that they were changed",
                    None, f"the tokenizer is {verdict}; whether a change notice was given is not in the files"))
        elif spdx == "MIT":
            out.append(LicenseObligation(spdx, "MIT: keep the copyright notice and the permission notice in copies",
                                         spdx in present, f"license files beside the tokenizer: {found}"))
        else:
            out.append(LicenseObligation(spdx, f"{spdx}: comply with the license terms", None, "not assessed"))
    return out
