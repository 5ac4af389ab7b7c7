"""install.py --check runs each verified model on the CC0 sample photo: one that loads but gives a
constant mask is reported as suspect."""

import hashlib
import json
import sys
import types

import numpy as np

from install_support import load_install_module
from onnx_models import ISNET_PREPROCESS, replay_model
from model_fetch import Registry, Store


class Output:
    def __init__(self):
        self.lines = []

    def always(self, line):
        self.lines.append(line)


def installed_as_isnet(tmp_path, model_file):
    """A model_fetch-like view of a cache where model_file is installed (verified) under ISNet's name."""
    data = model_file.read_bytes()
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"models": {"isnet": {
        "title": "probe", "description": "probe", "license": "MIT", "commercial_use": True,
        "file": "isnet.onnx", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "sources": [], "preprocess": ISNET_PREPROCESS}}}))
    store = Store(Registry.load(registry), tmp_path / "cache")
    store.import_file("isnet", model_file)
    return types.SimpleNamespace(cache_dir=lambda: store.cache_dir, models=store.models,
                                 is_installed=store.is_installed, verify=store.verify,
                                 installed_path=store.installed_path)


def test_a_model_giving_a_constant_mask_is_suspect(tmp_path, model_dir):
    install = load_install_module()
    constant = replay_model(model_dir / "constant.onnx", np.full((1, 1, 1024, 1024), 0.7, np.float32))
    problems, out = [], Output()
    usable = install.check_models(installed_as_isnet(tmp_path, constant), problems, out, sys.executable)
    assert usable == 0
    assert any("SUSPECT: its mask of chelsea.png is constant" in line for line in out.lines), out.lines
    assert problems and "constant mask" in problems[0] and "model_fetch fetch isnet" in problems[0]


def test_a_model_that_sees_the_photo_passes(tmp_path, red_mask_onnx):
    install = load_install_module()
    problems, out = [], Output()
    assert install.check_models(installed_as_isnet(tmp_path, red_mask_onnx), problems, out, sys.executable) == 1
    assert problems == [] and any("installed, verified, mask of chelsea.png from" in line for line in out.lines)


def test_a_model_that_does_not_run_is_reported(tmp_path):
    install = load_install_module()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph" * 100)
    problems, out = [], Output()
    assert install.check_models(installed_as_isnet(tmp_path, broken), problems, out, sys.executable) == 0
    assert any("does NOT run" in line for line in out.lines) and "does not run" in problems[0]
