"""1 GiB down and up through sluice with bounded memory (streaming, not
buffering): peak RSS stays under baseline + 64 MiB."""

import os
import subprocess
import time

import harness as h

GIB = 1 << 30
RSS_SLACK_KIB = 64 * 1024
CURL_MAX_S = 100


class LargeBody(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.up = cls.class_upstream("L")
            cfg = h.build_config(h.free_port(), h.free_port(),
                                 [h.router_filter([h.route_to("c")]), h.lb_filter()],
                                 [h.cluster("c", [cls.up.addr])], workers=2)
            cls.s = cls.class_sluice(cfg)
            # warm-up: a few requests with bodies, then the baseline
            for _ in range(3):
                rc, out, err = h.curl_w([cls.s.url("/bytes?n=4194304")], "%{http_code}")
                assert out == "200", (out, err)
                p = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "20",
                                    "--data-binary", "@-", "-H", "Expect:", cls.s.url("/sink")],
                                   input=b"z" * (4 << 20), capture_output=True, env=h.CLIENT_ENV,
                                   timeout=30)
                assert p.stdout == b"received 4194304\n", p
            time.sleep(0.5)
            cls.baseline = cls.s.rss_kib()
        except BaseException:
            cls.tearDownClass()
            raise

    def check_rss(self, sampler, what):
        self.assertGreater(len(sampler.samples), 3)
        peak = sampler.peak
        print("\n%s: baseline %d KiB, peak %d KiB (+%d KiB), %d samples"
              % (what, self.baseline, peak, peak - self.baseline, len(sampler.samples)))
        self.assertLess(peak, self.baseline + RSS_SLACK_KIB,
                        "%s: peak RSS %d KiB >= baseline %d KiB + 64 MiB" % (what, peak, self.baseline))

    def test_download_1gib(self):
        with h.RssSampler(self.s.pid) as smp:
            t0 = time.monotonic()
            rc, out, err = h.curl_w([self.s.url("/bytes?n=%d" % GIB)],
                                    "%{http_code} %{size_download}", timeout=CURL_MAX_S)
            dt = time.monotonic() - t0
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split(), ["200", str(GIB)])
        print("\ndownload 1 GiB in %.1fs" % dt)
        self.check_rss(smp, "download")

    def test_upload_1gib_chunked(self):
        with h.RssSampler(self.s.pid) as smp:
            gen = subprocess.Popen(["head", "-c", str(GIB), "/dev/zero"], stdout=subprocess.PIPE)
            try:
                p = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", str(CURL_MAX_S),
                                    "-T", "-", "-X", "POST", "-i", self.s.url("/sink")],
                                   stdin=gen.stdout, capture_output=True, env=h.CLIENT_ENV,
                                   timeout=CURL_MAX_S + 10)
            finally:
                gen.stdout.close()
                if gen.poll() is None:
                    gen.kill()
                gen.wait(10)
        self.assertEqual(p.returncode, 0, p.stderr)
        statuses, headers, _, body = h._parse_curl_i(p.stdout)
        self.assertEqual(statuses[-1], 200, p.stdout[:500])
        self.assertEqual(body, b"received %d\n" % GIB)
        self.check_rss(smp, "upload chunked")

    def test_upload_1gib_content_length(self):
        path = os.path.join(self.tdir, "sparse-1g.bin")
        subprocess.run(["truncate", "-s", str(GIB), path], check=True, timeout=10)
        try:
            with h.RssSampler(self.s.pid) as smp:
                p = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", str(CURL_MAX_S),
                                    "-T", path, "-X", "POST", "-i", self.s.url("/sink")],
                                   stdin=subprocess.DEVNULL, capture_output=True,
                                   env=h.CLIENT_ENV, timeout=CURL_MAX_S + 10)
        finally:
            os.unlink(path)
        self.assertEqual(p.returncode, 0, p.stderr)
        statuses, headers, _, body = h._parse_curl_i(p.stdout)
        self.assertEqual(statuses[-1], 200, p.stdout[:500])
        self.assertEqual(body, b"received %d\n" % GIB)
        self.check_rss(smp, "upload content-length")

    def test_echo_256mib_both_ways(self):
        # request and response bodies streaming at the same time
        with h.RssSampler(self.s.pid) as smp:
            gen = subprocess.Popen(["head", "-c", str(256 << 20), "/dev/zero"], stdout=subprocess.PIPE)
            try:
                p = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "60",
                                    "-T", "-", "-X", "POST", "-o", "/dev/null",
                                    "-w", "%{http_code} %{size_download}", self.s.url("/echo")],
                                   stdin=gen.stdout, capture_output=True, env=h.CLIENT_ENV,
                                   timeout=70, text=True)
            finally:
                gen.stdout.close()
                if gen.poll() is None:
                    gen.kill()
                gen.wait(10)
        if p.returncode != 0:
            # Seen once (ASan, full suite in parallel): the echo stalled at
            # 19 MB. Keep what would tell where it stopped.
            m = self.s.metrics()
            print("\nstalled echo: streams_active=%s upstream_connections_active=%s"
                  % (h.mval(m, "sluice_streams_active"),
                     h.mval(m, "sluice_upstream_connections_active")))
            print(self.s.log_text()[-3000:])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(), ["200", str(256 << 20)])
        self.check_rss(smp, "echo 256 MiB")


if __name__ == "__main__":
    h.main()
