"""HTTP downloads: resumable (Range) into a .part file, retried with back-off, failing fast when offline.

Only https is used, except plain http to a loopback address (the tests' local server); redirects are
held to the same rule.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from .cache import open_part, regular_size
from .errors import DiskFull, DownloadError, NoNetwork
from .settings import Settings

USER_AGENT = "gimp-remove-background-model-fetch/1"
BLOCK = 1 << 16
_OFFLINE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ECONNREFUSED}


class _Retryable(Exception):
    pass


class _Fatal(Exception):
    pass


class _Offline(Exception):
    pass


def is_loopback(host) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return
    raise _Fatal("refused: only https is allowed (plain http only to this computer's loopback address)")


class _RefusedRedirect(urllib.error.URLError):
    pass


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            check_url(newurl)
        except _Fatal as exc:
            raise _RefusedRedirect("redirect to %s %s" % (newurl, exc)) from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_CheckedRedirects)
# The tests' server is on loopback; a proxy configured for the internet must not swallow it.
_LOOPBACK_OPENER = urllib.request.build_opener(_CheckedRedirects, urllib.request.ProxyHandler({}))


def _open(url, headers, timeout):
    """Opens url; raises _Retryable, _Fatal or _Offline for every failure."""
    check_url(url)
    request = urllib.request.Request(url, headers=dict(headers, **{"User-Agent": USER_AGENT}))
    opener = _LOOPBACK_OPENER if is_loopback(urllib.parse.urlsplit(url).hostname) else _OPENER
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        message = "HTTP %d %s" % (exc.code, exc.reason)
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise _Retryable(message) from None
        raise _Fatal(message) from None
    except _RefusedRedirect as exc:
        raise _Fatal(exc.reason) from None
    except urllib.error.URLError as exc:
        raise _classify(exc.reason) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _classify(exc) from None


def _classify(reason):
    if isinstance(reason, socket.gaierror):
        return _Offline("no network: cannot resolve the host name (%s)" % reason)
    if isinstance(reason, OSError) and reason.errno in _OFFLINE_ERRNOS:
        return _Offline("no network: %s" % (reason.strerror or reason))
    if isinstance(reason, ssl.SSLCertVerificationError):
        return _Fatal("TLS certificate not trusted: %s" % reason)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return _Retryable("timed out (no data for the timeout period)")
    return _Retryable(str(reason) or type(reason).__name__)


def _retrying(urls, attempt, settings, progress_mark=lambda: 0):
    """Runs attempt(url) over the mirrors in order, retrying each with back-off; returns its result.

    An attempt that made progress (the .part grew) does not count against the mirror's attempts,
    so a connection cut mid-file resumes as often as it keeps moving.
    """
    tried = []
    offline = True
    for url in urls:
        failures = 0
        while True:
            before = progress_mark()
            try:
                return attempt(url)
            except _Offline as exc:
                tried.append("%s: %s" % (url, exc))
                break
            except _Fatal as exc:
                offline = False
                tried.append("%s: %s" % (url, exc))
                break
            except _Retryable as exc:
                offline = False
                if progress_mark() > before:
                    continue
                failures += 1
                if failures >= settings.attempts:
                    tried.append("%s: %s (after %d attempts)" % (url, exc, failures))
                    break
                time.sleep(min(settings.backoff * 2 ** (failures - 1), 30))
    kind = NoNetwork if offline else DownloadError
    summary = "no network: none of the addresses could be reached" if offline else "download failed"
    raise kind(summary + "; tried:\n  " + "\n  ".join(tried), urls, tried)


_size = regular_size        # a link or FIFO planted at the .part name counts as nothing (it is replaced)


def download(urls, part_path, size=None, progress=None, label="download", settings=None, limit=None):
    """Downloads the first working URL into part_path, resuming what is already there; returns that URL.

    ``size``: the exact length expected; ``limit``: the most it may be (when only a bound is known),
    a download growing past it is stopped.  Raises NoNetwork when no URL could even be connected to,
    DownloadError for other failures and DiskFull when writing fails for space. Whatever arrived
    stays in part_path for a later resume.
    """
    settings = settings or Settings()
    limit = size if size is not None else limit
    return _retrying(list(urls), lambda url: _download_once(url, part_path, size, progress, label, settings,
                                                            limit),
                     settings, lambda: _size(part_path))


def _download_once(url, part_path, size, progress, label, settings, limit=None):
    have = _size(part_path)
    if limit is not None and have > limit:
        os.unlink(part_path)
        have = 0
    if size is not None and have == size:
        return url
    headers = {"Range": "bytes=%d-" % have} if have else {}
    try:
        response = _open(url, headers, settings.timeout)
    except _Fatal as exc:
        if have and str(exc).startswith("HTTP 416"):
            # The server has nothing past what we hold: either it is all there (the pin will tell)
            # or the .part is longer than the file, in which case start over.
            if size is None:
                return url
            os.unlink(part_path)
            raise _Retryable("server refused the resume range; restarting") from None
        raise
    with response:
        if response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != have:
                os.unlink(part_path)
                raise _Retryable("server resumed at the wrong offset; restarting")
            mode = "ab"
        else:
            have = 0
            mode = "wb"
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        if size is not None and total is not None and total != size:
            raise _Fatal("server offers %d bytes but the registry expects %d" % (total, size))
        if limit is not None and total is not None and total > limit:
            raise _Fatal("server offers %d bytes, more than the %d this file can be" % (total, limit))
        if progress:
            progress(label, have, total)
        try:
            with open_part(part_path, append=mode == "ab") as out:
                while True:
                    try:
                        block = response.read(BLOCK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _classify_read(exc) from None
                    if not block:
                        break
                    out.write(block)
                    have += len(block)
                    if limit is not None and have > limit:
                        raise _Fatal("server sent more than the expected %d bytes" % limit)
                    if progress:
                        progress(label, have, total)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFull("no room to write %s: %s. The %d bytes received are kept there; free some space "
                               "and run the same command again to resume."
                               % (part_path, exc.strerror, _size(part_path))) from None
            raise DownloadError("cannot write %s: %s" % (part_path, exc), [url]) from None
    if total is not None and have < total:
        raise _Retryable("connection closed after %d of %d bytes" % (have, total))
    return url


def _classify_read(exc):
    if isinstance(exc, http.client.IncompleteRead):
        return _Retryable("connection cut mid-file")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return _Retryable("timed out while receiving data")
    return _Retryable("connection lost: %s" % (exc or type(exc).__name__))


def _content_range_start(value):
    # "bytes START-END/TOTAL"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def get_json(url, settings=None, headers=None, limit=64 << 20):
    """GETs a JSON document (an npm packument), with the same retries and offline detection."""
    body, _content_type, _final_url = get_document(url, settings, headers, limit)
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError as exc:
        raise DownloadError("%s: not valid JSON: %s" % (url, exc), [url]) from None


def get_document(url, settings=None, headers=None, limit=64 << 20):
    """GETs a small document (an index page): (body, Content-Type, final URL after redirects)."""
    settings = settings or Settings()

    def attempt(url):
        response = _open(url, headers or {}, settings.timeout)
        with response:
            try:
                body = response.read(limit + 1)
            except (OSError, http.client.HTTPException) as exc:
                raise _classify_read(exc) from None
            content_type, final_url = response.headers.get("Content-Type", ""), response.geturl()
        if len(body) > limit:
            raise _Fatal("response larger than %d bytes" % limit)
        return body, content_type, final_url

    return _retrying([url], attempt, settings)
