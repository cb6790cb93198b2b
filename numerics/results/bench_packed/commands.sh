#!/bin/bash
# issue 16, after the public call's program was packed (ghost_program -> Packed: grad_sum and one
# vector; small leaves' S2 in blocked reductions; no loss output): the generic
# suite at n = 64 and n = 512, then the ReLU MLP at n = 64 alone five times (one process
# each), to show the spread of its sub-millisecond ratio. Commands as committed.
cd "$(dirname "$0")/../../.."  # the repository root
D=numerics/results/bench_packed
log() { echo "$1 $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"; }
log start
.venv/bin/python -m numerics.bench --suite generic --n 64 --reps 15 --vmap-reps 1 --widths 256 --depths 2 --json > $D/generic_n64.jsonl
log "n64 done"
.venv/bin/python -m numerics.bench --suite generic --n 512 --reps 9 --vmap-reps 1 --widths 256 --depths 2 --vmap-max-n 64 --json > $D/generic_n512.jsonl
log "n512 done"
for i in 1 2 3 4 5; do
  .venv/bin/python -m numerics.bench --suite generic --n 64 --reps 15 --vmap-reps 1 --widths 256 --depths 2 --models mlp --json >> $D/mlp_n64_repeats.jsonl
  log "mlp repeat $i done"
done
