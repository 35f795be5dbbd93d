"""Memory over a long video: `python scripts/long_video_memory.py [FRAMES] [IMAGE_SIZE]`.

Tracks one object through FRAMES (default 1800) synthetic 1280x720 frames, kept JPEG-encoded
(raw, 1800 such frames would need 5 GB), in fast mode, and prints RSS every 200 frames and
the peak. Measured here (512 px, bfloat16, 2 cores): peak RSS 1030 MB, +0.11 MB per frame.
"""
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sam2 import build_model, get_config  # noqa: E402
from sam2.session import FrameStore  # noqa: E402
from sam2.video_predictor import SAM2VideoPredictor  # noqa: E402

W, H = 1280, 720
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1800
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 512
rng = np.random.default_rng(0)
background = rng.integers(0, 60, (H // 8 + 1, W // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:H, :W].astype(np.uint8)
yy, xx = np.mgrid[0:H, 0:W]

class Lazy:
    def __len__(self): return N
    def __getitem__(self, t):
        if t >= N:
            raise IndexError
        frame = background.copy()
        cx, cy = W * 0.3 + 300 * np.sin(t / 60), H * 0.5 + 120 * np.cos(t / 45)
        frame[(xx - cx) ** 2 + (yy - cy) ** 2 < 90 ** 2] = (220, 40, 40)
        return frame

def rss(): return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
torch.manual_seed(0)
model = build_model(get_config("sam2.1_hiera_t", image_size=SIZE))
t0 = time.time()
store = FrameStore(Lazy(), encoding="jpeg")
print(f"frames stored: {store.nbytes()/2**20:.0f} MB in {time.time()-t0:.0f} s; RSS {rss():.0f} MB", flush=True)
p = SAM2VideoPredictor(model, precision="bfloat16")
s = p.init_state(store)
p.add_new_points_or_box(s, 0, 1, points=[[W * 0.3, H * 0.5]], labels=[1])
t0 = time.time()
for f, _, _m in p.propagate_in_video(s):
    if f % 200 == 0:
        print(f"frame {f}: RSS {rss():.0f} MB, {(time.time()-t0)/(f+1):.2f} s/frame", flush=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"done {N} frames in {time.time()-t0:.0f} s; RSS end {rss():.0f} MB; peak RSS {peak:.0f} MB; "
      f"memory maps held {s.tracks[1].memory_count()}", flush=True)
