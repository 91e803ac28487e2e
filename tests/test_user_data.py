"""Integration: a user's own data through the real workflow.

Images as NRRD, MHA, NIfTI (oblique) and a DICOM series; boxes from a box table
(LPS mm and voxel index), a 3D Slicer ROI file (RAS) and a label (research
mode); a test case with a user box; a new case to predict with no label; and a
corrupt test case that fails alone under --keep-going.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from boxseg.boxes import DRAWN_BOX_KEYS, boxes_from_label
from boxseg.geometry import index_to_physical
from boxseg.phantom import make_phantom
from tests.conftest import ROOT
from tests.test_workflow import _job_counts, _run


def _oblique(angle_deg=15.0):
    a = np.deg2rad(angle_deg)
    return (np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([-1.0, -1.0, 1.0])).ravel().tolist()


def write_dicom_series(image: sitk.Image, directory: Path, decimals: int = 4):
    """One CT slice per file with the position and orientation tags a scanner writes
    (positions with ``decimals`` digits, as scanners round them)."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    uid = "1.2.826.0.1.3680043.2.1125.1.77"
    for i in range(image.GetDepth()):
        s = image[:, :, i]
        tags = {"0008|0060": "CT", "0020|000e": uid, "0020|000d": uid + ".0", "0008|0018": f"{uid}.{i + 1}", "0020|0052": uid + ".9",
                "0020|0037": "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
                "0020|0032": "\\".join(f"{v:.{decimals}f}" for v in image.TransformIndexToPhysicalPoint((0, 0, i))),
                "0020|0013": str(i + 1), "0018|0050": f"{image.GetSpacing()[2]:.4f}"}
        for tag, value in tags.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(directory / f"{i:04d}.dcm"))
        writer.Execute(s)


def _case(seed, direction=None):
    p = make_phantom(seed)
    out = []
    for array in (p.image_hu, p.label):
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(p.spacing_mm[::-1])
        img.SetOrigin((10.0, -20.0, 30.0))
        if direction:
            img.SetDirection(direction)
        out.append(img)
    return out


def _lesion_box(label: sitk.Image, margin_mm=3.0):
    (lo, hi), *_ = boxes_from_label(sitk.GetArrayFromImage(label), label.GetSpacing()[::-1], margin_mm, (2,))
    return lo, hi


def _faces_lps(img, lo, hi):
    corners = np.array(np.meshgrid(*zip(np.asarray(lo) - 0.5, np.asarray(hi) + 0.5), indexing="ij")).reshape(3, -1).T
    return index_to_physical(img, corners)


# Bad cases beside the good ones (each fails alone, with one line; issue "nothing lost in silence"):
# case -> what its preprocess log must say
BAD_CASES = {
    "bad": "cannot read image (truncated or corrupt gzip",
    "lesion0": "boxes.tsv: box 1 of 1: lesion 0 is not a whole number from 1 to 255",
    "lesiontext": "boxes.tsv: box 1 of 1: lesion 'abc' is not a whole number from 1 to 255",
    "lesiontwice": "boxes.tsv: box 2 of 2: lesion 1 is already the id of box 1 of 2: give each box its own id",
    "sizenull": "center and size must be three finite numbers each",
    "slicershape": "not a 3D Slicer markups file",
    "noimage": "file not found",
    "halfnii": "cannot read image (truncated: the file has",
    "gapdicom": "DICOM slices are not evenly spaced",
}


def _add_bad_cases(data, rows, boxes):
    """Test and predict cases that must each fail alone (``BAD_CASES``)."""
    t0_box = next(b for b in boxes if b["case"] == "t0")
    for case in ("lesion0", "lesiontext", "lesiontwice"):
        rows.append({"case": case, "image": "t0.nii.gz", "label": "", "boxes": "", "split": "predict"})
    boxes += [{**t0_box, "case": "lesion0", "lesion": 0}, {**t0_box, "case": "lesiontext", "lesion": "abc"},
              {**t0_box, "case": "lesiontwice", "lesion": 1}, {**t0_box, "case": "lesiontwice", "lesion": 1}]
    (data / "sizenull.mrk.json").write_text(json.dumps({"markups": [{"type": "ROI", "center": [0, 0, 0], "size": None}]}))
    (data / "slicershape.mrk.json").write_text(json.dumps(["not", "markups"]))
    for case in ("sizenull", "slicershape"):
        rows.append({"case": case, "image": "t0.nii.gz", "label": "", "boxes": f"{case}.mrk.json", "split": "predict"})
    rows.append({"case": "noimage", "image": "nowhere.nii.gz", "label": "", "boxes": "sizenull.mrk.json", "split": "predict"})
    image = sitk.ReadImage(str(data / "t0.nii.gz"))
    sitk.WriteImage(image, str(data / "halfnii.nii"))
    with open(data / "halfnii.nii", "r+b") as f:
        f.truncate((data / "halfnii.nii").stat().st_size // 2)
    write_dicom_series(image, data / "gapdicom")
    (data / f"gapdicom/{image.GetDepth() // 2:04d}.dcm").unlink()
    for case, name in (("halfnii", "halfnii.nii"), ("gapdicom", "gapdicom")):
        rows.append({"case": case, "image": name, "label": "", "boxes": "p0.mrk.json", "split": "predict"})


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("user")
    data = work / "hospital"
    data.mkdir()
    rows, boxes = [], []
    files = {"a0": "a0.nrrd", "a1": "a1.mha", "a2": "a2.nii.gz", "a3": "a3_dicom", "t0": "t0.nii.gz", "p0": "p0.mha"}
    for i, (case, name) in enumerate(files.items()):
        image, label = _case(40 + i, _oblique() if case == "a2" else None)
        if name.endswith("_dicom"):
            write_dicom_series(image, data / name)
            sitk.WriteImage(label, str(data / f"{case}_label.nrrd"))
            label_name = f"{case}_label.nrrd"
        else:
            sitk.WriteImage(image, str(data / name))
            label_name = f"{case}_label{Path(name).suffixes[0]}" + (".gz" if name.endswith(".gz") else "")
            sitk.WriteImage(label, str(data / label_name))
        lo, hi = _lesion_box(label)
        split = {"t0": "test", "p0": "predict"}.get(case, "train")
        row = {"case": case, "image": name, "label": label_name, "boxes": "", "split": split}
        if case in ("a0", "t0"):  # box table, physical LPS
            f = _faces_lps(image, lo, hi)
            boxes.append({"case": case, "lesion": 1, "coordinates": "lps_mm", **dict(zip(["x_min", "y_min", "z_min"], f.min(0))),
                          **dict(zip(["x_max", "y_max", "z_max"], f.max(0)))})
        elif case == "a2":  # box table, voxel index i j k
            boxes.append({"case": case, "lesion": 1, "coordinates": "index", **dict(zip(["x_min", "y_min", "z_min"], lo[::-1])),
                          **dict(zip(["x_max", "y_max", "z_max"], hi[::-1]))})
        elif case in ("a1", "p0"):  # 3D Slicer ROI, RAS
            f = _faces_lps(image, lo, hi)
            roi = {"type": "ROI", "coordinateSystem": "RAS", "center": (f.mean(0) * [-1, -1, 1]).tolist(),
                   "size": (f.max(0) - f.min(0)).tolist()}
            (data / f"{case}.mrk.json").write_text(json.dumps({"markups": [roi]}))
            row["boxes"] = f"{case}.mrk.json"
        if case == "p0":
            row["label"] = ""  # a new case: image and box only
        rows.append(row)
    (data / "bad.nii.gz").write_bytes(b"\x1f\x8b this is not a gzip stream")
    rows.append({"case": "bad", "image": "bad.nii.gz", "label": "t0_label.nii.gz", "boxes": "", "split": "test"})
    _add_bad_cases(data, rows, boxes)
    pd.DataFrame(rows).to_csv(data / "cases.tsv", sep="\t", index=False)
    pd.DataFrame(boxes).to_csv(data / "boxes.tsv", sep="\t", index=False)
    config = yaml.safe_load((ROOT / "tests/tiny_config.yaml").read_text())
    config["dataset"] = {**config["dataset"], "source": "sheet", "sheet": str(data / "cases.tsv")}
    config["boxes"]["table"] = str(data / "boxes.tsv")
    config["methods"] = ["weak"]
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    result = _run(["--configfile", "config.yaml", "--cores", "2", "--keep-going"], work, check=False)
    return work, data, result


@pytest.mark.integration
class TestUserData:
    @pytest.mark.parametrize("case", sorted(BAD_CASES))
    def test_each_bad_case_fails_alone_with_one_line(self, user_run, case):
        work, _, result = user_run
        assert result.returncode != 0
        log = (work / f"logs/preprocess/{case}.log").read_text()
        errors = [line for line in log.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and f"case {case}: " in errors[0] and BAD_CASES[case] in errors[0], log
        assert f"ERROR case {case}:" in result.stdout + result.stderr
        for leftover in (f"results/boxes/{case}.json", f"results/roi/{case}/image.nii.gz", f"results/roi/{case}/geometry.json"):
            assert not (work / leftover).exists()
        assert (work / "results/metrics/weak/t0.tsv").exists()  # every other case finished
        assert (work / "results/predictions/weak/p0/mask.nii.gz").exists()

    def test_box_sources_and_formats(self, user_run):
        work, _, _ = user_run
        sources = {c: json.loads((work / f"results/boxes/{c}.json").read_text())["source"] for c in ("a0", "a1", "a2", "a3", "t0", "p0")}
        assert sources == {"a0": "table", "a1": "file", "a2": "table", "a3": "label", "t0": "table", "p0": "file"}
        records = {c: json.loads((work / f"results/boxes/{c}.json").read_text()) for c in ("a0", "a1", "a3")}
        assert all(r["slack_mm"] == 0.0 for r in records.values())  # not told, research mode included
        assert all(set(b) == set(DRAWN_BOX_KEYS) for r in records.values() for b in r["boxes"])  # nothing of a label
        assert records["a3"]["protocol"] == "paper" and records["a0"]["protocol"] is None
        assert "DICOM series" in (work / "logs/preprocess/a3.log").read_text()

    def test_results_are_readable_by_the_group(self, user_run):
        """A shared server: the workflow's outputs carry the user's umask (here 022), not the
        owner-only mode of the temporary files they were written as."""
        work, _, _ = user_run
        for path in ("results/metrics/weak/t0.tsv", "results/predictions/weak/p0/mask.nii.gz", "results/models/weak/model.pt",
                     "results/boxes/t0.json"):
            assert (work / path).stat().st_mode & 0o044 == 0o044, path

    def test_masks_sit_on_each_original_grid(self, user_run):
        work, data, _ = user_run
        for case, name in (("t0", "t0.nii.gz"), ("p0", "p0.mha")):
            image = sitk.ReadImage(str(data / name))
            mask = sitk.ReadImage(str(work / f"results/predictions/weak/{case}/mask.nii.gz"))
            assert mask.GetSize() == image.GetSize()
            for a, b in ((mask.GetSpacing(), image.GetSpacing()), (mask.GetOrigin(), image.GetOrigin()),
                         (mask.GetDirection(), image.GetDirection())):
                assert np.allclose(a, b, atol=1e-5)

    def test_user_box_bounds_the_mask(self, user_run):
        """With a user box, post-processing keeps the largest component inside each box."""
        work, _, _ = user_run
        record = json.loads((work / "results/boxes/t0.json").read_text())["boxes"][0]
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "results/predictions/weak/t0/mask.nii.gz")))
        inside = np.zeros(mask.shape, bool)
        lo, hi = record["index_lo"], record["index_hi"]
        inside[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
        assert not mask[~inside].any()

    def test_predict_with_a_trained_model(self, user_run, tmp_path):
        """`snakemake predict --config predict_sheet=... model=...`: new cases only, no training."""
        work, data, _ = user_run
        shutil.copy(work / "results/models/weak/model.pt", tmp_path / "model.pt")
        sheet = pd.DataFrame([{"case": "new1", "image": str(data / "p0.mha"), "boxes": str(data / "p0.mrk.json")},
                              {"case": "new2", "image": str(data / "a3_dicom"), "label": str(data / "a3_label.nrrd")}])
        sheet.to_csv(tmp_path / "new.tsv", sep="\t", index=False)
        config = yaml.safe_load((work / "config.yaml").read_text())
        good = pd.read_csv(data / "cases.tsv", sep="\t", dtype=str, keep_default_na=False)
        good = good[~good["case"].isin(BAD_CASES)]
        for column in ("image", "label", "boxes"):
            good[column] = [str(data / v) if v else "" for v in good[column]]
        good.to_csv(tmp_path / "cases.tsv", sep="\t", index=False)
        table = pd.read_csv(data / "boxes.tsv", sep="\t", dtype={"case": str})
        table[~table["case"].isin(BAD_CASES)].to_csv(tmp_path / "boxes.tsv", sep="\t", index=False)
        config["dataset"]["sheet"] = str(tmp_path / "cases.tsv")
        config["boxes"]["table"] = str(tmp_path / "boxes.tsv")
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        args = ["predict", "--configfile", "config.yaml", "--cores", "1", "--config", "predict_sheet=new.tsv", "model=model.pt"]
        counts = _job_counts(_run(args + ["-n"], tmp_path).stdout)
        # p0 of the sheet, new1 and new2 (a DICOM series: its mask also as a DICOM SEG); no training
        assert counts == {"preprocess": 3, "infer": 3, "dicom_seg": 1, "predict": 1, "total": 8}
        _run(args, tmp_path)
        assert (tmp_path / "results/predictions/weak/new1/mask.nii.gz").exists()
        assert (tmp_path / "results/predictions/weak/new2/mask.seg.dcm").stat().st_size > 0

    def test_edited_box_rows_rerun_only_their_case(self, user_run, tmp_path):
        """A box table row is its case's params: editing it reruns that case (and, for a
        training case, what was trained on it), nothing else. (The bad cases never finished.)"""
        work, data, _ = user_run
        copy = tmp_path / "copy"
        shutil.copytree(work, copy, symlinks=True)
        table = pd.read_csv(data / "boxes.tsv", sep="\t")
        config = yaml.safe_load((copy / "config.yaml").read_text())
        failed = len(BAD_CASES)  # cases that never finished, planned again each time
        for case, expected in (("t0", {"preprocess": 1 + failed, "infer": 1 + failed, "evaluate": 2}),
                               ("a0", {"preprocess": 1 + failed, "pseudo_mask": 1, "train_group": 1, "fuse": 4, "train_final": 1})):
            edited = table.copy()
            edited.loc[edited["case"] == case, "x_max"] += 2.0
            edited.to_csv(copy / f"boxes_{case}.tsv", sep="\t", index=False)
            config["boxes"]["table"] = str(copy / f"boxes_{case}.tsv")
            (copy / "config.yaml").write_text(yaml.safe_dump(config))
            counts = _job_counts(_run(["--configfile", "config.yaml", "--cores", "1", "-n"], copy).stdout)
            assert {k: counts.get(k, 0) for k in expected} == expected, counts
            if case == "t0":
                assert "pseudo_mask" not in counts and "train_group" not in counts


def _readme_block(readme: str, lead: str) -> str:
    """The indented block after the README paragraph that starts with ``lead``, up to its first blank line."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(lead))
    while lines[start].strip():  # the rest of the paragraph
        start += 1
    while not lines[start].strip():
        start += 1
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block) + "\n"


@pytest.mark.integration
def test_the_readme_example_plans_every_job_and_boxes_every_case(tmp_path):
    """README "Your own data", "An example": its case sheet, box table and config as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    data = tmp_path / "hospital"
    (data / "slicer").mkdir(parents=True)
    (data / "ct").mkdir()
    (data / "masks").mkdir()
    for name, lead in (("cases.csv", "`hospital/cases.csv`"), ("boxes.csv", "`hospital/boxes.csv`"), ("my.yaml", "`hospital/my.yaml`")):
        (data / name).write_text(_readme_block(readme, lead))
    assert "--configfile configs/kits19.yaml hospital/my.yaml" in readme
    # small scans: 80 x 80 x 40 voxels of 1 x 1 x 2.5 mm, LPS, the lesion a brighter ellipsoid inside each box
    size, spacing, origin = (80, 80, 40), (1.0, 1.0, 2.5), (-120.0, -100.0, -300.0)
    centres = {"p001": (38, 40, 14), "p002": (37, 32, 14), "p003": (41, 38, 16), "p004": (40, 40, 20), "p005": (32, 37, 14)}
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    rng = np.random.default_rng(0)
    for case, (i, j, k) in centres.items():
        lesion = ((xx - i) / 9.0) ** 2 + ((yy - j) / 8.0) ** 2 + ((zz - k) / 4.0) ** 2 <= 1
        images = []
        for array in (40.0 + 10.0 * rng.standard_normal(lesion.shape) + 60.0 * lesion, lesion.astype(np.uint8)):
            image = sitk.GetImageFromArray(array.astype(np.int16 if array.dtype != np.uint8 else np.uint8))
            image.SetSpacing(spacing)
            image.SetOrigin(origin)
            images.append(image)
        if case == "p002":
            write_dicom_series(images[0], data / "ct/p002")
        else:
            sitk.WriteImage(images[0], str(data / "ct" / {"p001": "p001.nrrd", "p005": "p005.mha"}.get(case, f"{case}.nii.gz")))
        if case == "p004":
            sitk.WriteImage(images[1], str(data / "masks/p004.nii.gz"))
    centre_lps = np.array(origin) + np.array(centres["p001"]) * spacing
    roi = {"type": "ROI", "coordinateSystem": "RAS", "center": (centre_lps * [-1, -1, 1]).tolist(), "size": [22.0, 20.0, 12.5]}
    (data / "slicer/p001.mrk.json").write_text(json.dumps({"markups": [roi]}))
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    configs = ["--configfile", "config.yaml", str(ROOT / "configs/kits19.yaml"), "hospital/my.yaml"]
    counts = _job_counts(_run(configs + ["--cores", "2", "-n"], tmp_path).stdout)
    assert (counts["preprocess"], counts["train_group"], counts["train_final"], counts["evaluate"]) == (5, 3, 1, 1)
    _run(configs + ["--cores", "2"] + [f"results/roi/{c}/geometry.json" for c in centres], tmp_path)
    records = {c: json.loads((tmp_path / f"results/boxes/{c}.json").read_text()) for c in centres}
    assert {c: r["source"] for c, r in records.items()} == {"p001": "file", "p002": "table", "p003": "table", "p004": "label", "p005": "table"}
    boxes = {c: (r["boxes"][0]["index_lo"], r["boxes"][0]["index_hi"]) for c, r in records.items()}  # z, y, x
    assert boxes["p002"] == ([8, 20, 25], [20, 45, 50])  # the LPS faces, on the voxel grid
    assert boxes["p003"] == ([10, 28, 30], [22, 49, 52]) and boxes["p005"] == ([8, 25, 20], [20, 50, 45])
    for case, (lo, hi) in boxes.items():  # each lesion inside its box
        assert all(lo[a] <= centres[case][2 - a] <= hi[a] for a in range(3)), case


def test_a_dicom_cases_mask_goes_out_as_a_dicom_seg_over_its_series(tmp_path):
    """A case read from a DICOM series: its mask as a DICOM SEG referencing the series' images,
    which reads back as the mask; a series without a frame of reference fails with one line."""
    import pydicom

    from boxseg.io import CaseError, array_like, read_image, write_image
    from boxseg.steps.infer import dicom_seg_case

    image, label = _case(5)
    write_dicom_series(image, tmp_path / "ct")
    read = read_image(tmp_path / "ct", "d1")
    mask = (sitk.GetArrayFromImage(label) == 2).astype(np.uint8)
    write_image(array_like(mask, read), tmp_path / "mask.nii.gz")
    dicom_seg_case("d1", tmp_path / "mask.nii.gz", tmp_path / "ct", tmp_path / "mask.seg.dcm")
    seg = pydicom.dcmread(tmp_path / "mask.seg.dcm")
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "lesion"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(next((tmp_path / "ct").iterdir())).SeriesInstanceUID
    for f in (tmp_path / "ct").iterdir():  # the same series without its frame of reference
        ds = pydicom.dcmread(f)
        del ds.FrameOfReferenceUID
        ds.save_as(f)
    with pytest.raises(CaseError, match="case d1: .*lacks \\['FrameOfReferenceUID'\\]"):
        dicom_seg_case("d1", tmp_path / "mask.nii.gz", tmp_path / "ct", tmp_path / "again.seg.dcm")
    assert not (tmp_path / "again.seg.dcm").exists()
