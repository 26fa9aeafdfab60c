/* Unit tests for core/cfgtree.c: tree shape, marks and paths, load errors,
 * diagnostics, the field binder, durations, suggestions and the dump. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfgtree.h"

/* ---- helpers ----------------------------------------------------------- */

struct loaded {
    slc_diag_t d;
    cfg_tree_t *t;
    const slc_cfg_node_t *root;
};

static void load(struct loaded *l, const char *yaml)
{
    diag_init(&l->d, NULL);
    l->t = cfg_tree_load_string("t.yaml", yaml, strlen(yaml), &l->d);
    assert_non_null(l->t);
    l->d.tree = l->t;
    l->root = cfg_tree_root(l->t);
}

static void unload(struct loaded *l)
{
    cfg_tree_free(l->t);
    diag_cleanup(&l->d);
}

/* has_msg: some recorded message contains |needle|. */
static bool has_msg(const slc_diag_t *d, const char *needle)
{
    for (size_t i = 0; i < d->nmsgs; i++)
        if (strstr(d->msgs[i].text, needle) != NULL)
            return true;
    return false;
}

static void dump_msgs(const slc_diag_t *d)
{
    for (size_t i = 0; i < d->nmsgs; i++)
        print_message("  msg[%zu]: %s\n", i, d->msgs[i].text);
}

#define assert_msg(d, needle)                                                                      \
    do {                                                                                           \
        if (!has_msg((d), (needle))) {                                                             \
            dump_msgs(d);                                                                          \
            fail_msg("no message contains \"%s\"", (needle));                                      \
        }                                                                                          \
    } while (0)

static const slc_cfg_node_t *at_path(const slc_cfg_node_t *n, const char *a, const char *b,
                                     const char *c)
{
    n = cfg_get(n, a);
    if (b)
        n = cfg_get(n, b);
    if (c)
        n = cfg_get(n, c);
    return n;
}

/* ---- tree shape, marks, paths ----------------------------------------- */

static const char nested_yaml[] = "workers: 2\n"                        /* 1 */
                                  "filters:\n"                          /* 2 */
                                  "  - name: log\n"                     /* 3 */
                                  "    config: { path: /dev/stdout }\n" /* 4 */
                                  "  - name: routes\n"                  /* 5 */
                                  "    config:\n"                       /* 6 */
                                  "      routes:\n"                     /* 7 */
                                  "        - match: { prefix: /api }\n" /* 8 */
                                  "          timeout: 5s\n"             /* 9 */
                                  "listeners: [a, b]\n";                /* 10 */

static void test_marks_and_paths(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, nested_yaml);
    assert_int_equal(l.d.nerrors, 0);
    const slc_cfg_node_t *r = l.root;
    assert_non_null(r);
    assert_int_equal(cfg_type(r), SLC_CFG_MAP);
    assert_string_equal(r->path, "");
    assert_int_equal(r->line, 1);
    assert_int_equal(r->col, 1);
    assert_int_equal(cfg_len(r), 3);
    assert_string_equal(cfg_key_at(r, 0).ptr, "workers");
    assert_string_equal(cfg_key_at(r, 2).ptr, "listeners");

    const slc_cfg_node_t *w = cfg_get(r, "workers");
    assert_int_equal(cfg_type(w), SLC_CFG_SCALAR);
    assert_string_equal(w->path, "workers");
    assert_int_equal(w->line, 1);
    assert_int_equal(w->col, 10);

    const slc_cfg_node_t *f = cfg_get(r, "filters");
    assert_int_equal(cfg_type(f), SLC_CFG_SEQ);
    assert_string_equal(f->path, "filters");
    assert_int_equal(cfg_len(f), 2);

    const slc_cfg_node_t *f0 = cfg_at(f, 0);
    assert_string_equal(f0->path, "filters[0]");
    assert_int_equal(f0->line, 3);
    assert_int_equal(f0->col, 5);
    const slc_cfg_node_t *p = at_path(f0, "config", "path", NULL);
    assert_non_null(p);
    assert_string_equal(p->path, "filters[0].config.path");
    assert_string_equal(p->text, "/dev/stdout");
    assert_int_equal(p->line, 4);
    assert_int_equal(p->col, 21);

    const slc_cfg_node_t *routes = at_path(cfg_at(f, 1), "config", "routes", NULL);
    assert_string_equal(routes->path, "filters[1].config.routes");
    const slc_cfg_node_t *m = cfg_get(cfg_at(routes, 0), "match");
    assert_string_equal(m->path, "filters[1].config.routes[0].match");
    assert_int_equal(m->line, 8);
    assert_int_equal(m->col, 18);
    const slc_cfg_node_t *to = cfg_get(cfg_at(routes, 0), "timeout");
    assert_string_equal(to->path, "filters[1].config.routes[0].timeout");
    assert_int_equal(to->line, 9);
    assert_int_equal(to->col, 20);

    const slc_cfg_node_t *ls = cfg_get(r, "listeners");
    assert_string_equal(cfg_at(ls, 1)->path, "listeners[1]");
    assert_int_equal(cfg_at(ls, 1)->line, 10);
    assert_int_equal(cfg_at(ls, 1)->col, 16);
    assert_ptr_equal(cfg_at(ls, 1)->tree, l.t);
    assert_string_equal(cfg_tree_file(l.t), "t.yaml");
    unload(&l);
}

static void test_root_sequence_paths(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "- a\n- [b, c]\n");
    assert_int_equal(cfg_type(l.root), SLC_CFG_SEQ);
    assert_string_equal(cfg_at(l.root, 0)->path, "[0]");
    assert_string_equal(cfg_at(cfg_at(l.root, 1), 1)->path, "[1][1]");
    unload(&l);
}

static void test_scalars_and_nulls(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "plain: hello world\n"
             "sq: 'it''s'\n"
             "dq: \"a\\tb\"\n"
             "empty_quoted: ''\n"
             "tilde: ~\n"
             "word: null\n"
             "nothing:\n"
             "lit: |\n  one\n  two\n"
             "qnull: 'null'\n");
    assert_int_equal(l.d.nerrors, 0);
    const slc_cfg_node_t *r = l.root;

    const slc_cfg_node_t *n = cfg_get(r, "plain");
    assert_int_equal(cfg_type(n), SLC_CFG_SCALAR);
    assert_false(n->quoted);
    assert_string_equal(cfg_scalar(n).ptr, "hello world");
    assert_int_equal(cfg_scalar(n).len, 11);

    n = cfg_get(r, "sq");
    assert_true(n->quoted);
    assert_string_equal(n->text, "it's");
    n = cfg_get(r, "dq");
    assert_true(n->quoted);
    assert_string_equal(n->text, "a\tb");
    n = cfg_get(r, "empty_quoted");
    assert_int_equal(cfg_type(n), SLC_CFG_SCALAR);
    assert_int_equal(n->text_len, 0);

    assert_int_equal(cfg_type(cfg_get(r, "tilde")), SLC_CFG_NULL);
    assert_int_equal(cfg_type(cfg_get(r, "word")), SLC_CFG_NULL);
    assert_non_null(cfg_get(r, "nothing"));
    assert_int_equal(cfg_type(cfg_get(r, "nothing")), SLC_CFG_NULL);
    assert_int_equal(cfg_scalar(cfg_get(r, "nothing")).len, 0);

    n = cfg_get(r, "lit");
    assert_int_equal(cfg_type(n), SLC_CFG_SCALAR);
    assert_false(n->quoted);
    assert_string_equal(n->text, "one\ntwo\n");

    n = cfg_get(r, "qnull");
    assert_int_equal(cfg_type(n), SLC_CFG_SCALAR);
    assert_string_equal(n->text, "null");
    unload(&l);
}

static void test_accessors_null_safe(void **state)
{
    (void)state;
    assert_int_equal(cfg_type(NULL), SLC_CFG_NULL);
    assert_int_equal(cfg_len(NULL), 0);
    assert_null(cfg_at(NULL, 0));
    assert_null(cfg_get(NULL, "x"));
    assert_int_equal(cfg_scalar(NULL).len, 0);
    assert_non_null(cfg_scalar(NULL).ptr);
    assert_int_equal(cfg_key_at(NULL, 0).len, 0);
    assert_null(cfg_tree_root(NULL));

    struct loaded l;
    load(&l, "m: {a: 1}\ns: [x]\nv: y\n");
    const slc_cfg_node_t *m = cfg_get(l.root, "m"), *s = cfg_get(l.root, "s");
    const slc_cfg_node_t *v = cfg_get(l.root, "v");
    assert_null(cfg_at(m, 1));
    assert_null(cfg_at(s, 1));
    assert_null(cfg_get(s, "a"));
    assert_null(cfg_get(v, "a"));
    assert_null(cfg_get(m, "b"));
    assert_int_equal(cfg_len(v), 0);
    assert_int_equal(cfg_scalar(m).len, 0);
    assert_int_equal(cfg_key_at(s, 0).len, 0);
    assert_int_equal(cfg_key_at(m, 5).len, 0);
    assert_string_equal(cfg_key_at(m, 0).ptr, "a");
    assert_string_equal(cfg_scalar(cfg_at(m, 0)).ptr, "1");
    assert_string_equal(cfg_scalar(cfg_at(s, 0)).ptr, "x");
    unload(&l);
}

static void test_empty_input(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "");
    assert_int_equal(l.d.nerrors, 0);
    assert_null(l.root);
    unload(&l);
    load(&l, "# only a comment\n");
    assert_int_equal(l.d.nerrors, 0);
    assert_null(l.root);
    unload(&l);
}

/* ---- load errors ------------------------------------------------------- */

static void test_syntax_error(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "a: 1\nb: [1, 2\nc: 3\n");
    assert_int_equal(l.d.nerrors, 1);
    assert_null(l.root);
    /* The flow sequence started at 2:4 never closes; libyaml notices at
     * the ':' of line 3. */
    assert_msg(&l.d, "t.yaml:3:2: did not find expected ',' or ']' while parsing a flow sequence");
    unload(&l);

    load(&l, "a:\n  b: 1\n c: 2\n");
    assert_int_equal(l.d.nerrors, 1);
    assert_null(l.root);
    assert_msg(&l.d, "t.yaml:3:2: did not find expected key while parsing a block mapping");
    unload(&l);

    load(&l, "a: `x`\n");
    assert_int_equal(l.d.nerrors, 1);
    assert_msg(&l.d, "t.yaml:1:4: found character that cannot start any token");
    unload(&l);
}

static void test_reader_error(void **state)
{
    (void)state;
    slc_diag_t d;
    diag_init(&d, NULL);
    static const char bad[] = "a: 1\nb: x\x01y\n";
    cfg_tree_t *t = cfg_tree_load_string("r.yaml", bad, sizeof(bad) - 1, &d);
    assert_int_equal(d.nerrors, 1);
    assert_null(cfg_tree_root(t));
    assert_msg(&d, "r.yaml:2:5: control characters are not allowed (byte 0x01)");
    cfg_tree_free(t);
    diag_cleanup(&d);
}

static void test_anchors_and_aliases_rejected(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "base: &b {x: 1}\nother: *b\n");
    assert_int_equal(l.d.nerrors, 2);
    assert_null(l.root);
    assert_msg(&l.d, "t.yaml:1:7: base: anchors are not supported ('&b')");
    assert_msg(&l.d, "t.yaml:2:8: other: aliases are not supported ('*b')");
    unload(&l);

    load(&l, "- &s hello\n");
    assert_int_equal(l.d.nerrors, 1);
    assert_msg(&l.d, "t.yaml:1:3: [0]: anchors are not supported ('&s')");
    unload(&l);
}

static void test_multiple_documents_rejected(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "a: 1\n---\nb: 2\n");
    assert_int_equal(l.d.nerrors, 1);
    assert_null(l.root);
    assert_msg(&l.d, "t.yaml:2:1: multiple documents are not supported");
    unload(&l);

    /* One explicit document is fine. */
    load(&l, "---\na: 1\n...\n");
    assert_int_equal(l.d.nerrors, 0);
    assert_non_null(l.root);
    unload(&l);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "a: 1\nm:\n  x: 1\n  y: 2\n  x: 3\nb: 2\nb: 3\n");
    assert_int_equal(l.d.nerrors, 2);
    assert_null(l.root);
    assert_msg(&l.d, "t.yaml:5:3: m.x: duplicate key 'x' (first at line 3)");
    assert_msg(&l.d, "t.yaml:7:1: b: duplicate key 'b' (first at line 6)");
    unload(&l);
}

static void test_non_scalar_key(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "m:\n  ? [a, b]\n  : 1\n  ? {c: d}\n  : 2\n");
    assert_int_equal(l.d.nerrors, 2);
    assert_null(l.root);
    assert_msg(&l.d, "t.yaml:2:5: m: keys must be scalars, got a sequence");
    assert_msg(&l.d, "t.yaml:4:5: m: keys must be scalars, got a map");
    unload(&l);
}

static void test_nesting_limit(void **state)
{
    (void)state;
    char buf[1200];
    size_t o = 0;
    for (int i = 0; i < 500; i++)
        buf[o++] = '[';
    for (int i = 0; i < 500; i++)
        buf[o++] = ']';
    buf[o] = '\0';
    struct loaded l;
    load(&l, buf);
    assert_int_equal(l.d.nerrors, 1);
    assert_null(l.root);
    assert_msg(&l.d, "nesting deeper than");
    unload(&l);
}

/* ---- diagnostics ------------------------------------------------------- */

static void test_diag_format_and_print(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "filters:\n  - name: cb\n    interval: soon\n");
    const slc_cfg_node_t *iv = cfg_get(cfg_at(cfg_get(l.root, "filters"), 0), "interval");
    diag_errorf(&l.d, iv, "expected a duration like '10s', got '%s'", iv->text);
    diag_warnf(&l.d, iv, "%s is deprecated", "interval");
    diag_errorf(&l.d, NULL, "no listeners");
    diag_errorf(&l.d, l.root, "at the root");
    assert_int_equal(l.d.nmsgs, 4);
    assert_int_equal(l.d.nerrors, 3);
    assert_string_equal(l.d.msgs[0].text, "t.yaml:3:15: filters[0].interval: expected a duration "
                                          "like '10s', got 'soon'");
    assert_true(l.d.msgs[0].is_error);
    assert_string_equal(l.d.msgs[1].text,
                        "t.yaml:3:15: filters[0].interval: warning: interval is deprecated");
    assert_false(l.d.msgs[1].is_error);
    assert_string_equal(l.d.msgs[2].text, "t.yaml: no listeners");
    assert_string_equal(l.d.msgs[3].text, "t.yaml:1:1: at the root");

    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    assert_non_null(m);
    diag_print(&l.d, m);
    fclose(m);
    const char *want = "t.yaml:3:15: filters[0].interval: expected a duration like '10s', got "
                       "'soon'\n"
                       "t.yaml:3:15: filters[0].interval: warning: interval is deprecated\n"
                       "t.yaml: no listeners\n"
                       "t.yaml:1:1: at the root\n";
    assert_string_equal(out, want);
    free(out);
    unload(&l);
    assert_int_equal(l.d.nmsgs, 0);
    assert_null(l.d.msgs);
}

static void test_diag_init_zeroes(void **state)
{
    (void)state;
    slc_diag_t d;
    memset(&d, 0xa5, sizeof(d));
    diag_init(&d, NULL);
    assert_null(d.tree);
    assert_null(d.msgs);
    assert_int_equal(d.nmsgs, 0);
    assert_int_equal(d.nerrors, 0);
    assert_null(d.build);
    assert_null(d.instance);
    assert_null(d.cluster_lookup);
    assert_null(d.instance_alloc);
    assert_null(d.metric_new);
    diag_errorf(&d, NULL, "bare %d", 1);
    assert_string_equal(d.msgs[0].text, "bare 1");
    diag_cleanup(&d);
}

/* ---- files ------------------------------------------------------------- */

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_cfgtree_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char body[] = "a: 1\nb:\n  c: [x, y]\n";
    assert_int_equal(write(fd, body, sizeof(body) - 1), (ssize_t)(sizeof(body) - 1));
    close(fd);

    slc_diag_t d;
    diag_init(&d, NULL);
    cfg_tree_t *t = cfg_tree_load(path, &d);
    unlink(path);
    assert_int_equal(d.nerrors, 0);
    assert_string_equal(cfg_tree_file(t), path);
    const slc_cfg_node_t *c = at_path(cfg_tree_root(t), "b", "c", NULL);
    assert_int_equal(cfg_len(c), 2);
    assert_int_equal(c->line, 3);
    assert_int_equal(c->col, 6);
    diag_errorf(&d, cfg_at(c, 1), "bad");
    char want[128];
    snprintf(want, sizeof(want), "%s:3:10: b.c[1]: bad", path);
    assert_string_equal(d.msgs[0].text, want);
    cfg_tree_free(t);
    diag_cleanup(&d);
}

static void test_load_missing_file(void **state)
{
    (void)state;
    slc_diag_t d;
    diag_init(&d, NULL);
    cfg_tree_t *t = cfg_tree_load("/nonexistent/sluice.yaml", &d);
    assert_non_null(t);
    assert_null(cfg_tree_root(t));
    assert_int_equal(d.nerrors, 1);
    assert_string_equal(d.msgs[0].text,
                        "cannot open '/nonexistent/sluice.yaml': No such file or directory");
    cfg_tree_free(t);
    diag_cleanup(&d);
}

static void test_load_directory(void **state)
{
    (void)state;
    slc_diag_t d;
    diag_init(&d, NULL);
    cfg_tree_t *t = cfg_tree_load("/tmp", &d);
    assert_null(cfg_tree_root(t));
    assert_int_equal(d.nerrors, 1);
    assert_msg(&d, "cannot read '/tmp': Is a directory");
    cfg_tree_free(t);
    diag_cleanup(&d);
}

/* ---- arena ------------------------------------------------------------- */

static void test_arena(void **state)
{
    (void)state;
    slc_diag_t d;
    diag_init(&d, NULL);
    cfg_tree_t *t = cfg_tree_load_string("a.yaml", "", 0, &d);
    unsigned char *small[2000];
    for (size_t i = 0; i < 2000; i++) {
        small[i] = cfg_tree_alloc(t, 24);
        assert_non_null(small[i]);
        assert_int_equal((uintptr_t)small[i] % _Alignof(max_align_t), 0);
        for (size_t j = 0; j < 24; j++)
            assert_int_equal(small[i][j], 0);
        memset(small[i], (int)(i & 0xff), 24);
    }
    unsigned char *big = cfg_tree_alloc(t, 1 << 20);
    for (size_t j = 0; j < (1u << 20); j += 4096)
        assert_int_equal(big[j], 0);
    memset(big, 0xff, 1 << 20);
    unsigned char *after = cfg_tree_alloc(t, 8);
    assert_int_equal(after[0], 0);
    for (size_t i = 0; i < 2000; i++)
        assert_int_equal(small[i][23], (unsigned char)(i & 0xff));
    char *s = cfg_tree_strdup(t, "hello");
    assert_string_equal(s, "hello");
    assert_non_null(cfg_tree_alloc(t, 0));
    cfg_tree_free(t);
    cfg_tree_free(NULL);
    diag_cleanup(&d);
}

/* ---- durations and suggestions ---------------------------------------- */

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t ms;
    } ok[] = {
        {"0s", 0},
        {"1h", 3600000},
        {"2m", 120000},
        {"5s", 5000},
        {"100ms", 100},
        {"1.5s", 1500},
        {"1m30s", 90000},
        {"250us", 1},
        {"1500us", 2},
        {"1499us", 1},
        {"1ns", 1},
        {"0.5ms", 1},
        {"2.5ms", 3},
        {"1h1m1s1ms", 3661001},
        {".5s", 500},
        {"1.s", 1000},
        {"0.001s", 1},
        {"1.25h", 4500000},
        {"3\xc2\xb5s", 1},
        {"0ms", 0},
        {"1000000h", 3600000000000ull},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t ms = 12345;
        slc_status_t st = cfg_duration_ms((slc_str_t){ok[i].in, strlen(ok[i].in)}, &ms);
        if (st != SLC_OK || ms != ok[i].ms)
            fail_msg("'%s': status %d, %llu ms, want %llu", ok[i].in, st, (unsigned long long)ms,
                     (unsigned long long)ok[i].ms);
    }
    static const char *const bad[] = {
        "",
        "5",
        "0",
        "soon",
        "-5s",
        "+5s",
        "5 s",
        " 5s",
        "5s ",
        "5x",
        "s",
        ".s",
        "5.5",
        "1h-1m",
        "5S",
        "1d",
        "5sec",
        "..5s",
        "5s5",
        "99999999999999999999s",
        "18446744073709551615h",
        "6000000h", /* > 2^64 ns */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 777;
        if (cfg_duration_ms((slc_str_t){bad[i], strlen(bad[i])}, &ms) != SLC_EINVAL)
            fail_msg("'%s' accepted as %llu ms", bad[i], (unsigned long long)ms);
        assert_int_equal(ms, 777);
    }
    uint64_t ms;
    assert_int_equal(cfg_duration_ms(SLC_STR_NULL, &ms), SLC_EINVAL);
    /* Not NUL-terminated: only |len| bytes count. */
    assert_int_equal(cfg_duration_ms((slc_str_t){"5s5", 2}, &ms), SLC_OK);
    assert_int_equal(ms, 5000);
}

static void test_suggest(void **state)
{
    (void)state;
    static const char *const keys[] = {"timeout", "connect_timeout", "max_requests", "path"};
    assert_string_equal(cfg_suggest("tmeout", keys, 4), "timeout");
    assert_string_equal(cfg_suggest("TIMEOUT", keys, 4), "timeout");
    assert_string_equal(cfg_suggest("timeuot", keys, 4), "timeout");
    assert_string_equal(cfg_suggest("connectTimeout", keys, 4), "connect_timeout");
    assert_string_equal(cfg_suggest("connect-timeout", keys, 4), "connect_timeout");
    assert_string_equal(cfg_suggest("maxRequests", keys, 4), "max_requests");
    assert_string_equal(cfg_suggest("pth", keys, 4), "path");
    assert_null(cfg_suggest("banana", keys, 4));
    assert_null(cfg_suggest("x", keys, 4));
    assert_null(cfg_suggest("tmeoutxy", keys, 4)); /* distance 3 */
    /* A suggestion must be closer than the word is long. */
    static const char *const ab[] = {"ab"};
    assert_null(cfg_suggest("xy", ab, 1));
    assert_string_equal(cfg_suggest("xb", ab, 1), "ab");
    assert_null(cfg_suggest("timeout", keys, 0));
    /* Ties go to the first candidate. */
    static const char *const tie[] = {"abcd", "abce"};
    assert_string_equal(cfg_suggest("abcx", tie, 2), "abcd");
    /* A closer later candidate wins over an earlier one. */
    static const char *const closer[] = {"retries_max", "retries"};
    assert_string_equal(cfg_suggest("retries_", closer, 2), "retries");
}

/* ---- binder ------------------------------------------------------------ */

struct bcfg {
    char *name;
    uint32_t count;
    bool on;
    uint64_t timeout_ms;
    const slc_cfg_node_t *extra;
    int policy;
    uint32_t buf;
    char *host;
};

static const char *const policies[] = {"round_robin", "least_request", "random", NULL};

static const slc_cfg_field_t bfields[] = {
    SLC_FIELD_STR("name", struct bcfg, name, .dflt = "default-name"),
    SLC_FIELD_U32("count", struct bcfg, count, .min = 1, .max = 100, .dflt = "10"),
    SLC_FIELD_BOOL("on", struct bcfg, on, .dflt = "true"),
    SLC_FIELD_DURATION("timeout", struct bcfg, timeout_ms, .min = 1, .max = 3600000, .dflt = "15s"),
    SLC_FIELD_NODE("extra", struct bcfg, extra),
    SLC_FIELD_ENUM("policy", struct bcfg, policy, policies, .dflt = "random"),
    SLC_FIELD_U32("buffer", struct bcfg, buf, .dflt = "64Ki"),
    SLC_FIELD_STR("host", struct bcfg, host),
    SLC_FIELD_END,
};

static void test_bind_defaults(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "{}\n");
    struct bcfg c;
    memset(&c, 0, sizeof(c));
    char prefill[] = "prefilled";
    c.host = prefill;
    assert_int_equal(cfg_bind(&l.d, l.root, bfields, &c), SLC_OK);
    assert_int_equal(l.d.nerrors, 0);
    assert_string_equal(c.name, "default-name");
    assert_int_equal(c.count, 10);
    assert_true(c.on);
    assert_int_equal(c.timeout_ms, 15000);
    assert_null(c.extra);
    assert_int_equal(c.policy, 2);
    assert_int_equal(c.buf, 65536);
    assert_ptr_equal(c.host, prefill); /* no default: left as the caller set it */

    /* A NULL map binds the same defaults. */
    struct bcfg c2;
    memset(&c2, 0, sizeof(c2));
    assert_int_equal(cfg_bind(&l.d, NULL, bfields, &c2), SLC_OK);
    assert_string_equal(c2.name, "default-name");
    assert_int_equal(c2.timeout_ms, 15000);
    unload(&l);
}

static void test_bind_values(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "name: svc\ncount: 100\non: false\ntimeout: 1m30s\n"
             "extra: {a: [1]}\npolicy: least_request\nbuffer: 2Mi\nhost: \"h:1\"\n");
    struct bcfg c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_bind(&l.d, l.root, bfields, &c), SLC_OK);
    assert_int_equal(l.d.nerrors, 0);
    assert_string_equal(c.name, "svc");
    assert_ptr_equal(c.name, cfg_get(l.root, "name")->text);
    assert_int_equal(c.count, 100);
    assert_false(c.on);
    assert_int_equal(c.timeout_ms, 90000);
    assert_ptr_equal(c.extra, cfg_get(l.root, "extra"));
    assert_int_equal(cfg_type(c.extra), SLC_CFG_MAP);
    assert_int_equal(c.policy, 1);
    assert_int_equal(c.buf, 2 * 1024 * 1024);
    assert_string_equal(c.host, "h:1");
    unload(&l);
}

static void test_bind_null_value_uses_default(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "name:\ncount: ~\nextra: null\n");
    struct bcfg c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_bind(&l.d, l.root, bfields, &c), SLC_OK);
    assert_string_equal(c.name, "default-name");
    assert_int_equal(c.count, 10);
    /* NODE fields get the node whatever its type. */
    assert_non_null(c.extra);
    assert_int_equal(cfg_type(c.extra), SLC_CFG_NULL);
    unload(&l);
}

static void test_bind_u32(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool ok;
        uint32_t want;
    } cases[] = {
        {"0", true, 0},           {"4294967295", true, UINT32_MAX},
        {"4294967296", false, 0}, {"64Ki", true, 65536},
        {"1Mi", true, 1048576},   {"3Gi", true, 3221225472u},
        {"4Gi", false, 0},        {"-1", false, 0},
        {"1.5", false, 0},        {"0x10", false, 0},
        {"Ki", false, 0},         {"10k", false, 0},
        {"007", true, 7},         {"99999999999999999999999", false, 0},
    };
    static const slc_cfg_field_t f[] = {
        SLC_FIELD_U32("v", struct bcfg, count),
        SLC_FIELD_END,
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[64];
        snprintf(yaml, sizeof(yaml), "v: %s\n", cases[i].in);
        struct loaded l;
        load(&l, yaml);
        struct bcfg c = {.count = 42};
        slc_status_t st = cfg_bind(&l.d, l.root, f, &c);
        if (cases[i].ok) {
            if (st != SLC_OK || c.count != cases[i].want)
                fail_msg("'%s': status %d value %u", cases[i].in, st, c.count);
        } else {
            if (st != SLC_EINVAL)
                fail_msg("'%s' accepted as %u", cases[i].in, c.count);
            char want[128];
            snprintf(want, sizeof(want),
                     "t.yaml:1:4: v: expected an integer from 0 to 4294967295, got '%s'",
                     cases[i].in);
            assert_msg(&l.d, want);
            assert_int_equal(c.count, 42);
        }
        unload(&l);
    }
}

static void test_bind_ranges_and_types(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "count: 0\non: yes\ntimeout: 2h\npolicy: rr\nname: [a]\nbuffer: {x: 1}\n");
    struct bcfg c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_bind(&l.d, l.root, bfields, &c), SLC_EINVAL);
    /* Every problem in one pass, in source order. */
    assert_int_equal(l.d.nerrors, 6);
    assert_string_equal(l.d.msgs[0].text,
                        "t.yaml:1:8: count: expected an integer from 1 to 100, got '0'");
    assert_string_equal(l.d.msgs[1].text, "t.yaml:2:5: on: expected true or false, got 'yes'");
    assert_string_equal(l.d.msgs[2].text,
                        "t.yaml:3:10: timeout: expected a duration from 1ms to 1h, got '2h'");
    assert_string_equal(l.d.msgs[3].text,
                        "t.yaml:4:9: policy: expected one of round_robin, least_request, random, "
                        "got 'rr'");
    assert_string_equal(l.d.msgs[4].text, "t.yaml:5:7: name: expected a scalar, got a sequence");
    assert_string_equal(l.d.msgs[5].text, "t.yaml:6:9: buffer: expected a scalar, got a map");
    unload(&l);
}

static void test_bind_durations(void **state)
{
    (void)state;
    static const slc_cfg_field_t f[] = {
        SLC_FIELD_DURATION("t", struct bcfg, timeout_ms, .min = 1000),
        SLC_FIELD_END,
    };
    struct loaded l;
    load(&l, "t: soon\n");
    struct bcfg c = {.timeout_ms = 5};
    assert_int_equal(cfg_bind(&l.d, l.root, f, &c), SLC_EINVAL);
    assert_msg(&l.d, "t.yaml:1:4: t: expected a duration like '10s', got 'soon'");
    assert_int_equal(c.timeout_ms, 5);
    unload(&l);

    load(&l, "t: 500ms\n");
    assert_int_equal(cfg_bind(&l.d, l.root, f, &c), SLC_EINVAL);
    assert_msg(&l.d, "t.yaml:1:4: t: expected a duration of at least 1s, got '500ms'");
    unload(&l);

    load(&l, "t: 10\n");
    assert_int_equal(cfg_bind(&l.d, l.root, f, &c), SLC_EINVAL);
    assert_msg(&l.d, "expected a duration like '10s', got '10'");
    unload(&l);

    /* Long values are cut in messages. */
    char longv[260] = "t: ";
    memset(longv + 3, 'a', 250);
    longv[253] = '\0';
    load(&l, longv);
    assert_int_equal(cfg_bind(&l.d, l.root, f, &c), SLC_EINVAL);
    assert_msg(&l.d, "aaaa...'");
    assert_true(strlen(l.d.msgs[0].text) < 160);
    unload(&l);

    load(&l, "t: 1.5s\n");
    assert_int_equal(cfg_bind(&l.d, l.root, f, &c), SLC_OK);
    assert_int_equal(c.timeout_ms, 1500);
    unload(&l);
}

static void test_bind_enum_suggest(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "policy: round_robn\n");
    struct bcfg c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_bind(&l.d, l.root, bfields, &c), SLC_EINVAL);
    assert_msg(&l.d, "t.yaml:1:9: policy: expected one of round_robin, least_request, random, "
                     "got 'round_robn' (did you mean 'round_robin'?)");
    unload(&l);

    load(&l, "policy: ROUND_ROBIN\n");
    assert_int_equal(cfg_bind(&l.d, l.root, bfields, &c), SLC_EINVAL);
    assert_msg(&l.d, "(did you mean 'round_robin'?)");
    unload(&l);
}

static void test_bind_unknown_keys(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "filters:\n  - config:\n      tmeout: 5s\n      connectTimeout: 1s\n"
             "      zzz: 1\n      name: ok\n");
    const slc_cfg_node_t *cfg = cfg_get(cfg_at(cfg_get(l.root, "filters"), 0), "config");
    static const slc_cfg_field_t f[] = {
        SLC_FIELD_DURATION("timeout", struct bcfg, timeout_ms),
        SLC_FIELD_DURATION("connect_timeout", struct bcfg, timeout_ms),
        SLC_FIELD_STR("name", struct bcfg, name),
        SLC_FIELD_END,
    };
    struct bcfg c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_bind(&l.d, cfg, f, &c), SLC_EINVAL);
    assert_int_equal(l.d.nerrors, 3);
    assert_string_equal(l.d.msgs[0].text, "t.yaml:3:7: filters[0].config.tmeout: unknown key "
                                          "'tmeout' (did you mean 'timeout'?)");
    assert_string_equal(l.d.msgs[1].text,
                        "t.yaml:4:7: filters[0].config.connectTimeout: unknown key "
                        "'connectTimeout' (did you mean 'connect_timeout'?)");
    assert_string_equal(l.d.msgs[2].text, "t.yaml:5:7: filters[0].config.zzz: unknown key 'zzz'");
    /* Known keys still bind while unknown ones are reported. */
    assert_string_equal(c.name, "ok");
    unload(&l);
}

static void test_bind_required(void **state)
{
    (void)state;
    static const slc_cfg_field_t f[] = {
        SLC_FIELD_STR("cluster", struct bcfg, name, .required = true),
        SLC_FIELD_STR("host", struct bcfg, host, .required = true),
        SLC_FIELD_U32("count", struct bcfg, count, .max = 5),
        SLC_FIELD_END,
    };
    struct loaded l;
    load(&l, "route:\n  host:\n  count: 9\n  extra: 1\n");
    struct bcfg c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_bind(&l.d, cfg_get(l.root, "route"), f, &c), SLC_EINVAL);
    assert_int_equal(l.d.nerrors, 4);
    assert_msg(&l.d, "t.yaml:3:10: route.count: expected an integer from 0 to 5, got '9'");
    assert_msg(&l.d, "t.yaml:4:3: route.extra: unknown key 'extra'");
    assert_msg(&l.d, "t.yaml:2:3: route: missing required key 'cluster'");
    assert_msg(&l.d, "t.yaml:2:8: route.host: missing value for required key 'host'");
    unload(&l);

    /* NULL map: required keys are reported without a location. */
    load(&l, "a: 1\n");
    assert_int_equal(cfg_bind(&l.d, NULL, f, &c), SLC_EINVAL);
    assert_msg(&l.d, "t.yaml: missing required key 'cluster'");
    unload(&l);
}

static void test_bind_not_a_map(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "a: [1]\nb: x\nc:\n");
    struct bcfg c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_bind(&l.d, cfg_get(l.root, "a"), bfields, &c), SLC_EINVAL);
    assert_msg(&l.d, "t.yaml:1:4: a: expected a map, got a sequence");
    assert_int_equal(cfg_bind(&l.d, cfg_get(l.root, "b"), bfields, &c), SLC_EINVAL);
    assert_msg(&l.d, "t.yaml:2:4: b: expected a map, got a scalar");
    assert_int_equal(l.d.nerrors, 2);
    /* "c:" with nothing is an empty map for binding purposes. */
    assert_int_equal(cfg_bind(&l.d, cfg_get(l.root, "c"), bfields, &c), SLC_OK);
    assert_int_equal(c.count, 10);
    unload(&l);
}

static void test_bind_bad_default(void **state)
{
    (void)state;
    static const slc_cfg_field_t f[] = {
        SLC_FIELD_DURATION("t", struct bcfg, timeout_ms, .dflt = "10"),
        SLC_FIELD_END,
    };
    struct loaded l;
    load(&l, "{}\n");
    struct bcfg c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cfg_bind(&l.d, l.root, f, &c), SLC_EINVAL);
    assert_msg(&l.d, "bad default for 't': expected a duration like '10s', got '10'");
    unload(&l);
}

/* ---- dump -------------------------------------------------------------- */

static void same_tree(const slc_cfg_node_t *a, const slc_cfg_node_t *b)
{
    assert_int_equal(cfg_type(a), cfg_type(b));
    switch (cfg_type(a)) {
    case SLC_CFG_SCALAR:
        assert_int_equal(a->text_len, b->text_len);
        assert_memory_equal(a->text, b->text, a->text_len);
        break;
    case SLC_CFG_MAP:
    case SLC_CFG_SEQ:
        assert_int_equal(cfg_len(a), cfg_len(b));
        for (size_t i = 0; i < cfg_len(a); i++) {
            if (a->type == SLC_CFG_MAP)
                assert_string_equal(a->keys[i], b->keys[i]);
            same_tree(cfg_at(a, i), cfg_at(b, i));
        }
        break;
    default:
        break;
    }
}

static char *dump_string(const slc_cfg_node_t *n)
{
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    assert_non_null(m);
    cfg_tree_dump(n, m);
    fclose(m);
    return out;
}

static void round_trip(const char *yaml)
{
    struct loaded a, b;
    load(&a, yaml);
    assert_int_equal(a.d.nerrors, 0);
    char *text = dump_string(a.root);
    load(&b, text);
    if (b.d.nerrors != 0) {
        dump_msgs(&b.d);
        fail_msg("dump does not parse:\n%s", text);
    }
    same_tree(a.root, b.root);
    /* A second dump is byte-identical: the dump is a fixed point. */
    char *again = dump_string(b.root);
    assert_string_equal(text, again);
    free(again);
    free(text);
    unload(&a);
    unload(&b);
}

static void test_dump_round_trip(void **state)
{
    (void)state;
    round_trip(nested_yaml);
    round_trip("workers: 2\n"
               "log: { level: info }\n"
               "filters:\n"
               "  - name: routes\n"
               "    config:\n"
               "      virtual_hosts:\n"
               "        - domains: [\"*\"]\n"
               "          routes:\n"
               "            - match: { prefix: / }\n"
               "              direct_response: { status: 200, body: \"hello\\n\" }\n"
               "clusters: [{name: api, endpoints: [127.0.0.1:8081, '127.0.0.1:8082']}]\n");
    round_trip("plain: hello world\n"
               "colon: 'a: b'\n"
               "hash: 'x #y'\n"
               "dash: '- item'\n"
               "dots: '...'\n"
               "star: '*x'\n"
               "amp: '&x'\n"
               "q: '\"'\n"
               "sq: \"'\"\n"
               "nullword: 'null'\n"
               "tildestr: '~'\n"
               "empty: ''\n"
               "realnull: ~\n"
               "trailing: 'x '\n"
               "leading: ' x'\n"
               "colonend: 'x:'\n"
               "ctrl: \"a\\x01b\\0c\\x7f\"\n"
               "nel: \"a\\Nb\\Lc\\Pd\\ue000\\ufeff\"\n"
               "utf8: caf\xc3\xa9\n"
               "multi: |\n  line one\n  line two\n"
               "tab: \"a\\tb\"\n"
               "backslash: C:\\path\n"
               "\"key: colon\": 1\n"
               "\"\": empty key\n"
               "nested: [[], {}, [a, [b, {c: d}]], {e: [f]}]\n"
               "seqmap:\n  - a: 1\n    b: [x, {y: z}]\n  - - p\n    - q\n");
    /* Keys carry no quoted flag, so these exercise the plain/quoted choice. */
    round_trip("'trail ': 1\n' lead': 1\n'colon:': 2\n'- dash': 3\n'~': 4\n'null': 5\n"
               "'#c': 6\n'a #b': 7\n'...': 8\n'---': 9\n'a: b': 10\n'[x]': 11\n"
               "'{y}': 12\n'? q': 13\n'*al': 14\n'!tag': 15\n'%d': 16\n'@at': 17\n"
               "'`bt': 18\n'|lit': 19\n'>fold': 20\n'a,b': 21\n\"nl\\nx\": 22\n"
               "'... x': 28\n'-': 23\n'-x': 24\n'::': 25\n'a\tb': 26\n\"\\u00e9t\u00e9\": 27\n");
    round_trip("just a scalar\n");
    round_trip("[]\n");
    round_trip("{}\n");
    round_trip("- 1\n- - 2\n  - - 3\n");
    round_trip("~\n");

    /* A key too long for libyaml's 1024-character implicit-key limit. */
    char *big = malloc(3000);
    assert_non_null(big);
    strcpy(big, "m:\n  ? ");
    size_t o = strlen(big);
    memset(big + o, 'k', 1500);
    o += 1500;
    strcpy(big + o, "\n  : {v: 1}\n");
    round_trip(big);
    free(big);
}

static void test_dump_text(void **state)
{
    (void)state;
    struct loaded l;
    load(&l, "a: { b: [x, 'y z'], c: {} }\nd:\n  - e: 1\n    f: 'null'\n  - [g]\nn: ~\n");
    char *text = dump_string(l.root);
    assert_string_equal(text, "a:\n"
                              "  b:\n"
                              "    - x\n"
                              "    - \"y z\"\n"
                              "  c: {}\n"
                              "d:\n"
                              "  - e: 1\n"
                              "    f: \"null\"\n"
                              "  - - g\n"
                              "n: null\n");
    free(text);
    text = dump_string(NULL);
    assert_string_equal(text, "");
    free(text);
    unload(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marks_and_paths),
        cmocka_unit_test(test_root_sequence_paths),
        cmocka_unit_test(test_scalars_and_nulls),
        cmocka_unit_test(test_accessors_null_safe),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_reader_error),
        cmocka_unit_test(test_anchors_and_aliases_rejected),
        cmocka_unit_test(test_multiple_documents_rejected),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_non_scalar_key),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_diag_format_and_print),
        cmocka_unit_test(test_diag_init_zeroes),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_load_directory),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_bind_defaults),
        cmocka_unit_test(test_bind_values),
        cmocka_unit_test(test_bind_null_value_uses_default),
        cmocka_unit_test(test_bind_u32),
        cmocka_unit_test(test_bind_ranges_and_types),
        cmocka_unit_test(test_bind_durations),
        cmocka_unit_test(test_bind_enum_suggest),
        cmocka_unit_test(test_bind_unknown_keys),
        cmocka_unit_test(test_bind_required),
        cmocka_unit_test(test_bind_not_a_map),
        cmocka_unit_test(test_bind_bad_default),
        cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_dump_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
