"""Fixtures shared by the test files: one torch thread for tiny models, and no network.

Used explicitly (``pytestmark = pytest.mark.usefixtures("one_thread", "offline")``), not autouse, so
tests that need neither torch nor a socket guard pay nothing for them.
"""

from __future__ import annotations

import socket

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine (or under pytest-xdist)
    OpenMP threads spin against other processes (measured: 13.7 s -> 2.7 s for one KL test under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch):
    """Any outgoing connection fails the test; the Hugging Face hub is switched to offline mode."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"network access attempted: {address!r}")

    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"network access attempted: name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
