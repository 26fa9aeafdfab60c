/* fuzz_alog: libFuzzer target for the access-log format and filter
 * expression compilers (filters/access-log/alog_format.c), and the UTF-8
 * sanitizer its JSON lines go through.
 *
 * The first byte picks the parser; the rest is its input.
 *
 * Invariants:
 *  - a failed compile reports a column within 1..len+1 and leaves no pieces;
 *  - a compiled format has no two adjacent literal pieces and no empty
 *    literal; its literal text is never longer than the input;
 *  - a compiled expression has at least one term and evaluates
 *    deterministically;
 *  - the sanitizer's output is never longer than 3x its input and
 *    sanitizing it again changes nothing (it is valid UTF-8).
 */
#include "alog.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    char err[200];
    size_t col = 0;
    switch (data[0] % 3) {
    case 0: {
        alog_fmt_t f;
        if (alog_fmt_compile(s, len, &f, err, sizeof(err), &col)) {
            size_t lit = 0;
            for (size_t i = 0; i < f.n; i++) {
                if (f.pieces[i].op == ALOG_OP_LITERAL) {
                    CHECK(f.pieces[i].len > 0);
                    CHECK(i == 0 || f.pieces[i - 1].op != ALOG_OP_LITERAL);
                    lit += f.pieces[i].len;
                }
            }
            CHECK(lit <= len);
            (void)alog_fmt_numeric(&f);
            alog_fmt_free(&f);
        } else {
            CHECK(col >= 1 && col <= len + 1);
            CHECK(f.n == 0 && f.pieces == NULL);
        }
        break;
    }
    case 1: {
        alog_expr_t e;
        if (alog_expr_compile(s, len, &e, err, sizeof(err), &col)) {
            CHECK(e.n >= 1);
            for (int64_t code = 0; code < 700; code += 97) {
                bool a = alog_expr_eval(&e, code, code * 3);
                CHECK(a == alog_expr_eval(&e, code, code * 3));
            }
            alog_expr_free(&e);
        } else {
            CHECK(col >= 1 && col <= len + 1);
        }
        break;
    }
    default: {
        char *out = malloc(len * 3 + 1);
        char *again = malloc(len * 3 + 1);
        size_t n = alog_utf8_sanitize(s, len, out);
        CHECK(n <= len * 3);
        size_t m = alog_utf8_sanitize(out, n, again);
        CHECK(m == n && memcmp(out, again, n) == 0);
        free(out);
        free(again);
        break;
    }
    }
    return 0;
}
