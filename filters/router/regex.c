/* regex: see regex.h.
 *
 * Two stages. The parser turns the pattern into a small syntax tree (an
 * array of nodes linked by index), checking the syntax and reporting the
 * byte offset of the first problem. The compiler computes the size of every
 * subtree first, so that a pattern whose repetitions would expand past
 * RX_MAX_INSNS is refused before anything is emitted, then emits a Thompson
 * NFA: CHAR / ANY / CLASS consume one byte, SPLIT and JMP are the epsilon
 * edges, BOL / EOL are assertions, MATCH accepts.
 *
 * The matcher keeps the set of live states for the current byte and builds
 * the set for the next one; a generation mark per instruction keeps each
 * state in a set at most once, which is what makes the run linear and also
 * makes empty loops such as (a*)* terminate. Since the router only needs a
 * yes/no answer, threads carry no capture slots and their order does not
 * matter.
 */
#include "regex.h"

#include <stdlib.h>
#include <string.h>

/* ---- program ---------------------------------------------------------------- */

enum {
    OP_CHAR,  /* c */
    OP_ANY,   /* any byte but '\n' */
    OP_ANYB,  /* any byte, (?s) */
    OP_CLASS, /* byte in class x */
    OP_BOL,   /* assert position 0 */
    OP_EOL,   /* assert end of input */
    OP_SPLIT, /* go to x and y */
    OP_JMP,   /* go to x */
    OP_MATCH,
};

#define NO_PC 0xffffu

typedef struct rx_insn {
    uint8_t op;
    uint8_t c;
    uint16_t x, y;
} rx_insn_t;

struct rx {
    uint32_t size; /* bytes of the whole block */
    uint16_t ninsn;
    uint16_t nclass;
    rx_insn_t insn[]; /* followed by nclass 32-byte bitmaps */
};

static const uint8_t *rx_classes(const rx_t *re)
{
    return (const uint8_t *)(re->insn + re->ninsn);
}

/* ---- syntax tree ------------------------------------------------------------ */

enum {
    N_EMPTY,
    N_LIT,
    N_ANY,
    N_CLASS,
    N_BOL,
    N_EOL,
    N_CAT, /* kids in order */
    N_ALT, /* kids are the branches */
    N_REP, /* kid repeated min..max times (max < 0: unbounded) */
};

typedef struct node {
    uint8_t type;
    uint8_t c;     /* N_LIT */
    uint32_t cls;  /* N_CLASS: index of the bitmap */
    int min, max;  /* N_REP */
    int32_t kid;   /* first child, -1 if none */
    int32_t next;  /* next sibling, -1 if none */
    size_t pos;    /* offset in the pattern, for errors */
    uint32_t size; /* instructions, saturated at RX_MAX_INSNS + 1 */
} node_t;

typedef struct parser {
    const unsigned char *s;
    size_t len, i;
    node_t *nodes;
    size_t nnodes, ncap;
    uint8_t (*cls)[32];
    size_t ncls, ccap;
    bool icase, dotall;
    rx_error_t *err;
} parser_t;

static int fail(parser_t *p, const char *msg, size_t pos)
{
    p->err->msg = msg;
    p->err->pos = pos;
    return -1;
}

static int new_node(parser_t *p, int type, size_t pos)
{
    if (p->nnodes == p->ncap) {
        size_t cap = p->ncap ? p->ncap * 2 : 32;
        node_t *n = realloc(p->nodes, cap * sizeof(*n));
        if (n == NULL) {
            return fail(p, "out of memory", pos);
        }
        p->nodes = n;
        p->ncap = cap;
    }
    node_t *n = &p->nodes[p->nnodes];
    memset(n, 0, sizeof(*n));
    n->type = (uint8_t)type;
    n->kid = -1;
    n->next = -1;
    n->pos = pos;
    return (int)p->nnodes++;
}

/* new_class makes an empty bitmap and a node for it. */
static int new_class(parser_t *p, size_t pos)
{
    if (p->ncls == p->ccap) {
        size_t cap = p->ccap ? p->ccap * 2 : 8;
        uint8_t(*c)[32] = realloc(p->cls, cap * sizeof(*c));
        if (c == NULL) {
            return fail(p, "out of memory", pos);
        }
        p->cls = c;
        p->ccap = cap;
    }
    int n = new_node(p, N_CLASS, pos);
    if (n < 0) {
        return -1;
    }
    memset(p->cls[p->ncls], 0, 32);
    p->nodes[n].cls = (uint32_t)p->ncls++;
    return n;
}

static void bit_set(uint8_t *bm, unsigned c)
{
    bm[c >> 3] |= (uint8_t)(1u << (c & 7));
}

static bool bit_test(const uint8_t *bm, unsigned c)
{
    return (bm[c >> 3] >> (c & 7)) & 1;
}

static void set_range(uint8_t *bm, unsigned lo, unsigned hi)
{
    for (unsigned c = lo; c <= hi; c++) {
        bit_set(bm, c);
    }
}

static bool is_alpha(unsigned c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(unsigned c)
{
    return is_alpha(c) || (c >= '0' && c <= '9');
}

/* add_perl adds \d \w \s (or, upper case, their complements) to |bm|. */
static void add_perl(uint8_t *bm, unsigned e)
{
    uint8_t t[32] = {0};
    switch (e | 0x20) {
    case 'd':
        set_range(t, '0', '9');
        break;
    case 'w':
        set_range(t, '0', '9');
        set_range(t, 'A', 'Z');
        set_range(t, 'a', 'z');
        bit_set(t, '_');
        break;
    case 's': /* RE2's \s: no \v */
        bit_set(t, '\t');
        bit_set(t, '\n');
        bit_set(t, '\f');
        bit_set(t, '\r');
        bit_set(t, ' ');
        break;
    }
    bool neg = e >= 'A' && e <= 'Z';
    for (int k = 0; k < 32; k++) {
        bm[k] |= neg ? (uint8_t)~t[k] : t[k];
    }
}

static bool is_perl(unsigned e)
{
    return e == 'd' || e == 'D' || e == 'w' || e == 'W' || e == 's' || e == 'S';
}

static int hexval(unsigned c)
{
    if (c >= '0' && c <= '9') {
        return (int)(c - '0');
    }
    c |= 0x20;
    if (c >= 'a' && c <= 'f') {
        return (int)(c - 'a' + 10);
    }
    return -1;
}

/* parse_escape_byte handles the escapes that stand for one byte, with
 * p->i just past the escaped character |e| (at |epos| the backslash).
 * Returns the byte, or -1 after reporting an error. */
static int parse_escape_byte(parser_t *p, unsigned e, size_t epos)
{
    switch (e) {
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'r':
        return '\r';
    case 'f':
        return '\f';
    case 'v':
        return '\v';
    case 'a':
        return '\a';
    case 'x': {
        if (p->i + 2 > p->len) {
            return fail(p, "\\x needs two hex digits", epos);
        }
        int hi = hexval(p->s[p->i]), lo = hexval(p->s[p->i + 1]);
        if (hi < 0 || lo < 0) {
            return fail(p, "\\x needs two hex digits", epos);
        }
        p->i += 2;
        return hi * 16 + lo;
    }
    case 'b':
    case 'B':
        return fail(p, "word boundaries (\\b, \\B) are not supported", epos);
    case 'p':
    case 'P':
        return fail(p, "Unicode classes (\\p, \\P) are not supported", epos);
    }
    if (e >= '0' && e <= '9') {
        return fail(p, "backreferences and octal escapes are not supported", epos);
    }
    if (is_alnum(e)) {
        return fail(p, "unknown escape", epos);
    }
    return (int)e; /* escaped punctuation (or any other byte) is literal */
}

/* fold_case adds the other case of every letter in |bm|. */
static void fold_case(uint8_t *bm)
{
    for (unsigned c = 'a'; c <= 'z'; c++) {
        if (bit_test(bm, c) || bit_test(bm, c - 32)) {
            bit_set(bm, c);
            bit_set(bm, c - 32);
        }
    }
}

static int literal(parser_t *p, unsigned c, size_t pos)
{
    if (p->icase && is_alpha(c)) {
        int n = new_class(p, pos);
        if (n < 0) {
            return -1;
        }
        uint8_t *bm = p->cls[p->nodes[n].cls];
        bit_set(bm, c | 0x20);
        bit_set(bm, c & ~0x20u);
        return n;
    }
    int n = new_node(p, N_LIT, pos);
    if (n >= 0) {
        p->nodes[n].c = (uint8_t)c;
    }
    return n;
}

/* parse_class parses [...] with p->i at '['. */
static int parse_class(parser_t *p)
{
    size_t cpos = p->i++;
    bool neg = false;
    if (p->i < p->len && p->s[p->i] == '^') {
        neg = true;
        p->i++;
    }
    int n = new_class(p, cpos);
    if (n < 0) {
        return -1;
    }
    uint32_t ci = p->nodes[n].cls;
    bool first = true;
    for (;;) {
        if (p->i >= p->len) {
            return fail(p, "missing ']'", cpos);
        }
        unsigned c = p->s[p->i];
        if (c == ']' && !first) {
            p->i++;
            break;
        }
        first = false;
        if (c == '[' && p->i + 1 < p->len && p->s[p->i + 1] == ':') {
            return fail(p, "POSIX classes ([:alpha:]) are not supported", p->i);
        }
        size_t lpos = p->i;
        int lo;
        if (c == '\\') {
            p->i++;
            if (p->i >= p->len) {
                return fail(p, "trailing backslash", lpos);
            }
            unsigned e = p->s[p->i++];
            if (is_perl(e)) {
                add_perl(p->cls[ci], e);
                if (p->i + 1 < p->len && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
                    return fail(p, "bad character range", lpos);
                }
                continue;
            }
            lo = parse_escape_byte(p, e, lpos);
            if (lo < 0) {
                return -1;
            }
        } else {
            lo = (int)c;
            p->i++;
        }
        int hi = lo;
        if (p->i + 1 < p->len && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            unsigned h = p->s[p->i];
            if (h == '\\') {
                size_t hpos = p->i++;
                if (p->i >= p->len) {
                    return fail(p, "trailing backslash", hpos);
                }
                unsigned e = p->s[p->i++];
                if (is_perl(e)) {
                    return fail(p, "bad character range", lpos);
                }
                hi = parse_escape_byte(p, e, hpos);
                if (hi < 0) {
                    return -1;
                }
            } else {
                hi = (int)h;
                p->i++;
            }
            if (hi < lo) {
                return fail(p, "bad character range", lpos);
            }
        }
        set_range(p->cls[ci], (unsigned)lo, (unsigned)hi);
    }
    if (p->icase) {
        fold_case(p->cls[ci]);
    }
    if (neg) {
        for (int k = 0; k < 32; k++) {
            p->cls[ci][k] = (uint8_t)~p->cls[ci][k];
        }
    }
    return n;
}

/* parse_braces reads {n}, {n,} or {n,m} at p->i. Returns 1 (consumed, with
 * *min and *max set; *max < 0 for unbounded), 0 when the text is not a
 * repetition (then '{' is a literal, as in RE2), -1 on error. */
static int parse_braces(parser_t *p, int *min, int *max)
{
    size_t i = p->i + 1, bpos = p->i;
    long lo = -1, hi = -1;
    size_t digits = 0;
    for (lo = 0; i < p->len && p->s[i] >= '0' && p->s[i] <= '9'; i++, digits++) {
        if (lo <= RX_MAX_REPEAT) {
            lo = lo * 10 + (p->s[i] - '0');
        }
    }
    if (digits == 0) {
        return 0;
    }
    if (i < p->len && p->s[i] == ',') {
        i++;
        digits = 0;
        for (hi = 0; i < p->len && p->s[i] >= '0' && p->s[i] <= '9'; i++, digits++) {
            if (hi <= RX_MAX_REPEAT) {
                hi = hi * 10 + (p->s[i] - '0');
            }
        }
        if (digits == 0) {
            hi = -1;
        }
    } else {
        hi = lo;
    }
    if (i >= p->len || p->s[i] != '}') {
        return 0;
    }
    if (lo > RX_MAX_REPEAT || hi > RX_MAX_REPEAT) {
        return fail(p, "repeat count over 1000", bpos);
    }
    if (hi >= 0 && hi < lo) {
        return fail(p, "bad repeat range (max < min)", bpos);
    }
    p->i = i + 1;
    *min = (int)lo;
    *max = (int)hi;
    return 1;
}

/* at_quantifier tells whether a quantifier starts at p->i (without
 * consuming it); a '{' that is not a repetition is not one. */
static bool at_quantifier(parser_t *p)
{
    if (p->i >= p->len) {
        return false;
    }
    unsigned c = p->s[p->i];
    if (c == '*' || c == '+' || c == '?') {
        return true;
    }
    if (c != '{') {
        return false;
    }
    size_t save = p->i;
    int mn, mx;
    rx_error_t e = *p->err;
    int r = parse_braces(p, &mn, &mx);
    p->i = save;
    *p->err = e;
    return r != 0; /* an invalid count is still a quantifier (an error later) */
}

static int parse_alt(parser_t *p, int depth);

static int parse_group(parser_t *p, int depth)
{
    size_t gpos = p->i++;
    if (depth + 1 > RX_MAX_DEPTH) {
        return fail(p, "groups nested too deeply", gpos);
    }
    if (p->i < p->len && p->s[p->i] == '?') {
        p->i++;
        unsigned c = p->i < p->len ? p->s[p->i] : 0;
        if (c == ':') {
            p->i++;
        } else if (c == '=' || c == '!') {
            return fail(p, "lookahead is not supported", gpos);
        } else if (c == 'P' || c == '<') {
            if (c == 'P') {
                p->i++;
                if (p->i >= p->len || p->s[p->i] != '<') {
                    return fail(p, "unsupported group syntax", gpos);
                }
            } else if (p->i + 1 < p->len && (p->s[p->i + 1] == '=' || p->s[p->i + 1] == '!')) {
                return fail(p, "lookbehind is not supported", gpos);
            }
            p->i++; /* '<' */
            size_t name = p->i;
            while (p->i < p->len && (is_alnum(p->s[p->i]) || p->s[p->i] == '_')) {
                p->i++;
            }
            if (p->i == name || p->i >= p->len || p->s[p->i] != '>' ||
                (p->s[name] >= '0' && p->s[name] <= '9')) {
                return fail(p, "bad group name", gpos);
            }
            p->i++;
        } else {
            /* Flags: only a leading (?i), (?s) or (?is), which apply to the
             * whole pattern. */
            bool icase = false, dotall = false;
            while (p->i < p->len && (p->s[p->i] == 'i' || p->s[p->i] == 's')) {
                if (p->s[p->i] == 'i') {
                    icase = true;
                } else {
                    dotall = true;
                }
                p->i++;
            }
            if ((!icase && !dotall) || p->i >= p->len || p->s[p->i] != ')') {
                return fail(p,
                            "unsupported group syntax (only (?:, (?P<name>, (?<name> and a "
                            "leading (?i) / (?s))",
                            gpos);
            }
            if (gpos != 0) {
                return fail(p, "flags are only supported at the start of the pattern", gpos);
            }
            p->i++;
            p->icase = icase;
            p->dotall = dotall;
            return new_node(p, N_EMPTY, gpos);
        }
    }
    int inner = parse_alt(p, depth + 1);
    if (inner < 0) {
        return -1;
    }
    if (p->i >= p->len || p->s[p->i] != ')') {
        return fail(p, "missing ')'", gpos);
    }
    p->i++;
    return inner;
}

static int parse_atom(parser_t *p, int depth)
{
    size_t pos = p->i;
    unsigned c = p->s[p->i];
    switch (c) {
    case '(':
        return parse_group(p, depth);
    case '[':
        return parse_class(p);
    case '.':
        p->i++;
        return new_node(p, N_ANY, pos);
    case '^':
        p->i++;
        return new_node(p, N_BOL, pos);
    case '$':
        p->i++;
        return new_node(p, N_EOL, pos);
    case '*':
    case '+':
    case '?':
        return fail(p, "nothing to repeat", pos);
    case '{':
        if (at_quantifier(p)) {
            return fail(p, "nothing to repeat", pos);
        }
        p->i++;
        return literal(p, c, pos);
    case '\\': {
        p->i++;
        if (p->i >= p->len) {
            return fail(p, "trailing backslash", pos);
        }
        unsigned e = p->s[p->i++];
        if (is_perl(e)) {
            int n = new_class(p, pos);
            if (n >= 0) {
                add_perl(p->cls[p->nodes[n].cls], e);
            }
            return n;
        }
        if (e == 'A') {
            return new_node(p, N_BOL, pos);
        }
        if (e == 'z') {
            return new_node(p, N_EOL, pos);
        }
        int b = parse_escape_byte(p, e, pos);
        return b < 0 ? -1 : literal(p, (unsigned)b, pos);
    }
    default:
        p->i++;
        return literal(p, c, pos);
    }
}

static int parse_repeat(parser_t *p, int depth)
{
    int a = parse_atom(p, depth);
    if (a < 0 || !at_quantifier(p)) {
        return a;
    }
    size_t qpos = p->i;
    if (p->nodes[a].type == N_BOL || p->nodes[a].type == N_EOL) {
        return fail(p, "nothing to repeat", qpos);
    }
    int min, max;
    unsigned c = p->s[p->i];
    if (c == '{') {
        if (parse_braces(p, &min, &max) < 0) {
            return -1;
        }
    } else {
        p->i++;
        min = c == '+' ? 1 : 0;
        max = c == '?' ? 1 : -1;
    }
    if (p->i < p->len && p->s[p->i] == '?') {
        p->i++; /* lazy: the same language */
    } else if (p->i < p->len && p->s[p->i] == '+') {
        return fail(p, "possessive quantifiers are not supported", p->i);
    }
    if (at_quantifier(p)) {
        return fail(p, "multiple repeat", p->i);
    }
    int r = new_node(p, N_REP, qpos);
    if (r < 0) {
        return -1;
    }
    p->nodes[r].kid = a;
    p->nodes[r].min = min;
    p->nodes[r].max = max;
    return r;
}

static int parse_cat(parser_t *p, int depth)
{
    int cat = new_node(p, N_CAT, p->i);
    if (cat < 0) {
        return -1;
    }
    int last = -1, count = 0;
    while (p->i < p->len && p->s[p->i] != '|' && p->s[p->i] != ')') {
        int a = parse_repeat(p, depth);
        if (a < 0) {
            return -1;
        }
        if (last < 0) {
            p->nodes[cat].kid = a;
        } else {
            p->nodes[last].next = a;
        }
        last = a;
        count++;
    }
    if (count == 0) {
        p->nodes[cat].type = N_EMPTY;
    } else if (count == 1) {
        return p->nodes[cat].kid;
    }
    return cat;
}

static int parse_alt(parser_t *p, int depth)
{
    int first = parse_cat(p, depth);
    if (first < 0 || p->i >= p->len || p->s[p->i] != '|') {
        return first;
    }
    int alt = new_node(p, N_ALT, p->i);
    if (alt < 0) {
        return -1;
    }
    p->nodes[alt].kid = first;
    int last = first;
    while (p->i < p->len && p->s[p->i] == '|') {
        p->i++;
        int b = parse_cat(p, depth);
        if (b < 0) {
            return -1;
        }
        p->nodes[last].next = b;
        last = b;
    }
    return alt;
}

/* ---- compiler ------------------------------------------------------------------ */

#define SIZE_CAP (RX_MAX_INSNS + 1u)

static uint32_t sat_add(uint32_t a, uint64_t b)
{
    uint64_t s = (uint64_t)a + b;
    return s > SIZE_CAP ? SIZE_CAP : (uint32_t)s;
}

/* compute_size fills node.size bottom-up. Returns false after reporting the
 * first node (innermost) whose expansion passes RX_MAX_INSNS. */
static bool compute_size(parser_t *p, int n)
{
    node_t *nd = &p->nodes[n];
    uint32_t size = 0;
    switch (nd->type) {
    case N_EMPTY:
        break;
    case N_LIT:
    case N_ANY:
    case N_CLASS:
    case N_BOL:
    case N_EOL:
        size = 1;
        break;
    case N_CAT:
    case N_ALT: {
        uint32_t k = 0;
        for (int c = nd->kid; c >= 0; c = p->nodes[c].next) {
            if (!compute_size(p, c)) {
                return false;
            }
            size = sat_add(size, p->nodes[c].size);
            k++;
        }
        if (p->nodes[n].type == N_ALT) {
            size = sat_add(size, 2ull * (k - 1));
        }
        break;
    }
    case N_REP: {
        if (!compute_size(p, nd->kid)) {
            return false;
        }
        nd = &p->nodes[n];
        uint64_t s = p->nodes[nd->kid].size;
        if (s == 0) {
            break; /* repeating the empty string is the empty string */
        }
        uint64_t t = (uint64_t)nd->min * s;
        if (nd->max < 0) {
            t += nd->min == 0 ? s + 2 : 1;
        } else {
            t += (uint64_t)(nd->max - nd->min) * (s + 1);
        }
        size = sat_add(0, t);
        break;
    }
    }
    p->nodes[n].size = size;
    if (size > RX_MAX_INSNS) {
        fail(p, "pattern too large (over 1000 instructions once repetitions are expanded)",
             p->nodes[n].pos);
        return false;
    }
    return true;
}

static void emit_insn(rx_insn_t *prog, uint16_t *pc, uint8_t op, uint8_t c, uint16_t x, uint16_t y)
{
    prog[*pc] = (rx_insn_t){op, c, x, y};
    (*pc)++;
}

/* emit writes node |n| at *pc. compute_size has bounded the total, so the
 * program array (RX_MAX_INSNS + 1 entries) cannot overflow. */
static void emit(const parser_t *p, int n, rx_insn_t *prog, uint16_t *pc)
{
    const node_t *nd = &p->nodes[n];
    switch (nd->type) {
    case N_EMPTY:
        return;
    case N_LIT:
        emit_insn(prog, pc, OP_CHAR, nd->c, 0, 0);
        return;
    case N_ANY:
        emit_insn(prog, pc, p->dotall ? OP_ANYB : OP_ANY, 0, 0, 0);
        return;
    case N_CLASS:
        emit_insn(prog, pc, OP_CLASS, 0, (uint16_t)nd->cls, 0);
        return;
    case N_BOL:
        emit_insn(prog, pc, OP_BOL, 0, 0, 0);
        return;
    case N_EOL:
        emit_insn(prog, pc, OP_EOL, 0, 0, 0);
        return;
    case N_CAT:
        for (int c = nd->kid; c >= 0; c = p->nodes[c].next) {
            emit(p, c, prog, pc);
        }
        return;
    case N_ALT: {
        /* SPLIT next, L2; branch 1; JMP end; L2: SPLIT ...; last branch.
         * The JMPs are chained through their x field until |end| is known. */
        uint16_t jmps = NO_PC;
        for (int c = nd->kid; c >= 0; c = p->nodes[c].next) {
            if (p->nodes[c].next < 0) {
                emit(p, c, prog, pc);
                break;
            }
            uint16_t split = *pc;
            emit_insn(prog, pc, OP_SPLIT, 0, (uint16_t)(split + 1), 0);
            emit(p, c, prog, pc);
            uint16_t j = *pc;
            emit_insn(prog, pc, OP_JMP, 0, jmps, 0);
            jmps = j;
            prog[split].y = *pc;
        }
        while (jmps != NO_PC) {
            uint16_t nextj = prog[jmps].x;
            prog[jmps].x = *pc;
            jmps = nextj;
        }
        return;
    }
    case N_REP: {
        if (p->nodes[nd->kid].size == 0) {
            return;
        }
        if (nd->max < 0) {
            if (nd->min == 0) {
                /* L: SPLIT L+1, end; kid; JMP L; end: */
                uint16_t l = *pc;
                emit_insn(prog, pc, OP_SPLIT, 0, (uint16_t)(l + 1), 0);
                emit(p, nd->kid, prog, pc);
                emit_insn(prog, pc, OP_JMP, 0, l, 0);
                prog[l].y = *pc;
                return;
            }
            /* kid{min-1}; L: kid; SPLIT L, next */
            for (int k = 0; k < nd->min - 1; k++) {
                emit(p, nd->kid, prog, pc);
            }
            uint16_t l = *pc;
            emit(p, nd->kid, prog, pc);
            emit_insn(prog, pc, OP_SPLIT, 0, l, (uint16_t)(*pc + 1));
            return;
        }
        for (int k = 0; k < nd->min; k++) {
            emit(p, nd->kid, prog, pc);
        }
        /* (max - min) optional copies, each may skip to the end: the same
         * language as nested (x(x(x)?)?)?. Chained through y. */
        uint16_t splits = NO_PC;
        for (int k = 0; k < nd->max - nd->min; k++) {
            uint16_t s = *pc;
            emit_insn(prog, pc, OP_SPLIT, 0, (uint16_t)(s + 1), splits);
            splits = s;
            emit(p, nd->kid, prog, pc);
        }
        while (splits != NO_PC) {
            uint16_t nexts = prog[splits].y;
            prog[splits].y = *pc;
            splits = nexts;
        }
        return;
    }
    }
}

rx_t *rx_compile(const char *pattern, size_t len, rx_error_t *err)
{
    parser_t p = {.s = (const unsigned char *)pattern, .len = len, .err = err};
    rx_t *re = NULL;
    rx_insn_t *prog = NULL;

    err->msg = NULL;
    err->pos = 0;
    if (len > RX_MAX_PATTERN) {
        fail(&p, "pattern longer than 4096 bytes", RX_MAX_PATTERN);
        goto out;
    }
    int root = parse_alt(&p, 0);
    if (root < 0) {
        goto out;
    }
    if (p.i < p.len) { /* parse_alt stops only at the end or at ')' */
        fail(&p, "unmatched ')'", p.i);
        goto out;
    }
    if (!compute_size(&p, root)) {
        goto out;
    }
    prog = malloc((RX_MAX_INSNS + 1) * sizeof(*prog));
    if (prog == NULL) {
        fail(&p, "out of memory", 0);
        goto out;
    }
    uint16_t pc = 0;
    emit(&p, root, prog, &pc);
    emit_insn(prog, &pc, OP_MATCH, 0, 0, 0);

    size_t size = sizeof(rx_t) + pc * sizeof(rx_insn_t) + p.ncls * 32;
    re = malloc(size);
    if (re == NULL) {
        fail(&p, "out of memory", 0);
        goto out;
    }
    re->size = (uint32_t)size;
    re->ninsn = pc;
    re->nclass = (uint16_t)p.ncls;
    memcpy(re->insn, prog, pc * sizeof(rx_insn_t));
    if (p.ncls > 0) {
        memcpy((uint8_t *)(re->insn + pc), p.cls, p.ncls * 32);
    }
out:
    free(prog);
    free(p.nodes);
    free(p.cls);
    return re;
}

void rx_free(rx_t *re)
{
    free(re);
}

size_t rx_size(const rx_t *re)
{
    return re->size;
}

size_t rx_insns(const rx_t *re)
{
    return re->ninsn;
}

/* ---- matcher ------------------------------------------------------------------- */

typedef struct rx_run {
    const rx_t *re;
    size_t len;
    uint32_t mark[RX_MAX_INSNS + 1];
    uint16_t stack[RX_MAX_INSNS + 1];
    uint16_t list[2][RX_MAX_INSNS + 1];
} rx_run_t;

/* add_state adds |pc| and everything reachable from it through epsilon
 * edges that hold at |pos| to |list|; returns the new count. Marking on push
 * keeps each instruction on the stack and in the list at most once. */
static size_t add_state(rx_run_t *m, uint16_t *list, size_t count, uint16_t pc, size_t pos,
                        uint32_t gen)
{
    const rx_insn_t *prog = m->re->insn;
    size_t sp = 0;
    if (m->mark[pc] == gen) {
        return count;
    }
    m->mark[pc] = gen;
    m->stack[sp++] = pc;
    while (sp > 0) {
        pc = m->stack[--sp];
        const rx_insn_t *in = &prog[pc];
        uint16_t to[2];
        int nto = 0;
        switch (in->op) {
        case OP_JMP:
            to[nto++] = in->x;
            break;
        case OP_SPLIT:
            to[nto++] = in->y;
            to[nto++] = in->x;
            break;
        case OP_BOL:
            if (pos == 0) {
                to[nto++] = (uint16_t)(pc + 1);
            }
            break;
        case OP_EOL:
            if (pos == m->len) {
                to[nto++] = (uint16_t)(pc + 1);
            }
            break;
        default:
            list[count++] = pc;
            break;
        }
        for (int k = 0; k < nto; k++) {
            if (m->mark[to[k]] != gen) {
                m->mark[to[k]] = gen;
                m->stack[sp++] = to[k];
            }
        }
    }
    return count;
}

bool rx_match(const rx_t *re, const char *s, size_t len)
{
    rx_run_t m;
    if (len >= UINT32_MAX - 2) {
        return false; /* generations are 32-bit; no header is that long */
    }
    m.re = re;
    m.len = len;
    memset(m.mark, 0, re->ninsn * sizeof(m.mark[0]));
    const uint8_t *classes = rx_classes(re);
    size_t nc = add_state(&m, m.list[0], 0, 0, 0, 1);
    for (size_t i = 0; i < len; i++) {
        if (nc == 0) {
            return false;
        }
        const uint16_t *cl = m.list[i & 1];
        uint16_t *nl = m.list[(i + 1) & 1];
        unsigned ch = (unsigned char)s[i];
        uint32_t gen = (uint32_t)i + 2;
        size_t nn = 0;
        for (size_t k = 0; k < nc; k++) {
            const rx_insn_t *in = &re->insn[cl[k]];
            bool ok;
            switch (in->op) {
            case OP_CHAR:
                ok = ch == in->c;
                break;
            case OP_ANY:
                ok = ch != '\n';
                break;
            case OP_ANYB:
                ok = true;
                break;
            case OP_CLASS:
                ok = bit_test(classes + (size_t)in->x * 32, ch);
                break;
            default: /* MATCH before the end: not a full match */
                ok = false;
                break;
            }
            if (ok) {
                nn = add_state(&m, nl, nn, (uint16_t)(cl[k] + 1), i + 1, gen);
            }
        }
        nc = nn;
    }
    const uint16_t *cl = m.list[len & 1];
    for (size_t k = 0; k < nc; k++) {
        if (re->insn[cl[k]].op == OP_MATCH) {
            return true;
        }
    }
    return false;
}
