/* Path normalization (RFC 3986 section 5.2.4), for filters that match on
 * paths and must not be fooled by "/public/../admin". */
#include <sluice/util.h>

#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* decode is the first pass: one left-to-right walk (so nothing is decoded
 * twice), writing at or behind the read position. Returns the length, or
 * SLCU_PATH_INVALID for "%00". */
static size_t decode(const char *s, size_t n, char *out, unsigned flags)
{
    bool dec_u = (flags & SLCU_PATH_DECODE_UNRESERVED) != 0;
    bool dec_s = (flags & SLCU_PATH_DECODE_SLASHES) != 0;
    bool bs = (flags & SLCU_PATH_BACKSLASH) != 0;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            int v = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            if (v == 0 && (dec_u || dec_s)) {
                return SLCU_PATH_INVALID;
            }
            if ((dec_u && unreserved(v)) || (dec_s && (v == '/' || v == '\\'))) {
                c = (char)v;
                i += 3;
                out[o++] = c == '\\' && bs ? '/' : c;
                continue;
            }
            /* Anything else stays encoded, as it came. */
            out[o++] = s[i++];
            out[o++] = s[i++];
            out[o++] = s[i++];
            continue;
        }
        out[o++] = c == '\\' && bs ? '/' : c;
        i++;
    }
    return o;
}

size_t slcu_path_normalize(slc_str_t in, char *out, size_t cap, unsigned flags)
{
    bool merge = (flags & SLCU_PATH_MERGE_SLASHES) != 0;
    if (in.len == 0) {
        if (cap < 1) {
            return SIZE_MAX;
        }
        out[0] = '/';
        return 1;
    }
    if (cap < in.len) {
        return SIZE_MAX;
    }
    /* The output never grows past the input, and is written at or behind
     * the read position, so working in place (out == in.ptr) is safe; the
     * decoding pass works in |out| and the dot pass then reads it there. */
    const char *s = in.ptr;
    size_t n = in.len;
    bool rooted = in.ptr[0] == '/' || (in.ptr[0] == '\\' && (flags & SLCU_PATH_BACKSLASH));
    if (flags & (SLCU_PATH_DECODE_UNRESERVED | SLCU_PATH_DECODE_SLASHES | SLCU_PATH_BACKSLASH)) {
        n = decode(s, n, out, flags);
        if (n == SLCU_PATH_INVALID) {
            return n;
        }
        s = out;
    }
    size_t i = 0, o = 0;
    while (i < n) {
        /* One segment: the bytes up to the next '/' (exclusive). */
        bool slash = s[i] == '/';
        size_t start = slash ? i + 1 : i;
        size_t end = start;
        while (end < n && s[end] != '/') {
            end++;
        }
        size_t seg = end - start;
        bool last = end == n;
        if (seg == 1 && s[start] == '.') {
            /* "/./" and a trailing "/." keep the directory's slash. */
            if (last && (slash || o > 0)) {
                out[o++] = '/';
            }
        } else if (seg == 2 && s[start] == '.' && s[start + 1] == '.') {
            /* Pop the last output segment, never past the root. */
            while (o > 0 && out[o - 1] != '/') {
                o--;
            }
            if (o > 0) {
                o--;
            }
            if (last && (slash || o > 0)) {
                out[o++] = '/';
            }
        } else if (seg == 0 && slash && merge && !last) {
            /* An empty segment ("//"): merged away, but a trailing one
             * ("/a/") is the directory's slash and stays. */
        } else {
            if (slash) {
                out[o++] = '/';
            }
            memmove(out + o, s + start, seg);
            o += seg;
        }
        i = end;
    }
    if (o == 0 && rooted) {
        out[o++] = '/';
    }
    return o;
}
