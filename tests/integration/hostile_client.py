"""Hostile and broken peers for test_hostile_clients.py (issue #6): a client
that reads a large body at a trickle, a crowd of idle connections, a
request head sent 16 bytes at a time, a client that hangs up early, and an
upstream that never answers but reports when sluice closes its connection.
Not a test file itself (ctest runs tests/integration/test_*.py only).

Every loop here is bounded in count and in time; sockets are only opened
to 127.0.0.1.
"""

import socket
import threading
import time

def request_head(path, host="127.0.0.1", headers=()):
    """request_head is a GET head for |path| with |headers| ([(name,
    value)]) after Host."""
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host]
    lines += ["%s: %s" % kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_head(sock, timeout, limit=65536):
    """read_head reads from |sock| until the end of a response head and
    returns (head bytes, bytes after it). Raises EOFError if the peer closes
    first, socket.timeout after |timeout| s."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or len(buf) > limit:
            raise socket.timeout("no complete response head within %ss: %r" % (timeout, buf[:200]))
        sock.settimeout(left)
        d = sock.recv(4096)
        if not d:
            raise EOFError("closed after %r" % buf[:200])
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


class SlowReader:
    """SlowReader requests |path| and then reads |chunk| bytes every
    |interval| s in a thread until stop(). Its receive buffer is set small
    before connecting so the kernel cannot soak up the body for it: nearly
    all of the unread body stays on sluice's side."""

    def __init__(self, port, path, rcvbuf=4096, chunk=1024, interval=1.0):
        self.chunk, self.interval = chunk, interval
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(5)
        self.s.connect(("127.0.0.1", port))
        self.s.sendall(request_head(path))
        self.received = 0
        self.first_byte = threading.Event()
        self.error = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                d = self.s.recv(self.chunk)
                if not d:
                    self.error = "sluice closed the slow reader after %d bytes" % self.received
                    return
                self.received += len(d)
                self.first_byte.set()
                self._stop.wait(self.interval)
        except OSError as e:
            if not self._stop.is_set():
                self.error = "slow reader: %r after %d bytes" % (e, self.received)

    def stop(self):
        self._stop.set()
        self._t.join(self.interval + 6)
        try:
            self.s.close()
        except OSError:
            pass


def hold_connections(port, n, timeout=5.0):
    """hold_connections opens |n| connections to |port| that send nothing
    and returns their sockets; the kernel completes the handshakes from the
    listen backlog whether or not sluice accepts them. Bounded by |n| and
    |timeout| s overall."""
    deadline = time.monotonic() + timeout
    socks = []
    try:
        for _ in range(n):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("opened only %d of %d connections in %ss"
                                     % (len(socks), n, timeout))
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=left))
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def trickle(sock, data, piece=16, interval=0.001, timeout=10.0):
    """trickle sends |data| on |sock| |piece| bytes at a time, one piece
    every |interval| s on a fixed schedule (a piece that is late is sent at
    once, never merged with the next), with Nagle off so every piece is its
    own segment. Raises AssertionError if it takes more than |timeout| s."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.monotonic()
    for i, off in enumerate(range(0, len(data), piece)):
        now = time.monotonic()
        if now - t0 > timeout:
            raise AssertionError("trickle: %d of %d bytes sent after %ss" % (off, len(data), timeout))
        due = t0 + i * interval
        if due > now:
            time.sleep(due - now)
        sock.sendall(data[off:off + piece])


class SilentUpstream:
    """SilentUpstream is an in-process TCP server that reads whatever sluice
    sends and never answers. For each connection it records when the first
    request bytes arrived and when sluice closed it (EOF or reset), so a
    test can see an upstream request being cancelled from the upstream's
    side. stop() closes everything (threads, no process)."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.conns = []  # [{"sock", "got": monotonic or None, "closed": monotonic or None}]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._accept_loop, daemon=True)
        self._t.start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c = {"sock": s, "got": None, "closed": None}
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._read_loop, args=(c,), daemon=True).start()

    def _read_loop(self, c):
        s = c["sock"]
        s.settimeout(0.1)
        while not self._stop.is_set():
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                d = b""
            if not d:
                c["closed"] = time.monotonic()
                return
            if c["got"] is None:
                c["got"] = time.monotonic()

    def snapshot(self):
        """snapshot returns [(got, closed)] for every connection so far."""
        with self.lock:
            return [(c["got"], c["closed"]) for c in self.conns]

    def stop(self):
        self._stop.set()
        self._t.join(2)
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c["sock"].close()
                except OSError:
                    pass
