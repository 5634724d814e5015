"""model-provenance: audit where an AI model's weights, tokenizer and inference code came from."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("model-provenance")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
