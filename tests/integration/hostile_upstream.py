#!/usr/bin/python3
"""hostile_upstream: an HTTP/1.1 origin that misbehaves on purpose, for the
integration tests of sluice's upstream fault handling (issue #6).

Usage: /usr/bin/python3 hostile_upstream.py --listen 127.0.0.1:0

It prints "listening 127.0.0.1:PORT" on stdout (like sluice-upstream) and
flushes once the socket is bound, then serves every connection in its own
thread, so a slow or stuck connection never holds up another one (nor the
test that started it). SIGTERM or SIGINT stop it with exit status 0.

Each event a test may wait for is one line on stderr, "event=NAME conn=N
...", flushed at once: accept, request (with path=), stray-sent, eof (the
peer closed), flood-end (with count=). conn numbers start at 1.

The last segment of the request path selects the behaviour, so a test can
route /anything/NAME through any cluster to it ([query parameters]):
  ok                   200 "ok", keep-alive
  stray-later [ms=N]   200 "first", then N ms later (default 300) an
                       unsolicited complete 200 "STRAY" on the same
                       connection; later requests are answered as usual
  leftover             200 "first" followed, in the same write, by a second
                       complete response 200 "EXTRA" nobody asked for
  flood-100            "HTTP/1.1 100 Continue" heads without end, until the
                       peer goes away or 10 s pass
  interim [n=N pad=B]  N interim responses (100 and 103 in turn; each with
                       a B-byte x-pad header when B > 0), then 200
                       "interim-ok"
  drop                 closes without a response byte (FIN)
  reset                closes without a response byte with SO_LINGER 0 (RST)
  slow [ms=N]          200 "slow" after N ms (default 1000)
  garbage              "garbage\\r\\n\\r\\n" as a response head, then waits
                       for the peer to close
  cut-length           content-length 1000, 500 bytes, 200 ms, then closes
  bad-chunk            chunked: a 5-byte chunk, then the size line "zz",
                       then waits for the peer to close
  cut-chunked          chunked: a 5-byte chunk, 200 ms, then closes without
                       the last chunk
  hop-headers          200 "hop" with hop-by-hop fields (keep-alive,
                       proxy-connection, and x-secret named by Connection)
                       next to an ordinary x-visible
  anything else        404 "not found"
"""

import argparse
import signal
import socket
import struct
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024
FLOOD_SECONDS = 10.0
# Heads per write while flooding: few system calls, and still well past any
# per-attempt limit of interim responses in the first read.
FLOOD_BATCH = 64
PEER_WAIT_SECONDS = 10.0

_conn_ids = iter(range(1, 1 << 62))
_conn_ids_lock = threading.Lock()


def event(name, conn, **kv):
    tail = "".join(" %s=%s" % (k, v) for k, v in kv.items())
    sys.stderr.write("event=%s conn=%d%s\n" % (name, conn, tail))
    sys.stderr.flush()


def response(status, body, reason="OK", extra=""):
    return ("HTTP/1.1 %d %s\r\ncontent-length: %d\r\n%s\r\n"
            % (status, reason, len(body), extra)).encode("latin-1") + body


class Conn:
    """Conn is one accepted connection: a request reader and a writer that
    a second thread (the stray) may use too."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.wlock = threading.Lock()
        with _conn_ids_lock:
            self.id = next(_conn_ids)

    def send(self, data):
        with self.wlock:
            self.sock.sendall(data)

    def read_request(self):
        """read_request returns the request target, or None at EOF. Request
        bodies (content-length only) are read and dropped."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                return None
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None
        n = 0
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            if k.strip().lower() == "content-length":
                n = int(v.strip())
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        self.buf = self.buf[n:]
        return parts[1]

    def wait_peer_close(self):
        """wait_peer_close reads and drops bytes until the peer closes or
        PEER_WAIT_SECONDS pass."""
        self.sock.settimeout(PEER_WAIT_SECONDS)
        try:
            while self.sock.recv(65536):
                pass
        except (socket.timeout, OSError):
            pass


def stray_later(c, ms):
    time.sleep(ms / 1000.0)
    try:
        c.send(response(200, b"STRAY"))
        event("stray-sent", c.id)
    except OSError as e:
        event("stray-failed", c.id, error=e.__class__.__name__)


def flood(c):
    head = b"HTTP/1.1 100 Continue\r\n\r\n" * FLOOD_BATCH
    n = 0
    deadline = time.monotonic() + FLOOD_SECONDS
    try:
        while time.monotonic() < deadline:
            c.send(head)
            n += FLOOD_BATCH
    except OSError:
        pass
    event("flood-end", c.id, count=n)


def interim(c, n, pad):
    extra = "x-pad: %s\r\n" % ("p" * pad) if pad > 0 else ""
    for i in range(n):
        if i % 2 == 0:
            c.send(("HTTP/1.1 100 Continue\r\n%s\r\n" % extra).encode("latin-1"))
        else:
            c.send(("HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n%s\r\n"
                    % extra).encode("latin-1"))
    c.send(response(200, b"interim-ok"))


def serve(c):
    """serve answers the requests on |c| until the peer closes or a
    behaviour ends the connection."""
    while True:
        target = c.read_request()
        if target is None:
            event("eof", c.id)
            return
        u = urlsplit(target)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        name = u.path.rsplit("/", 1)[-1]
        event("request", c.id, path=target)
        if name == "ok":
            c.send(response(200, b"ok"))
        elif name == "hop-headers":
            c.send(response(200, b"hop", extra="Connection: X-Secret, keep-alive\r\n"
                            "X-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
                            "Proxy-Connection: keep-alive\r\nX-Visible: yes\r\n"))
        elif name == "stray-later":
            c.send(response(200, b"first"))
            threading.Thread(target=stray_later, args=(c, int(q.get("ms", "300"))),
                             daemon=True).start()
        elif name == "leftover":
            c.send(response(200, b"first") + response(200, b"EXTRA"))
        elif name == "flood-100":
            flood(c)
            return
        elif name == "interim":
            interim(c, int(q.get("n", "3")), int(q.get("pad", "0")))
        elif name == "drop":
            return
        elif name == "reset":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        elif name == "slow":
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            c.send(response(200, b"slow"))
        elif name == "garbage":
            c.send(b"garbage\r\n\r\n")
            c.wait_peer_close()
            return
        elif name == "cut-length":
            c.send(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"c" * 500)
            time.sleep(0.2)
            return
        elif name == "bad-chunk":
            c.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            time.sleep(0.05)
            c.send(b"zz\r\nhello\r\n0\r\n\r\n")
            c.wait_peer_close()
            return
        elif name == "cut-chunked":
            c.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            time.sleep(0.2)
            return
        else:
            c.send(response(404, b"not found\n", reason="Not Found"))


def handle(sock):
    c = Conn(sock)
    event("accept", c.id)
    try:
        serve(c)
    except OSError as e:
        event("error", c.id, error=e.__class__.__name__)
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT (port 0: the kernel picks)")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(128)
    sys.stdout.write("listening %s:%d\n" % ls.getsockname())
    sys.stdout.flush()
    try:
        while True:
            sock, _ = ls.accept()
            threading.Thread(target=handle, args=(sock,), daemon=True).start()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
