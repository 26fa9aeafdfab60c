"""Command line and configuration errors: --help, --version, --validate, and
precise file:line:col diagnostics for broken configs."""

import os
import re
import shutil
import subprocess

import harness as h

BASE = """\
workers: 1
admin: {{ address: 127.0.0.1:{admin} }}
{filter_dir_line}{extra_top}filters:
{extra_filter}  - name: routes
    module: router
    config:
      virtual_hosts:
        - domains: ["*"]
          routes:
            - match: {{ prefix: / }}
              route: {{ cluster: {cluster} }}
  - name: balance
    module: lb
    config: {{ policy: round_robin }}
clusters:
  - name: api
    endpoints: [127.0.0.1:{up}]
{listeners_key}:
  - name: public
    address: 127.0.0.1:{port}
    filter_chain: [{chain_prefix}routes, balance]
"""


def render(extra_top="", extra_filter="", cluster="api", listeners_key="listeners",
           chain_prefix="", filter_dir=h.FILTER_DIR):
    """render fills BASE; filter_dir=None leaves the filter_dir key out."""
    line = "filter_dir: %s\n" % filter_dir if filter_dir is not None else ""
    return BASE.format(admin=h.free_port(), filter_dir_line=line, extra_top=extra_top,
                       extra_filter=extra_filter, cluster=cluster, listeners_key=listeners_key,
                       up=h.closed_port(), port=h.free_port(), chain_prefix=chain_prefix)


def env_without_filter_dir():
    """env_without_filter_dir is this process's environment minus
    SLUICE_FILTER_DIR, so sluice falls back on its built-in default."""
    return {k: v for k, v in os.environ.items() if k != "SLUICE_FILTER_DIR"}


def builtin_filter_dir(help_text):
    """builtin_filter_dir reads the built-in default filter directory that
    `sluice --help` prints."""
    m = re.search(r"else (/\S+)\)", help_text)
    if not m:
        raise AssertionError("no built-in filter directory in --help:\n%s" % help_text)
    return m.group(1)


def pos(text, needle, after=None):
    """pos returns the 1-based (line, col) of |needle|'s first char (searching
    from the first occurrence of |after|, if given)."""
    start = text.index(after) if after else 0
    i = text.index(needle, start)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


class CliConfig(h.SluiceTestCase):
    def write(self, name, text):
        p = os.path.join(self.tdir, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def validate(self, text, name="cfg.yaml"):
        path = self.write(name, text)
        return path, h.run_sluice(["--validate", "-c", path])

    def assertLoc(self, stderr, path, positions, msg=None):
        """assertLoc checks that some error line carries path:LINE:COL: for one
        of |positions| (and |msg| on that same line when given)."""
        base = re.escape(os.path.basename(path))
        for (line, col) in positions:
            pat = r"(?:^|[\s/])%s:%d:%d:" % (base, line, col)
            for ln in stderr.splitlines():
                if re.search(pat, ln) and (msg is None or re.search(msg, ln)):
                    return
        self.fail("no error at %s:%s%s in:\n%s"
                  % (os.path.basename(path), positions,
                     (" matching %r" % msg) if msg else "", stderr))

    def assertFails(self, v):
        self.assertEqual(v.returncode, 1, "exit code; stderr:\n%s" % v.stderr)
        self.assertNotIn("configuration ok", v.stdout)

    # ------------------------------------------------------------ CLI

    def test_help(self):
        v = h.run_sluice(["--help"])
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertRegex(v.stdout, r"(?i)usage")
        self.assertIn("--validate", v.stdout)
        self.assertIn("-c", v.stdout)
        self.assertIn("--filter-dir", v.stdout)
        self.assertEqual(builtin_filter_dir(v.stdout), h.FILTER_DIR,
                         "the build tree's binary must default to the build tree's filters")

    def test_empty_filter_dir_flag_is_bad_usage(self):
        v = h.run_sluice(["--filter-dir=", "--validate", "-c", self.write("x.yaml", render())])
        self.assertEqual(v.returncode, 2, v.stderr)
        self.assertIn("--filter-dir", v.stderr)

    def test_version(self):
        v = h.run_sluice(["--version"])
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertIn("ABI " + h.ABI, v.stdout)
        self.assertRegex(v.stdout, r"^sluice \d+\.\d+\.\d+ ")

    def test_unknown_option(self):
        v = h.run_sluice(["--no-such-option"])
        self.assertNotEqual(v.returncode, 0)
        self.assertTrue(v.stderr.strip())

    def test_validate_shipped_config(self):
        # Without SLUICE_FILTER_DIR (ctest sets it): the shipped config must
        # find this build tree's filters on the binary's built-in default,
        # wherever the build tree is.
        shipped = os.path.join(h.SOURCE_DIR, "config", "sluice.yaml")
        v = h.run_sluice(["--validate", "-c", shipped], env=env_without_filter_dir())
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertIn("configuration ok", v.stdout)
        for mod in ("router", "lb"):
            self.assertIn("path=%s/%s.so" % (h.FILTER_DIR, mod), v.stderr)

    # ------------------------------------------------------------ filter directory

    def assertModuleDir(self, v, want_dir, ok):
        """assertModuleDir checks that --validate result |v| loaded (ok) or
        failed to load the bare module router from |want_dir|."""
        if ok:
            self.assertEqual(v.returncode, 0, v.stderr)
            self.assertIn("path=%s/router.so" % want_dir, v.stderr)
        else:
            self.assertFails(v)
            self.assertIn("cannot load filter module '%s/router.so'" % want_dir, v.stderr)

    def test_filter_dir_precedence(self):
        # key > --filter-dir > SLUICE_FILTER_DIR > built-in (docs/configuration.md)
        empty = os.path.join(self.tdir, "empty-filters")
        os.mkdir(empty)
        good = h.FILTER_DIR
        no_key = self.write("nokey.yaml", render(filter_dir=None))
        keyed = self.write("keyed.yaml", render(filter_dir=empty))
        bare = env_without_filter_dir()
        env_empty = dict(bare, SLUICE_FILTER_DIR=empty)
        env_good = dict(bare, SLUICE_FILTER_DIR=good)
        # built-in default of the build tree's binary
        self.assertModuleDir(h.run_sluice(["--validate", "-c", no_key], env=bare), good, True)
        # the environment beats the built-in default
        self.assertModuleDir(h.run_sluice(["--validate", "-c", no_key], env=env_empty), empty,
                             False)
        # the flag beats the environment
        self.assertModuleDir(h.run_sluice(["--filter-dir", good, "--validate", "-c", no_key],
                                          env=env_empty), good, True)
        self.assertModuleDir(h.run_sluice(["--filter-dir", empty, "--validate", "-c", no_key],
                                          env=env_good), empty, False)
        # the configuration's key beats both
        self.assertModuleDir(h.run_sluice(["--filter-dir", good, "--validate", "-c", keyed],
                                          env=env_good), empty, False)

    def test_copied_binary_defaults_to_the_install_dir(self):
        # An installed sluice is a copy of the build tree's: it must look in
        # the install's filter directory, never back in the build tree.
        copy = os.path.join(self.tdir, "sluice")
        shutil.copy2(h.SLUICE_BIN, copy)
        bare = env_without_filter_dir()
        v = h.run_sluice(["--help"], env=bare, binary=copy)
        self.assertEqual(v.returncode, 0, v.stderr)
        install = builtin_filter_dir(v.stdout)
        self.assertNotEqual(install, h.FILTER_DIR)
        self.assertTrue(install.endswith("/sluice/filters"), install)
        # a module no install has, so the answer does not depend on one
        extra = "  - name: extra\n    module: no_such_module_xyz\n"
        path = self.write("copy.yaml", render(extra_filter=extra, filter_dir=None))
        v = h.run_sluice(["--validate", "-c", path], env=bare, binary=copy)
        self.assertFails(v)
        self.assertIn("cannot load filter module '%s/no_such_module_xyz.so'" % install, v.stderr)
        # SLUICE_FILTER_DIR points an installed binary elsewhere
        path = self.write("copy-ok.yaml", render(filter_dir=None))
        v = h.run_sluice(["--validate", "-c", path], env=dict(bare, SLUICE_FILTER_DIR=h.FILTER_DIR),
                         binary=copy)
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertIn("path=%s/router.so" % h.FILTER_DIR, v.stderr)

    def test_validate_good(self):
        path, v = self.validate(render())
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertEqual(v.stdout.strip(), "%s: configuration ok" % path)

    def test_validate_missing_file(self):
        v = h.run_sluice(["--validate", "-c", os.path.join(self.tdir, "nope.yaml")])
        self.assertEqual(v.returncode, 1)
        self.assertIn("nope.yaml", v.stderr)

    # ------------------------------------------------------------ errors

    def test_unknown_key_did_you_mean(self):
        text = render(listeners_key="listners")
        path, v = self.validate(text)
        self.assertFails(v)
        self.assertLoc(v.stderr, path, [pos(text, "listners:")], r"did you mean 'listeners'")

    def test_bad_duration(self):
        text = render(extra_top="drain_timeout: 10 parsecs\n")
        path, v = self.validate(text)
        self.assertFails(v)
        self.assertLoc(v.stderr, path, [pos(text, "10 parsecs")], r"expected a duration")

    def test_yaml_syntax_error(self):
        text = render(extra_top="drain_timeout: [1s\n")
        path, v = self.validate(text)
        self.assertFails(v)
        self.assertRegex(v.stderr, r"cfg\.yaml:\d+:\d+:")

    def test_every_error_reported(self):
        text = render(extra_top="drain_timeout: 10 parsecs\n", listeners_key="listners")
        path, v = self.validate(text)
        self.assertFails(v)
        self.assertLoc(v.stderr, path, [pos(text, "10 parsecs")], r"expected a duration")
        self.assertLoc(v.stderr, path, [pos(text, "listners:")], r"did you mean 'listeners'")

    def _module_case(self, module_path, chain=True):
        extra = "  - name: extra\n    module: %s\n" % module_path
        text = render(extra_filter=extra, chain_prefix="extra, " if chain else "")
        path, v = self.validate(text)
        # acceptable anchors: the module value, or the filter entry itself
        cands = [pos(text, module_path, after="name: extra"), pos(text, "name: extra")]
        return text, path, v, cands

    def test_missing_module_file(self):
        missing = os.path.join(self.tdir, "no-such-dir", "ghost.so")
        text, path, v, cands = self._module_case(missing)
        self.assertFails(v)
        self.assertLoc(v.stderr, path, cands, r"ghost\.so")

    def test_missing_bare_module(self):
        text, path, v, cands = self._module_case("no_such_module_xyz")
        self.assertFails(v)
        self.assertLoc(v.stderr, path, cands, r"no_such_module_xyz")

    def test_wrong_abi_module(self):
        mod = h.test_module("wrong_abi")
        text, path, v, cands = self._module_case(mod)
        self.assertFails(v)
        self.assertLoc(v.stderr, path, cands, r"wrong_abi\.so")
        line = [ln for ln in v.stderr.splitlines() if "wrong_abi.so" in ln]
        joined = "\n".join(line)
        self.assertIn("built for ABI 2.0", joined, v.stderr)
        self.assertIn("this sluice provides " + h.ABI, joined, v.stderr)

    def test_no_entry_module(self):
        mod = h.test_module("no_entry")
        text, path, v, cands = self._module_case(mod)
        self.assertFails(v)
        self.assertLoc(v.stderr, path, cands, r"slc_filter_entry")
        self.assertIn("no_entry.so", v.stderr)

    def test_bad_config_module(self):
        mod = h.test_module("bad_config")
        extra = "  - name: extra\n    module: %s\n    config: { fail: here }\n" % mod
        text = render(extra_filter=extra, chain_prefix="extra, ")
        path, v = self.validate(text)
        self.assertFails(v)
        # bad_config reports against its whole config node: the flow map's "{"
        self.assertLoc(v.stderr, path, [pos(text, "{ fail", after="name: extra")],
                       r"rejects every config")

    def test_unknown_cluster_in_router(self):
        text = render(cluster="nope")
        path, v = self.validate(text)
        self.assertFails(v)
        self.assertLoc(v.stderr, path, [pos(text, "nope")], r"nope")

    def test_unknown_filter_in_chain(self):
        text = render(chain_prefix="ghostfilter, ")
        path, v = self.validate(text)
        self.assertFails(v)
        self.assertLoc(v.stderr, path, [pos(text, "ghostfilter")], r"ghostfilter")

    def test_start_with_broken_config(self):
        text = render(extra_top="drain_timeout: 10 parsecs\n")
        path = self.write("broken.yaml", text)
        p = subprocess.run([h.SLUICE_BIN, "-c", path], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertLoc(p.stderr, path, [pos(text, "10 parsecs")], r"expected a duration")


if __name__ == "__main__":
    h.main()
