"""Data-parallel training over processes with torch.distributed: gloo on the CPU, NCCL on GPUs, no apex.

``torchrun --nproc_per_node N -m gsvlib train ...`` (or ``gsv train --nproc N``) starts N processes and tells each
its rank. Every rank builds its own shard of each global batch, normalises its loss terms by the *global* counts (the
labelled pixels of the whole batch), and after backward the gradients are summed over the ranks. The sum is the
gradient of the global batch's loss, so N processes train what one process trains, up to float rounding, whatever N
is. :class:`SyncBatchNorm2d` gives batch normalisation the statistics of the global batch in the same way, on the CPU
as on GPUs (``torch.nn.SyncBatchNorm`` is CUDA-only).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")  # what torchrun sets


class Ranks(NamedTuple):
    rank: int = 0
    world: int = 1
    local: int = 0  # the rank on this machine: its GPU index

    @property
    def main(self) -> bool:
        """The rank that writes the checkpoints, the log and the progress bar."""
        return self.rank == 0


def _launched() -> Ranks:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    missing = [v for v in LAUNCH_VARIABLES if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE is {world} but {', '.join(missing)} is not set: start distributed training "
                           "with `gsv train --nproc N` or `torchrun --nproc_per_node N -m gsvlib train`")
    return Ranks(int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"]))


@contextlib.contextmanager
def process_group(device: str) -> Iterator[Ranks]:
    """This process's ranks, with the process group joined for the block when torchrun started several (NCCL for
    CUDA devices, gloo otherwise) and left afterwards. A single process needs no group."""
    ranks = _launched()
    if ranks.world == 1 or dist.is_initialized():
        yield ranks
        return
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(ranks.local)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


def rank_device(device: str, ranks: Ranks) -> str:
    """Each rank's device: "cuda" becomes the rank's own GPU, cuda:LOCAL_RANK; an explicit index or the CPU stays."""
    return f"cuda:{ranks.local}" if device == "cuda" and ranks.world > 1 else device


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks, in place (no autograd); ``t`` itself in a single process."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def sum_gradients(params: Iterable[nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks, in one flat all-reduce (a missing gradient counts as zero)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    params = list(params)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    start = 0
    for p in params:
        n = p.numel()
        p.grad = flat[start: start + n].view_as(p).clone()
        start += n


class _SumOverRanks(torch.autograd.Function):
    """y = the sum of x over the ranks; the gradient of each rank's x is the sum of the ranks' gradients of y."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return sum_over_ranks(x.clone())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return sum_over_ranks(grad.clone())


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch across the ranks: the per-channel sums
    of x and x^2 and the count are all-reduced with autograd, so the gradient is the global batch's too. In eval mode,
    or in a single process, it is nn.BatchNorm2d exactly; the state dict is the same."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        local = torch.cat((x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), x.new_full((1,), x.numel() / c)))
        total = _SumOverRanks.apply(local)  # (2C + 1,) over the global batch
        n = total[-1]
        mean = total[:c] / n  # (C,)
        var = total[c: 2 * c] / n - mean * mean  # (C,), biased, as batch norm normalises with
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1), m)  # unbiased, as nn.BatchNorm2d keeps it
        y = (x - mean.view(1, c, 1, 1)) * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        return y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1) if self.affine else y


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every nn.BatchNorm2d inside ``module`` replaced by a :class:`SyncBatchNorm2d` holding the same parameters and
    statistics (frozen parts run in eval mode, where nothing changes)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats, device=child.running_mean.device)
            sync.load_state_dict(child.state_dict())
            if child.affine:
                sync.weight.requires_grad_(child.weight.requires_grad)
                sync.bias.requires_grad_(child.bias.requires_grad)
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child)
    return module
