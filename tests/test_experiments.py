"""Integration: the experiment driver on the tiny configuration (two margins, phantoms)."""

import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT


@pytest.mark.integration
def test_experiment_driver_writes_the_three_tables_and_the_report(tmp_path):
    shutil.copy(ROOT / "tests/tiny_config.yaml", tmp_path / "tiny_config.yaml")
    config = {
        "out_dir": "runs", "tables_dir": "tables", "figures_dir": "figures", "margins_mm": [0, 3.5], "seeds": [0],
        "methods": ["weak_pm_wce", "weak_fm_vwce"], "reference_margin_mm": 3.5, "reference_methods": ["full"],
        "datasets": {"phantom": {"configfile": "tiny_config.yaml", "dir": None}}, "config_overrides": {},
    }
    (tmp_path / "experiments.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run([sys.executable, str(ROOT / "experiments/run.py"), "--config", str(tmp_path / "experiments.yaml"),
                          "--root", str(tmp_path), "--cores", "2"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    t1 = pd.read_csv(tmp_path / "tables/table1.tsv", sep="\t")
    assert t1.groupby("margin_mm")["setting"].apply(list).to_dict() == {
        0.0: ["K=0 (pseudo-masks only), WCE", "K=3, VWCE", "K=3, VWCE + largest component"],
        3.5: ["K=0 (pseudo-masks only), WCE", "K=3, VWCE", "K=3, VWCE + largest component",
              "fully supervised 3D UNet", "fully supervised + largest component"],
    }
    assert t1["dsc_mean"].between(0, 1).all() and (t1["n_cases"] == 1).all()
    t2 = pd.read_csv(tmp_path / "tables/table2.tsv", sep="\t")
    assert t2["margin_mm"].tolist() == [3.5] and t2["method"].tolist() == ["weak_fm_vwce"]
    t3 = pd.read_csv(tmp_path / "tables/table3.tsv", sep="\t")
    assert t3["margin_mm"].tolist() == [0.0, 3.5] and (t3["boxes_mean"].diff().dropna() < 0).all()  # looser boxes, lower DSC
    for name in ("dsc_vs_volume", "phantom_final_loss", "phantom_pm_vs_fm", "phantom_variants"):
        assert (tmp_path / f"figures/{name}.png").stat().st_size > 0
    assert "table3" in (tmp_path / "tables/report.html").read_text()
    # shared work: within a run, the methods reuse one set of pseudo-masks and group models
    assert len(list((tmp_path / "runs/phantom/m3.5/seed0/results/group").glob("model_*/model.pt"))) == 2
    # a changed hyperparameter reruns training by default; --rerun-triggers mtime input (a refactor) keeps the runs
    config["config_overrides"] = {"final_training": {"learning_rate": 0.002}}
    (tmp_path / "experiments.yaml").write_text(yaml.safe_dump(config))
    log = tmp_path / "runs/phantom/m3.5/seed0/snakemake.log"
    for triggers, planned in (([], True), (["--rerun-triggers", "mtime", "input"], False)):
        out = subprocess.run([sys.executable, str(ROOT / "experiments/run.py"), "--config", str(tmp_path / "experiments.yaml"),
                              "--root", str(tmp_path), "--dry-run", *triggers], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert ("train_final" in log.read_text()) == planned, log.read_text()[-2000:]
