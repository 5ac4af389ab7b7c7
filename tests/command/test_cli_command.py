"""The remove-background command on generated images, with a tiny model whose mask is the
image's red channel (so every expected alpha value is known in advance)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from remove_background.command import cli

RED_BANDS = (0, 100, 200, 255)
BAND = 64


def banded(height=32, channels=3):
    """Four vertical bands whose red values are RED_BANDS; green and blue vary."""
    image = np.zeros((height, BAND * len(RED_BANDS), channels), np.uint8)
    for index, red in enumerate(RED_BANDS):
        image[:, index * BAND:(index + 1) * BAND, 0] = red
    if channels >= 3:
        image[:, :, 1] = np.arange(image.shape[1]) % 256
        image[:, :, 2] = 77
    return image


def band_values(plane):
    """The value in the middle of each band (away from the soft edges between them)."""
    middle = plane.shape[0] // 2
    return [int(plane[middle, index * BAND + BAND // 2]) for index in range(len(RED_BANDS))]


def test_straight_alpha_keeps_colours(tmp_path, run):
    pixels = banded()
    Image.fromarray(pixels, "RGB").save(tmp_path / "photo.png")
    status, err = run(tmp_path / "photo.png")
    assert status == 0, err
    result = Image.open(tmp_path / "photo.nobg.png")
    assert result.mode == "RGBA" and result.size == (BAND * 4, 32)
    out = np.asarray(result)
    assert np.array_equal(out[:, :, :3], pixels)                 # not premultiplied: no dark fringe
    assert band_values(out[:, :, 3]) == list(RED_BANDS)
    assert "1 done, 0 failed" in err


def test_existing_alpha_is_multiplied(tmp_path, run):
    pixels = banded(channels=4)
    pixels[:, :, 1:3] = 90
    pixels[:16, :, 3] = 128
    pixels[16:, :, 3] = 255
    Image.fromarray(pixels, "RGBA").save(tmp_path / "layer.png")
    assert run(tmp_path / "layer.png")[0] == 0
    out = np.asarray(Image.open(tmp_path / "layer.nobg.png"))
    assert band_values(out[8:9, :, 3]) == [round(128 * red / 255) for red in RED_BANDS]
    assert band_values(out[24:25, :, 3]) == list(RED_BANDS)
    assert np.array_equal(out[:, :, :3], pixels[:, :, :3])


def test_mask_only_and_background(tmp_path, run):
    pixels = banded()
    Image.fromarray(pixels, "RGB").save(tmp_path / "photo.png")
    assert run(tmp_path / "photo.png", "--mask-only")[0] == 0
    mask = Image.open(tmp_path / "photo.mask.png")
    assert mask.mode == "L" and band_values(np.asarray(mask)) == list(RED_BANDS)

    assert run(tmp_path / "photo.png", "--background", "#00ff00", "-o", tmp_path / "green.png")[0] == 0
    green = Image.open(tmp_path / "green.png")
    assert green.mode == "RGB"
    out = np.asarray(green).astype(int)
    for index, red in enumerate(RED_BANDS):
        x = index * BAND + BAND // 2
        alpha = red / 255
        expected = pixels[16, x] * alpha + np.array([0, 255, 0]) * (1 - alpha)
        assert np.abs(out[16, x] - expected).max() <= 1, (red, out[16, x], expected)


def test_folders_failures_and_outputs(tmp_path, run):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(banded(), "RGB").save(photos / "a.png")
    Image.fromarray(banded(), "RGB").save(photos / "b.jpg", quality=95)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (photos / "notes.txt").write_text("not an image")
    status, err = run(photos, tmp_path / "missing.png")
    assert status == 1
    assert "broken.png" in err and "missing.png" in err
    assert (photos / "a.nobg.png").exists() and (photos / "b.nobg.png").exists()
    assert not (photos / "broken.nobg.png").exists() and not (photos / "notes.nobg.png").exists()
    assert "2 done, 2 failed" in err
    # A second run does not take the first run's results for inputs.
    (photos / "broken.png").unlink()
    status, err = run(photos, "-o", tmp_path / "out")
    assert status == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nobg.png", "b.nobg.png"]
    jpeg_alpha = np.asarray(Image.open(tmp_path / "out" / "b.nobg.png"))[:, :, 3]
    assert np.abs(np.array(band_values(jpeg_alpha)) - RED_BANDS).max() <= 3     # JPEG is lossy


def test_palette_input(tmp_path, run):
    rgb = Image.fromarray(banded(), "RGB")
    palette = rgb.quantize(colors=16)
    index_of_first = np.asarray(palette)[0, 0]
    palette.info["transparency"] = int(index_of_first)
    palette.save(tmp_path / "indexed.png", transparency=int(index_of_first))
    assert Image.open(tmp_path / "indexed.png").mode == "P"
    assert run(tmp_path / "indexed.png")[0] == 0
    out = np.asarray(Image.open(tmp_path / "indexed.nobg.png"))
    source = np.asarray(palette.convert("RGBA"))
    transparent = source[:, :, 3] == 0
    assert transparent.any() and np.all(out[:, :, 3][transparent] == 0)
    assert np.array_equal(out[:, :, :3], source[:, :, :3])
    assert band_values(out[:, :, 3])[1:] == list(RED_BANDS[1:])


def test_sixteen_bit_grey_input(tmp_path, run):
    levels = np.array([0, 100, 200, 255], np.uint32)
    grey16 = np.repeat(levels * 257, BAND)[np.newaxis, :].repeat(16, axis=0).astype(np.uint16)
    grey16[:, BAND + 5] = 40000                                  # 40000 / 257 = 155.6
    Image.frombytes("I;16", (grey16.shape[1], grey16.shape[0]), grey16.astype("<u2").tobytes()).save(
        tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert run(tmp_path / "deep.png")[0] == 0
    out = Image.open(tmp_path / "deep.nobg.png")
    assert out.mode == "LA"
    values = np.asarray(out)
    assert band_values(values[:, :, 0]) == [0, 100, 200, 255]   # scaled, not clipped at 255
    assert values[8, BAND + 5, 0] == 156
    assert band_values(values[:, :, 1]) == [0, 100, 200, 255]


def test_exif_orientation_is_respected(tmp_path, run):
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :30, 0] = 255                                      # left half kept
    image = Image.fromarray(pixels, "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6                                             # shown turned 90 degrees clockwise
    image.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    assert run(tmp_path / "turned.jpg")[0] == 0
    out = Image.open(tmp_path / "turned.nobg.png")
    assert out.size == (40, 60)
    alpha = np.asarray(out)[:, :, 3]
    assert alpha[:20].min() >= 250 and alpha[40:].max() <= 5     # the left half is now on top


def test_single_output_file_and_refusing_to_overwrite_the_input(tmp_path, run):
    Image.fromarray(banded(), "RGB").save(tmp_path / "photo.png")
    status, err = run(tmp_path / "photo.png", "-o", tmp_path / "photo.png")
    assert status == 1 and "overwrite" in err
    assert Image.open(tmp_path / "photo.png").mode == "RGB"      # the input is untouched
    assert run(tmp_path / "photo.png", "-o", tmp_path / "sub" / "cut.png")[0] == 0
    assert Image.open(tmp_path / "sub" / "cut.png").mode == "RGBA"


def test_missing_model_names_the_fetch_command(tmp_path):
    Image.fromarray(banded(), "RGB").save(tmp_path / "photo.png")
    env = dict(os.environ, REMOVE_BACKGROUND_MODELS=str(tmp_path / "empty-cache"))
    result = subprocess.run([sys.executable, "-m", "remove_background", str(tmp_path / "photo.png"),
                             "--model", "isnet"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "%s -m model_fetch fetch isnet" % sys.executable in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "photo.nobg.png").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_one_progress_line_per_file_on_a_terminal(tmp_path, red_mask_onnx):
    import pty

    for name in ("a", "c"):
        Image.fromarray(banded(), "RGB").save(tmp_path / ("%s.png" % name))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "remove_background", str(tmp_path), "--model", "isnet",
         "--model-file", str(red_mask_onnx)], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:                                          # the terminal closed
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=120) == 1
    # Each file's result (or failure) and the summary, without the lines saying what starts.
    lines = [line for line in output.decode().splitlines()
             if "GPU" not in line and not line.endswith(" ...") and "loading the model" not in line]
    # In order, although reading, inference and writing of neighbouring files overlap.
    assert lines[0].startswith("[1/3]") and "a.png" in lines[0]
    assert "b.png: not a readable image" in lines[1]
    assert lines[2].startswith("[3/3]") and "c.png" in lines[2]
    assert "2 done, 1 failed" in lines[-1]


def test_same_names_do_not_overwrite_each_other(tmp_path, run):
    Image.fromarray(banded(), "RGB").save(tmp_path / "a.png")
    Image.fromarray(banded(), "RGB").save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(banded(), "RGB").save(tmp_path / "b.png")
    assert run(tmp_path)[0] == 0
    assert sorted(p.name for p in tmp_path.glob("*.nobg.png")) == [
        "a.jpg.nobg.png", "a.png.nobg.png", "b.nobg.png"]


def test_colour_profile_goes_with_the_cut_out(tmp_path, run):
    from PIL import ImageCms

    rgb_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(banded(), "RGB").save(tmp_path / "tagged.jpg", icc_profile=rgb_profile, quality=95)
    assert run(tmp_path / "tagged.jpg")[0] == 0
    assert Image.open(tmp_path / "tagged.nobg.png").info.get("icc_profile") == rgb_profile
    assert run(tmp_path / "tagged.jpg", "--background", "white", "-o", tmp_path / "white.png")[0] == 0
    assert Image.open(tmp_path / "white.png").info.get("icc_profile") == rgb_profile
    assert run(tmp_path / "tagged.jpg", "--mask-only")[0] == 0
    assert "icc_profile" not in Image.open(tmp_path / "tagged.mask.png").info   # a mask has no colours


@pytest.mark.parametrize("read_ahead", [True, False])
def test_each_result_comes_from_its_own_photo(tmp_path, run, monkeypatch, read_ahead):
    if not read_ahead:
        monkeypatch.setattr(cli, "READ_AHEAD_PIXELS", 0)             # as for very large photos
    reds = [30, 90, 150, 210, 250]
    for index, red in enumerate(reds):
        pixels = np.zeros((20 + index, 30, 3), np.uint8)
        pixels[:, :, 0] = red
        Image.fromarray(pixels, "RGB").save(tmp_path / ("p%d.png" % index))
    assert run(tmp_path, "-o", tmp_path / "out")[0] == 0
    for index, red in enumerate(reds):
        out = np.asarray(Image.open(tmp_path / "out" / ("p%d.nobg.png" % index)))
        assert out.shape == (20 + index, 30, 4)
        assert abs(int(out[10, 15, 3]) - red) <= 1 and out[10, 15, 0] == red


def test_a_result_that_cannot_be_written_is_reported_and_the_others_go_on(tmp_path, run):
    for name in ("a", "b", "c"):
        Image.fromarray(banded(), "RGB").save(tmp_path / ("%s.png" % name))
    (tmp_path / "out" / "b.nobg.png" / "in the way").mkdir(parents=True)    # a folder there
    status, err = run(tmp_path, "-o", tmp_path / "out")
    assert status == 1
    assert "b.png" in err and "2 done, 1 failed" in err
    assert (tmp_path / "out" / "a.nobg.png").is_file() and (tmp_path / "out" / "c.nobg.png").is_file()
    assert not list((tmp_path / "out").glob("*.part"))


def test_an_output_name_in_another_format_gets_that_format(tmp_path, run):
    Image.fromarray(banded(), "RGB").save(tmp_path / "photo.png")
    assert run(tmp_path / "photo.png", "--background", "white", "-o", tmp_path / "white.jpg")[0] == 0
    white = Image.open(tmp_path / "white.jpg")
    assert white.format == "JPEG" and white.mode == "RGB"
    assert band_values(np.asarray(white)[:, :, 0])[0] >= 250                  # red 0: all white
    assert run(tmp_path / "photo.png", "-o", tmp_path / "cut.webp")[0] == 0
    assert Image.open(tmp_path / "cut.webp").format == "WEBP" and Image.open(tmp_path / "cut.webp").mode == "RGBA"
    status, err = run(tmp_path / "photo.png", "-o", tmp_path / "cut.jpg")    # JPEG has no alpha
    assert status == 1 and "name the output .png" in err
    assert "transparency" in err and not (tmp_path / "cut.jpg").exists()
    assert not list(tmp_path.glob("*.part"))


def test_no_output_replaces_another_input(tmp_path, run):
    Image.fromarray(banded(), "RGB").save(tmp_path / "small.png")
    Image.fromarray(banded(channels=4), "RGBA").save(tmp_path / "small.nobg.png")   # given as an input too
    before = (tmp_path / "small.nobg.png").read_bytes()
    status, err = run(tmp_path / "small.png", tmp_path / "small.nobg.png")
    assert status == 1 and "would overwrite an input" in err and "1 done, 1 failed" in err
    assert (tmp_path / "small.nobg.png").read_bytes() == before
    assert (tmp_path / "small.nobg.nobg.png").exists()


def test_any_failure_of_one_file_is_reported_and_the_others_go_on(tmp_path, run, monkeypatch):
    from remove_background.command import png_writer

    write = png_writer.write

    def failing_for_b(path, *args, **kwargs):
        if path.name.startswith("b."):
            raise RuntimeError("the encoder broke")
        return write(path, *args, **kwargs)

    monkeypatch.setattr(png_writer, "write", failing_for_b)
    for name in ("a", "b", "c"):
        Image.fromarray(banded(), "RGB").save(tmp_path / ("%s.png" % name))
    status, err = run(tmp_path, "-o", tmp_path / "out")
    assert status == 1 and "b.png: RuntimeError: the encoder broke" in err and "2 done, 1 failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nobg.png", "c.nobg.png"]


def test_grey_photo_onto_a_translucent_colour(tmp_path, run):
    grey = banded(channels=1)[:, :, 0]
    grey[:] = np.repeat(np.array(RED_BANDS, np.uint8), BAND)          # the mask is the grey level
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    assert run(tmp_path / "grey.png", "--background", "#0000ff80", "-o", tmp_path / "out.png")[0] == 0
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGBA"
    values = np.asarray(out).astype(int)
    for index, level in enumerate(RED_BANDS):
        x, a = index * BAND + BAND // 2, level / 255
        expected = [level * a, level * a, level * a + 255 * (1 - a), 255 * a + 0x80 * (1 - a)]
        assert np.abs(values[16, x] - expected).max() <= 1, (level, values[16, x], expected)


def test_no_refine_gives_the_bilinear_mask_and_refine_moves_edges(tmp_path, run, red_mask_onnx):
    from remove_background.helper import engine, postprocess, preprocess

    pixels = banded()
    Image.fromarray(pixels, "RGB").save(tmp_path / "photo.png")
    assert run(tmp_path / "photo.png", "--mask-only", "--no-refine", "-o", tmp_path / "plain.png")[0] == 0
    plain = np.asarray(Image.open(tmp_path / "plain.png"))
    # Byte for byte the mask as it was made before refinement: the model's, stretched bilinearly.
    runner = engine.load("isnet", threads=1, file=red_mask_onnx)
    small = postprocess.mask_from_output(runner.infer(preprocess.model_input(pixels, runner.preprocess)),
                                         runner.preprocess)
    assert np.array_equal(plain, postprocess.upsample(small, pixels.shape[1], pixels.shape[0]))
    assert run(tmp_path / "photo.png", "--mask-only", "-o", tmp_path / "refined.png")[0] == 0
    refined = np.asarray(Image.open(tmp_path / "refined.png"))
    assert band_values(refined) == band_values(plain) == list(RED_BANDS)
    assert not np.array_equal(refined, plain)               # the edges between the bands moved


def test_mask_file_is_used_exactly_and_decontamination_changes_only_soft_pixels(tmp_path, run):
    pixels = banded()
    Image.fromarray(pixels, "RGB").save(tmp_path / "photo.png")
    given = np.zeros(pixels.shape[:2], np.uint8)
    given[:, 40:200] = 255
    given[:, 200:220] = np.linspace(255, 0, 20).astype(np.uint8)
    Image.fromarray(given, "L").save(tmp_path / "mask.png")
    assert cli.main([str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"), "--no-refine",
                     "-o", str(tmp_path / "out.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.array_equal(out[:, :, 3], given) and np.array_equal(out[:, :, :3], pixels)
    assert cli.main([str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"), "--no-refine",
                     "--decontaminate", "-o", str(tmp_path / "clean.png")]) == 0
    clean = np.asarray(Image.open(tmp_path / "clean.png"))
    soft = (given > 0) & (given < 255)
    assert np.array_equal(clean[:, :, 3], given)
    assert np.array_equal(clean[~soft], out[~soft]) and not np.array_equal(clean[soft], out[soft])


def test_box_blacks_out_the_rest_and_a_box_outside_is_refused(tmp_path, run):
    pixels = banded()
    Image.fromarray(pixels, "RGB").save(tmp_path / "photo.png")
    status, err = run(tmp_path / "photo.png", "--mask-only", "--box", "130,4,120,20", "-o", tmp_path / "box.png")
    assert status == 0, err
    boxed = np.asarray(Image.open(tmp_path / "box.png"))
    assert boxed[:4].max() == 0 and boxed[24:].max() == 0 and boxed[:, :130].max() == 0
    assert boxed[10, 140:185].min() >= 195 and boxed[10, 200:250].min() >= 250   # red 200 and 255 kept
    status, err = run(tmp_path / "photo.png", "--box", "200,0,100,10", "-o", tmp_path / "out.png")
    assert status == 1 and "not inside the 256x32 photo" in err and not (tmp_path / "out.png").exists()


def test_a_folder_run_says_what_it_does_from_the_start_with_each_files_own_time(tmp_path, isnet_path):
    """The model loading and each file are announced before the work, not after it (a folder of
    12 MP photos said nothing for the first photo's whole ten seconds), and each file's time is
    its own (it used to be the time since the previous line: one file behind)."""
    from needs import FIXTURES

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee"):
        (photos / ("%s.png" % name)).write_bytes((FIXTURES / ("%s.png" % name)).read_bytes())
    outputs = {name: photos / ("%s.nobg.png" % name) for name in ("chelsea", "coffee")}
    process = subprocess.Popen([sys.executable, "-m", "remove_background", str(photos), "--model", "isnet"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, REMOVE_BACKGROUND_PROVIDER="cpu"))
    seen = []
    for line in process.stderr:
        line = line.rstrip("\n")
        written = sorted(name for name, path in outputs.items() if path.exists())
        seen.append((line, written))
    assert process.wait(timeout=300) == 0
    lines = [line for line, _written in seen]
    loading = next(index for index, line in enumerate(lines) if "loading the model isnet" in line)
    first = lines.index("[1/2] %s ..." % (photos / "chelsea.png"))
    second = lines.index("[2/2] %s ..." % (photos / "coffee.png"))
    assert loading < first < second, lines
    # When each of these lines arrived, nothing had been written yet: they came before the first
    # inference ended.
    assert seen[loading][1] == [] and seen[first][1] == [], seen
    done = [line for line in lines if " -> " in line]
    assert [line.split(" ")[1] for line in done] == [str(photos / "chelsea.png"), str(photos / "coffee.png")]
    for line in done:
        seconds = float(line.rsplit("(", 1)[1].rstrip(" s)"))
        assert seconds >= 0.1, line      # a file's own inference, not the gap since the last line
    assert "2 done, 0 failed" in lines[-1]


def test_quiet_says_only_what_failed(tmp_path, run):
    Image.fromarray(banded(), "RGB").save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    status, err = run(tmp_path, "--quiet")
    assert status == 1
    assert [line for line in err.splitlines() if "GPU" not in line] == [
        "remove-background: %s: not a readable image (cannot identify image file %r)"
        % (tmp_path / "b.png", str(tmp_path / "b.png"))]
    assert (tmp_path / "a.nobg.png").is_file()


def test_one_image_outside_a_terminal_says_what_it_wrote(tmp_path, run):
    Image.fromarray(banded(), "RGB").save(tmp_path / "a.png")
    status, err = run(tmp_path / "a.png")
    assert status == 0
    assert "%s -> %s (" % (tmp_path / "a.png", tmp_path / "a.nobg.png") in err
