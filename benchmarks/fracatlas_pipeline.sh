#!/usr/bin/env bash
# The whole pipeline on FracAtlas, read in place (never copied), in a throw-away clone of this
# checkout: `dvc repro` with params.yaml's sources replaced by one fracatlas source, plus any
# `key=value` overrides given as arguments (dotted params keys, YAML values). Prints the wall
# time and, per model and baseline, the test metrics from metrics/compare.json.
#
#   benchmarks/fracatlas_pipeline.sh                          # the default (CPU) profile
#   benchmarks/fracatlas_pipeline.sh models.cnn.epochs=60 repair.image_size=256
#   benchmarks/fracatlas_pipeline.sh --hold-out-view lateral  # a stand-in for a new site
#
# --hold-out-view VIEW (frontal, lateral or oblique; first argument): the pipeline sees only
# the images without that view flag; those with it are then scored, without retraining, by
# `bonexray validate fracatlas_VIEW` (metrics/external/fracatlas_VIEW.json). Both sets are
# folders of links into FracAtlas (fracatlas_view_split.py).
#
# FracAtlas is read from ../shared/data/fracatlas or $BONEXRAY_FRACATLAS. Needs `make install`.
# The clone's own src/ is imported, not the editable install's checkout: HEAD is measured.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source_dir=$(realpath "${BONEXRAY_FRACATLAS:-$repo/../shared/data/fracatlas}")
[[ -f $source_dir/dataset.csv ]] || { echo "no FracAtlas at $source_dir" >&2; exit 2; }
held_out=""
if [[ ${1:-} == --hold-out-view ]]; then
  held_out=${2:?--hold-out-view needs a view: frontal, lateral or oblique}
  shift 2
fi
work=$(realpath -m "${BONEXRAY_BENCH_DIR:-$(mktemp -d)}")
export PATH="$repo/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
export PYTHONPATH="$work/repo/src${PYTHONPATH:+:$PYTHONPATH}"

git clone --quiet "$repo" "$work/repo"
cd "$work/repo"
if [[ -z $held_out ]]; then
  ln -s "$source_dir" data  # census lists every file under data/: here, FracAtlas itself
else
  python benchmarks/fracatlas_view_split.py "$source_dir" "$held_out" data "$work/held_out"
fi
python - "$held_out" "$@" <<'EOF'
import sys

import yaml

from bonexray.io.params import load, section

params = load("params.yaml")
params["sources"] = {"fracatlas": {"kind": "fracatlas", "path": "data"}}
if sys.argv[1]:  # a held-out view: data/ holds links to files outside the clone
    section(params, "census")["follow_outside_links"] = True
for override in sys.argv[2:]:
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
if [[ -n $held_out ]]; then
  bonexray validate "fracatlas_$held_out" --kind fracatlas --path "$work/held_out"
fi
