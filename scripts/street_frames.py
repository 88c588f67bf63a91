"""Write the first frames of synthetic street snippet 0 as a folder of PNGs: a video for `gsv bench --end-to-end` on a
machine without CamVid (scripts/gpu-bench.sh).

    python scripts/street_frames.py OUT [--size HxW] [--frames N]
"""
import argparse

from gsvlib.config import parse_size
from gsvlib.data.io import write_png
from gsvlib.data.synthetic import render_snippet

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", help="the folder to write 000.png, 001.png, ...")
parser.add_argument("--size", type=parse_size, default=(1024, 2048), help="HxW (default 1024x2048)")
parser.add_argument("--frames", type=int, default=30, help="how many frames (default 30)")
args = parser.parse_args()
for t, (rgb, *_) in enumerate(render_snippet(0, 0, tuple(args.size), frames=args.frames)):
    write_png(f"{args.out}/{t:03d}.png", rgb)
print(f"{args.out}: {args.frames} frames of the synthetic street at {args.size[1]}x{args.size[0]}")
