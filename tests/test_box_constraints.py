"""The box's own constraints (#49): emptiness, tightness and size, as penalties on a prediction."""

from pathlib import Path

import numpy as np
import pytest
import torch

from boxseg.boxes.constraints import disagreement_weight, emptiness_weight, size_penalty, smooth_max, tightness_penalty
from boxseg.losses import loss_function
from boxseg.training import TrainSettings


def _box_map(shape=(1, 12, 12, 12), lo=(3, 3, 3), hi=(8, 9, 7), lesion=1):
    box_map = torch.zeros(shape)
    box_map[0, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = lesion
    return box_map


def test_smooth_max_lies_between_mean_and_max():
    p = torch.tensor([[0.1, 0.2, 0.9]])
    mask = torch.ones_like(p)
    assert smooth_max(p, mask, 1, 0.0).item() == pytest.approx(0.4)
    assert 0.4 < smooth_max(p, mask, 1, 4.0).item() < 0.9 and smooth_max(p, mask, 1, 200.0).item() == pytest.approx(0.9, abs=1e-3)


def test_tightness_is_low_when_every_slice_touches_the_lesion():
    box_map = _box_map()
    inside = box_map[0] > 0
    slab = torch.zeros_like(box_map)
    slab[0, 5, 3:9, 3:7] = 1.0  # one axial slice: every coronal and sagittal slice touches it, one axial slice does
    sphere_like = torch.zeros_like(box_map)
    sphere_like[0, 4:7, 4:8, 3:7] = 1.0  # a lesion through the box's core: every core slice touches it
    full = torch.where(inside, 1.0, 0.0)[None]
    empty = torch.zeros_like(box_map)
    assert tightness_penalty(full, box_map, alpha=10.0).item() == pytest.approx(0.0, abs=1e-4)
    assert tightness_penalty(empty, box_map).item() > 10  # -log(1e-6)
    assert tightness_penalty(sphere_like, box_map, alpha=10.0) < tightness_penalty(slab, box_map, alpha=10.0)
    assert tightness_penalty(slab, box_map) < tightness_penalty(empty, box_map)


def test_only_the_core_slices_of_a_loose_box_are_asked():
    box_map = _box_map(lo=(1, 1, 1), hi=(11, 11, 11))  # 10 slices along each axis
    p = torch.zeros_like(box_map)
    p[0, 3:9, 3:9, 3:9] = 1.0  # the lesion leaves two slices of margin on every side
    assert tightness_penalty(p, box_map, alpha=30.0, core=0.6).item() == pytest.approx(0.0, abs=1e-3)
    assert tightness_penalty(p, box_map, alpha=30.0, core=1.0).item() > 1.0  # the margin slices miss it


def test_a_box_cut_by_the_patch_is_asked_only_across_axes_it_is_whole_along():
    box_map = _box_map(lo=(0, 3, 3), hi=(12, 9, 7))  # whole along y and x, cut along z
    p = torch.zeros_like(box_map)
    p[0, :, 5:7, 4:6] = 1.0  # a column through every axial slice
    assert tightness_penalty(p, box_map, alpha=30.0).item() == pytest.approx(0.0, abs=1e-3)  # axial slices only
    assert size_penalty(p, box_map, (0.2, 0.8)).item() == 0.0  # a cut box has no size term


def test_invalid_voxels_weigh_nothing_and_cut_the_boxes_they_touch():
    box_map = _box_map()
    valid = torch.ones_like(box_map)
    valid[0, :, :, 7:] = 0  # rotated in beside the box
    p = torch.zeros_like(box_map)
    assert tightness_penalty(p, box_map, valid=valid).item() == 0.0 and size_penalty(p, box_map, (0.2, 0.8), valid).item() == 0.0
    w = emptiness_weight(None, box_map, (box_map > 0).long(), (0.2, 1.0), 1.0, valid)
    assert (w[valid == 0] == 0).all() and (w[(valid == 1) & (box_map == 0)] == 1.0).all()


def test_size_band():
    box_map = _box_map()
    inside = (box_map[0] > 0).float()
    volume = inside.sum()
    half = inside * 0.5
    assert size_penalty(half[None], box_map, (0.2, 0.8)).item() == 0.0
    low = size_penalty((inside * 0.05)[None], box_map, (0.2, 0.8)).item()
    assert low == pytest.approx(((0.2 - 0.05) * volume / volume).item() ** 2, rel=1e-5)
    assert size_penalty(inside[None], box_map, (0.2, 0.8)).item() == pytest.approx(0.2**2, rel=1e-5)


def test_outside_the_boxes_background_weighs_the_most():
    box_map = _box_map()
    target = (box_map > 0).long()
    v = torch.rand(box_map.shape) * 3 + 1
    w = emptiness_weight(v, box_map, target, (0.2, 1.0), 1.0)
    outside = box_map == 0
    assert torch.allclose(w[outside], torch.full_like(w[outside], float(v.max())))
    assert torch.allclose(w[~outside], v[~outside] * 1.0)  # inside: the lesion's class weight times V


def test_the_box_loss_adds_its_terms_to_vwce():
    torch.manual_seed(0)
    box_map = _box_map(shape=(2, 12, 12, 12))
    logits = torch.randn(2, 2, 12, 12, 12)
    target = (box_map > 0).long()
    weight = torch.ones(box_map.shape)
    batch = {"target": target, "weight": weight, "box_map": box_map}
    plain = loss_function("box_vwce")(logits, batch, TrainSettings(class_weights=(1.0, 1.0)))
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none").mean()
    assert plain.item() == pytest.approx(ce.item(), rel=1e-5)  # no terms, unit weights: plain CE
    settings = TrainSettings(class_weights=(1.0, 1.0), tightness_weight=0.5, box_size_weight=2.0)
    full = loss_function("box_vwce")(logits, batch, settings)
    p = torch.softmax(logits, 1)[:, 1]
    expected = ce + 0.5 * tightness_penalty(p, box_map, 4.0, 0.6) + 2.0 * size_penalty(p, box_map, (0.2, 0.8))
    assert full.item() == pytest.approx(expected.item(), rel=1e-5)
    assert np.isfinite(full.item())


def test_voxels_where_fusion_and_pseudo_mask_disagree_weigh_less():
    """Inside a box, a voxel the fusion mask (target) and the pseudo-mask label differently
    weighs ``factor`` times as much, either way round; agreement, IGNORE and everything
    outside the boxes (the box says background there) keep their weight."""
    box_map = _box_map()
    target = torch.zeros(box_map.shape, dtype=torch.long)
    pm = torch.zeros(box_map.shape)
    target[0, 4:7, 4:7, 4:6] = 1  # both say lesion
    pm[0, 4:7, 4:7, 4:6] = 1
    target[0, 3, 3:9, 3:7] = 1  # the fusion mask alone grew here
    pm[0, 7, 3:9, 3:7] = 1  # the pseudo-mask alone here
    target[0, 5, 8, 3] = 255  # unlabelled
    pm[0, 0, 0, 0] = 1  # outside every box: not the pseudo-mask's to say (never happens: stage 1 keeps to the boxes)
    weights = emptiness_weight(None, box_map, target, (0.2, 1.0), 1.0)
    w = disagreement_weight(weights, target, pm, box_map, 0.25)
    disagree = torch.zeros(box_map.shape, dtype=torch.bool)
    disagree[0, 3, 3:9, 3:7] = True
    disagree[0, 7, 3:9, 3:7] = True
    assert torch.allclose(w[disagree], weights[disagree] * 0.25)
    assert torch.equal(w[~disagree], weights[~disagree])
    assert w[0, 3, 4, 4] == pytest.approx(0.25) and w[0, 7, 4, 4] == pytest.approx(0.05)  # lesion 1.0, background 0.2
    assert torch.equal(disagreement_weight(weights, target, pm, box_map, 1.0), weights)


def test_the_box_loss_down_weights_disagreement_only_with_the_pseudo_mask():
    torch.manual_seed(1)
    box_map = _box_map(shape=(1, 12, 12, 12))
    logits = torch.randn(1, 2, 12, 12, 12)
    target = (box_map > 0).long()
    batch = {"target": target, "weight": torch.ones(box_map.shape), "box_map": box_map}
    settings = TrainSettings(class_weights=(1.0, 1.0), disagreement_weight=0.0)
    trusting = loss_function("box_vwce")(logits, batch, settings)
    agreeing = loss_function("box_vwce")(logits, {**batch, "pseudo_mask": target.float()}, settings)
    assert agreeing.item() == pytest.approx(trusting.item(), rel=1e-6)
    pm = torch.zeros(box_map.shape)  # the pseudo-mask saw nothing: every box voxel disagrees and weighs 0
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    doubting = loss_function("box_vwce")(logits, {**batch, "pseudo_mask": pm}, settings)
    assert doubting.item() == pytest.approx((ce * (box_map == 0)).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="disagreement_weight"):
        TrainSettings(disagreement_weight=1.5)


def test_each_ablation_method_keeps_one_term_and_with_every_term_off_the_loss_is_vwce():
    """``empty_weight`` 0 gives the outside the (V)WCE weights; with every term off, box_vwce
    is the paper's VWCE on the same batch; each weak_box_{term} turns exactly the others off."""
    import yaml

    from boxseg.methods import BOX_TERMS, CATALOGUE, training_settings

    torch.manual_seed(2)
    box_map = _box_map(shape=(2, 12, 12, 12))
    logits = torch.randn(2, 2, 12, 12, 12)
    logits[:, 1] -= 3.0  # p(lesion) about 0.05: below the size band's 0.1 of each box
    target = torch.zeros(box_map.shape, dtype=torch.long)
    target[:, 4:7, 4:8, 4:6] = 1
    v = torch.rand(box_map.shape) * 2 + 0.5
    batch = {"target": target, "weight": v, "box_map": box_map, "pseudo_mask": torch.zeros(box_map.shape)}
    w = emptiness_weight(v, box_map, target, (0.2, 1.0), 0.0)
    assert torch.allclose(w, torch.where(target == 1, 1.0, 0.2) * v)  # outside as inside
    off = {setting: value for setting, value in BOX_TERMS.values()}
    settings = TrainSettings(class_weights=(0.2, 1.0), **off)
    vwce = loss_function("vwce")(logits, batch, settings)
    assert loss_function("box_vwce")(logits, batch, settings).item() == pytest.approx(vwce.item(), rel=1e-6)
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    on = training_settings(CATALOGUE["weak_box"], {}, config)
    assert all(on[setting] != value for setting, value in off.items())  # the configured weak_box has every term on
    for term, (setting, value) in BOX_TERMS.items():
        alone = training_settings(CATALOGUE[f"weak_box_{term}"], {}, config)
        assert alone[setting] == on[setting]
        assert {s: alone[s] for s in off if s != setting} == {s: v for s, v in off.items() if s != setting}
        loss = loss_function(CATALOGUE[f"weak_box_{term}"].loss)(logits, batch, TrainSettings(class_weights=(0.2, 1.0), **{
            s: alone[s] for s in off}))
        assert loss.item() != pytest.approx(vwce.item(), rel=1e-4), term  # the one term it keeps changes the loss
