"""https sources against a real local HTTP server: resume, pins, HTTP errors, timeouts, offline, URL policy."""

import hashlib
import time

import pytest

import model_fetch
from mf_support import PAYLOAD_SIZE, closed_port, entry, make_store, payload, sha256


def test_fetch_installs_verified_file_and_stamps_it(server, tmp_path):
    data = payload("plain")
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [server.add("/m.onnx", data)])})
    path = store.fetch("m")
    assert path == tmp_path / "cache" / "m.onnx"
    assert path.read_bytes() == data
    assert store.is_installed("m") and store.installed_path("m") == path
    assert not path.with_name("m.onnx.part").exists()
    # Installed means no second download.
    store.fetch("m")
    assert len(server.gets("/m.onnx")) == 1


def test_resumes_after_connection_cut_mid_file(server, tmp_path):
    data = payload("cut")
    url = server.add("/m.onnx", data, [{"cut_at": 250_000}])
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [url])})
    seen = []
    store.fetch("m", progress=lambda step, done, total: seen.append((done, total)))
    assert store.installed_path("m").read_bytes() == data
    assert server.gets("/m.onnx") == [None, "bytes=250000-"]
    assert seen[-1][1] == PAYLOAD_SIZE and max(done for done, _ in seen) == PAYLOAD_SIZE


def test_failed_download_keeps_part_and_next_fetch_resumes(server, tmp_path):
    data = payload("later")
    url = server.add("/m.onnx", data, [{"cut_at": 200_000}, {"status": 503}, {"status": 503}])
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [url])})
    with pytest.raises(model_fetch.DownloadError) as info:
        store.fetch("m")
    assert "HTTP 503" in str(info.value) and url in str(info.value)
    part = tmp_path / "cache" / "m.onnx.part"
    assert part.read_bytes() == data[:200_000]
    assert not store.is_installed("m")
    store.fetch("m")
    assert server.gets("/m.onnx")[-1] == "bytes=200000-"
    assert store.installed_path("m").read_bytes() == data and not part.exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = payload("norange")
    url = server.add("/m.onnx", data, [{"ignore_range": True}])
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [url])})
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "m.onnx.part").write_bytes(data[:100_000])
    store.fetch("m")
    assert server.gets("/m.onnx") == ["bytes=100000-"]
    assert store.installed_path("m").read_bytes() == data


def test_wrong_hash_is_rejected_removed_and_reported(server, tmp_path):
    good, bad = payload("good"), payload("evil")
    store = make_store(tmp_path, {"m": entry("m.onnx", good, [server.add("/m.onnx", bad)])})
    with pytest.raises(model_fetch.IntegrityError) as info:
        store.fetch("m")
    message = str(info.value)
    assert sha256(good) in message and sha256(bad) in message
    assert info.value.expected == sha256(good) and info.value.actual == sha256(bad)
    assert "python -m model_fetch import m FILE" in message
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["m.onnx.lock"]
    assert not store.is_installed("m")


def test_md5_pinned_model_fetches(server, tmp_path):
    data = payload("rembg-style")
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [server.add("/m.onnx", data)], pin="md5", size=False)})
    assert store.get("m").pin == ("md5", hashlib.md5(data).hexdigest())
    assert store.fetch("m").read_bytes() == data


def test_size_disagreeing_with_registry_is_refused(server, tmp_path):
    data = payload("sized")
    url = server.add("/m.onnx", data + b"extra")
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [url])})
    with pytest.raises(model_fetch.DownloadError, match="server offers %d bytes but the registry expects %d"
                       % (len(data) + 5, len(data))):
        store.fetch("m")
    assert not store.is_installed("m")


def test_404_is_a_clear_error_and_not_retried(server, tmp_path):
    url = server.url("/missing.onnx")
    store = make_store(tmp_path, {"m": entry("m.onnx", payload("x"), [url])}, attempts=4)
    with pytest.raises(model_fetch.DownloadError) as info:
        store.fetch("m")
    assert not isinstance(info.value, model_fetch.NoNetwork)
    assert "HTTP 404" in str(info.value) and url in str(info.value)
    assert len(server.gets("/missing.onnx")) == 1


def test_next_mirror_is_used_when_first_fails(server, tmp_path):
    data = payload("mirror")
    dead = server.url("/gone.onnx")
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [dead, server.add("/m.onnx", data)])})
    assert store.fetch("m").read_bytes() == data
    assert len(server.gets("/gone.onnx")) == 1


def test_hanging_server_times_out_with_clear_error(server, tmp_path):
    data = payload("hang")
    url = server.add("/m.onnx", data, [{"hang": 30}, {"hang": 30}])
    store = make_store(tmp_path, {"m": entry("m.onnx", data, [url])}, timeout=0.5, attempts=2)
    with pytest.raises(model_fetch.DownloadError) as info:
        store.fetch("m")
    assert not isinstance(info.value, model_fetch.NoNetwork)
    assert "timed out" in str(info.value) and url in str(info.value) and "after 2 attempts" in str(info.value)


def test_no_network_fails_at_once_listing_urls_and_import_command(tmp_path, monkeypatch):
    refused = "http://127.0.0.1:%d/m.onnx" % closed_port()
    unresolvable = "https://no-such-host.invalid/m.onnx"
    store = make_store(tmp_path, {"m": entry("m.onnx", payload("off"), [refused, unresolvable])},
                       attempts=5, backoff=60)
    sleeps = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    with pytest.raises(model_fetch.NoNetwork) as info:
        store.fetch("m")
    message = str(info.value)
    assert sleeps == []  # no back-off: offline is reported at once
    assert message.startswith("no network")
    assert refused in message and unresolvable in message
    assert "python -m model_fetch import m FILE" in message
    assert info.value.urls == [refused, unresolvable]


def test_plain_http_only_to_loopback(tmp_path, no_network):
    url = "http://example.com/m.onnx"
    store = make_store(tmp_path, {"m": entry("m.onnx", payload("http"), [url])})
    with pytest.raises(model_fetch.DownloadError, match="only https"):
        store.fetch("m")


def test_redirect_to_plain_http_elsewhere_is_refused(server, tmp_path):
    url = server.add("/m.onnx", payload("redir"), [{"redirect": "http://example.com/m.onnx"}])
    store = make_store(tmp_path, {"m": entry("m.onnx", payload("redir"), [url])})
    with pytest.raises(model_fetch.DownloadError, match="redirect to http://example.com/m.onnx refused"):
        store.fetch("m")
    assert len(server.gets("/m.onnx")) == 1
