#!/usr/bin/env bash
# Real SLURM test: installs Debian's slurm-wlm (and munge) if missing, starts a
# single-node cluster on localhost, runs the tiny pipeline through the slurm
# executor with profiles/slurm, checks the results, stops the daemons it started.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SNAKEMAKE="$ROOT/.venv/bin/snakemake"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
CLUSTER=$(mktemp -d /tmp/boxseg-slurm.XXXXXX)
WORK=$(mktemp -d /tmp/boxseg-slurm-work.XXXXXX)
trap 'bash "$ROOT/tests/slurm/cluster.sh" stop "$CLUSTER"' EXIT
bash "$ROOT/tests/slurm/cluster.sh" start "$CLUSTER"
cp "$ROOT/tests/tiny_config.yaml" "$WORK/config.yaml"
cd "$WORK"
# timeout -s INT: on SIGTERM Snakemake would wait for running jobs.
timeout -s INT 1200 "$SNAKEMAKE" --snakefile "$ROOT/Snakefile" --configfile config.yaml \
  --profile "$ROOT/profiles/slurm" --jobs 4 --slurm-no-account \
  --slurm-status-command squeue --slurm-init-seconds-before-status-checks 1 \
  --set-resources train_group:mem_mb=2000 train_group:cpus_per_task=2 \
  train_final:mem_mb=2000 train_final:cpus_per_task=2 \
  fuse:mem_mb=2000 infer:mem_mb=2000 \
  --default-resources slurm_partition=debug mem_mb=1000 runtime=30 cpus_per_task=1 \
  2>&1 | tee snakemake.out
rows=$(($(wc -l <results/metrics.tsv) - 1))
[ "$rows" -eq 8 ] || { echo "FAIL: expected 8 metrics rows (4 methods x 2 post-processings), got $rows"; exit 1; }
n_submitted=$(grep -c "has been submitted with SLURM jobid" snakemake.out || true)
[ "$n_submitted" -ge 15 ] || { echo "FAIL: only $n_submitted jobs went through sbatch"; exit 1; }
echo "SLURM test: $n_submitted jobs ran through sbatch, results checked"
echo "1 passed, 0 failed"
cd "$ROOT" && rm -rf "$WORK"
