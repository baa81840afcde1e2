#!/usr/bin/env bash
# The convergence table of the trustworthy-training issue for one recipe: single (layers 0, 7, 12), dlfa/aif/concat/
# mean (lower layer 0 and 7 with the last) and scalar_mix (all), seeds 0-2, each beside the same seed trained three
# times as many epochs without early stopping. NAME picks spec-NAME.json, the folder NAME/ and the table NAME.md in
# capitals. Both steps resume where they were stopped. Run from the repository root after the extraction:
#   bash docs/experiments/training-recipe/run-convergence.sh convergence-m20   # the default recipe (CONVERGENCE-M20.md)
#   bash docs/experiments/training-recipe/run-convergence.sh convergence       # the first candidate, patience 5
set -euo pipefail
here=docs/experiments/training-recipe
name=${1:?usage: run-convergence.sh NAME (spec-NAME.json beside this script)}
store=$(python -c "from xfuse.features import find_store; print(find_store('cache'))")
if [ ! -f $here/$name/default/plan.json ]; then
  xfuse sweep plan --spec $here/spec-$name.json --out $here/$name/default --store "$store"
fi
xfuse sweep submit --plan $here/$name/default/plan.json --executor local --workers 2 --quiet
python $here/convergence.py references $here/$name
python $here/convergence.py table $here/$name > $here/$(echo "$name" | tr a-z A-Z).md
