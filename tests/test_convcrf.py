from dataclasses import replace

import numpy as np
import pytest
import torch

from boxseg.boxes.prior import box_prior, boxes_prior, per_box_slack, shrink_box
from boxseg.convcrf import (
    CRFParams,
    pairwise_message,
    refine_mask,
)
from boxseg.metrics import dice
from boxseg.stage1 import box_downsample, pseudo_mask_from_boxes
from tests.conftest import sphere


def _toy(seed=0, spacing=(2.0, 1.0, 1.0)):
    """A bright sphere of radius 8 mm in darker, noisy tissue with a brighter neighbour."""
    rng = np.random.default_rng(seed)
    shape = (20, 40, 40)
    obj = sphere(shape, (10, 20, 20), 8.0, spacing)
    image = np.full(shape, 0.3, np.float32)
    image[:, :, 31:] = 0.8  # a bright organ beside the lesion, partly inside the loose box
    image[obj] = 0.55
    image += rng.normal(0, 0.03, shape).astype(np.float32)
    return image, obj, spacing


def _loose_box(obj, margin_vox):
    idx = np.argwhere(obj)
    lo = np.maximum(idx.min(0) - margin_vox, 0)
    hi = np.minimum(idx.max(0) + margin_vox + 1, obj.shape)
    return lo.astype(float), hi.astype(float)


class TestConvCRF:
    def test_sphere_in_loose_box_is_recovered(self):
        image, obj, spacing = _toy()
        lo, hi = _loose_box(obj, np.array([2, 4, 4]))
        box = np.zeros_like(obj)
        box[int(lo[0]) : int(hi[0]), int(lo[1]) : int(hi[1]), int(lo[2]) : int(hi[2])] = True
        mask = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, device="cpu") > 0.5
        assert dice(mask, obj) > 0.9
        assert dice(mask, obj) > dice(box, obj) + 0.3  # shrinks the loose box toward the object

    def test_mean_field_on_the_box_plus_window_equals_the_whole_region(self, monkeypatch):
        from boxseg import convcrf

        image, obj, spacing = _toy()
        lo, hi = _loose_box(obj, np.array([2, 4, 4]))
        params = CRFParams(rounds=2)
        cropped = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, params, device="cpu")
        monkeypatch.setattr(convcrf, "_bounding_slices", lambda mask, pad=(0, 0, 0): tuple(slice(0, n) for n in mask.shape))
        whole = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, params, device="cpu")
        np.testing.assert_allclose(cropped, whole, atol=1e-4)
        assert ((cropped > 0.5) == (whole > 0.5)).all()

    @pytest.mark.parametrize("shape", ["cube", "manhattan", "ball"])
    @pytest.mark.parametrize("downsample", [1, 2])  # the exact grid and the coarse one
    def test_kept_kernels_give_the_recomputed_result(self, shape, downsample):
        image, obj, spacing = _toy()
        lo, hi = _loose_box(obj, np.array([2, 4, 4]))
        kept, recomputed = (
            pseudo_mask_from_boxes(image, [(lo, hi)], spacing, CRFParams(window_shape=shape, downsample=downsample, kernel_cache_mb=mb), device="cpu")
            for mb in (64.0, 0.0)
        )
        np.testing.assert_allclose(kept, recomputed, atol=1e-6)
        if shape == "cube":  # the default; a shorter reach is looser on this loose box (README)
            assert dice(kept > 0.5, obj) > (0.9 if downsample == 1 else 0.85)

    def test_coarse_messages_still_recover_the_sphere(self):
        image, obj, spacing = _toy()
        lo, hi = _loose_box(obj, np.array([2, 4, 4]))
        params = CRFParams(downsample=2, window_radius_vox=2)  # coarse window radius 1 (2 mm in-plane)
        mask = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, params, device="cpu") > 0.5
        assert dice(mask, obj) > 0.88

    @pytest.mark.parametrize("shape, power", [("cube", None), ("manhattan", 1), ("ball", 2)])
    @pytest.mark.parametrize("size, r", [((7, 9, 8), 2), ((2, 3, 6), 3)])  # the second thinner than the window
    def test_symmetric_pairs_equal_the_plain_window_sum(self, shape, power, size, r):
        """The pairwise message equals the direct sum over every offset of the window's
        shape (no self term), also on a volume thinner than the window along an axis."""
        rng = np.random.default_rng(3)
        spacing = (2.0, 1.0, 1.5)
        params = CRFParams(window_radius_vox=r, window_shape=shape, theta_appearance_mm=6.0)
        q = torch.from_numpy(rng.random((1, 1, *size)).astype(np.float32))
        image = torch.from_numpy(rng.random((1, 1, *size)).astype(np.float32))
        message, norm = pairwise_message(q, image, torch.ones_like(q), spacing, params)
        expected_m, expected_n = np.zeros(size), np.zeros(size)
        qa, ia = q[0, 0].numpy(), image[0, 0].numpy()
        for i in np.ndindex(*size):
            for d in np.ndindex(2 * r + 1, 2 * r + 1, 2 * r + 1):
                d = np.array(d) - r
                j = np.array(i) + d
                if not d.any() or np.any(j < 0) or np.any(j >= size):
                    continue
                if power and np.sum((np.abs(d) / r) ** power) > 1:
                    continue
                d2 = float(np.sum((d * spacing) ** 2))
                k = params.weight_appearance * np.exp(-d2 / (2 * params.theta_appearance_mm**2) - (ia[i] - ia[tuple(j)]) ** 2 / (2 * params.theta_intensity**2))
                k += params.weight_smooth * np.exp(-d2 / (2 * params.theta_smooth_mm**2))
                expected_m[i] += k * qa[tuple(j)]
                expected_n[i] += k
        assert np.allclose(message[0, 0].numpy(), expected_m, rtol=1e-4, atol=1e-5)
        assert np.allclose(norm[0, 0].numpy(), expected_n, rtol=1e-4, atol=1e-5)

    @pytest.mark.parametrize("kernel_cache_mb", [512.0, 0.0])  # kernels kept, recomputed
    def test_a_box_thinner_than_the_window(self, kernel_cache_mb):
        """A box two voxels thick (a thin lesion; a fragment of a few voxels) once failed
        with a shape mismatch: the window's offsets are longer than the box."""
        rng = np.random.default_rng(4)
        shape = (20, 30, 30)
        image = np.full(shape, 0.3, np.float32) + rng.normal(0, 0.02, shape).astype(np.float32)
        image[10:12, 12:18, 12:18] = 0.6  # a slab two voxels thick
        lo, hi = np.array([10.0, 10.0, 10.0]), np.array([12.0, 20.0, 20.0])
        params = CRFParams(window_radius_vox=3, kernel_cache_mb=kernel_cache_mb)
        prob = pseudo_mask_from_boxes(image, [(lo, hi)], (2.0, 2.0, 2.0), params, device="cpu")
        _, inside = box_prior(shape, lo, hi, 0.25)
        assert prob[~inside].max() == 0.0
        slab = np.zeros(shape, bool)
        slab[10:12, 12:18, 12:18] = True
        assert dice(prob > 0.5, slab) > 0.7

    def test_outside_the_box_stays_background(self):
        image, obj, spacing = _toy()
        lo, hi = _loose_box(obj, np.array([0, -3, -3]))  # a box cutting the sphere
        prob = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, device="cpu")
        _, inside = box_prior(image.shape, lo, hi, 0.25)
        assert prob[~inside].max() == 0.0
        assert prob[inside].max() > 0.5

    def test_deterministic(self):
        image, obj, spacing = _toy()
        lo, hi = _loose_box(obj, np.array([1, 3, 3]))
        a = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, device="cpu")
        b = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, device="cpu")
        assert np.array_equal(a, b)

    def test_two_boxes_two_lesions(self):
        rng = np.random.default_rng(1)
        shape = (16, 32, 64)
        a, b = sphere(shape, (8, 16, 16), 5.0), sphere(shape, (8, 16, 48), 6.0)
        image = (0.3 + 0.3 * (a | b) + rng.normal(0, 0.03, shape)).astype(np.float32)
        boxes = [_loose_box(a, np.array([2, 2, 2])), _loose_box(b, np.array([2, 2, 2]))]
        mask = pseudo_mask_from_boxes(image, boxes, (1.0, 1.0, 1.0), device="cpu") > 0.5
        assert dice(mask[..., :32], a[..., :32]) > 0.85
        assert dice(mask[..., 32:], b[..., 32:]) > 0.85

    def test_refine_mask_fixes_an_oversized_mask(self):
        image, obj, spacing = _toy()
        big = sphere(obj.shape, (10, 20, 20), 11.0, spacing)
        lo, hi = _loose_box(obj, np.array([2, 4, 4]))
        _, allowed = box_prior(obj.shape, lo, hi, 0.25)
        fused = refine_mask(image, big, allowed, spacing, device="cpu") > 0.5
        assert dice(fused, obj) > dice(big & allowed, obj)
        assert not fused[~allowed].any()

    def test_message_is_kernel_weighted_neighbour_sum(self):
        # One voxel of q=1 in a uniform image: its neighbour at +1 along x receives exactly
        # w_a exp(-d^2/2ta^2) + w_s exp(-d^2/2ts^2) with d = spacing_x.
        params = CRFParams(window_radius_vox=1, theta_appearance_mm=2.0, theta_smooth_mm=1.0, weight_appearance=1.0, weight_smooth=0.5)
        q = torch.zeros(1, 1, 5, 5, 5)
        q[0, 0, 2, 2, 2] = 1.0
        image = torch.zeros_like(q)
        message, _ = pairwise_message(q, image, torch.ones_like(q), (1.0, 1.0, 1.5), params)
        expected = np.exp(-(1.5**2) / 8.0) + 0.5 * np.exp(-(1.5**2) / 2.0)
        assert message[0, 0, 2, 2, 3].item() == pytest.approx(expected, rel=1e-5)
        assert message[0, 0, 2, 2, 2].item() == 0.0  # no self-message

    def test_params_reject_unknown_and_negative(self):
        with pytest.raises(ValueError, match="unknown ConvCRF"):
            CRFParams.from_dict({"theta": 1.0})
        with pytest.raises(ValueError, match="must be finite"):
            CRFParams(theta_intensity=-1.0)
        with pytest.raises(ValueError, match="window_shape must be one of"):
            CRFParams(window_shape="diamond")


def test_shrink_box_moves_faces_in_by_the_slack_in_mm():
    lo, hi = shrink_box((2.0, 4.0, 4.0), (12.0, 24.0, 24.0), (2.0, 1.0, 1.0), 3.0)
    assert np.allclose(lo, (3.5, 7.0, 7.0)) and np.allclose(hi, (10.5, 21.0, 21.0))
    lo, hi = shrink_box((0.0, 0.0, 0.0), (3.0, 3.0, 40.0), (1.0, 1.0, 1.0), 10.0)  # never below one voxel
    assert np.allclose(hi - lo, (1.0, 1.0, 20.0))
    assert [tuple(v) for v in shrink_box((1, 2, 3), (4, 5, 6), (1, 1, 1), 0.0)] == [(1, 2, 3), (4, 5, 6)]


def test_shrink_box_per_face_and_never_below_one_voxel():
    lo, hi = shrink_box((0.0, 0.0, 0.0), (10.0, 10.0, 10.0), (1.0, 1.0, 2.0), ((2.0, 0.0, 2.0), (1.0, 0.0, 6.0)))
    assert np.allclose(lo, (2.0, 0.0, 1.0)) and np.allclose(hi, (9.0, 10.0, 7.0))
    lo, hi = shrink_box((0.0, 0.0, 0.0), (10.0, 10.0, 10.0), (1.0, 1.0, 1.0), ((6.0, 0, 0), (6.0, 0, 0)))
    assert hi[0] - lo[0] == pytest.approx(1.0) and lo[0] == pytest.approx(4.5)  # both faces give way alike
    same = shrink_box((2.0, 4.0, 4.0), (12.0, 24.0, 24.0), (2.0, 1.0, 1.0), ((3.0,) * 3, (3.0,) * 3))
    assert np.allclose(same, shrink_box((2.0, 4.0, 4.0), (12.0, 24.0, 24.0), (2.0, 1.0, 1.0), 3.0))
    with pytest.raises(ValueError, match="2 entries for 1 boxes"):
        per_box_slack([1.0, 2.0], 1)


def test_each_face_told_its_own_slack_keeps_a_box_loose_on_one_side():
    """A box tight on five faces and 6 mm loose on one: one slack for every face cuts the
    lesion, each face's own slack (as crf_bench.py's oracle row tells it) recovers it."""
    image, obj, spacing = _toy()
    idx = np.argwhere(obj)
    lo, hi = idx.min(0).astype(float), idx.max(0) + 1.0
    hi[2] += 6.0  # 1 mm voxels along x
    per_face = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, device="cpu", slack_mm=[((0, 0, 0), (0, 0, 6.0))]) > 0.5
    uniform = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, device="cpu", slack_mm=6.0) > 0.5
    assert dice(per_face, obj) > 0.95 and dice(uniform, obj) < 0.5  # measured 0.9995 and 0.05


def test_slack_prior_keeps_the_box_and_moves_the_half_surface_in():
    shape, spacing, box = (20, 40, 40), (2.0, 1.0, 1.0), ((2.0, 6.0, 6.0), (18.0, 34.0, 34.0))
    plain, (inside,) = boxes_prior(shape, [box], 0.4, spacing, 0.0)
    slack, (inside_slack,) = boxes_prior(shape, [box], 0.4, spacing, 7.0)
    assert np.array_equal(inside, inside_slack) and not slack[~inside].any()
    assert (slack <= plain + 1e-6).all()  # the slack only lowers the prior, most near the faces
    assert plain[10, 20, 7] > 0.5 > slack[10, 20, 7] > 0.0  # 1 mm inside a face: lesion only without slack
    assert slack[10, 20, 14] > 0.5  # 8 mm inside: lesion either way


def test_told_slack_recovers_a_loose_box_better_than_no_slack():
    """A 7 mm box around the sphere: telling the prior the slack brings the mask closer."""
    image, obj, spacing = _toy()
    lo, hi = _loose_box(obj, np.array([3, 7, 7]))  # 6-7 mm on every face
    blind = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, device="cpu") > 0.5
    told = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, device="cpu", slack_mm=6.0) > 0.5
    inside = np.zeros(obj.shape, bool)
    inside[int(lo[0]) : int(hi[0]), int(lo[1]) : int(hi[1]), int(lo[2]) : int(hi[2])] = True
    assert dice(told, obj) > 0.95 and dice(told, obj) > dice(blind, obj) + 0.2  # measured 1.0 vs 0.55
    assert not told[~inside].any()


def test_tightening_keeps_the_box_constraint():
    image, obj, spacing = _toy()
    lo, hi = _loose_box(obj, np.array([2, 5, 5]))
    params = CRFParams(tighten_rounds=2)
    prob = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, params, device="cpu")
    _, inside = box_prior(image.shape, lo, hi, 0.25)
    assert prob[~inside].max() == 0.0
    assert dice(prob > 0.5, obj) > 0.85


def test_larger_boxes_get_a_coarser_message_grid():
    box = lambda side: (np.zeros(3), np.array([side / 2.0, 50.0, 50.0]))  # voxels of 2 mm: side in mm
    params = CRFParams(downsample_box_mm=40.0, downsample_max=3)
    assert [box_downsample(box(s), (2.0, 2.0, 2.0), params) for s in (20, 39.9, 40, 79.9, 80, 300)] == [1, 1, 2, 2, 3, 3]
    assert box_downsample(box(300), (2.0, 2.0, 2.0), CRFParams(downsample_box_mm=0.0)) == 1
    assert box_downsample(box(20), (2.0, 2.0, 2.0), replace(params, downsample=2)) == 2  # never below downsample
    # a 44 mm lesion in a loose box (f = 2): still recovered, nothing outside the box
    rng = np.random.default_rng(0)
    spacing = (2.0, 2.0, 2.0)
    obj = sphere((40, 40, 40), (20, 20, 20), 22.0, spacing)
    image = np.where(obj, 0.6, 0.3).astype(np.float32) + rng.normal(0, 0.03, obj.shape).astype(np.float32)
    lo, hi = _loose_box(obj, np.array([2, 2, 2]))
    assert box_downsample((lo, hi), spacing, params) == 2
    prob = pseudo_mask_from_boxes(image, [(lo, hi)], spacing, params, device="cpu")
    _, inside = box_prior(image.shape, lo, hi, 0.25)
    assert prob[~inside].max() == 0.0
    assert dice(prob > 0.5, obj) > 0.9


def test_each_box_is_refined_on_its_own():
    """A box around a fragment of a few voxels beside a large lesion (KiTS19 labels have
    such fragments) leaves the large lesion's mask as it is alone: each box has its own
    message grid (here f = 2 for the large box, 1 for the fragment's), intensity model
    and background shell. Once the smallest box chose one grid for the whole case."""
    rng = np.random.default_rng(0)
    spacing = (2.0, 2.0, 2.0)
    shape = (40, 40, 60)
    obj = sphere(shape, (20, 20, 20), 22.0, spacing)
    image = np.where(obj, 0.6, 0.3).astype(np.float32) + rng.normal(0, 0.03, shape).astype(np.float32)
    image[20, 20, 52] = 0.6  # a one-voxel fragment
    big = _loose_box(obj, np.array([2, 2, 2]))
    tiny = (np.array([19.6, 19.7, 51.8]), np.array([20.4, 20.5, 52.6]))
    params = CRFParams(downsample_box_mm=40.0, downsample_max=3)
    assert [box_downsample(b, spacing, params) for b in (big, tiny)] == [2, 1]
    alone = pseudo_mask_from_boxes(image, [big], spacing, params, device="cpu")
    both = pseudo_mask_from_boxes(image, [big, tiny], spacing, params, device="cpu")
    _, inside_big = box_prior(shape, *big, 0.25)
    _, inside_tiny = box_prior(shape, *tiny, 0.25)
    np.testing.assert_array_equal(both[inside_big], alone[inside_big])
    assert both[~(inside_big | inside_tiny)].max() == 0.0


def test_the_background_shell_of_a_box_is_the_distance_transforms():
    """``_shell`` measures a box's distance along the axes; it must pick the voxels the
    Euclidean distance transform picks, on boxes (ties at exactly ``shell_mm`` included) and on
    a mask that is not a box (where it uses the transform)."""
    from scipy import ndimage as ndi

    from boxseg.convcrf import _shell

    rng = np.random.default_rng(0)
    cases = [((20, 20, 20), (2.0, 2.0, 2.0), 8.0, [(5, 14), (6, 12), (4, 9)])]
    for _ in range(40):
        shape = tuple(int(n) for n in rng.integers(5, 24, 3))
        lo = [int(rng.integers(0, n - 1)) for n in shape]
        cases.append((shape, tuple(rng.uniform(0.5, 4, 3)), float(rng.uniform(1, 12)),
                      [(a, int(rng.integers(a, n))) for a, n in zip(lo, shape)]))
    for shape, spacing, shell_mm, extent in cases:
        inside = np.zeros(shape, bool)
        inside[tuple(slice(a, b + 1) for a, b in extent)] = True
        for mask in (inside, inside | (np.indices(shape).sum(0) == 0)):  # a box; a box and a far corner voxel
            expected = ~mask & (ndi.distance_transform_edt(~mask, sampling=spacing) <= shell_mm)
            assert np.array_equal(_shell(mask, spacing, shell_mm), expected)
