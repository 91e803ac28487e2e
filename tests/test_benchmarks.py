"""The benchmark scripts run (tiny inputs): ROIs saved for a machine without SimpleITK
give the same ConvCRF result as the images, the training benchmark reports a step time and the
threads benchmark each layout's throughput."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from boxseg.phantom import write_phantom_case

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _phantom_kits(root, n):
    """``n`` phantom cases in KiTS layout under ``root``."""
    for i in range(n):
        case = root / f"case_{i:05d}"
        case.mkdir(parents=True)
        write_phantom_case(i, case / "imaging.nii.gz", case / "segmentation.nii.gz")
    return root


def test_crf_bench_rois_round_trip(tmp_path, capsys):
    kits = _phantom_kits(tmp_path / "kits", 2)
    bench = _load("crf_bench")
    common = ["--margins", "0", "3.5", "--no-densecrf", "--threads", "1"]
    bench.main(["--kits", str(kits), "--out", str(tmp_path / "direct.tsv"), *common])
    bench.main(["--kits", str(kits), "--save-rois", str(tmp_path / "rois.npz"), *common])
    bench.main(["--load-rois", str(tmp_path / "rois.npz"), "--out", str(tmp_path / "cached.tsv"), *common])
    direct = pd.read_csv(tmp_path / "direct.cases.tsv", sep="\t")
    cached = pd.read_csv(tmp_path / "cached.cases.tsv", sep="\t")
    assert len(direct) == len(cached) == 2 * 2 * 4  # cases x margins x (box, ellipsoid, convcrf, convcrf_oracle)
    key = ["case", "margin_mm", "method"]
    both = direct.merge(cached, on=key, suffixes=("", "_cached"))
    assert len(both) == len(direct)
    # float16 storage of the image: the pseudo-masks may differ by a few voxels at most
    assert (both["dsc"] - both["dsc_cached"]).abs().max() < 0.01
    conv = direct[direct["method"] == "convcrf"]["dsc"]
    box = direct[direct["method"] == "box"]["dsc"]
    assert conv.mean() > box.mean()
    tight = direct[direct["margin_mm"] == 0].pivot(index="case", columns="method", values="dsc")
    assert (tight["convcrf_oracle"] - tight["convcrf"]).abs().max() < 0.05  # a tight box: the truth is slack 0
    table = pd.read_csv(tmp_path / "cached.tsv", sep="\t")
    assert set(table["method"]) == {"box", "ellipsoid", "convcrf", "convcrf_oracle"}
    assert "convcrf" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="drawn by the 'paper' protocol"):
        bench.main(["--load-rois", str(tmp_path / "rois.npz"), "--out", str(tmp_path / "a.tsv"), "--protocol", "annotator", *common])


def test_crf_bench_annotator_boxes_differ_per_face(tmp_path):
    """The annotator protocol draws each face its own margin: at 3.5 mm the oracle's true
    slack differs between faces, and the paper protocol's does not (up to voxel rounding)."""
    kits = _phantom_kits(tmp_path / "kits", 1)
    bench = _load("crf_bench")
    prep = {"spacing_mm": [2.0, 2.0, 2.0], "window_hu": [-200, 500]}
    (case,) = bench.find_cases(kits, None)
    slack = {}
    for protocol in ("paper", "annotator"):
        rois = list(bench.prepared_rois([case], [3.5], prep, protocol, 0))
        slack[protocol] = np.concatenate([np.r_[lo, hi] for lo, hi in rois[0][-1]])
    assert np.ptp(slack["paper"]) < 1.0 and np.ptp(slack["annotator"]) > 2.0, slack  # measured 0.38 and 3.39 mm


def test_train_bench_reports_step_time(capsys):
    bench = _load("train_bench")
    bench.main(["--config", str(ROOT / "tests" / "tiny_config.yaml"), "--steps", "2", "--threads", "1", "--roi", "16", "16", "16"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("device\tsec_per_step")
    device, step_s, *_ = lines[2].split("\t")
    assert device == "cpu" and float(step_s) > 0


def test_threads_bench_reports_each_layouts_throughput(capsys):
    bench = _load("threads_bench")
    bench.main(["--config", str(ROOT / "tests" / "tiny_config.yaml"), "--steps", "2", "--repeats", "1",
                "--layouts", "1x1", "2x1", "--roi", "16", "16", "16"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("repeat 1, 1x1: s/step per job") and len(out[1].split(",")) == 3  # repeat 1, 2x1: two jobs
    rows = [line.split("\t") for line in out[-2:]]
    assert out[-3].startswith("layout\tjobs") and [r[0] for r in rows] == ["1x1", "2x1"]
    assert rows[0][-1] == "1.00" and all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)


def test_crf_sweep_ranks_grid_points_by_dev_dsc(tmp_path, capsys):
    """Each grid point is scored on dev and held-out cases; a prior weight of 0 with no
    intensity term (messages only) cannot beat the default on the phantoms."""
    kits = _phantom_kits(tmp_path / "kits", 3)
    bench = _load("crf_bench")
    bench.main(["--kits", str(kits), "--save-rois", str(tmp_path / "rois.npz"), "--margins", "0", "3.5", "--threads", "1"])
    sweep = _load("crf_sweep")
    sweep.main(["--load-rois", str(tmp_path / "rois.npz"), "--margins", "0", "3.5", "--out", str(tmp_path / "sweep.tsv"),
                "--dev-cases", "2", "--threads", "1", "--grid", "prior_weight=0,3", "intensity_weight=0"])
    table = pd.read_csv(tmp_path / "sweep.tsv", sep="\t")
    assert list(table["point"]) == ["prior_weight=3 intensity_weight=0", "prior_weight=0 intensity_weight=0"]
    assert {"dev_kits19_0", "dev_kits19_3.5", "dev_mean", "held_mean"} <= set(table.columns)
    assert table["dev_mean"].iloc[0] > table["dev_mean"].iloc[1] and table["held_mean"].notna().all()
    assert "prior_weight=3" in capsys.readouterr().out


def test_fusion_sweep_default_thresholds_are_the_runs_and_the_class_weight_point():
    """Without --thresholds: the run's fusion threshold and w1 / (w0 + w1) of the group class weights."""
    default_thresholds = _load("fusion_sweep").default_thresholds
    config = {"group_training": {"class_weights": [0.2, 1.0]}, "fusion": {"threshold": 0.5}}
    assert default_thresholds(config) == [0.5, 0.833]
    config["fusion"]["threshold"] = 0.7
    config["group_training"]["class_weights"] = [1.0, 1.0]
    assert default_thresholds(config) == [0.5, 0.7]
    config["fusion"]["threshold"] = 0.5
    assert default_thresholds(config) == [0.5]
    assert default_thresholds({"group_training": {"class_weights": [0.25, 1.0]}}) == [0.5, 0.8]
    assert default_thresholds({"group_training": {"class_weights": [0.0, 1.0]}}) == [0.5]


def test_recipe_bench_scores_each_variant_on_held_out_training_cases(tmp_path, capsys):
    """Variants train on a run's training cases with some held out; the test case is never read."""
    import SimpleITK as sitk

    from boxseg import layout
    from tests.conftest import sphere

    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        case = f"case_{i:05d}"
        lesion = sphere((16, 16, 16), (8, 8, 6 + i), 4.0)
        for template, array in ((layout.ROI_IMAGE, (0.3 + 0.4 * lesion + rng.normal(0, 0.03, lesion.shape)).astype(np.float32)),
                                (layout.ROI_LABEL, lesion.astype(np.uint8)),
                                (layout.PSEUDO_MASK, np.roll(lesion, 1, axis=2).astype(np.uint8))):
            path = layout.path(template, tmp_path, case=case)
            path.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
        rows.append({"case": case, "split": "test" if i == 3 else "train"})
    pd.DataFrame(rows).to_csv(layout.path(layout.CASES, tmp_path), sep="\t", index=False)
    layout.path(layout.ROI_IMAGE, tmp_path, case="case_00003").unlink()  # a test case is never read
    bench = _load("recipe_bench")
    out = tmp_path / "recipe.tsv"
    bench.main([str(tmp_path), "--config", str(ROOT / "tests" / "tiny_config.yaml"), "--steps", "8", "--validation", "1",
                "--threads", "1", "--out", str(out), "--variant", "base", "--variant", "dice:loss=dice_ce,lr_schedule=cosine"])
    table = pd.read_csv(out, sep="\t")
    assert list(table["variant"]) == ["base", "dice"] and list(table["loss"]) == ["wce", "dice_ce"]
    assert table["val_dsc"].between(0, 1).all() and (table["s_per_step"] > 0).all()
    assert np.allclose(table["val_dsc"], table["val_dsc_reference"], atol=1e-4)  # trained on the labels: the same score
    assert "3 training cases, 1 held out" in capsys.readouterr().out
    bench.main([str(tmp_path), "--config", str(ROOT / "tests" / "tiny_config.yaml"), "--steps", "4", "--validation", "1",
                "--threads", "1", "--targets", "pseudo_mask", "--out", str(out), "--variant", "weak"])
    weak = pd.read_csv(out, sep="\t").iloc[0]
    assert 0 <= weak["val_dsc"] <= 1 and 0 <= weak["val_dsc_reference"] <= 1 and "targets: pseudo_mask" in capsys.readouterr().out


def test_label_agreement_sorts_box_voxels_by_who_says_lesion():
    agreement = _load("label_agreement").agreement
    inside = np.zeros((4, 4, 4), bool)
    inside[:, :, :3] = True  # 48 box voxels
    fusion, pseudo, reference = (np.zeros((4, 4, 4), np.uint8) for _ in range(3))
    fusion[0, :, :2] = pseudo[0, :, :2] = reference[0, :2, :2] = 1  # 8 agreed lesion, 4 of them right
    fusion[1, :, :3] = 1  # 12 the fusion mask alone, 3 of them lesion
    reference[1, 0, :3] = 1
    pseudo[2, 0, 0] = 1  # 1 the pseudo-mask alone
    fusion[3, :, 3] = 1  # outside the box: not counted
    counts = agreement(fusion, pseudo, reference, inside)
    assert counts == {"both lesion": (8, 4), "both background": (27, 0), "fusion mask alone": (12, 3), "pseudo-mask alone": (1, 0)}
    assert sum(n for n, _ in counts.values()) == inside.sum()
