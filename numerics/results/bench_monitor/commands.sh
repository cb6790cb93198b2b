#!/bin/bash
# the training-loop monitor suite on this 2-core CPU after the issue-16 changes, re-run after
# small leaves' S2 sums were packed (_ghost_norms.sq_norms) (commands as committed)
cd "$(dirname "$0")/../../.."  # the repository root
echo "start $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python -m numerics.bench --suite monitor --reps 9 --models mlp,transformer --json > numerics/results/bench_monitor/monitor.jsonl
echo "done $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
