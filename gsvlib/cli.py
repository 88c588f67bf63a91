"""The ``gsv`` command line (also ``python -m gsvlib``). ``gsv COMMAND --help`` shows each command's options."""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

PAPER_PARAMS = {  # Table 2 lists parameters in bytes (47.2M = 11.8M fp32 values); converted here to counts
    "keyframe net N (swiftnet)": "11.8M (47.2 MB)",
    "keyframe net N (bisenet)": "12.3M (49.0 MB)",
    "non-keyframe total (O + phi + G + theta)": "0.4M (1.6 MB)",
}


def parse_size(text: str) -> tuple[int, int]:
    """'1024x2048' (H x W) -> (1024, 2048)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 1024x2048, got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def cmd_info(args) -> None:
    import torch

    from gsvlib import GSVNet, __version__

    print(f"gsvlib {__version__}, torch {torch.__version__}, {args.classes} classes\n")
    print(f"| part | parameters | paper (Table 2) |\n|---|---:|---|")
    seen = set()
    for keyframe_net in ("swiftnet", "bisenet"):
        for flow_net in ("light", "flownets"):
            counts = GSVNet(num_classes=args.classes, keyframe_net=keyframe_net, flow_net=flow_net).parameter_counts()
            for part, n in counts.items():
                key = part if not part.startswith("non-keyframe") else f"{part} with {flow_net}"
                if key in seen:
                    continue
                seen.add(key)
                paper = PAPER_PARAMS.get(part, "") if flow_net == "light" else ""
                print(f"| {key} | {n / 1e6:.3f}M ({n * 4 / 1e6:.1f} MB fp32) | {paper} |")


def cmd_bench(args) -> None:
    import torch

    from gsvlib import GSVNet
    from gsvlib.bench import average_flops, flops_per_frame, time_stream

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = GSVNet(num_classes=args.classes, keyframe_net=args.keyframe_net, flow_net=args.flow_net)
    h, w = args.size
    r = time_stream(model, args.size, args.interval, args.key_scale, args.intervals, device=args.device,
                    precision=args.precision)
    print(f"\n{args.keyframe_net} + {args.flow_net}, {h}x{w}, l={args.interval}, key scale {args.key_scale}, "
          f"{args.precision} on {r.device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for i, (ms, key) in enumerate(zip(r.frame_ms, r.frame_is_key)):
        print(f"  frame {i:2d} {'keyframe    ' if key else 'non-keyframe'} {ms:8.1f} ms")
    print(f"keyframe {r.key_ms:.1f} ms, non-keyframe {r.nonkey_ms:.1f} ms (median), ratio {r.key_ms / r.nonkey_ms:.1f}x, "
          f"throughput {r.fps:.2f} FPS")
    flops = flops_per_frame(model.to(r.device), args.size, args.key_scale)
    avg = average_flops(flops, args.interval)
    print(f"GFLOPs: keyframe {flops['keyframe'] / 1e9:.1f}, non-keyframe {flops['non-keyframe'] / 1e9:.2f}, "
          f"average over l={args.interval}: {avg / 1e9:.1f}  (GMACs, the paper's unit: "
          f"{flops['keyframe'] / 2e9:.1f} / {flops['non-keyframe'] / 2e9:.2f} / {avg / 2e9:.1f})")


def cmd_data_synth(args) -> None:
    from gsvlib.data.synthetic import SynthConfig, generate

    meta = generate(args.out, SynthConfig(args.snippets, args.val_snippets, args.size, seed=args.seed), force=args.force)
    total = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"synthetic set in {args.out}: {meta['snippets']} train + {meta['val_snippets']} val snippets of "
          f"{meta['frames']} frames at {meta['size'][0]}x{meta['size'][1]}, {total / 1e6:.0f} MB, "
          f"generated in {meta['seconds']} s (seed {meta['seed']})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gsv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="parameters per part of GSVNet, compared with the paper",
                          epilog="example: gsv info --classes 11")
    info.add_argument("--classes", type=int, default=19, help="number of classes (19 Cityscapes, 11 CamVid)")
    info.set_defaults(func=cmd_info)

    bench = sub.add_parser("bench", help="per-frame timing, FPS and FLOPs of the streaming segmenter",
                           epilog="examples:\n  gsv bench\n  gsv bench --size 720x960 --interval 3 --device cuda "
                                  "--precision fp16", formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("--size", type=parse_size, default=(1024, 2048), help="input HxW (default 1024x2048)")
    bench.add_argument("--interval", type=int, default=5, help="keyframe interval l (default 5)")
    bench.add_argument("--key-scale", type=float, default=0.75, help="keyframe input scale (default 0.75)")
    bench.add_argument("--intervals", type=int, default=2, help="timed keyframe intervals after warm-up (default 2)")
    bench.add_argument("--keyframe-net", choices=("swiftnet", "bisenet"), default="swiftnet")
    bench.add_argument("--flow-net", choices=("light", "flownets"), default="light")
    bench.add_argument("--classes", type=int, default=19)
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    bench.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    bench.set_defaults(func=cmd_bench)

    data = sub.add_parser("data", help="datasets: generate the built-in synthetic street video")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write the synthetic set in the Cityscapes sequence layout",
                                epilog="examples:\n  gsv data synth --out data/synthetic\n"
                                       "  gsv data synth --out data/synth-big --snippets 40 --size 512x1024",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    synth.add_argument("--out", default="data/synthetic", help="output folder (default data/synthetic)")
    synth.add_argument("--snippets", type=int, default=8, help="training snippets (default 8)")
    synth.add_argument("--val-snippets", type=int, default=2, help="validation snippets (default 2)")
    synth.add_argument("--size", type=parse_size, default=(256, 512), help="HxW, multiples of 8 (default 256x512)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--force", action="store_true", help="replace a set made with other settings")
    synth.set_defaults(func=cmd_data_synth)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"gsv {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
