"""The one way the integration tests start, stop and crash a real firnd.

Two families of tests run the daemon: the Kinesis API tests
(tests/integration/api_*.py, through api_common.Firnd) and the lib/client
tests (tests/integration/client, through client_common.Firnd). They start it
with different command lines and wait for different signs of life (the API
tests until GET /metrics answers 200, the client tests until the --pidfile
is written), but everything around that is the same logic and lives here,
once: free loopback ports, a data directory under /var/tmp (the store uses
O_DIRECT, which tmpfs refuses), the log file firnd's output goes to, the
readiness loop that notices a firnd which died on start, SIGTERM that must
exit 0, SIGKILL for the crash tests, and the tail of the log for failure
messages.

Each family subclasses FirndProcess: its constructor picks the ports, its
start() builds the command line and calls launch() with its readiness test.

The client tests import this module from the directory above them, so
client_common.py puts tests/integration on sys.path itself; that works the
same when meson runs the scripts from the build directory and when they are
run by hand from anywhere.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SKIP = 77


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1.

    Both matter: --api is a TCP port and --listen is firnd's UDP data port,
    so a port is only handed out when it can be bound both ways."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            u.close()
            continue
        t.close()
        u.close()
        return port
    raise RuntimeError("no free port")


def http_ready(port, path="/metrics"):
    """Does GET `path` on 127.0.0.1:`port` answer 200? False while nothing listens."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status == 200
    except OSError:
        return False


def pidfile_ready(path):
    """Has firnd written its --pidfile? It does so once it is ready to serve."""
    return os.path.exists(path) and os.path.getsize(path) > 0


class FirndProcess:
    """One firnd child process with its own data dir and log file.

    Subclasses set the class attributes below, pick their ports in __init__
    and implement start() on top of launch()."""

    # How many lines of the log tail() returns by default.
    tail_lines = 40
    # What cleanup() does to a firnd still running: SIGTERM and wait (True),
    # or SIGKILL (False: the test already failed and only wants it gone).
    graceful_cleanup = True

    def __init__(self, firnd, data_dir=None, prefix="firn-it-", env=None):
        self.firnd = firnd
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.own_dir = data_dir is None
        base = "/var/tmp" if os.path.isdir("/var/tmp") else None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix=prefix, dir=base)
        self.log_path = os.path.join(self.data_dir, "firnd.log")
        self.proc = None
        self.log = None

    def launch(self, args, ready, timeout):
        """Run firnd with `args` (everything after the program) and poll
        ready() until it is true; raises RuntimeError with the log's tail when
        firnd exits first or is not ready within `timeout` seconds."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.firnd] + list(args), stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"firnd exited with {self.proc.returncode}:\n" + self.tail())
            if ready():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"firnd did not become ready within {timeout} s:\n" + self.tail())

    def tail(self, n=None):
        """The last `n` lines of firnd's log (for failure messages)."""
        if n is None:
            n = self.tail_lines
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        """SIGTERM and wait: the clean shutdown path must exit 0. Returns the
        exit status (None when firnd was not running)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        return rc

    def kill9(self):
        """SIGKILL: no flush, no goodbye (the crash tests)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self.log.close()

    def cleanup(self):
        """End firnd if it still runs and remove a data dir this object made."""
        if self.proc is not None:
            if self.graceful_cleanup:
                self.stop()
            else:
                self.kill9()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def shutdown(self):
        """The end of a test: stop, keep the log's tail, clean up.
        Returns (exit status, log tail) for the caller to assert on."""
        rc = self.stop()
        log = self.tail()
        self.cleanup()
        return rc, log
