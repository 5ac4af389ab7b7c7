"""The helper's "refine" request over real pipes: a painted mask snapped, colours decontaminated."""

import json
import sys

import numpy as np
import pytest

from remove_background.helper import decontaminate, snap, version
from remove_background.wire.client import HelperClient, HelperError, HelperSession

SERVE = [sys.executable, "-m", "remove_background.helper.serve"]
WIDTH, HEIGHT, EDGE = 300, 200, 150


def photo_and_painted_mask(offset=12, channels=3):
    x = np.arange(WIDTH)
    photo = np.where(x[None, :, None] < EDGE, [200, 150, 70], [30, 160, 40])
    photo = np.broadcast_to(photo, (HEIGHT, WIDTH, 3)).astype(np.uint8).copy()
    photo[:, EDGE - 1] = [115, 155, 55]      # one mixed pixel column: a soft edge to decontaminate
    if channels == 4:
        photo = np.dstack([photo, np.full((HEIGHT, WIDTH), 255, np.uint8)])
    mask = np.broadcast_to(np.where(x < EDGE + offset, 255, 0).astype(np.uint8), (HEIGHT, WIDTH)).copy()
    return photo, mask


@pytest.mark.parametrize("channels", [3, 4])
def test_snap_and_decontaminate_without_a_model(channels):
    photo, mask = photo_and_painted_mask(channels=channels)
    with HelperClient(SERVE) as helper:
        kept, none = helper.refine(WIDTH, HEIGHT, channels, photo.tobytes(), mask.tobytes())
        assert kept == mask.tobytes() and none is None
        snapped, colours = helper.refine(WIDTH, HEIGHT, channels, photo.tobytes(), mask.tobytes(),
                                         snap=True, decontaminate=True)
    snapped = np.frombuffer(snapped, np.uint8).reshape(HEIGHT, WIDTH)
    assert np.array_equal(snapped, snap.snap(photo, mask))
    assert abs(int((snapped >= 128).sum(axis=1).max()) - EDGE) <= 1
    colours = np.frombuffer(colours, np.uint8).reshape(HEIGHT, WIDTH, channels)
    assert np.array_equal(colours, decontaminate.decontaminate(photo, snapped))


def test_sixteen_bit_masks_and_bad_sizes():
    photo, mask = photo_and_painted_mask()
    wide = (mask.astype("<u2") * 257)
    with HelperClient(SERVE) as helper:
        snapped, _ = helper.refine(WIDTH, HEIGHT, 3, photo.tobytes(), wide.tobytes(), mask_depth=2, snap=True)
        assert np.array_equal(np.frombuffer(snapped, "<u2").reshape(HEIGHT, WIDTH),
                              snap.snap(photo, wide, depth=2))
        with pytest.raises(HelperError) as error:
            helper.refine(WIDTH, HEIGHT, 3, photo.tobytes(), mask.tobytes()[:-1])
        assert error.value.kind == "bad_size"
        # The helper is still there and in step.
        assert helper.hello()["protocol"]


def test_a_session_with_no_model_refines(tmp_path):
    (tmp_path / "helper.json").write_text(json.dumps({"python": sys.executable, "version": version()}))
    photo, mask = photo_and_painted_mask()
    with HelperSession(tmp_path, None) as session:
        snapped, _ = session.refine(WIDTH, HEIGHT, 3, photo.tobytes(), mask.tobytes(), snap=True)
    assert snapped == snap.snap(photo, mask).tobytes()
