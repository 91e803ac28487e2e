#!/usr/bin/env python3
"""Wall time of `snakemake -n` (DAG building) on large case sheets.

usage: python benchmarks/dag_bench.py [--cases 1000 10000] [--workdir DIR]

For each size it writes a sheet of N cases (3/4 train, 1/4 test) pointing at
tiny placeholder files, runs the workflow's dry run on it with the default
config otherwise, and prints the number of jobs and the wall time.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_sheet(directory: Path, n_cases: int) -> Path:
    (directory / "img").mkdir(parents=True, exist_ok=True)
    lines = ["case\timage\tlabel\tsplit"]
    for i in range(n_cases):
        case = f"case_{i:06d}"
        image, label = directory / "img" / f"{case}.nii.gz", directory / "img" / f"{case}_seg.nii.gz"
        image.touch()
        label.touch()
        lines.append(f"{case}\t{image}\t{label}\t{'test' if i % 4 == 3 else 'train'}")
    sheet = directory / "cases.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    return sheet


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--workdir")
    args = ap.parse_args(argv)
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="boxseg-dag-"))
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    print("n_cases\tn_jobs\tdry_run_s")
    for n in args.cases:
        work = base / f"n{n}"
        sheet = make_sheet(work, n)
        config["dataset"].update(source="sheet", sheet=str(sheet))
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--configfile", "config.yaml",
               "-n", "--cores", "2", "--quiet", "rules"]
        t = time.perf_counter()
        out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t
        if out.returncode != 0:
            sys.exit(f"dry run failed for {n} cases:\n{out.stderr[-2000:]}")
        total = re.search(r"^total\s+(\d+)", out.stdout + out.stderr, re.MULTILINE)
        print(f"{n}\t{total.group(1) if total else '?'}\t{elapsed:.1f}", flush=True)


if __name__ == "__main__":
    main()
