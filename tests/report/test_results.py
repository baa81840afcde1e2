"""Configurations built from saved predictions: the seed ensemble, against a direct computation."""

import numpy as np
import pytest
from scipy.special import expit, softmax

from xfuse.report.results import Member, seed_ensemble

CONDITIONS = ("uncalibrated", "zero_shot_ts", "oracle_ts", "zero_shot_bias", "oracle_bias")


def make_member(seed: int, learned: bool = True, size: int = 400) -> Member:
    """A head whose logits carry the label (more or less sharply by seed) on dev-en, dev-de and test-de."""
    rng = np.random.default_rng(seed)
    parts = {}
    for name in ("dev-en", "dev-de", "test-de"):
        labels = np.random.default_rng(len(name)).integers(0, 2, size)  # the same examples for every seed
        difference = (2 * labels - 1) * (0.5 + 0.3 * seed) + rng.standard_normal(size)
        parts[name] = {"logits": np.stack([np.zeros(size), difference], axis=1), "labels": labels,
                       "ids": np.array([str(i) for i in range(size)])}
    maps = {"de": {condition: (1.0, 0.0) for condition in CONDITIONS}}
    valid = {"de": {condition: True for condition in CONDITIONS}}
    return Member(seed=seed, parts=parts, calibrations=maps, valid=valid, dev_en_loss=0.6,
                  learned={"learned": learned}, zero_shot_temperature=1.0)


def test_a_seed_ensemble_averages_the_probabilities_of_neighbouring_seeds_and_keeps_the_first_seeds_number():
    members = [make_member(seed) for seed in (4, 0, 2)]  # seed order, not list order, decides the neighbours
    ensemble = seed_ensemble(members, 2, 0.45, CONDITIONS)
    assert [member.seed for member in ensemble] == [0, 2, 4]
    by_seed = {member.seed: member for member in members}
    for member, pair in zip(ensemble, ((0, 2), (2, 4), (4, 0))):
        expected = np.mean([softmax(by_seed[seed].parts["test-de"]["logits"], axis=1)[:, 1] for seed in pair], axis=0)
        assert expit(member.parts["test-de"]["logits"] @ [-1, 1]) == pytest.approx(expected, rel=1e-12)
        assert member.learned["members_learned"] and member.learned["learned"]
    assert len({member.parts["dev-en"]["logits"][:, 1].tobytes() for member in ensemble}) == 3  # three different ones


def test_a_seed_ensemble_needs_more_seeds_than_heads_and_is_not_learned_where_a_run_did_not_learn():
    assert seed_ensemble([make_member(0), make_member(1)], 2, 0.45, CONDITIONS) == []  # both ensembles the same
    ensemble = seed_ensemble([make_member(0), make_member(1, learned=False), make_member(2)], 2, 0.45, CONDITIONS)
    assert [member.learned["learned"] for member in ensemble] == [False, False, True]  # (0, 1), (1, 2), (2, 0)
