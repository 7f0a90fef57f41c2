#!/usr/bin/env bash
# The whole pipeline on FracAtlas, read in place (never copied), in a throw-away clone of this
# checkout: `dvc repro` with params.yaml's sources replaced by one fracatlas source, plus any
# `key=value` overrides given as arguments (dotted params keys, YAML values). Prints the wall
# time and, per model and baseline, the test metrics from metrics/compare.json.
#
#   benchmarks/fracatlas_pipeline.sh                          # the default (CPU) profile
#   benchmarks/fracatlas_pipeline.sh models.cnn.epochs=60 repair.image_size=256
#
# FracAtlas is read from ../shared/data/fracatlas or $BONEXRAY_FRACATLAS. Needs `make install`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source_dir=$(realpath "${BONEXRAY_FRACATLAS:-$repo/../shared/data/fracatlas}")
[[ -f $source_dir/dataset.csv ]] || { echo "no FracAtlas at $source_dir" >&2; exit 2; }
export PATH="$repo/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0

work=${BONEXRAY_BENCH_DIR:-$(mktemp -d)}
git clone --quiet "$repo" "$work/repo"
cd "$work/repo"
ln -s "$source_dir" data  # census lists every file under data/: here, FracAtlas itself
python - "$@" <<'EOF'
import sys

import yaml

from bonexray.io.params import load, section

params = load("params.yaml")
params["sources"] = {"fracatlas": {"kind": "fracatlas", "path": "data"}}
for override in sys.argv[1:]:
    dotted, value = override.split("=", 1)
    section(params, dotted)  # raises ParamsError naming the key if there is none
    parent, _, last = dotted.rpartition(".")
    (section(params, parent) if parent else params)[last] = yaml.safe_load(value)
with open("params.yaml", "w") as f:
    yaml.safe_dump(params, f, sort_keys=False)
EOF
echo "clone: $work/repo; overrides: ${*:-none}"
start=$(date +%s)
dvc repro --quiet
echo "dvc repro: $(( $(date +%s) - start )) s wall on $(nproc) CPUs"
python - <<'EOF'
import json

relabel = json.load(open("metrics/relabel.json"))
print(f"relabel: base model held-out accuracy {relabel['val_accuracy']:.3f} "
      f"on {relabel['n_val']} images; {relabel['n_candidates']} candidates, "
      f"{relabel['n_accepted']} accepted, {relabel['n_rejected']} excluded")
EOF
bonexray compare
