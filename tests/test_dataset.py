import pandas as pd
import pytest

from boxseg.dataset import assign_groups, check_sheet, kits_sheet, synthetic_sheet
from boxseg.io import validate_case_id


class TestCaseIds:
    @pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", ".hidden", "a..b", "case 1"])
    def test_rejects_unsafe(self, bad):
        with pytest.raises(ValueError, match="invalid case id"):
            validate_case_id(bad)

    @pytest.mark.parametrize("good", ["case_00001", "STS_001", "p-1.v2"])
    def test_accepts(self, good):
        assert validate_case_id(good) == good

    def test_duplicates_rejected(self):
        sheet = pd.DataFrame({"case": ["a", "a"], "image": ["x", "y"], "label": ["", ""], "split": ["train", "test"]})
        with pytest.raises(ValueError, match="duplicate case id"):
            check_sheet(sheet)


class TestSheets:
    def test_synthetic(self):
        sheet = synthetic_sheet(3, 2)
        assert sheet["split"].tolist() == ["train"] * 3 + ["test"] * 2
        assert sheet["image"][0] == "results/data/case_00000/imaging.nii.gz"

    def test_kits_layout(self, tmp_path):
        for i in range(4):
            (tmp_path / f"case_{i:05d}").mkdir()
            (tmp_path / f"case_{i:05d}" / "imaging.nii.gz").write_bytes(b"")
        sheet = kits_sheet(tmp_path, test_cases=["case_00003"])
        assert sheet.set_index("case").loc["case_00003", "split"] == "test"
        assert (sheet["split"] == "train").sum() == 3

    def test_groups_disjoint_and_balanced(self):
        cases = [f"c{i}" for i in range(10)]
        groups = assign_groups(cases, 3, seed=0)
        assert set(groups) == set(cases)
        sizes = sorted(list(groups.values()).count(k) for k in range(3))
        assert sizes == [3, 3, 4]
        assert groups == assign_groups(cases, 3, seed=0)
