/* h1: HTTP/1.1 message-head parser and chunked-framing decoder (RFC 9112).
 *
 * Every function here is a single forward pass over the caller's bytes with
 * no allocation and no recursion. The head parsers are stateless: the caller
 * passes the whole buffered head again when more bytes arrive, so a head is
 * scanned at most once per call and never past |max_head| bytes.
 *
 * The head parser decides at the earliest byte that settles the outcome, and
 * looks at the same window (the first min(len, max_head) bytes) whatever the
 * length, so a prefix of some input never yields H1_OK or H1_ERROR where the
 * whole input yields something else. The fuzz target checks that property.
 */
#include "h1.h"

#include <sluice/util.h>
#include <string.h>

#define H1_DEFAULT_MAX_LINE     8192
#define H1_DEFAULT_MAX_HEAD     65536
#define H1_DEFAULT_MAX_HEADERS  100
#define H1_DEFAULT_CHUNK_LINE   4096
#define H1_DEFAULT_TRAILERS     8192
#define H1_MAX_LENGTH           ((uint64_t)1 << 62)
#define H1_MAX_CHUNK_SIZE_HEXES 16

/* Character classes (RFC 9110 section 5.6.2, RFC 3986 section 2). */

/* tchar_table: RFC 9110 5.6.2 tchar (ALPHA, DIGIT and these 15 marks), so
 * the hot loops over names do one load per byte instead of a range test and
 * a switch. tests/unit/core/test_h1.c checks it byte by byte. */
#define T1(c) [c] = 1
static const uint8_t tchar_table[256] = {
    T1('!'), T1('#'), T1('$'), T1('%'), T1('&'), T1('\''), T1('*'), T1('+'), T1('-'), T1('.'),
    T1('^'), T1('_'), T1('`'), T1('|'), T1('~'), T1('0'),  T1('1'), T1('2'), T1('3'), T1('4'),
    T1('5'), T1('6'), T1('7'), T1('8'), T1('9'), T1('A'),  T1('B'), T1('C'), T1('D'), T1('E'),
    T1('F'), T1('G'), T1('H'), T1('I'), T1('J'), T1('K'),  T1('L'), T1('M'), T1('N'), T1('O'),
    T1('P'), T1('Q'), T1('R'), T1('S'), T1('T'), T1('U'),  T1('V'), T1('W'), T1('X'), T1('Y'),
    T1('Z'), T1('a'), T1('b'), T1('c'), T1('d'), T1('e'),  T1('f'), T1('g'), T1('h'), T1('i'),
    T1('j'), T1('k'), T1('l'), T1('m'), T1('n'), T1('o'),  T1('p'), T1('q'), T1('r'), T1('s'),
    T1('t'), T1('u'), T1('v'), T1('w'), T1('x'), T1('y'),  T1('z'),
};
#undef T1

static inline bool is_tchar(unsigned char c)
{
    return tchar_table[c];
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* is_field_char: field-vchar, SP or HTAB; obs-text (0x80-0xFF) included. */
static bool is_field_char(unsigned char c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static bool is_sub_delim(unsigned char c)
{
    switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
        return true;
    default:
        return false;
    }
}

/* lit_eq compares |s| with a literal of lower-case letters and '-', eight
 * bytes at a time: OR-ing 0x20 lowers a letter and leaves '-' alone. Only
 * CR (0x0d) would also turn into '-', and no caller passes one: names are
 * tchars, list tokens come from validated field values. */
static bool lit_eq(const char *s, const char *lit, size_t n)
{
    uint64_t a, b;
    for (; n >= 8; s += 8, lit += 8, n -= 8) {
        memcpy(&a, s, 8);
        memcpy(&b, lit, 8);
        if ((a | 0x2020202020202020ull) != b)
            return false;
    }
    for (; n; s++, lit++, n--)
        if (((unsigned char)*s | 0x20) != (unsigned char)*lit)
            return false;
    return true;
}

/* field_chars_ok: every byte is a field-vchar, SP, HTAB or obs-text. Eight
 * bytes at a time: a word with no byte below 0x20 and none equal to 0x7f is
 * accepted at once; a word that may have one is checked byte by byte. */
static bool field_chars_ok(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t ctl = (x - ones * 0x20) & ~x & highs; /* some byte < 0x20 (maybe) */
        uint64_t y = x ^ (ones * 0x7f);
        uint64_t del = (y - ones) & ~y & highs; /* some byte == 0x7f (maybe) */
        if (ctl | del) {
            for (size_t k = i; k < i + 8; k++)
                if (!is_field_char((unsigned char)s[k]))
                    return false;
        }
    }
    for (; i < n; i++)
        if (!is_field_char((unsigned char)s[i]))
            return false;
    return true;
}

static bool ci_eq(const char *a, const char *b, size_t len)
{
    return slcu_caseeq((slc_str_t){a, len}, (slc_str_t){b, len});
}

bool h1_token_eq(const char *s, size_t len, const char *lower)
{
    size_t n = strlen(lower);
    if (n != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (slcu_lower((unsigned char)s[i]) != (unsigned char)lower[i])
            return false;
    }
    return true;
}

h1_hdr_kind_t h1_classify(const char *name, size_t n)
{
/* The literal's length is the switch label, so ci_eq compares n bytes.
 * Most names fail on their first byte (|0x20 lowers a letter; no literal
 * starts with a non-letter), so that is tested before the loop. */
#define IS(lit) ((((unsigned char)name[0]) | 0x20) == (lit)[0] && lit_eq(name, lit, n))
    switch (n) {
    case 2:
        return IS("te") ? H1H_TE : H1H_OTHER;
    case 3:
        return IS("via") ? H1H_VIA : H1H_OTHER;
    case 4:
        return IS("host") ? H1H_HOST : H1H_OTHER;
    case 6:
        return IS("expect") ? H1H_EXPECT : H1H_OTHER;
    case 7:
        return IS("trailer") ? H1H_TRAILER : IS("upgrade") ? H1H_UPGRADE : H1H_OTHER;
    case 10:
        return IS("connection") ? H1H_CONNECTION : IS("keep-alive") ? H1H_KEEP_ALIVE : H1H_OTHER;
    case 12:
        return IS("x-request-id") ? H1H_X_REQUEST_ID : H1H_OTHER;
    case 14:
        return IS("content-length") ? H1H_CONTENT_LENGTH : H1H_OTHER;
    case 15:
        return IS("x-forwarded-for") ? H1H_X_FORWARDED_FOR : H1H_OTHER;
    case 16:
        return IS("proxy-connection") ? H1H_PROXY_CONNECTION : H1H_OTHER;
    case 17:
        return IS("transfer-encoding")   ? H1H_TRANSFER_ENCODING
               : IS("x-forwarded-proto") ? H1H_X_FORWARDED_PROTO
                                         : H1H_OTHER;
    default:
        return H1H_OTHER;
    }
#undef IS
}

bool h1_is_hop_by_hop(const char *name, size_t len)
{
    return h1_kind_is_hop(h1_classify(name, len));
}

bool h1_valid_header_name(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* h1_valid_header_value follows the field-value grammar exactly, so leading
 * or trailing whitespace is rejected too: a receiver would strip it, and a
 * value that changes in transit is a value two hops may disagree on. */
bool h1_valid_header_value(const char *s, size_t len)
{
    if (len == 0)
        return true;
    if (is_ows((unsigned char)s[0]) || is_ows((unsigned char)s[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_field_char((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* list_next yields the next non-empty element of a comma-separated list
 * (RFC 9110 section 5.6.1) in |s|[*pos..n), OWS trimmed. Empty elements are
 * skipped, as the RFC asks of recipients. */
static bool list_next(const char *s, size_t n, size_t *pos, const char **out, size_t *out_len)
{
    size_t i = *pos;
    while (i < n && (is_ows((unsigned char)s[i]) || s[i] == ','))
        i++;
    if (i == n) {
        *pos = i;
        return false;
    }
    size_t start = i;
    while (i < n && s[i] != ',')
        i++;
    size_t end = i;
    while (end > start && is_ows((unsigned char)s[end - 1]))
        end--;
    *out = s + start;
    *out_len = end - start;
    *pos = i;
    return true;
}

bool h1_connection_lists(const h1_header_t *hdrs, size_t n, const char *name, size_t len)
{
    for (size_t h = 0; h < n; h++) {
        if (!h1_token_eq(hdrs[h].name, hdrs[h].name_len, "connection"))
            continue;
        size_t pos = 0;
        const char *e;
        size_t elen;
        while (list_next(hdrs[h].value, hdrs[h].value_len, &pos, &e, &elen)) {
            if (elen == len && ci_eq(e, name, len))
                return true;
        }
    }
    return false;
}

bool h1_connection_names_others(const h1_header_t *hdrs, size_t n)
{
    for (size_t h = 0; h < n; h++) {
        if (hdrs[h].kind != H1H_CONNECTION)
            continue;
        size_t pos = 0;
        const char *e;
        size_t elen;
        while (list_next(hdrs[h].value, hdrs[h].value_len, &pos, &e, &elen)) {
            if (!h1_token_eq(e, elen, "close") && !h1_kind_is_hop(h1_classify(e, elen)))
                return true;
        }
    }
    return false;
}

void h1_conn_names_init(h1_conn_names_t *c, const h1_header_t *hdrs, size_t n)
{
    c->v = c->few;
    c->n = 0;
    if (!h1_connection_names_others(hdrs, n))
        return;
    for (size_t i = 0; i < n; i++) {
        if (hdrs[i].kind != H1H_CONNECTION)
            continue;
        if (c->n == sizeof(c->few) / sizeof(c->few[0])) {
            /* past 8 Connection fields (no real peer sends that many) the
             * whole head is consulted: slower, never wrong */
            c->v = hdrs;
            c->n = n;
            return;
        }
        c->few[c->n++] = hdrs[i];
    }
}

/* valid_authority checks uri-host [ ":" port ] (RFC 3986 section 3.2.2, no
 * userinfo). An empty value is allowed unless |need_port| (RFC 9110 section
 * 7.2 sends an empty Host for URIs without authority), but a port without a
 * host is not. CONNECT targets need both host and port. */
static bool valid_authority(const char *s, size_t n, bool need_port)
{
    size_t i = 0;
    if (n == 0)
        return !need_port;
    if (s[0] == '[') {
        i = 1;
        while (i < n && s[i] != ']') {
            unsigned char c = (unsigned char)s[i];
            if (!(is_unreserved(c) || is_sub_delim(c) || c == ':'))
                return false;
            i++;
        }
        if (i == n || i == 1)
            return false;
        i++;
    } else {
        while (i < n && s[i] != ':') {
            unsigned char c = (unsigned char)s[i];
            if (is_unreserved(c) || is_sub_delim(c)) {
                i++;
            } else if (c == '%' && i + 2 < n && hex_value((unsigned char)s[i + 1]) >= 0 &&
                       hex_value((unsigned char)s[i + 2]) >= 0) {
                i += 3;
            } else {
                return false;
            }
        }
        if (i == 0)
            return false;
    }
    if (i == n)
        return !need_port;
    if (s[i] != ':')
        return false;
    i++;
    size_t digits = n - i;
    if (digits == 0)
        return !need_port;
    if (digits > 5)
        return false;
    unsigned port = 0;
    for (; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return false;
        port = port * 10 + (unsigned)(s[i] - '0');
    }
    return port <= 65535;
}

/* Head scanning. */

enum line_scan {
    LINE_OK,
    LINE_MORE,
    LINE_BARE_LF,
    LINE_BARE_CR,
    LINE_TOO_LONG,
};

/* scan_line finds the CRLF ending the line that starts at |pos|, looking at
 * no byte at or past |end|. *out_stop is the CR of the CRLF on LINE_OK, and
 * the first byte not known to be fine otherwise. A line whose content would
 * pass |max| bytes is LINE_TOO_LONG at its (max+1)-th byte. */
static enum line_scan scan_line(const char *buf, size_t pos, size_t end, size_t max,
                                size_t *out_stop)
{
    /* The verdict of a byte-by-byte walk that stops at the first CR or LF,
     * or at |max| bytes: found with memchr, which scans a word at a time. */
    bool capped = max < end - pos; /* the walk would reach byte pos+max */
    size_t lim = capped ? pos + max + 1 : end;
    const char *lf = memchr(buf + pos, '\n', lim - pos);
    size_t stop = lf ? (size_t)(lf - buf) : lim;
    const char *cr = memchr(buf + pos, '\r', stop - pos);
    if (cr) {
        size_t i = (size_t)(cr - buf);
        *out_stop = i;
        if (i + 1 == end)
            return LINE_MORE;
        return buf[i + 1] == '\n' ? LINE_OK : LINE_BARE_CR;
    }
    if (lf) {
        *out_stop = stop;
        return LINE_BARE_LF;
    }
    if (capped) {
        *out_stop = pos + max;
        return LINE_TOO_LONG;
    }
    *out_stop = end;
    return LINE_MORE;
}

/* struct fields is what the header lines of one head add up to. */
struct fields {
    bool is_request;
    int version_minor;
    h1_header_t *hdrs;
    size_t max_count;
    size_t nheaders;
    bool has_cl;
    uint64_t cl;
    bool has_te;
    unsigned te_chunked;
    bool te_last_chunked;
    unsigned nhost;
    const char *host;
    size_t host_len;
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool has_upgrade;
    bool expect_continue;
};

enum cl_parse {
    CL_OK,
    CL_BAD,
    CL_MISMATCH,
};

/* parse_content_length accepts 1*DIGIT, or a list of equal such values
 * ("5, 5": RFC 9110 section 8.6 lets a recipient fold it). No sign, no
 * empty element, at most 2^62. */
static enum cl_parse parse_content_length(const char *s, size_t n, uint64_t *out)
{
    size_t i = 0;
    bool have = false;
    uint64_t first = 0;
    for (;;) {
        while (i < n && is_ows((unsigned char)s[i]))
            i++;
        size_t d0 = i;
        uint64_t v = 0;
        while (i < n && is_digit((unsigned char)s[i])) {
            uint64_t d = (uint64_t)(s[i] - '0');
            if (v > (H1_MAX_LENGTH - d) / 10)
                return CL_BAD;
            v = v * 10 + d;
            i++;
        }
        if (i == d0)
            return CL_BAD;
        while (i < n && is_ows((unsigned char)s[i]))
            i++;
        if (have && v != first)
            return CL_MISMATCH;
        first = v;
        have = true;
        if (i == n)
            break;
        if (s[i] != ',')
            return CL_BAD;
        i++;
    }
    *out = first;
    return CL_OK;
}

/* skip_quoted_string steps over a quoted-string starting at |s|[*pos] == '"'.
 * Returns false if it is malformed or unterminated. */
static bool skip_quoted_string(const char *s, size_t n, size_t *pos)
{
    size_t i = *pos + 1;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            *pos = i + 1;
            return true;
        }
        if (c == '\\') {
            if (i + 1 == n || !is_field_char((unsigned char)s[i + 1]))
                return false;
            i += 2;
            continue;
        }
        if (!is_field_char(c))
            return false;
        i++;
    }
    return false;
}

static bool skip_token(const char *s, size_t n, size_t *pos)
{
    size_t i = *pos;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == *pos)
        return false;
    *pos = i;
    return true;
}

static void skip_ows(const char *s, size_t n, size_t *pos)
{
    while (*pos < n && is_ows((unsigned char)s[*pos]))
        (*pos)++;
}

static bool fail(int *status, const char **reason, int st, const char *why)
{
    *status = st;
    *reason = why;
    return false;
}

/* add_transfer_encoding applies one Transfer-Encoding field line:
 * 1#transfer-coding with optional parameters. Unlike other lists, an empty
 * element is an error here: lenience in this header is what smuggling
 * feeds on. Requests accept only "chunked", once and without parameters. */
static bool add_transfer_encoding(struct fields *f, const char *s, size_t n, int *status,
                                  const char **reason)
{
    size_t i = 0;
    if (f->version_minor == 0)
        return fail(status, reason, 400, "te_http10");
    f->has_te = true;
    for (;;) {
        skip_ows(s, n, &i);
        size_t t0 = i;
        if (!skip_token(s, n, &i))
            return fail(status, reason, 400, "bad_transfer_encoding");
        size_t t1 = i;
        bool params = false;
        skip_ows(s, n, &i);
        while (i < n && s[i] == ';') {
            i++;
            skip_ows(s, n, &i);
            if (!skip_token(s, n, &i))
                return fail(status, reason, 400, "bad_transfer_encoding");
            skip_ows(s, n, &i);
            if (i == n || s[i] != '=')
                return fail(status, reason, 400, "bad_transfer_encoding");
            i++;
            skip_ows(s, n, &i);
            bool ok = (i < n && s[i] == '"') ? skip_quoted_string(s, n, &i) : skip_token(s, n, &i);
            if (!ok)
                return fail(status, reason, 400, "bad_transfer_encoding");
            skip_ows(s, n, &i);
            params = true;
        }
        if (i < n && s[i] != ',')
            return fail(status, reason, 400, "bad_transfer_encoding");
        if (h1_token_eq(s + t0, t1 - t0, "chunked")) {
            if (params)
                return fail(status, reason, 400, "bad_transfer_encoding");
            if (++f->te_chunked > 1)
                return fail(status, reason, 400, "te_chunked_twice");
            f->te_last_chunked = true;
        } else {
            if (f->is_request)
                return fail(status, reason, 501, "te_unsupported");
            f->te_last_chunked = false;
        }
        if (i == n)
            return true;
        i++; /* ',' */
    }
}

/* field_line parses the header line |buf|[pos..eol) into |f|. */
static bool field_line(struct fields *f, const char *buf, size_t pos, size_t eol, int *status,
                       const char **reason)
{
    if (is_ows((unsigned char)buf[pos]))
        return fail(status, reason, 400, "obs_fold");
    size_t i = pos;
    while (i < eol && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == pos || i == eol)
        return fail(status, reason, 400, "bad_header_name");
    if (buf[i] != ':') {
        if (is_ows((unsigned char)buf[i]))
            return fail(status, reason, 400, "space_before_colon");
        return fail(status, reason, 400, "bad_header_name");
    }
    const char *name = buf + pos;
    size_t name_len = i - pos;
    size_t v = i + 1;
    while (v < eol && is_ows((unsigned char)buf[v]))
        v++;
    size_t ve = eol;
    while (ve > v && is_ows((unsigned char)buf[ve - 1]))
        ve--;
    if (!field_chars_ok(buf + v, ve - v))
        return fail(status, reason, 400, "bad_header_value");
    if (f->nheaders >= f->max_count)
        return fail(status, reason, 431, "too_many_headers");
    const char *value = buf + v;
    size_t value_len = ve - v;
    h1_header_t *h = &f->hdrs[f->nheaders++];
    h->name = name;
    h->name_len = name_len;
    h->value = value;
    h->value_len = value_len;
    h->kind = (uint8_t)h1_classify(name, name_len);

    switch (h->kind) {
    case H1H_CONTENT_LENGTH: {
        uint64_t cl = 0;
        switch (parse_content_length(value, value_len, &cl)) {
        case CL_BAD:
            return fail(status, reason, 400, "bad_content_length");
        case CL_MISMATCH:
            return fail(status, reason, 400, "cl_mismatch");
        case CL_OK:
            break;
        }
        if (f->has_cl && f->cl != cl)
            return fail(status, reason, 400, "cl_mismatch");
        f->has_cl = true;
        f->cl = cl;
        break;
    }
    case H1H_TRANSFER_ENCODING:
        if (!add_transfer_encoding(f, value, value_len, status, reason))
            return false;
        break;
    case H1H_CONNECTION: {
        size_t p = 0;
        const char *e;
        size_t elen;
        while (list_next(value, value_len, &p, &e, &elen)) {
            if (h1_token_eq(e, elen, "close"))
                f->conn_close = true;
            else if (h1_token_eq(e, elen, "keep-alive"))
                f->conn_keep_alive = true;
            else if (h1_token_eq(e, elen, "upgrade"))
                f->conn_upgrade = true;
        }
        break;
    }
    case H1H_HOST:
        if (!f->is_request)
            break;
        if (++f->nhost > 1)
            return fail(status, reason, 400, "duplicate_host");
        if (!valid_authority(value, value_len, false))
            return fail(status, reason, 400, "bad_host");
        f->host = value;
        f->host_len = value_len;
        break;
    case H1H_EXPECT: {
        if (!f->is_request)
            break;
        size_t p = 0;
        const char *e;
        size_t elen;
        while (list_next(value, value_len, &p, &e, &elen)) {
            if (h1_token_eq(e, elen, "100-continue"))
                f->expect_continue = true;
        }
        break;
    }
    case H1H_UPGRADE:
        if (f->is_request)
            f->has_upgrade = true;
        break;
    default:
        break;
    }
    return true;
}

/* parse_fields parses header lines from |pos| up to the empty line, never
 * looking at or past |scan_end| (= min(len, max_head)). */
static h1_result_t parse_fields(struct fields *f, const char *buf, size_t pos, size_t scan_end,
                                size_t len, size_t max_head, size_t *out_head_len, int *status,
                                const char **reason)
{
    for (;;) {
        size_t eol;
        switch (scan_line(buf, pos, scan_end, SIZE_MAX, &eol)) {
        case LINE_BARE_LF:
            fail(status, reason, 400, "bare_lf");
            return H1_ERROR;
        case LINE_BARE_CR:
            fail(status, reason, 400, "bare_cr");
            return H1_ERROR;
        case LINE_MORE:
        case LINE_TOO_LONG:
            if (len >= max_head) {
                fail(status, reason, 431, "head_too_large");
                return H1_ERROR;
            }
            return H1_INCOMPLETE;
        case LINE_OK:
            break;
        }
        if (eol == pos) {
            *out_head_len = eol + 2;
            return H1_OK;
        }
        if (!field_line(f, buf, pos, eol, status, reason))
            return H1_ERROR;
        pos = eol + 2;
    }
}

static void limits_resolve(const h1_limits_t *lim, size_t max_hdrs, size_t *max_line,
                           size_t *max_head, size_t *max_count)
{
    *max_line = (lim && lim->max_request_line) ? lim->max_request_line : H1_DEFAULT_MAX_LINE;
    *max_head = (lim && lim->max_head) ? lim->max_head : H1_DEFAULT_MAX_HEAD;
    *max_count = (lim && lim->max_headers) ? lim->max_headers : H1_DEFAULT_MAX_HEADERS;
    if (max_hdrs < *max_count)
        *max_count = max_hdrs;
}

/* Requests. */

/* method_prefix_ok checks the part of an unfinished request line that is
 * already settled, with the same verdict the full line will get, so garbage
 * (a TLS ClientHello, say) fails at once rather than at a limit. */
static bool method_prefix_ok(const char *buf, size_t pos, size_t stop)
{
    for (size_t i = pos; i < stop; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == ' ')
            return i > pos;
        if (!is_tchar(c))
            return false;
    }
    return true;
}

static bool has_prefix_ci(const char *s, size_t n, const char *lower, size_t *out_len)
{
    size_t k = strlen(lower);
    if (n < k)
        return false;
    for (size_t i = 0; i < k; i++) {
        if (slcu_lower((unsigned char)s[i]) != (unsigned char)lower[i])
            return false;
    }
    *out_len = k;
    return true;
}

/* valid_target_form matches the request-target form to the method (RFC 9112
 * section 3.2): authority-form is CONNECT's and only CONNECT's, asterisk-form
 * only OPTIONS's. The characters themselves were checked by the caller. */
static bool valid_target_form(const char *m, size_t mlen, const char *t, size_t tlen)
{
    bool connect = mlen == 7 && memcmp(m, "CONNECT", 7) == 0;
    bool options = mlen == 7 && memcmp(m, "OPTIONS", 7) == 0;
    size_t skip = 0;

    if (connect)
        return valid_authority(t, tlen, true);
    if (t[0] == '/')
        return true;
    if (tlen == 1 && t[0] == '*')
        return options;
    if (has_prefix_ci(t, tlen, "http://", &skip) || has_prefix_ci(t, tlen, "https://", &skip)) {
        const char *a = t + skip;
        size_t n = 0;
        while (skip + n < tlen && a[n] != '/' && a[n] != '?')
            n++;
        return n > 0 && valid_authority(a, n, false);
    }
    return false;
}

static bool request_line(const char *buf, size_t pos, size_t eol, h1_request_t *out, int *status,
                         const char **reason)
{
    size_t i = pos;
    while (i < eol && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == pos || (i < eol && buf[i] != ' '))
        return fail(status, reason, 400, "bad_method");
    if (i == eol)
        return fail(status, reason, 400, "bad_request_line");
    out->method = buf + pos;
    out->method_len = i - pos;
    i++;

    size_t t0 = i;
    while (i < eol && buf[i] != ' ') {
        unsigned char c = (unsigned char)buf[i];
        /* No CTL, no whitespace, no obs-text; '#' starts a fragment, which
         * is never part of a request-target and would hide path parts. */
        if (c < 0x21 || c > 0x7e || c == '#')
            return fail(status, reason, 400, "bad_target");
        i++;
    }
    if (i == t0 || i == eol)
        return fail(status, reason, 400, "bad_request_line");
    out->target = buf + t0;
    out->target_len = i - t0;
    i++;

    const char *v = buf + i;
    size_t vlen = eol - i;
    if (vlen == 8 && memcmp(v, "HTTP/1.", 7) == 0 && (v[7] == '0' || v[7] == '1')) {
        out->version_minor = v[7] - '0';
    } else if (vlen == 8 && memcmp(v, "HTTP/", 5) == 0 && is_digit((unsigned char)v[5]) &&
               v[6] == '.' && is_digit((unsigned char)v[7])) {
        return fail(status, reason, 505, "version_not_supported");
    } else {
        return fail(status, reason, 400, "bad_version");
    }

    if (!valid_target_form(out->method, out->method_len, out->target, out->target_len))
        return fail(status, reason, 400, "bad_target");
    return true;
}

h1_result_t h1_parse_request(const char *buf, size_t len, const h1_limits_t *lim, h1_header_t *hdrs,
                             size_t max_hdrs, h1_request_t *out, int *out_status,
                             const char **out_reason)
{
    int status_dummy;
    const char *reason_dummy;
    int *status = out_status ? out_status : &status_dummy;
    const char **reason = out_reason ? out_reason : &reason_dummy;
    size_t max_line, max_head, max_count;
    struct fields f;
    size_t pos = 0, eol = 0;

    memset(out, 0, sizeof(*out));
    out->headers = hdrs;
    *status = 0;
    *reason = NULL;
    limits_resolve(lim, max_hdrs, &max_line, &max_head, &max_count);
    size_t scan_end = len < max_head ? len : max_head;

    /* RFC 9112 section 2.2: empty lines before the request line are
     * ignored (some clients send a CRLF after a POST body). They count in
     * head_len and in max_head, which bounds them. */
    for (;;) {
        enum line_scan r = scan_line(buf, pos, scan_end, max_line, &eol);
        if (r != LINE_OK && !method_prefix_ok(buf, pos, eol)) {
            fail(status, reason, 400, "bad_method");
            return H1_ERROR;
        }
        switch (r) {
        case LINE_BARE_LF:
            fail(status, reason, 400, "bare_lf");
            return H1_ERROR;
        case LINE_BARE_CR:
            fail(status, reason, 400, "bare_cr");
            return H1_ERROR;
        case LINE_TOO_LONG:
            fail(status, reason, 414, "request_line_too_long");
            return H1_ERROR;
        case LINE_MORE:
            if (len >= max_head) {
                fail(status, reason, 431, "head_too_large");
                return H1_ERROR;
            }
            return H1_INCOMPLETE;
        case LINE_OK:
            break;
        }
        if (eol > pos)
            break;
        pos = eol + 2;
    }
    if (!request_line(buf, pos, eol, out, status, reason))
        return H1_ERROR;

    memset(&f, 0, sizeof(f));
    f.is_request = true;
    f.version_minor = out->version_minor;
    f.hdrs = hdrs;
    f.max_count = max_count;
    h1_result_t r =
        parse_fields(&f, buf, eol + 2, scan_end, len, max_head, &out->head_len, status, reason);
    out->nheaders = f.nheaders;
    if (r != H1_OK) {
        out->head_len = 0;
        return r;
    }

    if (out->version_minor == 1 && f.nhost == 0) {
        fail(status, reason, 400, "missing_host");
        return H1_ERROR;
    }
    if (f.has_te && f.has_cl) {
        fail(status, reason, 400, "cl_te_conflict");
        return H1_ERROR;
    }
    /* add_transfer_encoding let through only a single "chunked". */
    if (f.has_te) {
        out->body = H1_BODY_CHUNKED;
    } else if (f.has_cl && f.cl > 0) {
        out->body = H1_BODY_LENGTH;
        out->content_length = f.cl;
    }
    out->keep_alive =
        out->version_minor == 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
    /* RFC 9110 sections 10.1.1 and 7.8: HTTP/1.0 requests cannot expect
     * 100-continue or upgrade. */
    out->expect_continue = out->version_minor == 1 && f.expect_continue;
    out->upgrade = out->version_minor == 1 && f.conn_upgrade && f.has_upgrade;
    out->host = f.host;
    out->host_len = f.host_len;
    return H1_OK;
}

/* Responses. */

static bool rfail(const char **reason, const char *why)
{
    *reason = why;
    return false;
}

static bool status_line(const char *buf, size_t eol, h1_response_t *out, const char **reason)
{
    if (eol < 8 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1'))
        return rfail(reason, "bad_version");
    out->version_minor = buf[7] - '0';
    if (eol < 12 || buf[8] != ' ')
        return rfail(reason, "bad_status_line");
    int code = 0;
    for (size_t i = 9; i < 12; i++) {
        if (!is_digit((unsigned char)buf[i]))
            return rfail(reason, "bad_status");
        code = code * 10 + (buf[i] - '0');
    }
    if (code < 100 || code > 599)
        return rfail(reason, "bad_status");
    out->status = code;
    out->reason = buf + eol;
    if (eol == 12)
        return true;
    if (buf[12] != ' ')
        return rfail(reason, "bad_status_line");
    for (size_t i = 13; i < eol; i++) {
        if (!is_field_char((unsigned char)buf[i]))
            return rfail(reason, "bad_reason");
    }
    out->reason = buf + 13;
    out->reason_len = eol - 13;
    return true;
}

h1_result_t h1_parse_response(const char *buf, size_t len, const h1_limits_t *lim,
                              bool head_request, h1_header_t *hdrs, size_t max_hdrs,
                              h1_response_t *out, const char **out_reason)
{
    const char *reason_dummy;
    const char **reason = out_reason ? out_reason : &reason_dummy;
    int status = 0;
    size_t max_line, max_head, max_count;
    struct fields f;
    size_t eol = 0;

    memset(out, 0, sizeof(*out));
    out->headers = hdrs;
    *reason = NULL;
    limits_resolve(lim, max_hdrs, &max_line, &max_head, &max_count);
    size_t scan_end = len < max_head ? len : max_head;

    /* No leading empty lines here, unlike requests: a stray CRLF after a
     * response body means the upstream's framing is not what it said. */
    switch (scan_line(buf, 0, scan_end, max_line, &eol)) {
    case LINE_BARE_LF:
        *reason = "bare_lf";
        return H1_ERROR;
    case LINE_BARE_CR:
        *reason = "bare_cr";
        return H1_ERROR;
    case LINE_TOO_LONG:
        *reason = "status_line_too_long";
        return H1_ERROR;
    case LINE_MORE:
        if (len >= max_head) {
            *reason = "head_too_large";
            return H1_ERROR;
        }
        return H1_INCOMPLETE;
    case LINE_OK:
        break;
    }
    if (!status_line(buf, eol, out, reason))
        return H1_ERROR;

    memset(&f, 0, sizeof(f));
    f.is_request = false;
    f.version_minor = out->version_minor;
    f.hdrs = hdrs;
    f.max_count = max_count;
    h1_result_t r =
        parse_fields(&f, buf, eol + 2, scan_end, len, max_head, &out->head_len, &status, reason);
    out->nheaders = f.nheaders;
    if (r != H1_OK) {
        out->head_len = 0;
        return r;
    }

    bool keep_alive =
        out->version_minor == 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
    /* RFC 9112 section 6.3: both headers mean someone may have tried
     * smuggling; Transfer-Encoding wins, and the connection is not reused. */
    if (f.has_te && f.has_cl)
        keep_alive = false;
    if (head_request || out->status < 200 || out->status == 204 || out->status == 304) {
        out->body = H1_BODY_NONE;
    } else if (f.has_te) {
        if (f.te_last_chunked) {
            out->body = H1_BODY_CHUNKED;
        } else {
            out->body = H1_BODY_EOF;
            keep_alive = false;
        }
    } else if (f.has_cl) {
        out->body = f.cl > 0 ? H1_BODY_LENGTH : H1_BODY_NONE;
        out->content_length = f.cl;
    } else {
        out->body = H1_BODY_EOF;
        keep_alive = false;
    }
    out->keep_alive = keep_alive;
    return H1_OK;
}

/* Chunked framing. Each state names what the next byte may be. */
enum {
    CK_SIZE = 0,    /* chunk-size hex digits */
    CK_SIZE_WS,     /* BWS after size or extension, before ';' */
    CK_EXT_PRE,     /* after ';', BWS then ext name */
    CK_EXT_NAME,    /* in ext name */
    CK_EXT_NAME_WS, /* BWS after ext name, before '=' or ';' */
    CK_EXT_VAL_PRE, /* after '=', BWS then token or quoted-string */
    CK_EXT_TOKEN,   /* in token ext value */
    CK_EXT_QS,      /* in quoted-string ext value */
    CK_EXT_QS_ESC,  /* after '\' in quoted-string */
    CK_EXT_QS_END,  /* after closing '"' */
    CK_SIZE_LF,     /* after CR of the size line */
    CK_DATA,        /* |left| data bytes, not ours */
    CK_DATA_CR,     /* CR after data */
    CK_DATA_LF,     /* LF after data */
    CK_TR_START,    /* start of a trailer line or the final CRLF */
    CK_TR_NAME,     /* in trailer field name */
    CK_TR_VALUE,    /* in trailer field value */
    CK_TR_LF,       /* LF ending a trailer line */
    CK_END_LF,      /* LF of the final CRLF */
    CK_DONE,
    CK_ERROR,
};

void h1_chunked_init(h1_chunked_t *st)
{
    memset(st, 0, sizeof(*st));
    st->state = CK_SIZE;
}

bool h1_chunked_in_data(const h1_chunked_t *st)
{
    return st->state == CK_DATA;
}

uint64_t h1_chunked_data_left(const h1_chunked_t *st)
{
    return st->state == CK_DATA ? st->left : 0;
}

void h1_chunked_data_consumed(h1_chunked_t *st, uint64_t n)
{
    if (st->state != CK_DATA)
        return;
    if (n >= st->left) {
        st->left = 0;
        st->state = CK_DATA_CR;
    } else {
        st->left -= n;
    }
}

bool h1_chunked_done(const h1_chunked_t *st)
{
    return st->state == CK_DONE;
}

bool h1_chunked_in_trailers(const h1_chunked_t *st)
{
    return st->state >= CK_TR_START && st->state <= CK_END_LF;
}

static h1_result_t ck_fail(h1_chunked_t *st, const char **reason, const char *why)
{
    st->state = CK_ERROR;
    *reason = why;
    return H1_ERROR;
}

/* ck_ext_next handles the bytes that may follow a complete chunk-size or
 * extension: BWS, ';' for another extension, or CR ending the line. */
static bool ck_ext_next(h1_chunked_t *st, unsigned char c)
{
    if (is_ows(c))
        st->state = CK_SIZE_WS;
    else if (c == ';')
        st->state = CK_EXT_PRE;
    else if (c == '\r')
        st->state = CK_SIZE_LF;
    else
        return false;
    return true;
}

h1_result_t h1_chunked_parse(h1_chunked_t *st, const char *buf, size_t len, size_t *out_used,
                             const char **out_reason)
{
    const char *reason_dummy;
    const char **reason = out_reason ? out_reason : &reason_dummy;
    size_t max_line = st->max_line ? st->max_line : H1_DEFAULT_CHUNK_LINE;
    size_t max_trailers = st->max_trailers ? st->max_trailers : H1_DEFAULT_TRAILERS;
    size_t i = 0;
    h1_result_t r = H1_INCOMPLETE;

    *reason = NULL;
    switch (st->state) {
    case CK_DATA:
    case CK_DONE:
        *out_used = 0;
        return H1_OK;
    case CK_ERROR:
        *out_used = 0;
        *reason = "chunked_error";
        return H1_ERROR;
    default:
        break;
    }

    for (; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (st->state <= CK_SIZE_LF) {
            if (++st->line_len > max_line) {
                r = ck_fail(st, reason, "chunk_line_too_long");
                break;
            }
        } else if (st->state >= CK_TR_START && st->state <= CK_END_LF) {
            if (++st->trailer_len > max_trailers) {
                r = ck_fail(st, reason, "trailers_too_large");
                break;
            }
        }
        if (c == '\n' && st->state != CK_SIZE_LF && st->state != CK_DATA_LF &&
            st->state != CK_TR_LF && st->state != CK_END_LF) {
            r = ck_fail(st, reason, "bare_lf");
            break;
        }

        bool ok = true;
        switch (st->state) {
        case CK_SIZE: {
            int d = hex_value(c);
            if (d >= 0) {
                /* line_len counts this digit; leading zeros count too,
                 * so no size line is longer than 16 digits. */
                if (st->line_len > H1_MAX_CHUNK_SIZE_HEXES ||
                    st->left > (H1_MAX_LENGTH - (uint64_t)d) / 16) {
                    r = ck_fail(st, reason, "chunk_size_overflow");
                    goto out;
                }
                st->left = st->left * 16 + (uint64_t)d;
            } else if (st->line_len == 1) {
                r = ck_fail(st, reason, "bad_chunk_size");
                goto out;
            } else if (!ck_ext_next(st, c)) {
                r = ck_fail(st, reason, "bad_chunk_size");
                goto out;
            }
            break;
        }
        case CK_SIZE_WS:
            /* BWS is only allowed before ';': "5 \r\n" is not a chunk-size
             * line, and parsers that disagree on it are how requests get
             * smuggled. */
            if (c == ';')
                st->state = CK_EXT_PRE;
            else
                ok = is_ows(c);
            break;
        case CK_EXT_PRE:
            if (is_tchar(c))
                st->state = CK_EXT_NAME;
            else
                ok = is_ows(c);
            break;
        case CK_EXT_NAME:
            if (is_tchar(c))
                break;
            if (c == '=')
                st->state = CK_EXT_VAL_PRE;
            else if (is_ows(c))
                st->state = CK_EXT_NAME_WS;
            else
                ok = ck_ext_next(st, c);
            break;
        case CK_EXT_NAME_WS:
            if (c == '=')
                st->state = CK_EXT_VAL_PRE;
            else if (c == ';')
                st->state = CK_EXT_PRE;
            else
                ok = is_ows(c);
            break;
        case CK_EXT_VAL_PRE:
            if (c == '"')
                st->state = CK_EXT_QS;
            else if (is_tchar(c))
                st->state = CK_EXT_TOKEN;
            else
                ok = is_ows(c);
            break;
        case CK_EXT_TOKEN:
            if (!is_tchar(c))
                ok = ck_ext_next(st, c);
            break;
        case CK_EXT_QS:
            if (c == '"')
                st->state = CK_EXT_QS_END;
            else if (c == '\\')
                st->state = CK_EXT_QS_ESC;
            else
                ok = is_field_char(c);
            break;
        case CK_EXT_QS_ESC:
            ok = is_field_char(c);
            st->state = CK_EXT_QS;
            break;
        case CK_EXT_QS_END:
            ok = ck_ext_next(st, c);
            break;
        case CK_SIZE_LF:
            if (c != '\n') {
                r = ck_fail(st, reason, "bare_cr");
                goto out;
            }
            st->line_len = 0;
            if (st->left == 0) {
                st->state = CK_TR_START;
                st->trailer_len = 0;
                break;
            }
            st->state = CK_DATA;
            i++;
            r = H1_OK;
            goto out;
        case CK_DATA_CR:
            if (c != '\r') {
                r = ck_fail(st, reason, "bad_chunk_end");
                goto out;
            }
            st->state = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (c != '\n') {
                r = ck_fail(st, reason, "bare_cr");
                goto out;
            }
            st->state = CK_SIZE;
            st->left = 0;
            st->line_len = 0;
            break;
        case CK_TR_START:
            if (c == '\r') {
                st->state = CK_END_LF;
            } else if (is_ows(c)) {
                r = ck_fail(st, reason, "obs_fold");
                goto out;
            } else if (is_tchar(c)) {
                st->state = CK_TR_NAME;
            } else {
                r = ck_fail(st, reason, "bad_trailer");
                goto out;
            }
            break;
        case CK_TR_NAME:
            if (c == ':')
                st->state = CK_TR_VALUE;
            else if (!is_tchar(c)) {
                r = ck_fail(st, reason, "bad_trailer");
                goto out;
            }
            break;
        case CK_TR_VALUE:
            if (c == '\r')
                st->state = CK_TR_LF;
            else if (!is_field_char(c)) {
                r = ck_fail(st, reason, "bad_trailer");
                goto out;
            }
            break;
        case CK_TR_LF:
            if (c != '\n') {
                r = ck_fail(st, reason, "bare_cr");
                goto out;
            }
            st->state = CK_TR_START;
            break;
        case CK_END_LF:
            if (c != '\n') {
                r = ck_fail(st, reason, "bare_cr");
                goto out;
            }
            st->state = CK_DONE;
            i++;
            r = H1_OK;
            goto out;
        default:
            r = ck_fail(st, reason, "chunked_error");
            goto out;
        }
        if (!ok) {
            r = ck_fail(st, reason, "bad_chunk_ext");
            break;
        }
    }
out:
    *out_used = i;
    return r;
}
