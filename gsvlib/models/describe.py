"""Every layer of a module with the settings a re-implementation needs (``m.stride``, ``m.padding``, ``m.eps`` ...,
which a printed module hides): the notebooks show these tables beside the code they build, and docs/layers.md
(`gsv info --layers`) holds them for every part of GSVNet."""
from __future__ import annotations

import torch

from gsvlib.models.gsvnet import FLOW_NETS, KEYFRAME_NETS, GSVNet


def layer_table(module: torch.nn.Module) -> str:
    """Every conv, batch norm, leaky ReLU and pooling inside ``module``, in order, with the settings a
    re-implementation needs: channels, kernel, stride, padding, dilation, groups, bias; a batch norm's eps and
    momentum; a slope; a pool's size or grids. A markdown table for ``display(Markdown(...))``."""
    rows = ["| layer | kind | in -> out | kernel | stride | padding | dilation | groups | bias / eps, momentum |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            rows.append(f"| `{name}` | conv | {m.in_channels} -> {m.out_channels} | {_pair(m.kernel_size)} | "
                        f"{_pair(m.stride)} | {_pair(m.padding)} | {_pair(m.dilation)} | {m.groups} | "
                        f"{'bias' if m.bias is not None else 'no bias'} |")
        elif isinstance(m, torch.nn.BatchNorm2d):
            rows.append(f"| `{name}` | batch norm | {m.num_features} | | | | | | eps {m.eps:g}, momentum {m.momentum:g} |")
        elif isinstance(m, torch.nn.LeakyReLU):
            rows.append(f"| `{name}` | leaky ReLU | | | | | | | slope {m.negative_slope:g} |")
        elif isinstance(m, torch.nn.MaxPool2d):
            rows.append(f"| `{name}` | max pool | | {_pair(m.kernel_size)} | {_pair(m.stride)} | {_pair(m.padding)} | "
                        f"{_pair(m.dilation)} | | |")
        elif isinstance(m, torch.nn.AdaptiveAvgPool2d):
            rows.append(f"| `{name}` | average pool | | to {_pair(m.output_size)} | | | | | |")
        elif hasattr(m, "grids"):  # a pyramid pooling module: its grids are not layers
            rows.append(f"| `{name}` | pyramid pooling | | grids {', '.join(map(str, m.grids))} | | | | | "
                        "cells per grid: g along the shorter side, g x aspect along the other |")
    return "\n".join(rows)


def layer_page(num_classes: int = 11) -> str:
    """Every part of GSVNet as :func:`layer_table`s, one section per keyframe net, flow net and the correction (the
    CamVid configuration by default): docs/layers.md, which `gsv info --layers` prints."""
    lines = ["# GSVNet's layers, part by part", "",
             f"Written by `gsv info --layers --classes {num_classes}`: each conv, batch norm, leaky ReLU and pooling "
             "with the settings a re-implementation needs, in the order the modules are registered (plain ReLUs "
             "are not listed). The notebooks build each part from these.", ""]
    parts = [(f"keyframe net N: {name}", GSVNet(num_classes=num_classes, keyframe_net=name).keyframe_net)
             for name in KEYFRAME_NETS]
    parts += [(f"flow net O: {name}", GSVNet(num_classes=num_classes, flow_net=name).flow_net) for name in FLOW_NETS]
    parts.append(("correction: the GSV conv (intra_net: φ; guiding_net: G)", GSVNet(num_classes=num_classes).correction))
    for title, module in parts:
        lines += [f"## {title}", "", layer_table(module), ""]
    return "\n".join(lines)


def _pair(v) -> str:
    """(3, 3) -> "3", (1, 2) -> "1x2": a square setting written once."""
    v = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    return str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v))
