"""The command and unusable paths: each is reported with its name and the other inputs go on; outputs
and their temporary files are only ever regular files of our own."""

import os
import shutil
import stat
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from needs import need
from remove_background.command import cli

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="links, FIFOs and permissions as POSIX has them")


@pytest.fixture
def run_process(red_mask_onnx):
    """Runs the command as its own process (in a time limit); without the power to read what
    permissions forbid, even as root (setpriv drops it)."""
    def run_command(*args, timeout=120):
        command = [sys.executable, "-m", "remove_background"] + [str(arg) for arg in args] + [
            "--model", "isnet", "--model-file", str(red_mask_onnx), "--threads", "1"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            need(shutil.which("setpriv"), "setpriv (util-linux), to test unreadable folders as root")
            command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] + command
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        return result.returncode, result.stderr
    return run_command


def photo(path, size=(64, 32)):
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, :, 0] = 200
    Image.fromarray(pixels, "RGB").save(path)
    return path


def test_a_name_too_long_is_reported_and_the_good_file_is_done(tmp_path, run):
    good = photo(tmp_path / "good.png")
    long_name = tmp_path / ("x" * 300 + ".png")
    status, err = run(good, long_name)
    assert status == 1 and "Traceback" not in err
    assert "x" * 300 in err and "name too long" in err.lower()
    assert "1 done, 1 failed" in err and (tmp_path / "good.nobg.png").is_file()


@POSIX
def test_an_unreadable_folder_among_the_inputs_is_reported(tmp_path, run_process):
    good = photo(tmp_path / "good.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    photo(locked / "inside.png")
    locked.chmod(0)
    try:
        status, err = run_process(good, locked, locked / "inside.png")
    finally:
        locked.chmod(0o755)
    assert status == 1 and "Traceback" not in err, err
    assert "locked: Permission denied" in err
    assert "1 done, 2 failed" in err and (tmp_path / "good.nobg.png").is_file()


@POSIX
def test_an_output_under_an_unreadable_folder_is_reported(tmp_path, run_process):
    photo(tmp_path / "a.png")
    photo(tmp_path / "b.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        status, err = run_process(tmp_path / "a.png", tmp_path / "b.png", "-o", locked / "out")
        single, single_err = run_process(tmp_path / "a.png", "-o", locked / "out" / "a.png")
    finally:
        locked.chmod(0o755)
    assert status == 1 and "Traceback" not in err, err
    assert "a.png: " in err and "b.png: " in err and "Permission denied" in err and "0 done, 2 failed" in err
    assert single == 1 and "Traceback" not in single_err and "Permission denied" in single_err


@POSIX
def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path, run):
    source = photo(tmp_path / "photo.png")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "photo.nobg.png.part").symlink_to(victim)
    status, err = run(source)
    assert status == 0, err
    assert victim.read_bytes() == b"precious"
    output = tmp_path / "photo.nobg.png"
    assert stat.S_ISREG(os.lstat(output).st_mode) and Image.open(output).mode == "RGBA"
    assert oct(os.stat(output).st_mode & 0o777) == oct(0o666 & ~cli.UMASK)


@POSIX
def test_a_link_at_the_output_is_replaced_not_written_through(tmp_path, run):
    source = photo(tmp_path / "photo.png")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "photo.nobg.png").symlink_to(victim)
    assert run(source)[0] == 0
    assert victim.read_bytes() == b"precious" and not os.path.islink(tmp_path / "photo.nobg.png")


@POSIX
def test_a_fifo_or_device_as_the_output_is_an_error(tmp_path, run):
    source = photo(tmp_path / "photo.png")
    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    status, err = run(source, "-o", fifo)
    assert status == 1 and "not a regular file" in err and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    if os.geteuid() == 0:
        device = tmp_path / "null.png"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        status, err = run(source, "-o", device)
        assert status == 1 and "not a regular file" in err and stat.S_ISCHR(os.lstat(device).st_mode)
    assert not list(tmp_path.glob("*.part"))


@POSIX
def test_a_fifo_as_an_input_is_skipped_not_waited_on(tmp_path, run_process):
    good = photo(tmp_path / "good.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    status, err = run_process(fifo, good, timeout=60)       # the old command hung here for ever
    assert status == 1 and "pipe.png: not a regular file" in err
    assert "1 done, 1 failed" in err and (tmp_path / "good.nobg.png").is_file()


def test_an_output_ending_in_a_separator_is_a_folder(tmp_path, run):
    source = photo(tmp_path / "photo.png")
    assert run(source, "-o", str(tmp_path / "newdir") + os.sep)[0] == 0
    assert (tmp_path / "newdir" / "photo.nobg.png").is_file()


def test_the_same_file_named_twice_is_done_once(tmp_path, run, monkeypatch):
    photo(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    status, err = run("a.png", "./a.png", tmp_path / "a.png", tmp_path)
    assert status == 0, err
    assert "1 done, 0 failed" in err


def test_only_the_first_frame_of_an_animation_is_used_and_that_is_said(tmp_path, run):
    frames = [Image.new("RGB", (32, 16), (red, 0, 0)) for red in (200, 10, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    status, err = run(tmp_path / "anim.gif", tmp_path / "anim.png", tmp_path / "pages.tif")
    assert status == 0, err
    assert "anim.gif: an animation of 3 frames: only the first is used" in err
    assert "anim.png: an animation of 3 frames: only the first is used" in err
    assert "pages.tif: a TIFF of 3 pages: only the first is used" in err
    assert int(np.asarray(Image.open(tmp_path / "anim.gif.nobg.png"))[8, 16, 3]) >= 190    # frame 1's red


def test_threads_are_bounded(tmp_path, run):
    source = photo(tmp_path / "photo.png")
    with pytest.raises(SystemExit) as exited:
        cli.main([str(source), "--threads", "5000"])
    assert exited.value.code == 2


def huge_png(path, width, height):
    """A small file whose header declares width x height RGB pixels (its data stops early)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" + b"\0" * (width * 3)
    data = zlib.compress(row * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_a_photo_too_large_for_the_memory_is_refused_from_its_header(tmp_path, run, recwarn):
    good = photo(tmp_path / "good.png")
    bomb = huge_png(tmp_path / "bomb.png", 200_000, 200_000)
    status, err = run(bomb, good)
    assert status == 1 and "bomb.png: 200000 x 200000 pixels would need about" in err and "GB of memory" in err
    assert "DecompressionBomb" not in err and not [w for w in recwarn if "DecompressionBomb" in str(w.message)]
    assert "1 done, 1 failed" in err
