"""A sweep's finished results as the report reads them: checked against the plan, one member per seed.

A *configuration* is a head on a layer combination; each of its seeds is a
:class:`Member`: saved predictions of every part, and for each test language
and condition the calibration map on the logit difference,
``P(y = 1) = sigmoid(slope (z1 - z0) + bias)`` (uncalibrated ``(1, 0)``,
temperature scaling ``(1 / T, 0)``, temperature plus bias the fitted pair).

Four kinds of configuration:

- ``trained``: a sweep task's runs, read from ``results/<task>/``. A result
  whose ``config.json`` does not match the plan (another head, layers, seed,
  features store or training recipe) is refused, naming the folder and the
  setting: a stale result would otherwise be reported silently.
- ``late``: late fusion, built here from the ``single`` runs with no new
  training. Member ``s`` averages the class probabilities of the layers'
  single heads of seed ``s``; its "logits" are ``(0, logit p)`` so that
  temperature scaling and temperature plus bias are fitted on its dev sets
  exactly as train-heads fits them on a head's logits.
- ``ensemble``: the control of late fusion's ensembling, heads of one layer
  that differ only by seed averaged as late fusion averages layers
  (:func:`seed_ensemble`); no new training.
- ``constant``: the floor, a constant prediction at the English training base
  rate (one member; calibration leaves it unchanged).

``learned`` (:func:`xfuse.heads.diagnostics.learned`) comes from a run's
``metrics.json`` where it was recorded, else it is decided here from the
saved dev-en predictions; the training base rate then comes from the
features store, or, where the store is gone, from the training file named in
the plan (as it is now; the report says so).

Usage::

    plan, configurations, status, conditions, notes = load_sweep(Path("sweeps/e5/plan.json"))
    late = late_fusion([configurations[("single", (4,))], configurations[("single", (12,))]], base_rate, conditions)
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from scipy.special import log_softmax, logsumexp

from xfuse.heads.diagnostics import learned
from xfuse.heads.result_files import describe, result_problems
from xfuse.errors import XfuseError
from xfuse.sweep.plan import TRAIN_ENVIRONMENT, TRAIN_PER_TASK, load_plan, sweep_paths, sweep_status
from xfuse.calibration.temperature import BiasScaler, TemperatureScaler
from xfuse.heads.train import CONDITIONS

@dataclass
class Member:
    """One seed of a configuration."""
    seed: int
    parts: dict  # part name ("dev-en", "test-de", ...) -> {"logits": (N, 2), "labels": (N,), "ids": (N,)}
    calibrations: dict  # lang -> condition -> (slope, bias)
    valid: dict  # lang -> condition -> False where the fit was anti-informative (a clamp, not a calibration)
    dev_en_loss: float
    learned: dict
    zero_shot_temperature: float
    seconds: Optional[float] = None
    processor: Optional[str] = None  # what the run's arithmetic ran on (processor_label)


def _read_predictions(folder: Path) -> dict:
    with np.load(folder / "predictions.npz") as arrays:
        names = sorted({key.split("/")[0] for key in arrays.files})
        return {name: {part: arrays[f"{name}/{part}"] for part in ("logits", "labels", "ids")} for name in names}


def check_result(folder: Path, plan: dict, task: dict) -> None:
    """Refuse a result whose recorded config differs from what the plan asks of its task."""
    try:
        recorded = json.loads((folder / "config.json").read_text())["train"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        raise XfuseError(f"{folder}: no readable config.json; not a result of this plan (remove it and rerun the "
                         "task)") from None
    expected = {"head": task["head"], "layers": ",".join(map(str, task["layers"])), "seed": task["seed"],
                "store": plan["store"]}
    settings = plan.get("train_resolved", plan["train"])
    expected |= {key: value for key, value in settings.items() if key not in TRAIN_ENVIRONMENT + TRAIN_PER_TASK}
    for key, value in expected.items():
        got = json.loads(json.dumps(recorded.get(key)))
        if got != value:
            raise XfuseError(f"{folder}: a stale or foreign result: {key} is {got!r} there, the plan asks for "
                             f"{value!r}; remove it and rerun the task (xfuse sweep submit)")


def recorded_recipe(folder: Path) -> dict:
    """The training settings a result was made with, less the per-task and environment ones."""
    recorded = json.loads((folder / "config.json").read_text())["train"]
    return {key: value for key, value in recorded.items() if key not in TRAIN_PER_TASK + TRAIN_ENVIRONMENT}


def _check_results_agree(plan: dict, read: list) -> None:
    """Every result from the plan's store, with every planned language, and (for plans that predate the recorded
    recipe) all with one recipe."""
    from xfuse.features.store import STORE_FILE, FeatureStore

    store = Path(plan["store"])
    expected = FeatureStore(store).settings.get("fingerprint") if (store / STORE_FILE).is_file() else None
    languages = set(plan["extract"].get("languages") or ())
    first_recipe = first_folder = first_fingerprint = None
    for task, folder, metrics, _ in read:
        fingerprint = json.loads((folder / "config.json").read_text())["features"].get("fingerprint")
        if expected is not None and fingerprint != expected:
            raise XfuseError(f"{folder}: a stale or foreign result: made from features {str(fingerprint)[:16]}, the "
                             f"plan's store {store} holds {expected[:16]}; remove it and rerun the task")
        if first_fingerprint is not None and fingerprint != first_fingerprint:
            raise XfuseError(f"{folder}: made from other features than {first_folder}; remove the stale result")
        missing = sorted(languages - set(metrics["languages"]))
        if missing:
            raise XfuseError(f"{folder}: no results for language(s) {', '.join(missing)} of the plan; remove it and "
                             "rerun the task")
        recipe = recorded_recipe(folder)
        if "train_resolved" not in plan and first_recipe is not None:
            differing = sorted(key for key in set(recipe) | set(first_recipe) if recipe.get(key) != first_recipe.get(key))
            if differing:
                key = differing[0]
                raise XfuseError(f"{folder}: made with {key} = {recipe.get(key)!r}, {first_folder} with "
                                 f"{first_recipe.get(key)!r}; the results of one report must share a recipe")
        if first_folder is None:
            first_recipe, first_folder, first_fingerprint = recipe, folder, fingerprint


def processor_label(metrics: dict) -> Optional[str]:
    """The processor a run recorded, precise enough to tell CPU models apart where it was recorded so: the model
    name, vendor family/model/stepping and torch's kernel capability, or the GPU; None for runs before it."""
    machine = metrics.get("machine")
    if not machine:
        return None
    if machine.get("gpu"):
        return f"GPU {machine['gpu']}"
    cpu = machine.get("cpu") or {}
    details = "/".join(str(cpu[key]) for key in ("family", "model", "stepping") if key in cpu)
    label = machine.get("processor") or "unknown processor"
    if details:
        label += f" ({cpu.get('vendor', '')} family/model/stepping {details}"
        label += f", {machine['cpu_capability']})" if machine.get("cpu_capability") else ")"
    return label


def _calibration_maps(metrics: dict, lang: str, conditions: tuple) -> tuple:
    maps, valid = {}, {}
    for condition in conditions:
        if condition == "uncalibrated":
            maps[condition] = (1.0, 0.0)
        elif condition in ("zero_shot_ts", "oracle_ts"):
            temperature = (metrics["zero_shot_temperature"] if condition == "zero_shot_ts"
                           else metrics["languages"][lang]["oracle_temperature"])
            maps[condition] = (1.0 / temperature, 0.0)
        else:
            fits = metrics["fits"] if condition.startswith("zero_shot") else metrics["languages"][lang]["fits"]
            maps[condition] = (fits[condition]["slope"], fits[condition]["bias"])
        valid[condition] = metrics["languages"][lang][condition].get("valid", True)
    return maps, valid


def train_base_rate(plan: dict, notes: list) -> float:
    """The English training set's rate of class 1: from the store, else from the plan's training file."""
    from xfuse.features.store import STORE_FILE, FeatureStore

    store = Path(plan["store"])
    if (store / STORE_FILE).is_file():
        with FeatureStore(store).part("train", "en") as part:
            return float(np.mean(part.labels))
    data_dir = plan["extract"].get("data_dir")
    path = Path(data_dir) / "en" / "train.tsv" if data_dir else None
    if path is None or not path.is_file():
        raise XfuseError(f"{plan['store']}: the features store is gone and the plan names no training file to read "
                         "the base rate from; the runs record no learned diagnostics")
    from xfuse.features.data import read_pairs

    labels = np.asarray(read_pairs(path, "train", "en").labels)
    notes.append(f"The features store {store} is gone: the English training base rate ({labels.mean():.4f}) is read "
                 f"from {path} as it is now, which may differ from the file the runs were trained on.")
    return float(labels.mean())


def load_sweep(plan_path: Path) -> tuple:
    """(plan, {configuration: [Member]}, status, conditions, notes) of a sweep's finished tasks, each checked against the plan."""
    plan = load_plan(plan_path)
    results = sweep_paths(plan_path)["results"]
    status = sweep_status(plan_path)
    if status["damaged"]:
        task = plan["tasks"][status["damaged"][0]]
        folder = results / task["name"]
        more = f"; {len(status['damaged']) - 1} more damaged" if len(status["damaged"]) > 1 else ""
        raise XfuseError(f"{describe(folder, result_problems(folder))}: a damaged result{more}; xfuse sweep submit "
                         "redoes it (xfuse sweep status lists them)")
    if not status["done"]:
        raise XfuseError(f"{plan_path}: no finished task yet; run xfuse sweep submit first")
    notes, base_rate = [], None
    read = []
    for index in status["done"]:
        task = plan["tasks"][index]
        folder = results / task["name"]
        check_result(folder, plan, task)
        metrics = json.loads((folder / "metrics.json").read_text())
        curve = json.loads((folder / "curve.json").read_text())
        read.append((task, folder, metrics, curve))
    conditions = tuple(condition for condition in CONDITIONS
                       if all(condition in m["languages"][lang] for _, _, m, _ in read for lang in m["languages"]))
    configurations = {}
    _check_results_agree(plan, read)
    for task, folder, metrics, curve in read:
        parts = _read_predictions(folder)
        if "learned" in metrics:
            facts = metrics["learned"]
        else:
            if base_rate is None:
                base_rate = train_base_rate(plan, notes)
            facts = learned(parts["dev-en"]["logits"], parts["dev-en"]["labels"], base_rate, seed=task["seed"])
        maps, valid = {}, {}
        for lang in metrics["languages"]:
            maps[lang], valid[lang] = _calibration_maps(metrics, lang, conditions)
        member = Member(seed=task["seed"], parts=parts, calibrations=maps, valid=valid,
                        dev_en_loss=curve[metrics["best_epoch"] - 1]["dev_en_loss"], learned=facts,
                        zero_shot_temperature=metrics["zero_shot_temperature"],
                        seconds=metrics.get("seconds", {}).get("total"), processor=processor_label(metrics))
        configurations.setdefault((task["head"], tuple(task["layers"])), []).append(member)
    return plan, configurations, status, conditions, notes


FITTED = ("uncalibrated", "zero_shot_ts", "oracle_ts", "zero_shot_bias", "oracle_bias")


def _fit_maps(dev: dict, dev_en: dict) -> dict:
    """The four calibrators fitted on a late-fusion member's logits, as train-heads fits them on a head's: arrays
    ``maps`` (5, 2) slope and bias per condition of ``FITTED``, ``valid`` (5,), ``temperature`` (zero-shot)."""
    zero_shot = TemperatureScaler().fit(dev_en["logits"], dev_en["labels"])
    zero_shot_bias = BiasScaler().fit(dev_en["logits"], dev_en["labels"])
    oracle = TemperatureScaler().fit(dev["logits"], dev["labels"])
    oracle_bias = BiasScaler().fit(dev["logits"], dev["labels"])
    maps = [(1.0, 0.0), (1.0 / zero_shot.temperature_, 0.0), (1.0 / oracle.temperature_, 0.0),
            (zero_shot_bias.slope_, zero_shot_bias.bias_), (oracle_bias.slope_, oracle_bias.bias_)]
    valid = [True, not zero_shot.anti_informative_, not oracle.anti_informative_,
             not zero_shot_bias.anti_informative_, not oracle_bias.anti_informative_]
    return {"maps": np.array(maps, dtype=np.float64), "valid": np.array(valid), "temperature": np.array(zero_shot.temperature_)}


def _fitted_maps(dev: dict, dev_en: dict, cache=None) -> tuple:
    """(maps, valid, zero-shot temperature) by condition, from ``cache`` (:mod:`xfuse.report.cache`) when it has them."""
    if cache is None:
        fitted = _fit_maps(dev, dev_en)
    else:
        from xfuse.report.cache import content_key

        key = content_key("late-fit", dev["logits"], dev["labels"], dev_en["logits"], dev_en["labels"])
        fitted = cache.load(key)
        if fitted is None:
            fitted = _fit_maps(dev, dev_en)
            cache.store(key, fitted)
    maps = {condition: (float(slope), float(bias)) for condition, (slope, bias) in zip(FITTED, fitted["maps"])}
    valid = {condition: bool(flag) for condition, flag in zip(FITTED, fitted["valid"])}
    return maps, valid, float(fitted["temperature"])


def _fused_log_probabilities(chosen: list, name: str) -> np.ndarray:
    """(N, 2) log of the mean of the members' class probabilities on part ``name``."""
    return logsumexp(np.stack([log_softmax(m.parts[name]["logits"].astype(np.float64), axis=1) for m in chosen]),
                     axis=0) - np.log(len(chosen))


def _common_seeds(layer_members: list) -> list:
    return sorted(set.intersection(*[{member.seed for member in members} for members in layer_members]))


def fused_dev_en_loss(layer_members: list) -> float:
    """The dev-en NLL of the late fusion of ``layer_members``, mean over their common seeds (selects k)."""
    losses = [float("inf")]  # no common seed: never chosen
    for seed in _common_seeds(layer_members):
        chosen = [next(member for member in members if member.seed == seed) for members in layer_members]
        log_p = _fused_log_probabilities(chosen, "dev-en")
        losses.append(float(-np.mean(log_p[np.arange(len(log_p)), chosen[0].parts["dev-en"]["labels"]])))
    return float(np.mean(losses[1:])) if len(losses) > 1 else losses[0]


def late_fusion(layer_members: list, base_rate: float, conditions: tuple, cache=None) -> list:
    """Members of the late fusion of single heads: ``layer_members[i]`` are layer i's members; seeds matched.

    Only seeds every layer has are fused. The fused class-1 probability is the
    mean of the members' class-1 probabilities. A fused seed counts as
    ``learned`` only when its fused dev-en output beats the prior and every
    fused run learned.
    """
    fused = []
    for seed in _common_seeds(layer_members):
        chosen = [next(member for member in members if member.seed == seed) for members in layer_members]
        parts = {}
        for name, reference in chosen[0].parts.items():
            for member in chosen[1:]:
                if not np.array_equal(member.parts[name]["ids"], reference["ids"]):
                    raise XfuseError(f"late fusion: {name} examples differ between single runs of seed {seed}")
            log_p = _fused_log_probabilities(chosen, name)
            parts[name] = {"logits": np.stack([np.zeros(len(log_p)), log_p[:, 1] - log_p[:, 0]], axis=1),
                           "labels": reference["labels"], "ids": reference["ids"]}
        maps, valid, temperatures = {}, {}, []
        for lang in chosen[0].calibrations:
            all_maps, all_valid, temperature = _fitted_maps(parts[f"dev-{lang}"], parts["dev-en"], cache)
            maps[lang] = {condition: all_maps[condition] for condition in conditions}
            valid[lang] = {condition: all_valid[condition] for condition in conditions}
            temperatures.append(temperature)
        dev_en = parts["dev-en"]
        facts = learned(dev_en["logits"], dev_en["labels"], base_rate, seed=seed)
        # a fusion with a run at the prior is not counted as learned, whatever the fused output does
        facts["members_learned"] = all(bool(m.learned["learned"]) for m in chosen)
        facts["learned"] = bool(facts["learned"]) and facts["members_learned"]
        fused.append(Member(seed=seed, parts=parts, calibrations=maps, valid=valid, dev_en_loss=facts["loss"],
                            learned=facts, zero_shot_temperature=temperatures[0]))
    return fused


def seed_ensemble(members: list, size: int, base_rate: float, conditions: tuple, cache=None) -> list:
    """Ensembles of ``size`` heads of one configuration that differ only by seed: late fusion without the layers.

    Member ``i`` averages the class probabilities of the runs of seeds ``i, i+1, ...,
    i+size-1`` (in seed order, wrapping around) and carries seed ``i``'s
    number; fitted and marked ``learned`` as :func:`late_fusion` does. The
    control for late fusion's ensembling. Neighbouring members share runs, so
    they are not independent replicates: the report describes them and tests
    nothing on them. Needs more seeds than ``size`` (with as many, every member
    would be the same ensemble).
    """
    ordered = sorted(members, key=lambda member: member.seed)
    if size < 2 or len(ordered) <= size:
        return []
    shifted = [[dataclasses.replace(ordered[(i + j) % len(ordered)], seed=ordered[i].seed) for i in range(len(ordered))]
               for j in range(size)]
    return late_fusion(shifted, base_rate, conditions, cache)


def constant_member(template: Member, base_rate: float, conditions: tuple) -> Member:
    """The floor: ``P(y = 1)`` equal to the English training base rate for every example, in every condition."""
    constant = float(np.log(base_rate) - np.log1p(-base_rate))
    parts = {name: {"logits": np.tile([0.0, constant], (len(part["labels"]), 1)), "labels": part["labels"],
                    "ids": part["ids"]} for name, part in template.parts.items()}
    maps = {lang: {condition: (1.0, 0.0) for condition in conditions} for lang in template.calibrations}
    valid = {lang: {condition: True for condition in conditions} for lang in template.calibrations}
    dev_en = parts["dev-en"]
    facts = learned(dev_en["logits"], dev_en["labels"], base_rate)
    return Member(seed=0, parts=parts, calibrations=maps, valid=valid, dev_en_loss=facts["loss"], learned=facts,
                  zero_shot_temperature=1.0)
