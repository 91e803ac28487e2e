#!/usr/bin/env bash
# The GPU machine's checks in one run: the CUDA tests, the ConvCRF on CPU and CUDA side by
# side, and training steps and sliding-window inference per device for three networks.
#
# usage (on the GPU machine, from the repository root): benchmarks/gpu_check.sh ROIS.npz OUTDIR
#   ROIS.npz: `benchmarks/crf_bench.py --save-rois` made where SimpleITK and the data are.
#   Needs python3 with CUDA torch, monai, numpy, scipy, pandas, pyyaml and pytest (PYTHON=... to pick one).
set -uo pipefail
rois=$1
out=$2
py=${PYTHON:-python3}
mkdir -p "$out"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$py -c 'import torch, monai; print("torch", torch.__version__, "CUDA", torch.version.cuda, "monai", monai.__version__)'
$py benchmarks/crf_bench.py --load-rois "$rois" --devices cpu cuda --no-densecrf --out "$out/crf_cuda.tsv" || status=1
for config in configs/kits19.yaml configs/ibsi.yaml config.yaml; do
    $py benchmarks/train_bench.py --config "$config" --devices cpu cuda --steps 100 || status=1
done
# the GPU budget at the paper's size (configs/gpu.yaml: 1.25 mm, 64 x 128 x 128 patches, batch 6, DynUNet, bf16)
$py benchmarks/train_bench.py --config configs/kits19.yaml configs/gpu.yaml --loss dice_ce --devices cuda --steps 50 \
    --roi 128 128 128 || status=1
$py -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_device.py tests/test_convcrf.py tests/test_training.py tests/test_recipe.py || status=1
exit $status
