from __future__ import annotations

import pytest

from rgfl.dota.patches import PatchOrigin, format_rate, parse_patch_name, patch_name
from rgfl.errors import InputError


@pytest.mark.parametrize("rate", [1.0, 0.5, 1.5, 2.0, 0.75])
@pytest.mark.parametrize("stem", ["P0001", "my__odd__name", "img_1"])
def test_round_trip(stem, rate):
    name = patch_name(stem, 824, 1648, 1024, rate)
    origin = parse_patch_name(name)
    assert origin == PatchOrigin(stem, 824, 1648, rate, 1024)


def test_rate_one_matches_mmrotate_and_ultralytics_names():
    assert patch_name("P0001", 0, 512, 1024) == "P0001__1024__0___512"
    assert patch_name("P0001", 0, 512, 1024, 0.5) == "P0001__1024__0___512__r0.5"


def test_devkit_names():
    assert parse_patch_name("P0001__1__0___0") == PatchOrigin("P0001", 0, 0, 1.0, None)
    assert parse_patch_name("P0001__0.5__0___512") == PatchOrigin("P0001", 0, 512, 0.5, None)
    assert parse_patch_name("P0001__1.0__824___0").rate == 1.0


def test_map_back_to_source():
    origin = parse_patch_name("P0001__1024__100___200__r0.5")
    assert origin.to_source(10.0, 20.0) == (220.0, 440.0)


@pytest.mark.parametrize("bad", ["P0001", "P0001__1024__0__0", "P0001__abc__0___0", "__1024__0___0", "P0001__0__0___0"])
def test_bad_names(bad):
    with pytest.raises(InputError, match="patch name|rate must be positive"):
        parse_patch_name(bad)


def test_format_rate():
    assert [format_rate(r) for r in (1, 1.0, 0.5, 1.5, 0.25)] == ["1", "1", "0.5", "1.5", "0.25"]
    with pytest.raises(ValueError):
        format_rate(0)
