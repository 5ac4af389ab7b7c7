"""Snapping a painted mask: a hard edge painted off the subject's outline moves onto the photo's edge."""

import numpy as np
import pytest

from remove_background.helper import refine, snap

WIDTH, HEIGHT, EDGE = 800, 600, 400


def two_colour_photo(noise=3.0):
    left, right = np.array([180, 140, 60]), np.array([40, 90, 200])
    photo = np.where(np.arange(WIDTH)[None, :, None] < EDGE, left, right)
    photo = np.broadcast_to(photo, (HEIGHT, WIDTH, 3)).astype(np.float64)
    photo = photo + np.random.default_rng(2).normal(0, noise, photo.shape)
    return np.clip(np.round(photo), 0, 255).astype(np.uint8)


def painted(edge, soft=0):
    """A hand-painted mask: 255 left of ``edge``; with ``soft``, a linear brush ramp that wide."""
    x = np.arange(WIDTH, dtype=np.float64)
    row = np.clip((edge - x) / soft + 0.5, 0, 1) if soft else (x < edge).astype(np.float64)
    return np.broadcast_to(np.round(row * 255).astype(np.uint8), (HEIGHT, WIDTH)).copy()


def outline(mask):
    """Each row's column where the mask crosses one half."""
    return (mask.astype(np.float64) / mask.max() >= 0.5).sum(axis=1)


@pytest.mark.parametrize("offset", [12, -12, 20])
def test_an_offset_hard_painted_edge_moves_onto_the_photo_edge(offset):
    photo = two_colour_photo()
    mask = painted(EDGE + offset)
    snapped = snap.snap(photo, mask)
    assert np.abs(outline(snapped) - EDGE).max() <= 1
    # Sharp: the transition is within 2 px of the edge, no soft tail.
    soft = (snapped > 25) & (snapped < 230)
    assert not soft[:, :EDGE - 3].any() and not soft[:, EDGE + 3:].any()


def test_the_residual_refinement_alone_leaves_it_where_it_was_painted():
    # Why snapping needs its own mode: refine.refine keeps a hard painted edge in place.
    photo = two_colour_photo()
    kept = refine.refine(photo, painted(EDGE + 12).astype(np.float32) / 255)
    assert np.abs(outline(kept) - (EDGE + 12)).max() <= 1


def test_a_soft_brush_stroke_snaps_too():
    photo = two_colour_photo()
    snapped = snap.snap(photo, painted(EDGE - 10, soft=30))
    assert np.abs(outline(snapped) - EDGE).max() <= 1


def test_far_from_the_outline_the_painted_mask_stays_exact_and_16_bits_work():
    photo = two_colour_photo()
    mask = painted(EDGE + 12)
    mask[:50, :100] = 77    # a grey patch painted far inside the subject: not an outline
    mask[:50, :100] = 77
    snapped = snap.snap(photo, mask.astype(np.uint16) * 257, depth=2)
    assert snapped.dtype == np.uint16
    radius = snap.band_radius(WIDTH, HEIGHT)
    far = np.abs(np.arange(WIDTH) - (EDGE + 12)) > 3 * radius
    below = 50 + 3 * radius
    assert np.array_equal(snapped[below:, far], mask.astype(np.uint16)[below:, far] * 257)
    # The grey patch has no photo edge near it: it keeps its value inside (to the photo's noise).
    patch = snapped[10:40, 10:90].astype(np.float64)
    assert abs(patch.mean() - 77 * 257) < 0.005 * 65535 and np.abs(patch - 77 * 257).max() < 0.05 * 65535


def test_an_edge_with_no_photo_contrast_stays_where_it_was_painted():
    photo = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    mask = painted(EDGE + 12)
    assert np.array_equal(snap.snap(photo, mask), mask)

