"""What made a sweep's results: versions, the features store's identity, per-file data counts, measured times.

Read from the features store when it is there; a report on results whose
store is gone (a committed study, say) takes the store's settings from a
result's ``config.json`` and says that the per-file counts are unavailable.

Usage::

    facts = provenance(plan, Path("sweeps/e5/plan.json"), configurations)
"""

import json
import platform
from pathlib import Path

import numpy as np

from xfuse import __version__
from xfuse.sweep.plan import sweep_paths

NOT_RECORDED = "not recorded"  # the processor of a run made before runs recorded it
STORE_KEYS = ("encoder", "encoder_revision", "tokenizer_sha256", "fingerprint", "prefix", "max_length", "dtype")


def provenance(plan: dict, plan_path: Path, configurations: dict) -> dict:
    import scipy
    import torch
    import transformers

    from xfuse.features.store import STORE_FILE, FeaturePart, FeatureStore

    files, leakage, settings = [], None, None
    store_dir = Path(plan["store"])
    if (store_dir / STORE_FILE).is_file():
        store = FeatureStore(store_dir)
        settings = store.settings
        for path in store.part_paths():
            with FeaturePart(path) as part:
                files.append({key: part.attrs.get(key, 0) for key in ("split", "lang", "num_pairs",
                                                                      "dropped_not_translated", "dropped_empty",
                                                                      "dropped_unlabelled")}
                             | {"file": Path(part.attrs["data_file"]).name})
                if "leakage" in part.attrs:
                    leakage = json.loads(part.attrs["leakage"])
        order = {"train": 0, "dev": 1, "test": 2}
        files.sort(key=lambda f: (order[f["split"]], f["lang"]))
    else:
        results = sweep_paths(plan_path)["results"]
        first = next(iter(sorted(results.glob("*/config.json"))), None)
        settings = json.loads(first.read_text())["features"] if first else {}
    processors, per_configuration, seeds_by_processor = {}, {}, {}
    for key, members in configurations.items():
        for member in members:
            if member.processor is not None or key[0] not in ("late", "ensemble", "constant"):
                processors[member.processor or NOT_RECORDED] = processors.get(member.processor or NOT_RECORDED, 0) + 1
                per_configuration.setdefault(key, set()).add(member.processor or NOT_RECORDED)
                seeds_by_processor.setdefault(key, {}).setdefault(member.processor or NOT_RECORDED,
                                                                  []).append(member.seed)
    seconds = {}
    for (head, _), members in configurations.items():
        for member in members:
            if member.seconds is not None:
                seconds.setdefault(head, []).append(member.seconds)
    timings_path = Path(plan_path).parent / "timings.json"
    return {
        "versions": {"xfuse": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__, "scipy": scipy.__version__},
        "store": {key: settings.get(key) for key in STORE_KEYS},
        "store_present": bool(files),
        "store_path": str(store_dir),
        "files": files,
        "leakage": leakage,
        "task_seconds": {head: {"runs": len(values), "mean": float(np.mean(values)), "total": float(np.sum(values))}
                         for head, values in sorted(seconds.items())},
        "timings": json.loads(timings_path.read_text()) if timings_path.is_file() else {},
        "processors": dict(sorted(processors.items())),
        "processors_per_configuration": {f"{head} {list(layers)}": sorted(found) for (head, layers), found in
                                         sorted(per_configuration.items())},
        # configuration -> processor -> the seeds that ran on it (for the findings' processor check)
        "seeds_by_processor": {key: {name: sorted(seeds) for name, seeds in sorted(found.items())}
                               for key, found in sorted(seeds_by_processor.items())},
    }
