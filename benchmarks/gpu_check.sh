#!/usr/bin/env bash
# The GPU benchmark of issue 12 as one prepared script, for a machine with CUDA:
# economy and business every step against plain training on ResNet-18 with BatchNorm
# (batch 128, 32x32), GPT-2 small (124 M parameters, batch 8 x 512), 3c3d and the
# transformer. The results file is named after the card (overhead.py does that) and
# is written to $OUT when it is set (the device tool's output folder), else to
# benchmarks/results.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
set -euo pipefail
out=${OUT:-benchmarks/results}
mkdir -p "$out"
python -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name())'
python benchmarks/overhead.py --device cuda \
    --problems resnet18_cifar gpt2_small 3c3d transformer \
    --configs economy business \
    --rounds 3 --steps 5 --warmup 2 \
    --output-dir "$out" 2>&1 | tee "$out/gpu_check.log"
