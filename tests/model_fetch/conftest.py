"""Fixtures of the model_fetch tests: a local HTTP server, no network, a clean environment."""

import socket

import pytest

from mf_support import FileServer


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a name or open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched: %r" % (args,))
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def clean_env(monkeypatch):
    """No inherited cache override, npm registry or pip index setting."""
    for key in ("REMOVE_BACKGROUND_MODELS", "NPM_CONFIG_REGISTRY", "npm_config_registry", "PIP_INDEX_URL",
                "PIP_NO_INDEX", "PIP_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch
