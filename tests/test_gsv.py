"""Guided spatially-varying convolution (sec. 3.4): ideal-delay kernels, edge map, unity-gain kernels, eq. (2)."""
import pytest
import torch

from gsvlib.models.gsv import GuidedSpatiallyVaryingConv, edge_map, ideal_delay_kernels, ideal_delay_offsets

DIRECTIONS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def test_k3_gives_the_eight_one_pixel_shifts():
    assert ideal_delay_offsets(3) == DIRECTIONS
    theta = ideal_delay_kernels(3)
    assert theta.shape == (8, 1, 1, 3, 3)
    assert torch.equal(theta.sum((1, 2, 3, 4)), torch.ones(8))  # one unit impulse each


@pytest.mark.parametrize("d,offset", list(enumerate(DIRECTIONS)))
def test_ideal_delay_kernel_shifts_exactly_one_pixel(d, offset):
    gsv = GuidedSpatiallyVaryingConv(num_classes=4)
    s = torch.randn(2, 4, 9, 11)
    shifted = gsv.candidates(s)[:, d]  # (B, C, H, W)
    dy, dx = offset
    # f(y, x) = S(y + dy, x + dx) wherever (y + dy, x + dx) is inside the frame
    ys, xs = slice(max(0, -dy), 9 - max(0, dy)), slice(max(0, -dx), 11 - max(0, dx))
    ys_src, xs_src = slice(max(0, dy), 9 + min(0, dy)), slice(max(0, dx), 11 + min(0, dx))
    assert torch.equal(shifted[..., ys, xs], s[..., ys_src, xs_src])


def test_identity_candidate_is_the_warped_segmentation():
    gsv = GuidedSpatiallyVaryingConv(num_classes=3)
    s = torch.randn(1, 3, 6, 7)
    assert torch.equal(gsv.candidates(s)[:, -1], s)


def test_k5_has_24_shifts_up_to_two_pixels():
    offsets = ideal_delay_offsets(5)
    assert len(offsets) == 24 and max(max(abs(a), abs(b)) for a, b in offsets) == 2
    with pytest.raises(ValueError, match="odd"):
        ideal_delay_offsets(4)


def test_kernels_sum_to_one_per_pixel_and_output_is_their_chunk_inner_product():
    gsv = GuidedSpatiallyVaryingConv(num_classes=5).eval()
    warped, frame = torch.randn(2, 5, 16, 24), torch.randn(2, 3, 16, 24)
    out = gsv(warped, frame)
    assert out.kernels.shape == (2, 8 + 2, 16, 24)
    assert torch.allclose(out.kernels.sum(1), torch.ones(2, 16, 24), atol=1e-5)
    assert (out.kernels >= 0).all()
    chunks = torch.cat((gsv.candidates(warped), out.intra.unsqueeze(1)), 1)  # (B, D+2, C, H, W)
    expected = torch.einsum("bkhw,bkchw->bchw", out.kernels, chunks)  # eq. (2) for every class c
    assert torch.allclose(out.seg, expected, atol=1e-5)


def test_constant_segmentation_is_preserved_without_intra():
    """Unity gain: where every candidate agrees, the output equals them whatever the kernel."""
    gsv = GuidedSpatiallyVaryingConv(num_classes=3, use_intra=False).eval()
    warped = torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1).expand(1, 3, 8, 8).contiguous()
    out = gsv(warped, torch.randn(1, 3, 8, 8))
    assert out.intra is None and out.kernels.shape[1] == 9
    assert torch.allclose(out.seg, warped, atol=1e-5)


def test_edge_map_marks_class_boundaries_only():
    warped = torch.zeros(1, 3, 6, 8)
    warped[:, 0, :, :4] = 5  # class 0 on the left half
    warped[:, 2, :, 4:] = 5  # class 2 on the right half
    e = edge_map(warped)[0, 0]
    assert torch.allclose(e[:, [0, 1, 6, 7]], torch.full((6, 4), 0.5))  # flat regions and frame border: sigmoid(0)
    assert (e[:, 3] > 0.99).all() and (e[:, 4] < 0.01).all()  # the boundary columns respond


@pytest.mark.parametrize("kernel_size,use_intra,conventions", [(3, True, "gsvkit"), (5, False, "gsvkit"),
                                                               (3, True, "official")])
def test_the_in_place_sum_of_shifted_views_is_eq_2_over_the_stacked_candidates(kernel_size, use_intra, conventions):
    """mix() adds each shifted view of the padded S^-_t instead of stacking the D + 2 candidates: the same S_t and the
    same gradients, under both conventions (replicate or zero padding, the official zero tap) and for K = 5."""
    from gsvlib.models.conventions import CONVENTIONS

    torch.manual_seed(0)
    gsv = GuidedSpatiallyVaryingConv(6, kernel_size, use_intra, conventions=CONVENTIONS[conventions])
    taps = len(gsv.offsets) + 1 + CONVENTIONS[conventions].zero_tap + use_intra
    kernels = torch.softmax(torch.randn(2, taps, 7, 9), 1).requires_grad_()
    warped = torch.randn(2, 6, 7, 9, requires_grad=True)
    intra = torch.randn(2, 6, 7, 9, requires_grad=True) if use_intra else None
    chunks = torch.cat((gsv.candidates(warped), *((intra.unsqueeze(1),) if use_intra else ())), 1)
    stacked = (kernels.unsqueeze(2) * chunks).sum(1)  # eq. (2) over the stack, (B, C, H, W)
    fused = gsv.mix(kernels, warped, intra)
    torch.testing.assert_close(fused, stacked)
    inputs = [kernels, warped] + ([intra] if use_intra else [])
    weight = torch.randn_like(stacked)
    for a, b in zip(torch.autograd.grad((fused * weight).sum(), inputs),
                    torch.autograd.grad((stacked * weight).sum(), inputs)):
        torch.testing.assert_close(a, b)


def test_learnable_delays_mix_the_stacked_candidates_of_their_trained_kernels():
    """Delays that train need not stay shifts: mix() then convolves with theta as it is."""
    gsv = GuidedSpatiallyVaryingConv(3, learnable_delays=True)
    with torch.no_grad():
        gsv.theta.mul_(0.5)  # no longer unit impulses
    kernels = torch.softmax(torch.randn(1, 10, 5, 6), 1)
    warped, intra = torch.randn(1, 3, 5, 6), torch.randn(1, 3, 5, 6)
    chunks = torch.cat((gsv.candidates(warped), intra.unsqueeze(1)), 1)
    torch.testing.assert_close(gsv.mix(kernels, warped, intra), (kernels.unsqueeze(2) * chunks).sum(1))


def test_edge_map_breaks_ties_as_argmax_does():
    """max(1).indices, 4x faster than argmax(1) over NCHW on a CPU, picks the same first maximum where classes tie."""
    warped = torch.randint(0, 3, (2, 5, 9, 11)).float()  # many ties
    labels = warped.argmax(1, keepdim=True).float()
    m = torch.tensor(((1.0, 1.0, 1.0), (1.0, -8.0, 1.0), (1.0, 1.0, 1.0))).view(1, 1, 3, 3)
    padded = torch.nn.functional.pad(labels, (1, 1, 1, 1), mode="replicate")
    expected = torch.sigmoid(torch.nn.functional.conv2d(padded, m))
    assert torch.equal(edge_map(warped), expected)


def test_the_gsv_conv_takes_inference_tensors_with_gradients_on():
    """What a notebook does: S^-_t traced under inference_mode, then the GSV conv called with autograd on."""
    gsv = GuidedSpatiallyVaryingConv(4).eval()
    with torch.inference_mode():
        warped = torch.randn(1, 4, 6, 8)
    out = gsv(warped, torch.randn(1, 3, 6, 8))
    assert out.seg.requires_grad and out.seg.shape == (1, 4, 6, 8)
