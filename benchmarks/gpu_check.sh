#!/usr/bin/env bash
# GPU check of xfuse train-heads, run on a GPU machine from the repository root (no install needed; the machine's
# python3 must have torch, h5py, scipy, scikit-learn, click, tqdm and matplotlib):
#   bash benchmarks/gpu_check.sh [OUT]
# Writes a synthetic store of mBERT's shape (hidden 768, 4 stored layers, 8,561 training pairs, 2,000 per evaluated
# part), trains the same aif head with --device cuda and --device cpu (3 epochs, no early stopping), prints both
# times and how far apart their results are, and runs the loader tests.
set -euo pipefail
out="${1:-/tmp/xfuse-gpu-check}"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
python3 benchmarks/train_scale.py --out "$out/store" --train-pairs 8561 --evaluated dev-en,test-en,dev-de,test-de --write-only
for device in cuda cpu; do
  start=$(date +%s.%N)
  python3 -m xfuse train-heads --cache "$out/store" --layers 4,12 --head aif --device "$device" --epochs 3 --patience 3 \
    --out "$out/results-$device" | tail -4
  end=$(date +%s.%N)
  echo "train-heads --device $device: $(python3 -c "print(f'{$end - $start:.1f}')") s wall"
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
out = Path(sys.argv[1])
runs = {d: next((out / f"results-{d}").iterdir()) for d in ("cuda", "cpu")}
metrics = {d: json.loads((r / "metrics.json").read_text()) for d, r in runs.items()}
for d, m in metrics.items():
    print(d, "device", m["device"], "threads", m["threads"], "seconds", {k: round(v, 1) for k, v in m["seconds"].items()})
curves = {d: json.loads((r / "curve.json").read_text()) for d, r in runs.items()}
print("dev-en loss per epoch, cuda:", [round(e["dev_en_loss"], 5) for e in curves["cuda"]])
print("dev-en loss per epoch, cpu: ", [round(e["dev_en_loss"], 5) for e in curves["cpu"]])
a, b = (np.load(r / "predictions.npz") for r in runs.values())
print("max |logit difference| on test-de:", float(np.abs(a["test-de/logits"] - b["test-de/logits"]).max()))
PY
python3 - "$out" <<'PY'
import sys
from pathlib import Path
import numpy as np, torch
from xfuse.features import FeatureStore
from xfuse.heads.loader import PartReader
with FeatureStore(Path(sys.argv[1]) / "store").part("train", "en") as part:
    for memory in (4 << 30, 400 << 20):  # whole part on the GPU, then windows
        readers = [PartReader(part, [4, 12], memory_bytes=memory, device=d) for d in ("cpu", "cuda")]
        epochs = [r.epoch(64, np.random.default_rng(0)) for r in readers]
        same = all(torch.equal(x.features, y.features.cpu()) and torch.equal(x.mask, y.mask.cpu())
                   and np.array_equal(x.pairs, y.pairs) for x, y in zip(*epochs))  # batches compared as they come
        print(f"loader on cuda equals loader on cpu ({'whole part' if readers[1].resident else 'windows'}): {same}")
PY
python3 -m pytest -q -p no:cacheprovider tests/heads/test_loader.py
