"""License evidence in headers and LICENSE files, and the obligations derived from it."""

from __future__ import annotations

import pytest

from modelprov.index.licenses import (
    LicenseInfo, TreeLicenses, detect_file_license, license_obligations, normalise_expression, recognise_license_text,
)
from modelprov.errors import ProvenanceError

MIT_HEADER = """# Copyright (c) 2025 DeepSeek
#
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
"""


def test_spdx_tags_are_parsed_and_normalised():
    info = detect_file_license("// SPDX-License-Identifier: mit OR Apache-2.0\nint x;\n")
    assert info.spdx == ["MIT OR Apache-2.0"] and info.ids == ["MIT", "Apache-2.0"]
    assert detect_file_license("# SPDX-License-Identifier: LicenseRef-deepseek\n").ids == ["LicenseRef-deepseek"]


def test_headers_and_copyrights_are_recognised():
    info = detect_file_license(MIT_HEADER + "import torch\n")
    assert info.ids == ["MIT"] and info.copyrights == ["Copyright (c) 2025 DeepSeek"]
    gpl = "# This program is free software; you can redistribute it under the terms of the GNU General Public License\n# as published by the Free Software Foundation; either version 3 of the License, or\n# (at your option) any later version.\n"
    assert recognise_license_text(gpl) == ["GPL-3.0-or-later"]
    bsd3 = "Redistribution and use in source and binary forms, with or without modification...\nNeither the name of the copyright holder"
    assert recognise_license_text(bsd3) == ["BSD-3-Clause"]


def test_malformed_expressions_are_user_errors():
    assert normalise_expression("apache-2.0 and mit") == "Apache-2.0 AND MIT"
    with pytest.raises(ProvenanceError):
        normalise_expression("MIT AND (")


def test_mit_notice_kept_or_not():
    reference = detect_file_license(MIT_HEADER)
    bare = license_obligations("MIT", reference, TreeLicenses(), LicenseInfo(), TreeLicenses(), modified=False)
    assert [o.met for o in bare] == [False]
    kept = license_obligations("MIT", reference, TreeLicenses(), detect_file_license(MIT_HEADER), TreeLicenses(), modified=True)
    assert [o.met for o in kept] == [True]


def test_model_licenses_cannot_be_decided_from_files():
    duties = license_obligations("LicenseRef-deepseek", LicenseInfo(), TreeLicenses(), LicenseInfo(), TreeLicenses(), modified=False)
    assert len(duties) == 1 and duties[0].met is None and duties[0].license == "LicenseRef-deepseek"


def test_apache_notice_file_must_be_reproduced():
    reference_tree = TreeLicenses(files={"LICENSE": ["Apache-2.0"]}, notice="Qwen\nCopyright 2024 Alibaba Cloud\n")
    subject_tree = TreeLicenses(files={"LICENSE": ["Apache-2.0"]})
    duties = {o.obligation.split(":")[0]: o for o in license_obligations(
        "Apache-2.0", LicenseInfo(), reference_tree, LicenseInfo(recognised=["Apache-2.0"]), subject_tree, modified=False)}
    assert duties["Apache-2.0 §4(d)"].met is False and duties["Apache-2.0 §4(a)"].met is True
    subject_tree.notice = "Qwen\nCopyright 2024 Alibaba Cloud\n"
    duties = {o.obligation.split(":")[0]: o for o in license_obligations(
        "Apache-2.0", LicenseInfo(), reference_tree, LicenseInfo(recognised=["Apache-2.0"]), subject_tree, modified=False)}
    assert duties["Apache-2.0 §4(d)"].met is True
