/* access-log: the format and expression compilers (pure; no host calls).
 *
 * A format string is Envoy's: literal text with operators
 * %NAME%, %NAME(ARG)% and %NAME(ARG):N% (N truncates the value). "%%" is a
 * literal '%'. Compiling at config time leaves rendering a walk over an
 * array of pieces with no parsing per request.
 */
#include "alog.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const alog_flag_names[] = {"UF", "UH", "UT", "UC", "UR",   "NR",  "DC", "LR",
                                       "UO", "DI", "FI", "RL", "UAEX", "DPE", "SI", "UPE"};
const size_t alog_nflag_names = sizeof(alog_flag_names) / sizeof(alog_flag_names[0]);

uint32_t alog_flag_bit(const char *name, size_t len)
{
    for (size_t i = 0; i < alog_nflag_names; i++) {
        if (strlen(alog_flag_names[i]) == len && memcmp(alog_flag_names[i], name, len) == 0) {
            return 1u << i;
        }
    }
    return 0;
}

enum { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED };

static const struct {
    const char *name;
    alog_op_t op;
    int arg;
    bool header; /* REQ/RESP/TRAILER: ARG is a header, "X?Y" allowed */
} ops[] = {
    {"START_TIME", ALOG_OP_START_TIME, ARG_OPTIONAL, false},
    {"REQ", ALOG_OP_REQ, ARG_REQUIRED, true},
    {"RESP", ALOG_OP_RESP, ARG_REQUIRED, true},
    {"TRAILER", ALOG_OP_UNAVAILABLE, ARG_REQUIRED, true},
    {"PROTOCOL", ALOG_OP_PROTOCOL, ARG_NONE, false},
    {"RESPONSE_CODE", ALOG_OP_RESPONSE_CODE, ARG_NONE, false},
    {"RESPONSE_FLAGS", ALOG_OP_RESPONSE_FLAGS, ARG_NONE, false},
    {"BYTES_RECEIVED", ALOG_OP_BYTES_RECEIVED, ARG_NONE, false},
    {"BYTES_SENT", ALOG_OP_BYTES_SENT, ARG_NONE, false},
    {"DURATION", ALOG_OP_DURATION, ARG_NONE, false},
    {"RESPONSE_DURATION", ALOG_OP_RESPONSE_DURATION, ARG_NONE, false},
    {"UPSTREAM_HOST", ALOG_OP_UPSTREAM_HOST, ARG_NONE, false},
    {"UPSTREAM_CLUSTER", ALOG_OP_UPSTREAM_CLUSTER, ARG_NONE, false},
    {"DOWNSTREAM_REMOTE_ADDRESS", ALOG_OP_DOWNSTREAM_REMOTE_ADDRESS, ARG_NONE, false},
    {"DOWNSTREAM_LOCAL_ADDRESS", ALOG_OP_DOWNSTREAM_LOCAL_ADDRESS, ARG_NONE, false},
    {"DOWNSTREAM_PEER_URI_SAN", ALOG_OP_DOWNSTREAM_PEER_URI_SAN, ARG_NONE, false},
    {"REQUESTED_SERVER_NAME", ALOG_OP_REQUESTED_SERVER_NAME, ARG_NONE, false},
    {"REQUEST_ID", ALOG_OP_REQUEST_ID, ARG_NONE, false},
    {"ROUTE_NAME", ALOG_OP_ROUTE_NAME, ARG_NONE, false},
    {"RBAC_POLICY", ALOG_OP_RBAC_POLICY, ARG_NONE, false},
    {"FACT", ALOG_OP_FACT, ARG_REQUIRED, false},
    {"UPSTREAM_REQUEST_ATTEMPT_COUNT", ALOG_OP_UPSTREAM_REQUEST_ATTEMPT_COUNT, ARG_NONE, false},
    /* Not served by SDK 1.4: accepted so Istio's formats load, always "-". */
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", ALOG_OP_UNAVAILABLE, ARG_NONE, false},
    {"TRACE_ID", ALOG_OP_UNAVAILABLE, ARG_NONE, false},
    {"RESPONSE_CODE_DETAILS", ALOG_OP_UNAVAILABLE, ARG_NONE, false},
    {"CONNECTION_TERMINATION_DETAILS", ALOG_OP_UNAVAILABLE, ARG_NONE, false},
    {"UPSTREAM_LOCAL_ADDRESS", ALOG_OP_UNAVAILABLE, ARG_NONE, false},
};

static void seterr(char *err, size_t errlen, size_t *colp, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void seterr(char *err, size_t errlen, size_t *colp, size_t col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen > 0) {
        vsnprintf(err, errlen, fmt, ap);
    }
    va_end(ap);
    *colp = col;
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static bool push(alog_fmt_t *f, size_t *cap, alog_piece_t p)
{
    if (f->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        alog_piece_t *np = realloc(f->pieces, nc * sizeof(*np));
        if (np == NULL) {
            return false;
        }
        f->pieces = np;
        *cap = nc;
    }
    f->pieces[f->n++] = p;
    return true;
}

void alog_fmt_free(alog_fmt_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->pieces[i].text);
        free(f->pieces[i].alt);
    }
    free(f->pieces);
    f->pieces = NULL;
    f->n = 0;
}

bool alog_fmt_numeric(const alog_fmt_t *f)
{
    if (f->n != 1) {
        return false;
    }
    switch (f->pieces[0].op) {
    case ALOG_OP_RESPONSE_CODE:
    case ALOG_OP_BYTES_RECEIVED:
    case ALOG_OP_BYTES_SENT:
    case ALOG_OP_DURATION:
    case ALOG_OP_RESPONSE_DURATION:
    case ALOG_OP_UPSTREAM_REQUEST_ATTEMPT_COUNT:
        return true;
    default:
        return false;
    }
}

static bool is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || c == '_' || (c >= '0' && c <= '9');
}

bool alog_fmt_compile(const char *s, size_t len, alog_fmt_t *out, char *err, size_t errlen,
                      size_t *col)
{
    alog_fmt_t f = {0};
    size_t cap = 0;
    char *lit = malloc(len + 1); /* literal text gathered so far */
    size_t nlit = 0;
    if (lit == NULL) {
        seterr(err, errlen, col, 1, "out of memory");
        return false;
    }
    size_t i = 0;
    while (i < len) {
        if (s[i] != '%') {
            lit[nlit++] = s[i++];
            continue;
        }
        size_t start = i; /* column start + 1 */
        if (i + 1 < len && s[i + 1] == '%') {
            lit[nlit++] = '%';
            i += 2;
            continue;
        }
        size_t j = i + 1;
        while (j < len && is_name_char(s[j])) {
            j++;
        }
        if (j == i + 1) {
            seterr(err, errlen, col, start + 1,
                   "'%%' not followed by an operator name (write %%%% for a literal '%%')");
            goto fail;
        }
        size_t k;
        for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
            if (strlen(ops[k].name) == j - i - 1 &&
                memcmp(ops[k].name, s + i + 1, j - i - 1) == 0) {
                break;
            }
        }
        if (k == sizeof(ops) / sizeof(ops[0])) {
            seterr(err, errlen, col, start + 1, "unknown operator %%%.*s%%", (int)(j - i - 1),
                   s + i + 1);
            goto fail;
        }
        alog_piece_t p = {.op = ops[k].op};
        if (j < len && s[j] == '(') {
            if (ops[k].arg == ARG_NONE) {
                seterr(err, errlen, col, j + 1, "operator %%%s%% takes no argument", ops[k].name);
                goto fail;
            }
            /* The argument ends at the first ')' followed by '%' or ':'
             * (a strftime format may itself hold ')'). */
            size_t a = j + 1, e = a;
            while (e < len &&
                   !(s[e] == ')' && e + 1 < len && (s[e + 1] == '%' || s[e + 1] == ':'))) {
                e++;
            }
            if (e >= len) {
                seterr(err, errlen, col, j + 1, "unterminated argument of %%%s%%", ops[k].name);
                goto fail;
            }
            if (e == a) {
                seterr(err, errlen, col, a + 1, "empty argument of %%%s%%", ops[k].name);
                goto fail;
            }
            if (ops[k].header) {
                const char *q = memchr(s + a, '?', e - a);
                size_t l1 = q ? (size_t)(q - (s + a)) : e - a;
                if (l1 == 0 || (q != NULL && (size_t)(s + e - q - 1) == 0)) {
                    seterr(err, errlen, col, a + 1, "empty header name in %%%s(...)%%",
                           ops[k].name);
                    goto fail;
                }
                if (q != NULL && memchr(q + 1, '?', (size_t)(s + e - q - 1)) != NULL) {
                    seterr(err, errlen, col, a + 1, "more than one '?' in %%%s(...)%%",
                           ops[k].name);
                    goto fail;
                }
                p.text = dupn(s + a, l1);
                p.len = l1;
                if (q != NULL) {
                    p.alt_len = (size_t)(s + e - q - 1);
                    p.alt = dupn(q + 1, p.alt_len);
                }
            } else {
                p.text = dupn(s + a, e - a);
                p.len = e - a;
            }
            j = e + 1;
        } else if (ops[k].arg == ARG_REQUIRED) {
            seterr(err, errlen, col, j + 1, "operator %%%s%% needs an argument: %%%s(...)%%",
                   ops[k].name, ops[k].name);
            goto fail;
        }
        if (j < len && s[j] == ':') {
            size_t d = j + 1;
            uint64_t n = 0;
            while (d < len && s[d] >= '0' && s[d] <= '9' && n < 1000000) {
                n = n * 10 + (uint64_t)(s[d] - '0');
                d++;
            }
            if (d == j + 1 || n == 0 || n >= 1000000) {
                seterr(err, errlen, col, j + 1, "bad length after ':' (1..999999)");
                free(p.text);
                free(p.alt);
                goto fail;
            }
            p.max_len = (size_t)n;
            j = d;
        }
        if (j >= len || s[j] != '%') {
            seterr(err, errlen, col, j + 1, "operator %%%s not closed by '%%'", ops[k].name);
            free(p.text);
            free(p.alt);
            goto fail;
        }
        i = j + 1;
        if (nlit > 0) {
            alog_piece_t l = {.op = ALOG_OP_LITERAL, .text = dupn(lit, nlit), .len = nlit};
            if (l.text == NULL || !push(&f, &cap, l)) {
                free(l.text);
                free(p.text);
                free(p.alt);
                seterr(err, errlen, col, start + 1, "out of memory");
                goto fail;
            }
            nlit = 0;
        }
        if (!push(&f, &cap, p)) {
            free(p.text);
            free(p.alt);
            seterr(err, errlen, col, start + 1, "out of memory");
            goto fail;
        }
    }
    if (nlit > 0) {
        alog_piece_t l = {.op = ALOG_OP_LITERAL, .text = dupn(lit, nlit), .len = nlit};
        if (l.text == NULL || !push(&f, &cap, l)) {
            free(l.text);
            seterr(err, errlen, col, len, "out of memory");
            goto fail;
        }
    }
    free(lit);
    *out = f;
    return true;
fail:
    free(lit);
    alog_fmt_free(&f);
    *out = (alog_fmt_t){0};
    return false;
}

/* ---- expressions ---------------------------------------------------------- */

void alog_expr_free(alog_expr_t *e)
{
    free(e->terms);
    e->terms = NULL;
    e->n = 0;
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }
    return i;
}

bool alog_expr_compile(const char *s, size_t len, alog_expr_t *out, char *err, size_t errlen,
                       size_t *col)
{
    alog_expr_t e = {0};
    size_t cap = 0;
    size_t i = skip_ws(s, len, 0);
    for (;;) {
        alog_term_t t = {0};
        static const char code[] = "response.code", dur[] = "response.duration";
        if (len - i >= sizeof(dur) - 1 && memcmp(s + i, dur, sizeof(dur) - 1) == 0) {
            t.attr = ALOG_ATTR_DURATION;
            i += sizeof(dur) - 1;
        } else if (len - i >= sizeof(code) - 1 && memcmp(s + i, code, sizeof(code) - 1) == 0) {
            t.attr = ALOG_ATTR_CODE;
            i += sizeof(code) - 1;
        } else {
            seterr(err, errlen, col, i + 1,
                   "expected response.code or response.duration (the supported forms are "
                   "ATTR OP INTEGER joined by && or ||)");
            goto fail;
        }
        i = skip_ws(s, len, i);
        if (i + 1 < len && s[i] == '>' && s[i + 1] == '=') {
            t.cmp = ALOG_GE, i += 2;
        } else if (i + 1 < len && s[i] == '<' && s[i + 1] == '=') {
            t.cmp = ALOG_LE, i += 2;
        } else if (i + 1 < len && s[i] == '=' && s[i + 1] == '=') {
            t.cmp = ALOG_EQ, i += 2;
        } else if (i + 1 < len && s[i] == '!' && s[i + 1] == '=') {
            t.cmp = ALOG_NE, i += 2;
        } else if (i < len && s[i] == '>') {
            t.cmp = ALOG_GT, i += 1;
        } else if (i < len && s[i] == '<') {
            t.cmp = ALOG_LT, i += 1;
        } else {
            seterr(err, errlen, col, i + 1, "expected a comparison (== != < <= > >=)");
            goto fail;
        }
        i = skip_ws(s, len, i);
        size_t d = i;
        int64_t v = 0;
        while (d < len && s[d] >= '0' && s[d] <= '9' && v < 1000000000000LL) {
            v = v * 10 + (s[d] - '0');
            d++;
        }
        if (d == i || (d < len && s[d] >= '0' && s[d] <= '9')) {
            seterr(err, errlen, col, i + 1, "expected a non-negative integer below 10^12");
            goto fail;
        }
        t.value = v;
        i = skip_ws(s, len, d);
        bool more = false;
        if (i + 1 < len && s[i] == '&' && s[i + 1] == '&') {
            more = true, i += 2;
        } else if (i + 1 < len && s[i] == '|' && s[i + 1] == '|') {
            more = true, t.or_next = true, i += 2;
        } else if (i < len) {
            seterr(err, errlen, col, i + 1, "expected && or || or the end of the expression");
            goto fail;
        }
        if (e.n == cap) {
            size_t nc = cap ? cap * 2 : 4;
            alog_term_t *nt = realloc(e.terms, nc * sizeof(*nt));
            if (nt == NULL) {
                seterr(err, errlen, col, i + 1, "out of memory");
                goto fail;
            }
            e.terms = nt;
            cap = nc;
        }
        e.terms[e.n++] = t;
        if (!more) {
            break;
        }
        i = skip_ws(s, len, i);
    }
    *out = e;
    return true;
fail:
    alog_expr_free(&e);
    *out = (alog_expr_t){0};
    return false;
}

static bool term_eval(const alog_term_t *t, int64_t code, int64_t dur)
{
    int64_t a = t->attr == ALOG_ATTR_CODE ? code : dur;
    switch (t->cmp) {
    case ALOG_EQ:
        return a == t->value;
    case ALOG_NE:
        return a != t->value;
    case ALOG_LT:
        return a < t->value;
    case ALOG_LE:
        return a <= t->value;
    case ALOG_GT:
        return a > t->value;
    case ALOG_GE:
        return a >= t->value;
    }
    return false;
}

bool alog_expr_eval(const alog_expr_t *e, int64_t code, int64_t duration_ms)
{
    if (e->n == 0) {
        return true;
    }
    bool conj = true;
    for (size_t i = 0; i < e->n; i++) {
        conj = conj && term_eval(&e->terms[i], code, duration_ms);
        if (e->terms[i].or_next || i + 1 == e->n) {
            if (conj) {
                return true;
            }
            conj = true;
        }
    }
    return false;
}

/* ---- time and UTF-8 ------------------------------------------------------- */

size_t alog_strftime(const char *fmt, uint64_t us, char *out, size_t cap)
{
    if (cap == 0) {
        return 0;
    }
    if (fmt == NULL) {
        fmt = "%Y-%m-%dT%H:%M:%S.%3fZ";
    }
    time_t sec = (time_t)(us / 1000000);
    unsigned nanos = (unsigned)(us % 1000000) * 1000u;
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t o = 0;
    char seg[256];
    size_t ns = 0;
    /* Segments between fractional-second directives go through strftime;
     * a segment longer than |seg| is cut (formats are short). */
    for (const char *p = fmt;; p++) {
        int digits = -1;
        size_t skip = 0;
        if (*p == '%' && p[1] == 'f') {
            digits = 9, skip = 2;
        } else if (*p == '%' && p[1] >= '1' && p[1] <= '9' && p[2] == 'f') {
            digits = p[1] - '0', skip = 3;
        }
        if (digits >= 0 || *p == '\0') {
            seg[ns] = '\0';
            if (ns > 0 && o < cap) {
                o += strftime(out + o, cap - o, seg, &tm);
            }
            ns = 0;
            if (*p == '\0') {
                break;
            }
            char frac[16];
            snprintf(frac, sizeof(frac), "%09u", nanos);
            for (int d = 0; d < digits && o + 1 < cap; d++) {
                out[o++] = frac[d];
            }
            p += skip - 1;
            continue;
        }
        if (*p == '%' && p[1] != '\0' && ns + 2 < sizeof(seg)) {
            seg[ns++] = *p++; /* keep "%x" (and "%%") together */
            seg[ns++] = *p;
            continue;
        }
        if (ns + 1 < sizeof(seg)) {
            seg[ns++] = *p;
        }
    }
    if (o >= cap) {
        o = cap - 1;
    }
    out[o] = '\0';
    return o;
}

size_t alog_utf8_sanitize(const char *s, size_t len, char *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < len) {
        unsigned c = u[i];
        size_t n = 0;
        uint32_t cp = 0, min = 0;
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07, min = 0x10000;
        }
        bool ok = n > 0;
        for (size_t k = 1; ok && k <= n; k++) {
            if (i + k >= len || (u[i + k] & 0xc0) != 0x80) {
                ok = false;
            } else {
                cp = (cp << 6) | (u[i + k] & 0x3f);
            }
        }
        if (ok && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) {
            ok = false;
        }
        if (ok) {
            memcpy(out + o, s + i, n + 1);
            o += n + 1;
            i += n + 1;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3); /* U+FFFD for this one byte */
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return o;
}
