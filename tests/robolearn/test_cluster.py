"""Joining a cluster fails fast, before any output is touched, when no Ray head answers."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from robolearn import cli
from robolearn.cluster import check_reachable
from robolearn.errors import ClusterError


@pytest.fixture
def http_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()


def test_a_non_ray_listener_is_named_and_nothing_is_created(http_server, tmp_path, capsys):
    t0 = time.monotonic()
    code = cli.main(["collect", f"ray.address=127.0.0.1:{http_server}", f"out={tmp_path}/d.zarr",
                     "--preset", "debug", f"run_dir={tmp_path}/run"])
    assert code == 1 and time.monotonic() - t0 < 30
    assert "is not a Ray cluster" in capsys.readouterr().err
    assert not (tmp_path / "d.zarr").exists()


def test_a_silent_listener_fails_within_the_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        t0 = time.monotonic()
        with pytest.raises(ClusterError, match="did not answer as a Ray cluster within 0.5 s"):
            check_reachable(f"127.0.0.1:{s.getsockname()[1]}", 0.5)
        assert time.monotonic() - t0 < 5
