"""SIGHUP reload under continuous load: 50 alternating reloads, a broken
config (old one keeps serving), a rebuilt filter .so swapped in, zero failed
requests, bounded memory, generation counting, keep-alive survival."""

import os
import re
import shutil
import signal
import subprocess
import time

import harness as h

RELOADS = 50
# Spread the reloads so that they land among thousands of requests in flight
# (a bare reload takes ~10 ms; 50 back to back would hit a short load window).
MIN_RELOAD_INTERVAL_S = 0.15
TAG_HEADER = "x-tag"


def tag_filter(path, value):
    return {"name": "tag", "module": path, "config": {"header": TAG_HEADER, "value": value}}


class Wrk:
    """Wrk runs `wrk -t1 -c8` against a URL until stop() (SIGINT to its PID),
    bounded by |max_s|."""

    def __init__(self, url, max_s):
        self.p = subprocess.Popen(["wrk", "-t1", "-c8", "-d%ds" % max_s, "--timeout", "5s", url],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=h.CLIENT_ENV, start_new_session=True)

    def stop(self, timeout=20):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGINT)
        try:
            out, _ = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            out, _ = self.p.communicate(timeout=10)
        return out


class Reload(h.SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.wrk = None

    def tearDown(self):
        if self.wrk is not None:
            self.wrk.stop()
        super().tearDown()

    def probe(self, s):
        r = h.curl([s.url("/")], timeout=5)
        return r.status, r.headers.get(TAG_HEADER), r.headers.get("x-upstream")

    def wait_probe(self, s, tag_pred, upstream, timeout=10):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.probe(s)
            if last[0] == 200 and tag_pred(last[1]) and last[2] == upstream:
                return last
            time.sleep(0.02)
        self.fail("probe never showed the new generation (upstream %s): last %r" % (upstream, last))

    def build_rebuilt_tag(self, dest):
        src = os.path.join(h.SOURCE_DIR, "tests", "filters", "tag.c")
        if not os.path.isfile(src):
            self.fail("tests/filters/tag.c missing: cannot build a second tag.so variant")
        with open(src) as f:
            self.assertIn("TAG_SUFFIX", f.read(),
                          "tests/filters/tag.c must support -DTAG_SUFFIX for the .so swap test")
        p = subprocess.run(["cc", "-std=c11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
                            "-I" + os.path.join(h.SOURCE_DIR, "sdk", "include"),
                            '-DTAG_SUFFIX="-rebuilt"', "-o", dest, src],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_reload_under_load(self):
        tag_so = h.test_module("tag")
        a = self.upstream("A")
        b = self.upstream("B")
        tagmod = os.path.join(self.tdir, "tagmod.so")
        shutil.copyfile(tag_so, tagmod)
        port, admin = h.free_port(), h.free_port()

        def cfg(gen_no):
            up = a if gen_no % 2 == 1 else b
            return h.build_config(
                port, admin,
                [tag_filter(tagmod, str(1 if gen_no % 2 == 1 else 2)),
                 h.router_filter([h.route_to("svc")]), h.lb_filter()],
                [h.cluster("svc", [up.addr])], workers=2)

        s = self.sluice(cfg(1))
        self.wait_probe(s, lambda t: t == "1", "A")

        # warm-up: some load and two reloads, then the memory baseline
        warm = Wrk(s.url("/"), 2)
        warm.p.wait(timeout=15)
        warm_out = warm.stop()
        self.assertIn("requests in", warm_out)
        s.reload(cfg(2))
        self.wait_probe(s, lambda t: t == "2", "B")
        s.reload(cfg(1))
        self.wait_probe(s, lambda t: t == "1", "A")
        time.sleep(1.0)
        baseline = s.rss_kib()
        m0 = s.metrics()
        gen0 = h.mval(m0, "sluice_config_generation")
        ok0 = h.mval(m0, "sluice_config_reloads_total", result="success")
        fail0 = h.mval(m0, "sluice_config_reloads_total", result="failure")

        self.wrk = Wrk(s.url("/"), 240)
        time.sleep(0.5)
        t0 = time.monotonic()
        last_cfg = None
        for i in range(RELOADS):
            step_end = time.monotonic() + MIN_RELOAD_INTERVAL_S
            gen_no = 2 if i % 2 == 0 else 1
            last_cfg = cfg(gen_no)
            s.write_config(last_cfg)
            s.sighup()
            self.wait_probe(s, lambda t, g=gen_no: t == str(g), "B" if gen_no == 2 else "A")
            self.assertTrue(s.alive(), "sluice died during reload %d" % i)
            time.sleep(max(0.0, step_end - time.monotonic()))
        last_tag = str(2 if (RELOADS - 1) % 2 == 0 else 1)
        last_up = "B" if last_tag == "2" else "A"
        reload_s = time.monotonic() - t0

        # a broken config: failure counted, old generation keeps serving, log says why
        s.write_config(h.to_yaml(last_cfg).replace("listeners:", "listners:"))
        s.sighup()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if h.mval(s.metrics(), "sluice_config_reloads_total", result="failure") > fail0:
                break
            time.sleep(0.05)
        m1 = s.metrics()
        self.assertEqual(h.mval(m1, "sluice_config_reloads_total", result="failure") - fail0, 1)
        self.assertEqual(h.mval(m1, "sluice_config_generation"), gen0 + RELOADS)
        self.assertEqual(self.probe(s), (200, last_tag, last_up))
        deadline = time.monotonic() + 5
        while "listners" not in s.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = s.log_text()
        self.assertIn("listners", log, "the failed reload's reason is not in the log")

        # swap in a rebuilt filter .so under the same path (rename, never
        # overwrite a mapped file in place)
        rebuilt = os.path.join(self.tdir, "tag-rebuilt.so")
        self.build_rebuilt_tag(rebuilt)
        os.replace(rebuilt, tagmod)
        s.write_config(last_cfg)
        s.sighup()
        self.wait_probe(s, lambda t: t == last_tag + "-rebuilt", last_up)

        out = self.wrk.stop()
        self.wrk = None
        self.assertRegex(out, r"\d+ requests in", out)
        nreq = int(re.search(r"(\d+) requests in", out).group(1))
        self.assertGreater(nreq, 10000, out)
        self.assertNotIn("Non-2xx or 3xx responses", out, out)
        self.assertNotIn("Socket errors", out, out)

        m2 = s.metrics()
        self.assertEqual(h.mval(m2, "sluice_config_generation") - gen0, RELOADS + 1)
        self.assertEqual(h.mval(m2, "sluice_config_reloads_total", result="success") - ok0,
                         RELOADS + 1)
        self.assertEqual(h.mval(m2, "sluice_config_reloads_total", result="failure") - fail0, 1)

        # every old generation is freed once its last stream ends
        self.assertIn("sluice_config_generations_alive", {n for (n, _) in m2},
                      "the generations-alive gauge is missing from /metrics")
        deadline = time.monotonic() + 10
        alive = h.mval(m2, "sluice_config_generations_alive")
        while alive != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = h.mval(s.metrics(), "sluice_config_generations_alive")
        self.assertEqual(alive, 1, "old generations still alive after the load stopped")

        # memory: old generations drain, RSS back within baseline + 20 MiB
        limit = baseline + 20 * 1024
        deadline = time.monotonic() + 8
        rss = s.rss_kib()
        while rss > limit and time.monotonic() < deadline:
            time.sleep(0.5)
            rss = s.rss_kib()
        self.assertLessEqual(rss, limit, "RSS %d KiB > baseline %d KiB + 20 MiB" % (rss, baseline))
        print("\nreload: %d reloads in %.1fs under load, %d requests, RSS %d -> %d KiB"
              % (RELOADS, reload_s, nreq, baseline, rss))
        self.assertEqual(s.stop(), 0)

    def test_keepalive_survives_unchanged_reload(self):
        up = self.upstream("K")
        cfg = h.build_config(h.free_port(), h.free_port(),
                             [h.router_filter([h.route_to("svc")]), h.lb_filter()],
                             [h.cluster("svc", [up.addr])], workers=2)
        s = self.sluice(cfg)
        gen0 = h.mval(s.metrics(), "sluice_config_generation")
        c = h.RawConn(s.port)
        try:
            c.send("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            st, hdrs, body = c.read_response()
            self.assertEqual((st, body), (200, b"hello\n"))
            self.assertNotIn(("connection", "close"), [(k, v.lower()) for k, v in hdrs])
            s.reload(cfg)
            self.assertEqual(h.mval(s.metrics(), "sluice_config_generation"), gen0 + 1)
            c.send("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            st, hdrs, body = c.read_response()
            self.assertEqual((st, body), (200, b"hello\n"))
            self.assertNotIn(("connection", "close"), [(k, v.lower()) for k, v in hdrs])
            # and once more after a second reload
            s.reload(cfg)
            c.send("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            st, hdrs, body = c.read_response()
            self.assertEqual((st, body), (200, b"hello\n"))
            self.assertNotIn(("connection", "close"), [(k, v.lower()) for k, v in hdrs])
        finally:
            c.close()

    def test_reload_changes_routes_for_new_connections(self):
        a = self.upstream("A")
        b = self.upstream("B")
        port, admin = h.free_port(), h.free_port()

        def cfg(up):
            return h.build_config(port, admin,
                                  [h.router_filter([h.route_to("svc")]), h.lb_filter()],
                                  [h.cluster("svc", [up.addr])], workers=2)

        s = self.sluice(cfg(a))
        self.assertEqual(h.curl([s.url("/")]).headers.get("x-upstream"), "A")
        s.reload(cfg(b))
        for _ in range(4):
            self.assertEqual(h.curl([s.url("/")]).headers.get("x-upstream"), "B")


if __name__ == "__main__":
    h.main()
