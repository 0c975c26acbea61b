/* lzblock.c: the LZ4 block format, written from the format's description
 * (lz4's doc/lz4_Block_format.md): the trace file's event chunk compression
 * (flag 2, fntrace/formats/tracefile.py; why in lzblock.h).
 *
 * A block is a run of sequences.  Each starts with a token byte: its high
 * four bits are the count of literal bytes that follow (15: more count bytes
 * follow, each added, until one is below 255), then the literals; then a
 * two-byte little-endian offset back into the output (1..65535) and a match
 * of (low four bits + 4) bytes copied from there, extended the same way.
 * The last sequence is literals only and ends the block.  The format's end
 * rules, which this compressor obeys so that any LZ4 decoder reads its
 * blocks: the last five bytes are literals, and the last match starts at
 * least twelve bytes before the end.
 *
 * The compressor is greedy with one probe: a hash of the six bytes at each
 * position names the last position that hashed the same; a match there of at
 * least four bytes is taken, grown backwards over equal literals and forwards
 * eight bytes at a time.  Where nothing matches for a while it steps further
 * (incompressible data costs little).  The decompressor trusts nothing: every
 * length, offset and copy is checked against both buffers.
 */
#include "lzblock.h"

#ifdef FNT_HOT_PATH

#include <string.h>

#define LZ_MINMATCH 4
#define LZ_LAST_LITERALS 5
#define LZ_MFLIMIT 12          /* a match starts at least this many bytes before the end */
#define LZ_MAX_OFFSET 65535
#define LZ_HASH_LOG 13         /* 8192 positions: 32 KiB of table, on the stack */
#define LZ_SKIP_TRIGGER 6      /* after 2**6 misses in a row, step two bytes, and so on */
/* Below this many bytes a chunk is compressed holding the GIL: a hand-off to
 * another thread and back costs more than the work. */
#define LZ_RELEASE_GIL_AT 4096

static inline uint32_t
read32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t
read64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The table slot of the six bytes at p (p + 8 readable).  Six, not the four a
 * match needs at least: measured on recorded chunks (function_graph of fib, and
 * a mixed workload with --args --retval), hashing four or five bytes lets
 * short repeats that do not grow (the same timestamp delta byte and
 * event head) take the slot of the longer match at the same four bytes; six
 * made blocks 26% (fib) and 6% (mixed) smaller than four, and the compressor
 * faster, the decompressor too (longer matches); seven lost on the mixed one. */
static inline uint32_t
hash_at(const uint8_t *p)
{
    return (uint32_t)(((read64(p) << 16) * 0x9E3779B185EBCA87ull) >> (64 - LZ_HASH_LOG));
}

/* How many bytes from a and b on are equal, b's stopping at limit (a < b). */
static inline size_t
common_length(const uint8_t *a, const uint8_t *b, const uint8_t *limit)
{
    const uint8_t *start = b;
    while (b + 8 <= limit) {
        uint64_t diff = read64(a) ^ read64(b);
        if (diff != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            return (size_t)(b - start) + (size_t)(__builtin_clzll(diff) >> 3);
#else
            return (size_t)(b - start) + (size_t)(__builtin_ctzll(diff) >> 3);
#endif
        }
        a += 8;
        b += 8;
    }
    while (b < limit && *a == *b) {
        a++;
        b++;
    }
    return (size_t)(b - start);
}

/* The count bytes of a length whose field is 15: len - 15 as 255s and a rest. */
static inline uint8_t *
put_more_length(uint8_t *op, size_t more)
{
    while (more >= 255) {
        *op++ = 255;
        more -= 255;
    }
    *op++ = (uint8_t)more;
    return op;
}

/* A sequence's token and literals; returns where its offset goes.  A short
 * run (most of them in a trace chunk: the bytes between two matches of one
 * event) is copied as 16 bytes at once where both buffers have them: what
 * lies past the run in dst is overwritten by what follows, and a call to
 * memcpy for a few bytes cost more than the copy. */
static inline uint8_t *
put_literals(uint8_t *op, const uint8_t *from, size_t n, uint8_t **token,
             const uint8_t *src_end, const uint8_t *dst_end)
{
    *token = op++;
    if (n >= 15) {
        **token = 15 << 4;
        op = put_more_length(op, n - 15);
    }
    else
        **token = (uint8_t)(n << 4);
    if (n <= 16 && from + 16 <= src_end && op + 16 <= dst_end)
        memcpy(op, from, 16);
    else
        memcpy(op, from, n);
    return op + n;
}

size_t
fnt_lz_compress(const uint8_t *src, size_t n, uint8_t *dst)
{
    uint8_t *op = dst, *token;
    const uint8_t *src_end = src + n, *dst_end = dst + FNT_LZ_BOUND(n);
    size_t anchor = 0;  /* the first byte not yet in a sequence */
    if (n > LZ_MFLIMIT) {
        uint32_t table[1 << LZ_HASH_LOG];
        memset(table, 0, sizeof table);  /* position 0 everywhere: checked before use */
        const size_t last_start = n - LZ_MFLIMIT;
        const uint8_t *match_limit = src + n - LZ_LAST_LITERALS;
        size_t ip = 0;
        unsigned misses = 1u << LZ_SKIP_TRIGGER;
        while (ip <= last_start) {
            uint32_t seq = read32(src + ip);
            uint32_t h = hash_at(src + ip);
            size_t ref = table[h];
            table[h] = (uint32_t)ip;
            if (ref >= ip || ip - ref > LZ_MAX_OFFSET || read32(src + ref) != seq) {
                ip += misses++ >> LZ_SKIP_TRIGGER;
                continue;
            }
            misses = 1u << LZ_SKIP_TRIGGER;
            while (ip > anchor && ref > 0 && src[ip - 1] == src[ref - 1]) {
                ip--;
                ref--;
            }
            size_t length = LZ_MINMATCH + common_length(src + ref + LZ_MINMATCH,
                                                        src + ip + LZ_MINMATCH, match_limit);
            op = put_literals(op, src + anchor, ip - anchor, &token, src_end, dst_end);
            size_t offset = ip - ref;
            *op++ = (uint8_t)(offset & 0xFF);
            *op++ = (uint8_t)(offset >> 8);
            size_t more = length - LZ_MINMATCH;
            if (more >= 15) {
                *token |= 15;
                op = put_more_length(op, more - 15);
            }
            else
                *token |= (uint8_t)more;
            ip += length;
            anchor = ip;
            /* A position inside the match, so a repeat of its tail is found. */
            if (ip <= last_start)
                table[hash_at(src + ip - 2)] = (uint32_t)(ip - 2);
        }
    }
    op = put_literals(op, src + anchor, n - anchor, &token, src_end, dst_end);
    return (size_t)(op - dst);
}

/* What a corrupt block is said to be (lzblock.py says the same). */
static const char CUT_SHORT[] = "the block is cut short";
static const char LITERALS_PAST[] = "a literal run goes past the declared size";
static const char MATCH_PAST[] = "a match goes past the declared size";
static const char OFFSET_ZERO[] = "a match offset is 0";
static const char BEFORE_START[] = "a match reaches before the start";
static const char ENDS_EARLY[] = "the block ends before the declared size";

/* A length's count bytes after a field of 15: added to *length, which may not
 * pass room (checked at every byte, so a run of 255s stops at once). */
static inline const char *
more_length(const uint8_t *src, size_t n, size_t *ip, size_t *length, size_t room,
            const char *past)
{
    unsigned b;
    do {
        if (*ip >= n)
            return CUT_SHORT;
        b = src[(*ip)++];
        *length += b;
        if (*length > room)
            return past;
    } while (b == 255);
    return NULL;
}

int
fnt_lz_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, const char **why)
{
    size_t ip = 0, op = 0;
    for (;;) {
        if (ip >= n) {
            *why = CUT_SHORT;
            return -1;
        }
        unsigned tok = src[ip++];
        size_t lit = tok >> 4;
        if (lit == 15 && (*why = more_length(src, n, &ip, &lit, cap - op,
                                             LITERALS_PAST)) != NULL)
            return -1;
        if (lit > cap - op) {
            *why = LITERALS_PAST;
            return -1;
        }
        if (lit > n - ip) {
            *why = CUT_SHORT;
            return -1;
        }
        if (lit <= 16 && n - ip >= 16 && cap - op >= 16)
            memcpy(dst + op, src + ip, 16);  /* a fixed-size copy: a few moves */
        else
            memcpy(dst + op, src + ip, lit);
        ip += lit;
        op += lit;
        if (ip == n) {  /* the last sequence: literals only */
            if (op != cap) {
                *why = ENDS_EARLY;
                return -1;
            }
            return 0;
        }
        if (n - ip < 2) {
            *why = CUT_SHORT;
            return -1;
        }
        size_t offset = (size_t)src[ip] | ((size_t)src[ip + 1] << 8);
        ip += 2;
        if (offset == 0) {
            *why = OFFSET_ZERO;
            return -1;
        }
        if (offset > op) {
            *why = BEFORE_START;
            return -1;
        }
        size_t length = (tok & 15) + LZ_MINMATCH;
        if ((tok & 15) == 15 && (*why = more_length(src, n, &ip, &length, cap - op,
                                                    MATCH_PAST)) != NULL)
            return -1;
        if (length > cap - op) {
            *why = MATCH_PAST;
            return -1;
        }
        uint8_t *to = dst + op;
        const uint8_t *from = to - offset;
        if (offset >= 8 && cap - op >= length + 8) {
            /* Eight bytes at a time, each from at least eight bytes back (so
             * already written); the last may spill up to seven bytes past the
             * match, inside dst, which later sequences overwrite. */
            for (size_t i = 0; i < length; i += 8)
                memcpy(to + i, from + i, 8);
        }
        else if (offset >= length)
            memcpy(to, from, length);
        else if (offset == 1)
            memset(to, *from, length);
        else {
            for (size_t i = 0; i < length; i++)  /* overlapping: a repeating pattern */
                to[i] = from[i];
        }
        op += length;
    }
}

/* The flag byte of an LZ4 event chunk (tracewriter.py COMPRESSIONS["lz4"]). */
#define LZ_CHUNK_FLAG 2

PyObject *
fnt_lz_stored(const uint8_t *src, size_t n)
{
    if (n > FNT_LZ_MAX_INPUT) {
        PyErr_Format(PyExc_ValueError, "an event chunk of %zu bytes is over %d", n,
                     FNT_LZ_MAX_INPUT);
        return NULL;
    }
    uint8_t head[11];
    size_t hlen = 0;
    head[hlen++] = LZ_CHUNK_FLAG;
    for (size_t v = n; ; v >>= 7) {
        head[hlen++] = (uint8_t)(v >= 0x80 ? (v & 0x7F) | 0x80 : v);
        if (v < 0x80)
            break;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(hlen + FNT_LZ_BOUND(n)));
    if (out == NULL)
        return NULL;
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
    memcpy(dst, head, hlen);
    size_t size;
    if (n >= LZ_RELEASE_GIL_AT) {
        Py_BEGIN_ALLOW_THREADS
        size = fnt_lz_compress(src, n, dst + hlen);
        Py_END_ALLOW_THREADS
    }
    else
        size = fnt_lz_compress(src, n, dst + hlen);
    if (_PyBytes_Resize(&out, (Py_ssize_t)(hlen + size)) < 0)
        return NULL;
    return out;
}

PyObject *
fnt_lz_compress_fn(PyObject *module, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    if (in.len > FNT_LZ_MAX_INPUT) {
        PyBuffer_Release(&in);
        PyErr_Format(PyExc_ValueError, "lz_compress takes at most %d bytes",
                     FNT_LZ_MAX_INPUT);
        return NULL;
    }
    size_t n = (size_t)in.len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)FNT_LZ_BOUND(n));
    if (out == NULL) {
        PyBuffer_Release(&in);
        return NULL;
    }
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
    size_t size;
    if (n >= LZ_RELEASE_GIL_AT) {
        /* Private buffers only: the input's export keeps it in place. */
        Py_BEGIN_ALLOW_THREADS
        size = fnt_lz_compress((const uint8_t *)in.buf, n, dst);
        Py_END_ALLOW_THREADS
    }
    else
        size = fnt_lz_compress((const uint8_t *)in.buf, n, dst);
    PyBuffer_Release(&in);
    if (_PyBytes_Resize(&out, (Py_ssize_t)size) < 0)
        return NULL;
    return out;
}

PyObject *
fnt_lz_decompress_fn(PyObject *module, PyObject *args)
{
    Py_buffer in;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y*n:lz_decompress", &in, &size))
        return NULL;
    size_t n = (size_t)in.len;
    /* No block of n bytes makes more than 255 per byte: a larger size is a lie,
     * refused before anything is allocated for it. */
    if (size < 0 || (uint64_t)size > (uint64_t)n * 255) {
        PyBuffer_Release(&in);
        PyErr_Format(PyExc_ValueError, "a block of %zd bytes cannot hold %zd", in.len, size);
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) {
        PyBuffer_Release(&in);
        return NULL;
    }
    const char *why = NULL;
    int got;
    if (n >= LZ_RELEASE_GIL_AT) {
        Py_BEGIN_ALLOW_THREADS
        got = fnt_lz_decompress((const uint8_t *)in.buf, n,
                                (uint8_t *)PyBytes_AS_STRING(out), (size_t)size, &why);
        Py_END_ALLOW_THREADS
    }
    else
        got = fnt_lz_decompress((const uint8_t *)in.buf, n,
                                (uint8_t *)PyBytes_AS_STRING(out), (size_t)size, &why);
    PyBuffer_Release(&in);
    if (got < 0) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, why);
        return NULL;
    }
    return out;
}

#endif  /* FNT_HOT_PATH */
