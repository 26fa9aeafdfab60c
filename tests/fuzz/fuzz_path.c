/* fuzz_path: libFuzzer target for the path normalizer (sdk/util/path.c),
 * which the rbac filter will judge paths by: a path it lets through as
 * "/public/x" must not reach the upstream as "/admin".
 *
 * The first byte picks the flags; the rest is the path. Invariants:
 *  - the result fits where the input did (or is 1 byte for an empty path);
 *  - SLCU_PATH_INVALID only under a decoding flag and only with "%00" in
 *    the input;
 *  - no "." or ".." segment is left, and none appears in disguise under
 *    SLCU_PATH_DECODE_UNRESERVED ("%2e" decoded before the dot pass);
 *  - with SLCU_PATH_MERGE_SLASHES no "//" is left but a leading one that a
 *    path not starting with '/' cannot have;
 *  - normalizing in place gives the same bytes as into a second buffer.
 */
#include <sluice/util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool has_dot_segment(const char *p, size_t n)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && p[j] != '/')
            j++;
        size_t seg = j - i;
        if ((seg == 1 && p[i] == '.') || (seg == 2 && p[i] == '.' && p[i + 1] == '.'))
            return true;
        i = j + 1;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    unsigned flags = data[0] & 0x0f;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char *out = malloc(n + 1);
    char *inplace = malloc(n + 1);
    CHECK(out && inplace);
    memcpy(inplace, in, n);
    size_t r = slcu_path_normalize((slc_str_t){in, n}, out, n + 1, flags);
    size_t r2 = slcu_path_normalize((slc_str_t){inplace, n}, inplace, n + 1, flags);
    CHECK(r == r2);
    if (r == SLCU_PATH_INVALID) {
        CHECK(flags & (SLCU_PATH_DECODE_UNRESERVED | SLCU_PATH_DECODE_SLASHES));
        bool nul = false;
        for (size_t i = 0; i + 2 < n && !nul; i++)
            nul = in[i] == '%' && in[i + 1] == '0' && in[i + 2] == '0';
        CHECK(nul);
    } else {
        CHECK(r != SIZE_MAX);
        CHECK(r <= (n ? n : 1));
        CHECK(memcmp(out, inplace, r) == 0);
        CHECK(!has_dot_segment(out, r));
        if ((flags & SLCU_PATH_MERGE_SLASHES) && r > 0 && out[0] == '/') {
            for (size_t i = 0; i + 1 < r; i++)
                CHECK(!(out[i] == '/' && out[i + 1] == '/'));
        }
    }
    free(out);
    free(inplace);
    return 0;
}
