"""Bad input gives one clear line naming the case, the file and the problem."""

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from boxseg.io import CaseError
from boxseg.steps.preprocess import preprocess_case
from tests.conftest import ROOT, sphere


def _write(path, array, spacing=(1.0, 1.0, 2.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def case_files(tmp_path):
    lesion = sphere((12, 24, 24), (6, 12, 12), 4.0)
    image = _write(tmp_path / "image.nii.gz", np.where(lesion, 80, -20).astype(np.int16))
    label = _write(tmp_path / "label.nii.gz", (lesion * 2).astype(np.uint8))
    return tmp_path, image, label


def _boxes(case, image, label, out, **kw):
    """The preprocess step (boxes, then the ROI) with its outputs beside ``out``."""
    d = out.parent
    preprocess_case(case, image, label, out, d / "roi.nii.gz", d / "roi_label.nii.gz", d / "geometry.json",
                    box_rows=kw.get("box_rows"), box_file=kw.get("box_file"), needs_boxes=kw.get("needs_boxes", True),
                    margin_mm=kw.get("margin_mm", 2.0), spacing_mm=(2, 2, 2), roi_size_mm=(32, 32, 32),
                    window_hu=(-200, 500), tumor_values=kw.get("tumor_values", [2]), organ_values=[1])


def _one_line(err: CaseError, case: str, fragment: str):
    text = str(err)
    assert "\n" not in text and text.startswith(f"case {case}: ") and fragment in text


class TestBadInput:
    def test_missing_file(self, case_files):
        d, _, label = case_files
        with pytest.raises(CaseError) as err:
            _boxes("c1", d / "nope.nii.gz", label, d / "b.json")
        _one_line(err.value, "c1", "nope.nii.gz: file not found")
        assert not (d / "b.json").exists()

    def test_corrupt_and_truncated(self, case_files):
        d, image, label = case_files
        (d / "corrupt.nii.gz").write_bytes(b"not an image at all")
        data = image.read_bytes()
        (d / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
        for name in ("corrupt.nii.gz", "truncated.nii.gz"):
            with pytest.raises(CaseError) as err:
                _boxes("c2", d / name, label, d / "b.json")
            _one_line(err.value, "c2", f"{name}: cannot read image")

    def test_geometry_mismatch(self, case_files):
        d, image, _ = case_files
        other = _write(d / "other.nii.gz", np.zeros((12, 24, 24), np.uint8), spacing=(1.0, 1.0, 3.0))
        with pytest.raises(CaseError) as err:
            _boxes("c3", image, other, d / "b.json")
        _one_line(err.value, "c3", "label grid")

    def test_empty_tumor_label(self, case_files):
        d, image, label = case_files
        with pytest.raises(CaseError) as err:
            _boxes("c4", image, label, d / "b.json", tumor_values=[5])
        _one_line(err.value, "c4", "no lesion voxels")

    def test_nan_voxels(self, case_files):
        d, _, label = case_files
        array = np.zeros((12, 24, 24), np.float32)
        array[3, 4, 5] = np.nan
        nan = _write(d / "nan.mha", array)  # (NIfTI written by ITK drops NaN)
        with pytest.raises(CaseError) as err:
            _boxes("c5", nan, label, d / "b.json")
        _one_line(err.value, "c5", "1 non-finite")

    def test_2d_image(self, case_files):
        d, _, label = case_files
        flat = sitk.GetImageFromArray(np.zeros((24, 24), np.int16))
        sitk.WriteImage(flat, str(d / "flat.nii.gz"))
        with pytest.raises(CaseError) as err:
            _boxes("c6", d / "flat.nii.gz", label, d / "b.json")
        _one_line(err.value, "c6", "expected a 3D image")

    def test_box_outside_the_image(self, case_files):
        d, image, label = case_files
        rows = [{"lesion": 1, "coordinates": "index", "min": [30, 30, 2], "max": [40, 40, 6]}]
        with pytest.raises(CaseError) as err:
            _boxes("c8", image, label, d / "b.json", box_rows=rows)
        _one_line(err.value, "c8", "box table: box 1 lies outside the image")
        (d / "roi.mrk.json").write_text(
            '{"markups": [{"type": "ROI", "coordinateSystem": "LPS", "center": [500, 0, 0], "size": [4, 4, 4]}]}'
        )
        with pytest.raises(CaseError) as err:
            _boxes("c8", image, label, d / "b.json", box_file=d / "roi.mrk.json")
        _one_line(err.value, "c8", "roi.mrk.json: box 1 lies outside the image")
        assert not (d / "b.json").exists() and not (d / "roi.nii.gz").exists()

    def test_unreadable_box_file(self, case_files):
        d, image, label = case_files
        (d / "boxes.mrk.json").write_text("{not json")
        with pytest.raises(CaseError) as err:
            _boxes("c9", image, label, d / "b.json", box_file=d / "boxes.mrk.json")
        _one_line(err.value, "c9", "boxes.mrk.json: unreadable box file")

    def test_failed_step_leaves_no_output(self, case_files):
        d, image, _ = case_files
        (d / "broken.nii.gz").write_bytes(b"garbage")
        with pytest.raises(CaseError):
            _boxes("c7", image, d / "broken.nii.gz", d / "b.json")
        assert not list(d.glob("roi*")) and not (d / "geometry.json").exists() and not (d / "b.json").exists()


def test_unknown_config_key_is_rejected(tmp_path):
    (tmp_path / "extra.yaml").write_text("boxes:\n  margin_mm: 3.5\n  margn: 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n", "--cores", "1",
         "--configfile", str(ROOT / "config.yaml"), str(tmp_path / "extra.yaml")],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert out.returncode != 0 and "margn" in out.stdout + out.stderr


@pytest.mark.parametrize(
    "cases, problem",
    [(["a", "a"], "case a: {sheet}: duplicate case id"), (["ok", "a/b"], "case a/b: {sheet}: invalid case id"),
     (["ok", "x..y"], "case x..y: {sheet}: invalid case id"), (["ok", "c" * 300], "c" * 20 + "...: 300 characters, at most 100"),
     (["Case_1", "case_1"], "case Case_1: {sheet}: case ids ['Case_1', 'case_1'] differ only in upper and lower case")],
)
def test_bad_case_ids_in_a_sheet_name_the_case_and_the_sheet(tmp_path, cases, problem):
    image, label = tmp_path / "i.nii.gz", tmp_path / "l.nii.gz"
    lesion = sphere((12, 24, 24), (6, 12, 12), 4.0)
    _write(image, lesion.astype(np.int16))
    _write(label, (lesion * 2).astype(np.uint8))
    sheet = tmp_path / "cases.tsv"
    sheet.write_text("case\timage\tlabel\tsplit\n" + "".join(f"{c}\t{image}\t{label}\ttrain\n" for c in cases))
    (tmp_path / "source.yaml").write_text("dataset:\n  source: sheet\n")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n", "--cores", "1",
         "--configfile", str(ROOT / "config.yaml"), str(tmp_path / "source.yaml"), "--config", f"sheet={sheet}"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert out.returncode != 0
    lines = [line for line in (out.stdout + out.stderr).splitlines() if problem.format(sheet=sheet) in line]
    assert len(lines) == 1, out.stdout + out.stderr


def _dry_run(tmp_path, *configs, extra=()):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n", "--cores", "1",
         "--configfile", str(ROOT / "config.yaml"), *map(str, configs), *extra],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )


@pytest.mark.parametrize("window", [[100, 100], [500, -200]])
def test_an_impossible_hu_window_is_refused(tmp_path, window):
    (tmp_path / "w.yaml").write_text(f"preprocess:\n  window_hu: {window}\n")
    out = _dry_run(tmp_path, tmp_path / "w.yaml")
    assert out.returncode != 0 and f"preprocess.window_hu {window}: the lower bound must be below the upper" in out.stdout + out.stderr


def test_a_calibrated_threshold_without_held_out_cases_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("final:\n  threshold: calibrated\nfinal_training:\n  validation_cases: 0\n")
    out = _dry_run(tmp_path, tmp_path / "c.yaml")
    assert out.returncode != 0 and "final.threshold is 'calibrated' but final_training.validation_cases is 0" in out.stdout + out.stderr
    (tmp_path / "c.yaml").write_text("final:\n  threshold: 1.5\n")
    assert _dry_run(tmp_path, tmp_path / "c.yaml").returncode != 0  # the schema: a number in (0, 1) or calibrated


def test_a_model_that_is_not_one_is_refused_and_predicting_needs_no_training_case(tmp_path, case_files):
    _, image, _ = case_files
    (tmp_path / "model.pt").write_text("not a model\n")
    sheet = tmp_path / "new.tsv"
    sheet.write_text(f"case\timage\tsplit\nn1\t{image}\tpredict\n")
    (tmp_path / "only.yaml").write_text(f"dataset:\n  source: sheet\n  sheet: {sheet}\n")
    out = _dry_run(tmp_path, tmp_path / "only.yaml", extra=["--config", "model=model.pt"])
    assert out.returncode != 0 and "model model.pt: not a model file written by boxseg" in out.stdout + out.stderr
    torch = pytest.importorskip("torch")
    torch.save({"state_dict": {}}, tmp_path / "model.pt")  # a torch archive: planned; its job then fails in one line
    out = _dry_run(tmp_path, tmp_path / "only.yaml", extra=["--config", "model=model.pt"])
    assert out.returncode == 0 and "groups" not in out.stdout + out.stderr, out.stdout + out.stderr  # no K groups of 0 cases
    from boxseg.network import load_model

    with pytest.raises(ValueError, match="model.pt: not a model written by boxseg"):
        load_model(tmp_path / "model.pt")
    from boxseg.steps.infer import decision_threshold, read_case_model

    for setting in ("calibrated", 0.5):  # the threshold is looked up first: the same line, not "records no threshold"
        with pytest.raises(CaseError) as err:
            decision_threshold("n1", tmp_path / "model.pt", setting, read_case_model("n1", tmp_path / "model.pt"))
        assert "n1" in str(err.value) and "model.pt" in str(err.value) and "not a model written by boxseg" in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(CaseError, match="no such model file"):
        read_case_model("n1", tmp_path / "missing.pt")


def test_a_constant_image_is_refused_and_one_not_in_hu_is_warned_about(tmp_path, caplog):
    from boxseg.preprocess import load_case

    flat = _write(tmp_path / "flat.nii.gz", np.full((6, 8, 8), 7, np.int16))
    with pytest.raises(CaseError) as err:
        load_case("c1", flat)
    _one_line(err.value, "c1", "the image is constant (7 everywhere)")
    shifted = _write(tmp_path / "shifted.nii.gz", (np.random.default_rng(0).normal(1040, 30, (6, 8, 8))).astype(np.uint16))
    load_case("c2", shifted)
    assert "does not look like CT in Hounsfield units" in caplog.text and "case c2" in caplog.text


def test_a_label_on_another_origin_is_named_as_such(case_files):
    d, image, label = case_files
    moved = sitk.ReadImage(str(label))
    moved.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(moved, str(d / "moved.nii.gz"))
    from boxseg.preprocess import load_case

    with pytest.raises(CaseError) as err:
        load_case("c1", image, d / "moved.nii.gz")
    _one_line(err.value, "c1", "label grid differs from the image grid: origin [5.0, 0.0, 0.0] against [0.0, 0.0, 0.0]")
