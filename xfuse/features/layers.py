"""Layer lists: ``all`` or comma-separated indices, negative counting from the end.

Index 0 is the embedding output and ``num_layers`` the last transformer
layer, so an encoder with 12 layers has the 13 indices 0..12 and ``-1`` is 12.

>>> parse_layers("4,-1", num_layers=12)
(4, 12)
>>> parse_layers("all", num_layers=2)
(0, 1, 2)
"""

from typing import Sequence

from xfuse.errors import XfuseError


def parse_layers(spec: str, num_layers: int, option: str = "--layers") -> tuple:
    """Resolve ``spec`` to distinct non-negative indices in 0..num_layers, in the given order."""
    text = str(spec).strip()
    if text == "all":
        return tuple(range(num_layers + 1))
    expected = f"'all' or comma-separated integers in -{num_layers + 1}..{num_layers} (0 is the embedding output)"
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise XfuseError(f"{option}: expected {expected}, got {spec!r}") from None
    return resolve_layers(indices, num_layers, option, expected)


def resolve_layers(indices: Sequence[int], num_layers: int, option: str = "--layers", expected: str = "") -> tuple:
    """Map negative indices to their positive twins and check the range."""
    expected = expected or f"integers in -{num_layers + 1}..{num_layers}"
    resolved = []
    for index in indices:
        if not -(num_layers + 1) <= index <= num_layers:
            raise XfuseError(f"{option}: layer {index} is out of range; expected {expected}")
        index = index % (num_layers + 1)
        if index in resolved:
            raise XfuseError(f"{option}: layer {index} is listed twice")
        resolved.append(index)
    if not resolved:
        raise XfuseError(f"{option}: no layers given; expected {expected}")
    return tuple(resolved)
