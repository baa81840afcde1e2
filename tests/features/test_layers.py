import pytest

from xfuse.errors import XfuseError
from xfuse.features.layers import parse_layers, resolve_layers


def test_all_and_negative_indices():
    assert parse_layers("all", 12) == tuple(range(13))
    assert parse_layers("4,-1", 12) == (4, 12)
    assert parse_layers("-13", 12) == (0,)
    assert parse_layers(" 12,4 ", 12) == (12, 4)


@pytest.mark.parametrize("spec, message", [
    ("4,x", "expected 'all' or comma-separated integers in -13..12"),
    ("13", "layer 13 is out of range"),
    ("-14", "layer -14 is out of range"),
    ("4,-9", "layer 4 is listed twice"),
    ("", "expected 'all'"),
])
def test_bad_layer_lists_name_option_and_expectation(spec, message):
    with pytest.raises(XfuseError, match="--layers") as error:
        parse_layers(spec, 12)
    assert message in str(error.value)


def test_resolve_layers_names_its_option():
    with pytest.raises(XfuseError, match="^layers: layer 3 is out of range"):
        resolve_layers([3], 2, option="layers")
