/* Path normalization (RFC 3986 section 5.2.4), for filters that match on
 * paths and must not be fooled by "/public/../admin". */
#include <sluice/util.h>

#include <string.h>

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
     * the read position, so working in place (out == in.ptr) is safe. */
    const char *s = in.ptr;
    size_t i = 0, o = 0, n = in.len;
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
    if (o == 0 && in.ptr[0] == '/') {
        out[o++] = '/';
    }
    return o;
}
