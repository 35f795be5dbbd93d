"""Official SAM 2 checkpoints: the registry (`checkpoints.registry`) and the downloader
(`checkpoints.download`, also a command: `python -m checkpoints.download sam2.1_hiera_tiny`).

The downloaded .pt files live in this folder (ignored by git) unless told otherwise. The downloader is not imported
here, so that `python -m checkpoints.download` does not import its own module twice.
"""

from pathlib import Path

from checkpoints.registry import CHECKPOINTS, CheckpointInfo, checkpoint_info

DEFAULT_DIRECTORY = Path(__file__).resolve().parent  # this folder; the app's --checkpoint-dir changes it

__all__ = ["CHECKPOINTS", "DEFAULT_DIRECTORY", "CheckpointInfo", "checkpoint_info"]
