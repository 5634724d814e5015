"""Read checkpoints lazily, in the formats models ship in, without executing anything from the file.

`open_checkpoint` finds the format of a file, folder or `hf://` repo and lists tensors without reading them;
`Checkpoint.read_rows` reads only the rows asked for, as float32 (quantised formats dequantised).
`SuspectReader` counts the bytes a scan reads; `modelprov.reader.tokenizer` reads the tokenizer files.
"""

from ._base import CONFIG_NAMES, TOKENIZER_NAMES, Checkpoint, CheckpointFile, RowSelection, TensorInfo, view_shape
from ._discovery import open_checkpoint
from ._hub import open_hub_checkpoint
from ._rounding import Rounded, float_rounding
from ._suspect import SuspectReader
from ._tensor_hashes import TensorDigest, hash_tensors
from .tokenizer import CheckpointTokenizer, checkpoint_tokens

__all__ = [
    "CONFIG_NAMES", "Checkpoint", "CheckpointFile", "CheckpointTokenizer", "Rounded", "RowSelection", "SuspectReader",
    "TOKENIZER_NAMES", "TensorDigest", "TensorInfo", "checkpoint_tokens", "hash_tensors", "open_checkpoint",
    "float_rounding", "open_hub_checkpoint", "view_shape",
]
