"""Soak: SIGHUP every 2 s for SLUICE_SOAK_SECONDS (default 60) under wrk
load, alternating two configs that each remove the cluster the other adds.
Each removed cluster had idle pooled connections at its removal, so the
soak repeats the retire path (issue #6, item 2) dozens of times while
requests keep flowing; nothing may fail and fds and memory must come back.
tools/soak.sh runs it for longer."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

import harness as h

# At least two reload periods, so that one reload lands under load.
SOAK_S = max(4, int(float(os.environ.get("SLUICE_SOAK_SECONDS") or 60)))
RELOAD_EVERY_S = 2.0
CONFIRM_REQUESTS = 3  # separate connections, so both workers are likely to pool one
WRK_CONNS = 4
FD_SLACK = 4
RSS_SLACK_KIB = (16 if os.environ.get("SLUICE_SANITIZED") else 8) * 1024
SETTLE_S = 5.0


class Wrk:
    """Wrk runs `wrk -t1 -cN -dD` against a URL; bounded by -d and by the
    timeout of result()."""

    def __init__(self, url, seconds, conns=WRK_CONNS):
        self.seconds = seconds
        self.p = subprocess.Popen(
            ["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s", url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=h.CLIENT_ENV,
            start_new_session=True)

    def running(self):
        return self.p.poll() is None

    def result(self):
        """result waits for wrk to finish (SIGKILL past -d + 30 s) and
        returns its output."""
        try:
            out, _ = self.p.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            out, _ = self.p.communicate(timeout=10)
        return out

    def stop(self):
        if self.running():
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.communicate(timeout=10)


WRK_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(out):
    """parse_wrk returns (requests, seconds, req/s, non-2xx/3xx, socket
    errors) from wrk's report; wrk leaves out the last two lines when they
    would be zero."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),", out)
    if not m:
        raise AssertionError("no wrk summary in:\n%s" % out)
    secs = float(m.group(2)) * WRK_TIME_UNITS[m.group(3)]
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (int(m.group(1)), secs, float(rps.group(1)) if rps else 0.0,
            int(non2xx.group(1)) if non2xx else 0,
            sum(int(x) for x in sock.groups()) if sock else 0)


def settle_below(read, limit, timeout=SETTLE_S):
    """settle_below polls read() until it is at most |limit| or |timeout|
    s pass; returns the last value."""
    deadline = time.monotonic() + timeout
    v = read()
    while v > limit and time.monotonic() < deadline:
        time.sleep(0.2)
        v = read()
    return v


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


@unittest.skipUnless(shutil.which("wrk"), "wrk not installed (Debian package wrk)")
class SoakReload(h.SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.wrk = None

    def tearDown(self):
        if self.wrk is not None:
            self.wrk.stop()
        super().tearDown()

    def config(self, other):
        """config has clusters keep and |other| ("b" or "c")."""
        routes = [h.prefix_route("/keep/", "keep"), h.prefix_route("/%s/" % other, other)]
        return h.build_config(self.port, self.admin, [h.router_filter(routes), h.lb_filter()],
                              [h.cluster("keep", [self.ups["keep"].addr]),
                               h.cluster(other, [self.ups[other].addr])], workers=2)

    def confirm(self, s, other):
        """confirm sends a few requests to |other| (about to be removed) so
        that it has idle pooled connections; returns the bad responses."""
        bad = []
        for _ in range(CONFIRM_REQUESTS):
            r = h.curl([s.url("/%s/hello" % other)], timeout=5)
            if (r.status, r.headers.get("x-upstream")) != (200, other.upper()):
                bad.append(r)
        return bad

    def switch(self, s, current):
        """switch confirms |current|'s removable cluster, reloads to the
        other config and returns (new removable cluster, bad responses)."""
        bad = self.confirm(s, current)
        nxt = "c" if current == "b" else "b"
        s.reload(self.config(nxt))
        self.assertTrue(s.alive(), "sluice died in a reload")
        return nxt, bad

    def settled_fds(self, s, current):
        """settled_fds is sluice's open fd count less the upstream
        connections of the clusters in its config (idle ones may stay
        pooled, and their number varies); removed clusters' connections
        are not subtracted: they must be gone."""
        m = s.metrics()
        pooled = sum(h.mval(m, "sluice_upstream_connections_active", cluster=c)
                     for c in ("keep", current))
        return open_fds(s.pid) - int(pooled)

    def wait_generations_retired(self, s):
        ok = h.wait_for(lambda: h.mval(s.metrics(), "sluice_config_generations_alive") == 1,
                        SETTLE_S, interval=0.1)
        self.assertTrue(ok, "old generations still alive %.0fs after the last reload" % SETTLE_S)

    def test_soak_reload(self):
        self.ups = {n: self.upstream(n.upper()) for n in ("keep", "b", "c")}
        self.port, self.admin = h.free_port(), h.free_port()
        s = self.sluice(self.config("b"))
        url = s.url("/keep/hello")
        r = h.curl([url])
        self.assertEqual((r.status, r.headers.get("x-upstream")), (200, "KEEP"), r)

        # Warm-up: pools, buffers and one generation of each config exist
        # before the baselines are taken.
        warm_out = Wrk(url, 2).result()
        self.assertEqual(parse_wrk(warm_out)[3:], (0, 0), warm_out)
        current = "b"
        bad = []
        for _ in range(2):
            current, b = self.switch(s, current)
            bad += b
        self.assertEqual(bad, [])
        self.wait_generations_retired(s)
        fds0, rss0 = self.settled_fds(s, current), s.rss_kib()
        m0 = s.metrics()
        ok0 = h.mval(m0, "sluice_config_reloads_total", result="success")
        fail0 = h.mval(m0, "sluice_config_reloads_total", result="failure")
        gen0 = h.mval(m0, "sluice_config_generation")

        # The last reload is due RELOAD_EVERY_S before wrk's end, so every
        # reload lands under load.
        planned = int(SOAK_S / RELOAD_EVERY_S) - 1
        self.wrk = Wrk(url, SOAK_S)
        t0 = time.monotonic()
        reloads = 0
        for i in range(planned):
            delay = t0 + (i + 1) * RELOAD_EVERY_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.assertTrue(self.wrk.running(), "wrk ended before reload %d of %d (behind "
                            "schedule by %.1fs)" % (i + 1, planned, -delay))
            current, b = self.switch(s, current)
            bad += b
            reloads += 1
        out = self.wrk.result()
        self.wrk = None
        nreq, secs, rps, non2xx, sock_errors = parse_wrk(out)

        m1 = s.metrics()
        ok = h.mval(m1, "sluice_config_reloads_total", result="success") - ok0
        failed = h.mval(m1, "sluice_config_reloads_total", result="failure") - fail0
        gens = h.mval(m1, "sluice_config_generation") - gen0

        # Settle: the surviving clusters' idle connections may stay pooled
        # (settled_fds leaves them out); everything else must close.
        self.wait_generations_retired(s)
        fds1 = settle_below(lambda: self.settled_fds(s, current), fds0 + FD_SLACK)
        rss1 = settle_below(s.rss_kib, rss0 + RSS_SLACK_KIB)

        sys.stderr.write(
            "\nsoak: %.0fs, %d requests (%.0f req/s), %d non-2xx, %d socket errors; "
            "%d reloads (%d ok, %d failed), %d confirmation requests (%d bad); "
            "fds %d -> %d (less pooled upstream connections); RSS %d -> %d KiB\n"
            % (secs, nreq, rps, non2xx, sock_errors, reloads, ok, failed,
               reloads * CONFIRM_REQUESTS, len(bad),
               fds0, fds1, rss0, rss1))
        sys.stderr.flush()

        self.assertGreater(nreq, 0, out)
        self.assertEqual((non2xx, sock_errors), (0, 0), out)
        self.assertEqual(bad, [], "confirmation requests to the cluster about to be removed")
        self.assertEqual((ok, failed, gens), (planned, 0, planned))
        self.assertLessEqual(fds1, fds0 + FD_SLACK, "fd leak: %d -> %d" % (fds0, fds1))
        self.assertLessEqual(rss1, rss0 + RSS_SLACK_KIB, "RSS %d -> %d KiB" % (rss0, rss1))
        # Sluice.stop fails on any sanitizer report.
        self._procs.remove(s)
        self.assertEqual(s.stop(), 0, s.log_text()[-2000:])


if __name__ == "__main__":
    h.main()
