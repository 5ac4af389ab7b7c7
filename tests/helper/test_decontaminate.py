"""Colour decontamination: semi-transparent edge pixels get the subject's own colour."""

import numpy as np

from remove_background.helper import decontaminate

SUBJECT, GREEN = np.array([200, 60, 40]), np.array([0, 255, 0])


def fringed_edge(height=400, width=600, edge=300, ramp=12):
    """A red subject on the left over a green background, with a soft alpha ramp between."""
    x = np.arange(width)
    alpha = np.clip((edge + ramp / 2 - x) / ramp, 0, 1)
    alpha = np.broadcast_to(alpha, (height, width))
    texture = np.random.default_rng(2).integers(-6, 7, (height, width, 1))
    photo = alpha[:, :, None] * (SUBJECT + texture) + (1 - alpha[:, :, None]) * GREEN
    return np.clip(np.round(photo), 0, 255).astype(np.uint8), np.round(alpha * 255).astype(np.uint8)


def test_green_fringe_becomes_the_subject_colour():
    photo, alpha = fringed_edge()
    rgba = np.dstack([photo, np.full(alpha.shape, 77, np.uint8)])
    for pixels in (photo, rgba):
        cleaned = decontaminate.decontaminate(pixels, alpha, workers=2)
        soft = (alpha > 0) & (alpha < 255)
        before = np.abs(pixels[soft][:, :3].astype(int) - SUBJECT).max(axis=1)
        after = np.abs(cleaned[soft][:, :3].astype(int) - SUBJECT).max(axis=1)
        assert np.median(before) > 60                      # the fringe is there
        assert after.max() <= 25 and (after < before / 3).all(), (after.max(), np.median(after))
        # Opaque and transparent pixels, and a fourth channel, are byte-identical.
        assert np.array_equal(cleaned[~soft], pixels[~soft])
        assert np.array_equal(cleaned[:, :, 3:], pixels[:, :, 3:])


def test_sixteen_bit_and_float_alpha_and_no_soft_pixels():
    photo, alpha = fringed_edge()
    eight = decontaminate.decontaminate(photo, alpha)
    sixteen = decontaminate.decontaminate(photo, alpha.astype(np.uint16) * 257)
    floats = decontaminate.decontaminate(photo, alpha / 255.0)
    assert np.abs(eight.astype(int) - sixteen).max() <= 1
    assert np.abs(eight.astype(int) - floats).max() <= 1
    hard = (alpha > 127).astype(np.uint8) * 255
    assert np.array_equal(decontaminate.decontaminate(photo, hard), photo)
