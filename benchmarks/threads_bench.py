#!/usr/bin/env python3
"""CPU training throughput: one job with all threads, or several jobs with fewer threads each.

usage: python benchmarks/threads_bench.py [--layouts 1x2 2x1] [--repeats 2] [--steps 60]
       [--config configs/kits19.yaml] [--block final_training] [--roi 64 64 64]

A layout JxT runs J training jobs side by side, each a ``train_bench.py`` process
with T torch threads (the workflow's own training code, as a Snakemake job with
``threads: T`` runs it). Each job prints its seconds per step; with the jobs' timed
steps overlapping, the layout's throughput is the sum over jobs of steps per
second. Layouts alternate within each repeat, so a noisy machine slows all of
them alike. Prints, per layout, the jobs' seconds per step, the steps per minute
of all jobs together and the throughput relative to the first layout: whether
independent training jobs (group models, the experiment set's final models) are
done sooner by ``--set-threads train_group=T train_final=T`` with a smaller T and
more jobs at once.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_layout(text: str) -> tuple:
    jobs, threads = (int(v) for v in text.lower().split("x"))
    if jobs < 1 or threads < 1:
        raise argparse.ArgumentTypeError(f"layout {text}: jobs and threads must be at least 1")
    return jobs, threads


def run_layout(jobs: int, threads: int, args) -> list:
    """Seconds per training step of each of `jobs` side-by-side train_bench processes."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_bench.py"), "--config", args.config,
           "--block", args.block, "--steps", str(args.steps), "--threads", str(threads),
           "--roi", *(str(v) for v in args.roi)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(jobs)]
    seconds = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"train_bench.py failed (rc {proc.returncode}): {(err.strip().splitlines() or [''])[-1]}")
        row = next(line.split("\t") for line in out.splitlines() if line.startswith("cpu\t"))
        seconds.append(float(row[1]))
    return seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layouts", nargs="+", type=parse_layout, default=[(1, 2), (2, 1)])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--config", default=str(ROOT / "configs" / "kits19.yaml"))
    ap.add_argument("--block", default="final_training")
    ap.add_argument("--roi", type=int, nargs=3, default=[64, 64, 64])
    args = ap.parse_args(argv)

    results = {layout: [] for layout in args.layouts}
    for repeat in range(args.repeats):
        order = args.layouts if repeat % 2 == 0 else args.layouts[::-1]
        for jobs, threads in order:
            seconds = run_layout(jobs, threads, args)
            results[(jobs, threads)].append(seconds)
            print(f"repeat {repeat + 1}, {jobs}x{threads}: s/step per job {', '.join(f'{s:.3f}' for s in seconds)}",
                  flush=True)

    def throughput(runs):  # steps per second of all jobs together, median over repeats
        return statistics.median(sum(1 / s for s in seconds) for seconds in runs)

    first = throughput(results[args.layouts[0]])
    print(f"config {args.config} [{args.block}], {args.steps} timed steps per job, ROI {args.roi}, "
          f"{args.repeats} repeat(s), medians")
    print("layout\tjobs\tthreads_per_job\tsec_per_step_per_job\tsteps_per_min_all_jobs\tthroughput_vs_first")
    for (jobs, threads), runs in results.items():
        per_job = statistics.median(s for seconds in runs for s in seconds)
        print(f"{jobs}x{threads}\t{jobs}\t{threads}\t{per_job:.4f}\t{60 * throughput(runs):.0f}\t"
              f"{throughput(runs) / first:.2f}")


if __name__ == "__main__":
    main()
