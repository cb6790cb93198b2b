#!/bin/bash
# issue 16: the generic suite on this 2-core CPU, one process per n (commands as committed)
cd "$(dirname "$0")/../../.."  # the repository root
echo "start $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python -m numerics.bench --suite generic --n 64 --reps 15 --vmap-reps 1 --widths 256 --depths 2 --json > numerics/results/bench_issue16/bench16_n64.jsonl
echo "n64 done $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python -m numerics.bench --suite generic --n 512 --reps 9 --vmap-reps 1 --widths 256 --depths 2 --vmap-max-n 64 --json > numerics/results/bench_issue16/bench16_n512.jsonl
echo "n512 done $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
