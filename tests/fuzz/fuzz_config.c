/* fuzz_config: libFuzzer target for the config tree (core/cfgtree.c).
 *
 * Loads the input with cfg_tree_load_string, binds a small field table of
 * every kind against the root, and dumps the tree. As an oracle, the dump
 * must parse back without errors into the same structure (types, keys and
 * scalar texts); a mismatch aborts.
 */
#include "cfgtree.h"

#include <stdlib.h>
#include <string.h>

struct fz_cfg {
    char *name;
    uint32_t count;
    bool on;
    uint64_t timeout_ms;
    const slc_cfg_node_t *extra;
    int policy;
};

static const char *const fz_policies[] = {"round_robin", "least_request", "random", NULL};

static const slc_cfg_field_t fz_fields[] = {
    SLC_FIELD_STR("name", struct fz_cfg, name, .dflt = "x"),
    SLC_FIELD_U32("count", struct fz_cfg, count, .min = 1, .max = 1000, .dflt = "4Ki"),
    SLC_FIELD_BOOL("on", struct fz_cfg, on),
    SLC_FIELD_DURATION("timeout", struct fz_cfg, timeout_ms, .dflt = "1.5s", .max = 3600000),
    SLC_FIELD_NODE("extra", struct fz_cfg, extra),
    SLC_FIELD_ENUM("policy", struct fz_cfg, policy, fz_policies, .required = true),
    SLC_FIELD_END,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_tree(const slc_cfg_node_t *a, const slc_cfg_node_t *b)
{
    if (cfg_type(a) != cfg_type(b))
        abort();
    switch (cfg_type(a)) {
    case SLC_CFG_SCALAR: {
        slc_str_t x = cfg_scalar(a), y = cfg_scalar(b);
        if (x.len != y.len || memcmp(x.ptr, y.ptr, x.len) != 0)
            abort();
        break;
    }
    case SLC_CFG_MAP:
    case SLC_CFG_SEQ:
        if (cfg_len(a) != cfg_len(b))
            abort();
        for (size_t i = 0; i < cfg_len(a); i++) {
            if (a->type == SLC_CFG_MAP && strcmp(a->keys[i], b->keys[i]) != 0)
                abort();
            same_tree(cfg_at(a, i), cfg_at(b, i));
        }
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    slc_diag_t d;
    diag_init(&d, NULL);
    cfg_tree_t *t = cfg_tree_load_string("fuzz.yaml", (const char *)data, size, &d);
    d.tree = t;
    const slc_cfg_node_t *root = cfg_tree_root(t);

    struct fz_cfg c;
    memset(&c, 0, sizeof(c));
    (void)cfg_bind(&d, root, fz_fields, &c);
    if (root != NULL && root->type == SLC_CFG_MAP)
        (void)cfg_bind(&d, cfg_get(root, "extra"), fz_fields, &c);

    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m == NULL)
        abort();
    cfg_tree_dump(root, m);
    diag_print(&d, m);
    fclose(m);
    free(buf);

    /* Round trip: dump, parse again, compare. */
    if (root != NULL) {
        buf = NULL;
        len = 0;
        m = open_memstream(&buf, &len);
        if (m == NULL)
            abort();
        cfg_tree_dump(root, m);
        fclose(m);
        slc_diag_t d2;
        diag_init(&d2, NULL);
        cfg_tree_t *t2 = cfg_tree_load_string("dump.yaml", buf, len, &d2);
        if (d2.nerrors != 0) {
            fprintf(stderr, "dump does not parse:\n%s\n", buf);
            diag_print(&d2, stderr);
            abort();
        }
        same_tree(root, cfg_tree_root(t2));
        cfg_tree_free(t2);
        diag_cleanup(&d2);
        free(buf);
    }

    cfg_tree_free(t);
    diag_cleanup(&d);
    return 0;
}
