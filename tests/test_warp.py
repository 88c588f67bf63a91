"""Backward warping in segmentation-output space (sec. 3.3, eq. 1) and its documented conventions."""
import pytest
import torch

from gsvlib.models.warp import out_of_frame, warp


def test_zero_flow_is_identity():
    s = torch.randn(2, 5, 7, 9)
    assert torch.allclose(warp(s, torch.zeros(2, 2, 7, 9)), s, atol=1e-6)


@pytest.mark.parametrize("fx,fy", [(1, 0), (0, 1), (-2, 0), (3, -1)])
def test_integer_flow_is_an_exact_shift(fx, fy):
    s = torch.randn(1, 3, 10, 12)
    flow = torch.zeros(1, 2, 10, 12)
    flow[:, 0], flow[:, 1] = fx, fy
    out = warp(s, flow)
    # out(y, x) = s(y + fy, x + fx) for every pixel whose source is inside the frame
    ys, xs = slice(max(0, -fy), 10 - max(0, fy)), slice(max(0, -fx), 12 - max(0, fx))
    ys_src, xs_src = slice(max(0, fy), 10 + min(0, fy)), slice(max(0, fx), 12 + min(0, fx))
    assert torch.allclose(out[..., ys, xs], s[..., ys_src, xs_src], atol=1e-5)


def test_half_pixel_flow_interpolates_bilinearly():
    s = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 3, 6)
    flow = torch.zeros(1, 2, 3, 6)
    flow[:, 0] = 0.5
    assert torch.allclose(warp(s, flow)[0, 0, 1, :5], torch.arange(5.0) + 0.5)


def test_flow_pointing_outside_gives_documented_fill():
    s = torch.randn(1, 2, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0] = 10  # every sample lands right of the frame
    assert out_of_frame(flow).all()
    border = warp(s, flow, fill="border")
    assert torch.allclose(border, s[..., -1:].expand_as(s), atol=1e-6)  # last column repeated
    assert torch.equal(warp(s, flow, fill="zeros"), torch.zeros_like(s))
    with pytest.raises(ValueError, match="fill"):
        warp(s, flow, fill="mirror")


def test_out_of_frame_marks_only_samples_outside():
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 1] = -1  # look one row up
    mask = out_of_frame(flow)[0]
    assert mask[0].all() and not mask[1:].any()


def test_wrong_flow_shape_is_reported():
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        warp(torch.randn(1, 3, 4, 4), torch.zeros(1, 2, 4, 5))


def test_the_photometric_error_of_the_true_shift_is_zero_and_counts_only_pixels_seen_before():
    """Frame t is frame t-1 moved 2 px right: flow -2 in x explains it exactly except in the 2 columns that came in
    from outside (left out); no motion leaves the error of every moved edge."""
    from gsvlib.models.flow import photometric_error

    previous = torch.rand(1, 3, 6, 10)
    current = torch.zeros_like(previous)
    current[..., 2:] = previous[..., :-2]
    shift = torch.zeros(1, 2, 6, 10)
    shift[:, 0] = -2
    total, count = photometric_error(current, previous, shift)
    assert count == 6 * 8 and total.abs() < 1e-5
    still, everywhere = photometric_error(current, previous, torch.zeros_like(shift))
    assert everywhere == 60 and torch.isclose(still, (current - previous).abs().mean(1).sum())


def test_smoothness_is_zero_for_a_constant_flow_and_damped_at_image_edges():
    from gsvlib.models.flow import edge_aware_smoothness

    image = torch.zeros(1, 3, 4, 6)
    constant = torch.full((1, 2, 4, 6), 1.5)
    assert edge_aware_smoothness(constant, image) == (0, 4 * 5 + 3 * 6)
    step = torch.zeros(1, 2, 4, 6)
    step[:, 0, :, 3:] = 1.0  # a jump of 1 in x between columns 2 and 3, on every row
    assert torch.isclose(edge_aware_smoothness(step, image)[0], torch.tensor(4.0))
    image[..., 3:] = 2.0  # an image edge at the same place damps it by exp(-2)
    assert torch.isclose(edge_aware_smoothness(step, image)[0], torch.tensor(4.0) * torch.exp(torch.tensor(-2.0)))
