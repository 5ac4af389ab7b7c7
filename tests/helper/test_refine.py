"""Edge-aware refinement: the mask's outline follows the photo's edges at full resolution."""

import numpy as np
from PIL import Image

from remove_background.helper import postprocess, preprocess, refine

WIDTH, HEIGHT, EDGE = 2048, 1536, 1000      # the photo's true edge: x = EDGE


def two_colour_photo(channels=3, noise=0):
    left, right = np.array([180, 140, 60]), np.array([40, 90, 200])
    photo = np.where(np.arange(WIDTH)[None, :, None] < EDGE, left, right)
    photo = np.broadcast_to(photo, (HEIGHT, WIDTH, 3)).astype(np.float64)
    if noise:
        photo = photo + np.random.default_rng(1).normal(0, noise, photo.shape)
    photo = np.clip(np.round(photo), 0, 255).astype(np.uint8)
    if channels == 1:
        return photo[:, :, :1].copy()
    if channels == 4:
        return np.dstack([photo, np.full((HEIGHT, WIDTH), 255, np.uint8)])
    return photo


def blurred_step(size=512, softness=1.0):
    """A low-resolution mask whose soft ramp (about 6 of its pixels, 24 of the photo's, as a
    model's at a 4x stretch) is centred on the photo's edge."""
    x = (np.arange(size) + 0.5) * WIDTH / size - 0.5
    row = 1 / (1 + np.exp((x - (EDGE - 0.5)) / (softness * WIDTH / size)))
    return np.broadcast_to(row.astype(np.float32), (size, size)).copy()


def transition(mask_row):
    """The columns where the mask is more than 0.1 away from both 0 and 1."""
    values = mask_row.astype(np.float64) / 255
    return np.flatnonzero((values > 0.1) & (values < 0.9))


def test_blurred_step_comes_back_within_two_pixels():
    for channels in (3, 1, 4):
        photo = two_colour_photo(channels, noise=2)
        small = blurred_step()
        bilinear = postprocess.upsample(small, WIDTH, HEIGHT)
        refined = refine.refine(photo, small, workers=2)
        before = transition(bilinear[HEIGHT // 2])
        assert before.min() <= EDGE - 8 and before.max() >= EDGE + 7      # the test's premise
        for row in (0, HEIGHT // 3, HEIGHT - 1):
            # Within 2 px of the edge (between columns EDGE - 1 and EDGE): the half-way
            # crossing on it, and only the columns up to 2 px away from it still soft.
            assert refined[row, EDGE - 1] >= 128 > refined[row, EDGE], (channels, row)
            soft = transition(refined[row])
            assert ((soft >= EDGE - 2) & (soft <= EDGE + 1)).all(), (channels, row, soft)


def test_exact_mask_stays_exact():
    photo = two_colour_photo()
    exact = (np.arange(WIDTH)[None, :] < EDGE).astype(np.float32).repeat(HEIGHT, axis=0)
    for depth, full in ((1, 255), (2, 65535)):
        refined = refine.refine(photo, exact, depth=depth, workers=2)
        assert refined.dtype == (np.uint8 if depth == 1 else np.uint16)
        assert np.array_equal(refined, exact.astype(refined.dtype) * full)


def test_where_the_photo_has_no_edge_the_mask_is_the_bilinear_one():
    flat = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
    small = blurred_step()
    for depth in (1, 2):
        assert np.array_equal(refine.refine(flat, small, depth=depth, workers=2),
                              postprocess.upsample(small, WIDTH, HEIGHT, depth))


def test_smaller_photo_and_odd_sizes():
    photo = np.asarray(Image.fromarray(two_colour_photo()).resize((301, 7)))
    refined = refine.refine(photo, blurred_step(), depth=2)
    assert refined.shape == (7, 301) and refined.dtype == np.uint16
    assert refined[:, :100].min() > 60000 and refined[:, 200:].max() < 5000


def test_the_guide_made_as_rows_arrive_is_the_guide_of_the_whole_photo():
    rng = np.random.default_rng(5)
    # A 12 MP photo (every other row and column averaged into the guide), odd sizes, a thin strip.
    for height, width, channels in ((2828, 4242, 3), (1201, 3688, 4), (999, 17, 1), (3, 5000, 2)):
        photo = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        whole = refine.guide_image(photo)
        small_w, small_h, step = refine.guide_grid(height, width)
        assert whole.shape == (small_h, small_w, 3 if channels >= 3 else 1)
        # Pillow's own box filter in one call, on the same rows and columns, rounds within a level of it.
        pillow = preprocess.resize_pillow(photo[::step, ::step], small_w, small_h, Image.Resampling.BOX)
        assert np.abs(pillow.astype(int) - whole).max() <= 1
        buffer = np.zeros_like(photo)
        arriving = refine.GuideByRows(buffer)
        filled = 0
        while filled < height:
            rows = min(height, filled + int(rng.integers(1, 700)))
            buffer[filled:rows] = photo[filled:rows]
            filled = rows
            arriving.rows_arrived(filled)
        assert np.array_equal(arriving.guide(), whole), (height, width, channels)
    # And a refinement given the guide made so is the refinement of the photo alone.
    photo = two_colour_photo(noise=2)
    small = blurred_step()
    assert np.array_equal(refine.refine(photo, small, workers=2, guide=refine.guide_image(photo)),
                          refine.refine(photo, small, workers=2))
