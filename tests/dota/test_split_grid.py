"""Window grid of rgfl split: the worked examples of the reference notes (3.1) and the
image-rate rule (3.3)."""

from __future__ import annotations

import numpy as np
import pytest

from rgfl.dota.split import PRESETS, SplitConfig, sliding_windows, window_starts
from rgfl.errors import InputError

# Reference notes 3.1, size 1024: (length, starts with overlap 200, starts with overlap 512).
WORKED = [
    (800, [0], [0]),
    (1024, [0], [0]),
    (1500, [0, 476], [0, 476]),
    (2048, [0, 824, 1024], [0, 512, 1024]),
    (4000, [0, 824, 1648, 2472, 2976], [0, 512, 1024, 1536, 2048, 2560, 2976]),
    (5000, [0, 824, 1648, 2472, 3296, 3976], [0, 512, 1024, 1536, 2048, 2560, 3072, 3584, 3976]),
]


@pytest.mark.parametrize("length,gap200,gap512", WORKED)
def test_worked_examples(length, gap200, gap512):
    assert window_starts(length, 1024, 824) == gap200
    assert window_starts(length, 1024, 512) == gap512


@pytest.mark.parametrize(
    "length,expected",
    [
        (1, [0]),  # far smaller than a patch
        (1023, [0]),
        (1024, [0]),  # exactly one patch
        (1025, [0, 1]),  # one pixel more: a second window snapped to the border
        (1848, [0, 824]),  # exactly two steps, nothing to snap
        (1849, [0, 824, 825]),
    ],
)
def test_edge_lengths(length, expected):
    assert window_starts(length, 1024, 824) == expected


def test_grid_properties_on_many_lengths():
    for size, step in [(1024, 824), (1024, 512), (800, 600), (512, 1)]:
        for length in range(1, 3 * size, 37):
            starts = window_starts(length, size, step)
            assert starts[0] == 0 and starts == sorted(set(starts))
            assert all(b - a <= step for a, b in zip(starts, starts[1:]))
            # The last window ends at the border (or the image fits in one window).
            assert starts[-1] + size == length if length > size else starts == [0]


def test_windows_are_x_major_and_cover_the_image():
    windows = sliding_windows(2048, 1500, 1024, 824)
    assert windows.dtype == np.int64
    assert windows.tolist() == [
        [0, 0, 1024, 1024],
        [0, 476, 1024, 1500],
        [824, 0, 1848, 1024],
        [824, 476, 1848, 1500],
        [1024, 0, 2048, 1024],
        [1024, 476, 2048, 1500],
    ]


def test_image_rate_threshold():
    # 800 x 800 in a 1024 window: 61 % of it on the image > 0.6, kept.
    assert sliding_windows(800, 800, 1024, 824).tolist() == [[0, 0, 1024, 1024]]
    # 1100 x 600: both windows have 600/1024 = 0.586 on the image; none passes, so those within
    # 0.01 of the best (both) are kept.
    assert sliding_windows(1100, 600, 1024, 824).tolist() == [[0, 0, 1024, 1024], [76, 0, 1100, 1024]]
    # With a lower threshold they pass on their own.
    assert len(sliding_windows(1100, 600, 1024, 824, img_rate_thr=0.5)) == 2
    # 300 x 2000: windows at y 0, 824, 976 each have 0.29 on the image: the fallback keeps all.
    assert sliding_windows(300, 2000, 1024, 824)[:, 1].tolist() == [0, 824, 976]
    # 1100 x 1030: the windows at x 0 / 76 and y 0 / 6 all lie fully on the image.
    assert len(sliding_windows(1100, 1030, 1024, 824)) == 4


def test_presets_number_is_the_step():
    assert PRESETS["dota-1024-824"] == (1024, 824)  # overlap 200
    assert PRESETS["dota-1024-512"] == (1024, 512)  # overlap 512
    assert SplitConfig(size=1024, step=824).overlap == 200


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"step": 0}, "step"),
        ({"step": 1025}, "step"),
        ({"rates": (0.0,)}, "rates"),
        ({"rates": (1.0, 1.0)}, "repeat"),
        ({"iof_thr": 1.5}, "iof"),
        ({"ext": "gif"}, "png or jpg"),
        ({"pad_value": (1, 2)}, "pad"),
    ],
)
def test_bad_config_is_an_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        SplitConfig(**kwargs)
