"""The installed SDK builds the hello example out of tree (CMake package and
pkg-config), and the module loads into sluice and works."""

import glob
import os
import shlex
import subprocess

import harness as h

EXAMPLE = os.path.join(h.SOURCE_DIR, "sdk", "examples", "hello")


def run(argv, env=None, timeout=300):
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    return p


class SdkExample(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(EXAMPLE):
            raise h.unittest.SkipTest("sdk/examples/hello not present yet")
        super().setUpClass()
        cls.prefix = os.path.join(cls.workdir, "prefix")
        p = run(["cmake", "--install", h.BUILD_DIR, "--prefix", cls.prefix])
        if p.returncode != 0:
            cls.tearDownClass()
            raise AssertionError("cmake --install failed:\n%s\n%s" % (p.stdout, p.stderr))

    def find_source(self):
        srcs = sorted(glob.glob(os.path.join(EXAMPLE, "*.c")))
        self.assertTrue(srcs, "no .c in %s" % EXAMPLE)
        return srcs

    def assert_single_export(self, so):
        # SLC_FILTER_DEFINE's two symbols (ABI 1.3) and nothing else.
        p = run(["nm", "-D", "--defined-only", so], timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        syms = sorted(ln.split()[-1] for ln in p.stdout.splitlines() if ln.strip())
        self.assertEqual(syms, ["slc_filter_abi_version", "slc_filter_entry"], p.stdout)

    def assert_loads_and_works(self, so):
        up = self.upstream("H")
        filters = [{"name": "hello", "module": so, "config": {"header": "x-hello", "value": "world"}},
                   h.router_filter([h.route_to("c")]), h.lb_filter()]
        cfg = h.build_config(h.free_port(), h.free_port(), filters, [h.cluster("c", [up.addr])],
                             workers=1)
        s = self.sluice(cfg)
        r = h.curl([s.url("/hello")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-hello"), "world", r)
        self.assertEqual(r.body, b"hello\n")
        fl = h.curl([s.admin_url("/filters")])
        self.assertIn("instance=hello", fl.text())

    def test_installed_layout(self):
        self.assertTrue(glob.glob(os.path.join(self.prefix, "include", "sluice", "filter.h")))
        self.assertTrue(glob.glob(os.path.join(self.prefix, "lib*", "**", "sluice-sdk-config.cmake"),
                                  recursive=True))
        self.assertTrue(glob.glob(os.path.join(self.prefix, "lib*", "**", "sluice-sdk.pc"),
                                  recursive=True))

    def test_cmake_package_build(self):
        bdir = os.path.join(self.tdir, "hello-build")
        p = run(["cmake", "-S", EXAMPLE, "-B", bdir, "-DCMAKE_PREFIX_PATH=" + self.prefix,
                 "-DCMAKE_BUILD_TYPE=Release"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = run(["cmake", "--build", bdir])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        sos = glob.glob(os.path.join(bdir, "**", "hello.so"), recursive=True)
        self.assertEqual(len(sos), 1, sos)
        self.assert_single_export(sos[0])
        self.assert_loads_and_works(sos[0])

    def test_pkg_config_build(self):
        pcs = glob.glob(os.path.join(self.prefix, "lib*", "**", "sluice-sdk.pc"), recursive=True)
        self.assertTrue(pcs)
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
        p = run(["pkg-config", "--cflags", "sluice-sdk"], env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        cflags = shlex.split(p.stdout)
        incs = [os.path.normpath(f[2:]) for f in cflags if f.startswith("-I")]
        self.assertIn(os.path.join(self.prefix, "include"), incs, cflags)
        so = os.path.join(self.tdir, "hello.so")
        p = run(["cc", "-std=c11", "-O2", "-shared", "-fPIC"] + cflags + ["-o", so]
                + self.find_source(), timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_single_export(so)
        self.assert_loads_and_works(so)


if __name__ == "__main__":
    h.main()
