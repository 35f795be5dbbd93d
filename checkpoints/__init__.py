"""Official SAM 2 checkpoints: the registry (`checkpoints.registry`) and the downloader
(`checkpoints.download`, also a command: `python -m checkpoints.download sam2.1_hiera_tiny`).

The downloaded .pt files live in this folder (ignored by git). The downloader is not imported
here, so that `python -m checkpoints.download` does not import its own module twice.
"""

from checkpoints.registry import CHECKPOINTS, CheckpointInfo, checkpoint_info

__all__ = ["CHECKPOINTS", "CheckpointInfo", "checkpoint_info"]
