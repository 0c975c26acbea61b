/* decode.h: reading a trace file's event chunk in C (the format is
 * fntrace/formats/tracefile.py's; docs/tracefile.md).
 *
 * Why: the pure-Python decoder (tracefile._decode) reads ~150k events/s; a
 * reader waits on it.  This cursor walks a decompressed chunk's events after
 * their tables, one event at a time, without a Python object, for the record
 * decoder (decode.c) and the report aggregator (aggregate.c).
 *
 * The C path decodes only what it can decode exactly as the Python decoder
 * does: any event the Python decoder would refuse (an index out of range, a
 * depth over its limit, the data ending inside a number, bytes left over) and
 * any number C's 64 bits cannot hold make the cursor stop with FNT_DEC_FALLBACK;
 * its callers then hand the chunk to the Python decoder, whose records and
 * message are the reference.  So the two can differ in speed only.
 */
#ifndef FNT_DECODE_H
#define FNT_DECODE_H

#include "fnt.h"

#ifdef FNT_HOT_PATH

/* The stored codes (fntrace/core/events.py RECORD_KINDS, EVENT_NAMES, EVENT_SHIFT;
 * the module init checks nothing of them: decode.c's ChunkDecoder is given the
 * names by the reader, and tests/test_decoder.py keeps these equal). */
#define FNT_K_CALL 0
#define FNT_K_ENTRY 1
#define FNT_K_EXIT 2
#define FNT_K_MARKER 3
#define FNT_K_TEXT 4
#define FNT_N_KINDS 5
#define FNT_N_EVENTS 7
#define FNT_EVENT_SHIFT 3
#define FNT_TEXT_FLAG 64
#define FNT_EV_START 1
#define FNT_EV_RETURN 4
#define FNT_EV_UNWIND 6

#define FNT_DEC_OK 1
#define FNT_DEC_END 0
#define FNT_DEC_FALLBACK (-1)

/* One event as stored: which fields are meaningful depends on code. */
typedef struct {
    int code;          /* FNT_K_* */
    int event;         /* index into EVENT_NAMES */
    uint32_t thread;   /* index into the chunk's thread table */
    int64_t ts;
    uint32_t func;     /* call/entry/exit: index into the function table */
    uint32_t parent;   /* call: 0, or function index + 1 */
    uint32_t depth;    /* entry/exit */
    uint32_t str;      /* call/entry: args (0 or string + 1); exit: value (same);
                          marker/text: the string's index */
    int64_t dur;       /* exit */
} fnt_event;

typedef struct {
    const uint8_t *data;
    Py_ssize_t size, pos;
    /* Version 4: the events' fields end at fields_end (pos reads them), their
     * times follow from there to size (tpos reads them); before it, both are
     * one stream (fields_end is size, tpos unused). */
    Py_ssize_t fields_end, tpos;
    int bad;                    /* the fields' length lies: left to the Python decoder */
    Py_ssize_t left;            /* events still to read */
    Py_ssize_t nstrings, nfuncs, nthreads;
    uint32_t max_depth;
    int compact;                /* format version 4: the text flag (else an index + 1 or 0) */
    int indexed;                /* events store their thread's index (not in a version-4
                                   chunk of one thread) */
    int64_t *last_ts;           /* per thread, nthreads of them */
} fnt_cursor;

/* A LEB128 number of at most 64 bits at *at, which it passes, before end; 0
 * when the data ends inside it or it does not fit (the Python decoder reads
 * it, or says why not). */
static inline int
fnt_uvarint_in(const uint8_t *p, Py_ssize_t *at, Py_ssize_t end, uint64_t *out)
{
    Py_ssize_t pos = *at;
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (pos >= end)
            return 0;
        uint8_t b = p[pos++];
        uint64_t bits = (uint64_t)(b & 0x7F);
        if (shift == 63 && bits > 1)
            return 0;
        result |= bits << shift;
        if (b < 0x80) {
            *at = pos;
            *out = result;
            return 1;
        }
    }
    return 0;
}

/* The next number of the events' fields. */
static inline int
fnt_uvarint(fnt_cursor *c, uint64_t *out)
{
    return fnt_uvarint_in(c->data, &c->pos, c->fields_end, out);
}

/* The next of the events' times: in their own stream from version 4. */
static inline int
fnt_time(fnt_cursor *c, uint64_t *out)
{
    return c->compact ? fnt_uvarint_in(c->data, &c->tpos, c->size, out) : fnt_uvarint(c, out);
}

/* An index below limit, as uint32. */
static inline int
fnt_index(fnt_cursor *c, Py_ssize_t limit, uint32_t *out)
{
    uint64_t v;
    if (!fnt_uvarint(c, &v) || v >= (uint64_t)limit || v > UINT32_MAX)
        return 0;
    *out = (uint32_t)v;
    return 1;
}

/* 0 or an index + 1 below limit + 1. */
static inline int
fnt_opt_index(fnt_cursor *c, Py_ssize_t limit, uint32_t *out)
{
    return fnt_index(c, limit + 1, out);
}

/* A call's, entry's or exit's text: 0 or a string index + 1 below limit + 1,
 * stored so before version 4; from it, the index when the head's text flag is
 * set, else nothing (0). */
static inline int
fnt_text_index(fnt_cursor *c, int has_text, Py_ssize_t limit, uint32_t *out)
{
    if (!c->compact)
        return fnt_opt_index(c, limit, out);
    if (!has_text) {
        *out = 0;
        return 1;
    }
    uint32_t sid;
    if (!fnt_index(c, limit, &sid))
        return 0;
    *out = sid + 1;
    return 1;
}

/* The next event: FNT_DEC_OK, FNT_DEC_END after the last one (the data then
 * ends there), or FNT_DEC_FALLBACK. */
static inline int
fnt_next(fnt_cursor *c, fnt_event *ev)
{
    if (c->left <= 0)
        return !c->bad && c->pos == c->fields_end && (!c->compact || c->tpos == c->size)
            ? FNT_DEC_END : FNT_DEC_FALLBACK;
    if (c->pos >= c->fields_end)  /* also when the fields' length lies (fnt_cursor_init) */
        return FNT_DEC_FALLBACK;
    uint8_t head = c->data[c->pos++];
    int has_text = c->compact && (head & FNT_TEXT_FLAG);
    if (has_text)
        head &= (uint8_t)~FNT_TEXT_FLAG;
    ev->code = head & 7;
    ev->event = head >> FNT_EVENT_SHIFT;
    if (ev->code >= FNT_N_KINDS || ev->event >= FNT_N_EVENTS ||
        (has_text && ev->code >= FNT_K_MARKER))
        return FNT_DEC_FALLBACK;
    uint64_t delta, v;
    if (c->indexed) {
        if (!fnt_index(c, c->nthreads, &ev->thread))
            return FNT_DEC_FALLBACK;
    } else if (c->nthreads == 0) {
        return FNT_DEC_FALLBACK;
    } else {
        ev->thread = 0;
    }
    if (!fnt_time(c, &delta))
        return FNT_DEC_FALLBACK;
    /* zigzag: even n -> n / 2, odd n -> -(n + 1) / 2 */
    int64_t d = (delta & 1) ? -(int64_t)(delta >> 1) - 1 : (int64_t)(delta >> 1);
    int64_t ts;
    if (__builtin_add_overflow(c->last_ts[ev->thread], d, &ts))
        return FNT_DEC_FALLBACK;
    c->last_ts[ev->thread] = ts;
    ev->ts = ts;
    switch (ev->code) {
    case FNT_K_CALL:
        if (!fnt_index(c, c->nfuncs, &ev->func) || !fnt_opt_index(c, c->nfuncs, &ev->parent)
            || !fnt_text_index(c, has_text, c->nstrings, &ev->str))
            return FNT_DEC_FALLBACK;
        break;
    case FNT_K_ENTRY:
        if (!fnt_index(c, c->nfuncs, &ev->func) || !fnt_index(c, (Py_ssize_t)c->max_depth + 1,
                                                              &ev->depth)
            || !fnt_text_index(c, has_text, c->nstrings, &ev->str))
            return FNT_DEC_FALLBACK;
        break;
    case FNT_K_EXIT:
        if (!fnt_index(c, c->nfuncs, &ev->func) || !fnt_index(c, (Py_ssize_t)c->max_depth + 1,
                                                              &ev->depth)
            || !fnt_time(c, &v) || v > (uint64_t)INT64_MAX
            || !fnt_text_index(c, has_text, c->nstrings, &ev->str))
            return FNT_DEC_FALLBACK;
        ev->dur = (int64_t)v;
        break;
    default:
        if (!fnt_index(c, c->nstrings, &ev->str))
            return FNT_DEC_FALLBACK;
    }
    c->left--;
    return FNT_DEC_OK;
}

/* Start a cursor on data[pos:] holding count events of a file of this
 * format version; -1 with MemoryError. */
static inline int
fnt_cursor_init(fnt_cursor *c, const uint8_t *data, Py_ssize_t size, Py_ssize_t pos,
                Py_ssize_t count, Py_ssize_t nstrings, Py_ssize_t nfuncs,
                Py_ssize_t nthreads, uint32_t max_depth, int version)
{
    c->compact = version >= 4;
    c->indexed = !c->compact || nthreads > 1;
    c->data = data;
    c->size = size;
    c->pos = pos;
    c->fields_end = size;
    c->tpos = size;
    c->bad = 0;
    if (c->compact) {  /* the fields' length, then the fields, then the times */
        uint64_t flen;
        if (!fnt_uvarint_in(data, &c->pos, size, &flen) || flen > (uint64_t)(size - c->pos)) {
            c->bad = 1;
            c->fields_end = c->pos;  /* no event is read */
        } else
            c->fields_end = c->tpos = c->pos + (Py_ssize_t)flen;
    }
    c->left = count;
    c->nstrings = nstrings;
    c->nfuncs = nfuncs;
    c->nthreads = nthreads;
    c->max_depth = max_depth;
    c->last_ts = PyMem_Calloc(nthreads ? (size_t)nthreads : 1, sizeof(int64_t));
    if (c->last_ts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static inline void
fnt_cursor_done(fnt_cursor *c)
{
    PyMem_Free(c->last_ts);
    c->last_ts = NULL;
}

#endif  /* FNT_HOT_PATH */
#endif  /* FNT_DECODE_H */
