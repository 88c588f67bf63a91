"""Multi-process training on the CPU with gloo: N processes train what one process trains, stop cleanly when a rank
dies, and resume on any number of processes.

Tolerance: the processes sum their shares of each batch in another order than one process does (and torchrun gives
each one thread, which rounds bilinear resizing differently), so the losses agree to 1e-4 relative and the trained
weights to 1e-4 absolute after 5 SGD iterations (measured: 6e-5 and 3e-5). The batch-norm running statistics of the
guiding net agree to 1e-2 (measured: 2e-3): its input holds the edge map of an argmax, where a rounding difference
flips a label now and then."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from gsvlib.cli import main
from gsvlib.config import config_for
from gsvlib.distributed import Ranks, SyncBatchNorm2d, convert_sync_batchnorm, sum_gradients
from gsvlib.train import TrainBatches, read_log, training_data

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out; `make test` runs them

ROOT = Path(__file__).resolve().parents[1]


def args(root, init, out, iterations, *extra):
    return ["train", "--stage", "gsv", "--root", str(root), "--init", str(init), "--out", str(out), "--iterations",
            str(iterations), "--batch-size", "4", "--checkpoint-every", "1", "--sync-bn", "--lr", "0.01", *extra]


def weights(run):
    return torch.load(Path(run) / "checkpoint.pt", weights_only=True)["model"]


def assert_same_run(a, b):
    la, lb = read_log(a), read_log(b)
    assert [e["iteration"] for e in la] == [e["iteration"] for e in lb]
    assert [e["loss"] for e in la] == pytest.approx([e["loss"] for e in lb], rel=1e-4)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-2 if "running_" in k else 1e-4), k


def test_each_rank_builds_its_share_of_the_global_batch(tiny_synth):
    cfg = config_for("gsv", root=str(tiny_synth), batch_size=4)
    data = training_data(cfg)
    whole = TrainBatches(data, cfg)[7]
    shares = [TrainBatches(data, cfg, Ranks(r, 2))[7] for r in range(2)]
    assert shares[0][2] == shares[1][2] == whole[2]  # one keyframe offset for the whole batch
    assert torch.equal(shares[0][0], whole[0][0::2]) and torch.equal(shares[1][0], whole[0][1::2])
    assert torch.equal(shares[1][1], whole[1][1::2])
    with pytest.raises(ValueError, match="batch size 4 does not split over 3 processes"):
        TrainBatches(data, cfg, Ranks(0, 3))


def test_a_batch_says_which_snippets_offset_and_augmentation_seeds_it_drew(tiny_synth):
    import random

    from gsvlib.data import RandomScaleCropFlip
    from gsvlib.train import _collate

    cfg = config_for("gsv", root=str(tiny_synth), batch_size=3)
    data = training_data(cfg)
    batches = TrainBatches(data, cfg)
    drawn = batches.draw(5)
    assert drawn == batches.draw(5) != batches.draw(6) and len(drawn["indices"]) == len(drawn["seeds"]) == 3
    frames, labels, offset = batches[5]
    assert offset == drawn["offset"]
    rebuilt = [RandomScaleCropFlip((cfg.scale_min, cfg.scale_max), cfg.crop, rng=random.Random(seed))(
        data.sample(i, offset)) for i, seed in zip(drawn["indices"], drawn["seeds"])]
    again, truth = _collate(rebuilt, "labels")
    assert torch.equal(again, frames) and torch.equal(truth, labels)


def test_two_processes_train_what_one_does_and_resume_on_one(tiny_synth, keyframe_run, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(args(tiny_synth, keyframe_run, one, 3)) == 0
    assert main(args(tiny_synth, keyframe_run, two, 3, "--nproc", "2")) == 0
    assert_same_run(one, two)
    assert main(args(tiny_synth, keyframe_run, one, 5, "--resume")) == 0  # one process all the way
    assert main(args(tiny_synth, keyframe_run, two, 5, "--resume")) == 0  # started on two, resumed on one
    assert_same_run(one, two)


def test_a_killed_rank_stops_the_run_cleanly_and_it_resumes(tiny_synth, keyframe_run, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gsvlib", *args(tiny_synth, keyframe_run, out, 200, "--nproc", "2")]
    launcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").is_file() and launcher.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_worker(p, out)]
    assert len(workers) == 2, "two training processes should be running"
    os.kill(workers[1], signal.SIGKILL)
    output, _ = launcher.communicate(timeout=120)
    assert launcher.returncode == 2 and "the run's last checkpoint is intact" in output
    assert not any(_is_worker(Path(f"/proc/{w}"), out) for w in workers)  # no rank left waiting
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["iteration"]
    assert 1 <= saved < 200 and [e["iteration"] for e in read_log(out)][-1] >= saved
    assert main(args(tiny_synth, keyframe_run, out, saved + 2, "--resume")) == 0
    assert [e["iteration"] for e in read_log(out)] == list(range(1, saved + 3))


def _is_worker(proc: Path, out: Path) -> bool:
    """A training rank of the run in ``out``: a gsvlib train process that is neither the launcher nor torchrun."""
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(out).encode() in argv and b"--nproc" not in argv and b"torch.distributed.run" not in argv


def _sync_bn_rank(rank, world, port, x, grad, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    bn = convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))[0]
    part = x[rank::world].clone().requires_grad_(True)
    (bn(part) * grad[rank::world]).sum().backward()
    sum_gradients(bn.parameters())
    out.put((rank, part.grad, bn.weight.grad, bn.running_mean, bn.running_var))
    dist.destroy_process_group()


def test_sync_batchnorm_over_two_processes_is_batchnorm_of_the_whole_batch():
    import torch.multiprocessing as mp

    x, grad = torch.randn(4, 3, 5, 6) * 3 + 1, torch.randn(4, 3, 5, 6)
    whole = torch.nn.BatchNorm2d(3)
    xs = x.clone().requires_grad_(True)
    (whole(xs) * grad).sum().backward()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=_sync_bn_rank, args=(r, 2, port, x, grad, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r[0], r[1:]) for r in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    for r in range(2):
        x_grad, w_grad, mean, var = results[r]
        assert torch.allclose(x_grad, xs.grad[r::2], atol=1e-5)
        assert torch.allclose(w_grad, whole.weight.grad, atol=1e-4)
        assert torch.allclose(mean, whole.running_mean, atol=1e-6) and torch.allclose(var, whole.running_var, atol=1e-5)
    assert isinstance(convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))[0], SyncBatchNorm2d)


def test_loading_alone_is_timed_without_training(tiny_synth, keyframe_run, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(args(tiny_synth, keyframe_run, out, 10, "--time-loading", "3", "--workers", "1")) == 0
    printed = capsys.readouterr().out
    pattern = r"data loading alone: [\d.]+ samples/s \(crops of \d+x\d+\) over 2 batches with 1 worker"
    assert re.search(pattern, printed)
    assert not out.exists()  # nothing trained, nothing written
