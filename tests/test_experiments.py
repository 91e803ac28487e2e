"""Integration: the experiment driver on the tiny configuration (two margins, phantoms)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT


@pytest.mark.integration
def test_experiment_driver_writes_the_three_tables_the_claims_and_the_report(tmp_path):
    shutil.copy(ROOT / "tests/tiny_config.yaml", tmp_path / "tiny_config.yaml")
    config = {
        "out_dir": "runs", "tables_dir": "tables", "figures_dir": "figures", "margins_mm": [0, 3.5], "seeds": [0],
        "methods": ["weak_pm_wce", "weak_fm_vwce"], "reference_margin_mm": 3.5, "reference_methods": ["full"],
        "datasets": {"phantom": {"configfile": "tiny_config.yaml", "dir": None}}, "config_overrides": {},
    }
    (tmp_path / "experiments.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run([sys.executable, str(ROOT / "experiments/run.py"), "--config", str(tmp_path / "experiments.yaml"),
                          "--root", str(tmp_path), "--cores", "2", "--training-threads", "1"],
                         cwd=tmp_path, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # --training-threads: every training job used that many torch threads (the rules' own: 2 here)
    train_logs = sorted((tmp_path / "runs/phantom").glob("m*/seed0/logs/train_*/*.log"))
    assert len(train_logs) == 2 * 4 + 1, train_logs  # per margin 2 group models and 2 final models; full at 3.5 mm
    assert all(", 1 thread(s)" in log.read_text() for log in train_logs)
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
    claims = pd.read_csv(tmp_path / "tables/claims.tsv", sep="\t")
    # what these methods can judge: no WCE run (VWCE >= WCE) and no baseline (Table 2) in this set
    assert set(claims["claim"]) == {"fusion_above_pseudo_masks", "filter_lowers_hd", "weak_within_4pct_of_full"}
    per_margin = claims[claims["margin_mm"].notna()]
    assert per_margin.groupby("claim")["margin_mm"].apply(list).to_dict() == {m: [0.0, 3.5] for m in claims["claim"].unique()}
    assert per_margin["held"].isin(["yes", "no"]).all()
    on_labels = per_margin["claim"] == "fusion_above_pseudo_masks"  # 4 training cases: a standard error
    assert per_margin[on_labels]["se"].notna().all() and per_margin[~on_labels]["se"].isna().all()  # 1 test case: none
    report = (tmp_path / "tables/report.html").read_text()
    assert "table3" in report and "min in all (2 calls)" in report and "fusion_above_pseudo_masks" in report
    times = [pd.read_csv(tmp_path / f"runs/phantom/m{m}/seed0/run_times.tsv", sep="\t") for m in (0, 3.5)]
    assert [t["rc"].tolist() for t in times] == [[0], [0]] and all(t["seconds"].iloc[0] > 0 for t in times)
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
    assert len(pd.read_csv(log.parent / "run_times.tsv", sep="\t")) == 1  # dry runs are not timed


@pytest.mark.integration
def test_a_run_left_locked_by_a_killed_snakemake_is_named_and_unlock_frees_it(tmp_path):
    shutil.copy(ROOT / "tests/tiny_config.yaml", tmp_path / "tiny_config.yaml")
    config = {
        "out_dir": "runs", "tables_dir": "tables", "figures_dir": "figures", "margins_mm": [3.5], "seeds": [0],
        "methods": ["weak_pm_wce"], "reference_margin_mm": 3.5, "reference_methods": [],
        "datasets": {"phantom": {"configfile": "tiny_config.yaml", "dir": None}}, "config_overrides": {},
    }
    (tmp_path / "experiments.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, str(ROOT / "experiments/run.py"), "--config", str(tmp_path / "experiments.yaml"),
           "--root", str(tmp_path), "--cores", "1"]
    locks = tmp_path / "runs/phantom/m3.5/seed0/.snakemake/locks"
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (locks.is_dir() and any(locks.iterdir())) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # as a power loss or kill -9 would: no cleanup
    proc.wait()
    assert any(locks.iterdir()), "the workflow left no lock to test with"
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert out.returncode == 1
    hint = [line for line in out.stdout.splitlines() if "is locked" in line]
    assert len(hint) == 1 and "runs/phantom/m3.5/seed0" in hint[0] and "--unlock" in hint[0], out.stdout
    out = subprocess.run(cmd + ["--unlock"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "unlocked" in out.stdout, out.stdout + out.stderr
    assert not locks.exists() or not any(locks.iterdir())
    times = tmp_path / "runs/phantom/m3.5/seed0/run_times.tsv"
    assert pd.read_csv(times, sep="\t", dtype={"rc": str})["rc"].fillna("open").tolist() == ["open", "1"]
    out = subprocess.run(cmd + ["--dry-run"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    # no lock, so no call is live: the killed call is timed to the last write of Snakemake's own log of it
    times = pd.read_csv(times, sep="\t", dtype={"rc": str})
    assert times["rc"].tolist() == ["killed", "1"] and times["seconds"].notna().all() and (times["seconds"] >= 0).all()


def test_a_killed_call_is_timed_to_its_last_checkpoint_when_that_is_later_than_its_log(tmp_path):
    """A call killed inside a long training job last wrote Snakemake's log when the job started; the
    job's checkpoint, written later, bounds the call's length better. Checkpoints of other calls do not count."""
    from boxseg.experiments import read_times, time_killed_calls, write_times

    start = 1_800_000_000  # whole seconds, UTC
    iso = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + d)) for d in (0, 5000)]
    write_times(tmp_path, [[iso[0], "", ""], [iso[1], "7", "0"]])
    log = tmp_path / ".snakemake/log" / time.strftime("%Y-%m-%dT%H%M%S.000001.snakemake.log", time.localtime(start + 1))
    log.parent.mkdir(parents=True)
    log.write_text("a job started\n")
    os.utime(log, (start + 60, start + 60))
    for name, written in (("model_0", start + 3000), ("model_1", start + 4000), ("model_2", start + 6000), ("old", start - 10)):
        checkpoint = tmp_path / "results/group" / name / "checkpoint.pt"
        checkpoint.parent.mkdir(parents=True)
        checkpoint.write_bytes(b"")
        os.utime(checkpoint, (written, written))
    time_killed_calls(tmp_path)
    assert read_times(tmp_path) == [[iso[0], "4000", "killed"], [iso[1], "7", "0"]]  # model_2 is the next call's
    checkpoints = list((tmp_path / "results").rglob("checkpoint.pt"))
    for checkpoint in checkpoints:
        checkpoint.unlink()
    write_times(tmp_path, [[iso[0], "", ""]])
    time_killed_calls(tmp_path)
    assert read_times(tmp_path) == [[iso[0], "60", "killed"]]  # no checkpoint: the log's last write


def test_the_quick_experiment_set_is_the_full_set_at_a_smaller_budget(tmp_path):
    from snakemake.utils import validate

    from boxseg.experiments import merge_config, plan

    full, quick = (yaml.safe_load((ROOT / f"experiments/{name}.yaml").read_text()) for name in ("experiments", "quick"))
    for config in (full, quick):  # plan() skips a dataset whose dir is missing: point them all at one that exists
        for dataset in config["datasets"].values():
            dataset["dir"] = str(tmp_path)
    key = sorted((r["dataset"], r["margin_mm"], r["seed"], tuple(r["methods"])) for r in plan(full, ROOT))
    assert key == sorted((r["dataset"], r["margin_mm"], r["seed"], tuple(r["methods"])) for r in plan(quick, ROOT))
    assert {full[k] for k in ("out_dir", "tables_dir", "figures_dir")}.isdisjoint(
        quick[k] for k in ("out_dir", "tables_dir", "figures_dir"))
    for run in plan(quick, ROOT):
        dataset_config = yaml.safe_load(run["configfile"].read_text())
        config = merge_config(merge_config(yaml.safe_load((ROOT / "config.yaml").read_text()), dataset_config), run["layer"])
        validate(config, str(ROOT / "schemas/config.schema.yaml"))
        assert config["final_training"]["steps"] < dataset_config["final_training"]["steps"]


def test_training_threads_below_one_are_refused():
    """(That a thread count reaches every training job is checked on the real driver run above.)"""
    out = subprocess.run([sys.executable, str(ROOT / "experiments/run.py"), "--training-threads", "0"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "--training-threads 0: at least 1" in out.stderr
