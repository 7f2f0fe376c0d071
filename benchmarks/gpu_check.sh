#!/usr/bin/env bash
# The GPU checks of issue 12 as one prepared script, for a machine with CUDA:
#
# 1. the CUDA tests (tests/gpu and the CUDA cases of tests/test_amp_grad_scaler.py);
# 2. the issue's benchmark: economy and business every step against plain training on
#    GPT-2 small (124 M parameters, batch 8 x 512), 3c3d, the transformer and ResNet-18
#    with BatchNorm (batch 128, 32x32; the exact per-sample route, the slowest, last:
#    each problem's table is in gpu_check.log as soon as it is done);
# 3. the rest of the CPU targets' problems on the GPU: the digits MLP, the 64-layer MLP
#    and 3c3d under economy, full and hess_max_ev, and ResNet-18 with the batch replay
#    on one sample (economy/replay1, business/replay1);
# 4. the per-sample cross-entropy losses: recomputed with the class axis second (the
#    slow CUDA "spatial" softmax of GPT-2's loss), moved last, by logsumexp, and read
#    from the graph as LossCapture does since 2026-12-01 (benchmarks/class_axis.py);
# 5. the Linear groups' statistics eager, compiled, and compiled as CUDA graphs
#    (torch.compile mode="reduce-overhead", benchmarks/compile_stats.py): what
#    capturing the statistics would save a host-bound step, before building it.
#
# The results files are named after the card (overhead.py does that) and are written
# to $OUT when it is set (the device tool's output folder), else to
# benchmarks/results/gpu-check; part 3's go to the folders extra-small and
# extra-replay1 inside it. Each part has its own time limit, and a failing part does
# not stop the next one. PARTS (default "1 2 3 4 5") picks the parts to run; ROUNDS, STEPS
# and WARMUP (default 3, 5 and 2) set the timed blocks of parts 2 and 3.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#   PYTHON=.venv/bin/python PARTS="2" bash benchmarks/gpu_check.sh
set -uo pipefail
py=${PYTHON:-python3}
parts=" ${PARTS:-1 2 3 4 5} "
blocks=(--rounds "${ROUNDS:-3}" --steps "${STEPS:-5}" --warmup "${WARMUP:-2}")
out=${OUT:-benchmarks/results/gpu-check}
export PYTHONUNBUFFERED=1
"$py" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.__version__, torch.cuda.get_device_name())' || exit 1
mkdir -p "$out/extra-small" "$out/extra-replay1"

cuda_tests() {
    echo "== 1. CUDA tests"
    timeout 150 "$py" -m pytest -q -x -p no:cacheprovider tests/gpu \
        tests/test_amp_grad_scaler.py > "$out/gpu_tests.log" 2>&1
    echo "rc=$?"; tail -n 15 "$out/gpu_tests.log"
}

issue_problems() {
    echo "== 2. issue 12's GPU benchmark"
    timeout 300 "$py" benchmarks/overhead.py --device cuda \
        --problems gpt2_small 3c3d transformer resnet18_cifar \
        --configs economy business \
        "${blocks[@]}" --output-dir "$out" > "$out/gpu_check.log" 2>&1
    echo "rc=$?"
    grep -E '^\| |^### |Timed|^\[' "$out/gpu_check.log" | grep -v 'round' | tail -n 40
}

other_problems() {
    echo "== 3. the small problems and ResNet-18's replay on one sample"
    timeout 150 "$py" benchmarks/overhead.py --device cuda \
        --problems mlp deep_mlp 3c3d --configs economy full hess_max_ev \
        "${blocks[@]}" --output-dir "$out/extra-small" 2>/dev/null
    echo "rc=$?"
    timeout 120 "$py" benchmarks/overhead.py --device cuda \
        --problems resnet18_cifar --configs economy/replay1 business/replay1 \
        "${blocks[@]}" --output-dir "$out/extra-replay1" 2>/dev/null
    echo "rc=$?"
}

loss_routes() {
    echo "== 4. per-sample cross-entropy losses"
    timeout 60 "$py" benchmarks/class_axis.py --device cuda --repeats 7 \
        > "$out/class-axis-cuda.md" 2>&1
    echo "rc=$?"; cat "$out/class-axis-cuda.md"
}

compiled_statistics() {
    echo "== 5. the groups' statistics eager, compiled, as CUDA graphs"
    for mode in default reduce-overhead; do
        timeout 120 "$py" benchmarks/compile_stats.py --device cuda --mode "$mode" \
            --problems mlp deep_mlp 3c3d > "$out/compile-stats-$mode.md" 2>&1
        echo "rc=$? ($mode)"; grep '^|' "$out/compile-stats-$mode.md"
    done
}

[[ "$parts" == *" 1 "* ]] && cuda_tests
[[ "$parts" == *" 2 "* ]] && issue_problems
[[ "$parts" == *" 3 "* ]] && other_problems
[[ "$parts" == *" 4 "* ]] && loss_routes
[[ "$parts" == *" 5 "* ]] && compiled_statistics
exit 0
