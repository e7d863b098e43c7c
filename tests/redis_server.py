"""A real redis-server for the tests: started in a temporary directory, on a unix socket and a
loopback port, without persistence; stopped (or killed and restarted) by the test."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

BINARY = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)


def _free_port():
    # Below Linux's ephemeral range (32768-60999): a port the kernel hands out to
    # outgoing connections could be taken while the test has Redis stopped, and the
    # restart on the same port would then fail.
    import random

    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer(object):
    """``redis-server`` on ``unix_url`` and ``tcp_url`` (127.0.0.1); :meth:`kill` and
    :meth:`start` again keep both addresses (an empty Redis comes back, as after a crash)."""

    def __init__(self):
        # A short directory: unix socket paths are limited to about 100 bytes.
        self.dir = tempfile.mkdtemp(prefix="mcpauth-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.port = _free_port()
        self.proc = None

    @property
    def unix_url(self):
        return "unix://" + self.socket

    @property
    def tcp_url(self):
        return "redis://127.0.0.1:{}/0".format(self.port)

    def start(self):
        self.proc = subprocess.Popen(
            [BINARY, "--port", str(self.port), "--bind", "127.0.0.1",
             "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with status {}".format(
                    self.proc.returncode))
            if self._ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("redis-server did not answer within 20 s")

    def _ping(self):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                s.connect(self.socket)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self):
        """SIGKILL, as a crash: clients see refused connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        try:
            os.unlink(self.socket)
        except OSError:
            pass

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def spawn_workers(count, urls, cache_key, stack, tmp, mode="once", seconds=0.0):
    """Start ``count`` tests/redis_worker.py processes (process i uses ``urls[i % len]``),
    wait until each is ready, then let them all go at once."""
    ready = tempfile.mkdtemp(dir=tmp)
    go = os.path.join(ready, "go")
    procs = []
    for i in range(count):
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE),
                   WORKER_REDIS_URL=urls[i % len(urls)], WORKER_CACHE_KEY=cache_key,
                   WORKER_CLIENT_ID=stack.client_id, WORKER_CLIENT_SECRET=stack.client_secret,
                   WORKER_MCP_URL=stack.mcp_url, WORKER_READY_DIR=ready, WORKER_GO_FILE=go,
                   WORKER_MODE=mode, WORKER_SECONDS=str(seconds))
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "redis_worker.py")],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      universal_newlines=True))
    deadline = time.monotonic() + 120
    while len(os.listdir(ready)) < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise RuntimeError("workers did not start: " + procs[0].communicate()[1])
        time.sleep(0.02)
    open(go, "w").close()
    return procs


def worker_results(procs):
    """Each worker's JSON summary (a worker that failed raises, with its stderr)."""
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError("worker failed: " + stderr)
        out.append(json.loads(stdout))
    return out
