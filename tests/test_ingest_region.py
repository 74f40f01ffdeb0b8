"""The image-area finder (`eutirads.region`) that ingest uses for files without
ultrasound regions and for JPEG/PNG screenshots."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from eutirads.errors import InputError
from eutirads.region import find_image_area


def _screen(seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A scanner-like screen: a speckled image block on black, thin text strokes around."""
    rng = np.random.default_rng(seed)
    frame = np.zeros((360, 560), np.uint8)
    x0, y0 = int(rng.integers(60, 120)), int(rng.integers(30, 60))
    x1, y1 = x0 + int(rng.integers(300, 400)), y0 + int(rng.integers(220, 290))
    frame[y0:y1, x0:x1] = rng.gamma(2.0, 40.0, (y1 - y0, x1 - x0)).clip(20, 255)
    for row in range(5, 25, 6):  # a banner of "text" above the image
        frame[row:row + 2, 10:300:3] = 255
    frame[y0:y1:20, x1 + 8:x1 + 14] = 230  # a depth scale to its right
    return frame, (x0, y0, x1, y1)


@pytest.mark.parametrize("seed", range(6))
def test_the_image_area_is_found_and_the_text_around_it_left_out(seed):
    frame, truth = _screen(seed)
    assert tuple(find_image_area(frame)) == truth


def test_the_separable_opening_matches_scipys_binary_opening():
    rng = np.random.default_rng(0)
    mask = ndimage.uniform_filter(rng.random((200, 300)), 9) > 0.5
    size = 15
    expected = ndimage.binary_opening(mask, structure=np.ones((size, size), bool))
    fast = ndimage.minimum_filter(mask.view(np.uint8), size=size, mode="constant", cval=0)
    fast = ndimage.maximum_filter(fast, size=size, mode="constant", cval=0).astype(bool)
    assert np.array_equal(fast, expected)


def test_a_frame_holding_only_text_has_no_image_area():
    frame = np.zeros((200, 300), np.uint8)
    frame[10:12, 10:290:3] = 255
    with pytest.raises(InputError, match="no image area"):
        find_image_area(frame)


def test_both_panes_of_a_dual_view_screen_are_kept_but_not_a_small_block_beside_them():
    rng = np.random.default_rng(1)
    frame = np.zeros((360, 560), np.uint8)
    frame[10:300, 30:270] = rng.gamma(2.0, 40.0, (290, 240)).clip(20, 255)   # left pane
    frame[10:300, 280:520] = rng.gamma(2.0, 40.0, (290, 240)).clip(20, 255)  # right pane
    frame[310:350, 200:260] = 200  # a body marker: wide enough to survive, too small
    assert tuple(find_image_area(frame)) == (30, 10, 520, 300)


def test_a_remembered_area_follows_the_pixels_not_the_array():
    """The memo is keyed by the pixels: a frame changed in place gets its new answer, the
    same pixels in another array the same one, and a frame without an area raises again."""
    frame, truth = _screen(7)
    assert tuple(find_image_area(frame)) == truth
    assert tuple(find_image_area(frame.copy())) == truth
    assert tuple(find_image_area(np.asfortranarray(frame))) == truth
    frame[:] = 0
    frame[10:12, 10:290:3] = 255
    for _ in range(2):
        with pytest.raises(InputError, match="no image area"):
            find_image_area(frame)
    moved, moved_truth = _screen(8)
    assert tuple(find_image_area(moved)) == moved_truth != truth
