#!/usr/bin/env python3
"""burst.py: memory a proxy keeps after a burst of keep-alive clients.

usage: burst.py --port PORT --pid PID [-n N] [--settle S] [--path /hello]
                [--timeout S] [--json OUT]

Opens N keep-alive connections to 127.0.0.1:PORT, waits until all are
connected, sends one GET on every one of them at once, reads every response
to its end, then leaves all N connections open and idle. The RSS of PID and
of all its descendants (nginx's workers, ...) is read before the first
connect and again |settle| seconds after the last response:

    KiB per client = (RSS after - RSS before) / N

both from /proc/PID/status (VmRSS) and from /proc/PID/smaps_rollup (Rss and
Private_Dirty). The connections are closed only after the second reading.

Past ~25,000 connections one source address runs out of ephemeral ports, so
the clients are spread over 127.0.0.1, 127.0.0.2, ... (8,000 each). Every
phase is bounded by --timeout; a client that fails to connect or to get its
response makes the run fail (exit 1) rather than measure fewer clients.
Standard library only; importable (run_burst) by the integration tests.
"""
import argparse
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time

PER_SOURCE = 8000
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: pick the port at connect, not bind


def _children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def process_tree(pid):
    """process_tree returns |pid| and all its descendants."""
    seen, todo = [], [pid]
    while todo and len(seen) < 1000:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


def memory_kib(pid):
    """memory_kib sums VmRSS, Rss and Private_Dirty (KiB) over |pid|'s tree."""
    tot = {"vmrss": 0, "rss": 0, "private_dirty": 0}
    for p in process_tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        tot["vmrss"] += int(ln.split()[1])
            with open("/proc/%d/smaps_rollup" % p) as f:
                for ln in f:
                    k, _, v = ln.partition(":")
                    if k == "Rss":
                        tot["rss"] += int(v.split()[0])
                    elif k == "Private_Dirty":
                        tot["private_dirty"] += int(v.split()[0])
        except (OSError, ValueError):
            pass  # a process that ended between listing and reading
    return tot


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        want = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    if soft < need:
        raise RuntimeError("need %d file descriptors, the hard limit is %d" % (need, hard))


class Client:
    __slots__ = ("sock", "state", "buf", "need")

    def __init__(self, sock):
        self.sock, self.state, self.buf, self.need = sock, "connecting", b"", None


def _response_done(c):
    """_response_done: has |c.buf| a whole response (content-length or chunked)?"""
    if c.need is None:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = c.buf[:end].decode("latin-1").lower().split("\r\n")
        if not head[0].startswith("http/1.1 2"):
            raise RuntimeError("unexpected response: %r" % head[0])
        c.need = -1
        for ln in head[1:]:
            k, _, v = ln.partition(":")
            if k.strip() == "content-length":
                c.need = end + 4 + int(v)
        c.buf = c.buf if c.need >= 0 else c.buf[end + 4:]
    if c.need >= 0:
        return len(c.buf) >= c.need
    return c.buf.endswith(b"0\r\n\r\n")  # chunked: the last chunk


def _wait_all(sel, clients, want, deadline, what):
    """_wait_all runs the selector until every client reached state |want|."""
    left = sum(1 for c in clients if c.state != want)
    while left:
        t = deadline - time.monotonic()
        if t <= 0:
            raise RuntimeError("%s: %d of %d clients unfinished at the deadline" % (what, left, len(clients)))
        for key, ev in sel.select(min(t, 1.0)):
            c = key.data
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise RuntimeError("connect failed: %s" % os.strerror(err))
                c.state = "connected"
                sel.unregister(c.sock)
                left -= 1
            elif c.state == "reading":
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise RuntimeError("connection closed before the whole response")
                c.buf += data
                if _response_done(c):
                    c.state = "done"
                    c.buf = b""
                    sel.unregister(c.sock)
                    left -= 1


def run_burst(port, pid, n, settle=2.0, path="/hello", timeout=120.0, host="127.0.0.1", log=None, hold=0.0):
    """run_burst measures; returns a dict with before/after and KiB per client."""
    raise_nofile(n + 64)
    before = memory_kib(pid)
    sel = selectors.DefaultSelector()
    clients = []
    deadline = time.monotonic() + timeout
    try:
        for i in range(n):
            src = "127.0.0.%d" % (1 + i // PER_SOURCE)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if src != "127.0.0.1" or n > PER_SOURCE:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((src, 0))
            c = Client(s)
            clients.append(c)
            rc = s.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                raise RuntimeError("connect: %s" % os.strerror(rc))
            sel.register(s, selectors.EVENT_WRITE, c)
            # Keep the listen queue from overflowing into SYN retries (1 s,
            # 3 s, ...): let the connects finish in slices of 1,000.
            if (i + 1) % 1000 == 0:
                _wait_all(sel, clients, "connected", deadline, "connect")
        _wait_all(sel, clients, "connected", deadline, "connect")
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: burst\r\n\r\n" % (path, host, port)).encode()
        for c in clients:  # the burst: every request before any response is read
            c.sock.send(req)
            c.state = "reading"
            sel.register(c.sock, selectors.EVENT_READ, c)
        t0 = time.monotonic()
        _wait_all(sel, clients, "done", deadline, "responses")
        burst_s = time.monotonic() - t0
        time.sleep(settle)
        after = memory_kib(pid)
        alive = sum(1 for p in process_tree(pid))
        if log:
            log("burst %d: measured; holding the connections %.1fs" % (n, hold))
        time.sleep(hold)  # e.g. for a look at the proxy's heap with them open
    finally:
        sel.close()
        for c in clients:
            c.sock.close()
    per = {k: (after[k] - before[k]) / n for k in before}
    res = {"clients": n, "before_kib": before, "after_kib": after, "kib_per_client": per,
           "burst_seconds": round(burst_s, 3), "settle_seconds": settle, "processes": alive}
    if log:
        log("burst %d: VmRSS %d -> %d KiB, %.2f KiB/client (Private_Dirty %.2f), responses in %.2fs"
            % (n, before["vmrss"], after["vmrss"], per["vmrss"], per["private_dirty"], burst_s))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="proxy PID (its descendants are counted too)")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--path", default="/hello")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--hold", type=float, default=0.0, help="seconds to keep the connections open afterwards")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    if not 1 <= a.n <= 60000:
        ap.error("-n must be 1..60000")
    if not 0 <= a.hold <= 600 or not 0 <= a.settle <= 600:
        ap.error("--hold and --settle must be 0..600 seconds")
    res = run_burst(a.port, a.pid, a.n, a.settle, a.path, a.timeout,
                    log=lambda m: print(m, file=sys.stderr, flush=True), hold=a.hold)
    print(json.dumps(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print("burst.py: %s" % e, file=sys.stderr)
        sys.exit(1)
