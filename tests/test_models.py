"""Keyframe nets, flow nets and the composed GSVNet: names, shapes, gradients, checkpoints."""
import pytest
import torch

from gsvlib import GSVNet
from gsvlib.checkpoint import CheckpointError, load_state_dict_checked, read_checkpoint
from gsvlib.checkpoint import load_torchvision_weights
from gsvlib.models import BiSeNet, FlowLight, FlowNetS, ResNet18, SwiftNet

BN = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]


def torchvision_resnet18_keys() -> list[str]:
    """torchvision.models.resnet18().state_dict().keys(), written out (torchvision is not a dependency)."""
    keys = ["conv1.weight"] + [f"bn1.{n}" for n in BN]
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            keys += [f"{p}.conv1.weight"] + [f"{p}.bn1.{n}" for n in BN]
            keys += [f"{p}.conv2.weight"] + [f"{p}.bn2.{n}" for n in BN]
            if layer > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{n}" for n in BN]
    return keys + ["fc.weight", "fc.bias"]


def test_resnet18_key_list_equals_torchvision():
    assert list(ResNet18(with_fc=True).state_dict()) == torchvision_resnet18_keys()
    assert sum(p.numel() for p in ResNet18(with_fc=True).parameters()) == 11_689_512  # torchvision's count


def test_resnet18_returns_four_stages():
    feats = ResNet18()(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]


def test_torchvision_format_weights_load_into_keyframe_backbone(tmp_path):
    reference = ResNet18(with_fc=True)
    for t in reference.state_dict().values():
        if t.is_floating_point():
            t.normal_()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = SwiftNet(num_classes=3)
    load_torchvision_weights(net.backbone, path)
    for k, v in net.backbone.state_dict().items():
        assert torch.equal(v, reference.state_dict()[k]), k


def test_foreign_backbone_checkpoint_lists_missing_and_unexpected_keys():
    state = ResNet18(with_fc=True).state_dict()
    state["head.weight"] = state.pop("layer4.1.conv2.weight")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): layer4.1.conv2.weight") as e:
        load_torchvision_weights(ResNet18(), state)
    assert "unexpected keys (1): head.weight" in str(e.value)


def test_checkpoint_with_other_class_count_reports_shapes():
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_state_dict_checked(GSVNet(num_classes=5), GSVNet(num_classes=7).state_dict(), "ckpt.pt")


def test_missing_checkpoint_file_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth does not exist"):
        load_torchvision_weights(ResNet18(), tmp_path / "nope.pth")


@pytest.mark.parametrize("net,stride", [(SwiftNet, 4), (BiSeNet, 8)])
def test_keyframe_net_logit_stride(net, stride):
    out = net(num_classes=7).eval()(torch.randn(1, 3, 96, 128))
    assert out.shape == (1, 7, 96 // stride, 128 // stride)


@pytest.mark.parametrize("flow_net", [FlowLight, FlowNetS])
def test_flow_nets_return_flow_on_the_eighth_grid(flow_net):
    a, b = torch.randn(2, 3, 16, 32), torch.randn(2, 3, 16, 32)
    assert flow_net().eval()(a, b).shape == (2, 2, 16, 32)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1024, 2048), (720, 960), (360, 480)])
def test_segmenter_shapes_at_paper_resolutions_and_key_scales(small_model, size):
    from gsvlib import VideoSegmenter

    h, w = size
    frame = torch.rand(3, h, w)
    for scale in (0.5, 0.75, 1.0):
        seg = VideoSegmenter(small_model, interval=2, key_scale=scale)
        key, nonkey = seg.step(frame), seg.step(frame, labels=True)
        assert key.is_keyframe and not nonkey.is_keyframe
        assert key.logits.shape == nonkey.logits.shape == (1, 5, -(-h // 8), -(-w // 8))
        assert nonkey.labels.shape == (1, h, w) and int(nonkey.labels.max()) < 5


def test_forward_on_clip_returns_eighth_scale_logits_for_both_keyframe_nets():
    for kn in ("swiftnet", "bisenet"):
        out = GSVNet(num_classes=4, keyframe_net=kn).eval()(torch.rand(2, 3, 3, 64, 96))
        assert out.shape == (2, 4, 8, 12)


def test_gradients_reach_flow_intra_and_guide_but_not_frozen_keyframe_net():
    model = GSVNet(num_classes=4).train()
    loss = model(torch.rand(2, 3, 3, 64, 64)).logsumexp(1).mean()
    loss.backward()
    for name, part in (("flow", model.flow_net), ("intra", model.correction.intra_net), ("guide", model.correction.guiding_net)):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name
    assert all(p.grad is None for p in model.keyframe_net.parameters())
    assert not model.keyframe_net.training  # frozen BN statistics stay put in train()
    assert model.correction.theta.grad is None  # ideal-delay kernels are fixed by default


def test_unfrozen_keyframe_net_and_learnable_delays_get_gradients():
    model = GSVNet(num_classes=4, freeze_keyframe=False, learnable_delays=True).train()
    model(torch.rand(2, 2, 3, 64, 64)).sum().backward()
    assert model.keyframe_net.training
    assert all(p.grad is not None for p in model.keyframe_net.parameters())
    assert model.correction.theta.grad is not None


def test_config_rejects_unknown_parts():
    with pytest.raises(ValueError, match="keyframe_net must be one of"):
        GSVNet(keyframe_net="deeplab")


def test_atomic_writes_replace_whole_files_with_normal_permissions(tmp_path):
    import os

    from gsvlib.checkpoint import read_checkpoint
    from gsvlib.files import save_atomic, write_json_atomic

    save_atomic({"a": torch.ones(2)}, tmp_path / "c.pt")
    save_atomic({"a": torch.zeros(2)}, tmp_path / "c.pt")
    assert torch.equal(read_checkpoint(tmp_path / "c.pt")["a"], torch.zeros(2))
    write_json_atomic(tmp_path / "r.json", {"x": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "r.json"]  # no temporary files left behind


def test_a_folder_is_not_reported_as_missing(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder; pass the checkpoint file"):
        read_checkpoint(tmp_path)


def test_a_foreign_pickle_is_refused_without_advising_weights_only_false(tmp_path):
    import pickle

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(object()))  # an arbitrary object: not loadable with weights_only=True
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert "weights_only" not in str(err.value) and "could not be read" in str(err.value)


def test_nan_weights_are_refused_on_load(tmp_path):
    from dataclasses import asdict

    from gsvlib.checkpoint import load_model
    from gsvlib.files import save_atomic

    model = GSVNet(num_classes=5)
    state = model.state_dict()
    state["correction.guiding_net.head.weight"][0, 0, 0, 0] = float("nan")
    save_atomic({"model": state, "model_config": asdict(model.config)}, tmp_path / "diverged.pt")
    with pytest.raises(CheckpointError, match="NaN or infinite weights in correction.guiding_net.head.weight"):
        load_model(tmp_path / "diverged.pt")


@pytest.mark.parametrize("config, message", [({"num_classes": 5, "colour": "red"}, "does not know"),
                                             ({"num_classes": 10 ** 9}, "num_classes must be an integer in 2..1024"),
                                             ({"num_classes": 5, "kernel_size": 4}, "kernel_size K must be")])
def test_a_crafted_model_config_is_refused_before_building(tmp_path, config, message):
    from gsvlib.checkpoint import load_model
    from gsvlib.files import save_atomic

    save_atomic({"model": {}, "model_config": config}, tmp_path / "crafted.pt")
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "crafted.pt")


def test_a_full_disk_is_named_and_the_old_file_kept(tmp_path, monkeypatch):
    import errno
    import shutil

    from gsvlib.files import save_atomic

    save_atomic({"w": torch.ones(2)}, tmp_path / "checkpoint.pt")

    def full(obj, f):  # what torch.save raises when the disk fills up
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 0))
    with pytest.raises(OSError, match="no space left on device while writing .*checkpoint.pt") as err:
        save_atomic({"w": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(tmp_path / "checkpoint.pt")["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_the_correction_after_warping_is_a_registry_the_config_names(tmp_path):
    """"none" warps alone (S_t = S^-_t); a checkpoint naming a correction nobody registered is refused with the fix."""
    from dataclasses import asdict

    from gsvlib.checkpoint import load_model
    from gsvlib.files import save_atomic

    model = GSVNet(num_classes=5, correction="none").eval()
    prev, cur = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    seg = torch.randn(2, 5, 8, 8)
    p = model.propagate(seg, prev, cur)
    assert torch.equal(p.seg, p.warped) and p.kernels is None and sum(x.numel() for x in model.correction.parameters()) == 0
    config = {**asdict(model.config), "correction": "not-registered"}
    save_atomic({"model": model.state_dict(), "model_config": config}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="correction must be one of .*'not-registered'.*import that module first"):
        load_model(tmp_path / "c.pt")
