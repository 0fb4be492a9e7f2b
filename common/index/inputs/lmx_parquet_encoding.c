/* Parquet's integer encodings (Encodings.md), decoded as streams so a page's levels and
 * dictionary indices never need an array of their own: the RLE/bit-packed hybrid (levels,
 * dictionary indices) and DELTA_BINARY_PACKED (integers; the lengths inside
 * DELTA_LENGTH_BYTE_ARRAY and DELTA_BYTE_ARRAY). */
#include <stdlib.h>
#include <string.h>

#include "lmx_parquet_internal.h"

#define MAX_BLOCK_SIZE (1u << 16) /* writers use 128; bounds the miniblock buffer */

unsigned lmx__pq_bit_width(uint32_t max)
{
    unsigned w = 0;
    while (max) {
        w++;
        max >>= 1;
    }
    return w;
}

static int uleb(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && p < end; shift += 7) {
        uint8_t b = *p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *pp = p;
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* w (<= 64) bits at bit offset off of p, least significant bit first. */
static uint64_t get_bits(const uint8_t *p, uint64_t off, unsigned w)
{
    if (w == 0)
        return 0;
    const uint8_t *b = p + (off >> 3);
    unsigned sh = (unsigned)(off & 7), got = 8 - sh;
    uint64_t v = (uint64_t)(*b++ >> sh);
    while (got < w) {
        v |= (uint64_t)*b++ << got;
        got += 8;
    }
    return w < 64 ? v & (((uint64_t)1 << w) - 1) : v;
}

/* ---- RLE / bit-packed hybrid ---- */

void lmx__pq_rle_init(pq_rle *r, const uint8_t *p, const uint8_t *end, unsigned w)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    r->end = end;
    r->w = w;
}

static int rle_run(pq_rle *r)
{
    uint64_t h;
    if (r->p >= r->end || uleb(&r->p, r->end, &h) != 0 || h >> 1 == 0 || h >> 1 > (1u << 28))
        return -1;
    if (h & 1) {
        r->packed = 1;
        r->run_left = (uint32_t)(h >> 1) * 8;
        r->buf_pos = r->buf_n = 0;
        return 0;
    }
    unsigned nb = (r->w + 7) / 8;
    if ((size_t)(r->end - r->p) < nb)
        return -1;
    uint32_t v = 0;
    for (unsigned i = 0; i < nb; i++)
        v |= (uint32_t)r->p[i] << (8 * i);
    r->p += nb;
    if (r->w < 32 && v >> r->w)
        return -1;
    r->packed = 0;
    r->value = v;
    r->run_left = (uint32_t)(h >> 1);
    return 0;
}

int lmx__pq_rle_next(pq_rle *r, uint32_t *v)
{
    while (r->run_left == 0)
        if (rle_run(r) != 0)
            return -1;
    r->run_left--;
    if (!r->packed) {
        *v = r->value;
        return 0;
    }
    if (r->buf_pos == r->buf_n) { /* the next group of 8 values: w bytes */
        if ((size_t)(r->end - r->p) < r->w)
            return -1;
        for (unsigned i = 0; i < 8; i++)
            r->buf[i] = (uint32_t)get_bits(r->p, (uint64_t)i * r->w, r->w);
        r->p += r->w;
        r->buf_pos = 0;
        r->buf_n = 8;
    }
    *v = r->buf[r->buf_pos++];
    return 0;
}

/* ---- DELTA_BINARY_PACKED ---- */

static int64_t unzigzag(uint64_t u) { return (int64_t)(u >> 1) ^ -(int64_t)(u & 1); }

void lmx__pq_dbp_free(pq_dbp *d)
{
    if (d) {
        free(d->vals);
        d->vals = NULL;
    }
}

int lmx__pq_dbp_init(pq_dbp *d, const uint8_t *p, const uint8_t *end, const uint8_t **data_end, lmx_error *err)
{
    lmx__pq_dbp_free(d);
    memset(d, 0, sizeof *d);
    uint64_t bs, nmb, total, first;
    if (uleb(&p, end, &bs) || uleb(&p, end, &nmb) || uleb(&p, end, &total) || uleb(&p, end, &first))
        return lmx__err(err, LMX_EFORMAT, "truncated DELTA_BINARY_PACKED header");
    if (bs == 0 || bs % 128 || nmb == 0 || bs % nmb || (bs / nmb) % 32)
        return lmx__err(err, LMX_EFORMAT, "bad DELTA_BINARY_PACKED block size %llu / %llu miniblocks",
                        (unsigned long long)bs, (unsigned long long)nmb);
    if (bs > MAX_BLOCK_SIZE)
        return lmx__err(err, LMX_EUNSUPPORTED, "DELTA_BINARY_PACKED block size %llu over %u",
                        (unsigned long long)bs, MAX_BLOCK_SIZE);
    d->block_size = (uint32_t)bs;
    d->n_mb = (uint32_t)nmb;
    d->per_mb = (uint32_t)(bs / nmb);
    d->total = d->left = total;
    d->last = (uint64_t)unzigzag(first);
    d->first = total > 0;
    d->p = p;
    d->end = end;
    /* Walk the blocks to find where the stream ends (the byte data of DELTA_LENGTH_BYTE_ARRAY
     * follows it) and to check every miniblock is there before any value is returned. */
    uint64_t rem = total ? total - 1 : 0, dummy;
    while (rem > 0) {
        if (uleb(&p, end, &dummy) || (size_t)(end - p) < d->n_mb)
            return lmx__err(err, LMX_EFORMAT, "truncated DELTA_BINARY_PACKED block");
        const uint8_t *w = p;
        p += d->n_mb;
        for (uint32_t i = 0; i < d->n_mb && rem > 0; i++) {
            if (w[i] > 64)
                return lmx__err(err, LMX_EFORMAT, "DELTA_BINARY_PACKED bit width %u", w[i]);
            size_t full = (size_t)d->per_mb * w[i] / 8;
            uint64_t k = rem < d->per_mb ? rem : d->per_mb;
            size_t need = (size_t)((k * w[i] + 7) / 8);
            if ((size_t)(end - p) < need)
                return lmx__err(err, LMX_EFORMAT, "truncated DELTA_BINARY_PACKED miniblock");
            /* the last miniblock may lack its padding when nothing follows it */
            p += (size_t)(end - p) < full ? (size_t)(end - p) : full;
            rem -= k;
        }
    }
    *data_end = p;
    if (!(d->vals = malloc(d->per_mb * sizeof *d->vals)))
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    d->mb = d->n_mb; /* the first next() after the first value reads a block header */
    return LMX_OK;
}

int lmx__pq_dbp_next(pq_dbp *d, uint64_t *v)
{
    if (d->left == 0)
        return -1;
    if (d->first) {
        d->first = 0;
        d->left--;
        *v = d->last;
        return 0;
    }
    if (d->pos == d->n) {
        uint64_t md;
        if (d->mb == d->n_mb) {
            if (uleb(&d->p, d->end, &md) || (size_t)(d->end - d->p) < d->n_mb)
                return -1;
            d->min_delta = (uint64_t)unzigzag(md);
            d->widths = d->p;
            d->p += d->n_mb;
            d->mb = 0;
        }
        unsigned w = d->widths[d->mb++];
        uint32_t k = d->left < d->per_mb ? (uint32_t)d->left : d->per_mb;
        size_t full = (size_t)d->per_mb * w / 8, have = (size_t)(d->end - d->p);
        if (w > 64 || have < ((size_t)k * w + 7) / 8)
            return -1;
        for (uint32_t i = 0; i < k; i++)
            d->vals[i] = get_bits(d->p, (uint64_t)i * w, w) + d->min_delta;
        d->p += have < full ? have : full;
        d->pos = 0;
        d->n = k;
    }
    d->last += d->vals[d->pos++];
    d->left--;
    *v = d->last;
    return 0;
}
