"""Forward compatibility on real streams: the tag filter built against the
headers each older minor shipped (tests/compat/abi-X.Y, built by CMake as
tests/filters/tag_abi_X_Y.so) loads into this sluice, binds its config through
the core's binder and stamps real responses."""

import glob
import os
import re

import harness as h

COMPAT = os.path.join(h.SOURCE_DIR, "tests", "compat")


def compat_versions():
    """compat_versions lists "X.Y" for every tests/compat/abi-X.Y."""
    vs = []
    for d in sorted(glob.glob(os.path.join(COMPAT, "abi-*"))):
        m = re.match(r"abi-(\d+)\.(\d+)$", os.path.basename(d))
        if m and os.path.isdir(d):
            vs.append("%s.%s" % (m.group(1), m.group(2)))
    return vs


class CompatAbi(h.SluiceTestCase):
    def test_every_older_minor_runs_on_real_streams(self):
        versions = compat_versions()
        # 1.0 to 1.4 at least: a missing fixture is a broken tree.
        for v in ("1.0", "1.1", "1.2", "1.3", "1.4"):
            self.assertIn(v, versions)
        filters = []
        for v in versions:
            so = os.path.join(h.TEST_FILTER_DIR, "tag_abi_%s.so" % v.replace(".", "_"))
            self.assertTrue(os.path.isfile(so), "not built: %s" % so)
            filters.append({"name": "tag-%s" % v, "module": so,
                            # header: exercises the default of an old table, value: a required key
                            "config": {"header": "x-abi-%s" % v, "value": "ran-%s" % v}})
        up = self.upstream("C")
        filters += [h.router_filter([h.route_to("c")]), h.lb_filter()]
        cfg = h.build_config(h.free_port(), h.free_port(), filters,
                             [h.cluster("c", [up.addr])], workers=1)
        s = self.sluice(cfg)
        for _ in range(3):
            r = h.curl([s.url("/hello")])
            self.assertEqual(r.status, 200, r)
            for v in versions:
                self.assertEqual(r.headers.get("x-abi-%s" % v), "ran-%s" % v, r)
        listing = h.curl([s.admin_url("/filters")]).text()
        for v in versions:
            self.assertRegex(listing, r"instance=tag-%s version=\S+ abi=%s " % (re.escape(v), re.escape(v)))

    def test_old_table_errors_still_located(self):
        # The binder walks the 1.0 table with the 1.0 stride: a misspelt key
        # gets its did-you-mean from that table.
        so = os.path.join(h.TEST_FILTER_DIR, "tag_abi_1_0.so")
        filters = [{"name": "old", "module": so, "config": {"valeu": "x"}},
                   h.router_filter([h.route_to("c")]), h.lb_filter()]
        cfg = h.build_config(h.free_port(), h.free_port(), filters,
                             [h.cluster("c", ["127.0.0.1:9"])], workers=1)
        path = os.path.join(self.tdir, "bad.yaml")
        with open(path, "w") as f:
            f.write(h.to_yaml(cfg))
        p = h.run_sluice(["--validate", "-c", path])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("unknown key 'valeu' (did you mean 'value'?)", p.stderr)
        self.assertIn("missing required key 'value'", p.stderr)


if __name__ == "__main__":
    h.main()
