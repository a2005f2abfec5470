"""Episode videos: MP4 through imageio's ffmpeg, MuJoCo rendering on EGL when headless."""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

VIDEO_FPS = 30


def check_video_support() -> None:
    """Raises ImportError with the install line when imageio/ffmpeg are missing; selects EGL
    rendering on a headless machine (MuJoCo's default GLFW needs a display)."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"videos need imageio with ffmpeg ({e}); install them with "
            "`pip install 'robolearn[video]'` or run without video"
        ) from e
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"


def write_video(path: str | os.PathLike, frames: list[np.ndarray]) -> None:
    """Writes (H, W, 3) uint8 frames to an H.264 MP4 at :data:`VIDEO_FPS`."""
    import imageio.v2 as imageio

    imageio.mimwrite(str(path), np.stack(frames), fps=VIDEO_FPS, codec="libx264",
                     macro_block_size=1)
    log.debug("wrote %s (%d frames)", path, len(frames))
