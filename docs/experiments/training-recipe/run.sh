#!/usr/bin/env bash
# First round of the training-recipe evidence (the trustworthy-training issue): the previous recipe against one
# candidate (train-en standardisation, warm-up and cosine decay, at least 6 epochs, patience 4, at most 20, no decay on
# 1-D parameters), and the same at learning rate 1e-3 instead of 3e-3 on the two configurations the committed study showed stuck at the prior (single on the last layer,
# aif fusing the embedding output with the last), seeds 0-2. Run from the repository root after the extraction:
#   bash docs/experiments/training-recipe/run.sh
# The specs spell out the whole recipe (the defaults of xfuse train-heads have changed since); a folder already
# planned is resumed (only missing runs are trained): delete it to recompute from its spec.
set -euo pipefail
here=docs/experiments/training-recipe
store=$(python -c "from xfuse.features import find_store; print(find_store('cache'))")
for recipe in previous candidate candidate-lr1e-3; do
  [ -f $here/$recipe/plan.json ] || xfuse sweep plan --spec $here/spec-$recipe.json --out $here/$recipe --store "$store"
  xfuse sweep submit --plan $here/$recipe/plan.json --executor local --workers 2 --quiet
done
python $here/summarize.py $here/previous $here/candidate $here/candidate-lr1e-3 > $here/README.md
