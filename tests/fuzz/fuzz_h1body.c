/* fuzz_h1body: libFuzzer target for core/h1body.c (the body reader).
 *
 * The first input byte picks the body kind (bits 0-1: Content-Length,
 * chunked, close-delimited; 3 is chunked with partial takes) and the piece
 * size (bits 2-7); a Content-Length body's length is derived from it and the
 * input size. The rest of the input is fed into an evbuffer in pieces while
 * next/took loop, the caller draining what it takes. Aborts when an
 * invariant breaks:
 *  - H1B_DATA offers 0 < n <= the buffer's length; H1B_MORE and H1B_END
 *    offer n == 0; H1B_MORE leaves no framing unconsumed in the buffer;
 *  - a Content-Length body never gives more than its length, and ends with
 *    exactly its length taken; a close-delimited body never ends;
 *  - H1B_END means h1body_rd_done; H1B_ERROR has a reason and is sticky;
 *  - the reader gives the same data, end and error whether the input comes
 *    at once or in pieces, and whether the caller takes all or part;
 *  - the loop ends within a bound (every turn takes, feeds or stops).
 *
 * Build: see tests/CMakeLists.txt (SLUICE_FUZZ=ON, clang).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "h1body.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
    h1body_res_t res; /* H1B_END, H1B_ERROR, or H1B_MORE when the input ran out */
    const char *reason;
    uint64_t taken;
    uint32_t hash; /* FNV-1a of the data taken */
    size_t rest;   /* bytes left in the buffer at H1B_END (fed so far) */
    size_t fed;
};

/* run reads |in| as a body of |kind|, fed |piece| bytes at a time (0: all at
 * once); |partial| takes fewer bytes than offered, chosen from the data. */
static void run(const uint8_t *in, size_t len, h1_body_t kind, uint64_t length, size_t piece,
                bool partial, struct outcome *o)
{
    struct evbuffer *src = evbuffer_new();
    h1body_rd_t r;
    size_t fed = 0;
    uint8_t tmp[4096];

    CHECK(src != NULL);
    memset(o, 0, sizeof(*o));
    o->hash = 2166136261u;
    h1body_rd_init(&r, kind, length);
    size_t bound = 4 * len + 16;
    for (size_t it = 0;; it++) {
        CHECK(it < bound);
        size_t n = (size_t)-1;
        const char *why = NULL;
        h1body_res_t res = h1body_rd_next(&r, src, &n, &why);
        size_t avail = evbuffer_get_length(src);
        if (res == H1B_DATA) {
            CHECK(n > 0 && n <= avail);
            if (kind == H1_BODY_LENGTH)
                CHECK(o->taken + n <= length);
            size_t t = n;
            if (partial) {
                uint8_t b = 0;
                CHECK(evbuffer_copyout(src, &b, 1) == 1);
                t = 1 + (size_t)b % n;
            }
            if (t > sizeof(tmp))
                t = sizeof(tmp);
            CHECK(evbuffer_remove(src, tmp, t) == (int)t);
            for (size_t i = 0; i < t; i++)
                o->hash = (o->hash ^ tmp[i]) * 16777619u;
            o->taken += t;
            h1body_rd_took(&r, t);
            CHECK(r.taken == o->taken);
            continue;
        }
        CHECK(n == 0);
        if (res == H1B_MORE) {
            CHECK(avail == 0);
            if (kind == H1_BODY_LENGTH)
                CHECK(o->taken < length);
            if (fed == len) {
                o->res = H1B_MORE;
                break;
            }
            size_t p = piece == 0 || piece > len - fed ? len - fed : piece;
            CHECK(evbuffer_add(src, in + fed, p) == 0);
            fed += p;
            continue;
        }
        if (res == H1B_END) {
            CHECK(kind != H1_BODY_EOF);
            CHECK(h1body_rd_done(&r));
            if (kind == H1_BODY_LENGTH)
                CHECK(o->taken == length);
            /* END is stable and leaves the next message alone. */
            CHECK(h1body_rd_next(&r, src, &n, &why) == H1B_END);
            CHECK(evbuffer_get_length(src) == avail);
            o->res = H1B_END;
            o->rest = avail;
            break;
        }
        CHECK(res == H1B_ERROR);
        CHECK(kind == H1_BODY_CHUNKED);
        CHECK(why != NULL);
        CHECK(!h1body_rd_done(&r));
        o->res = H1B_ERROR;
        o->reason = why;
        why = NULL;
        CHECK(h1body_rd_next(&r, src, &n, &why) == H1B_ERROR && why != NULL);
        break;
    }
    o->fed = fed;
    h1body_rd_release(&r);
    evbuffer_free(src);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    static const h1_body_t kinds[4] = {H1_BODY_LENGTH, H1_BODY_CHUNKED, H1_BODY_EOF,
                                       H1_BODY_CHUNKED};
    h1_body_t kind = kinds[sel & 3];
    bool partial = (sel & 3) == 3 || (sel & 0x80);
    size_t piece = 1 + ((sel >> 2) & 0x1f) * 37;
    /* Around the input's length: shorter (next message follows), equal, or
     * longer (incomplete). */
    uint64_t length = len + 8 > (size_t)(sel >> 2) ? len + 8 - (size_t)(sel >> 2) : 0;

    struct outcome a, b;
    run(in, len, kind, length, piece, partial, &a);
    run(in, len, kind, length, 0, false, &b);
    CHECK(a.res == b.res);
    CHECK(a.taken == b.taken && a.hash == b.hash);
    if (a.res == H1B_ERROR)
        CHECK(strcmp(a.reason, b.reason) == 0);
    if (a.res == H1B_END)
        CHECK(len - a.fed + a.rest == len - b.fed + b.rest);
    if (len <= 2048) {
        run(in, len, kind, length, 1, partial, &a);
        CHECK(a.res == b.res && a.taken == b.taken && a.hash == b.hash);
    }
    return 0;
}
