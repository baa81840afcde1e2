#!/usr/bin/env bash
# Reproduces this study from an empty cache into a fresh folder: the embedded encoder's features, the
# train-heads tasks of spec.json, and the report. `xfuse sweep submit --executor local` times its stages into
# OUT/timings.json, which the report's provenance shows. Resumable: run it again after an interruption.
#
# Usage, from the repository root, with PAWS-X in ../shared/pawsx:
#     bash docs/results/pawsx-e5/reproduce.sh [OUT [SPEC]]    # defaults: cache/reproduce/pawsx-e5, this spec.json
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-cache/reproduce/pawsx-e5}
spec=${2:-docs/results/pawsx-e5/spec.json}
xfuse sweep plan --spec "$spec" --out "$out"
xfuse sweep submit --plan "$out/plan.json" --executor local --workers 2 --quiet
xfuse report --plan "$out/plan.json"
echo "report: $out/report/report.md"
