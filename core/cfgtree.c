/* cfgtree: YAML -> node tree with source marks, diagnostics, and the
 * field-table binder. See cfgtree.h for the API.
 *
 * Design notes:
 * - The tree is built from libyaml's event stream (yaml_parser_parse), so
 *   every node keeps the start mark of its event. Marks are 0-based in
 *   libyaml; nodes store them 1-based.
 * - Every node, key, path and scalar lives in a per-tree bump arena: chunks
 *   of CHUNK_SIZE obtained with calloc (so arena memory is zeroed), big
 *   allocations get a chunk of their own. cfg_tree_free releases the chunks.
 *   Diagnostic messages are not in the arena: they must outlive the tree
 *   (a failed load is reported after its tree is gone), so each is malloc'd
 *   and freed by diag_cleanup.
 * - A load that records any error (syntax, anchor, alias, duplicate key,
 *   non-scalar key, second document, nesting too deep) leaves the tree with
 *   no root, so nothing downstream binds a half-valid tree.
 * - A real malloc failure aborts (house rule); nothing here returns ENOMEM.
 */
#include "cfgtree.h"

#include <sluice/util.h>

#include <errno.h>
#include <limits.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- arena ------------------------------------------------------------- */

enum {
    CHUNK_SIZE = 16 * 1024,
    /* Allocations above this get their own chunk so a big one does not
     * waste the rest of the current chunk. */
    BIG_ALLOC = CHUNK_SIZE / 4,
    /* Nesting deeper than this is refused: it keeps the recursive builder
     * and dumper off the end of the stack on hostile input. */
    MAX_DEPTH = 128,
    /* Config files larger than this are refused at load. */
    MAX_FILE = 64 * 1024 * 1024,
};

struct arena_chunk {
    struct arena_chunk *next;
    size_t cap, used;
    max_align_t data[]; /* cap bytes */
};

struct cfg_tree {
    struct arena_chunk *chunks; /* head is the chunk being bumped */
    const char *file;           /* tree-arena */
    slc_cfg_node_t *root;       /* NULL: empty input or load failed */
};

/* A node as cfgtree allocates it: the public layout plus the marks of a
 * map's keys, so "unknown key" and "duplicate key" point at the key rather
 * than at its value. Only consulted for nodes whose |tree| is set, which
 * only cfgtree does. */
typedef struct cfg_mark {
    unsigned line, col;
} cfg_mark_t;

typedef struct cfg_node_ext {
    slc_cfg_node_t pub; /* first: the public pointer is the ext pointer */
    cfg_mark_t *key_marks;
} cfg_node_ext_t;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

static struct arena_chunk *chunk_new(size_t cap)
{
    if (cap > SIZE_MAX - sizeof(struct arena_chunk))
        abort();
    struct arena_chunk *c = calloc(1, sizeof(*c) + cap);
    if (c == NULL)
        abort();
    c->cap = cap;
    return c;
}

void *cfg_tree_alloc(cfg_tree_t *t, size_t n)
{
    const size_t align = alignof(max_align_t);
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - align)
        abort();
    n = (n + align - 1) & ~(align - 1);

    if (n > BIG_ALLOC) {
        /* Own chunk, linked behind the head so bumping continues there. */
        struct arena_chunk *c = chunk_new(n);
        c->used = n;
        if (t->chunks != NULL) {
            c->next = t->chunks->next;
            t->chunks->next = c;
        } else {
            t->chunks = c;
        }
        return c->data;
    }
    struct arena_chunk *h = t->chunks;
    if (h == NULL || h->cap - h->used < n) {
        h = chunk_new(CHUNK_SIZE);
        h->next = t->chunks;
        t->chunks = h;
    }
    void *p = (unsigned char *)h->data + h->used;
    h->used += n;
    return p;
}

/* tree_memdup copies |len| bytes and adds a NUL. */
static char *tree_memdup(cfg_tree_t *t, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        abort();
    char *p = cfg_tree_alloc(t, len + 1);
    if (len > 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *cfg_tree_strdup(cfg_tree_t *t, const char *s)
{
    return tree_memdup(t, s, strlen(s));
}

static cfg_tree_t *tree_new(const char *file)
{
    cfg_tree_t *t = xmalloc(sizeof(*t));
    memset(t, 0, sizeof(*t));
    t->file = cfg_tree_strdup(t, file ? file : "<config>");
    return t;
}

void cfg_tree_free(cfg_tree_t *t)
{
    if (t == NULL)
        return;
    struct arena_chunk *c = t->chunks;
    while (c != NULL) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(t);
}

const slc_cfg_node_t *cfg_tree_root(const cfg_tree_t *t)
{
    return t ? t->root : NULL;
}

const char *cfg_tree_file(const cfg_tree_t *t)
{
    return t ? t->file : NULL;
}

/* cfg_node_new allocates the extended node the loader uses (key_marks left
 * NULL, so "unknown key" points at the value), which is what lets cfg_bind
 * treat a node built in C exactly like a parsed one. */
slc_cfg_node_t *cfg_node_new(cfg_tree_t *t, slc_cfg_type_t type, unsigned line, unsigned col,
                             const char *path)
{
    cfg_node_ext_t *x = cfg_tree_alloc(t, sizeof(*x));
    x->pub.type = type;
    x->pub.line = line;
    x->pub.col = col;
    x->pub.path = cfg_tree_strdup(t, path ? path : "");
    x->pub.tree = t;
    x->pub.text = "";
    return &x->pub;
}

/* ---- diagnostics ------------------------------------------------------- */

void diag_init(slc_diag_t *d, cfg_tree_t *t)
{
    memset(d, 0, sizeof(*d));
    d->tree = t;
}

void diag_cleanup(slc_diag_t *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nmsgs; i++) {
        free(d->msgs[i].text);
        d->msgs[i].text = NULL;
    }
    free(d->msgs);
    d->msgs = NULL;
    d->nmsgs = d->cap = d->nerrors = 0;
}

/* diag_push takes ownership of the malloc'd |text|. */
static void diag_push(slc_diag_t *d, bool is_error, char *text, size_t msg_off,
                      const slc_cfg_node_t *node)
{
    if (d->nmsgs == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->msgs = xrealloc(d->msgs, d->cap * sizeof(*d->msgs));
    }
    d->msgs[d->nmsgs].is_error = is_error;
    d->msgs[d->nmsgs].text = text;
    d->msgs[d->nmsgs].msg_off = msg_off;
    d->msgs[d->nmsgs].node = node;
    d->nmsgs++;
    if (is_error)
        d->nerrors++;
}

/* diag_vat records "file:line:col: path: [warning: ]message". |file| may be
 * NULL (no location at all), |line| 0 (file only), |path| NULL or empty (no
 * path part). |node| (may be NULL) is only recorded, not formatted. */
static void diag_vat(slc_diag_t *d, bool is_error, const slc_cfg_node_t *node, const char *file,
                     unsigned line, unsigned col, const char *path, const char *fmt, va_list ap)
{
    if (d == NULL)
        return;
    char *msg = NULL, *text = NULL;
    size_t msglen = 0, textlen = 0;

    FILE *m = open_memstream(&msg, &msglen);
    if (m == NULL)
        abort();
    vfprintf(m, fmt, ap);
    fclose(m);

    FILE *o = open_memstream(&text, &textlen);
    if (o == NULL)
        abort();
    if (file != NULL) {
        fputs(file, o);
        if (line > 0)
            fprintf(o, ":%u:%u", line, col);
        fputs(": ", o);
    }
    if (path != NULL && path[0] != '\0')
        fprintf(o, "%s: ", path);
    if (!is_error)
        fputs("warning: ", o);
    long off = ftell(o);
    fputs(msg, o);
    fclose(o);
    free(msg);
    diag_push(d, is_error, text, off > 0 ? (size_t)off : 0, node);
}

__attribute__((format(printf, 8, 9))) static void
diag_at(slc_diag_t *d, bool is_error, const slc_cfg_node_t *node, const char *file, unsigned line,
        unsigned col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vat(d, is_error, node, file, line, col, path, fmt, ap);
    va_end(ap);
}

static void diag_vnode(slc_diag_t *d, bool is_error, const slc_cfg_node_t *n, const char *fmt,
                       va_list ap)
{
    if (d == NULL)
        return;
    if (n == NULL) {
        const char *file = d->tree ? d->tree->file : NULL;
        diag_vat(d, is_error, NULL, file, 0, 0, NULL, fmt, ap);
        return;
    }
    const char *file = n->tree ? n->tree->file : (d->tree ? d->tree->file : NULL);
    diag_vat(d, is_error, n, file, n->line, n->col, n->path, fmt, ap);
}

void diag_verror(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap)
{
    diag_vnode(d, true, n, fmt, ap);
}

void diag_vwarn(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap)
{
    diag_vnode(d, false, n, fmt, ap);
}

void diag_errorf(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vnode(d, true, n, fmt, ap);
    va_end(ap);
}

void diag_warnf(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vnode(d, false, n, fmt, ap);
    va_end(ap);
}

void diag_print(const slc_diag_t *d, FILE *out)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nmsgs; i++) {
        fputs(d->msgs[i].text, out);
        fputc('\n', out);
    }
}

/* shown: |s| cut to fit a message and with control bytes replaced. */
static void shown(const char *s, size_t len, char *buf, size_t size)
{
    size_t max = size - 4, o = 0;
    for (size_t i = 0; i < len && o < size - 1; i++) {
        if (o == max && i + 1 < len) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[o] = '\0';
}

/* ---- loading ----------------------------------------------------------- */

/* A growable malloc'd vector used while a map or sequence is open; its
 * contents are copied into the arena when the collection ends. */
struct pvec {
    void **v;
    size_t n, cap;
};

static void pvec_push(struct pvec *pv, void *p)
{
    if (pv->n == pv->cap) {
        pv->cap = pv->cap ? pv->cap * 2 : 8;
        pv->v = xrealloc(pv->v, pv->cap * sizeof(*pv->v));
    }
    pv->v[pv->n++] = p;
}

struct loader {
    cfg_tree_t *t;
    slc_diag_t *d;
    yaml_parser_t parser;
    const char *buf;
    size_t len;
    bool failed;   /* syntax error: the event stream is over */
    size_t errors; /* every error this load recorded */
};

__attribute__((format(printf, 4, 5))) static void load_error(struct loader *ld, yaml_mark_t mark,
                                                             const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vat(ld->d, true, NULL, ld->t->file, (unsigned)mark.line + 1, (unsigned)mark.column + 1,
             path, fmt, ap);
    va_end(ap);
    ld->errors++;
}

/* offset_mark turns a byte offset into 1-based line and column (for reader
 * errors, which libyaml reports as an offset only). */
static void offset_mark(const struct loader *ld, size_t off, unsigned *line, unsigned *col)
{
    unsigned l = 1, c = 1;
    if (off > ld->len)
        off = ld->len;
    for (size_t i = 0; i < off; i++) {
        if (ld->buf[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static void syntax_error(struct loader *ld)
{
    yaml_parser_t *p = &ld->parser;
    const char *file = ld->t->file;
    const char *problem = p->problem ? p->problem : "invalid YAML";

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        abort();
    case YAML_READER_ERROR: {
        unsigned line, col;
        offset_mark(ld, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            diag_at(ld->d, true, NULL, file, line, col, NULL, "%s (byte 0x%02x)", problem,
                    (unsigned)p->problem_value & 0xffu);
        else
            diag_at(ld->d, true, NULL, file, line, col, NULL, "%s", problem);
        break;
    }
    default:
        diag_at(ld->d, true, NULL, file, (unsigned)p->problem_mark.line + 1,
                (unsigned)p->problem_mark.column + 1, NULL, "%s%s%s", problem,
                p->context ? " " : "", p->context ? p->context : "");
        break;
    }
    ld->errors++;
    ld->failed = true;
}

static bool next_event(struct loader *ld, yaml_event_t *ev)
{
    if (ld->failed)
        return false;
    if (!yaml_parser_parse(&ld->parser, ev)) {
        syntax_error(ld);
        return false;
    }
    return true;
}

static slc_cfg_node_t *node_new(struct loader *ld, slc_cfg_type_t type, yaml_mark_t mark,
                                const char *path)
{
    cfg_node_ext_t *x = cfg_tree_alloc(ld->t, sizeof(*x));
    x->pub.type = type;
    x->pub.line = (unsigned)mark.line + 1;
    x->pub.col = (unsigned)mark.column + 1;
    x->pub.path = path;
    x->pub.tree = ld->t;
    x->pub.text = "";
    return &x->pub;
}

static const char *path_key(struct loader *ld, const char *parent, const char *key)
{
    size_t pl = strlen(parent), kl = strlen(key);
    if (pl == 0)
        return tree_memdup(ld->t, key, kl);
    char *p = cfg_tree_alloc(ld->t, pl + 1 + kl + 1);
    memcpy(p, parent, pl);
    p[pl] = '.';
    memcpy(p + pl + 1, key, kl + 1);
    return p;
}

static const char *path_index(struct loader *ld, const char *parent, size_t i)
{
    size_t pl = strlen(parent);
    char idx[32];
    int il = snprintf(idx, sizeof(idx), "[%zu]", i);
    char *p = cfg_tree_alloc(ld->t, pl + (size_t)il + 1);
    memcpy(p, parent, pl);
    memcpy(p + pl, idx, (size_t)il + 1);
    return p;
}

/* is_null_scalar: the YAML 1.1/1.2 core-schema spellings of null, for plain
 * scalars only ('~', null, Null, NULL and the empty scalar). */
static bool is_null_scalar(const yaml_event_t *ev)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag != NULL)
        return strcmp(tag, YAML_NULL_TAG) == 0;
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    return n == 0 || (n == 1 && v[0] == '~') ||
           (n == 4 && (!memcmp(v, "null", 4) || !memcmp(v, "Null", 4) || !memcmp(v, "NULL", 4)));
}

static void check_anchor(struct loader *ld, const yaml_char_t *anchor, yaml_mark_t mark,
                         const char *path)
{
    if (anchor != NULL)
        load_error(ld, mark, path, "anchors are not supported ('&%s'); repeat the value instead",
                   (const char *)anchor);
}

/* skip_subtree consumes the rest of a collection whose start event was
 * already read, without recursion. */
static void skip_subtree(struct loader *ld)
{
    size_t level = 1;
    while (level > 0) {
        yaml_event_t ev;
        if (!next_event(ld, &ev))
            return;
        switch (ev.type) {
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            level++;
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            level--;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
}

static slc_cfg_node_t *parse_node(struct loader *ld, yaml_event_t *ev, const char *path, int depth);

static slc_cfg_node_t *parse_map(struct loader *ld, yaml_event_t *start, const char *path,
                                 int depth)
{
    slc_cfg_node_t *n = node_new(ld, SLC_CFG_MAP, start->start_mark, path);
    struct pvec keys = {0}, vals = {0};
    cfg_mark_t *marks = NULL;
    size_t marks_cap = 0;

    for (;;) {
        yaml_event_t kev;
        if (!next_event(ld, &kev))
            goto out_fail;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            break;
        }
        yaml_mark_t kmark = kev.start_mark;
        char *key = NULL;
        switch (kev.type) {
        case YAML_SCALAR_EVENT:
            check_anchor(ld, kev.data.scalar.anchor, kmark, path);
            key = tree_memdup(ld->t, (const char *)kev.data.scalar.value, kev.data.scalar.length);
            if (strlen(key) != kev.data.scalar.length) {
                load_error(ld, kmark, path, "keys must not contain NUL characters");
                key = NULL;
            }
            yaml_event_delete(&kev);
            break;
        case YAML_ALIAS_EVENT:
            load_error(ld, kmark, path, "aliases are not supported ('*%s')",
                       (const char *)kev.data.alias.anchor);
            yaml_event_delete(&kev);
            break;
        default: {
            const char *what = kev.type == YAML_MAPPING_START_EVENT ? "a map" : "a sequence";
            load_error(ld, kmark, path, "keys must be scalars, got %s", what);
            /* Consumes kev and its subtree; the node is dropped. */
            parse_node(ld, &kev, path, depth + 1);
            if (ld->failed)
                goto out_fail;
            break;
        }
        }

        yaml_event_t vev;
        if (!next_event(ld, &vev))
            goto out_fail;
        const char *vpath = path_key(ld, path, key ? key : "?");
        slc_cfg_node_t *v = parse_node(ld, &vev, vpath, depth + 1);
        if (ld->failed)
            goto out_fail;
        if (key == NULL)
            continue;

        size_t i;
        for (i = 0; i < keys.n; i++)
            if (strcmp(keys.v[i], key) == 0)
                break;
        if (i < keys.n) {
            char k[80];
            shown(key, strlen(key), k, sizeof(k));
            load_error(ld, kmark, vpath, "duplicate key '%s' (first at line %u)", k, marks[i].line);
            continue;
        }
        if (keys.n == marks_cap) {
            marks_cap = marks_cap ? marks_cap * 2 : 8;
            marks = xrealloc(marks, marks_cap * sizeof(*marks));
        }
        marks[keys.n] = (cfg_mark_t){(unsigned)kmark.line + 1, (unsigned)kmark.column + 1};
        pvec_push(&keys, key);
        pvec_push(&vals, v);
    }

    n->n = keys.n;
    if (keys.n > 0) {
        n->keys = cfg_tree_alloc(ld->t, keys.n * sizeof(*n->keys));
        n->items = cfg_tree_alloc(ld->t, keys.n * sizeof(*n->items));
        cfg_mark_t *km = cfg_tree_alloc(ld->t, keys.n * sizeof(*km));
        memcpy((void *)n->keys, keys.v, keys.n * sizeof(*n->keys));
        memcpy(n->items, vals.v, keys.n * sizeof(*n->items));
        memcpy(km, marks, keys.n * sizeof(*km));
        ((cfg_node_ext_t *)n)->key_marks = km;
    }
    free(keys.v);
    free(vals.v);
    free(marks);
    return n;

out_fail:
    free(keys.v);
    free(vals.v);
    free(marks);
    return NULL;
}

static slc_cfg_node_t *parse_seq(struct loader *ld, yaml_event_t *start, const char *path,
                                 int depth)
{
    slc_cfg_node_t *n = node_new(ld, SLC_CFG_SEQ, start->start_mark, path);
    struct pvec items = {0};

    for (;;) {
        yaml_event_t ev;
        if (!next_event(ld, &ev))
            goto out_fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        slc_cfg_node_t *v = parse_node(ld, &ev, path_index(ld, path, items.n), depth + 1);
        if (ld->failed)
            goto out_fail;
        pvec_push(&items, v);
    }
    n->n = items.n;
    if (items.n > 0) {
        n->items = cfg_tree_alloc(ld->t, items.n * sizeof(*n->items));
        memcpy(n->items, items.v, items.n * sizeof(*n->items));
    }
    free(items.v);
    return n;

out_fail:
    free(items.v);
    return NULL;
}

/* parse_node builds the node that starts with |ev| (consumed: this deletes
 * it). Returns NULL only when the stream failed (ld->failed). */
static slc_cfg_node_t *parse_node(struct loader *ld, yaml_event_t *ev, const char *path, int depth)
{
    slc_cfg_node_t *n = NULL;

    if (depth > MAX_DEPTH &&
        (ev->type == YAML_MAPPING_START_EVENT || ev->type == YAML_SEQUENCE_START_EVENT)) {
        load_error(ld, ev->start_mark, path, "nesting deeper than %d levels", MAX_DEPTH);
        n = node_new(ld, SLC_CFG_NULL, ev->start_mark, path);
        yaml_event_delete(ev);
        skip_subtree(ld);
        return ld->failed ? NULL : n;
    }

    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        check_anchor(ld, ev->data.scalar.anchor, ev->start_mark, path);
        bool null = is_null_scalar(ev);
        n = node_new(ld, null ? SLC_CFG_NULL : SLC_CFG_SCALAR, ev->start_mark, path);
        n->text = tree_memdup(ld->t, (const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->text_len = ev->data.scalar.length;
        n->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        yaml_event_delete(ev);
        return n;
    }
    case YAML_ALIAS_EVENT:
        load_error(ld, ev->start_mark, path,
                   "aliases are not supported ('*%s'); repeat the value instead",
                   (const char *)ev->data.alias.anchor);
        n = node_new(ld, SLC_CFG_NULL, ev->start_mark, path);
        yaml_event_delete(ev);
        return n;
    case YAML_MAPPING_START_EVENT: {
        check_anchor(ld, ev->data.mapping_start.anchor, ev->start_mark, path);
        yaml_event_t start = *ev;
        n = parse_map(ld, &start, path, depth);
        yaml_event_delete(&start);
        return n;
    }
    case YAML_SEQUENCE_START_EVENT: {
        check_anchor(ld, ev->data.sequence_start.anchor, ev->start_mark, path);
        yaml_event_t start = *ev;
        n = parse_seq(ld, &start, path, depth);
        yaml_event_delete(&start);
        return n;
    }
    default:
        /* The parser only emits node events here; anything else is a bug in
         * this walker, reported rather than trusted. */
        load_error(ld, ev->start_mark, path, "unexpected YAML event %d", (int)ev->type);
        yaml_event_delete(ev);
        ld->failed = true;
        return NULL;
    }
}

/* load_stream walks STREAM-START, one document, STREAM-END. */
static void load_stream(struct loader *ld)
{
    yaml_event_t ev;
    slc_cfg_node_t *root = NULL;
    bool have_doc = false;

    if (!next_event(ld, &ev))
        return;
    yaml_event_delete(&ev); /* STREAM-START */

    for (;;) {
        if (!next_event(ld, &ev))
            return;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type != YAML_DOCUMENT_START_EVENT) {
            load_error(ld, ev.start_mark, NULL, "unexpected YAML event %d", (int)ev.type);
            yaml_event_delete(&ev);
            return;
        }
        if (have_doc) {
            load_error(ld, ev.start_mark, NULL,
                       "multiple documents are not supported (found a second '---')");
            yaml_event_delete(&ev);
            return;
        }
        have_doc = true;
        yaml_event_delete(&ev);

        if (!next_event(ld, &ev))
            return;
        root = parse_node(ld, &ev, "", 0);
        if (ld->failed)
            return;
        if (!next_event(ld, &ev)) /* DOCUMENT-END */
            return;
        yaml_event_delete(&ev);
    }
    if (ld->errors == 0)
        ld->t->root = root;
}

cfg_tree_t *cfg_tree_load_string(const char *name, const char *yaml, size_t len, slc_diag_t *d)
{
    cfg_tree_t *t = tree_new(name);
    struct loader ld = {.t = t, .d = d, .buf = yaml, .len = len};

    if (!yaml_parser_initialize(&ld.parser))
        abort();
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)(yaml ? yaml : ""),
                                 yaml ? len : 0);
    load_stream(&ld);
    yaml_parser_delete(&ld.parser);
    return t;
}

cfg_tree_t *cfg_tree_load(const char *path, slc_diag_t *d)
{
    cfg_tree_t *t = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;

    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        diag_at(d, true, NULL, NULL, 0, 0, NULL, "cannot open '%s': %s", path, strerror(e));
        goto out_empty;
    }
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 16384;
            buf = xrealloc(buf, cap);
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                diag_at(d, true, NULL, NULL, 0, 0, NULL, "cannot read '%s': %s", path, strerror(e));
                fclose(f);
                goto out_empty;
            }
            break;
        }
        if (len > MAX_FILE) {
            diag_at(d, true, NULL, NULL, 0, 0, NULL, "cannot read '%s': larger than %d MiB", path,
                    MAX_FILE / (1024 * 1024));
            fclose(f);
            goto out_empty;
        }
    }
    fclose(f);
    t = cfg_tree_load_string(path, buf, len, d);
    free(buf);
    return t;

out_empty:
    free(buf);
    return tree_new(path);
}

/* ---- accessors --------------------------------------------------------- */

slc_cfg_type_t cfg_type(const slc_cfg_node_t *n)
{
    return n ? n->type : SLC_CFG_NULL;
}

/* cfg_scalar returns the text of a scalar; for anything else an empty view
 * whose ptr is "" (never NULL), so careless callers cannot crash on it. */
slc_str_t cfg_scalar(const slc_cfg_node_t *n)
{
    if (n == NULL || n->type != SLC_CFG_SCALAR)
        return (slc_str_t){"", 0};
    return (slc_str_t){n->text, n->text_len};
}

size_t cfg_len(const slc_cfg_node_t *n)
{
    if (n == NULL || (n->type != SLC_CFG_MAP && n->type != SLC_CFG_SEQ))
        return 0;
    return n->n;
}

const slc_cfg_node_t *cfg_at(const slc_cfg_node_t *n, size_t i)
{
    if (i >= cfg_len(n))
        return NULL;
    return n->items[i];
}

/* cfg_key_at: key |i| of a map; an empty view ("") when out of range. */
slc_str_t cfg_key_at(const slc_cfg_node_t *n, size_t i)
{
    if (n == NULL || n->type != SLC_CFG_MAP || i >= n->n)
        return (slc_str_t){"", 0};
    return (slc_str_t){n->keys[i], strlen(n->keys[i])};
}

const slc_cfg_node_t *cfg_get(const slc_cfg_node_t *n, const char *key)
{
    if (n == NULL || n->type != SLC_CFG_MAP || key == NULL)
        return NULL;
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->keys[i], key) == 0)
            return n->items[i];
    return NULL;
}

/* key_mark: where key |i| of map |n| was written, or the value's mark. */
static void key_mark(const slc_cfg_node_t *n, size_t i, unsigned *line, unsigned *col)
{
    const cfg_node_ext_t *x = (const cfg_node_ext_t *)n;
    if (n->tree != NULL && x->key_marks != NULL) {
        *line = x->key_marks[i].line;
        *col = x->key_marks[i].col;
    } else {
        *line = n->items[i]->line;
        *col = n->items[i]->col;
    }
}

/* ---- durations --------------------------------------------------------- */

/* cfg_duration_ms is the util library's parser, so that the binder and a
 * filter parsing durations itself cannot disagree. */
slc_status_t cfg_duration_ms(slc_str_t text, uint64_t *out_ms)
{
    return slcu_duration_ms(text, out_ms);
}

/* fmt_duration writes |ms| in the largest unit that divides it exactly. */
static void fmt_duration(uint64_t ms, char *buf, size_t size)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, size, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, size, "%llum", (unsigned long long)(ms / 60000));
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, size, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, size, "%llums", (unsigned long long)ms);
}

/* ---- suggestions ------------------------------------------------------- */

/* same_words: equal ignoring case and '_'/'-' (so camelCase, snake_case and
 * kebab-case spellings of one name match). */
static bool same_words(const char *a, const char *b)
{
    for (;;) {
        while (*a == '_' || *a == '-')
            a++;
        while (*b == '_' || *b == '-')
            b++;
        if (*a == '\0' || *b == '\0')
            return *a == *b;
        if (slcu_lower((unsigned char)*a) != slcu_lower((unsigned char)*b))
            return false;
        a++;
        b++;
    }
}

/* levenshtein: case-insensitive edit distance, or INT_MAX when the strings
 * are too long to bother (no useful suggestion comes from those). */
static int levenshtein(const char *a, const char *b)
{
    size_t d = slcu_edit_distance((slc_str_t){a, strlen(a)}, (slc_str_t){b, strlen(b)}, true);
    return d > INT_MAX ? INT_MAX : (int)d;
}

/* cfg_suggest: besides the distance cap of 2, a suggestion must be closer
 * than the word is long, so "x" does not suggest "id". */
const char *cfg_suggest(const char *word, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    int best_d = INT_MAX;
    if (word == NULL || candidates == NULL)
        return NULL;
    int wl = (int)strnlen(word, SLCU_EDIT_MAX + 1);
    for (size_t i = 0; i < n; i++) {
        const char *c = candidates[i];
        if (c == NULL)
            continue;
        int dist = same_words(word, c) ? 0 : levenshtein(word, c);
        if (dist > 2 || dist >= wl)
            continue;
        if (dist < best_d) {
            best_d = dist;
            best = c;
        }
    }
    return best;
}

/* ---- binder ------------------------------------------------------------ */

static const char *type_name(slc_cfg_type_t t)
{
    switch (t) {
    case SLC_CFG_MAP:
        return "a map";
    case SLC_CFG_SEQ:
        return "a sequence";
    case SLC_CFG_SCALAR:
        return "a scalar";
    default:
        return "null";
    }
}

/* parse_u32 accepts decimal digits with an optional binary suffix Ki, Mi or
 * Gi ("64Ki" = 65536). */
static bool parse_u32(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0, mult = 1;
    size_t i = 0;
    if (len >= 2 && s[len - 1] == 'i') {
        switch (s[len - 2]) {
        case 'K':
            mult = 1024;
            break;
        case 'M':
            mult = 1024 * 1024;
            break;
        case 'G':
            mult = 1024 * 1024 * 1024;
            break;
        default:
            break;
        }
        if (mult != 1)
            len -= 2;
    }
    if (len == 0)
        return false;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX)
            return false;
    }
    v *= mult;
    if (v > UINT32_MAX)
        return false;
    *out = v;
    return true;
}

static size_t count_names(const char *const *names)
{
    size_t n = 0;
    while (names && names[n])
        n++;
    return n;
}

/* convert_scalar turns |text| into the field's C value at |slot|, or writes
 * a message to |err| and returns false. |t| (may be NULL) receives default
 * strings. */
static bool convert_scalar(const slc_cfg_field_t *f, const char *text, size_t len, bool from_node,
                           cfg_tree_t *t, unsigned char *slot, char *err, size_t errsize)
{
    char v[80];
    shown(text, len, v, sizeof(v));

    switch (f->kind) {
    case SLC_FIELD_STR_: {
        char *s;
        if (from_node)
            s = (char *)text; /* already NUL-terminated in the tree arena */
        else if (t != NULL)
            s = tree_memdup(t, text, len);
        else
            s = (char *)text; /* the field table's static default */
        memcpy(slot, &s, sizeof(s));
        return true;
    }
    case SLC_FIELD_U32_: {
        uint64_t x, lo = f->min, hi = f->max ? f->max : UINT32_MAX;
        if (hi > UINT32_MAX)
            hi = UINT32_MAX;
        if (!parse_u32(text, len, &x) || x < lo || x > hi) {
            snprintf(err, errsize, "expected an integer from %llu to %llu, got '%s'",
                     (unsigned long long)lo, (unsigned long long)hi, v);
            return false;
        }
        uint32_t u = (uint32_t)x;
        memcpy(slot, &u, sizeof(u));
        return true;
    }
    case SLC_FIELD_BOOL_: {
        bool b;
        if (len == 4 && memcmp(text, "true", 4) == 0)
            b = true;
        else if (len == 5 && memcmp(text, "false", 5) == 0)
            b = false;
        else {
            snprintf(err, errsize, "expected true or false, got '%s'", v);
            return false;
        }
        memcpy(slot, &b, sizeof(b));
        return true;
    }
    case SLC_FIELD_DURATION_: {
        uint64_t ms;
        if (cfg_duration_ms((slc_str_t){text, len}, &ms) != SLC_OK) {
            snprintf(err, errsize, "expected a duration like '10s', got '%s'", v);
            return false;
        }
        if (ms < f->min || (f->max != 0 && ms > f->max)) {
            char lo[32], hi[32];
            fmt_duration(f->min, lo, sizeof(lo));
            fmt_duration(f->max, hi, sizeof(hi));
            if (f->max != 0)
                snprintf(err, errsize, "expected a duration from %s to %s, got '%s'", lo, hi, v);
            else
                snprintf(err, errsize, "expected a duration of at least %s, got '%s'", lo, v);
            return false;
        }
        memcpy(slot, &ms, sizeof(ms));
        return true;
    }
    case SLC_FIELD_ENUM_: {
        size_t nn = count_names(f->names);
        for (size_t i = 0; i < nn; i++) {
            if (strlen(f->names[i]) == len && memcmp(f->names[i], text, len) == 0) {
                int idx = (int)i;
                memcpy(slot, &idx, sizeof(idx));
                return true;
            }
        }
        /* "expected one of a, b, c, got 'x' (did you mean 'y'?)" */
        size_t o = (size_t)snprintf(err, errsize, "expected one of ");
        for (size_t i = 0; i < nn && o < errsize; i++)
            o += (size_t)snprintf(err + o, errsize - o, "%s%s", i ? ", " : "", f->names[i]);
        if (o < errsize)
            o += (size_t)snprintf(err + o, errsize - o, ", got '%s'", v);
        const char *hint = strlen(text) == len ? cfg_suggest(text, f->names, nn) : NULL;
        if (hint != NULL && o < errsize)
            snprintf(err + o, errsize - o, " (did you mean '%s'?)", hint);
        return false;
    }
    default:
        snprintf(err, errsize, "field '%s' has unknown kind %d", f->key, (int)f->kind);
        return false;
    }
}

/* The slc_cfg_field_t of ABI 1.0, unchanged up to 1.3. A minor that appends
 * a member adds its own size below; tables of older modules keep the old
 * stride, so the binder must never index them with sizeof(slc_cfg_field_t). */
#define CFG_FIELD_SIZE_1_0 (offsetof(slc_cfg_field_t, names) + sizeof(const char *const *))
_Static_assert(sizeof(slc_cfg_field_t) == CFG_FIELD_SIZE_1_0,
               "slc_cfg_field_t grew: add its new size to cfg_field_stride");
_Static_assert(offsetof(slc_cfg_field_t, kind) == 0 &&
                   offsetof(slc_cfg_field_t, key) == sizeof(void *) &&
                   offsetof(slc_cfg_field_t, offset) == 2 * sizeof(void *) &&
                   offsetof(slc_cfg_field_t, required) == 3 * sizeof(void *) &&
                   offsetof(slc_cfg_field_t, min) == 4 * sizeof(void *) &&
                   offsetof(slc_cfg_field_t, max) == 4 * sizeof(void *) + 8 &&
                   offsetof(slc_cfg_field_t, dflt) == 4 * sizeof(void *) + 16 &&
                   offsetof(slc_cfg_field_t, names) == 5 * sizeof(void *) + 16,
               "the slc_cfg_field_t layout of ABI 1.0-1.3 is frozen");

size_t cfg_field_stride(uint32_t abi)
{
    (void)abi; /* 1.0 to 1.3 share one layout */
    return CFG_FIELD_SIZE_1_0;
}

/* normalize_fields copies a module's table (entries |stride| bytes apart)
 * into this build's layout, members the module's minor lacks left zero.
 * Returns a malloc'd array ended by SLC_FIELD_END_; *out_n its length. */
static slc_cfg_field_t *normalize_fields(const slc_cfg_field_t *fields, size_t stride,
                                         size_t *out_n)
{
    const unsigned char *p = (const unsigned char *)fields;
    size_t copy = stride < sizeof(slc_cfg_field_t) ? stride : sizeof(slc_cfg_field_t);
    size_t n = 0;
    slc_field_kind_t kind;
    for (;; n++) {
        memcpy(&kind, p + n * stride, sizeof(kind));
        if (kind == SLC_FIELD_END_)
            break;
    }
    slc_cfg_field_t *out = xmalloc((n + 1) * sizeof(*out));
    memset(out, 0, (n + 1) * sizeof(*out));
    for (size_t i = 0; i < n; i++)
        memcpy(&out[i], p + i * stride, copy);
    *out_n = n;
    return out;
}

/* bind_value handles a key that is present in the map. */
static void bind_value(slc_diag_t *d, const slc_cfg_field_t *f, const slc_cfg_node_t *v,
                       unsigned char *out)
{
    unsigned char *slot = out + f->offset;
    char err[512];

    if (f->kind == SLC_FIELD_NODE_) {
        memcpy(slot, &v, sizeof(v));
        return;
    }
    if (v->type == SLC_CFG_NULL)
        return; /* like an absent key; the second pass applies defaults */
    if (v->type != SLC_CFG_SCALAR) {
        diag_errorf(d, v, "expected a scalar, got %s", type_name(v->type));
        return;
    }
    if (!convert_scalar(f, v->text, v->text_len, true, NULL, slot, err, sizeof(err)))
        diag_errorf(d, v, "%s", err);
}

static slc_status_t bind_fields(slc_diag_t *d, const slc_cfg_node_t *n,
                                const slc_cfg_field_t *fields, size_t nf, void *out);

/* cfg_bind: absent keys (and keys whose value is null) take the field's
 * default, parsed from its YAML text like a scalar written in the file; with
 * no default the out-memory is left as the caller filled it. Errors come in
 * source order: first everything found walking the map, then missing
 * required keys. */
slc_status_t cfg_bind(slc_diag_t *d, const slc_cfg_node_t *n, const slc_cfg_field_t *in_fields,
                      void *out)
{
    size_t before = d->nerrors;
    size_t nf;
    slc_cfg_field_t *fields = normalize_fields(in_fields, cfg_field_stride(d->module_abi), &nf);
    slc_status_t st = bind_fields(d, n, fields, nf, out);
    free(fields);
    return st != SLC_OK || d->nerrors != before ? SLC_EINVAL : SLC_OK;
}

static slc_status_t bind_fields(slc_diag_t *d, const slc_cfg_node_t *n,
                                const slc_cfg_field_t *fields, size_t nf, void *out)
{
    size_t before = d->nerrors;
    unsigned char *o = out;
    cfg_tree_t *t = (cfg_tree_t *)(n && n->tree ? n->tree : d->tree);

    if (n != NULL && n->type != SLC_CFG_MAP && n->type != SLC_CFG_NULL) {
        diag_errorf(d, n, "expected a map, got %s", type_name(n->type));
        return SLC_EINVAL;
    }

    for (size_t i = 0; i < cfg_len(n); i++) {
        const char *key = n->keys[i];
        size_t j;
        for (j = 0; j < nf; j++)
            if (strcmp(fields[j].key, key) == 0)
                break;
        if (j < nf) {
            bind_value(d, &fields[j], n->items[i], o);
            continue;
        }
        const char **cands = xmalloc((nf ? nf : 1) * sizeof(*cands));
        for (j = 0; j < nf; j++)
            cands[j] = fields[j].key;
        const char *hint = cfg_suggest(key, cands, nf);
        free(cands);
        unsigned line, col;
        key_mark(n, i, &line, &col);
        const char *file = n->tree ? n->tree->file : (d->tree ? d->tree->file : NULL);
        char k[80];
        shown(key, strlen(key), k, sizeof(k));
        if (hint != NULL)
            diag_at(d, true, n->items[i], file, line, col, n->items[i]->path,
                    "unknown key '%s' (did you mean '%s'?)", k, hint);
        else
            diag_at(d, true, n->items[i], file, line, col, n->items[i]->path, "unknown key '%s'",
                    k);
    }

    for (size_t j = 0; j < nf; j++) {
        const slc_cfg_field_t *f = &fields[j];
        const slc_cfg_node_t *v = cfg_get(n, f->key);
        if (v != NULL && (v->type != SLC_CFG_NULL || f->kind == SLC_FIELD_NODE_))
            continue;
        if (f->required) {
            if (v != NULL)
                diag_errorf(d, v, "missing value for required key '%s'", f->key);
            else
                diag_errorf(d, n, "missing required key '%s'", f->key);
            continue;
        }
        if (f->dflt == NULL || f->kind == SLC_FIELD_NODE_)
            continue;
        char err[512];
        if (!convert_scalar(f, f->dflt, strlen(f->dflt), false, t, o + f->offset, err, sizeof(err)))
            diag_errorf(d, n, "bad default for '%s': %s", f->key, err);
    }
    return d->nerrors == before ? SLC_OK : SLC_EINVAL;
}

/* ---- dump -------------------------------------------------------------- */

/* needs_quotes is deliberately conservative: a plain scalar is written only
 * when it is plainly safe in block context (it cannot read as null, an
 * indicator, a comment, a key or a document marker). */
static bool needs_quotes(const char *s, size_t len)
{
    if (len == 0)
        return true;
    if ((len == 1 && s[0] == '~') ||
        (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4))))
        return true;
    unsigned char c0 = (unsigned char)s[0];
    bool first_ok = (c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') ||
                    (c0 >= '0' && c0 <= '9') || c0 == '/' || c0 == '_' || c0 == '.' || c0 == '$' ||
                    c0 == '+' || c0 == '(' || c0 == '=';
    if (!first_ok)
        return true;
    if (len >= 3 && !memcmp(s, "...", 3))
        return true;
    if (s[len - 1] == ' ' || s[len - 1] == ':')
        return true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            return true;
        if (strchr("{}[],#&*!|>'\"%@`", c) != NULL)
            return true;
        if (c == ':' && i + 1 < len && s[i + 1] == ' ')
            return true;
    }
    return false;
}

/* utf8_decode reads one sequence at s[0..len); returns its length and the
 * code point, or 0 if the bytes are not valid UTF-8. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    size_t n;
    uint32_t v, min;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if ((s[0] & 0xe0) == 0xc0) {
        n = 2, v = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3, v = s[0] & 0x0f, min = 0x800;
    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4, v = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* yaml_printable mirrors libyaml's reader: only these may appear raw. */
static bool yaml_printable(uint32_t c)
{
    return (c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xd7ff) ||
           (c >= 0xe000 && c <= 0xfffd && c != 0xfeff) || (c >= 0x10000 && c <= 0x10ffff);
}

/* emit_scalar writes |s| plain or double-quoted and returns the bytes
 * written; with |out| NULL it only counts. */
static size_t emit_scalar(FILE *out, const char *s, size_t len, bool quote)
{
    if (!quote && !needs_quotes(s, len)) {
        if (out)
            fwrite(s, 1, len, out);
        return len;
    }
    size_t w = 1;
    if (out)
        fputc('"', out);
    for (size_t i = 0; i < len;) {
        const unsigned char *p = (const unsigned char *)s + i;
        uint32_t cp;
        size_t n = utf8_decode(p, len - i, &cp);
        char esc[16];
        const char *e = NULL;
        if (n == 0) {
            /* Not reachable from parsed input (libyaml produces UTF-8);
             * kept safe for hand-built nodes. */
            snprintf(esc, sizeof(esc), "\\x%02X", p[0]);
            e = esc;
            n = 1;
        } else if (cp == '"') {
            e = "\\\"";
        } else if (cp == '\\') {
            e = "\\\\";
        } else if (cp == '\n') {
            e = "\\n";
        } else if (cp == '\t') {
            e = "\\t";
        } else if (cp == '\r') {
            e = "\\r";
        } else if (!yaml_printable(cp)) {
            if (cp <= 0xff)
                snprintf(esc, sizeof(esc), "\\x%02X", (unsigned)cp);
            else if (cp <= 0xffff)
                snprintf(esc, sizeof(esc), "\\u%04X", (unsigned)cp);
            else
                snprintf(esc, sizeof(esc), "\\U%08X", (unsigned)cp);
            e = esc;
        } else if (cp == 0x2028 || cp == 0x2029) {
            /* Line/paragraph separators would be folded inside quotes. */
            e = cp == 0x2028 ? "\\L" : "\\P";
        }
        if (e != NULL) {
            if (out)
                fputs(e, out);
            w += strlen(e);
        } else {
            if (out)
                fwrite(p, 1, n, out);
            w += n;
        }
        i += n;
    }
    if (out)
        fputc('"', out);
    return w + 1;
}

static void emit_indent(FILE *out, int indent)
{
    for (int i = 0; i < indent; i++)
        fputc(' ', out);
}

static void dump_block(const slc_cfg_node_t *n, FILE *out, int indent, bool inline_first);

/* dump_after writes what follows "key:" or "-": a space and a one-line
 * value, or a newline and the nested block. */
static void dump_after(const slc_cfg_node_t *v, FILE *out, int indent, bool in_seq)
{
    switch (cfg_type(v)) {
    case SLC_CFG_SCALAR:
        fputc(' ', out);
        emit_scalar(out, v->text, v->text_len, v->quoted);
        fputc('\n', out);
        break;
    case SLC_CFG_MAP:
    case SLC_CFG_SEQ:
        if (v->n == 0) {
            fputs(v->type == SLC_CFG_MAP ? " {}\n" : " []\n", out);
        } else if (in_seq) {
            /* "- key: v" / "- - x": first line shares the dash's line. */
            fputc(' ', out);
            dump_block(v, out, indent + 2, true);
        } else {
            fputc('\n', out);
            dump_block(v, out, indent + 2, false);
        }
        break;
    default:
        fputs(" null\n", out);
        break;
    }
}

static void dump_block(const slc_cfg_node_t *n, FILE *out, int indent, bool inline_first)
{
    for (size_t i = 0; i < n->n; i++) {
        if (i > 0 || !inline_first)
            emit_indent(out, indent);
        if (n->type == SLC_CFG_SEQ) {
            fputc('-', out);
            dump_after(n->items[i], out, indent, true);
            continue;
        }
        const char *k = n->keys[i];
        size_t kl = strlen(k);
        /* libyaml limits implicit keys to 1024 characters; longer ones use
         * the explicit "? key" form. */
        if (emit_scalar(NULL, k, kl, false) > 1000) {
            fputs("? ", out);
            emit_scalar(out, k, kl, false);
            fputc('\n', out);
            emit_indent(out, indent);
        } else {
            emit_scalar(out, k, kl, false);
        }
        fputc(':', out);
        dump_after(n->items[i], out, indent, false);
    }
}

/* cfg_tree_dump writes block-style YAML that parses back to the same tree
 * (types, keys, scalar texts). A NULL node writes nothing. */
void cfg_tree_dump(const slc_cfg_node_t *n, FILE *out)
{
    if (n == NULL)
        return;
    switch (n->type) {
    case SLC_CFG_SCALAR:
        emit_scalar(out, n->text, n->text_len, n->quoted);
        fputc('\n', out);
        break;
    case SLC_CFG_MAP:
    case SLC_CFG_SEQ:
        if (n->n == 0)
            fputs(n->type == SLC_CFG_MAP ? "{}\n" : "[]\n", out);
        else
            dump_block(n, out, 0, false);
        break;
    default:
        fputs("null\n", out);
        break;
    }
}

/* ---- the build context's host entries ---------------------------------- */

const slc_cluster_t *cfg_build_cluster(slc_diag_t *d, slc_str_t name)
{
    return d->cluster_lookup ? d->cluster_lookup(d->build, name) : NULL;
}

void *cfg_build_alloc(slc_diag_t *d, size_t size)
{
    if (d->instance_alloc)
        return d->instance_alloc(d->build, size);
    return cfg_tree_alloc(d->tree, size);
}

slc_metric_t *cfg_build_metric(slc_diag_t *d, slc_metric_kind_t kind, const char *name,
                               const char *help)
{
    return d->metric_new ? d->metric_new(d->build, kind, name, help) : NULL;
}

slc_metric_t *cfg_build_metric_labeled(slc_diag_t *d, slc_metric_kind_t kind, const char *name,
                                       const char *help, const char *label, const char *value)
{
    return d->metric_new_labeled ? d->metric_new_labeled(d->build, kind, name, help, label, value)
                                 : NULL;
}

slc_status_t cfg_build_cluster_pool(slc_diag_t *d, const slc_cluster_t *c,
                                    const slc_pool_options_t *o)
{
    if (!c || !o || !d->cluster_pool)
        return SLC_EINVAL;
    return d->cluster_pool(d->build, c, o);
}
