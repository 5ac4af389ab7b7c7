"""`python -m model_fetch` as a user runs it: output and exit statuses."""

import io
import subprocess
import sys
import time

from needs import need
from model_fetch.cli import ConsoleProgress
from mf_support import entry, payload, write_registry


def run(tmp_path, registry, *args):
    result = subprocess.run([sys.executable, "-m", "model_fetch", "--registry", str(registry),
                             "--cache-dir", str(tmp_path / "cache"), "--timeout", "2", *args],
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr


def test_cli_commands_and_exit_statuses(server, tmp_path):
    good, other = payload("good"), payload("other")
    registry = write_registry(tmp_path, {
        "good": entry("good.onnx", good, [server.add("/good.onnx", good)]),
        "gone": entry("gone.onnx", other, [server.url("/gone.onnx")]),
        "nc": entry("nc.onnx", other, [server.add("/nc.onnx", other)], commercial_use=False),
    }, default_order=["gone", "good"])

    status, out, _ = run(tmp_path, registry, "list")
    assert status == 0
    lines = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in out.splitlines()[1:4]}
    assert lines["gone"].startswith("*")  # nothing installed: the first fetchable model is the default
    assert "0.6 MB" in lines["good"] and lines["good"].rstrip().endswith("-")
    assert "non-commercial" in lines["nc"]

    status, out, err = run(tmp_path, registry, "path", "good")
    assert status == 1 and "%s -m model_fetch fetch good" % sys.executable in err

    status, out, err = run(tmp_path, registry, "fetch", "good")
    assert status == 0 and out == "good: %s\n" % (tmp_path / "cache" / "good.onnx")
    assert "download good.onnx (0.6 MB)\n" in err and "verify good.onnx" in err  # one line per step, no bar
    assert "\r" not in err

    status, out, _ = run(tmp_path, registry, "path", "good")
    assert (status, out) == (0, "%s\n" % (tmp_path / "cache" / "good.onnx"))
    status, out, _ = run(tmp_path, registry, "list")
    line = [x for x in out.splitlines() if " good " in x][0]
    assert line.startswith("*") and line.rstrip().endswith("yes")  # installed beats first-in-order

    status, out, err = run(tmp_path, registry, "fetch", "gone", "good")  # one failure -> non-zero
    assert status == 1 and "HTTP 404" in err and "good: " in out

    status, _, err = run(tmp_path, registry, "fetch", "nc")
    assert status == 1 and "--accept-license" in err
    status, _, _ = run(tmp_path, registry, "fetch", "--accept-license", "nc")
    assert status == 0

    status, out, _ = run(tmp_path, registry, "verify")
    assert status == 0 and out == "good: ok\nnc: ok\n"
    status, out, _ = run(tmp_path, registry, "verify", "gone")
    assert status == 1 and "gone: not installed" in out

    (tmp_path / "wrong.onnx").write_bytes(good)  # gone is pinned to `other`
    status, _, err = run(tmp_path, registry, "import", "gone", str(tmp_path / "wrong.onnx"))
    assert status == 1 and "failed verification" in err
    (tmp_path / "right.onnx").write_bytes(other)
    status, out, _ = run(tmp_path, registry, "import", "nc", str(tmp_path / "right.onnx"))
    assert status == 0

    with open(tmp_path / "cache" / "good.onnx", "r+b") as f:
        f.write(b"X")
    status, out, _ = run(tmp_path, registry, "verify", "good")
    assert status == 1 and "FAILED" in out and not (tmp_path / "cache" / "good.onnx").exists()

    status, out, _ = run(tmp_path, registry, "remove", "nc")
    assert (status, out) == (0, "nc: removed\n")
    status, out, _ = run(tmp_path, registry, "remove", "nc")
    assert (status, out) == (0, "nc: was not installed\n")

    status, _, err = run(tmp_path, registry, "fetch", "nope")
    assert status == 1 and "unknown model 'nope'" in err
    status, _, err = run(tmp_path, registry, "frobnicate")
    assert status == 2


def test_bad_registry_file_is_an_error_not_a_traceback(tmp_path):
    (tmp_path / "registry.json").write_text('{"models": {"x": {"file": "../../etc/passwd"}}}')
    status, _, err = run(tmp_path, tmp_path / "registry.json", "list")
    assert status == 1 and "Traceback" not in err and "model 'x'" in err


def test_terminal_progress_bar_shows_bytes_rate_and_time_left():
    stream = io.StringIO()
    progress = ConsoleProgress(stream, tty=True)
    progress("download m.onnx", 0, 10_000_000)
    time.sleep(0.3)
    progress("download m.onnx", 5_000_000, 10_000_000)
    progress.end_line()
    last = stream.getvalue().split("\r")[-1]
    assert "[############------------]  50%" in last
    assert "5.0 MB/10.0 MB" in last and "MB/s" in last and "ETA 0:0" in last


def test_full_disk_is_a_clear_error_and_the_next_run_resumes(server, tmp_path):
    # A real write failure: the child may not grow any file past 200 kB (RLIMIT_FSIZE, EFBIG).
    need(sys.platform != "win32", "RLIMIT_FSIZE (the resource module) exists only on POSIX systems")
    import resource
    data = payload("disk")
    registry = write_registry(tmp_path, {"m": entry("m.onnx", data, [server.add("/m.onnx", data)])})
    command = [sys.executable, "-m", "model_fetch", "--registry", str(registry),
               "--cache-dir", str(tmp_path / "cache"), "fetch", "m"]
    limited = subprocess.run(command, capture_output=True, text=True, timeout=60,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)))
    assert limited.returncode == 1
    assert "no room to write" in limited.stderr and "run the same command again to resume" in limited.stderr
    part = tmp_path / "cache" / "m.onnx.part"
    kept = part.stat().st_size
    assert 0 < kept <= 200_000 and part.read_bytes() == data[:kept]
    assert not (tmp_path / "cache" / "m.onnx").exists()
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert server.gets("/m.onnx")[-1] == "bytes=%d-" % kept
    assert (tmp_path / "cache" / "m.onnx").read_bytes() == data


def test_list_gives_every_shipped_model_a_size(tmp_path):
    """The registry's pinned size, or its publisher's figure marked ~ where none is pinned."""
    import model_fetch

    result = subprocess.run([sys.executable, "-m", "model_fetch", "--cache-dir", str(tmp_path), "list"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for model in model_fetch.models():
        line = next(line for line in result.stdout.splitlines() if (" %s " % model.name) in line)
        size = line.split(model.name, 1)[1].split()[0]
        assert size != "?", line
        assert size.startswith("~") == (model.size is None), line
    assert "~ a size as its publisher gives it" in result.stdout
