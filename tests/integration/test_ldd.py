"""No built binary or module pulls OpenSSL 3 (libssl.so.3 / libcrypto.so.3)
into a process: it would clash with BoringSSL's unversioned symbols."""

import glob
import os
import subprocess

import harness as h

FORBIDDEN = ("libssl.so.3", "libcrypto.so.3")


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def built_objects():
    """built_objects lists sluice, the filter modules and test modules, plus
    every other ELF executable or .so under the build dir (CMakeFiles
    scratch excluded)."""
    found = set()
    for p in [h.SLUICE_BIN, h.UPSTREAM_BIN]:
        if os.path.isfile(p):
            found.add(os.path.realpath(p))
    for d in (h.FILTER_DIR, h.TEST_FILTER_DIR):
        for p in glob.glob(os.path.join(d, "*.so")):
            found.add(os.path.realpath(p))
    for root, dirs, files in os.walk(h.BUILD_DIR):
        dirs[:] = [d for d in dirs if d != "CMakeFiles" and not d.startswith("_CPack")]
        for f in files:
            p = os.path.join(root, f)
            if os.path.islink(p) or not is_elf(p):
                continue
            if f.endswith(".so") or ".so." in f or os.access(p, os.X_OK):
                found.add(os.path.realpath(p))
    return sorted(found)


def ldd(path):
    p = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


class Ldd(h.SluiceTestCase):
    def test_required_objects_exist(self):
        self.assertTrue(os.path.isfile(h.SLUICE_BIN), h.SLUICE_BIN)
        for m in ("router", "lb"):
            self.assertTrue(os.path.isfile(os.path.join(h.FILTER_DIR, m + ".so")), m)

    def test_no_openssl3(self):
        objs = built_objects()
        self.assertIn(os.path.realpath(h.SLUICE_BIN), objs)
        bad = []
        for p in objs:
            rc, out = ldd(p)
            for lib in FORBIDDEN:
                if lib in out:
                    bad.append("%s -> %s" % (os.path.relpath(p, h.BUILD_DIR), lib))
        print("\nchecked %d objects" % len(objs))
        self.assertEqual(bad, [], "objects linking OpenSSL 3:\n" + "\n".join(bad))

    def test_core_links_no_tls(self):
        # the core moves bytes through filter-installed transports and links
        # no TLS library at all (ARCHITECTURE: TLS placement)
        rc, out = ldd(h.SLUICE_BIN)
        self.assertEqual(rc, 0, out)
        for lib in ("libssl", "libcrypto"):
            self.assertNotIn(lib, out, out)

    def test_modules_resolve(self):
        # every filter module's dependencies resolve (no "not found")
        for d in (h.FILTER_DIR, h.TEST_FILTER_DIR):
            for p in sorted(glob.glob(os.path.join(d, "*.so"))):
                rc, out = ldd(p)
                self.assertNotIn("not found", out, "%s:\n%s" % (p, out))


if __name__ == "__main__":
    h.main()
