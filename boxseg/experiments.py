"""The experiment set (``experiments/run.py`` is its command): run it, then write the
paper's tables and figures.

usage: python experiments/run.py [--config experiments/experiments.yaml] [--cores 2]
                                 [--training-threads N] [--tables-only] [--dry-run] [--unlock]
                                 [--rerun-triggers mtime input ...]

Each (dataset, margin, seed) is an ordinary workflow run in its own directory
(out_dir/DATASET/mMARGIN/seedSEED) on the dataset's config with the margin,
the methods and seed offsets layered on top; inside a run, the methods share
the preprocessing, pseudo-masks and group models through the DAG. Reruns
touch only what changed. A run that a killed Snakemake left locked is named
with the fix (--unlock, when no Snakemake is running there). Then
boxseg.tables writes table1-3.tsv and claims.tsv (the paper's claims checked
on these runs), and report.html shows them with the figures and the runs'
workflow time summed over calls (each run's run_times.tsv; a call killed
before it could write its time is timed from Snakemake's own log of it and
the training checkpoints it wrote).
"""

from __future__ import annotations

import argparse
import base64
import calendar
import subprocess
import sys
import time
from collections.abc import Sequence
from html import escape as html_escape
from pathlib import Path

import pandas as pd
import yaml

from boxseg import layout as L

ROOT = Path(__file__).resolve().parents[1]  # the repository: its Snakefile, config.yaml and experiments/


def merge_config(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge_config(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def plan(config: dict, root: Path) -> list:
    """The runs: dataset, margin, seed, directory, methods and the config layer of each."""
    runs = []
    for name, dataset in config["datasets"].items():
        data_dir = (root / dataset["dir"]).resolve() if dataset.get("dir") else None
        if data_dir is not None and not data_dir.is_dir():
            print(f"experiments: skipping {name}: {data_dir} not found", file=sys.stderr)
            continue
        base = yaml.safe_load((root / dataset["configfile"]).read_text(encoding="utf-8"))
        for margin in config["margins_mm"]:
            for seed in config["seeds"]:
                methods = list(config["methods"])
                if float(margin) == float(config["reference_margin_mm"]):
                    methods += [m for m in config["reference_methods"] if m not in methods]
                layer = merge_config(config.get("config_overrides") or {}, {
                    "boxes": {"margin_mm": float(margin)},
                    "methods": methods,
                    "groups": {"seed": int(base.get("groups", {}).get("seed", 0)) + int(seed)},
                    "group_training": {"seed": int(base.get("group_training", {}).get("seed", 1)) + 100 * int(seed)},
                    "final_training": {"seed": int(base.get("final_training", {}).get("seed", 2)) + 100 * int(seed)},
                })
                if data_dir is not None:
                    layer["dataset_dir"] = str(data_dir)
                runs.append({"dataset": name, "margin_mm": float(margin), "seed": int(seed), "methods": methods,
                             "path": (root / config["out_dir"] / name / f"m{margin}" / f"seed{seed}").resolve(),
                             "configfile": (root / dataset["configfile"]).resolve(), "layer": layer})
    return runs


LOCKED = "Directory cannot be locked"  # Snakemake's LockException


TRAINING_RULES = ("train_group", "train_final")  # the rules that train a network (threads: 4 in rules/)


def run_workflow(run: dict, cores: int, dry_run: bool = False, rerun_triggers: Sequence[str] | None = None,
                 unlock: bool = False, training_threads: int | None = None) -> int:
    path = run["path"]
    path.mkdir(parents=True, exist_ok=True)
    (path / "experiment.yaml").write_text(yaml.safe_dump(run["layer"], sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(path),
           "--configfile", str(ROOT / "config.yaml"), str(run["configfile"]), str(path / "experiment.yaml"),
           "--cores", str(cores), "--keep-going", "--quiet", "rules"] + (["-n"] if dry_run else [])
    if unlock:
        cmd.append("--unlock")
    if rerun_triggers:
        cmd += ["--rerun-triggers", *rerun_triggers]
    if training_threads:  # fewer threads per training job, more of them side by side (benchmarks/threads_bench.py)
        cmd += ["--set-threads", *(f"{rule}={training_threads}" for rule in TRAINING_RULES)]
    timed = not (dry_run or unlock)  # the run's wall time, summed over calls and sessions in the report
    if not unlock and not _locked_now(path):
        time_killed_calls(path)
    started, t = _iso(time.time()), time.perf_counter()
    if timed:
        write_times(path, read_times(path) + [[started, "", ""]])  # open until the call returns
    with open(path / ("unlock.log" if unlock else "snakemake.log"), "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if timed:
        write_times(path, [row if row[0] != started else [started, f"{time.perf_counter() - t:.0f}", str(rc)]
                            for row in read_times(path)])
    return rc


TIMES_COLUMNS = ["started", "seconds", "rc"]


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def read_times(path: Path) -> list:
    times = path / "run_times.tsv"
    return [line.split("\t") for line in times.read_text(encoding="utf-8").splitlines()[1:]] if times.exists() else []


def write_times(path: Path, rows: list[list[str]]) -> None:
    tmp = path / "run_times.tsv.tmp"
    tmp.write_text("".join("\t".join(row) + "\n" for row in [TIMES_COLUMNS, *rows]))
    tmp.replace(path / "run_times.tsv")


def _locked_now(path: Path) -> bool:
    """Whether Snakemake holds (or a killed one left) a lock in the run: then a call may still be live."""
    locks = path / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def time_killed_calls(path: Path) -> None:
    """A call killed with no chance to write its time (a session's end, kill -9) leaves its row open.
    With no lock in the run, no call is live: time each open row to the last write the call left, a
    lower bound of its length, and mark it killed. That is the later of the log Snakemake itself kept
    for the call (.snakemake/log/, named by its local start time; last written when a job started or
    ended) and any training checkpoint written after the call began and before the next one (written
    every few hundred steps, so a call killed inside a long training job is not cut to that job's start)."""
    rows = read_times(path)
    if not any(row[1] == "" for row in rows):
        return
    logs = []
    for log in (path / ".snakemake" / "log").glob("*.snakemake.log"):
        try:
            logs.append((time.mktime(time.strptime(log.name[:17], "%Y-%m-%dT%H%M%S")), log.stat().st_mtime))
        except ValueError:
            continue
    checkpoints = [p.stat().st_mtime for p in (path / L.RESULTS).rglob("checkpoint*.pt")]
    starts = [calendar.timegm(time.strptime(row[0], "%Y-%m-%dT%H:%M:%SZ")) for row in rows]
    for i, row in enumerate(rows):
        if row[1] == "":
            start, until = starts[i], starts[i + 1] if i + 1 < len(rows) else time.time()
            ends = [end for begun, end in sorted(logs) if begun >= start - 1][:1]
            ends += [t for t in checkpoints if start <= t < until]
            row[1:] = [f"{max(ends) - start:.0f}" if ends else "", "killed"]
    write_times(path, rows)


def workflow_time(runs: list) -> str:
    """The time the runs' workflow calls took in all (every call so far, in any session), and how many;
    calls killed with their session count to their last log line or checkpoint (time_killed_calls)."""
    rows = [row for r in runs for row in read_times(r["path"])]
    seconds = sum(float(row[1]) for row in rows if row[1])
    killed = sum(row[2] == "killed" for row in rows)
    note = f", {killed} of them killed and timed to their last log line or checkpoint" if killed else ""
    return f"their workflow calls took {seconds / 60:.1f} min in all ({len(rows)} calls{note})"


def label(run: dict) -> str:
    return f"{run['dataset']} margin {run['margin_mm']} mm seed {run['seed']}"


def locked(run: dict) -> bool:
    """Whether the run's last workflow call stopped on a lock (a killed Snakemake leaves one)."""
    log = run["path"] / "snakemake.log"
    return log.exists() and LOCKED in log.read_text(errors="replace")


def _img(path: Path) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" style="max-width:100%">'


def figures_and_report(config: dict, runs: list, tables: dict[str, pd.DataFrame], root: Path, times: str) -> Path:
    from boxseg.report import dsc_volume_figure, final_loss_figure, label_overlay_figure, variant_overlay_figure
    from boxseg.tables import CLAIMS

    figures = root / config["figures_dir"]
    figures.mkdir(parents=True, exist_ok=True)
    made = []
    if not tables["metrics"].empty:
        dsc_volume_figure(tables["metrics"], figures / "dsc_vs_volume.png")
        made.append(figures / "dsc_vs_volume.png")
    reference = [r for r in runs if r["margin_mm"] == float(config["reference_margin_mm"]) and r["seed"] == config["seeds"][0]]
    for run in reference:
        if not L.path(L.CASES, run["path"]).exists():
            continue
        sheet = pd.read_csv(L.path(L.CASES, run["path"]), sep="\t", keep_default_na=False)
        prefix = figures / run["dataset"]
        final_loss_figure(run["path"], run["methods"], f"{prefix}_final_loss.png")
        train = sheet[sheet["split"] == "train"]["case"].tolist()[:3]
        if train and L.path(L.FUSION_MASK, run["path"], case=train[0]).exists():
            label_overlay_figure(run["path"], train, f"{prefix}_pm_vs_fm.png")
            made.append(Path(f"{prefix}_pm_vs_fm.png"))
        test = sheet[(sheet["split"] == "test") & (sheet["label"] != "")]
        if len(test) and L.path(L.METRICS, run["path"]).exists():
            row = test.iloc[0]
            base = yaml.safe_load(run["configfile"].read_text(encoding="utf-8"))
            image, label = (p if Path(p).is_absolute() else run["path"] / p for p in (row["image"], row["label"]))
            variant_overlay_figure(run["path"], row["case"], image, label, run["methods"], f"{prefix}_variants.png",
                                   tumor_values=base["dataset"]["tumor_values"], window_hu=base.get("preprocess", {}).get("window_hu", [-200, 500]))
            made.append(Path(f"{prefix}_variants.png"))
        made.append(Path(f"{prefix}_final_loss.png"))
    html = ["<html><head><meta charset='utf-8'><title>boxseg experiments</title></head><body>",
            f"<h1>boxseg experiments</h1><p>{len(runs)} workflow runs; {times}.</p>"]
    for name in ("table1", "table2", "table3"):
        html += [f"<h2>{name}</h2>", tables[name].to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="")]
    intro = ("<h2>claims</h2><p>The paper's claims on these runs (claims.tsv): per dataset over the margins, then per "
             "margin. <i>se</i>: standard error of the difference over the cases; <i>beyond_noise</i>: the difference is "
             "at least twice it.</p><ul>")
    html += [intro] + [f"<li><b>{k}</b>: {html_escape(v)}</li>" for k, v in CLAIMS.items()]
    html += ["</ul>", tables["claims"].to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="")]
    for path in made:
        html += [f"<h3>{path.name}</h3>", _img(path)]
    html.append("</body></html>")
    out = root / config["tables_dir"] / "report.html"
    out.write_text("\n".join(html), encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "experiments/experiments.yaml"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--root", default=str(ROOT), help="paths in the config are relative to this (default: the repository)")
    ap.add_argument("--tables-only", action="store_true", help="only collect finished runs into tables and figures")
    ap.add_argument("--dry-run", action="store_true", help="plan every run with snakemake -n")
    ap.add_argument("--unlock", action="store_true",
                    help="remove the locks a killed Snakemake left in the runs (only when none is running there)")
    ap.add_argument("--training-threads", type=int, metavar="N",
                    help="torch threads per training job (default: the rules' threads, at most --cores); with fewer, "
                         "more training jobs run side by side: on 2 CPU cores, two 1-thread jobs train 1.1-1.3x the steps "
                         "of one 2-thread job (benchmarks/threads_bench.py). It changes the trained weights, as "
                         "another machine would")
    ap.add_argument("--rerun-triggers", nargs="+", choices=["mtime", "params", "input", "software-env", "code"],
                    help="passed to snakemake (default: the profile's, all of them)")
    args = ap.parse_args(argv)
    if args.training_threads is not None and args.training_threads < 1:
        ap.error(f"--training-threads {args.training_threads}: at least 1")
    root = Path(args.root).resolve()
    config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    runs = plan(config, root)
    start = time.perf_counter()
    failed = []
    if args.unlock:
        for run in runs:
            rc = run_workflow(run, args.cores, unlock=True)
            print(f"{label(run)}: {'unlocked' if rc == 0 else f'unlock failed, rc {rc}'} ({run['path'] / 'unlock.log'})", flush=True)
            failed += [run] if rc else []
        return 1 if failed else 0
    if not args.tables_only:
        for run in runs:
            t = time.perf_counter()
            rc = run_workflow(run, args.cores, args.dry_run, args.rerun_triggers, training_threads=args.training_threads)
            print(f"{label(run)}: rc {rc}, {time.perf_counter() - t:.0f} s "
                  f"({run['path'] / 'snakemake.log'})", flush=True)
            if rc:
                failed.append(run)
            if rc and locked(run):
                print(f"{label(run)}: {run['path']} is locked, "
                      f"likely by a Snakemake that was killed; if none is running there, run this command again "
                      f"with --unlock, then without", flush=True)
    if args.dry_run:
        return 1 if failed else 0
    from boxseg.tables import write_tables

    tables = write_tables(runs, root / config["tables_dir"], config["reference_margin_mm"])
    times = f"{workflow_time(runs)}; this command {(time.perf_counter() - start) / 60:.1f} min"
    report = figures_and_report(config, runs, tables, root, times)
    for name in ("table1", "table2", "table3"):
        print(f"\n{name}\n{tables[name].to_string(index=False, float_format=lambda v: f'{v:.3f}')}")
    claims = tables["claims"]
    if not claims.empty:
        overall = claims[claims["margin_mm"].isna()][["dataset", "claim", "held", "detail"]]
        print(f"\nclaims (per margin in claims.tsv)\n{overall.to_string(index=False)}")
    print(f"\nreport: {report}; {len(runs)} workflow runs; {times}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
