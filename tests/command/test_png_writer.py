"""The command's PNG writer: files that Pillow and zlib read back exactly, checksums and all."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from remove_background.command import cli, png_writer


def chunks(path):
    """(type, data) of every chunk, each chunk's CRC checked."""
    data = path.read_bytes()
    assert data[:8] == png_writer.SIGNATURE
    found, offset = [], 8
    while offset < len(data):
        length, = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        crc, = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        found.append((kind, body))
        offset += 12 + length
    return found


def check_stream(path, height, row_bytes):
    """The IDAT data is one zlib stream (zlib.decompress checks its Adler-32) of filtered rows."""
    raw = zlib.decompress(b"".join(body for kind, body in chunks(path) if kind == b"IDAT"))
    assert len(raw) == height * (row_bytes + 1)


@pytest.mark.parametrize("channels, mode", [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
@pytest.mark.parametrize("size", [(1, 1), (7, 3), (333, 517)])
def test_round_trip(tmp_path, monkeypatch, channels, mode, size):
    monkeypatch.setattr(png_writer, "BAND_BYTES", 1000)       # many bands, joined
    width, height = size
    pixels = np.random.default_rng(channels).integers(0, 256, (height, width, channels), np.uint8)
    pixels[height // 2:, : width // 2] = 200                   # flat runs as well as noise
    path = tmp_path / "out.png"
    png_writer.write(path, pixels, workers=3)
    image = Image.open(path)
    assert image.mode == mode and image.size == size
    assert np.array_equal(np.asarray(image).reshape(height, width, channels), pixels)
    check_stream(path, height, width * channels)


@pytest.mark.parametrize("channels, mode", [(1, "LA"), (3, "RGBA")])
def test_separate_alpha_plane_becomes_the_last_channel(tmp_path, monkeypatch, channels, mode):
    monkeypatch.setattr(png_writer, "BAND_BYTES", 4096)
    rng = np.random.default_rng(5)
    colour = rng.integers(0, 256, (301, 97, channels), np.uint8)
    alpha = rng.integers(0, 256, (301, 97), np.uint8)
    path = tmp_path / "cut.png"
    png_writer.write(path, colour, alpha=alpha, workers=2)
    out = np.asarray(Image.open(path))
    assert Image.open(path).mode == mode
    assert np.array_equal(out[:, :, :-1], colour) and np.array_equal(out[:, :, -1], alpha)
    check_stream(path, 301, 97 * (channels + 1))


def test_a_two_dimensional_mask_is_grey(tmp_path):
    mask = np.tile(np.arange(256, dtype=np.uint8), (40, 1))
    png_writer.write(tmp_path / "mask.png", mask)
    image = Image.open(tmp_path / "mask.png")
    assert image.mode == "L" and np.array_equal(np.asarray(image), mask)


def test_colour_profile_is_embedded_only_where_it_fits(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    grey = np.zeros((4, 4, 1), np.uint8)
    colour = np.zeros((4, 4, 3), np.uint8)
    mask = np.full((4, 4), 255, np.uint8)
    # The command decides whether the photo's profile fits its output, for either writer.
    cli.write_output(cli.Photo(colour, srgb, None), mask, tmp_path / "rgb.png", False, None, 1)
    cli.write_output(cli.Photo(grey, srgb, None), mask, tmp_path / "grey.png", False, None, 1)  # RGB profile: left out
    assert Image.open(tmp_path / "rgb.png").info["icc_profile"] == srgb
    assert "icc_profile" not in Image.open(tmp_path / "grey.png").info
    assert [kind for kind, _ in chunks(tmp_path / "rgb.png")] == [b"IHDR", b"iCCP", b"IDAT", b"IDAT", b"IEND"]
    png_writer.write(tmp_path / "no-profile.png", colour)
    assert [kind for kind, _ in chunks(tmp_path / "no-profile.png")] == [b"IHDR", b"IDAT", b"IDAT", b"IEND"]


def test_adler32_combine_matches_zlib():
    rng = np.random.default_rng(1)
    for first_length, second_length in ((0, 5), (1, 0), (70000, 100), (3, 200000)):
        first = rng.integers(0, 256, first_length, np.uint8).tobytes()
        second = rng.integers(0, 256, second_length, np.uint8).tobytes()
        combined = png_writer.adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
        assert combined == zlib.adler32(first + second)


def test_refuses_what_png_cannot_hold(tmp_path):
    with pytest.raises(ValueError):
        png_writer.write(tmp_path / "x.png", np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError):
        png_writer.write(tmp_path / "x.png", np.zeros((2, 2), np.uint16))
    with pytest.raises(ValueError):
        png_writer.write(tmp_path / "x.png", np.zeros((0, 2), np.uint8))
    with pytest.raises(ValueError):
        png_writer.write(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8), alpha=np.zeros((2, 1), np.uint8))
    assert not (tmp_path / "x.png").exists()
