#!/usr/bin/env bash
# Copy a finished suite's report, analysis, figures and per-study records (study.json, the
# learning rates tried) from a run folder into experiments/results/<name>/ for committing.
# Trial records (one JSON per trial, with curves) stay in the run folder; each workload gets a
# trials.csv of their scalar fields (one row per trial, no curves) instead.
#   experiments/results/collect.sh runs/c2 c2
set -euo pipefail
src=${1:?run folder}; name=${2:?results name}
dst="$(dirname "$0")/$name"
mkdir -p "$dst"
cp "$src"/report.md "$src"/analysis.csv "$src"/analysis.json "$src"/suite.json \
   "$src"/config.toml "$src"/timing.json "$dst"/
cp -r "$src"/figures "$dst"/
for w in "$src"/*/; do
  w=${w%/}; b=$(basename "$w")
  [ -f "$w/workload.json" ] || continue
  mkdir -p "$dst/$b"
  cp "$w"/report.md "$w"/analysis.csv "$w"/analysis.json "$w"/workload.json "$dst/$b"/
  [ -f "$w/timing.json" ] && cp "$w/timing.json" "$dst/$b"/
  cp -r "$w"/figures "$w"/archs "$dst/$b"/
  [ -d "$w/theory" ] && cp -r "$w/theory" "$dst/$b"/
  (cd "$w" && find trials -name study.json | tar -cf - -T -) | (cd "$dst/$b" && tar -xf -)
  "${PYTHON:-python3}" - "$w" "$dst/$b/trials.csv" <<'PY'
import csv, glob, json, os, sys
cols = ["arch_id", "arch", "depth", "width", "params", "batch_size", "lr", "seed", "status",
        "steps_to_target", "epochs_to_target", "steps_run", "stop_reason", "diverged_by_step",
        "final_loss", "final_accuracy", "B_S_init", "B_S_run_mean", "B_S_at_target",
        "B_simple_at_target", "devices", "wall_s"]
rows = []
for path in glob.glob(os.path.join(sys.argv[1], "trials", "*", "*", "lr*.json")):
    with open(path) as f:
        rec = json.load(f)
    rows.append([rec.get(c) for c in cols])
rows.sort(key=lambda r: (r[0], r[5], r[6], r[7]))
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols)
    w.writerows(rows)
PY
done
echo "collected $src -> $dst"
