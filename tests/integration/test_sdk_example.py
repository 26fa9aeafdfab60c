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


# A filter that links the installed helper library (sluice::util): it
# answers 403 unless the path, normalized, fully matches an RE2 regex, so
# building, linking (C++ shim included) and loading are all exercised.
UTIL_FILTER = r"""
#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/util.h>

#include <string.h>

typedef struct gate_cfg {
    char *regex;
    slcu_regex_t *re;
} gate_cfg_t;

static const slc_cfg_field_t gate_fields[] = {
    SLC_FIELD_STR("regex", gate_cfg_t, regex, .required = true),
    SLC_FIELD_END,
};

static slc_status_t gate_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out,
                                    slc_diag_t *d)
{
    gate_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));
    *out = NULL;
    if (h->cfg_bind(d, n, gate_fields, cfg) != SLC_OK) {
        return SLC_EINVAL;
    }
    slcu_regex_error_t err;
    cfg->re = slcu_regex_compile(cfg->regex, strlen(cfg->regex), 0, &err);
    if (cfg->re == NULL) {
        slc_diag_error(d, h->cfg_get(n, "regex"), "bad regex: %s at offset %zu", err.msg, err.pos);
        return SLC_EINVAL;
    }
    *out = cfg;
    return SLC_OK;
}

static void gate_config_free(void *cfg)
{
    slcu_regex_free(((gate_cfg_t *)cfg)->re);
}

static slc_action_t gate_on_request_headers(void *ctx, slc_req_t *r)
{
    const gate_cfg_t *cfg = ctx;
    slc_str_t full = slc_pseudo(r, SLC_PSEUDO_PATH);
    const char *q = memchr(full.ptr, '?', full.len);
    slc_str_t path = {full.ptr, q != NULL ? (size_t)(q - full.ptr) : full.len};
    char buf[512];
    size_t n = slcu_path_normalize(path, buf, sizeof(buf), SLCU_PATH_MERGE_SLASHES);
    if (n == SIZE_MAX || !slcu_regex_match(cfg->re, buf, n)) {
        slc_send_local_reply(r, 403, SLC_STR("text/plain"), SLC_STR("gated\n"));
        return SLC_STOP;
    }
    return SLC_CONTINUE;
}

static const slc_filter_desc_t gate_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "gate",
    .version = "0.1.0",
    .config_new = gate_config_new,
    .config_free = gate_config_free,
    .on_request_headers = gate_on_request_headers,
};

SLC_FILTER_DEFINE(gate_desc)
"""

UTIL_CMAKE = """cmake_minimum_required(VERSION 3.20)
project(gate_filter LANGUAGES C)
set(CMAKE_C_STANDARD 11)
find_package(sluice-sdk 0.1 REQUIRED)
sluice_add_filter(gate gate.c)
target_link_libraries(gate PRIVATE sluice::util)
target_link_options(gate PRIVATE -Wl,--no-undefined -Wl,--as-needed)
"""


def sanitized_build():
    """sanitized_build tells whether the build under test (and so the
    libsluice-util.a it installs) was compiled with ASan and UBSan: a filter
    linking that archive must then be built with them too."""
    try:
        with open(os.path.join(h.BUILD_DIR, "CMakeCache.txt")) as f:
            return "SLUICE_SANITIZE:BOOL=ON" in f.read()
    except OSError:
        return False


SAN_FLAGS = ["-fsanitize=address,undefined"] if sanitized_build() else []


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
        if SAN_FLAGS:
            # ASan gives each exported global an ODR indicator of its own,
            # "__odr_asan.<name>": instrumentation, not an export of ours.
            syms = [x for x in syms if x != "__odr_asan.slc_filter_abi_version"]
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

    def assert_gate_works(self, so):
        up = self.upstream("H")
        filters = [{"name": "gate", "module": so, "config": {"regex": "/x/[a-z\u00e9]+"}},
                   h.router_filter([{"match": {"prefix": "/"},
                                     "direct_response": {"status": 200, "body": "through"}}])]
        cfg = h.build_config(h.free_port(), h.free_port(), filters, [h.cluster("c", [up.addr])],
                             workers=1)
        s = self.sluice(cfg)
        self.assertEqual(h.curl([s.url("/x/abc")]).text(), "through")
        self.assertEqual(h.curl([s.url("/x/caf%C3%A9")]).status, 403)  # no decoding
        self.assertEqual(h.curl([s.url("/x/abc?q=1")]).status, 200)
        self.assertEqual(h.curl(["--path-as-is", s.url("/x/../x/abc")]).status, 200)  # normalized
        self.assertEqual(h.curl([s.url("/x/ABC")]).status, 403)
        self.assertEqual(h.curl([s.url("/y/abc")]).text(), "gated\n")

    def test_util_cmake_package_build(self):
        src = os.path.join(self.tdir, "gate-src")
        os.makedirs(src)
        with open(os.path.join(src, "gate.c"), "w") as f:
            f.write(UTIL_FILTER)
        with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
            f.write(UTIL_CMAKE)
        bdir = os.path.join(self.tdir, "gate-build")
        san = " ".join(SAN_FLAGS)
        p = run(["cmake", "-S", src, "-B", bdir, "-DCMAKE_PREFIX_PATH=" + self.prefix,
                 "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_C_FLAGS=" + san,
                 "-DCMAKE_MODULE_LINKER_FLAGS=" + san])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = run(["cmake", "--build", bdir])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        sos = glob.glob(os.path.join(bdir, "**", "gate.so"), recursive=True)
        self.assertEqual(len(sos), 1, sos)
        self.assert_single_export(sos[0])
        self.assert_gate_works(sos[0])

    def test_util_pkg_config_build(self):
        pcs = glob.glob(os.path.join(self.prefix, "lib*", "**", "sluice-util.pc"), recursive=True)
        self.assertTrue(pcs)
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
        p = run(["pkg-config", "--cflags", "--libs", "sluice-util"], env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        flags = shlex.split(p.stdout)
        self.assertIn("-lsluice-util", flags)
        src = os.path.join(self.tdir, "gate.c")
        with open(src, "w") as f:
            f.write(UTIL_FILTER)
        so = os.path.join(self.tdir, "gate.so")
        p = run(["cc", "-std=c11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden"] + SAN_FLAGS
                + ["-o", so, src, "-Wl,--no-undefined", "-Wl,--as-needed"] + flags, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_single_export(so)
        self.assert_gate_works(so)

    def test_installed_layout(self):
        self.assertTrue(glob.glob(os.path.join(self.prefix, "include", "sluice", "util.h")))
        self.assertTrue(glob.glob(os.path.join(self.prefix, "lib*", "libsluice-util.a")))
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
