"""Heads: shapes, gradients to every parameter, and a synthetic task that needs both layers."""

import pytest
import torch

from xfuse.errors import XfuseError
from xfuse.heads.modules import HEADS, HeadConfig, build_head

TWO_LAYER = ("concat", "mean", "scalar_mix", "dlfa", "aif")


def batch(size=8, length=7, width=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = [torch.randn(size, length, width, generator=generator) for _ in range(2)]
    lengths = torch.randint(3, length + 1, (size,), generator=generator)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return features, mask, lengths // 2


@pytest.mark.parametrize("name", list(HEADS))
@pytest.mark.parametrize("pooling", ["attention", "first", "mean"])
def test_shapes_and_gradients_reach_every_parameter(name, pooling):
    torch.manual_seed(0)
    features, mask, second_start = batch()
    layers = features[:1] if name == "single" else features
    head = build_head(name, 16, len(layers), HeadConfig(pooling=pooling, attention_dim=8))
    logits = head(layers, mask, second_start)
    assert logits.shape == (8, 2)
    logits.square().sum().backward()
    for parameter_name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


def test_padding_does_not_change_the_output():
    torch.manual_seed(0)
    features, mask, second_start = batch()
    for name, pooling in (("mean", "mean"), ("dlfa", "mean"), ("aif", "mean"), ("concat", "attention"),
                          ("dlfa", "attention"), ("aif", "attention")):
        head = build_head(name, 16, 2, HeadConfig(pooling=pooling, attention_dim=8)).eval()
        noisy = [torch.where(mask[..., None], layer, torch.randn_like(layer) * 100) for layer in features]
        torch.testing.assert_close(head(features, mask, second_start), head(noisy, mask, second_start))


def synthetic(size, seed, width=16, length=6):
    """Each layer carries one of two independent signals; the label is the sign of their sum."""
    generator = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.ones(width), dim=0)
    signals = torch.randn(size, 2, generator=generator)
    features = [signals[:, k, None, None] * direction + 0.1 * torch.randn(size, length, width, generator=generator)
                for k in range(2)]
    labels = (signals.sum(1) > 0).long()
    return features, torch.ones(size, length, dtype=torch.bool), torch.zeros(size, dtype=torch.long), labels


def train_and_score(name, layer_ids):
    torch.manual_seed(0)
    features, mask, second_start, labels = synthetic(1024, seed=1)
    test_features, test_mask, test_start, test_labels = synthetic(512, seed=2)
    head = build_head(name, 16, len(layer_ids), HeadConfig(dropout=0.0, attention_dim=8))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(head([features[k] for k in layer_ids], mask, second_start), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    predictions = head([test_features[k] for k in layer_ids], test_mask, test_start).argmax(1)
    return (predictions == test_labels).float().mean().item()


@pytest.mark.parametrize("name", TWO_LAYER)
def test_a_task_that_needs_both_layers_is_learned(name):
    assert train_and_score(name, (0, 1)) >= 0.90


def test_one_layer_alone_cannot_solve_it():
    assert train_and_score("single", (1,)) <= 0.85


def test_bad_head_and_layer_counts_are_refused():
    with pytest.raises(XfuseError, match=r"--head: unknown head 'gru'; expected one of single, concat"):
        build_head("gru", 16, 1)
    with pytest.raises(XfuseError, match=r"--head aif: expected 2 layer\(s\) in --layers, received 3"):
        build_head("aif", 16, 3)
    with pytest.raises(XfuseError, match=r"--pooling: expected one of attention, first, mean, got 'max'"):
        build_head("single", 16, 1, HeadConfig(pooling="max"))
    with pytest.raises(XfuseError, match="reduction 5 must divide the hidden size 16"):
        build_head("aif", 16, 2, HeadConfig(reduction=5))


def test_attention_pooling_with_a_zero_query_is_the_mean_over_real_tokens():
    from xfuse.heads.modules import Pooler, pool

    features, mask, _ = batch()
    pooler = Pooler(16, "attention", attention_dim=8)
    with torch.no_grad():
        pooler.query.zero_()
    torch.testing.assert_close(pooler(features[0], mask), pool(features[0], mask, "mean"))
