import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def small_model():
    """A GSVNet in eval mode shared by read-only tests (builds once: ~0.3 s)."""
    from gsvlib import GSVNet

    torch.manual_seed(0)
    return GSVNet(num_classes=5).eval()


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A tiny synthetic set (2 train + 1 val snippets of 8 frames at 64x128, annotated frame 6), made once."""
    from gsvlib.data.synthetic import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthConfig(snippets=2, val_snippets=1, size=(64, 128), frames=8, annotated=6), progress=False)
    return root


@pytest.fixture(scope="session")
def keyframe_run(tiny_synth, tmp_path_factory):
    """The checkpoint of one iteration of stage keyframe on the tiny set: a trained keyframe net to start stage propagation
    from (made once)."""
    from gsvlib.config import config_for
    from gsvlib.train import train

    out = tmp_path_factory.mktemp("keyframe")
    return train(config_for("keyframe", root=str(tiny_synth), out=str(out), iterations=1, batch_size=2),
                 progress=False)["checkpoint"]
