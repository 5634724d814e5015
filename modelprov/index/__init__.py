"""The reference index: public models' fingerprints, catalogue and licences, sealed by a content digest;
built locally (`add_checkpoint`), pulled from the Hub by range reads, exported, imported and fetched.

    from modelprov.index import ReferenceIndex, add_checkpoint, pull_reference
"""

from modelprov._hub import HubClient, RetryPolicy

from .archive import ARCHIVE_NAME, ArchiveResult, export_index, fetch_index, import_index
from .catalog import catalogue_entry, catalogue_models, catalogue_source, catalogue_sources, family_sources
from .pull import PULL_WORK_DIR, PullJob, PullResult, pull_job, pull_many, pull_reference
from .retrieval import RetrievalIndex, Shortlist, shortlist
from .store import (
    CATALOG_FILE, INDEX_ENV, INDEX_FILE, IndexEntry, ReferenceIndex, add_checkpoint, check_name, default_index_dir,
    load_toml,
)

__all__ = [
    "ARCHIVE_NAME", "ArchiveResult", "HubClient", "RetryPolicy", "CATALOG_FILE", "INDEX_ENV", "INDEX_FILE", "IndexEntry", "PULL_WORK_DIR",
    "PullJob", "PullResult", "ReferenceIndex", "RetrievalIndex", "Shortlist", "add_checkpoint", "catalogue_entry", "catalogue_models", "catalogue_source", "catalogue_sources",
    "check_name", "default_index_dir", "export_index", "family_sources", "fetch_index", "import_index",
    "load_toml", "pull_job", "pull_many", "pull_reference", "shortlist",
]
