"""Fixtures shared by the bus tests: a redis-server of our own, and ``make_bus`` for each backend.

``make_bus`` runs a test against ``Bus`` (``memory``) and ``RedisBus``
(``redis``), the public API both promise. The Redis server is started once per
session on a free port; without ``redis-server`` on PATH its tests are
skipped, unless ``EVENTBUS_REQUIRE_REDIS=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from eventbus.bus import Bus

if TYPE_CHECKING:
    from eventbus.backends.redis import RedisBus

REDIS_SERVER = shutil.which("redis-server")

# Why RedisBus runs on asyncio only (it refuses trio when entered: see test_redis_bus.py).
NO_TRIO = "RedisBus is asyncio only: redis-py's asyncio client has no trio support"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server process of our own on ``port``, no persistence; start() returns once it answers PING."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float = 10.0) -> None:
        import redis

        assert REDIS_SERVER is not None
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *options, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1)
        give_up = time.monotonic() + deadline
        try:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"redis-server on port {self.port} exited with {self.proc.returncode}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > give_up:
                    self.stop()
                    pytest.fail(f"redis-server on port {self.port} did not answer PING within {deadline} s")
                time.sleep(0.01)  # poll interval of the readiness check, not a synchronisation
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def need_redis_server() -> None:
    if REDIS_SERVER is None:
        if os.environ.get("EVENTBUS_REQUIRE_REDIS") == "1":
            pytest.fail(
                "EVENTBUS_REQUIRE_REDIS=1 but redis-server is not on PATH: install it (apt-get install redis-server)"
            )
        pytest.skip("redis-server is not on PATH (install it, or set EVENTBUS_REQUIRE_REDIS=1 to make this a failure)")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session: tests share it, never a key (each uses streams of its own)."""
    need_redis_server()
    srv = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def new_stream() -> str:
    """A stream name nobody used: a test never sees another test's events."""
    return f"test-{uuid.uuid4().hex}"


class MakeBus:
    """What ``make_bus`` gives a test: ``make_bus(**options)`` is a new, not yet entered bus of one backend."""

    def __init__(self, backend: str, url: str | None = None) -> None:
        self.backend = backend  # "memory" or "redis"
        self.url = url
        self.cls: type[Bus] | type[RedisBus]
        self.logger: str  # the logger a subscriber's failure is reported on
        if backend == "memory":
            self.cls, self.logger = Bus, "eventbus.bus"
        else:
            from eventbus.backends.redis import RedisBus

            self.cls, self.logger = RedisBus, "eventbus.redis"

    def __call__(self, **options: float) -> Bus | RedisBus:
        if self.backend == "memory":
            return Bus(**options)
        from eventbus.backends.redis import RedisBus

        assert self.url is not None
        return RedisBus(self.url, stream=new_stream(), **options)


@pytest.fixture(params=["memory", "redis"])
def make_bus(request: pytest.FixtureRequest, anyio_backend_name: str) -> MakeBus:
    """A test of the API both buses promise runs on ``Bus`` and on ``RedisBus`` (asyncio only, its own stream)."""
    if request.param == "memory":
        return MakeBus("memory")
    if anyio_backend_name != "asyncio":
        pytest.skip(NO_TRIO)
    server: RedisServer = request.getfixturevalue("redis_server")
    return MakeBus("redis", server.url)
