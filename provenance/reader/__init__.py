"""Open any supported checkpoint (file or folder) as a lazy `Checkpoint`."""

from .base import Checkpoint, CheckpointFile, RowSelection, TensorInfo
from .discovery import open_checkpoint

__all__ = ["Checkpoint", "CheckpointFile", "RowSelection", "TensorInfo", "open_checkpoint"]
