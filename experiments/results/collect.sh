#!/usr/bin/env bash
# Copy a finished suite's report, analysis, figures and per-study records (study.json, the
# learning rates tried) from a run folder into experiments/results/<name>/ for committing.
# Trial records (one JSON per trial, with curves) stay in the run folder.
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
done
echo "collected $src -> $dst"
