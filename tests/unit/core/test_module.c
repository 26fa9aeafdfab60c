/* Unit tests for core/module.c: loading filter shared objects.
 *
 * Self-contained: the group setup compiles fixtures/tiny_module.c with
 * `cc -shared` into a private directory, in the variants the tests need
 * (good, rewritten, wrong ABI, newer minor, no entry point, ...), and once
 * against each older minor's shipped headers in tests/compat/abi-1.*: those
 * are loaded, configured through the real host table and binder, and their
 * hooks run. The SDK headers come from the source tree, found from __FILE__.
 * If no compiler is available every test skips.
 *
 * "Is it still mapped" is answered by /proc/self/maps: module_load dlopens a
 * private copy that it unlinks at once, so the copy shows up there as
 * "<tmpdir>/sluice-modules.XXXXXX/<n>-<file> (deleted)" exactly while the
 * module is loaded. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfgtree.h"
#include "fixtures/tiny_module.h"
#include "log.h"
#include "module.h"
#include "coretypes.h"
#include "hostapi.h"

static char srcroot[PATH_MAX]; /* the repository */
static char tmpdir[256];       /* this run's build and scratch directory */
static bool have_cc;

/* ---- building fixtures ---------------------------------------------- */

/* find_srcroot derives the repository from this file's path
 * (<root>/tests/unit/core/test_module.c). */
static int find_srcroot(void)
{
    char here[PATH_MAX];
    if (!realpath(__FILE__, here))
        return -1;
    for (int i = 0; i < 4; i++) {
        char *slash = strrchr(here, '/');
        if (!slash)
            return -1;
        *slash = '\0';
    }
    snprintf(srcroot, sizeof(srcroot), "%s", here);
    return 0;
}

/* build_tiny_sdk compiles fixtures/tiny_module.c with |defs| against the
 * SDK headers in <srcroot>/<inc> into <tmpdir>/<name>. Returns 0 on
 * success. */
static int build_tiny_sdk(const char *name, const char *defs, const char *inc)
{
    char cmd[5 * PATH_MAX];
    const char *cc = getenv("CC");
    snprintf(cmd, sizeof(cmd),
             "%s -std=c11 -shared -fPIC -O0 -I'%s/%s' %s -o '%s/%s' "
             "'%s/tests/unit/core/fixtures/tiny_module.c'",
             cc && *cc ? cc : "cc", srcroot, inc, defs, tmpdir, name, srcroot);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "test_module: build failed (%d): %s\n", rc, cmd);
    return rc == 0 ? 0 : -1;
}

static int build_tiny(const char *name, const char *defs)
{
    return build_tiny_sdk(name, defs, "sdk/include");
}

static void fixture_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", tmpdir, name);
}

/* copy_to copies <tmpdir>/<from> over <tmpdir>/<to>: with |in_place| by
 * truncating and rewriting the same inode, else by rename of a new file. */
static void copy_to(const char *from, const char *to, bool in_place)
{
    char src[PATH_MAX], dst[PATH_MAX], tmp[PATH_MAX + 8];
    fixture_path(src, sizeof(src), from);
    fixture_path(dst, sizeof(dst), to);
    snprintf(tmp, sizeof(tmp), "%s.new", dst);
    const char *target = in_place ? dst : tmp;
    FILE *in = fopen(src, "rb");
    assert_non_null(in);
    FILE *out = fopen(target, "wb"); /* O_TRUNC: same inode when it exists */
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(chmod(target, 0755), 0);
    if (!in_place)
        assert_int_equal(rename(tmp, dst), 0);
}

static int group_setup(void **state)
{
    (void)state;
    log_set_level(SLC_LOG_WARN); /* no "module loaded" lines in the output */
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_module.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir) || find_srcroot() != 0)
        return -1;
    char sdk[PATH_MAX + 32];
    snprintf(sdk, sizeof(sdk), "%s/sdk/include/sluice/filter.h", srcroot);
    if (access(sdk, R_OK) != 0)
        return -1;
    const char *cc = getenv("CC");
    char probe[256];
    snprintf(probe, sizeof(probe), "%s --version >/dev/null 2>&1", cc && *cc ? cc : "cc");
    have_cc = system(probe) == 0;
    if (!have_cc)
        return 0;
    char defs[128];
    snprintf(defs, sizeof(defs), "-DTINY_ABI='((2u<<16)|0u)'");
    int rc =
        build_tiny("good.so", "") | build_tiny("v2.so", "-DTINY_MARK=2 -DTINY_PAD=4096") |
        build_tiny("v3.so", "-DTINY_MARK=3 -DTINY_PAD=8192") | build_tiny("wrong_major.so", defs) |
        build_tiny("newer_minor.so", "-DTINY_ABI='((SLC_ABI_MAJOR<<16)|(SLC_ABI_MINOR+1))'") |
        build_tiny("no_entry.so", "-DTINY_NO_ENTRY") |
        build_tiny("null_desc.so", "-DTINY_NULL_DESC") |
        build_tiny("small_desc.so", "-DTINY_STRUCT_SIZE=8") |
        build_tiny("unnamed.so", "-DTINY_UNNAMED") |
        /* 1.3+: refused from the exported constant alone (the entry aborts). */
        build_tiny("sym_newer.so", "-DTINY_SYM_ABI='((SLC_ABI_MAJOR<<16)|(SLC_ABI_MINOR+1))'") |
        build_tiny("sym_major.so", "-DTINY_SYM_ABI='(2u<<16)'") |
        /* Every older minor's headers, as older filters were built. */
        build_tiny_sdk("abi_1_0.so", "", "tests/compat/abi-1.0") |
        build_tiny_sdk("abi_1_1.so", "", "tests/compat/abi-1.1") |
        build_tiny_sdk("abi_1_2.so", "", "tests/compat/abi-1.2") |
        build_tiny_sdk("abi_1_3.so", "", "tests/compat/abi-1.3") |
        build_tiny_sdk("abi_1_4.so", "", "tests/compat/abi-1.4") |
        build_tiny("nodelete.so", "-DTINY_NODELETE");
    return rc == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    module_tmpdir_cleanup();
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

#define NEED_CC()                                                                                  \
    do {                                                                                           \
        if (!have_cc)                                                                              \
            skip();                                                                                \
    } while (0)

/* ---- observing mappings ----------------------------------------------- */

/* copy_name stores the private copy's file name of |m| (from dladdr on its
 * descriptor, which lives in the copy). */
static void copy_name(const module_t *m, char *out, size_t size)
{
    Dl_info info;
    assert_int_not_equal(dladdr(m->desc, &info), 0);
    assert_non_null(info.dli_fname);
    snprintf(out, size, "%s", info.dli_fname);
}

/* maps_count counts lines of /proc/self/maps containing |needle|. */
static int maps_count(const char *needle)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[PATH_MAX + 256];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

static void *config_mark(const module_t *m)
{
    void *cfg = NULL;
    assert_non_null(m->desc->config_new);
    assert_int_equal(m->desc->config_new(NULL, NULL, &cfg, NULL), SLC_OK);
    return cfg;
}

/* load_fail loads <tmpdir>/<name>, expects failure, and checks that no
 * module mapping was left behind. The message goes to |err|. */
static void load_fail(const char *name, char *err, size_t errlen)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), name);
    int before = maps_count("/sluice-modules.");
    err[0] = '\0';
    module_t *m = module_load(path, NULL, err, errlen);
    if (m)
        fail_msg("module_load('%s') succeeded", path);
    assert_int_equal(maps_count("/sluice-modules."), before);
    assert_non_null(strstr(err, path)); /* every message names the file */
}

/* ---- loading ---------------------------------------------------------- */

/* run_tiny binds |yaml| through the core's real host table and binder as
 * the generation builder does (diag tagged with the module's ABI), and runs
 * the module's request-headers hook. Returns the bound config (tree-arena,
 * valid until *tree is freed) or NULL with the errors in |d|. */
static tiny_cfg_t *run_tiny(const module_t *m, const char *yaml, cfg_tree_t **tree, slc_diag_t *d)
{
    diag_init(d, NULL);
    *tree = cfg_tree_load_string("tiny.yaml", yaml, strlen(yaml), d);
    assert_int_equal(d->nerrors, 0);
    d->tree = *tree;
    d->module_abi = m->abi;
    void *cfg = NULL;
    slc_status_t st = m->desc->config_new(&host_table, cfg_tree_root(*tree), &cfg, d);
    if (st != SLC_OK)
        return NULL;
    int *calls = dlsym(m->handle, "tiny_hook_calls");
    assert_non_null(calls);
    int before = *calls;
    assert_non_null(m->desc->on_request_headers);
    assert_int_equal(m->desc->on_request_headers(cfg, NULL), SLC_CONTINUE);
    assert_int_equal(*calls, before + 1);
    return cfg;
}

/* Forward compatibility: a filter built against each older minor's shipped
 * headers loads into this host, binds its config through the real binder
 * (its field table has that minor's layout) and runs its hooks. */
static void test_older_minors_load_and_run(void **state)
{
    (void)state;
    NEED_CC();
    for (unsigned minor = 0; minor < SLC_ABI_MINOR && minor <= 4; minor++) {
        char name[32], path[PATH_MAX], err[512] = "";
        snprintf(name, sizeof(name), "abi_1_%u.so", minor);
        fixture_path(path, sizeof(path), name);
        module_t *m = module_load(path, &host_table, err, sizeof(err));
        if (!m)
            fail_msg("module_load(%s): %s", name, err);
        assert_int_equal(m->desc->abi_version, (1u << 16) | minor);
        /* Built before the constant existed (1.0-1.2): judged by its
         * descriptor. 1.3 exports it, with its own minor. */
        const uint32_t *sym = dlsym(m->handle, SLC_FILTER_ABI_SYMBOL_NAME);
        if (minor < 3)
            assert_null(sym);
        else
            assert_int_equal(*sym, (1u << 16) | minor);
        assert_int_equal(m->abi, m->desc->abi_version);
        assert_ptr_equal(config_mark(m), (void *)1);

        cfg_tree_t *tree;
        slc_diag_t d;
        tiny_cfg_t *cfg = run_tiny(m, "greeting: hello\nloud: true\nmode: fast\n", &tree, &d);
        if (!cfg) {
            diag_print(&d, stderr);
            fail_msg("%s: config_new failed", name);
        }
        assert_int_equal(cfg->mark, 1);
        assert_string_equal(cfg->greeting, "hello");
        assert_int_equal(cfg->count, 3); /* default */
        assert_true(cfg->loud);
        assert_int_equal(cfg->wait_ms, 1500);
        assert_int_equal(cfg->mode, 0);
        diag_cleanup(&d);
        cfg_tree_free(tree);

        /* Errors found through the old table name the old table's keys. */
        assert_null(run_tiny(m, "greeting: x\ncont: 4\n", &tree, &d));
        assert_int_equal(d.nerrors, 1);
        if (!strstr(d.msgs[0].text, "unknown key 'cont' (did you mean 'count'?)"))
            fail_msg("%s: %s", name, d.msgs[0].text);
        diag_cleanup(&d);
        cfg_tree_free(tree);
        module_unref(m);
    }
}

/* SLC_FILTER_NODELETE (1.4): the module stays mapped after its last
 * reference is dropped (a library like BoringSSL must never be unmapped),
 * while a module without it is unmapped as before (see
 * test_same_path_twice_is_shared_and_unref_unloads). */
static void test_nodelete_module_stays_mapped(void **state)
{
    (void)state;
    NEED_CC();
    char path[PATH_MAX], err[512] = "", copy[PATH_MAX];
    fixture_path(path, sizeof(path), "nodelete.so");
    module_t *m = module_load(path, &host_table, err, sizeof(err));
    if (!m)
        fail_msg("module_load: %s", err);
    copy_name(m, copy, sizeof(copy));
    const slc_filter_desc_t *desc = m->desc;
    module_unref(m);
    assert_true(maps_count(copy) > 0);
    /* Still callable: the code was never unmapped. */
    assert_string_equal(desc->name, "tiny");
}

/* A module built with these headers exports the ABI constant, and the
 * loader records it as the module's layout version. */
static void test_current_module_exports_abi_constant(void **state)
{
    (void)state;
    NEED_CC();
    char path[PATH_MAX], err[512] = "";
    fixture_path(path, sizeof(path), "good.so");
    module_t *m = module_load(path, &host_table, err, sizeof(err));
    if (!m)
        fail_msg("module_load: %s", err);
    const uint32_t *v = dlsym(m->handle, SLC_FILTER_ABI_SYMBOL_NAME);
    assert_non_null(v);
    assert_int_equal(*v, SLC_ABI_VERSION);
    assert_int_equal(m->abi, SLC_ABI_VERSION);
    cfg_tree_t *tree;
    slc_diag_t d;
    tiny_cfg_t *cfg = run_tiny(m, "greeting: hi\ncount: 10\n", &tree, &d);
    assert_non_null(cfg);
    assert_int_equal(cfg->count, 10);
    assert_int_equal(cfg->mode, 1);
    diag_cleanup(&d);
    cfg_tree_free(tree);
    module_unref(m);
}

static void test_load_good_module(void **state)
{
    (void)state;
    NEED_CC();
    char path[PATH_MAX], err[512] = "";
    fixture_path(path, sizeof(path), "good.so");
    module_t *m = module_load(path, NULL, err, sizeof(err));
    if (!m)
        fail_msg("module_load: %s", err);
    assert_string_equal(m->desc->name, "tiny");
    assert_string_equal(m->desc->version, "1.1.0");
    assert_int_equal(m->desc->abi_version, SLC_ABI_VERSION);
    assert_int_equal(m->refs, 1);
    assert_string_equal(m->path, path);
    assert_non_null(m->handle);
    assert_ptr_equal(config_mark(m), (void *)1);
    module_unref(m);
}

static void test_private_copy_is_unlinked(void **state)
{
    (void)state;
    NEED_CC();
    char path[PATH_MAX], err[512] = "", copy[PATH_MAX];
    fixture_path(path, sizeof(path), "good.so");
    module_t *m = module_load(path, NULL, err, sizeof(err));
    assert_non_null(m);
    copy_name(m, copy, sizeof(copy));
    /* dlopen saw a private copy, not the operator's file... */
    assert_string_not_equal(copy, path);
    assert_non_null(strstr(copy, "/sluice-modules."));
    /* ...that is already gone from the directory but still mapped. */
    struct stat st;
    assert_int_equal(stat(copy, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_true(maps_count(copy) > 0);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", copy);
    *strrchr(dir, '/') = '\0';
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    int entries = 0;
    for (struct dirent *e; (e = readdir(dp));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            entries++;
    closedir(dp);
    assert_int_equal(entries, 0);
    module_unref(m);
}

static void test_same_path_twice_is_shared_and_unref_unloads(void **state)
{
    (void)state;
    NEED_CC();
    char path[PATH_MAX], err[512] = "", copy[PATH_MAX];
    fixture_path(path, sizeof(path), "good.so");
    module_t *a = module_load(path, NULL, err, sizeof(err));
    assert_non_null(a);
    module_t *b = module_load(path, NULL, err, sizeof(err));
    assert_ptr_equal(b, a);
    assert_int_equal(a->refs, 2);
    module_ref(a);
    assert_int_equal(a->refs, 3);
    copy_name(a, copy, sizeof(copy));

    module_unref(a);
    module_unref(a);
    assert_int_equal(a->refs, 1);
    assert_true(maps_count(copy) > 0); /* still loaded */
    assert_ptr_equal(config_mark(a), (void *)1);

    module_unref(a); /* last reference: dlclose'd */
    assert_int_equal(maps_count(copy), 0);

    /* Loading again after that maps a fresh copy with one reference. */
    module_t *c = module_load(path, NULL, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(c->refs, 1);
    char copy2[PATH_MAX];
    copy_name(c, copy2, sizeof(copy2));
    assert_string_not_equal(copy2, copy);
    module_unref(c);
    module_unref(NULL); /* harmless */
}

static void test_rewritten_file_loads_new_module(void **state)
{
    (void)state;
    NEED_CC();
    char path[PATH_MAX], err[512] = "", copy1[PATH_MAX], copy2[PATH_MAX];
    copy_to("good.so", "live.so", false);
    fixture_path(path, sizeof(path), "live.so");
    module_t *old = module_load(path, NULL, err, sizeof(err));
    assert_non_null(old);
    copy_name(old, copy1, sizeof(copy1));

    /* Replace the file (new inode, size and mtime), as an operator
     * installing a new build does. */
    copy_to("v2.so", "live.so", false);
    module_t *neu = module_load(path, NULL, err, sizeof(err));
    if (!neu)
        fail_msg("module_load: %s", err);
    assert_ptr_not_equal(neu, old);
    assert_ptr_not_equal(neu->handle, old->handle);
    assert_int_equal(old->refs, 1);
    assert_int_equal(neu->refs, 1);
    assert_string_equal(neu->desc->version, "1.2.0");
    copy_name(neu, copy2, sizeof(copy2));
    assert_string_not_equal(copy1, copy2);

    /* The old code is still mapped and callable, and distinct. */
    assert_ptr_equal(config_mark(old), (void *)1);
    assert_ptr_equal(config_mark(neu), (void *)2);
    assert_string_equal(old->desc->version, "1.1.0");

    /* The path now resolves to the new module. */
    module_t *again = module_load(path, NULL, err, sizeof(err));
    assert_ptr_equal(again, neu);
    assert_int_equal(neu->refs, 2);
    module_unref(again);

    /* Releasing the old one unmaps only the old copy. */
    module_unref(old);
    assert_int_equal(maps_count(copy1), 0);
    assert_true(maps_count(copy2) > 0);
    assert_ptr_equal(config_mark(neu), (void *)2);
    module_unref(neu);
    assert_int_equal(maps_count(copy2), 0);
}

static void test_rewritten_in_place_loads_new_module(void **state)
{
    (void)state;
    NEED_CC();
    char path[PATH_MAX], err[512] = "";
    copy_to("v2.so", "inplace.so", false);
    fixture_path(path, sizeof(path), "inplace.so");
    struct stat st1, st2;
    assert_int_equal(stat(path, &st1), 0);
    module_t *old = module_load(path, NULL, err, sizeof(err));
    assert_non_null(old);

    /* Same inode, new contents (cp over it): the private copy keeps the
     * old code intact, and the new contents load as a new module. */
    copy_to("v3.so", "inplace.so", true);
    assert_int_equal(stat(path, &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);
    module_t *neu = module_load(path, NULL, err, sizeof(err));
    if (!neu)
        fail_msg("module_load: %s", err);
    assert_ptr_not_equal(neu, old);
    assert_ptr_equal(config_mark(old), (void *)2);
    assert_ptr_equal(config_mark(neu), (void *)3);
    module_unref(old);
    assert_ptr_equal(config_mark(neu), (void *)3);
    module_unref(neu);
}

/* ---- refusals ---------------------------------------------------------- */

static void test_wrong_abi_major_refused(void **state)
{
    (void)state;
    NEED_CC();
    char err[512], want[128];
    load_fail("wrong_major.so", err, sizeof(err));
    snprintf(want, sizeof(want), "(tiny) was built for ABI 2.0; this sluice provides %u.%u",
             SLC_ABI_MAJOR, SLC_ABI_MINOR);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void test_newer_minor_refused(void **state)
{
    (void)state;
    NEED_CC();
    char err[512], want[128];
    load_fail("newer_minor.so", err, sizeof(err));
    snprintf(want, sizeof(want), "(tiny) needs SDK ABI %u.%u; this sluice provides %u.%u",
             SLC_ABI_MAJOR, SLC_ABI_MINOR + 1, SLC_ABI_MAJOR, SLC_ABI_MINOR);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

/* 1.3+: the exported constant alone decides; the entry point (which aborts
 * in this fixture) is never called, so no module code runs. */
static void test_newer_constant_refused_before_entry(void **state)
{
    (void)state;
    NEED_CC();
    char err[512], path[PATH_MAX], want[PATH_MAX + 128];
    load_fail("sym_newer.so", err, sizeof(err));
    fixture_path(path, sizeof(path), "sym_newer.so");
    snprintf(want, sizeof(want),
             "filter module '%s' needs SDK ABI %u.%u; this sluice provides %u.%u", path,
             SLC_ABI_MAJOR, SLC_ABI_MINOR + 1, SLC_ABI_MAJOR, SLC_ABI_MINOR);
    assert_string_equal(err, want);

    load_fail("sym_major.so", err, sizeof(err));
    fixture_path(path, sizeof(path), "sym_major.so");
    snprintf(want, sizeof(want),
             "filter module '%s' was built for ABI 2.0; this sluice provides %u.%u and loads only "
             "modules of major %u",
             path, SLC_ABI_MAJOR, SLC_ABI_MINOR, SLC_ABI_MAJOR);
    assert_string_equal(err, want);
}

static void test_no_entry_symbol(void **state)
{
    (void)state;
    NEED_CC();
    char err[512];
    load_fail("no_entry.so", err, sizeof(err));
    assert_non_null(strstr(err, "slc_filter_entry"));
    assert_non_null(strstr(err, "no entry point"));
}

static void test_entry_returns_null(void **state)
{
    (void)state;
    NEED_CC();
    char err[512];
    load_fail("null_desc.so", err, sizeof(err));
    assert_non_null(strstr(err, "returned no descriptor"));
}

static void test_descriptor_too_small_or_unnamed(void **state)
{
    (void)state;
    NEED_CC();
    char err[512];
    load_fail("small_desc.so", err, sizeof(err));
    assert_non_null(strstr(err, "descriptor too small (8 bytes)"));
    load_fail("unnamed.so", err, sizeof(err));
    assert_non_null(strstr(err, "unnamed"));
}

static void test_missing_file(void **state)
{
    (void)state;
    char path[PATH_MAX], err[512], want[PATH_MAX + 128];
    fixture_path(path, sizeof(path), "absent.so");
    assert_null(module_load(path, NULL, err, sizeof(err)));
    snprintf(want, sizeof(want), "cannot load filter module '%s': %s", path, strerror(ENOENT));
    assert_string_equal(err, want);
}

static void test_not_a_shared_object(void **state)
{
    (void)state;
    NEED_CC();
    char path[PATH_MAX], err[512];
    fixture_path(path, sizeof(path), "garbage.so");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    load_fail("garbage.so", err, sizeof(err));
    /* dlerror names the private copy; the message must not. */
    if (strstr(err, "sluice-modules."))
        fail_msg("error names the private copy: %s", err);
}

static void test_small_error_buffer(void **state)
{
    (void)state;
    char path[PATH_MAX], err[16];
    fixture_path(path, sizeof(path), "absent-with-a-long-name.so");
    memset(err, 'x', sizeof(err));
    assert_null(module_load(path, NULL, err, sizeof(err)));
    assert_int_equal(strnlen(err, sizeof(err)), sizeof(err) - 1); /* truncated, terminated */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_good_module),
        cmocka_unit_test(test_private_copy_is_unlinked),
        cmocka_unit_test(test_same_path_twice_is_shared_and_unref_unloads),
        cmocka_unit_test(test_rewritten_file_loads_new_module),
        cmocka_unit_test(test_rewritten_in_place_loads_new_module),
        cmocka_unit_test(test_wrong_abi_major_refused),
        cmocka_unit_test(test_older_minors_load_and_run),
        cmocka_unit_test(test_current_module_exports_abi_constant),
        cmocka_unit_test(test_nodelete_module_stays_mapped),
        cmocka_unit_test(test_newer_minor_refused),
        cmocka_unit_test(test_newer_constant_refused_before_entry),
        cmocka_unit_test(test_no_entry_symbol),
        cmocka_unit_test(test_entry_returns_null),
        cmocka_unit_test(test_descriptor_too_small_or_unnamed),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_not_a_shared_object),
        cmocka_unit_test(test_small_error_buffer),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
