#!/usr/bin/env bash
# Launch a torchrun example many times on 2 CPU processes and count the launches that
# fail, optionally beside CPU burners (the load under which the FSDP example's rank
# once aborted at exit, "terminate called without an active exception"). Several
# scripts are launched in turn, so they see the same load:
#
#   bash benchmarks/torchrun_repeat.sh LAUNCHES BURNERS SCRIPT [SCRIPT...]
#   bash benchmarks/torchrun_repeat.sh 16 2 examples/fsdp_digits.py /tmp/old_fsdp.py
set -uo pipefail
launches=$1 burners=$2
shift 2
py=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
burn=()
for _ in $(seq 1 "$burners"); do yes > /dev/null & burn+=($!); done
trap 'kill "${burn[@]}" 2>/dev/null; rm -rf "$work"' EXIT
declare -A failed aborted
for script in "$@"; do failed[$script]=0 aborted[$script]=0; done
for i in $(seq 1 "$launches"); do
    for script in "$@"; do
        dir=$(mktemp -d -p "$work")
        port=$(( 20000 + RANDOM % 20000 ))
        if ! timeout 180 "$py" -m torch.distributed.run --nnodes=1 --nproc_per_node=2 \
            --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:$port \
            "$script" --steps 3 --logdir "$dir" > "$dir.log" 2>&1; then
            failed[$script]=$(( failed[$script] + 1 ))
            grep -q "terminate called without an active exception" "$dir.log" \
                && aborted[$script]=$(( aborted[$script] + 1 ))
        fi
    done
done
echo "| script | launches | failed | of which aborted at exit |"
echo "|---|---:|---:|---:|"
for script in "$@"; do
    echo "| $script | $launches | ${failed[$script]} | ${aborted[$script]} |"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
