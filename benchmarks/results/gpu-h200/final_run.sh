#!/usr/bin/env bash
# The final device run of 2026-11-30, as it ran (from the repository root, with .whl
# and .gpu_trees carried; both are ignored through .git/info/exclude). Setup here:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 -d .whl \
#     backpack-for-pytorch==1.7.1 unfoldNd==0.2.3 orjson==3.13.0
#   mkdir -p .gpu_trees/base .gpu_trees/flat
#   git archive ce9d1d2 cockpit zoo instruments app | tar -x -C .gpu_trees/base
#   git archive flatroute cockpit zoo instruments app | tar -x -C .gpu_trees/flat
#   cp benchmarks/results/gpu-h200/flat_at.py .gpu_trees/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl \
  && python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
export PYTHONUNBUFFERED=1
ROUNDS=2 STEPS=4 WARMUP=1 PARTS="1 2" bash benchmarks/gpu_check.sh
echo "== replay on one sample"
mkdir -p "$OUT/extra-replay1"
timeout 60 python3 benchmarks/overhead.py --device cuda --problems resnet18_cifar \
  --configs economy/replay1 business/replay1 --rounds 3 --steps 5 --warmup 2 \
  --output-dir "$OUT/extra-replay1" 2>/dev/null | grep "^|"
for t in base flat; do
  echo "== flat route A/B: $t"
  timeout 50 python3 .gpu_trees/flat_at.py .gpu_trees/$t benchmarks/overhead.py \
    --device cuda --problems mlp deep_mlp transformer 3c3d --configs economy \
    --rounds 2 --steps 5 --warmup 2 --output-dir /tmp/$t 2>&1 \
    | grep -E '^\| (plain|economy)|^### |flat route'
done
echo "== gpt2_small economy kernels"
cd benchmarks && timeout 60 python3 gpu_profile.py --problems gpt2_small --configs economy \
  --kernels --top 25 --output-dir "$OUT" 2>&1 | grep -A28 "Self CUDA %" | cut -c1-160 | head -30
