"""Reading a video for `init_state`: a list of frames, a folder of images or a video file."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VideoSource = Union[str, Path, Sequence[np.ndarray], np.ndarray]


def _frame_sort_key(path: Path):
    # Numbered frames ("2.jpg" before "10.jpg") sort by number, others by name.
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.name)


def _read_folder(folder: Path) -> list[np.ndarray]:
    paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_frame_sort_key)
    if not paths:
        raise ValueError(f"No image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def _read_video_file(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(buf, np.uint8).reshape(height, width, 3).copy() for buf in reader]
    except (RuntimeError, OSError, StopIteration) as exc:
        raise ValueError(f"Could not read video {path}: {exc}") from exc
    if not frames:
        raise ValueError(f"No frames could be decoded from {path}")
    return frames


def load_video_frames(video: VideoSource) -> list[np.ndarray]:
    """-> list of H x W x 3 uint8 RGB frames."""
    if isinstance(video, (str, Path)):
        path = Path(video)
        if not path.exists():
            raise FileNotFoundError(f"No such video file or folder: {path}")
        if path.is_dir():
            return _read_folder(path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return [np.asarray(Image.open(path).convert("RGB"))]
        return _read_video_file(path)
    if isinstance(video, np.ndarray):
        if video.ndim == 3:
            return [video]
        return list(video)
    return list(video)
