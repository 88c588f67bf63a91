"""The gsv command line for GSVNet (also: python -m gsvlib). Run gsv COMMAND --help for a command's options and
examples."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import torch

from gsvlib import __version__
from gsvlib.bench import (BenchConfig, average_flops, bench_matrix, benchmark, busy_warning, end_to_end,
                          end_to_end_table, flops_per_frame, matrix_table, part_timings, throughput_table, time_stream)
from gsvlib.checkpoint import export_weights, load_model, read_metrics, require_trained
from gsvlib.config import (add_options, add_train_options, check_starting_point, config_from_options, given_options,
                           interval_arg, parse_size, seed_arg)
from gsvlib.data import DATASETS, open_dataset
from gsvlib.data.stills import Motion, StillsInMotion, write_clips
from gsvlib.data.synthetic import SynthConfig, generate
from gsvlib.deploy import OnnxRuntime, calibration_frames, export_onnx
from gsvlib.device import check_device
from gsvlib.evaluate import VARIANTS, EvalConfig, run_eval
from gsvlib.experiments import Runner, collect, plan_text
from gsvlib.files import check_file_output, marked, refuse_overlap, shown, write_json_atomic
from gsvlib.models.describe import layer_page
from gsvlib.models.gsvnet import FLOW_NETS, KEYFRAME_NETS, GSVNet
from gsvlib.models.layers import channels_last
from gsvlib.official import write_converted
from gsvlib.reports import schedule_markdown, write_tables
from gsvlib.segmenter import PAPER, PROPAGATIONS, RUNTIMES, SIGNALS, KeyframePolicy, VideoSegmenter
from gsvlib.tour import EXPERIMENTS, QUICK, TourConfig, run_tour
from gsvlib.train import loading_rate, train
from gsvlib.video import describe_stages, segment_video

PAPER_PARAMS = {  # Table 2 lists parameters in bytes (47.2M = 11.8M fp32 values); converted here to counts
    "keyframe net N (swiftnet)": "11.8M (47.2 MB)",
    "keyframe net N (bisenet)": "12.3M (49.0 MB)",
    "non-keyframe total (O + phi + G + theta)": "0.4M (1.6 MB)",
}


def policy_arg(text: str) -> KeyframePolicy:
    """'SIGNAL:THRESHOLD', e.g. 'flow:2.5' -> a KeyframePolicy."""
    signal, _, threshold = text.partition(":")
    try:
        return KeyframePolicy(signal, float(threshold))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--policy takes SIGNAL:THRESHOLD, e.g. flow:2.5, with SIGNAL one of "
                                         f"{sorted(SIGNALS)} and THRESHOLD > 0 (got {text!r}: {e})") from None


def cmd_info(args) -> None:
    if args.layers:
        print(layer_page(args.classes))
        return
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


def _model(cfg: BenchConfig) -> tuple[GSVNet, str | None]:
    """The model of ``cfg.checkpoint`` and its dataset, or a randomly initialised one (timing does not depend on the
    weights) and None."""
    device = check_device(cfg.device)
    if cfg.checkpoint:
        model, ckpt = load_model(cfg.checkpoint, device)
        return model, ckpt.get("dataset")
    torch.manual_seed(0)
    return GSVNet(num_classes=cfg.classes, keyframe_net=cfg.keyframe_net, flow_net=cfg.flow_net).to(device), None


def cmd_bench(args) -> None:
    cfg = BenchConfig(**given_options(args, BenchConfig))
    cfg.check()
    check_file_output(cfg.json, "--json", "json")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    busy_warning(cfg.device)
    model, dataset = _model(cfg)
    model = channels_last(model) if cfg.channels_last else model
    h, w = cfg.size
    if cfg.end_to_end:
        report = end_to_end(model, cfg.end_to_end, DATASETS[dataset or "cityscapes"].table, cfg,
                            done=(lambda r: write_json_atomic(cfg.json, marked(r))) if cfg.json else None)
        print("\n".join(end_to_end_table(report)))
    elif len(cfg.backend) * len(cfg.precision) > 1:
        report = bench_matrix(model, cfg, done=(lambda r: write_json_atomic(cfg.json, marked(r))) if cfg.json else None)
        print("\n".join(matrix_table(report)))
    elif cfg.json:
        report = benchmark(model, cfg, cfg.backend[0], cfg.precision[0])
        print("\n".join(throughput_table(report)))
    else:
        (backend,), (precision,) = cfg.backend, cfg.precision
        r = time_stream(model, cfg.size, cfg.interval, cfg.key_scale, cfg.intervals_timed, device=cfg.device,
                        precision=precision, backend=backend)
        print(f"\n{model.config.keyframe_net} + {model.config.flow_net}, {h}x{w}, l={cfg.interval}, key scale "
              f"{r.key_scale}, {precision} on {r.device} (torch {torch.__version__}, {torch.get_num_threads()} "
              "threads)")
        for i, (ms, key) in enumerate(zip(r.frame_ms, r.frame_is_key)):
            print(f"  frame {i:2d} {'keyframe    ' if key else 'non-keyframe'} {ms:8.1f} ms")
        print(f"keyframe {r.key_ms:.1f} ms, non-keyframe {r.nonkey_ms:.1f} ms (median), ratio "
              f"{r.key_ms / r.nonkey_ms:.1f}x, throughput {r.fps:.2f} FPS ({backend})")
        parts = part_timings(model, cfg.size, r.key_scale)
        print("parts of a frame, eager fp32 (median ms): " + ", ".join(f"{k} {v['ms']:.1f}" for k, v in parts.items())
              + f"; the output step computed scores in {parts['labels (output step)']['mixed_share']:.0%} of spans")
        flops = flops_per_frame(model, cfg.size, r.key_scale)
        avg = average_flops(flops, cfg.interval)
        print(f"GFLOPs: keyframe {flops['keyframe'] / 1e9:.1f}, non-keyframe {flops['non-keyframe'] / 1e9:.2f}, "
              f"average over l={cfg.interval}: {avg / 1e9:.1f}  (GMACs, the paper's unit: "
              f"{flops['keyframe'] / 2e9:.1f} / {flops['non-keyframe'] / 2e9:.2f} / {avg / 2e9:.1f})")
        return
    if cfg.json:
        write_json_atomic(cfg.json, marked(report))
        print(f"benchmark written to {cfg.json}")


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
    cfg = EvalConfig(**given_options(args, EvalConfig))
    cfg.check()
    check_file_output(cfg.out, kind="json")
    model, ckpt = load_model(cfg.checkpoint, cfg.device)
    cfg.require(ckpt)
    report = run_eval(model, cfg)
    if cfg.policy:
        print(schedule_markdown(report))
    else:
        for name, res in report.items():
            print(VARIANTS[name].summary(res))
    if cfg.out:
        write_json_atomic(cfg.out, marked(report))
        print(f"results written to {cfg.out}")
    elif args.json:
        print(json.dumps(report, indent=2))


def cmd_export(args) -> None:
    extra = {}
    for path in args.metrics or []:
        extra.setdefault("metrics", {})[Path(path).name] = read_metrics(path)
    entry = export_weights(args.checkpoint, args.out, args.manifest, extra)
    print(f"{args.out}: {entry['bytes'] / 1e6:.1f} MB (fp16), iteration {entry['iterations']}"
          + (f"; entry written to {args.manifest}" if args.manifest else ""))


def cmd_export_onnx(args) -> None:
    refuse_overlap(args.out, {"the checkpoint": args.checkpoint})
    model, ckpt = load_model(args.checkpoint)
    require_trained(ckpt, args.checkpoint, ("keyframe_net", *PROPAGATIONS[args.propagation].uses),
                    f"gsv export-onnx --propagation {args.propagation}")
    key_scale = model.config.key_scale if args.key_scale is None else args.key_scale
    calibration, source = None, None
    if args.int8:
        dataset, _, root = args.int8.partition("=")
        if not root:
            raise ValueError(f"--int8 takes DATASET=ROOT (e.g. camvid=data/camvid), got {args.int8!r}")
        calibration = calibration_frames(open_dataset(dataset, root, args.calibrate), args.calibration_frames)
        source = f"{dataset} {args.calibrate}, {len(calibration)} frames"
    meta = export_onnx(model, args.out, args.size, key_scale, args.propagation, ckpt.get("dataset"), calibration, source)
    print(f"{args.out}: keyframe.onnx, propagation.onnx, labels.onnx" + (", keyframe.int8.onnx" if args.int8 else "")
          + f" for {meta['size'][0]}x{meta['size'][1]} frames (opset {meta['opset']}, keyframes at x{key_scale:g}, "
          f"checked); run them with `gsv segment --onnx {args.out}" + (" --int8" if args.int8 else "")
          + "` or VideoSegmenter(OnnxRuntime(folder" + (", int8=True" if args.int8 else "") + "))")


def cmd_convert_official(args) -> None:
    ckpt = write_converted(args.checkpoints, args.out, args.dataset)
    cfg = ckpt["model_config"]
    what = ("GSVNet with its keyframe net" if ckpt["stage"] == "propagation" else
            "the keyframe net alone (its propagation is untrained: evaluate it with --variants image)")
    print(f"{args.out}: {what}, {KEYFRAME_NETS[cfg['keyframe_net']].title}, {cfg['num_classes']} {ckpt['dataset']} "
          f"classes, official conventions; evaluate it with\n  gsv eval --checkpoint {args.out} --dataset "
          f"{ckpt['dataset']} --root DATA --split val --key-scale 0.75"
          + (" --variants image" if ckpt["stage"] == "keyframe" else ""))


def cmd_tables(args) -> None:
    text, out, left_out = write_tables(args.folder, args.out, args.experiments, args.tables)
    print(text)
    print(f"written to {out}" + (f"; left out (no experiment's evaluation that names a table): "
                                 f"{', '.join(str(p) for p in left_out)}" if left_out else ""))


def _pair(item: str, option: str, form: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name or not value:
        raise ValueError(f"{option} takes {form}; got {item!r}")
    return name, value


def _settings(items: list[str] | None, option: str, example: str) -> dict:
    """SETTING=VALUE items, values in TOML syntax (a bare word is a string)."""
    values = {}
    for item in items or []:
        name, value = _pair(item, option, f"SETTING=VALUE, e.g. {example}")
        try:
            values[name] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            values[name] = value
    return values


def cmd_run(args) -> None:
    roots = dict(_pair(item, "--root", "DATASET=FOLDER, e.g. camvid=../shared/camvid") for item in args.root or [])
    overrides = _settings(args.set, "--set", "iterations=2")
    changes = _settings(args.eval_set, "--eval-set", "size=[128,256]")
    experiments = collect(args.experiments)
    if args.list:
        print("\n".join(plan_text(e) for e in experiments))
        return
    use = dict(_pair(item, "--use", "EXPERIMENT=CHECKPOINT, e.g. camvid/swiftnet=weights/camvid_swiftnet_gsvnet.pt")
               for item in args.use or [])
    for seed in args.seeds or [None]:
        runner = Runner(roots, runs=args.runs, dry_run=args.dry_run, overrides=overrides, seed=seed, use=use,
                        results=args.results, changes=changes)
        runner.prepare(experiments)
        for exp in experiments:
            written = runner.run(exp)
            if not args.dry_run:
                print(f"[{exp.name}{'' if seed is None else f' seed {seed}'}] results: "
                      f"{', '.join(map(shown, written)) or 'none (trained only)'}")


def cmd_segment(args) -> None:
    if args.int8 and not args.onnx:
        raise ValueError("--int8 runs the int8 keyframe graph of an --onnx folder; with --checkpoint use "
                         "--runtime onnx-int8 (calibrated on synthetic frames) or export with `gsv export-onnx --int8`")
    if args.onnx:
        runtime = OnnxRuntime(args.onnx, int8=args.int8)
        seg = VideoSegmenter(runtime, args.interval, args.key_scale, policy=args.policy)
        dataset = runtime.meta["dataset"]
    elif args.checkpoint:
        model, ckpt = load_model(args.checkpoint, args.device)
        propagation = PROPAGATIONS[PAPER].uses if args.interval > 1 else ()
        require_trained(ckpt, args.checkpoint, ("keyframe_net", *propagation), f"gsv segment --interval {args.interval}")
        seg = VideoSegmenter(model, args.interval, args.key_scale, args.device,
                             runtime="compiled" if args.compile else args.runtime, policy=args.policy)
        dataset = ckpt.get("dataset")
    else:
        raise ValueError("give the model: --checkpoint FILE, or --onnx FOLDER (from `gsv export-onnx`)")
    summary = segment_video(seg, args.input, args.out, DATASETS[dataset or "cityscapes"].table, args.alpha,
                            args.max_frames, legend=args.legend, fps=args.fps, labels=args.labels)
    nonkey = summary["non_keyframe_ms_mean"]
    keys = sum(t["keyframe"] for t in summary["per_frame"])
    forced = sum(t["forced"] for t in summary["per_frame"])
    print(f"{summary['frames']} frames -> {args.out}: {keys} keyframes" + (f" ({forced} forced by the policy)"
          if args.policy else "") + f", keyframe {summary['keyframe_ms_mean']:.1f} ms, non-keyframe "
          f"{'n/a' if nonkey is None else f'{nonkey:.1f} ms'} (mean), {summary['fps']:.2f} FPS on the "
          f"{seg.runtime.name} path ({seg.device}, keyframes at x{seg.key_scale:g})")
    if seg.runtime.name == "eager" and seg.device.type == "cpu" and summary["frames"] >= 500:
        print("for a video this long, --compile (about a minute of compiling, then faster frames) may finish sooner: "
              "docs/speed.md gives the break-even")
    print(describe_stages(summary))


def cmd_tour(args) -> None:
    cfg = TourConfig(data=args.data, runs=args.runs, figures=args.figures, page=args.page,
                     experiments=args.experiments, **(QUICK if args.quick else {}))
    print(f"gsv tour: generate the synthetic set in {cfg.data}; carry out the experiment files of {cfg.experiments} "
          f"(train the keyframe net and the propagation with and without intra features in {cfg.runs}, evaluate "
          f"every method, benchmark); render the page and its plots in {cfg.figures}. "
          + ("" if args.quick else "About 12 minutes on 2 CPU cores; ") + "steps already done are skipped.",
          flush=True)
    report = run_tour(cfg)
    print(report["page"].read_text())
    print(f"tour finished in {report['seconds']:.0f} s; the page: {shown(report['page'])}")


def cmd_data_synth(args) -> None:
    meta = generate(args.out, SynthConfig(args.snippets, args.val_snippets, args.size, seed=args.seed), force=args.force)
    total = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"synthetic set in {args.out}: {meta['snippets']} train + {meta['val_snippets']} val snippets of "
          f"{meta['frames']} frames at {meta['size'][0]}x{meta['size'][1]}, {total / 1e6:.0f} MB, "
          f"generated in {meta['seconds']} s (seed {meta['seed']})")


def cmd_data_stills(args) -> None:
    root = args.root or DATASETS[args.dataset].default_root
    stills = StillsInMotion(open_dataset(args.dataset, root, args.split, offset=0), args.frames - 1,
                            Motion(frames=args.frames), seed=args.seed)
    meta = write_clips(stills, args.out, args.split, args.count)
    print(f"{meta['clips']} of the {len(stills)} labelled frames of {args.dataset} {args.split}/ set in motion, "
          f"{meta['frames']} frames each (seed {meta['seed']}), in {args.out}: frames under leftImg8bit_sequence/, "
          "labels, backward flow and validity under analysis/ (gsvlib.data.synthetic.load_snippet reads a clip)")


def _info_parser(sub) -> None:
    info = sub.add_parser("info", help="parameters per part of GSVNet, compared with the paper",
                          epilog="examples:\n  gsv info --classes 11\n  gsv info --layers > docs/layers.md",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("--classes", type=int, default=19, help="number of classes (19 Cityscapes, 11 CamVid)")
    info.add_argument("--layers", action="store_true", help="instead, every layer of every part with its settings "
                                                            "(paddings, eps, slopes, pooling grids): docs/layers.md")
    info.set_defaults(func=cmd_info)


def _bench_parser(sub) -> None:
    bench = sub.add_parser("bench", help="per-frame timing, FPS and FLOPs of the streaming segmenter",
                           epilog="examples:\n  gsv bench\n  gsv bench --size 720x960 --interval 3 --device cuda "
                                  "--precision fp16\n  gsv bench --json figures/bench.json --intervals 1 2 3 4 5\n"
                                  "  gsv bench --backend eager compiled onnx --precision fp32 bf16 --json bench.json",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(bench, BenchConfig)
    bench.set_defaults(func=cmd_bench)


def _train_parser(sub) -> None:
    tr = sub.add_parser("train", help="train the keyframe net (stage keyframe) or GSVNet's propagation (stage "
                                      "propagation)",
                        epilog="examples:\n"
                               "  gsv train --stage keyframe --out runs/key --iterations 2000\n"
                               "  gsv train --stage propagation --init runs/key/checkpoint.pt --out runs/gsv\n"
                               "  gsv train --stage propagation --out runs/gsv --resume   # continue an interrupted run\n"
                               "  gsv train --recipe camvid-keyframe --root ../shared/camvid --imagenet r18.pth\n"
                               "  gsv train --stage propagation --init runs/key/checkpoint.pt --out runs/gsv "
                               "--workers 2\n"
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


def _eval_parser(sub) -> None:
    ev = sub.add_parser("eval", help="the paper's protocol: average and minimum mIoU for keyframe intervals 1..5",
                        epilog="examples:\n  gsv eval --checkpoint runs/gsv/checkpoint.pt\n"
                               "  gsv eval --checkpoint ckpt.pt --dataset camvid --root ../shared/camvid --split val "
                               "--variants gsv warp copy image --out runs/gsv/eval.json\n"
                               "  gsv eval --checkpoint runs/synthetic/gsv/checkpoint.pt --policy flow kernel intra "
                               "--out runs/tour/policy.json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(ev, EvalConfig)
    ev.add_argument("--json", action="store_true", help="print the full results as JSON (without --out)")
    ev.set_defaults(func=cmd_eval)


def _export_parser(sub) -> None:
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


def _export_onnx_parser(sub) -> None:
    ox = sub.add_parser("export-onnx", help="the model as ONNX graphs (keyframe, propagation, labels) for ONNX Runtime",
                        epilog="example:\n  gsv export-onnx --checkpoint weights/camvid_swiftnet_gsvnet.pt "
                               "--size 384x480 --out runs/onnx\n  gsv segment frames/ --onnx runs/onnx --out overlays.mp4",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ox.add_argument("--checkpoint", required=True, help="a gsvkit checkpoint or weights file")
    ox.add_argument("--out", required=True, help="folder for keyframe.onnx, propagation.onnx, labels.onnx, onnx.json")
    ox.add_argument("--size", type=parse_size, required=True,
                    help="HxW of the frames as the segmenter pads them: multiples of 32 (384x480 for CamVid's 360x480)")
    ox.add_argument("--key-scale", type=float, help="keyframe input scale, fixed in the graph (default: the "
                                                     "checkpoint's own)")
    ox.add_argument("--propagation", choices=list(PROPAGATIONS), default=PAPER,
                    help=f"the non-keyframe path ({PAPER})")
    ox.add_argument("--int8", metavar="DATASET=ROOT", help="also write keyframe.int8.onnx: the keyframe graph "
                    "quantized to int8 by ONNX Runtime, calibrated on frames of DATASET at ROOT (split --calibrate)")
    ox.add_argument("--calibrate", default="train", help="--int8: the split whose frames calibrate (default train)")
    ox.add_argument("--calibration-frames", type=int, default=32,
                    help="--int8: how many frames of --calibrate, spread evenly over it (default 32)")
    ox.set_defaults(func=cmd_export_onnx)


def _convert_official_parser(sub) -> None:
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


def _tables_parser(sub) -> None:
    tb = sub.add_parser("tables", help="render a folder of experiment results (what `gsv run` writes) as markdown",
                        epilog="examples:\n  gsv tables figures/camvid    (writes figures/camvid/results.md)\n"
                               "  gsv tables figures/camvid --out docs/results/camvid.md",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tb.add_argument("folder", help="a folder whose JSON files (in any sub-folder) carry an experiment block")
    tb.add_argument("--out", help="the markdown file to write (default FOLDER/results.md)")
    tb.add_argument("--experiments", help="the folder of the experiment files the results name, whose files and "
                                          "tables.toml give the titles, rows and notes (default: an experiments/ "
                                          "folder beside FOLDER or above it)")
    tb.add_argument("--tables", nargs="+", metavar="TABLE", help="render only these tables (names in tables.toml; "
                                                                 "default: every table the results go in)")
    tb.set_defaults(func=cmd_tables)


def _run_parser(sub) -> None:
    rn = sub.add_parser("run", help="carry out experiment files: train what is missing, evaluate, write results",
                        epilog="examples:\n  gsv run experiments/camvid/gsvnet.toml --root camvid=../shared/camvid\n"
                               "  gsv run experiments/camvid/ablation --root camvid=../shared/camvid\n"
                               "  gsv run experiments/camvid --dry-run       # what would run, what is done\n"
                               "  gsv run experiments/camvid/gsvnet.toml --seeds 1 2 --use camvid/swiftnet=weights/"
                               "camvid_swiftnet_gsvnet.pt --root camvid=../shared/camvid   # the spread across seeds\n"
                               "The file format: CONTRIBUTING.md (adding an experiment) and gsvlib/experiments.py.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rn.add_argument("experiments", nargs="+", help="experiment files (.toml), or folders: their .toml files")
    rn.add_argument("--root", nargs="+", metavar="DATASET=FOLDER",
                    help="where a dataset lies (default: its folder under data/), e.g. camvid=../shared/camvid")
    rn.add_argument("--set", nargs="+", metavar="SETTING=VALUE",
                    help="training settings for every experiment, over their files (e.g. iterations=2 batch_size=2 "
                         "to try a folder out quickly); values in TOML syntax")
    rn.add_argument("--eval-set", nargs="+", metavar="SETTING=VALUE",
                    help="settings for every [[eval]] and [[bench]] that has them, over their files (e.g. size=[128,256] "
                         "intervals_timed=1 for a quick benchmark); each result records what was changed")
    rn.add_argument("--runs", default="runs", help="where run folders go by default: RUNS/<experiment name> (runs)")
    rn.add_argument("--results", metavar="FOLDER",
                    help="write every result file into FOLDER, by its file name, instead of where the experiment file "
                         "says (e.g. to run the committed experiments without touching figures/); `gsv tables FOLDER "
                         "--experiments experiments` renders them")
    rn.add_argument("--seeds", nargs="+", type=seed_arg, metavar="SEED",
                    help="repeat each experiment's training and evaluations under each seed: run folders "
                         "RUNS/<name>/seed-N, results beside the experiment's own (<out>.seed-N.json); `gsv tables` "
                         "shows the spread across seeds. Starting points are trained once and shared")
    rn.add_argument("--use", nargs="+", metavar="EXPERIMENT=CHECKPOINT",
                    help="take a starting point's model from CHECKPOINT instead of training its experiment, e.g. "
                         "camvid/swiftnet=weights/camvid_swiftnet_gsvnet.pt (its keyframe net) to train propagations "
                         "without the keyframe runs")
    rn.add_argument("--dry-run", action="store_true", help="say what would be trained, exported and evaluated")
    rn.add_argument("--list", action="store_true", help="list the experiments with their descriptions")
    rn.set_defaults(func=cmd_run)


def _segment_parser(sub) -> None:
    sg = sub.add_parser("segment", help="segment a video or a folder of frames; write colour overlays and timings",
                        epilog="examples:\n  gsv segment clip.mp4 --checkpoint weights/camvid_swiftnet_gsvnet.pt "
                               "--out clip_seg.mp4\n"
                               "  gsv segment frames/ --checkpoint ckpt.pt --out overlays --interval 3 --fps 30\n"
                               "  gsv segment frames/ --checkpoint ckpt.pt --out labels --labels   # class ids\n"
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
    sg.add_argument("--key-scale", type=float, help="keyframe input scale (default: the checkpoint's own, the scale "
                                                     "its propagation trained at, else the paper's 0.75)")
    sg.add_argument("--fps", type=float, help="the input's frame rate, for a folder of frames (a video file's own is "
                                              "used otherwise): warns below 10 and sets the output video's rate")
    sg.add_argument("--labels", action="store_true",
                    help="write each frame's class ids instead of overlays: single-channel PNGs (0..C-1, in the "
                         "checkpoint's class order, as the datasets' label files) into the --out folder")
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
                                                           "faster from the third frame on, after a one-off compile "
                                                           "(the same as --runtime compiled)")
    sg.add_argument("--runtime", choices=list(RUNTIMES), default="eager",
                    help="what runs the --checkpoint's nets: eager PyTorch (default), compiled, cuda-graphs, onnx (ONNX "
                         "Runtime, exported on the first frame) or onnx-int8 (its keyframe graph quantized to int8, "
                         "calibrated on synthetic frames; see gsv export-onnx --int8)")
    sg.add_argument("--int8", action="store_true", help="with --onnx: run its keyframe.int8.onnx (gsv export-onnx "
                                                        "--int8) for keyframes")
    sg.set_defaults(func=cmd_segment)


def _tour_parser(sub) -> None:
    tour = sub.add_parser("tour", help="the main job on the synthetic set: data, training, evaluation, benchmark",
                          epilog="example: gsv tour            (what `make tour` runs; about 12 minutes on 2 cores)")
    tour.add_argument("--data", default="data/synthetic")
    tour.add_argument("--runs", default="runs", help="run folders go to RUNS/synthetic/<experiment> (default runs)")
    tour.add_argument("--figures", default="runs/tour/report",
                      help="where the result files go (default runs/tour/report; `make figures` gives "
                           "figures/synthetic, the reference results)")
    tour.add_argument("--page", help="the page rendered from them, with its plots beside it (default "
                                     "FIGURES/results.md; `make figures` gives figures/results.md)")
    tour.add_argument("--experiments", default=str(EXPERIMENTS), help="the tour's experiment files (default: "
                                                                       "experiments/synthetic of this clone)")
    tour.add_argument("--quick", action="store_true", help="tiny settings that finish in about a minute (for tests)")
    tour.set_defaults(func=cmd_tour)


def _data_parser(sub) -> None:
    data = sub.add_parser("data", help="datasets: generate the built-in synthetic street video, or set labelled "
                                       "frames in motion")
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
    stills = data_sub.add_parser("stills", help="write labelled frames set in motion (what --stills trains on) in the "
                                                "synthetic set's layout, for inspection",
                                 epilog="example:\n  gsv data stills --dataset camvid --root ../shared/camvid --split "
                                        "train --count 8 --out data/stills-camvid",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    stills.add_argument("--dataset", default="synthetic", choices=sorted(DATASETS), help="dataset (default synthetic)")
    stills.add_argument("--root", help="its folder (default: the dataset's under data/)")
    stills.add_argument("--split", default="train", help="split whose labelled frames are set in motion (default train)")
    stills.add_argument("--count", type=int, help="the first COUNT labelled frames (default all)")
    stills.add_argument("--frames", type=int, default=5, help="frames per clip, the still last (default 5, as "
                                                              "training's 4 frames before a keyframe)")
    stills.add_argument("--seed", type=int, default=0, help="draws each clip's motion, as --seed of gsv train does")
    stills.add_argument("--out", default="data/stills", help="output folder (default data/stills)")
    stills.set_defaults(func=cmd_data_stills)


PARSERS = (_info_parser, _bench_parser, _train_parser, _eval_parser, _export_parser, _export_onnx_parser,
           _convert_official_parser, _tables_parser, _run_parser, _segment_parser, _tour_parser, _data_parser)
# the sub-commands, in the order `gsv --help` lists them


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gsv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for add in PARSERS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    with warnings.catch_warnings():  # a warning reads like an error message: the command, then what to do
        warnings.showwarning = lambda message, *_: print(f"gsv {args.command}: warning: {message}", file=sys.stderr)
        try:
            args.func(args)
        except (ValueError, RuntimeError, OSError, KeyError, ArithmeticError) as e:  # ArithmeticError: divergence,
            print(f"gsv {args.command}: error: {e}", file=sys.stderr)  # overflow
            return 2
        except KeyboardInterrupt:
            print(f"gsv {args.command}: interrupted; files already complete are kept, and a run folder resumes with "
                  "--resume", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
