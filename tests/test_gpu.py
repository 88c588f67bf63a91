"""CUDA paths, checked where a GPU exists (scripts/gpu-bench.sh runs these first); skipped elsewhere."""
from pathlib import Path

import pytest
import torch

from gsvlib.bench import street_frame
from gsvlib.checkpoint import load_model
from gsvlib.models import GSVNet
from gsvlib.segmenter import VideoSegmenter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "camvid_swiftnet_gsvnet.pt"


def model() -> GSVNet:
    return load_model(WEIGHTS)[0] if WEIGHTS.is_file() else GSVNet(num_classes=11, key_scale=0.5)


def frames(n: int = 9) -> list[torch.Tensor]:
    """A street frame panned by 4 pixels a step: (3, 352, 480) uint8 each."""
    wide = street_frame((352, 480 + 4 * n))
    return [wide[..., 4 * t: 4 * t + 480] for t in range(n)]


def stream(segmenter: VideoSegmenter) -> list:
    return [segmenter.step(f, labels=True) for f in frames()]


@pytest.mark.parametrize("runtime", ["eager", "compiled", "cuda-graphs"])
def test_each_cuda_runtime_streams_the_cpu_labels(runtime):
    """Eager, compiled and CUDA-graph paths on the GPU against eager on the CPU, keyframes and non-keyframes."""
    cpu = stream(VideoSegmenter(model(), interval=4))
    gpu = stream(VideoSegmenter(model(), interval=4, device="cuda", runtime=runtime))
    for a, b in zip(cpu, gpu):
        assert a.is_keyframe == b.is_keyframe and b.labels.device.type == "cuda"
        torch.testing.assert_close(b.logits.cpu(), a.logits, atol=2e-3, rtol=1e-3)
        assert (a.labels == b.labels.cpu()).float().mean() >= 0.999


def test_cuda_graphs_keep_each_frame_s_outputs():
    """A replay must not overwrite what an earlier step returned: the logits of frame 1 stay as they were."""
    seg = VideoSegmenter(model(), interval=4, device="cuda", runtime="cuda-graphs")
    out = [seg.step(f, labels=True) for f in frames(3)]
    again = VideoSegmenter(model(), interval=4, device="cuda")
    ref = [again.step(f, labels=True) for f in frames(3)]
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.logits, b.logits, atol=2e-3, rtol=1e-3)


def test_fp16_autocast_agrees_with_fp32():
    fp32 = stream(VideoSegmenter(model(), interval=4, device="cuda"))
    fp16 = stream(VideoSegmenter(model(), interval=4, device="cuda", amp_dtype=torch.float16))
    agree = sum(int((a.labels == b.labels).sum()) for a, b in zip(fp32, fp16))
    assert agree / sum(a.labels.numel() for a in fp32) >= 0.99
