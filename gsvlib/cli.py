"""The gsv command line for GSVNet (also: python -m gsvlib). Run gsv COMMAND --help for a command's options and
examples."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import torch

from gsvlib import __version__
from gsvlib.bench import (BACKENDS, average_flops, bench_matrix, benchmark, busy_warning, flops_per_frame, matrix_table,
                          nonkey_parts, time_stream)
from gsvlib.checkpoint import export_weights, load_model, require_propagation
from gsvlib.config import SpanOption, add_train_options, check_starting_point, config_from_options
from gsvlib.data import DATASETS, open_dataset
from gsvlib.data.synthetic import SynthConfig, generate
from gsvlib.deploy import OnnxSegmenter, export_onnx
from gsvlib.device import PRECISIONS, check_device
from gsvlib.evaluate import (FLOW_ERROR, IMAGE_ONLY, THRESHOLD_FACTORS, evaluate_variants, keyframe_schedules,
                             known_variants)
from gsvlib.files import write_json_atomic
from gsvlib.models.gsvnet import FLOW_NETS, KEYFRAME_NETS, GSVNet
from gsvlib.models.layers import channels_last
from gsvlib.official import write_converted
from gsvlib.reports import schedule_markdown, write_tables
from gsvlib.segmenter import PROPAGATIONS, SIGNALS, KeyframePolicy, VideoSegmenter
from gsvlib.tour import QUICK, TourConfig, run_tour
from gsvlib.train import loading_rate, train
from gsvlib.video import segment_video

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


def interval_arg(text: str) -> int:
    """A keyframe interval: an integer in 1..30."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"interval must be an integer in 1..30, got {text!r}") from None
    if not 1 <= value <= 30:
        raise argparse.ArgumentTypeError(f"interval must be in 1..30 (a Cityscapes snippet has 30 frames), got {value}")
    return value


def policy_arg(text: str) -> KeyframePolicy:
    """'SIGNAL:THRESHOLD', e.g. 'flow:2.5' -> a KeyframePolicy."""
    signal, _, threshold = text.partition(":")
    try:
        return KeyframePolicy(signal, float(threshold))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--policy takes SIGNAL:THRESHOLD, e.g. flow:2.5, with SIGNAL one of "
                                         f"{sorted(SIGNALS)} and THRESHOLD > 0 (got {text!r}: {e})") from None


def cmd_info(args) -> None:
    print(f"gsvlib {__version__}, torch {torch.__version__}, {args.classes} classes\n")
    print("| part | parameters | paper (Table 2) |\n|---|---:|---|")
    seen = set()
    for keyframe_net in KEYFRAME_NETS:
        for flow_net in FLOW_NETS:
            counts = GSVNet(num_classes=args.classes, keyframe_net=keyframe_net, flow_net=flow_net).parameter_counts()
            for part, n in counts.items():
                key = part if not part.startswith("non-keyframe") else f"{part} with {flow_net}"
                if key in seen:
                    continue
                seen.add(key)
                paper = PAPER_PARAMS.get(part, "") if flow_net == next(iter(FLOW_NETS)) else ""
                size = f"{n / 1e6:.3f}M ({n * 4 / 1e6:.1f} MB fp32)" if n >= 1000 else f"{n} ({n * 4} bytes fp32)"
                print(f"| {key} | {size} | {paper} |")


def _model(args):
    """The model of ``--checkpoint``, or a randomly initialised one (timing does not depend on the weights)."""
    device = check_device(args.device)
    if getattr(args, "checkpoint", None):
        return load_model(args.checkpoint, device)[0]
    torch.manual_seed(0)
    return GSVNet(num_classes=args.classes, keyframe_net=args.keyframe_net, flow_net=args.flow_net).to(device)


def cmd_bench(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    busy_warning(args.device)
    model = channels_last(_model(args)) if args.channels_last else _model(args)
    h, w = args.size
    matrix = len(args.backend) * len(args.precision) > 1
    if matrix or args.json:
        if matrix:
            report = bench_matrix(model, args.backend, args.precision, args.size, args.intervals, args.key_scale,
                                  args.image_scales, args.device, args.intervals_timed)
            print("\n".join(matrix_table(report)))
        else:
            report = benchmark(model, args.size, args.intervals, args.key_scale, args.image_scales, args.precision[0],
                               args.device, args.intervals_timed, backend=args.backend[0])
        if args.json:
            write_json_atomic(args.json, report)
            print(f"benchmark written to {args.json}")
        return
    (backend,), (precision,) = args.backend, args.precision
    r = time_stream(model, args.size, args.interval, args.key_scale, args.intervals_timed, device=args.device,
                    precision=precision, backend=backend)
    print(f"\n{model.config.keyframe_net} + {model.config.flow_net}, {h}x{w}, l={args.interval}, key scale "
          f"{args.key_scale}, {precision} on {r.device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for i, (ms, key) in enumerate(zip(r.frame_ms, r.frame_is_key)):
        print(f"  frame {i:2d} {'keyframe    ' if key else 'non-keyframe'} {ms:8.1f} ms")
    print(f"keyframe {r.key_ms:.1f} ms, non-keyframe {r.nonkey_ms:.1f} ms (median), ratio {r.key_ms / r.nonkey_ms:.1f}x, "
          f"throughput {r.fps:.2f} FPS ({backend})")
    parts = nonkey_parts(model, args.size)
    print("parts of an eager non-keyframe (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    flops = flops_per_frame(model, args.size, args.key_scale)
    avg = average_flops(flops, args.interval)
    print(f"GFLOPs: keyframe {flops['keyframe'] / 1e9:.1f}, non-keyframe {flops['non-keyframe'] / 1e9:.2f}, "
          f"average over l={args.interval}: {avg / 1e9:.1f}  (GMACs, the paper's unit: "
          f"{flops['keyframe'] / 2e9:.1f} / {flops['non-keyframe'] / 2e9:.2f} / {avg / 2e9:.1f})")


def cmd_train(args) -> None:
    cfg = config_from_options(args)
    if args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    if args.time_loading:
        rate = loading_rate(cfg, args.time_loading)
        print(f"data loading alone: {rate['samples_per_s']:.1f} samples/s (crops of {rate['size'][0]}x"
              f"{rate['size'][1]}) over {rate['batches']} batches with {cfg.workers} worker(s); starting took "
              f"{rate['startup_s']:.1f} s")
        return
    if not args.resume:
        check_starting_point(args.recipe, cfg)
    if args.nproc > 1:
        return launch(args.nproc, args.argv)
    result = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":
        print(f"{cfg.stage} training: iteration {result['iteration']}, last loss "
              f"{result['losses'][-1] if result['losses'] else 'n/a'}, checkpoint {result['checkpoint']}")


def launch(nproc: int, argv: list[str]) -> None:
    """``gsv train --nproc N ...``: the same command under torchrun with N processes on this machine."""
    if "WORLD_SIZE" in os.environ:
        raise ValueError("--nproc starts torchrun itself: under torchrun, leave it out")
    rest, skip = [], False
    for a in argv:  # the command without --nproc N / --nproc=N
        if skip or a.startswith("--nproc="):
            skip = False
            continue
        skip = a == "--nproc"
        if not skip:
            rest.append(a)
    code = subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={nproc}", "-m", "gsvlib", *rest])
    if code:
        raise RuntimeError(f"distributed training stopped (exit status {code}); the run's last checkpoint is intact: "
                           "run the same command with --resume to continue, on any number of processes")


def cmd_eval(args) -> None:
    model, ckpt = load_model(args.checkpoint, args.device)
    if args.policy:
        if args.precision != "fp32":
            raise ValueError("--precision applies to the protocol; --policy compares keyframe schedules in fp32")
        require_propagation(ckpt, args.checkpoint)
        data = open_dataset(args.dataset, args.root, args.split, tuple(args.span))
        report = keyframe_schedules(model, data.videos(), data.table.num_classes, args.policy,
                                    range(1, args.max_interval + 1), args.factors, args.key_scale, args.device)
        print(schedule_markdown(report))
    else:
        report = _protocol(model, ckpt, args)
    if args.out:
        write_json_atomic(args.out, report)
        print(f"results written to {args.out}")
    elif args.json:
        print(json.dumps(report, indent=2))


def _protocol(model, ckpt, args) -> dict:
    if set(args.variants) - {IMAGE_ONLY, FLOW_ERROR}:
        require_propagation(ckpt, args.checkpoint)
    report = evaluate_variants(model, args.variants, args.dataset, args.root, args.split, tuple(args.span),
                               args.intervals, args.key_scale, args.image_scales, args.device,
                               precision=args.precision)
    for variant, res in report.items():
        if variant == IMAGE_ONLY:
            for s, r in res.items():
                print(f"image-only x{s}: mIoU {r['miou']:.2f}")
        elif variant == FLOW_ERROR:
            print(f"flow net: end-point error {res['epe']:.3f} px of the 1/8 grid on {res['pairs']} pairs (predicting "
                  f"no motion: {res['zero_flow_epe']:.3f})")
        else:
            print(f"{variant}: " + ", ".join(f"l={l} avg {v['avg']:.2f} min {v['min']:.2f}"
                                             for l, v in res["intervals"].items()))
    return report


def cmd_export(args) -> None:
    extra = {}
    for path in args.metrics or []:
        extra.setdefault("metrics", {})[Path(path).name] = json.loads(Path(path).read_text())
    entry = export_weights(args.checkpoint, args.out, args.manifest, extra)
    print(f"{args.out}: {entry['bytes'] / 1e6:.1f} MB (fp16), iteration {entry['iterations']}"
          + (f"; entry written to {args.manifest}" if args.manifest else ""))


def cmd_export_onnx(args) -> None:
    model, ckpt = load_model(args.checkpoint)
    if args.propagation != "copy":
        require_propagation(ckpt, args.checkpoint)
    meta = export_onnx(model, args.out, args.size, args.key_scale, args.propagation, ckpt.get("dataset"))
    print(f"{args.out}: keyframe.onnx, propagation.onnx, labels.onnx for {meta['size'][0]}x{meta['size'][1]} frames "
          f"(opset {meta['opset']}, checked); run them with `gsv segment --onnx {args.out}` or OnnxSegmenter")


def cmd_convert_official(args) -> None:
    ckpt = write_converted(args.checkpoints, args.out, args.dataset)
    cfg = ckpt["model_config"]
    what = ("GSVNet with its keyframe net" if ckpt["stage"] == "gsv" else
            "the keyframe net alone (its propagation is untrained: evaluate it with --variants image)")
    print(f"{args.out}: {what}, {KEYFRAME_NETS[cfg['keyframe_net']].title}, {cfg['num_classes']} {ckpt['dataset']} "
          f"classes, official conventions; evaluate it with\n  gsv eval --checkpoint {args.out} --dataset "
          f"{ckpt['dataset']} --root DATA --split val --key-scale 0.75"
          + (" --variants image" if ckpt["stage"] == "keyframe" else ""))


def cmd_tables(args) -> None:
    print(write_tables(args.folder))
    print(f"written to {Path(args.folder) / 'results.md'}")


def cmd_segment(args) -> None:
    if args.onnx and args.policy:
        raise ValueError("--policy reads PF's intermediates, which the ONNX graphs do not output: use --checkpoint")
    if args.onnx:
        seg = OnnxSegmenter(args.onnx, args.interval)
        dataset = seg.meta["dataset"]
    elif args.checkpoint:
        model, ckpt = load_model(args.checkpoint, args.device)
        if args.interval > 1:
            require_propagation(ckpt, args.checkpoint)
        seg = VideoSegmenter(model, args.interval, args.key_scale, args.device, compile=args.compile,
                             policy=args.policy)
        dataset = ckpt.get("dataset")
    else:
        raise ValueError("give the model: --checkpoint FILE, or --onnx FOLDER (from `gsv export-onnx`)")
    summary = segment_video(seg, args.input, args.out, DATASETS[dataset or "cityscapes"].table, args.alpha,
                            args.max_frames, legend=args.legend, fps=args.fps)
    nonkey = summary["non_keyframe_ms_mean"]
    keys = sum(t["keyframe"] for t in summary["per_frame"])
    forced = sum(t["forced"] for t in summary["per_frame"])
    print(f"{summary['frames']} frames -> {args.out}: {keys} keyframes" + (f" ({forced} forced by the policy)"
          if args.policy else "") + f", keyframe {summary['keyframe_ms_mean']:.1f} ms, non-keyframe "
          f"{'n/a' if nonkey is None else f'{nonkey:.1f} ms'} (mean), {summary['fps']:.2f} FPS")


def cmd_tour(args) -> None:
    cfg = TourConfig(data=args.data, runs=args.runs, figures=args.figures, **(QUICK if args.quick else {}))
    print(f"gsv tour: generate the synthetic set in {cfg.data}, train the keyframe net ({cfg.keyframe_iterations} "
          f"iterations) and the propagation with and without intra features ({cfg.gsv_iterations} each) in "
          f"{cfg.runs}, evaluate every method for l = 1..{max(cfg.intervals)}, benchmark at "
          f"{cfg.bench_size[0]}x{cfg.bench_size[1]}; the report goes to {cfg.figures}. "
          + ("" if args.quick else "About 12 minutes on 2 CPU cores; ") + "steps already done are skipped.",
          flush=True)
    report = run_tour(cfg)
    print((Path(args.figures) / "results.md").read_text())
    print(f"tour finished in {report['timings_s']['total']['seconds']:.0f} s; report in {cfg.figures}")


def cmd_data_synth(args) -> None:
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
                                  "--precision fp16\n  gsv bench --json figures/bench.json --intervals 1 2 3 4 5\n"
                                  "  gsv bench --backend eager compiled onnx --precision fp32 bf16 --json bench.json",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("--checkpoint", help="a gsvkit checkpoint (default: random weights, same speed)")
    bench.add_argument("--size", type=parse_size, default=(1024, 2048), help="input HxW (default 1024x2048)")
    bench.add_argument("--interval", type=interval_arg, default=5, help="keyframe interval l (default 5)")
    bench.add_argument("--key-scale", type=float, default=0.75, help="keyframe input scale (default 0.75)")
    bench.add_argument("--intervals-timed", type=int, default=2, help="timed keyframe intervals after warm-up")
    bench.add_argument("--json", help="write the full benchmark (l = --intervals, image-only at --image-scales) here")
    bench.add_argument("--intervals", type=interval_arg, nargs="+", default=[1, 2, 3, 4, 5])
    bench.add_argument("--image-scales", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    bench.add_argument("--keyframe-net", choices=list(KEYFRAME_NETS), default=next(iter(KEYFRAME_NETS)))
    bench.add_argument("--flow-net", choices=list(FLOW_NETS), default=next(iter(FLOW_NETS)))
    bench.add_argument("--classes", type=int, default=19)
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    bench.add_argument("--precision", choices=list(PRECISIONS), nargs="+", default=["fp32"],
                       help="fp32, fp16 (CUDA) or bf16 autocast; several: one table over backends x precisions")
    bench.add_argument("--backend", choices=BACKENDS, nargs="+", default=["eager"],
                       help="eager PyTorch; compiled: torch.compile of the keyframe path, the non-keyframe path and "
                            "the fused output step (compiled in the warm-up: about a minute on a CPU); onnx: exported "
                            "and run by ONNX Runtime (the onnx extra). Several: the full benchmark of each, one table "
                            "(default eager)")
    bench.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    bench.set_defaults(func=cmd_bench)

    tr = sub.add_parser("train", help="train the keyframe net (stage keyframe) or GSVNet's propagation (stage gsv)",
                        epilog="examples:\n"
                               "  gsv train --stage keyframe --out runs/key --iterations 2000\n"
                               "  gsv train --stage gsv --init runs/key/checkpoint.pt --out runs/gsv\n"
                               "  gsv train --stage gsv --out runs/gsv --resume          # continue an interrupted run\n"
                               "  gsv train --recipe camvid-keyframe --root ../shared/camvid --imagenet r18.pth\n"
                               "  gsv train --stage gsv --init runs/key/checkpoint.pt --out runs/gsv --workers 2\n"
                               "  gsv train --recipe cityscapes-gsv --root data/cityscapes --init runs/key/checkpoint.pt "
                               "--device cuda\n      --nproc 8 --sync-bn --precision bf16",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    tr.add_argument("--nproc", type=int, default=1, help="data-parallel processes on this machine, started with "
                    "torchrun (gloo on the CPU, NCCL on GPUs: one per GPU); the global batch and the schedule stay the "
                    "recipe's (default 1)")
    tr.add_argument("--time-loading", type=int, default=0, metavar="N",
                    help="time N batches of data loading alone (no training): samples/s with --workers")
    add_train_options(tr)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="the paper's protocol: average and minimum mIoU for keyframe intervals 1..5",
                        epilog="examples:\n  gsv eval --checkpoint runs/gsv/checkpoint.pt\n"
                               "  gsv eval --checkpoint ckpt.pt --dataset camvid --root ../shared/camvid --split val "
                               "--variants gsv warp copy image --out runs/gsv/eval.json\n"
                               "  gsv eval --checkpoint runs/tour/gsv/checkpoint.pt --policy flow kernel intra "
                               "--out runs/tour/policy.json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--dataset", choices=sorted(DATASETS), default="synthetic")
    ev.add_argument("--root", default="data/synthetic")
    ev.add_argument("--split", default="val")
    ev.add_argument("--span", action=SpanOption, nargs="+", metavar="SPAN", default=(0.0, 1.0),
                    help="CamVid: evaluate fraction A..B of each sequence in time (SPAN: A B, e.g. 0.65 1), or a named "
                         f"part of the 15 Hz run (SPAN: NAME): {SpanOption.names()} (default 0 1)")
    ev.add_argument("--intervals", type=interval_arg, nargs="+", default=[1, 2, 3, 4, 5])
    ev.add_argument("--key-scale", type=float, default=0.75)
    ev.add_argument("--variants", nargs="+", choices=known_variants(), default=["gsv"],
                    help="the propagations (gsv: GSVNet; warp: no GSV conv; copy: the previous segmentation) scored "
                         "with the protocol; image: the keyframe net alone at --image-scales; flow: the flow net's "
                         "end-point error against the synthetic set's exact flow (default gsv)")
    ev.add_argument("--image-scales", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    ev.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                    help="autocast of the nets: bf16 (CPU or CUDA) or fp16 (CUDA); the protocol only (default fp32)")
    ev.add_argument("--policy", nargs="+", choices=sorted(SIGNALS), metavar="SIGNAL",
                    help="adaptive keyframes instead of the protocol: stream whole videos and compare keyframes forced "
                         "by each SIGNAL (" + ", ".join(f"{k}: {v.title}" for k, v in SIGNALS.items()) + ") with "
                         "fixed l = 1..--max-interval, on the same frames")
    ev.add_argument("--max-interval", type=interval_arg, default=8,
                    help="--policy: the longest fixed l, and the bound on every policy's interval (default 8)")
    ev.add_argument("--factors", type=float, nargs="+", default=list(THRESHOLD_FACTORS),
                    help="--policy: thresholds in units of the signal's median reading per frame (default "
                         + " ".join(f"{f:g}" for f in THRESHOLD_FACTORS) + ")")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--out", help="write the results (JSON) here")
    ev.add_argument("--json", action="store_true", help="print the full results as JSON")
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser("export", help="a training checkpoint as a small fp16 weights file, with a manifest entry",
                        epilog="example:\n  gsv export --checkpoint runs/camvid/gsv/checkpoint.pt --out "
                               "weights/camvid_swiftnet_gsvnet.pt --manifest weights/manifest.json "
                               "--metrics figures/camvid/propagation.json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("--checkpoint", required=True, help="a `gsv train` checkpoint")
    ex.add_argument("--out", required=True, help="the weights file to write (loads wherever a checkpoint does)")
    ex.add_argument("--manifest", help="JSON file listing the weights: dataset, command, iterations, metrics")
    ex.add_argument("--metrics", nargs="+", help="`gsv eval --out` files to record in the manifest entry")
    ex.set_defaults(func=cmd_export)

    ox = sub.add_parser("export-onnx", help="the model as ONNX graphs (keyframe, propagation, labels) for ONNX Runtime",
                        epilog="example:\n  gsv export-onnx --checkpoint weights/camvid_swiftnet_gsvnet.pt "
                               "--size 384x480 --out runs/onnx\n  gsv segment frames/ --onnx runs/onnx --out overlays.mp4",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ox.add_argument("--checkpoint", required=True, help="a gsvkit checkpoint or weights file")
    ox.add_argument("--out", required=True, help="folder for keyframe.onnx, propagation.onnx, labels.onnx, onnx.json")
    ox.add_argument("--size", type=parse_size, required=True,
                    help="HxW of the frames as the segmenter pads them: multiples of 32 (384x480 for CamVid's 360x480)")
    ox.add_argument("--key-scale", type=float, default=0.75, help="keyframe input scale, fixed in the graph (0.75)")
    ox.add_argument("--propagation", choices=list(PROPAGATIONS), default="gsv", help="the non-keyframe path (gsv)")
    ox.set_defaults(func=cmd_export_onnx)

    co = sub.add_parser("convert-official", help="the authors' released checkpoints (robert80203/GSVNet) as a gsvkit "
                                                 "checkpoint that runs under the official conventions",
                        epilog="examples:\n  gsv convert-official weights/gsvnet_swiftnet.pth.tar weights/swiftnet.pth "
                               "--out weights/official_sn_r18.pt\n"
                               "  gsv convert-official weights/bisenet.pth --out weights/official_bn_r18_image.pt",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    co.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                    help="an official GSVNet checkpoint and the SwiftNet or BiSeNet checkpoint it was trained with, "
                         "in any order, or a keyframe net's checkpoint alone")
    co.add_argument("--out", required=True, help="the gsvkit checkpoint to write")
    co.add_argument("--dataset", choices=sorted(DATASETS), default="cityscapes",
                    help="the dataset the weights were trained on: its class names go in the checkpoint (cityscapes)")
    co.set_defaults(func=cmd_convert_official)

    tb = sub.add_parser("tables", help="render a CamVid results folder (what `make camvid` writes) as markdown tables",
                        epilog="example: gsv tables figures/camvid    (writes figures/camvid/results.md)")
    tb.add_argument("folder", help="folder of image_<net>.json, propagation.json and bench_<H>x<W>.json files")
    tb.set_defaults(func=cmd_tables)

    sg = sub.add_parser("segment", help="segment a video or a folder of frames; write colour overlays and timings",
                        epilog="examples:\n  gsv segment clip.mp4 --checkpoint weights/camvid_swiftnet_gsvnet.pt "
                               "--out clip_seg.mp4\n"
                               "  gsv segment frames/ --checkpoint ckpt.pt --out overlays --interval 3 --fps 30\n"
                               "  gsv segment clip.mp4 --checkpoint ckpt.pt --out clip_seg.gif --max-frames 60",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sg.add_argument("input", help="a video file (.mp4, .avi, .mov, .mkv, .webm, .m4v) or a folder of frames "
                                  "(.png, .jpg, .bmp, in natural name order)")
    sg.add_argument("--checkpoint", help="a gsvkit checkpoint or weights file (gsv train, gsv export)")
    sg.add_argument("--onnx", help="instead of --checkpoint: a folder from `gsv export-onnx`, run with ONNX Runtime "
                                   "(its keyframe scale and frame size are fixed at export)")
    sg.add_argument("--out", required=True, help="where the overlays go: a path ending in .mp4, .webm or .gif writes "
                                                 "a video, a path without a suffix a folder of PNGs")
    sg.add_argument("--interval", type=interval_arg, default=5,
                    help="keyframe interval l: a keyframe every l frames, 1 = the keyframe net on every frame "
                         "(default 5)")
    sg.add_argument("--key-scale", type=float, default=0.75, help="keyframe input scale (default 0.75, the paper's)")
    sg.add_argument("--fps", type=float, help="the input's frame rate, for a folder of frames (a video file's own is "
                                              "used otherwise): warns below 10 and sets the output video's rate")
    sg.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the label colours (default 0.5)")
    sg.add_argument("--no-legend", dest="legend", action="store_false",
                    help="leave out the strip of class colours under each frame")
    sg.add_argument("--max-frames", type=int, help="stop after this many frames (default: all)")
    sg.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    sg.add_argument("--policy", type=policy_arg, metavar="SIGNAL:THRESHOLD",
                    help="adaptive keyframes: also force a keyframe once SIGNAL summed since the last one passes "
                         "THRESHOLD (e.g. flow:2.5; `gsv eval --policy` lists thresholds with their accuracy); "
                         "--interval still bounds every run")
    sg.add_argument("--compile", action="store_true", help="torch.compile the model and the fused output step: "
                                                           "faster from the third frame on, after a one-off compile")
    sg.set_defaults(func=cmd_segment)

    tour = sub.add_parser("tour", help="the main job on the synthetic set: data, training, evaluation, benchmark",
                          epilog="example: gsv tour            (what `make tour` runs; about 12 minutes on 2 cores)")
    tour.add_argument("--data", default="data/synthetic")
    tour.add_argument("--runs", default="runs/tour")
    tour.add_argument("--figures", default="runs/tour/report",
                      help="where results.md, results.json and the plots go (default runs/tour/report; `make "
                           "figures` refreshes the reference copy committed in figures/)")
    tour.add_argument("--quick", action="store_true", help="tiny settings that finish in about a minute (for tests)")
    tour.set_defaults(func=cmd_tour)

    data = sub.add_parser("data", help="datasets: generate the built-in synthetic street video")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write the synthetic set in the Cityscapes sequence layout",
                                epilog="examples:\n  gsv data synth --out data/synthetic\n"
                                       "  gsv data synth --out data/synth-big --snippets 40 --size 512x1024",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    synth.add_argument("--out", default="data/synthetic", help="output folder (default data/synthetic)")
    synth.add_argument("--snippets", type=int, default=8, help="training snippets (default 8)")
    synth.add_argument("--val-snippets", type=int, default=4, help="validation snippets (default 4)")
    synth.add_argument("--size", type=parse_size, default=(256, 512), help="HxW, multiples of 8 (default 256x512)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--force", action="store_true", help="replace a set made with other settings")
    synth.set_defaults(func=cmd_data_synth)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    with warnings.catch_warnings():  # a warning reads like an error message: the command, then what to do
        warnings.showwarning = lambda message, *_: print(f"gsv {args.command}: warning: {message}", file=sys.stderr)
        try:
            args.func(args)
        except (ValueError, RuntimeError, OSError, KeyError) as e:
            print(f"gsv {args.command}: error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
