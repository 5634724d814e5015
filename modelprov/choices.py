"""Fixed choices the command line shows before it loads the library, so that `--help` stays fast: report formats
and their file names, the `--fail-on` levels, the name of an index archive. The library takes them from here."""

from __future__ import annotations

# report format -> file name written by `modelprov.report.write_reports`
FILE_NAMES = {
    "json": "report.json",
    "html": "report.html",
    "md": "report.md",
    "cyclonedx": "report.cdx.json",
    "sarif": "report.sarif",
    "spdx": "report.spdx.json",
}
FORMATS = tuple(FILE_NAMES)
FAIL_ON_CHOICES = ("fail", "review", "warn")  # lowest overall policy verdict that makes the exit status 1
ARCHIVE_NAME = "reference-index.tar"  # `index export` / `index fetch`: the archive's file name in a dataset
