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
