"""Integration: the real workflow, end to end, on a tiny configuration."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from tests.conftest import sphere

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def _run(args, cwd, check=True):
    result = subprocess.run(SNAKEMAKE + args, cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _job_counts(output: str) -> dict:
    counts = {}
    table = output.split("Job stats:")[-1]
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    shutil.copy(ROOT / "tests" / "tiny_config.yaml", workdir / "config.yaml")
    _run(["--configfile", "config.yaml", "--cores", "2", "--resources", "gpu=1"], workdir)
    return workdir


@pytest.mark.integration
class TestTinyWorkflow:
    def test_final_models_validate_on_held_out_training_cases_only(self, tiny_run):
        from boxseg.network import model_preprocessing

        cases = pd.read_csv(tiny_run / "results/cases.tsv", sep="\t")
        train = set(cases.loc[cases["split"] == "train", "case"])
        for method in ("weak", "full"):
            table = pd.read_csv(tiny_run / f"results/models/{method}/training_set.tsv", sep="\t")
            assert {Path(p).parent.name for p in table["image"]} == train  # results/roi/{case}/image.nii.gz
            log = pd.read_csv(tiny_run / f"results/models/{method}/loss.tsv", sep="\t")
            scored = log.dropna(subset=["val_dsc"])
            assert list(scored["step"]) == [8, 12] and scored["val_dsc"].between(0, 1).all()
            recorded = model_preprocessing(tiny_run / f"results/models/{method}/model.pt")
            assert recorded == {"spacing_mm": [4.0, 4.0, 4.0], "window_hu": [-200.0, 500.0],  # tiny_config.yaml's
                                "roi_size_mm": [64.0, 64.0, 64.0], "placement": ["boxes"]}

    def test_outputs_for_a_users_tools_on_the_original_grid(self, tiny_run):
        """Beside the mask: the lesion probability and the labelled lesions on the CT's grid, a
        table of their volumes, and the boxes as Slicer markups."""
        prediction = tiny_run / "results/predictions/weak/case_00004"
        image = sitk.ReadImage(str(tiny_run / "results/data/case_00004/imaging.nii.gz"))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(prediction / "mask.nii.gz")))
        probability = sitk.ReadImage(str(prediction / "probability.nii.gz"))
        lesions = sitk.GetArrayFromImage(sitk.ReadImage(str(prediction / "lesions.nii.gz")))
        assert probability.GetSize() == image.GetSize() and probability.GetSpacing() == image.GetSpacing()
        assert ((sitk.GetArrayFromImage(probability) > 0.5) >= (mask > 0)).all()  # the mask: thresholded, then filtered
        assert ((lesions > 0) == (mask > 0)).all()
        table = pd.read_csv(prediction / "lesions.tsv", sep="\t")
        assert table["voxels"].sum() == int((mask > 0).sum()) and list(table["lesion"]) == list(range(1, len(table) + 1))
        markups = json.loads((prediction / "boxes.mrk.json").read_text())["markups"]
        boxes = json.loads((tiny_run / "results/boxes/case_00004.json").read_text())["boxes"]
        assert [m["name"] for m in markups] == [f"lesion {b['lesion']}" for b in boxes]

    def test_the_overview_page_opens_on_what_was_achieved(self, tiny_run):
        page = (tiny_run / "results/overview.html").read_text(encoding="utf-8")
        order = [page.index(h) for h in ("<h2>Test scores</h2>", "<h2>Against the fully supervised model</h2>",
                                          "<h2>Training labels (Table 3)</h2>", "<h2>DSC against lesion volume</h2>",
                                          "<h2>Training</h2>", "<h2>Test cases</h2>")]
        assert order == sorted(order) and page.count("data:image/png;base64,") == 3 + 4  # 3 figures, 4 methods' overlays
        assert "<td>weak</td>" in page and "± " in page and "4 training and 1 labelled test cases" in page

    def test_metrics_one_row_per_test_case(self, tiny_run):
        metrics = pd.read_csv(tiny_run / "results/metrics.tsv", sep="\t")
        assert metrics["case"].tolist() == ["case_00004"] * 8
        assert metrics["method"].tolist() == ["ccnn"] * 2 + ["full"] * 2 + ["sdi"] * 2 + ["weak"] * 2
        assert metrics["postprocess"].tolist() == ["largest_component", "none"] * 4
        assert (metrics["roi"] == "boxes").all()  # research mode places ROIs as a user's boxes do (preprocess.roi_from)
        for column in ["dsc", "hd_mm", "hd95_mm", "asd_mm", "box_dsc"]:
            assert column in metrics
        assert 0.0 <= metrics["dsc"][0] <= 1.0 and 0.0 < metrics["box_dsc"][0] < 1.0
        summary = pd.read_csv(tiny_run / "results/summary.tsv", sep="\t")
        assert summary["score"].tolist() == ["dsc", "hd_mm", "hd95_mm", "asd_mm", "box_dsc"] * 16
        assert summary["method"].tolist() == (["ccnn"] * 10 + ["full"] * 10 + ["sdi"] * 10 + ["weak"] * 10) * 2
        # the run's own rows first, then the second, labelled row: the same models with the ROI on the organ
        assert summary["roi"].tolist() == ["boxes"] * 40 + ["organ"] * 40
        assert summary["scored"].tolist() == ["run"] * 40 + ["other_roi"] * 40
        other = pd.read_csv(tiny_run / "results/metrics_other_roi.tsv", sep="\t")
        assert (other["roi"] == "organ").all() and other[["case", "method", "postprocess"]].equals(
            metrics[["case", "method", "postprocess"]])
        comparison = pd.read_csv(tiny_run / "results/comparison.tsv", sep="\t")
        assert comparison["roi"].tolist() == ["boxes"] * 6 + ["organ"] * 6
        comparison = comparison[comparison["roi"] == "boxes"]
        assert sorted(comparison["method"]) == ["ccnn"] * 2 + ["sdi"] * 2 + ["weak"] * 2 and (comparison["n"] == 1).all()
        both = comparison.merge(metrics.query("method == 'full'")[["postprocess", "dsc"]], on="postprocess")
        assert np.allclose(both["dsc_full"], both["dsc_y"]) and both["ratio_se"].isna().all()  # one test case: no se
        defined = both[both["dsc_y"] > 0]
        assert np.allclose(defined["ratio"], defined["dsc_x"] / defined["dsc_y"])
        raw = metrics.query("postprocess == 'none'").set_index("method")
        filtered = metrics.query("postprocess == 'largest_component'").set_index("method")
        assert (filtered["volume_pred_ml"] <= raw["volume_pred_ml"] + 1e-9).all()  # the filter only removes voxels

    def test_mask_on_the_original_grid(self, tiny_run):
        image = sitk.ReadImage(str(tiny_run / "results/data/case_00004/imaging.nii.gz"))
        for method in ("weak", "full", "ccnn", "sdi"):
            mask = sitk.ReadImage(str(tiny_run / f"results/predictions/{method}/case_00004/mask.nii.gz"))
            raw = sitk.ReadImage(str(tiny_run / f"results/predictions/{method}/case_00004/mask_raw.nii.gz"))
            assert raw.GetSize() == mask.GetSize()
            assert mask.GetSize() == image.GetSize()
            assert np.allclose(mask.GetSpacing(), image.GetSpacing())
            assert np.allclose(mask.GetOrigin(), image.GetOrigin())
            assert np.allclose(mask.GetDirection(), image.GetDirection())

    def test_stage_outputs_and_logs(self, tiny_run):
        r = tiny_run / "results"
        for k in range(2):
            loss = pd.read_csv(r / f"group/model_{k}/loss.tsv", sep="\t")
            assert loss["step"].tolist() == [4, 8, 12]
        weight = sitk.GetArrayFromImage(sitk.ReadImage(str(r / "fusion/case_00000/weight.nii.gz")))
        assert set(np.unique(weight)) <= {1, 2, 3} and (weight == 3).any()  # K + 1 = 3 where V = 0
        assert (r / "figures/cases/weak/case_00004.png").stat().st_size > 0
        from PIL import Image

        width, height = Image.open(r / "figures/cases/weak/case_00004.png").size
        assert width > 2 * height  # three planes side by side
        assert (r / "group/predictions/case_00000/model_1.nii.gz").exists()
        assert (tiny_run / "logs/train_final/full.log").exists()
        record = json.loads((r / "boxes/case_00000.json").read_text())
        assert record["source"] == "label" and record["protocol"] == "paper" and record["margin_mm"] > 0
        assert record["slack_mm"] == 0.0 and all(set(b) == {"lesion", "index_lo", "index_hi", "corners_lps_mm"} for b in record["boxes"])
        assert "stated slack 0 mm" in (tiny_run / "logs/pseudo_mask/case_00000.log").read_text()
        quality = pd.read_csv(r / "label_quality.tsv", sep="\t").set_index("case")
        assert list(quality.index) == [f"case_{i:05d}" for i in range(4)] + ["mean", "mean_unseen"]
        assert list(quality.columns) == ["box", "pseudo_mask", "group_model_0", "group_model_1", "fusion_mask"]
        assert ((quality.iloc[:-1] >= 0) & (quality.iloc[:-1] <= 1)).all().all() and quality.loc["mean", "box"] < 0.9
        for k in range(2):  # each group model's mean over the training cases it was not trained on
            seen = {Path(p).parts[2] for p in pd.read_csv(r / f"group/model_{k}/training_set.tsv", sep="\t")["image"]}
            assert len(seen) == 2
            unseen = [c for c in quality.index[:4] if c not in seen]
            assert quality.loc["mean_unseen", f"group_model_{k}"] == pytest.approx(quality.loc[unseen, f"group_model_{k}"].mean(), abs=1e-4)
        assert quality.loc["mean_unseen", ["box", "pseudo_mask", "fusion_mask"]].isna().all()
        assert not list(r.glob("**/checkpoint.pt"))

    def test_decision_threshold_reproduces_the_runs_metrics_at_the_models_threshold(self, tiny_run, tmp_path):
        """benchmarks/decision_threshold.py --calibrated scores the test cases as infer and evaluate
        did with ``final.threshold: calibrated``: the threshold the model recorded on its held-out case."""
        from boxseg.network import model_calibration

        out = tmp_path / "thresholds.tsv"
        subprocess.run([sys.executable, str(ROOT / "benchmarks/decision_threshold.py"), str(tiny_run), "--methods", "weak", "full",
                        "--thresholds", "0.3", "0.5", "0.9", "--calibrated", "--config", str(ROOT / "config.yaml"),
                        str(tiny_run / "config.yaml"), "--out", str(out)], check=True, capture_output=True, text=True)
        table = pd.read_csv(out, sep="\t")
        assert len(table) == 2 * 4 * 2 and (table["n"] == 1).all()
        metrics = pd.read_csv(tiny_run / "results/metrics.tsv", sep="\t").set_index(["method", "postprocess"])["dsc"]
        calibrated = table[table["chosen_on"] == "held-out"]
        for (method, postprocess), row in calibrated.set_index(["method", "postprocess"]).iterrows():
            assert row["threshold"] == model_calibration(tiny_run / f"results/models/{method}/model.pt")["threshold"]
            assert row["dsc"] == pytest.approx(metrics[(method, postprocess)], abs=1e-4), (method, postprocess)
        for _, rows in table[table["chosen_on"] == "test"].groupby(["method", "postprocess"]):
            assert rows.sort_values("threshold")["volume_median"].is_monotonic_decreasing
        full = table[table["method"] == "full"]
        assert (full.loc[full["dsc"] > 0, "ratio_to_full"] == 1).all() and full.loc[full["dsc"] == 0, "ratio_to_full"].isna().all()

    def test_fusion_sweep_reproduces_the_runs_fusion_masks(self, tiny_run, tmp_path):
        """benchmarks/fusion_sweep.py at threshold 0.5 and the run's settings fuses as the fuse rule did."""
        out = tmp_path / "sweep.tsv"
        subprocess.run([sys.executable, str(ROOT / "benchmarks/fusion_sweep.py"), str(tiny_run), "--thresholds", "0.5", "0.9",
                        "--config", str(ROOT / "config.yaml"), str(tiny_run / "config.yaml"), "--dev-cases", "2",
                        "--grid", "weight_appearance=3.0,0.3", "--out", str(out), "--threads", "1"],
                       check=True, capture_output=True, text=True)
        sweep = pd.read_csv(out, sep="\t")
        assert list(zip(sweep["threshold"], sweep["weight_appearance"])) == [(0.5, 3.0), (0.5, 0.3), (0.9, 3.0), (0.9, 0.3)]
        quality = pd.read_csv(tiny_run / "results/label_quality.tsv", sep="\t").set_index("case")
        assert sweep.loc[0, "fm_all"] == pytest.approx(quality.loc["mean", "fusion_mask"], abs=1e-4)
        assert sweep.loc[0, "fm_dev"] == pytest.approx(quality.loc[["case_00000", "case_00001"], "fusion_mask"].mean(), abs=1e-4)
        assert np.allclose(sweep["pm_all"], quality.loc["mean", "pseudo_mask"], atol=1e-4)
        assert sweep[["union_all", "fm_all"]].apply(lambda c: c.between(0, 1)).all().all()

    def test_changed_fusion_settings_rerun_fusion_and_what_follows(self, tiny_run, tmp_path):
        work = _copy_run(tiny_run, tmp_path)
        config = yaml.safe_load((work / "config.yaml").read_text())
        config["fusion"] = {"threshold": 0.833}
        config["fusion_crf"] = {"weight_appearance": 0.3}
        (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        out = _run(["--configfile", "config.yaml", "--cores", "1", "-n"], work).stdout
        counts = _job_counts(out)
        assert counts["fuse"] == 4 and counts["train_final"] == 1 and counts["infer"] == 1  # weak only
        for rule in ("preprocess", "pseudo_mask", "group_training_set", "train_group"):
            assert rule not in counts
        config["fusion"] = {"threshold": 1.0}
        (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        bad = _run(["--configfile", "config.yaml", "--cores", "1", "-n"], work, check=False)
        assert bad.returncode != 0 and "threshold" in bad.stdout + bad.stderr

    def test_rerun_is_a_no_op(self, tiny_run):
        out = _run(["--configfile", "config.yaml", "--cores", "1", "-n"], tiny_run).stdout
        assert "Nothing to be done" in out

    def test_report(self, tiny_run):
        _run(["--configfile", "config.yaml", "--cores", "1", "--report", "report.html"], tiny_run)
        html = (tiny_run / "report.html").read_text(errors="ignore")
        assert "summary.tsv" in html or "summary" in html
        # it opens on what the run achieved: results/overview.rst as its front page, the scores as tables
        front = (tiny_run / "results/overview.rst").read_text(encoding="utf-8")
        assert "What this run achieved" in html and "csv-table:: Test scores" in front
        assert front.count('"weak", "boxes", "largest"') == 2  # its scores and its ratio to full
        assert front.count('"weak", "organ (second row)", "largest"') == 2  # the same, scored with the ROI on the organ


def test_dry_run_default_config_lists_per_case_and_group_jobs(tmp_path):
    out = _run(["--cores", "2", "-n", "--configfile", str(ROOT / "config.yaml")], tmp_path).stdout
    counts = _job_counts(out)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    n_train, n_test = config["dataset"]["synthetic_train"], config["dataset"]["synthetic_test"]
    assert counts["phantoms"] == 1 and counts["preprocess"] == n_train + n_test  # the phantoms in one job
    assert counts["pseudo_mask"] == counts["fuse"] == n_train
    assert counts["train_group"] == config["groups"]["k"] == 3 and counts["train_final"] == len(config["methods"]) == 1
    assert counts["infer"] == counts["evaluate"] == n_test


def _copy_run(tiny_run, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(tiny_run, work, symlinks=True)
    return work


def _edit_volume(path, edit):
    """Change a file's content (Snakemake keeps checksums of small files, so a touch is not a change)."""
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    edit(array)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path), useCompression=True)


def _add_lesion_voxel(array):
    z, y, x = np.argwhere(array == 2)[0]
    array[z, y, max(x - 1, 0)] = 2


@pytest.mark.integration
class TestRerunsTouchOnlyWhatChanged:
    def test_changed_test_image_reruns_only_that_case(self, tiny_run, tmp_path):
        work = _copy_run(tiny_run, tmp_path)
        _edit_volume(work / "results/data/case_00004/imaging.nii.gz", lambda a: a.__setitem__((0, 0, 0), a[0, 0, 0] + 1))
        counts = _job_counts(_run(["--configfile", "config.yaml", "--cores", "1", "-n"], work).stdout)
        assert counts == {"preprocess": 1, "infer": 4, "evaluate": 4, "evaluate_other_roi": 4, "summarise": 1, "overview": 1,
                          "all": 1, "total": 16}  # 4 methods

    def test_changed_training_label_retrains_its_group_only(self, tiny_run, tmp_path):
        work = _copy_run(tiny_run, tmp_path)
        _edit_volume(work / "results/data/case_00000/segmentation.nii.gz", _add_lesion_voxel)
        counts = _job_counts(_run(["--configfile", "config.yaml", "--cores", "1", "-n"], work).stdout)
        assert counts["preprocess"] == counts["pseudo_mask"] == 1
        assert counts["group_training_set"] == counts["train_group"] == 1  # only the subset holding case_00000
        assert counts["fuse"] == 4  # every training case meets the retrained group model
        assert counts["scribbles"] == counts["sdi_labels"] == 1
        assert counts["final_training_set"] == counts["train_final"] == 4  # every method trains on case_00000
        assert counts["infer"] == 4 and "phantoms" not in counts

    def test_changed_hyperparameter_reruns_training_not_preprocessing(self, tiny_run, tmp_path):
        work = _copy_run(tiny_run, tmp_path)
        config = yaml.safe_load((work / "config.yaml").read_text())
        config["final_training"] = {**config["final_training"], "steps": 16}
        (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        counts = _job_counts(_run(["--configfile", "config.yaml", "--cores", "1", "-n"], work).stdout)
        assert counts["train_final"] == 4 and counts["infer"] == 4
        for rule in ("preprocess", "pseudo_mask", "group_training_set", "train_group", "fuse", "final_training_set", "scribbles", "sdi_labels"):
            assert rule not in counts


def test_data_copied_anew_reruns_only_what_changed(tmp_path):
    """A fresh copy of the data (new modification times, same bytes) reruns nothing, though the CT
    is over Snakemake's default 1 MB checksum limit; a changed voxel still reruns its case."""
    lesion = sphere((40, 120, 120), (20, 60, 60), 8.0)
    sheet = tmp_path / "cases.tsv"
    rows = [("a", "a", "train"), ("b", "b", "train"), ("c", "a", "train"), ("t", "a", "test")]  # c, t: a's files
    sheet.write_text("case\timage\tlabel\tsplit\n" + "".join(f"{c}\t{f}.nii\t{f}_label.nii\t{s}\n" for c, f, s in rows))
    for case in "ab":
        for name, array in ((f"{case}.nii", np.where(lesion, 80, -20).astype(np.int16)),
                            (f"{case}_label.nii", (lesion * 2).astype(np.uint8))):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(image, str(tmp_path / name))
    assert (tmp_path / "a.nii").stat().st_size > 1_000_000  # the default limit would not checksum it
    (tmp_path / "source.yaml").write_text("dataset:\n  source: sheet\n")
    args = ["results/roi/a/image.nii.gz", "results/roi/b/image.nii.gz", "--cores", "1", "--configfile",
            str(ROOT / "config.yaml"), "source.yaml", "--config", f"sheet={sheet}"]
    _run(args, tmp_path)
    for path in tmp_path.glob("*.nii"):  # copied anew: same bytes, a later modification time
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)
    assert "Nothing to be done" in _run(args + ["-n"], tmp_path).stdout
    _edit_volume(tmp_path / "b.nii", lambda a: a.__setitem__((0, 0, 0), a[0, 0, 0] + 1))
    assert _job_counts(_run(args + ["-n"], tmp_path).stdout) == {"preprocess": 1, "total": 1}


@pytest.mark.parametrize(
    "config_name, folders, image, label, n_test",
    [(["kits19.yaml"], [f"case_{i:05d}" for i in range(60)], "imaging.nii.gz", "segmentation.nii.gz", 15),
     (["ibsi.yaml"], [f"STS_{i:03d}" for i in (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 15, 18, 19, 22, 23, 24, 25, 26)],
      "CT_image.nii.gz", "CT_mask.nii.gz", 6),
     (["kits19.yaml", "gpu.yaml"], [f"case_{i:05d}" for i in range(60)], "imaging.nii.gz", "segmentation.nii.gz", 15)],
)
def test_documented_configs_plan_weak_and_full(tmp_path, config_name, folders, image, label, n_test):
    """configs/*.yaml (the GPU budget layered on a dataset's) validate, find their layout's files and plan
    both methods (dry run on placeholders)."""
    data = tmp_path / "data"
    for folder in folders:
        (data / folder).mkdir(parents=True)
        (data / folder / image).touch()
        (data / folder / label).touch()
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    out = _run(["--cores", "2", "-n", "--configfile", *(str(ROOT / "configs" / name) for name in config_name),
                "--config", f"dataset_dir={data}"], tmp_path).stdout
    counts = _job_counts(out)
    n_train = len(folders) - n_test
    assert counts["preprocess"] == len(folders) and counts["pseudo_mask"] == counts["fuse"] == n_train
    assert counts["train_group"] == 3 and counts["train_final"] == 2  # weak and full
    assert counts["box_map"] == n_train  # weak is weak_box there: it trains on the boxes' maps
    assert counts["infer"] == counts["evaluate"] == 2 * n_test


@pytest.mark.integration
def test_the_box_loss_methods_run_end_to_end(tmp_path):
    """weak_box (fusion masks, V and the boxes' constraints) and weak_pm_box (pseudo-masks, K = 0
    recipe with them) train on the boxes' maps on the ROI grid and predict, in a tiny run."""
    shutil.copy(ROOT / "tests" / "tiny_config.yaml", tmp_path / "config.yaml")
    _run(["--configfile", "config.yaml", "--cores", "2", "--resources", "gpu=1",
          "--config", 'methods=["weak_box","weak_pm_box"]'], tmp_path)
    metrics = pd.read_csv(tmp_path / "results/metrics.tsv", sep="\t")
    assert sorted(set(metrics["method"])) == ["weak_box", "weak_pm_box"] and metrics["dsc"].between(0, 1).all()
    for method in ("weak_box", "weak_pm_box"):
        table = pd.read_csv(tmp_path / f"results/models/{method}/training_set.tsv", sep="\t")
        expected = ["image", "target", "weight", "box_map", "pseudo_mask"] if method == "weak_box" else ["image", "target", "box_map"]
        assert [c for c in table.columns if not c.endswith("_sha256")] == expected
        assert all(p.endswith("boxes.nii.gz") for p in table["box_map"])
    box_map = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "results/roi/case_00000/boxes.nii.gz")))
    boxes = json.loads((tmp_path / "results/boxes/case_00000.json").read_text())["boxes"]
    assert set(np.unique(box_map)) == {0} | {b["lesion"] for b in boxes}
