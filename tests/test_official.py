"""The official conventions and `gsv convert-official`, without the official code: state dicts in the official layout
(key names and shapes written down here from the public repository robert80203/GSVNet), and each convention switch
against a computation by hand."""
import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsvlib.checkpoint import PARTS, CheckpointError, load_model, require_trained, trained_parts
from gsvlib.cli import main
from gsvlib.models import GSVNet, GuidedSpatiallyVaryingConv, ResNet18, edge_map, warp
from gsvlib.models.conventions import CONVENTIONS, small_frames
from gsvlib.official import TAP_ORDER, convert_official

OFFICIAL = CONVENTIONS["official"]
C = 19


class Fixed(nn.Module):
    """A sub-network replaced by one that returns ``fn`` of its first input."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, *rest):
        return self.fn(x)


class Layout:
    """An official state dict built from its layout, filled with random values (BN variances positive)."""

    def __init__(self, seed: int = 0):
        self.g = torch.Generator().manual_seed(seed)
        self.state: dict[str, torch.Tensor] = {}

    def rand(self, *shape):
        return torch.randn(*shape, generator=self.g) * 0.1

    def conv(self, name, c_out, c_in, k, bias=False):
        self.state[f"{name}.weight"] = self.rand(c_out, c_in, k, k)
        if bias:
            self.state[f"{name}.bias"] = self.rand(c_out)

    def bn(self, name, c):
        self.state.update({f"{name}.weight": 1 + self.rand(c), f"{name}.bias": self.rand(c),
                           f"{name}.running_mean": self.rand(c), f"{name}.running_var": 0.5 + self.rand(c).abs(),
                           f"{name}.num_batches_tracked": torch.tensor(100)})

    def conv_bn(self, conv, bn, c_out, c_in, k, bias=False):
        self.conv(conv, c_out, c_in, k, bias)
        self.bn(bn, c_out)

    def resnet18(self, prefix):
        torchvision = ResNet18(with_fc=True).state_dict()  # torchvision's resnet18 keys and shapes
        for k, v in torchvision.items():
            if not k.startswith("fc."):
                self.state[prefix + k] = (self.rand(*v.shape) if v.is_floating_point() else v.clone())
                if k.endswith("running_var"):
                    self.state[prefix + k] = 0.5 + self.state[prefix + k].abs()


def official_gsvnet(seed=0) -> dict:
    """The official trainer's save_state: End2End(GuidedSpatiallyVaryingConv) and FlowLight, with options and mIoUs."""
    grm, flow = Layout(seed), Layout(seed + 1)
    delays = torch.zeros(9, 1, 1, 3, 3)
    for d, (i, j) in enumerate((i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)):
        delays[d, 0, 0, i, j] = 1
    grm.state["grm.ideal_dk.filter_copy_s"] = delays
    grm.conv_bn("grm.intra_net.intra_net.0", "grm.intra_net.intra_net.1", 32, 3, 3, bias=True)
    grm.conv_bn("grm.intra_net.intra_net.3", "grm.intra_net.intra_net.4", 32, 32, 3, bias=True)
    grm.conv("grm.intra_net.intra_net.6", C, 32, 3, bias=True)
    g = "grm.guide."
    grm.conv_bn(f"{g}guide_conv.0", f"{g}guide_conv.1", 32, C + 1, 3, bias=True)
    grm.conv_bn(f"{g}guide_conv_feat.0", f"{g}guide_conv_feat.1", 64, 32, 3, bias=True)
    grm.conv_bn(f"{g}guide_conv_feat.3", f"{g}guide_conv_feat.4", 128, 64, 3, bias=True)
    grm.conv_bn(f"{g}guide_deconv.1", f"{g}guide_deconv.2", 64, 128, 3, bias=True)
    grm.conv_bn(f"{g}guide_deconv.5", f"{g}guide_deconv.6", 32, 64, 3, bias=True)
    grm.conv_bn(f"{g}guide_decoder.0", f"{g}guide_decoder.1", 11, 32, 3, bias=True)
    flow.conv_bn("conv1.0", "conv1.1", 32, 6, 3, bias=True)
    flow.conv_bn("conv2.0", "conv2.1", 64, 32, 3, bias=True)
    for i in range(1, 5):
        flow.conv_bn(f"conv_dilate_{i}.0", f"conv_dilate_{i}.1", 64, 64, 3, bias=True)
    flow.conv_bn("conv_merge.0", "conv_merge.1", 64, 256, 1, bias=True)
    flow.conv("toflow", 2, 64, 3, bias=True)
    return {"epoch": 12, "state_dict": grm.state, "state_dict_of": flow.state, "optimizer": {"state": {}},
            "best_pred": np.float64(0.703), "current_pred": np.float64(0.701),
            "args": argparse.Namespace(segnet="swiftnet", optical_flow_network="light", lr=0.01)}


def official_swiftnet(seed=2) -> dict:
    sn = Layout(seed)
    sn.resnet18("backbone.")
    sn.state["backbone.img_mean"] = torch.tensor([73.15, 82.90, 72.3]).view(1, 3, 1, 1)
    sn.state["backbone.img_std"] = torch.tensor([47.67, 48.49, 47.73]).view(1, 3, 1, 1)

    def bn_relu_conv(name, c_in, c_out, k, bias=False):
        sn.bn(f"{name}.norm", c_in)
        sn.conv(f"{name}.conv", c_out, c_in, k, bias)

    bn_relu_conv("backbone.spp.spp.spp_bn", 512, 128, 1)
    for i in range(3):
        bn_relu_conv(f"backbone.spp.spp.spp{i}", 128, 42, 1)
    bn_relu_conv("backbone.spp.spp.spp_fuse", 128 + 3 * 42, 128, 1)
    for i, skip in enumerate((256, 128, 64)):
        bn_relu_conv(f"backbone.upsample.{i}.bottleneck", skip, 128, 1)
        bn_relu_conv(f"backbone.upsample.{i}.blend_conv", 128, 128, 3)
    bn_relu_conv("logits", 128, C, 1, bias=True)
    return sn.state


def official_bisenet(seed=3) -> dict:
    bs = Layout(seed)
    bs.resnet18("context_path.")
    for name, c_out, c_in, k in (("conv_7x7", 64, 3, 7), ("conv_3x3_1", 64, 64, 3), ("conv_3x3_2", 64, 64, 3),
                                 ("conv_1x1", 128, 64, 1)):
        bs.conv_bn(f"spatial_path.{name}.conv", f"spatial_path.{name}.bn", c_out, c_in, k)
    bs.conv_bn("global_context.1.conv", "global_context.1.bn", 128, 512, 1)
    for i, c_in in enumerate((512, 256)):
        bs.conv_bn(f"arms.{i}.conv_3x3.conv", f"arms.{i}.conv_3x3.bn", 128, c_in, 3)
        bs.conv_bn(f"arms.{i}.channel_attention.1.conv", f"arms.{i}.channel_attention.1.bn", 128, 128, 1)
        bs.conv_bn(f"refines.{i}.conv", f"refines.{i}.bn", 128, 128, 3)
    bs.conv_bn("ffm.conv_1x1.conv", "ffm.conv_1x1.bn", 256, 256, 1)
    bs.conv("ffm.channel_attention.1.conv", 256, 256, 1)
    bs.conv("ffm.channel_attention.2.conv", 256, 256, 1)
    for i, (c_in, c_mid) in enumerate(((128, 256), (128, 256), (256, 64))):  # two auxiliary heads, the main head
        bs.conv_bn(f"heads.{i}.conv_3x3.conv", f"heads.{i}.conv_3x3.bn", c_mid, c_in, 3)
        bs.conv(f"heads.{i}.conv_1x1", C, c_mid, 1, bias=True)
    return bs.state


@pytest.fixture
def files(tmp_path):
    paths = {"gsvnet": tmp_path / "gsvnet.pth.tar", "swiftnet": tmp_path / "swiftnet.pth",
             "bisenet": tmp_path / "bisenet.pth"}
    torch.save(official_gsvnet(), paths["gsvnet"])
    torch.save(official_swiftnet(), paths["swiftnet"])
    torch.save({"model": {f"module.{k}": v for k, v in official_bisenet().items()}}, paths["bisenet"])  # DDP-wrapped
    return paths


@pytest.mark.parametrize("keyframe_net", ["swiftnet", "bisenet"])
def test_official_checkpoints_convert_and_load_strictly(files, tmp_path, keyframe_net, capsys):
    out = tmp_path / "converted.pt"
    assert main(["convert-official", str(files[keyframe_net]), str(files["gsvnet"]), "--out", str(out)]) == 0
    assert "official conventions" in capsys.readouterr().out
    model, ckpt = load_model(out)  # strict load of every key
    assert model.config.conventions == "official" and model.config.keyframe_net == keyframe_net
    assert ckpt["stage"] == "propagation" and ckpt["dataset"] == "cityscapes" and len(ckpt["classes"]) == C
    assert trained_parts(ckpt) == set(PARTS)
    require_trained(ckpt, out, PARTS, "GSVNet")
    with torch.no_grad():
        out_seg = model(torch.rand(1, 3, 3, 64, 128))
    assert out_seg.shape == (1, C, 8, 16) and torch.isfinite(out_seg).all()


def test_the_converted_tensors_land_where_the_official_code_uses_them(files):
    ckpt = convert_official([files["gsvnet"], files["swiftnet"]])
    state, grm, flow = ckpt["model"], official_gsvnet()["state_dict"], official_gsvnet()["state_dict_of"]
    head = grm["grm.guide.guide_decoder.0.weight"]  # official taps: identity, 8 shifts, zero, intra
    assert torch.equal(state["correction.guiding_net.head.0.weight"][8], head[0])  # identity after gsvkit's 8 shifts
    assert torch.equal(state["correction.guiding_net.head.0.weight"][0], head[1])
    assert torch.equal(state["correction.guiding_net.head.1.running_mean"][10],
                       grm["grm.guide.guide_decoder.1.running_mean"][10] - grm["grm.guide.guide_decoder.0.bias"][10])
    assert torch.equal(state["flow_net.down.0.1.running_mean"], flow["conv1.1.running_mean"] - flow["conv1.0.bias"])
    assert torch.equal(state["flow_net.to_flow.bias"], flow["toflow.bias"])  # no BN after it: the bias stays
    assert torch.equal(state["correction.theta"], grm["grm.ideal_dk.filter_copy_s"][:8])
    assert torch.equal(state["keyframe_net.logits.2.bias"], official_swiftnet()["logits.conv.bias"])
    assert sorted(TAP_ORDER) == list(range(11))


def test_a_keyframe_checkpoint_alone_gives_a_keyframe_only_model(files, tmp_path):
    out = tmp_path / "key.pt"
    assert main(["convert-official", str(files["swiftnet"]), "--out", str(out)]) == 0
    model, ckpt = load_model(out)
    assert ckpt["stage"] == "keyframe" and trained_parts(ckpt) == {"keyframe_net"}
    with pytest.raises(CheckpointError, match="flow net and propagation \\(GSV conv\\) were never trained"):
        require_trained(ckpt, out, PARTS, "GSVNet")


def test_conversion_errors_name_the_file_and_the_keys(files, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="propagation only; pass the SwiftNet or BiSeNet"):
        convert_official([files["gsvnet"]])
    broken = official_gsvnet()
    del broken["state_dict"]["grm.guide.guide_conv.1.running_var"]
    broken["state_dict"]["grm.guide.extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as e:
        convert_official([tmp_path / "broken.pth", files["swiftnet"]])
    assert "broken.pth" in str(e.value) and "grm.guide.guide_conv.1.running_var" in str(e.value)
    assert "grm.guide.extra.weight" in str(e.value)
    trained = official_gsvnet()
    trained["state_dict"]["grm.ideal_dk.filter_copy_s"][8, 0, 0, 1, 1] = 0.3
    torch.save(trained, tmp_path / "trained.pth")
    with pytest.raises(CheckpointError, match="9th ideal-delay kernel"):
        convert_official([tmp_path / "trained.pth", files["swiftnet"]])
    flownet = official_gsvnet()
    flownet["state_dict_of"] = {"conv3.weight": torch.zeros(1), "predict_flow2.weight": torch.zeros(1)}
    torch.save(flownet, tmp_path / "flownet.pth")
    with pytest.raises(CheckpointError, match="FlowNetS"):
        convert_official([tmp_path / "flownet.pth", files["swiftnet"]])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pth")
    assert main(["convert-official", str(tmp_path / "foreign.pth"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "foreign.pth is not an official GSVNet, SwiftNet or BiSeNet checkpoint" in capsys.readouterr().err
    assert main(["convert-official", str(files["swiftnet"]), "--out", str(tmp_path / "x.pt"), "--dataset",
                 "camvid"]) == 2
    assert "19 classes but dataset camvid has 11" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_folding_a_conv_bias_into_batch_norm_keeps_the_output():
    conv, bn = nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([0.5, -1.25, 2.0, 0.0]))  # exactly representable: mean - b + b is exact
        bn.running_mean.copy_(torch.tensor([0.25, 1.0, -0.5, 3.0]))
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    folded_conv, folded_bn = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4).eval()
    folded_conv.weight.data = conv.weight.data.clone()
    folded_bn.load_state_dict({**bn.state_dict(), "running_mean": bn.running_mean - conv.bias.data})
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded_bn(folded_conv(x)), bn(conv(x)), atol=1e-6)
    assert torch.equal(folded_bn.running_mean + conv.bias.data, bn.running_mean)  # the round trip


def test_zero_flow_is_an_identity_in_both_modes():
    seg = torch.randn(2, 5, 6, 10)
    zero = torch.zeros(2, 2, 6, 10)
    for conventions in CONVENTIONS.values():
        assert torch.allclose(warp(seg, zero, conventions.warp_fill), seg, atol=1e-6)


def test_official_flow_is_a_quarter_of_the_net_output_and_fills_zeros():
    model = GSVNet(num_classes=3, conventions="official").eval()
    model.flow_net = Fixed(lambda cur: torch.cat((torch.full_like(cur[:, :1], 4.0), torch.zeros_like(cur[:, :1])), 1))
    seg = torch.randn(1, 3, 4, 6)
    small = torch.zeros(1, 3, 4, 6)
    warped, flow = model.warp_previous(seg, small, small)
    assert torch.allclose(flow[:, 0], torch.ones(1, 4, 6))  # 4 net units = 1 pixel of the 1/8 grid
    assert torch.allclose(warped[..., :-1], seg[..., 1:], atol=1e-6)  # pixel x takes x + 1
    assert torch.equal(warped[..., -1], torch.zeros(1, 3, 4))  # outside the previous frame: zeros


def test_the_binary_edge_map_of_a_two_class_image():
    labels = torch.zeros(5, 7, dtype=torch.long)
    labels[:, 4:] = 1
    seg = F.one_hot(labels, 2).permute(2, 0, 1)[None].float()  # argmax gives labels back
    padded = np.pad(labels.numpy(), 1)  # zero padding: class 0 outside the frame
    expected = np.zeros((5, 7))
    for y in range(5):
        for x in range(7):
            window = padded[y: y + 3, x: x + 3]
            expected[y, x] = float(window.sum() - 9 * window[1, 1] != 0)  # Laplacian: neighbours - 8 x centre
    edge = edge_map(seg, OFFICIAL.edge_map)[0, 0].numpy()
    assert np.array_equal(edge, expected)
    assert expected[:, 3:5].all() and expected[0, 5] == 1 and expected[2, 1] == 0  # boundary, border of class 1


def test_the_zero_tap_and_the_relu_sum_normalisation():
    gsv = GuidedSpatiallyVaryingConv(2, conventions=OFFICIAL).eval()
    assert gsv.guiding_net.head[-1].__class__ is nn.ReLU  # conv + BN + ReLU: maps >= 0
    warped = torch.randn(1, 2, 4, 4)
    maps = torch.zeros(1, 11, 4, 4)
    maps[:, gsv.identity_tap] = 3.0  # identity
    maps[:, gsv.identity_tap + 1] = 1.0  # the zero tap takes a quarter of the mass
    gsv.guiding_net = Fixed(lambda guide_in: maps)
    out = gsv(warped, torch.zeros(1, 3, 4, 4))
    assert torch.allclose(out.kernels.sum(1), torch.ones(1, 4, 4))
    assert torch.allclose(out.seg, 0.75 * warped, atol=1e-6)  # unity gain shared with a candidate that is 0


def test_the_official_shifts_pad_the_border_with_zeros():
    gsv = GuidedSpatiallyVaryingConv(1, conventions=OFFICIAL)
    warped = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    chunks = gsv.candidates(warped)  # (1, 8 + 2, 1, 3, 3)
    up_left = gsv.offsets.index((-1, -1))
    assert torch.equal(chunks[0, up_left, 0], torch.tensor([[0.0, 0, 0], [0, 1, 2], [0, 4, 5]]))
    assert torch.equal(chunks[0, gsv.identity_tap, 0], warped[0, 0])
    assert torch.equal(chunks[0, gsv.identity_tap + 1], torch.zeros(1, 3, 3))


def test_official_small_frames_are_bgr_cityscapes_normalised_corner_samples():
    frames = torch.rand(1, 3, 16, 16)
    small = small_frames(frames, OFFICIAL, "swiftnet")  # (1, 3, 2, 2)
    mean, std = (73.15, 82.90, 72.3), (47.67, 48.49, 47.73)  # RGB, on 0..255
    for c_bgr, c_rgb in enumerate((2, 1, 0)):
        corner = (frames[0, c_rgb, 15, 15] * 255 - mean[c_rgb]) / std[c_rgb]  # align_corners: the corner pixel
        assert torch.allclose(small[0, c_bgr, 1, 1], corner, atol=1e-5)
    assert torch.allclose(small_frames(frames, CONVENTIONS["gsvkit"], "swiftnet"),
                          (F.avg_pool2d(frames, 8) - torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1))
                          / torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1), atol=1e-6)


def test_official_resizes_align_corners():
    model = GSVNet(num_classes=4, conventions="official").eval()
    seg = torch.randn(1, 4, 3, 5)
    expected = F.interpolate(seg, size=(24, 40), mode="bilinear", align_corners=True).argmax(1)
    from gsvlib.segmenter import EagerRuntime

    assert torch.equal(EagerRuntime(model).labels(seg, (24, 40)).long(), expected)  # the runtime's output step
    assert model.flow_net.align_corners and model.correction.guiding_net.align_corners


def test_official_swiftnet_has_the_released_pyramid():
    official = GSVNet(num_classes=C, conventions="official").keyframe_net
    assert official.spp.fuse[2].weight.shape == (128, 254, 1, 1) and official.spp.grids == (8, 4, 2)
    assert official.logits[2].bias is not None
    default = GSVNet(num_classes=C).keyframe_net
    assert default.spp.grids == (1, 2, 4, 8) and default.logits[2].bias is None


def test_nets_without_an_official_variant_are_refused():
    with pytest.raises(ValueError, match="FlowNetS.*no variant for the 'official' conventions"):
        GSVNet(flow_net="flownets", conventions="official")
    with pytest.raises(ValueError, match="conventions must be one of"):
        GSVNet(conventions="paper2")
