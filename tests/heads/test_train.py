"""train-heads end to end on a tiny encoder's features: result layout, determinism, clear errors; the default recipe
on a synthetic task with outlier channels."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xfuse.errors import XfuseError
from xfuse.features.extract import ExtractConfig, extract
from xfuse.heads import train as train_module
from xfuse.heads.result_files import result_problems
from xfuse.heads.train import CONDITIONS, TrainConfig, feature_scaling, train_heads

from tiny import HEAD_LAYERS, outlier_task, write_feature_store


@pytest.fixture(scope="module")
def tiny_store(tiny_encoder, mini_pawsx, tmp_path_factory):
    cache = tmp_path_factory.mktemp("train_cache")
    config = ExtractConfig(encoder=str(tiny_encoder), data_dir=str(mini_pawsx), cache_dir=str(cache), device="cpu",
                           languages=("en", "de", "ja"), max_length=64, shard_size=16)
    return extract(config, progress=False, log=lambda line: None).store_dir


def run(store, tmp_path, **changes):
    settings = dict(store=str(store), layers="1,2", head="dlfa", max_epochs=2, n_resamples=20, batch_size=8,
                    attention_dim=8, out=str(tmp_path / "results"))
    return train_heads(TrainConfig(**(settings | changes)), log=lambda line: None)


def test_result_directory_holds_config_metrics_predictions_and_curve(tiny_store, tmp_path):
    result = run(tiny_store, tmp_path)
    assert result.name == "dlfa-L1_2-s0"
    assert sorted(p.name for p in result.iterdir()) == ["config.json", "curve.json", "manifest.json", "metrics.json",
                                                       "predictions.npz", "standardizer.npz"]
    assert result_problems(result, checksums=True) == []
    config = json.loads((result / "config.json").read_text())
    assert config["train"]["head"] == "dlfa" and config["features"]["hidden_size"] == 32
    metrics = json.loads((result / "metrics.json").read_text())
    assert sorted(metrics["languages"]) == ["de", "en", "ja"]
    for result_of_lang in metrics["languages"].values():
        for condition in CONDITIONS:
            ece = result_of_lang[condition]["ece"]
            assert 0 <= ece["low"] <= ece["high"] <= 1 and 0 <= ece["value"] <= 1
        # temperature scaling never changes the prediction
        assert result_of_lang["zero_shot_ts"]["accuracy"]["value"] == result_of_lang["uncalibrated"]["accuracy"]["value"]
    predictions = np.load(result / "predictions.npz")
    assert predictions["test-de/logits"].shape == (len(predictions["test-de/ids"]), 2)
    assert "dev-ja/logits" in predictions and "train-en/logits" not in predictions
    assert len(json.loads((result / "curve.json").read_text())) in (1, 2)
    assert metrics["machine"]["processor"] and metrics["machine"]["torch"] == torch.__version__
    assert (metrics["machine"]["gpu"] is None) == (metrics["device"] == "cpu")
    assert metrics["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    if Path("/proc/cpuinfo").exists():  # family, model and stepping tell CPU models apart where the name does not
        assert {"vendor", "family", "model", "stepping"} <= set(metrics["machine"]["cpu"])
    assert not list(result.parent.glob(".tmp-*"))


def test_same_seed_same_result_on_cpu(tiny_store, tmp_path):
    first = np.load(run(tiny_store, tmp_path / "a") / "predictions.npz")
    second = np.load(run(tiny_store, tmp_path / "b") / "predictions.npz")
    other = np.load(run(tiny_store, tmp_path / "c", seed=1) / "predictions.npz")
    np.testing.assert_array_equal(first["test-ja/logits"], second["test-ja/logits"])
    assert not np.array_equal(first["test-ja/logits"], other["test-ja/logits"])


@pytest.mark.parametrize("layers, message", [
    ("1,7", r"--layers: layer 7 is out of range"),
    ("1,2,0", r"--head dlfa: expected 2 layer\(s\) in --layers, received 3"),
])
def test_bad_layers_are_refused(tiny_store, tmp_path, layers, message):
    with pytest.raises(XfuseError, match=message):
        run(tiny_store, tmp_path, layers=layers)


def test_layers_missing_from_the_cache_are_refused(tiny_encoder, mini_pawsx, tmp_path):
    config = ExtractConfig(encoder=str(tiny_encoder), data_dir=str(mini_pawsx), cache_dir=str(tmp_path / "c"),
                           device="cpu", languages=("en",), layers="-1")
    store = extract(config, progress=False, log=lambda line: None).store_dir
    with pytest.raises(XfuseError, match=r"--layers: layer\(s\) 1 not in the cache .* \(stored: 2\)"):
        run(store, tmp_path, layers="1,2")


@pytest.fixture(scope="module")
def store_of_260_pairs(tiny_encoder, pawsx_dir, tmp_path_factory):
    from tiny import write_subset

    root = tmp_path_factory.mktemp("bigger")
    data = write_subset(pawsx_dir, root / "data", {"en/train.tsv": 260, "en/dev_2k.tsv": 40, "en/test_2k.tsv": 40,
                                                   "de/dev_2k.tsv": 40, "de/test_2k.tsv": 40})
    config = ExtractConfig(encoder=str(tiny_encoder), data_dir=str(data), cache_dir=str(root / "cache"), device="cpu",
                           languages=("en", "de"), max_length=64, shard_size=64)
    return extract(config, progress=False, log=lambda line: None).store_dir


def test_a_small_memory_setting_gives_the_same_result_as_a_large_one(store_of_260_pairs, tmp_path):
    from xfuse.features.store import FeatureStore
    from xfuse.heads.loader import PartReader

    with FeatureStore(store_of_260_pairs).part("train", "en") as part:
        assert not PartReader(part, [1, 2], window_pairs=64, memory_bytes=2**20).resident  # it streams windows
    results = [run(store_of_260_pairs, tmp_path / name, memory_mb=memory_mb, window_pairs=64, max_epochs=3, threads=1)
               for name, memory_mb in (("small", 1), ("large", 1024))]
    metrics = [json.loads((result / "metrics.json").read_text()) for result in results]
    for values in metrics:
        del values["seconds"]
    assert metrics[0] == metrics[1]
    first, second = (np.load(result / "predictions.npz") for result in results)
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])
    recorded = json.loads((results[0] / "config.json").read_text())["train"]
    assert recorded["memory_mb"] == 1 and recorded["threads"] == 1 and recorded["device"] == "cpu"


def test_label_smoothing_is_recorded_and_zero_is_the_plain_loss(tiny_store, tmp_path):
    import torch

    logits, labels = torch.randn(50, 2, dtype=torch.float64), torch.randint(0, 2, (50,))
    assert torch.equal(torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.0),
                       torch.nn.functional.cross_entropy(logits, labels))
    plain = run(tiny_store, tmp_path / "plain", threads=1)
    zero = run(tiny_store, tmp_path / "zero", threads=1, label_smoothing=0.0)
    smoothed = run(tiny_store, tmp_path / "smoothed", threads=1, label_smoothing=0.1)
    curve = lambda result: json.loads((result / "curve.json").read_text())
    assert curve(plain) == curve(zero) and curve(plain) != curve(smoothed)
    assert json.loads((smoothed / "config.json").read_text())["train"]["label_smoothing"] == 0.1
    with pytest.raises(XfuseError, match=r"--label-smoothing: expected a number in \[0, 1\), got 1.5"):
        run(tiny_store, tmp_path / "bad", label_smoothing=1.5)


def test_metrics_hold_every_condition_with_its_fit(tiny_store, tmp_path):
    metrics = json.loads((run(tiny_store, tmp_path, threads=1) / "metrics.json").read_text())
    assert set(metrics["fits"]) == {"zero_shot_ts", "zero_shot_bias"}
    assert {"temperature", "optimal_inverse_temperature", "bound_hit", "anti_informative"} <= set(metrics["fits"]["zero_shot_ts"])
    for lang, result in metrics["languages"].items():
        assert set(CONDITIONS) <= set(result) and set(result["fits"]) == {"oracle_ts", "oracle_bias"}
        for condition in CONDITIONS:
            fit = (metrics["fits"] if condition.startswith("zero") else result["fits"]).get(condition)
            assert result[condition]["valid"] == (fit is None or not fit["anti_informative"])


def test_learning_rate_schedules_by_hand():
    from xfuse.heads.train import learning_rate_factor

    config = TrainConfig(store="x", max_epochs=4, schedule="linear", warmup_epochs=1)
    factors = [learning_rate_factor(step, config, steps_per_epoch=10) for step in range(40)]
    assert factors[:3] == pytest.approx([0.1, 0.2, 0.3]) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[25] == pytest.approx(1 - 15 / 30) and factors[39] > 0
    cosine = TrainConfig(store="x", max_epochs=4, schedule="cosine", warmup_epochs=0)
    assert learning_rate_factor(0, cosine, 10) == pytest.approx(1.0)
    assert learning_rate_factor(20, cosine, 10) == pytest.approx(0.5) and learning_rate_factor(40, cosine, 10) == 0.0
    assert learning_rate_factor(33, TrainConfig(store="x"), 10) == 1.0


def test_weight_decay_can_spare_one_dimensional_parameters():
    from xfuse.heads.modules import build_head
    from xfuse.heads.train import make_optimizer

    head = build_head("scalar_mix", 8, 3)
    spared = make_optimizer(head, TrainConfig(store="x", decay_all=False))
    decayed, free, mixing = spared.param_groups
    assert decayed["weight_decay"] == 0.01 and free["weight_decay"] == 0.0 and mixing["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim < 2 for p in free["params"])
    assert mixing["params"] == [head.weights] and any(p is head.gamma for p in free["params"])
    everything, mixing = make_optimizer(head, TrainConfig(store="x", decay_all=True)).param_groups
    assert len(everything["params"]) + 1 == len(list(head.parameters())) and mixing["weight_decay"] == 0.01


def test_the_scalar_mix_weights_learn_at_their_own_rate():
    from xfuse.heads.modules import build_head
    from xfuse.heads.train import make_optimizer

    optimizer = make_optimizer(build_head("scalar_mix", 8, 3), TrainConfig(store="x", mix_lr_factor=20))
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([5e-4, 5e-4, 1e-2])
    (matrices, vectors) = make_optimizer(build_head("single", 8, 1), TrainConfig(store="x", mix_lr_factor=20)).param_groups
    assert matrices["lr"] == vectors["lr"] == 5e-4  # no mixing weights, no third group
    with pytest.raises(XfuseError, match=r"--mix-lr-factor: expected a number > 0, got 0"):
        TrainConfig(store="x", mix_lr_factor=0).resolved()


def test_min_epochs_standardize_and_the_recorded_diagnostics(tiny_store, tmp_path):
    result = run(tiny_store, tmp_path, max_epochs=4, patience=1, min_epochs=3, standardize="median", threads=1,
                 schedule="cosine", warmup_epochs=1)
    curve = json.loads((result / "curve.json").read_text())
    assert len(curve) >= 3
    metrics = json.loads((result / "metrics.json").read_text())
    assert metrics["stopped"]["epochs"] == len(curve) and metrics["stopped"]["reason"] in ("patience", "max_epochs")
    assert {"learned", "loss", "prior_loss", "accuracy_interval", "majority_rate"} <= set(metrics["learned"])
    profile = metrics["languages"]["de"]["uncalibrated"]["profile"]
    assert profile["signed_calibration_error"] == pytest.approx(profile["mean_confidence"] - profile["accuracy"])
    with np.load(result / "standardizer.npz") as saved:
        assert saved["mean"].shape == (2, 32) and saved["layers"].tolist() == [1, 2] and (saved["std"] > 0).all()
        np.testing.assert_allclose(saved["divisor"], feature_scaling(saved["std"], "median"))
    assert json.loads((result / "config.json").read_text())["train"]["standardize"] == "median"


@pytest.mark.parametrize("min_epochs, max_epochs, epochs, reason", [
    (0, 6, 2, "patience"),  # the best epoch is the first: patience 1 stops at the second
    (4, 6, 4, "patience"),  # patience may stop the run only from epoch 4 on
    (20, 6, 6, "max_epochs"),  # the default minimum above the cap: the run trains to the cap
])
def test_patience_stops_a_run_only_from_min_epochs_on(tiny_store, tmp_path, monkeypatch, min_epochs, max_epochs,
                                                       epochs, reason):
    rising = iter([0.5 + 0.01 * epoch for epoch in range(max_epochs)])  # dev-en losses, one per epoch
    monkeypatch.setattr(train_module, "_loss", lambda logits, labels: next(rising))
    result = run(tiny_store, tmp_path, max_epochs=max_epochs, patience=1, min_epochs=min_epochs, n_resamples=0)
    metrics = json.loads((result / "metrics.json").read_text())
    assert len(json.loads((result / "curve.json").read_text())) == epochs
    assert (metrics["stopped"]["epochs"], metrics["stopped"]["reason"], metrics["best_epoch"]) == (epochs, reason, 1)


def test_min_epochs_must_not_be_negative(tiny_store, tmp_path):
    with pytest.raises(XfuseError, match=r"--min-epochs: expected an integer >= 0, got -1"):
        run(tiny_store, tmp_path, min_epochs=-1)


@pytest.mark.parametrize("option, changes, message", [
    ("--epochs", {"max_epochs": -3}, r"--epochs: expected an integer >= 1, got -3"),  # not a --warmup-epochs range
    ("--epochs", {"max_epochs": 0, "warmup_epochs": 2}, r"--epochs: expected an integer >= 1, got 0"),
    ("--patience", {"patience": 0}, r"--patience: expected an integer >= 1, got 0"),
    ("--batch-size", {"batch_size": 0}, r"--batch-size: expected an integer >= 1, got 0"),
    ("--bins", {"bins": 0}, r"--bins: expected an integer >= 1, got 0"),
    ("--bootstrap", {"n_resamples": -1}, r"--bootstrap: expected an integer >= 0, got -1"),
    ("--lr", {"learning_rate": 0.0}, r"--lr: expected a number > 0, got 0.0"),
    ("--warmup-epochs", {"warmup_epochs": -1.0}, r"--warmup-epochs: expected a number >= 0, got -1.0"),
    ("--warmup-epochs", {"max_epochs": 3, "warmup_epochs": 5.0}, r"--warmup-epochs: expected at most --epochs \(3\)"),
])
def test_each_option_is_checked_on_its_own_before_options_are_checked_together(option, changes, message):
    with pytest.raises(XfuseError, match=message):
        TrainConfig(store="unused", **changes).resolved()


def test_every_part_is_scaled_with_the_train_en_statistics(tiny_store, tmp_path, monkeypatch):
    from xfuse.heads.loader import PartReader

    seen = {}
    original = PartReader.standardize

    def spy(self, mean, divisor, *args, **kwargs):
        seen[self.name] = (np.array(mean), np.array(divisor))
        return original(self, mean, divisor, *args, **kwargs)

    monkeypatch.setattr(PartReader, "standardize", spy)
    result = run(tiny_store, tmp_path, standardize="median", threads=1)
    assert sorted(seen) == sorted(["train-en", "dev-en", "dev-de", "test-de", "dev-ja", "test-ja", "test-en"])
    with np.load(result / "standardizer.npz") as saved:
        for mean, divisor in seen.values():
            np.testing.assert_array_equal(mean, saved["mean"])
            np.testing.assert_array_equal(divisor, saved["divisor"])


def test_feature_scaling_by_hand():
    std = np.array([[1.0, 2.0, 4.0], [0.1, 0.1, 10.0]])
    np.testing.assert_array_equal(feature_scaling(std, "unit"), std)
    divisor = feature_scaling(std, "median")  # the median of all six is (1.0 + 2.0) / 2 = 1.5
    np.testing.assert_allclose(divisor, std / 1.5)
    np.testing.assert_allclose(std / divisor, np.full((2, 3), 1.5))  # every channel of every layer at one scale


@pytest.mark.parametrize("value, expected", [(True, "unit"), (False, "none"), ("median", "median")])
def test_standardize_modes_and_the_booleans_of_older_plans(value, expected):
    assert TrainConfig(store="x", standardize=value, threads=1, device="cpu").resolved().standardize == expected
    with pytest.raises(XfuseError, match=r"--standardize: expected one of none, unit, median, got 'zscore'"):
        TrainConfig(store="x", standardize="zscore").resolved()


@pytest.fixture(scope="module")
def outlier_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("outliers")
    return {name: write_feature_store(root / name, outlier_task(seed=7, signal=name == "signal"), num_hidden_layers=2)
            for name in ("signal", "noise")}


@pytest.mark.parametrize("head", sorted(HEAD_LAYERS))
def test_every_head_learns_features_with_outlier_channels_on_every_seed_under_the_default_recipe(
        head, outlier_stores, tmp_path):
    for seed in range(5):
        config = TrainConfig(store=str(outlier_stores["signal"]), head=head, layers=HEAD_LAYERS[head], seed=seed,
                             n_resamples=0, threads=1, out=str(tmp_path))
        metrics = json.loads((train_heads(config, log=lambda line: None) / "metrics.json").read_text())
        assert metrics["learned"]["learned"], (head, seed, metrics["learned"], metrics["stopped"])


def test_learned_is_false_on_features_without_signal_and_true_with(outlier_stores, tmp_path):
    verdicts = {}
    for name, store in outlier_stores.items():
        config = TrainConfig(store=str(store), head="single", layers="2", n_resamples=0, threads=1,
                             out=str(tmp_path / name))
        verdicts[name] = json.loads((train_heads(config, log=lambda line: None) / "metrics.json").read_text())["learned"]
    assert verdicts["signal"]["learned"] and not verdicts["noise"]["learned"]
    assert verdicts["noise"]["loss_minus_prior_interval"][1] > 0 or not verdicts["noise"]["beats_majority_rate"]


def test_a_scalar_mix_curve_records_its_layer_shares_and_they_move_faster_at_a_higher_mix_rate(tiny_store, tmp_path):
    def shares(factor):
        result = run(tiny_store, tmp_path / str(factor), head="scalar_mix", layers="all", mix_lr_factor=factor,
                     n_resamples=0, patience=2, min_epochs=2)
        return np.array([entry["mix_shares"] for entry in json.loads((result / "curve.json").read_text())])

    slow, fast = shares(1.0), shares(50.0)
    assert slow.shape == fast.shape == (2, 3) and np.allclose(slow.sum(1), 1) and np.allclose(fast.sum(1), 1)
    distance = lambda table: np.abs(table[-1] - 1 / 3).max()  # from the equal shares it starts at
    assert distance(fast) > 5 * distance(slow) > 0
