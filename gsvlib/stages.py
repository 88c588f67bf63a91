"""The training stages (sec. 4.1), one registry: what each stage trains, its loss, its checks and its default recipe.

- ``keyframe``: the keyframe net N on labelled frames (cross-entropy of its logits upsampled to the labels).
- ``gsv``: GSVNet's propagation PF (flow net O and the GSV conv) end to end with N frozen: cross-entropy on the last
  frame of a clip propagated from its keyframe, optional distillation from N and a photometric loss on every pair.
- ``flow``: the flow net O alone on the synthetic set's exact flow (end-point error on the 1/8 grid).

A loss is a list of terms (weight, sum over this process's samples, how many elements the sum holds): summed over
the processes and divided by the global counts, they give the mean over the whole batch (``gsvlib.train``).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F

from gsvlib.data import DATASETS
from gsvlib.models.flow import edge_aware_smoothness, eighth_grid_error, photometric_error
from gsvlib.models.gsvnet import PARTS, GSVNet
from gsvlib.models.layers import resize

SMOOTHNESS = 0.1  # weight of the flow's smoothness relative to the photometric term (--photometric)

Config = Any  # a gsvlib.config.TrainConfig (the layer above): the settings a stage reads
Terms = list[tuple[float, torch.Tensor, torch.Tensor]]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, class_weight: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C, h, w) upsampled to labels (B, H, W) -> (the cross-entropy summed over the labelled pixels, 255
    ignored, each weighted by its class's ``class_weight``; the sum of those weights, the pixel count without them):
    their ratio is F.cross_entropy's weighted mean."""
    total = F.cross_entropy(resize(logits, labels.shape[-2:]), labels, weight=class_weight, ignore_index=255,
                            reduction="sum")
    valid = labels != 255  # (B, H, W)
    return total, valid.sum() if class_weight is None else class_weight[labels[valid]].sum()


def keyframe_loss(model: GSVNet, frames: torch.Tensor, labels: torch.Tensor, cfg: Config,
                  class_weight: torch.Tensor | None) -> Terms:
    """N on the labelled frame (B, 3, H, W) of each sample: the (class-weighted) cross-entropy."""
    logits = model.keyframe_net(model.normalize(frames[:, -1]))  # (B, C, H/s, W/s)
    return [(1.0, *cross_entropy(logits, labels, class_weight))]


def propagation_loss(model: GSVNet, frames: torch.Tensor, labels: torch.Tensor, cfg: Config,
                     class_weight: torch.Tensor | None) -> Terms:
    """Clips (B, T, 3, H, W) from their keyframe: the cross-entropy of S_{T-1}, the photometric and smoothness terms
    of every step's flow (``cfg.photometric``), and the KL towards N's prediction on the last frame
    (``cfg.distill``)."""
    key, steps = model.unroll(frames, key_scale=cfg.key_scale)
    seg = steps[-1].seg if steps else key  # (B, C, H/8, W/8)
    terms = [(1.0, *cross_entropy(seg, labels, class_weight))]
    if cfg.photometric > 0 and steps:
        smalls = [model.small_frame(frames[:, t]) for t in range(frames.shape[1])]  # (B, 3, H/8, W/8) each
        pairs = list(zip(smalls[1:], smalls[:-1], (s.flow for s in steps)))
        photo = [photometric_error(cur, prev, flow) for cur, prev, flow in pairs]
        smooth = [edge_aware_smoothness(flow, cur) for cur, _, flow in pairs]
        terms += [(cfg.photometric, sum(t for t, _ in photo), sum(n for _, n in photo)),
                  (cfg.photometric * SMOOTHNESS, sum(t for t, _ in smooth), sum(n for _, n in smooth))]
    if cfg.distill > 0:
        with torch.no_grad():
            teacher = model.segment_keyframe(frames[:, -1], cfg.key_scale).softmax(1)
        kl = F.kl_div(seg.log_softmax(1), teacher, reduction="none").sum(1)  # (B, H/8, W/8)
        terms.append((cfg.distill, kl.sum(), torch.tensor(kl.numel(), device=kl.device)))
    return terms


def flow_loss(model: GSVNet, frames: torch.Tensor, flow: torch.Tensor, cfg: Config,
              class_weight: torch.Tensor | None) -> Terms:
    """O on the last two frames against their exact flow: ``flow`` (B, 3, H, W) holds it (x, y) and where it is
    valid; the end-point error on the 1/8 grid."""
    prev, cur = model.small_frame(frames[:, -2]), model.small_frame(frames[:, -1])
    return [(1.0, *eighth_grid_error(model.flow(cur, prev), flow[:, :2], flow[:, 2] > 0.5))]


def _check_one_frame_step(cfg: Config) -> None:
    if cfg.max_frame_step != 1:
        raise ValueError(f"max_frame_step must be in 1..8 for stage propagation and 1 for the other stages, got "
                         f"{cfg.max_frame_step}")
    if cfg.stills or cfg.stills_split:
        raise ValueError(f"--stills and --stills-split render frames before each labelled one for stage propagation; "
                         f"stage {cfg.stage} does not train on them: leave them out")


def _check_gsv(cfg: Config) -> None:
    if not 2 <= cfg.max_interval <= 30:
        raise ValueError(f"max_interval must be in 2..30 for stage propagation (interval 1 has no non-keyframe to train; "
                         f"a Cityscapes snippet has 30 frames), got {cfg.max_interval}")


def _check_flow(cfg: Config) -> None:
    _check_one_frame_step(cfg)
    if not hasattr(DATASETS[cfg.dataset], "exact_flow"):
        raise ValueError(f"stage flow trains on exact flow, which dataset {cfg.dataset} does not have; use "
                         "--dataset synthetic (then start stage propagation from it with --init-flow)")
    if cfg.class_weights != "none":
        raise ValueError("--class-weights weighs the cross-entropy of stages keyframe and propagation; stage flow has "
                         "no classes")


class Stage(NamedTuple):
    """One training stage: ``trains`` (the GSVNet parts whose parameters it updates, :data:`PARTS`), ``provides``
    (each starting point it takes, a TrainConfig field, -> the parts a fresh run loads from that checkpoint),
    ``recipe`` (its default, a name in :data:`gsvlib.config.RECIPES`), ``loss`` (model, frames (B, T, 3, H, W),
    targets, cfg, class weights) -> terms, ``targets`` ("labels" (B, H, W), or "flow" (B, 3, H, W): the exact flow and
    where it is valid), ``reach`` (cfg -> how many frames before the labelled one a sample may start), ``check``
    (cfg -> None, or a ValueError that says what to change) and ``needs`` (cfg -> the parts it does not train that a
    fresh run must receive trained from its starting points, however it is started). Training, the checkpoint's record of its trained parts and
    the settings' checks read these declarations."""

    title: str
    recipe: str
    trains: tuple[str, ...]
    provides: dict[str, tuple[str, ...]]
    loss: Callable[..., Terms]
    targets: str
    reach: Callable[[Config], int]
    check: Callable[[Config], None]
    starts_propagation: bool = False  # trains PF on a frozen N: at the keyframe scale, and --freeze-flow applies
    needs: Callable[[Config], tuple[str, ...]] = lambda cfg: ()  # the parts a fresh run must be given trained

    def describe(self, cfg: Config) -> str:
        """What the progress bar says is training: "keyframe (swiftnet)", "gsv (propagation)"."""
        names = {"keyframe_net": cfg.keyframe_net, "flow_net": cfg.flow_net}
        return ", ".join(names.get(part, "propagation") for part in self.trains[:1])


STAGES: dict[str, Stage] = {
    "keyframe": Stage("the keyframe net N alone", "from-scratch", ("keyframe_net",), {"init": PARTS}, keyframe_loss,
                      "labels", lambda cfg: 0, _check_one_frame_step),
    "propagation": Stage("GSVNet's propagation with N frozen", "paper", ("flow_net", "correction"),
                         {"init": ("keyframe_net",), "init_flow": ("flow_net",),
                          "init_propagation": ("flow_net", "correction")},
                         propagation_loss, "labels", lambda cfg: (cfg.max_interval - 1) * cfg.max_frame_step,
                         _check_gsv, starts_propagation=True,  # on a trained N, frozen; on a trained O where O is fixed
                         needs=lambda cfg: ("keyframe_net",) + (() if cfg.train_flow else ("flow_net",))),
    "flow": Stage("the flow net O alone on the exact flow of the synthetic set", "synthetic-flow", ("flow_net",),
                  {"init": PARTS}, flow_loss, "flow", lambda cfg: 1, _check_flow),
}
EARLIER_STAGES = {"gsv": "propagation"}  # a stage's name before it was renamed -> its name now: still accepted


def stage_named(name: str) -> str:
    """The stage ``name`` names now (an earlier name, :data:`EARLIER_STAGES`, is read as the stage's)."""
    return EARLIER_STAGES.get(name, name)
