"""Classification heads over cached token features: one layer, or a lower layer fused with the last.

Every head is an ``nn.Module`` called as ``head(features, mask, second_start)``:
``features`` one (B, T, E) tensor per layer in the order the layers were
given (for the two-layer heads: the lower layer, then the last), as a list or
stacked in one (L, B, T, E) tensor (what :mod:`xfuse.heads.loader` yields),
``mask`` (B, T) bool, True on real tokens, and ``second_start`` (B,) the
position of the second sentence's first token. It returns (B, 2) logits.

Pooling (a setting, :class:`Pooler`), over the real tokens (mask ``m``):

- ``attention`` (the default): a learned query ``q`` scores each token,
  ``a = softmax_t(q . tanh(W_k H_t))`` over real tokens, ``pool(H) = sum_t a_t H_t``;
- ``first``: the first token (``[CLS]`` / ``<s>``), ``pool(H) = H_0``;
- ``mean``: ``pool(H) = sum_t m_t H_t / sum_t m_t``.

Our choice of ``attention`` as the default: on frozen multilingual-e5-small
features, a classifier on the first token or the mean stays at the majority
rate on PAWS-X (its pairs share their words), while the fusion heads attend
over tokens; the baselines get the same means of selecting tokens.

Usage::

    head = build_head("aif", hidden_size=384, num_layers=2, pooling="first")
    logits = head([lower, last], mask, second_start)        # (B, 2)
"""

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from xfuse.errors import XfuseError

POOLINGS = ("attention", "first", "mean")


@dataclass(frozen=True)
class HeadConfig:
    """Settings of a head; the defaults are the choices documented in each head's docstring."""

    pooling: str = "attention"
    dropout: float = 0.1
    reduction: int = 4  # AIF: channel reduction ratio r of its two convolutions
    attention_dim: int = 128  # DLFA and attention pooling: width of the query/key space


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, E) -> (B, E): the first token, or the mean over real tokens (the parameter-free poolings)."""
    if how == "first":
        return hidden[:, 0]
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class Pooler(nn.Module):
    """(B, T, E) -> (B, E) by ``attention``, ``first`` or ``mean`` pooling (module docstring)."""

    def __init__(self, hidden_size: int, how: str, attention_dim: int):
        super().__init__()
        self.how = how
        if how == "attention":
            self.key = nn.Linear(hidden_size, attention_dim)
            self.query = nn.Parameter(torch.randn(attention_dim) / attention_dim ** 0.5)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.how != "attention":
            return pool(hidden, mask, self.how)
        scores = torch.tanh(self.key(hidden)) @ self.query  # (B, T)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)  # (B, T)
        return torch.einsum("bt,bte->be", weights, hidden)


class _Classifier(nn.Module):
    """Dropout then a linear map to two logits."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(width, 2)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(pooled))


class SingleHead(nn.Module):
    """One layer: ``logits = W pool(H) + b``. On the last layer, the baseline."""

    expected_layers = 1

    def __init__(self, hidden_size: int, config: HeadConfig):
        super().__init__()
        self.pool = Pooler(hidden_size, config.pooling, config.attention_dim)
        self.classifier = _Classifier(hidden_size, config.dropout)

    def forward(self, features: Sequence[torch.Tensor], mask, second_start) -> torch.Tensor:
        return self.classifier(self.pool(features[0].float(), mask))


class ConcatHead(nn.Module):
    """Two layers side by side: ``logits = W [pool(H_low); pool(H_last)] + b``."""

    expected_layers = 2

    def __init__(self, hidden_size: int, config: HeadConfig):
        super().__init__()
        self.pools = nn.ModuleList(Pooler(hidden_size, config.pooling, config.attention_dim) for _ in range(2))
        self.classifier = _Classifier(2 * hidden_size, config.dropout)

    def forward(self, features, mask, second_start) -> torch.Tensor:
        pooled = [pooler(layer.float(), mask) for pooler, layer in zip(self.pools, features)]
        return self.classifier(torch.cat(pooled, dim=-1))


class MeanHead(nn.Module):
    """The average of two layers: ``logits = W pool((H_low + H_last) / 2) + b``."""

    expected_layers = 2

    def __init__(self, hidden_size: int, config: HeadConfig):
        super().__init__()
        self.pool = Pooler(hidden_size, config.pooling, config.attention_dim)
        self.classifier = _Classifier(hidden_size, config.dropout)

    def forward(self, features, mask, second_start) -> torch.Tensor:
        return self.classifier(self.pool((features[0].float() + features[1].float()) / 2, mask))


class ScalarMixHead(nn.Module):
    """ELMo's scalar mix of any number of layers (Peters et al. 2018).

    ``mix = gamma * sum_k softmax(w)_k H_k``, with ``w`` initialised to zeros
    (equal weights) and ``gamma`` to 1, then ``logits = W pool(mix) + b``.
    """

    expected_layers = None

    def __init__(self, hidden_size: int, config: HeadConfig, num_layers: int):
        super().__init__()
        self.pool = Pooler(hidden_size, config.pooling, config.attention_dim)
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(()))
        self.classifier = _Classifier(hidden_size, config.dropout)

    def forward(self, features, mask, second_start) -> torch.Tensor:
        if len(features) != self.weights.numel():
            raise XfuseError(f"scalar_mix: expected {self.weights.numel()} layers, received {len(features)}")
        stacked = features.float() if torch.is_tensor(features) else torch.stack([layer.float() for layer in features])
        shares = torch.softmax(self.weights, dim=0)  # (L,)
        mix = self.gamma * torch.einsum("l,lbte->bte", shares, stacked)  # (B, T, E)
        return self.classifier(self.pool(mix, mask))


class DLFAHead(nn.Module):
    """DLFA: the last layer attends over the tokens of both layers; the result is one fusion embedding.

    Chen et al. (2022) integrate the last layer and a lower layer "by an
    attention mechanism into one fusion embedding" without publishing code.
    Our choice: the pooled last layer ``u = pool(H_last)`` is the query; the
    keys and values are the real tokens of both layers, ``S = [H_low; H_last]``
    (2T tokens, padding masked out)::

        a = softmax((W_q u) (W_k S)^T / sqrt(d))          (1 x 2T), d = attention_dim
        fusion = LayerNorm(u + W_o (a S))
        logits = W fusion + b
    """

    expected_layers = 2

    def __init__(self, hidden_size: int, config: HeadConfig):
        super().__init__()
        self.pool = Pooler(hidden_size, config.pooling, config.attention_dim)
        self.query = nn.Linear(hidden_size, config.attention_dim)
        self.key = nn.Linear(hidden_size, config.attention_dim)
        self.output = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.classifier = _Classifier(hidden_size, config.dropout)

    def forward(self, features, mask, second_start) -> torch.Tensor:
        lower, last = features[0].float(), features[1].float()
        query = self.pool(last, mask)  # (B, E)
        tokens = torch.cat([lower, last], dim=1)  # (B, 2T, E)
        token_mask = torch.cat([mask, mask], dim=1)  # (B, 2T)
        scores = torch.einsum("bd,btd->bt", self.query(query), self.key(tokens)) / self.query.out_features ** 0.5
        attention = torch.softmax(scores.masked_fill(~token_mask, float("-inf")), dim=1)  # (B, 2T)
        attended = torch.einsum("bt,bte->be", attention, tokens)  # (B, E)
        return self.classifier(self.norm(query + self.output(attended)))


class AIFHead(nn.Module):
    """AIF: attentional feature fusion of a lower layer X and the last layer Y (after Dai et al. 2021).

    Two contextual branches read the initial integration ``Z = X + Y``: a
    global one on the pooled tokens, ``G = C2(ReLU(C1(mean_t Z)))`` (B, 1, E),
    and a local one on each token, ``L = C2'(ReLU(C1'(Z)))`` (B, T, E), where
    ``C1`` maps E channels to E / r and ``C2`` back to E (pointwise
    convolutions, r = ``reduction``, computed as ``nn.Linear`` over the
    channel axis of (B, T, E): the same maps, with the same initialisation, as
    ``nn.Conv1d(kernel_size=1)`` over (B, E, T), and faster). Their sum through a sigmoid weighs the
    two layers against each other, element by element::

        M = sigmoid(L + G)
        fused = M * X + (1 - M) * Y          (computed as torch.lerp(Y, X, M))
        logits = W pool(fused) + b

    Our choices where the papers leave it open: no batch normalisation in the
    branches (padded tokens would leak into its statistics), the global
    branch pools real tokens only, and pooling after fusion is the head's
    ``pooling`` setting.
    """

    expected_layers = 2

    def __init__(self, hidden_size: int, config: HeadConfig):
        super().__init__()
        if hidden_size % config.reduction:
            raise XfuseError(f"aif: reduction {config.reduction} must divide the hidden size {hidden_size}")
        inner = hidden_size // config.reduction
        self.pool = Pooler(hidden_size, config.pooling, config.attention_dim)
        self.local = nn.Sequential(nn.Linear(hidden_size, inner), nn.ReLU(), nn.Linear(inner, hidden_size))
        self.global_ = nn.Sequential(nn.Linear(hidden_size, inner), nn.ReLU(), nn.Linear(inner, hidden_size))
        self.classifier = _Classifier(hidden_size, config.dropout)

    def forward(self, features, mask, second_start) -> torch.Tensor:
        lower, last = features[0].float(), features[1].float()
        mixed = lower + last  # (B, T, E)
        weights = mask.to(mixed.dtype)  # (B, T)
        context = torch.einsum("bt,bte->be", weights, mixed) / weights.sum(1, keepdim=True).clamp_min(1.0)  # (B, E)
        gate = torch.sigmoid(self.local(mixed) + self.global_(context).unsqueeze(1))  # (B, T, E)
        fused = torch.lerp(last, lower, gate)  # gate * lower + (1 - gate) * last, in one pass
        return self.classifier(self.pool(fused, mask))


HEADS = {"single": SingleHead, "concat": ConcatHead, "mean": MeanHead, "scalar_mix": ScalarMixHead,
         "dlfa": DLFAHead, "aif": AIFHead}


def build_head(name: str, hidden_size: int, num_layers: int, config: HeadConfig = HeadConfig()) -> nn.Module:
    """A head by name, checked against the number of layers it is given."""
    if name not in HEADS:
        raise XfuseError(f"--head: unknown head {name!r}; expected one of {', '.join(HEADS)}")
    if config.pooling not in POOLINGS:
        raise XfuseError(f"--pooling: expected one of {', '.join(POOLINGS)}, got {config.pooling!r}")
    head_class = HEADS[name]
    expected = head_class.expected_layers
    if expected is not None and num_layers != expected:
        raise XfuseError(f"--head {name}: expected {expected} layer(s) in --layers, received {num_layers}")
    if head_class is ScalarMixHead:
        return ScalarMixHead(hidden_size, config, num_layers)
    return head_class(hidden_size, config)
