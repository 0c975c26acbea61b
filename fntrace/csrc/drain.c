/* drain.c: taking the events out of the rings - merged in time order
 * (take_all) or straight into one trace-file event chunk (encode_buffers).
 *
 * Why: a reader of a busy trace consumes hundreds of thousands of events a
 * second.  take_all() does BufferSet.consume()'s merge in C; encode_buffers()
 * encodes a recorder's packed events without ever building their tuples,
 * byte for byte what formats/tracewriter.py's TraceWriter makes of them.
 */
#include "lzblock.h"
#include "ring.h"

#ifdef FNT_HOT_PATH

typedef fnt_EventQueue EventQueue;
typedef fnt_RingCore RingCore;
typedef fnt_slot Slot;

typedef struct {
    PyObject *buf;
    PyObject **evs;
    long long *ts;
    Py_ssize_t n, pos;
} Taken;

static long long
event_ts(PyObject *ev, int *bad)
{
    PyObject *item = PyTuple_CheckExact(ev) && PyTuple_GET_SIZE(ev) > 0
        ? Py_NewRef(PyTuple_GET_ITEM(ev, EVENT_TS)) : PySequence_GetItem(ev, EVENT_TS);
    if (item == NULL) {
        *bad = 1;
        return 0;
    }
    long long ts = PyLong_AsLongLong(item);
    Py_DECREF(item);
    if (ts == -1 && PyErr_Occurred())
        *bad = 1;
    return ts;
}

/* take_all(buffers) -> [(buf, event), ...]: every event now in these RingCore
 * buffers (in cpu order), consumed (read counters updated), in the order of
 * BufferSet.consume(): by timestamp, then buffer, then position. */
PyObject *
fnt_take_all(PyObject *module, PyObject *buffers)
{
    PyObject *seq = PySequence_Fast(buffers, "take_all() needs a sequence of buffers");
    if (seq == NULL)
        return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t j = 0; j < k; j++) {
        if (!PyObject_TypeCheck(PySequence_Fast_GET_ITEM(seq, j), &fnt_RingCore_Type)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "take_all() needs RingCore buffers");
            return NULL;
        }
    }
    Taken *t = PyMem_Calloc((size_t)(k ? k : 1), sizeof(Taken));
    PyObject *out = NULL;
    if (t == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t total = 0;
    int bad = 0;
    for (Py_ssize_t j = 0; j < k && !bad; j++) {
        RingCore *rc = (RingCore *)PySequence_Fast_GET_ITEM(seq, j);
        EventQueue *q = rc->events;
        t[j].buf = (PyObject *)rc;
        Py_ssize_t n = q ? q->len : 0;
        if (n == 0)
            continue;
        t[j].evs = PyMem_Calloc((size_t)n, sizeof(PyObject *));
        t[j].ts = PyMem_Calloc((size_t)n, sizeof(long long));
        if (t[j].evs == NULL || t[j].ts == NULL) {
            PyErr_NoMemory();
            bad = 1;
            break;
        }
        for (Py_ssize_t i = 0; i < n && q->len > 0; i++) {
            Slot sl;
            fnt_queue_take(q, &sl);
            long long size = 0;
            PyObject *ev = NULL;
            if (fnt_slot_size(&sl, &size) == 0)
                ev = fnt_slot_event(&sl);
            long long ts = sl.kind != 0 ? sl.ts : 0;
            fnt_slot_release(&sl);
            if (ev == NULL) {
                bad = 1;
                break;
            }
            if (sl.kind == 0)
                ts = event_ts(ev, &bad);
            else if (PyObject_GC_IsTracked(ev))
                /* built here from names, ints and Functions: no cycle goes through
                 * it, and a batch holds many thousands the collector would walk */
                PyObject_GC_UnTrack(ev);
            rc->read++;
            rc->read_bytes += size;
            t[j].evs[t[j].n] = ev;
            t[j].ts[t[j].n] = ts;
            t[j].n++;
            total++;
            if (bad)
                break;
        }
    }
    int monotonic = 1;
    for (Py_ssize_t j = 0; j < k && !bad; j++)
        for (Py_ssize_t i = 1; i < t[j].n; i++)
            if (t[j].ts[i] < t[j].ts[i - 1])
                monotonic = 0;
    if (!bad && !monotonic) {
        /* a clock that went back (realtime): sort as consume() does, by
         * (ts, buffer, position) */
        PyObject *keyed = PyList_New(0);
        for (Py_ssize_t j = 0; keyed != NULL && j < k; j++) {
            for (Py_ssize_t i = 0; i < t[j].n; i++) {
                PyObject *item = Py_BuildValue("(LnnOO)", t[j].ts[i], j, i, t[j].buf,
                                               t[j].evs[i]);
                if (item == NULL || PyList_Append(keyed, item) < 0) {
                    Py_XDECREF(item);
                    Py_CLEAR(keyed);
                    break;
                }
                Py_DECREF(item);
            }
        }
        if (keyed != NULL && PyList_Sort(keyed) == 0) {
            out = PyList_New(total);
            for (Py_ssize_t m = 0; out != NULL && m < total; m++) {
                PyObject *item = PyList_GET_ITEM(keyed, m);
                PyObject *pair = PyTuple_Pack(2, PyTuple_GET_ITEM(item, 3),
                                              PyTuple_GET_ITEM(item, 4));
                if (pair == NULL) {
                    Py_CLEAR(out);
                    break;
                }
                PyList_SET_ITEM(out, m, pair);
            }
        }
        Py_XDECREF(keyed);
        bad = 1;  /* done: skip the merge below */
    }
    if (!bad) {
        out = PyList_New(total);
        for (Py_ssize_t m = 0; out != NULL && m < total; m++) {
            Py_ssize_t best = -1;
            for (Py_ssize_t j = 0; j < k; j++) {
                if (t[j].pos < t[j].n &&
                    (best < 0 || t[j].ts[t[j].pos] < t[best].ts[t[best].pos]))
                    best = j;
            }
            PyObject *pair = PyTuple_Pack(2, t[best].buf, t[best].evs[t[best].pos]);
            if (pair == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyObject_GC_UnTrack(pair);  /* (buffer, event): no cycle either */
            PyList_SET_ITEM(out, m, pair);
            t[best].pos++;
        }
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        for (Py_ssize_t i = 0; i < t[j].n; i++)
            Py_XDECREF(t[j].evs[i]);
        PyMem_Free(t[j].evs);
        PyMem_Free(t[j].ts);
    }
    PyMem_Free(t);
    Py_DECREF(seq);
    return out;
}

/* ------------------------------------------------------------------------- */
/* encode_buffers: one event chunk of the trace file (formats/tracewriter.py) */
/* ------------------------------------------------------------------------- */

typedef struct {
    unsigned char *data;
    Py_ssize_t len, cap;
} Bytes;

/* Growing the buffer: the slow path of bytes_room, out of line. */
static int
bytes_grow(Bytes *b, Py_ssize_t more)
{
    Py_ssize_t ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + more)
        ncap *= 2;
    unsigned char *n = PyMem_Realloc(b->data, (size_t)ncap);
    if (n == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = n;
    b->cap = ncap;
    return 0;
}

FNT_ALWAYS_INLINE int
bytes_room(Bytes *b, Py_ssize_t more)
{
    return b->len + more <= b->cap ? 0 : bytes_grow(b, more);
}

/* A uvarint written where there is room for it (at most 10 bytes): the end. */
FNT_ALWAYS_INLINE unsigned char *
uvarint_at(unsigned char *p, unsigned long long n)
{
    while (n >= 0x80) {
        *p++ = (unsigned char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    *p++ = (unsigned char)n;
    return p;
}

/* A timestamp delta as stored: zigzag, so a small step back stays small. */
FNT_ALWAYS_INLINE unsigned long long
zigzag(long long n)
{
    return ((unsigned long long)n << 1) ^ (unsigned long long)(n >> 63);
}

static int
put_uvarint(Bytes *b, unsigned long long n)
{
    if (bytes_room(b, 10) < 0)
        return -1;
    b->len = uvarint_at(b->data + b->len, n) - b->data;
    return 0;
}

static int
put_raw(Bytes *b, const char *p, Py_ssize_t n)
{
    if (bytes_room(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

/* A Python int written as the writer's _uvarint (non-negative, 64 bits here). */
static int
put_pyuvarint(Bytes *b, PyObject *v)
{
    unsigned long long n = PyLong_AsUnsignedLongLong(v);
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    return put_uvarint(b, n);
}

#define FID_SLOTS 512
typedef struct {
    PyObject *strings;  /* str -> index (insertion ordered) */
    PyObject *funcs;    /* (name, flags, file or None, line) -> index */
    PyObject *threads;  /* tid -> index */
    PyObject *rows;     /* [(tid, name, cpu, flags, lost)] */
    PyObject *fn_fid;   /* Function -> fid (per chunk) */
    PyObject *par_fid;  /* Function -> fid of (name, 0, file, line) */
    PyObject *buf_idx;  /* buffer -> thread index */
    /* The writer's Function -> (name, flags, file, line), kept across chunks
     * (NULL: not given): reading them runs Python properties, thousands of
     * instructions per function, which a table per chunk would pay again in
     * every chunk for every function it names. */
    PyObject *keys;
    /* Whether the events store their thread's index: not in a chunk of one
     * thread's events (its table has one row). */
    int indexed;
    /* The chunk's times: each event's timestamp delta, and each exit's
     * duration, in event order, stored after the rest of the events (the
     * events' other fields are body's).  Apart, the fields that repeat make
     * long runs the compressor finds at little cost, and so do the times
     * where they repeat: 35% fewer bytes than interleaved (fib). */
    Bytes times;
    long long *last_ts;
    Py_ssize_t n_last;
    /* The packed path's per-event lookups, without a dict: the fid of the
     * functions seen (direct-mapped; every Function stays alive in fn_fid and
     * in the slots until the chunk is done) and the file's code of each event
     * name (-1: not looked up yet). */
    struct { PyObject *fn; Py_ssize_t fid; } fid_cache[FID_SLOTS];
    long evmap[FNT_MAX_EVENT_NAMES];
} Tables;

/* The index of `key` in `dict`, adding it (next index) when new: -1 error. */
static Py_ssize_t
intern_index(PyObject *dict, PyObject *key, int *added)
{
    PyObject *v = PyDict_GetItemWithError(dict, key);
    if (v != NULL) {
        *added = 0;
        return PyLong_AsSsize_t(v);
    }
    if (PyErr_Occurred())
        return -1;
    Py_ssize_t idx = PyDict_GET_SIZE(dict);
    PyObject *iv = PyLong_FromSsize_t(idx);
    if (iv == NULL || PyDict_SetItem(dict, key, iv) < 0) {
        Py_XDECREF(iv);
        return -1;
    }
    Py_DECREF(iv);
    *added = 1;
    return idx;
}

static Py_ssize_t
tab_sid(Tables *t, PyObject *text)
{
    int added;
    return intern_index(t->strings, text, &added);
}

static Py_ssize_t
tab_fid(Tables *t, PyObject *name, PyObject *flags, PyObject *file, PyObject *line)
{
    PyObject *key = PyTuple_Pack(4, name, flags, file, line);
    if (key == NULL)
        return -1;
    int added;
    Py_ssize_t fid = intern_index(t->funcs, key, &added);
    Py_DECREF(key);
    if (fid >= 0 && added && (tab_sid(t, name) < 0 || (file != Py_None && tab_sid(t, file) < 0)))
        return -1;
    return fid;
}

/* An attribute of fn, or NULL without an error when it has none. */
static PyObject *
attr_or_null(PyObject *fn, PyObject *attr)
{
    PyObject *v = PyObject_GetAttr(fn, attr);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_AttributeError))
        PyErr_Clear();
    return v;
}

/* (file, line) of a Function as tracefile.location() gives them: its filename
 * if a str (else None) and its lineno if an int in 1..2**31-1 (else 0).  Read
 * once per function per chunk (fn_fid caches the fid), never per event.
 * 0 with both set (new references), -1 on error. */
static int
fn_location(PyObject *fn, PyObject **file, PyObject **line)
{
    *file = *line = NULL;
    PyObject *f = attr_or_null(fn, fnt_st->str_filename);
    if (f == NULL && PyErr_Occurred())
        return -1;
    *file = f != NULL && PyUnicode_Check(f) ? f : Py_NewRef(Py_None);
    if (f != NULL && *file != f)
        Py_DECREF(f);
    PyObject *l = attr_or_null(fn, fnt_st->str_lineno);
    if (l == NULL && PyErr_Occurred()) {
        Py_CLEAR(*file);
        return -1;
    }
    long long n = 0;
    if (l != NULL && PyLong_Check(l)) {
        int overflow = 0;
        n = PyLong_AsLongLongAndOverflow(l, &overflow);
        if (n == -1 && PyErr_Occurred()) {
            Py_DECREF(l);
            Py_CLEAR(*file);
            return -1;
        }
        if (overflow || n < 1 || n > 0x7fffffffLL)
            n = 0;
    }
    Py_XDECREF(l);
    *line = PyLong_FromLongLong(n);
    if (*line == NULL) {
        Py_CLEAR(*file);
        return -1;
    }
    return 0;
}

/* The function-table key of a Function: (fn.name, fn.code.co_flags, file,
 * line), read from it (new reference, NULL on error). */
static PyObject *
fn_key_read(PyObject *fn)
{
    PyObject *name = PyObject_GetAttr(fn, fnt_st->str_name);
    if (name == NULL)
        return NULL;
    PyObject *code = PyObject_GetAttr(fn, fnt_st->str_code);
    PyObject *flags = code ? PyObject_GetAttr(code, fnt_st->str_co_flags) : NULL;
    Py_XDECREF(code);
    PyObject *file = NULL, *line = NULL, *key = NULL;
    if (flags != NULL && fn_location(fn, &file, &line) == 0)
        key = PyTuple_Pack(4, name, flags, file, line);
    Py_DECREF(name);
    Py_XDECREF(flags);
    Py_XDECREF(file);
    Py_XDECREF(line);
    return key;
}

/* The key of fn: the writer's cached one, else read (and cached). */
static PyObject *
fn_key(Tables *t, PyObject *fn)
{
    if (t->keys != NULL) {
        PyObject *key = PyDict_GetItemWithError(t->keys, fn);
        if (key != NULL)
            return Py_NewRef(key);
        if (PyErr_Occurred())
            return NULL;
    }
    PyObject *key = fn_key_read(fn);
    if (key != NULL && t->keys != NULL && PyDict_SetItem(t->keys, fn, key) < 0)
        Py_CLEAR(key);
    return key;
}

/* fid of a Function: its key, or the key with flags 0 for parents. */
static Py_ssize_t
fn_fid(Tables *t, PyObject *fn, int as_parent)
{
    PyObject *cache = as_parent ? t->par_fid : t->fn_fid;
    PyObject *v = PyDict_GetItemWithError(cache, fn);
    if (v != NULL)
        return PyLong_AsSsize_t(v);
    if (PyErr_Occurred())
        return -1;
    PyObject *key = fn_key(t, fn);
    if (key == NULL)
        return -1;
    PyObject *zero = as_parent ? PyLong_FromLong(0) : NULL;
    Py_ssize_t fid = as_parent && zero == NULL ? -1
        : tab_fid(t, PyTuple_GET_ITEM(key, 0), as_parent ? zero : PyTuple_GET_ITEM(key, 1),
                  PyTuple_GET_ITEM(key, 2), PyTuple_GET_ITEM(key, 3));
    Py_XDECREF(zero);
    Py_DECREF(key);
    if (fid < 0)
        return -1;
    PyObject *iv = PyLong_FromSsize_t(fid);
    if (iv == NULL || PyDict_SetItem(cache, fn, iv) < 0) {
        Py_XDECREF(iv);
        return -1;
    }
    Py_DECREF(iv);
    return fid;
}

/* The chunk's index of a buffer's thread (its row added at first sight). */
static Py_ssize_t
tab_thread(Tables *t, PyObject *buf)
{
    PyObject *v = PyDict_GetItemWithError(t->buf_idx, buf);
    if (v != NULL)
        return PyLong_AsSsize_t(v);
    if (PyErr_Occurred())
        return -1;
    PyObject *tid = PyObject_GetAttr(buf, fnt_st->str_tid);
    PyObject *name = tid ? PyObject_GetAttr(buf, fnt_st->str_name) : NULL;
    PyObject *cpu = name ? PyObject_GetAttr(buf, fnt_st->str_cpu) : NULL;
    PyObject *flags = cpu ? PyObject_GetAttr(buf, fnt_st->str_thread_flags) : NULL;
    Py_ssize_t idx = -1;
    if (flags != NULL) {
        PyObject *known = PyDict_GetItemWithError(t->threads, tid);
        if (known != NULL) {
            idx = PyLong_AsSsize_t(known);
        } else if (!PyErr_Occurred()) {
            if (tab_sid(t, name) >= 0 && tab_sid(t, flags) >= 0) {
                RingCore *rc = (RingCore *)buf;
                long long lost = rc->overrun + rc->dropped;
                PyObject *lostv = PyLong_FromLongLong(lost);
                PyObject *row = lostv ? PyTuple_Pack(5, tid, name, cpu, flags, lostv) : NULL;
                Py_XDECREF(lostv);
                idx = PyList_GET_SIZE(t->rows);
                PyObject *iv = row ? PyLong_FromSsize_t(idx) : NULL;
                if (iv == NULL || PyList_Append(t->rows, row) < 0 ||
                    PyDict_SetItem(t->threads, tid, iv) < 0)
                    idx = -1;
                Py_XDECREF(iv);
                Py_XDECREF(row);
            }
        }
    }
    Py_XDECREF(tid);
    Py_XDECREF(name);
    Py_XDECREF(cpu);
    Py_XDECREF(flags);
    if (idx < 0)
        return -1;
    if (idx >= t->n_last) {
        Py_ssize_t nn = (idx + 1) * 2;
        long long *nl = PyMem_Realloc(t->last_ts, (size_t)nn * sizeof(long long));
        if (nl == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = t->n_last; i < nn; i++)
            nl[i] = 0;
        t->last_ts = nl;
        t->n_last = nn;
    }
    PyObject *iv = PyLong_FromSsize_t(idx);
    if (iv == NULL || PyDict_SetItem(t->buf_idx, buf, iv) < 0) {
        Py_XDECREF(iv);
        return -1;
    }
    Py_DECREF(iv);
    return idx;
}

/* A record's text (a call's or entry's arguments, an exit's value) after its
 * fields, the text flag set in its first byte (body->data[head]); nothing for
 * None. */
static int
put_text(Bytes *b, Tables *t, Py_ssize_t head, PyObject *text)
{
    if (text == Py_None)
        return 0;
    Py_ssize_t sid = tab_sid(t, text);
    if (sid < 0)
        return -1;
    b->data[head] |= FILE_TEXT_FLAG;
    return put_uvarint(b, (unsigned long long)sid);
}

/* An event's thread index, where the chunk's events store one. */
FNT_ALWAYS_INLINE unsigned char *
thread_at(unsigned char *p, Tables *t, Py_ssize_t ti)
{
    return t->indexed ? uvarint_at(p, (unsigned long long)ti) : p;
}

static int
kind_is(PyObject *kind, PyObject *want)
{
    return kind == want || (PyUnicode_Check(kind) && PyUnicode_Compare(kind, want) == 0);
}

static int
encode_one(Bytes *body, Tables *t, PyObject *buf, PyObject *ev, PyObject *other,
           PyObject *event_codes)
{
    if (!PyTuple_Check(ev) || PyTuple_GET_SIZE(ev) < 3 || !PyObject_TypeCheck(buf, &fnt_RingCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "encode_buffers: RingCore buffers holding event tuples");
        return -1;
    }
    PyObject *kind = PyTuple_GET_ITEM(ev, EVENT_KIND);
    Py_ssize_t nev = PyTuple_GET_SIZE(ev);
    int code;
    PyObject *text = NULL;
    if (kind_is(kind, fnt_st->str_F) && nev == CALL_LEN)
        code = FILE_KIND_CALL;
    else if (kind_is(kind, fnt_st->str_E) && nev == ENTRY_LEN)
        code = FILE_KIND_ENTRY;
    else if (kind_is(kind, fnt_st->str_X) && nev == EXIT_LEN)
        code = FILE_KIND_EXIT;
    else {
        /* markers and events other tracers render: Python says (kind code, text) */
        PyObject *r = PyObject_CallFunctionObjArgs(other, buf, ev, NULL);
        if (r == NULL)
            return -1;
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
            Py_DECREF(r);
            PyErr_SetString(PyExc_TypeError, "encode_buffers: other() must give (code, text)");
            return -1;
        }
        code = (int)PyLong_AsLong(PyTuple_GET_ITEM(r, 0));
        text = Py_NewRef(PyTuple_GET_ITEM(r, 1));
        Py_DECREF(r);
        if (code == -1 && PyErr_Occurred()) {
            Py_DECREF(text);
            return -1;
        }
    }
    int rc = -1;
    Py_ssize_t ti = tab_thread(t, buf);
    if (ti < 0)
        goto done;
    long evcode = 0;
    if (text == NULL) {
        int at = code == FILE_KIND_CALL ? CALL_EVENT : code == FILE_KIND_ENTRY ? ENTRY_EVENT
                                                                             : EXIT_EVENT;
        PyObject *event = PyTuple_GET_ITEM(ev, at);
        PyObject *c = PyDict_GetItemWithError(event_codes, event);
        if (c != NULL)
            evcode = PyLong_AsLong(c);
        else if (PyErr_Occurred())
            goto done;
    }
    if (bytes_room(body, 11) < 0)
        goto done;
    Py_ssize_t head = body->len;
    body->data[body->len++] = (unsigned char)(code | (evcode << FILE_EVENT_SHIFT));
    body->len = thread_at(body->data + body->len, t, ti) - body->data;
    int bad = 0;
    long long ts = event_ts(ev, &bad);
    if (bad)
        goto done;
    long long delta = ts - t->last_ts[ti];
    t->last_ts[ti] = ts;
    if (put_uvarint(&t->times, zigzag(delta)) < 0)
        goto done;
    if (text != NULL) {
        Py_ssize_t sid = tab_sid(t, text);
        rc = sid < 0 ? -1 : put_uvarint(body, (unsigned long long)sid);
        goto done;
    }
    Py_ssize_t fid = fn_fid(t, PyTuple_GET_ITEM(ev, EVENT_FN), 0);
    if (fid < 0 || put_uvarint(body, (unsigned long long)fid) < 0)
        goto done;
    if (code == FILE_KIND_CALL) {
        PyObject *parent = PyTuple_GET_ITEM(ev, CALL_PARENT);
        if (parent == Py_None) {
            if (put_uvarint(body, 0) < 0)
                goto done;
        } else {
            Py_ssize_t pf = fn_fid(t, parent, 1);
            if (pf < 0 || put_uvarint(body, (unsigned long long)pf + 1) < 0)
                goto done;
        }
        rc = put_text(body, t, head, PyTuple_GET_ITEM(ev, CALL_ARGS));
    } else if (code == FILE_KIND_ENTRY) {
        if (put_pyuvarint(body, PyTuple_GET_ITEM(ev, ENTRY_DEPTH)) < 0)
            goto done;
        rc = put_text(body, t, head, PyTuple_GET_ITEM(ev, ENTRY_ARGS));
    } else {
        if (put_pyuvarint(body, PyTuple_GET_ITEM(ev, EXIT_DEPTH)) < 0)
            goto done;
        long long dur = PyLong_AsLongLong(PyTuple_GET_ITEM(ev, EXIT_DURATION));
        if (dur == -1 && PyErr_Occurred())
            goto done;
        if (put_uvarint(&t->times, (unsigned long long)(dur > 0 ? dur : 0)) < 0)
            goto done;
        rc = put_text(body, t, head, PyTuple_GET_ITEM(ev, EXIT_VALUE));
    }
done:
    Py_XDECREF(text);
    return rc;
}

static int
tables_init(Tables *t, PyObject *keys)
{
    memset(t, 0, sizeof *t);
    t->keys = keys;
    for (int i = 0; i < FNT_MAX_EVENT_NAMES; i++)
        t->evmap[i] = -1;
    t->strings = PyDict_New();
    t->funcs = PyDict_New();
    t->threads = PyDict_New();
    t->rows = PyList_New(0);
    t->fn_fid = PyDict_New();
    t->par_fid = PyDict_New();
    t->buf_idx = PyDict_New();
    return (t->strings && t->funcs && t->threads && t->rows && t->fn_fid && t->par_fid &&
            t->buf_idx) ? 0 : -1;
}

static void
tables_free(Tables *t)
{
    Py_XDECREF(t->strings);
    Py_XDECREF(t->funcs);
    Py_XDECREF(t->threads);
    Py_XDECREF(t->rows);
    Py_XDECREF(t->fn_fid);
    Py_XDECREF(t->par_fid);
    Py_XDECREF(t->buf_idx);
    PyMem_Free(t->last_ts);
    PyMem_Free(t->times.data);
}

/* Bytes left free before a chunk's events in their buffer: the tables, made
 * once the events are, go there when they fit, so tables and events lie in
 * one run for the compressor without a copy of the events. */
#define BODY_HEADROOM 4096

/* The chunk's payload: the tables, then the count, the length of the events'
 * fields, their fields and their times (TraceWriter.write_table_chunk; the
 * fields are body's bytes after BODY_HEADROOM, the times t->times'), as
 * stored when lz4 (TraceWriter.write_payload's LZ4 chunk: flag, size,
 * block), else as they are.  Returns (payload, n, rows)
 * or NULL.  *notes is set when a string of the table starts with `prefix`
 * (the task notes' UTF-8 bytes, plen of them; NULL: not asked): a text a
 * marker may carry, so the writer need not search the payload for it. */
static PyObject *
chunk_payload(Tables *t, Bytes *body, Py_ssize_t n, const char *prefix, Py_ssize_t plen,
              int *notes, int lz4)
{
    Bytes out = {0};
    PyObject *result = NULL;
    if (put_uvarint(&out, (unsigned long long)PyDict_GET_SIZE(t->strings)) < 0)
        goto done;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(t->strings, &pos, &key, &value)) {
        PyObject *raw = PyUnicode_AsEncodedString(key, "utf-8", "surrogatepass");
        if (raw == NULL)
            goto done;
        if (prefix != NULL && PyBytes_GET_SIZE(raw) >= plen &&
            memcmp(PyBytes_AS_STRING(raw), prefix, (size_t)plen) == 0)
            *notes = 1;
        int bad = put_uvarint(&out, (unsigned long long)PyBytes_GET_SIZE(raw)) < 0 ||
                  put_raw(&out, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw)) < 0;
        Py_DECREF(raw);
        if (bad)
            goto done;
    }
    if (put_uvarint(&out, (unsigned long long)PyDict_GET_SIZE(t->funcs)) < 0)
        goto done;
    pos = 0;
    while (PyDict_Next(t->funcs, &pos, &key, &value)) {
        PyObject *sid = PyDict_GetItemWithError(t->strings, PyTuple_GET_ITEM(key, 0));
        PyObject *file = PyTuple_GET_ITEM(key, 2);
        PyObject *fsid = file == Py_None || sid == NULL ? NULL
                                                         : PyDict_GetItemWithError(t->strings, file);
        if (sid == NULL || (file != Py_None && fsid == NULL) || put_pyuvarint(&out, sid) < 0 ||
            put_pyuvarint(&out, PyTuple_GET_ITEM(key, 1)) < 0 ||
            put_uvarint(&out, fsid == NULL ? 0
                                           : (unsigned long long)PyLong_AsSsize_t(fsid) + 1) < 0 ||
            put_pyuvarint(&out, PyTuple_GET_ITEM(key, 3)) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "function strings not in the string table");
            goto done;
        }
    }
    Py_ssize_t nrows = PyList_GET_SIZE(t->rows);
    if (put_uvarint(&out, (unsigned long long)nrows) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < nrows; i++) {
        PyObject *row = PyList_GET_ITEM(t->rows, i);
        PyObject *s1 = PyDict_GetItemWithError(t->strings, PyTuple_GET_ITEM(row, 1));
        PyObject *s3 = s1 ? PyDict_GetItemWithError(t->strings, PyTuple_GET_ITEM(row, 3)) : NULL;
        if (s3 == NULL || put_pyuvarint(&out, PyTuple_GET_ITEM(row, 0)) < 0 ||
            put_pyuvarint(&out, s1) < 0 || put_pyuvarint(&out, PyTuple_GET_ITEM(row, 2)) < 0 ||
            put_pyuvarint(&out, s3) < 0 || put_pyuvarint(&out, PyTuple_GET_ITEM(row, 4)) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "thread strings not in the string table");
            goto done;
        }
    }
    Py_ssize_t fields = body->len - BODY_HEADROOM;
    if (put_uvarint(&out, (unsigned long long)n) < 0 ||
        put_uvarint(&out, (unsigned long long)fields) < 0 ||
        put_raw(body, (const char *)t->times.data, t->times.len) < 0)
        goto done;
    Py_ssize_t events = body->len - BODY_HEADROOM;  /* their fields, then their times */
    PyObject *payload;
    if (!lz4) {  /* tables and events copied once, into the bytes object */
        payload = PyBytes_FromStringAndSize(NULL, out.len + events);
        if (payload != NULL) {
            memcpy(PyBytes_AS_STRING(payload), out.data, (size_t)out.len);
            memcpy(PyBytes_AS_STRING(payload) + out.len, body->data + BODY_HEADROOM,
                   (size_t)events);
        }
    } else if (out.len <= BODY_HEADROOM) {  /* the usual tables: in front of the events */
        unsigned char *start = body->data + BODY_HEADROOM - out.len;
        memcpy(start, out.data, (size_t)out.len);
        payload = fnt_lz_stored(start, (size_t)(out.len + events));
    } else {  /* a large table: the events after it */
        payload = put_raw(&out, (const char *)body->data + BODY_HEADROOM, events) < 0
            ? NULL : fnt_lz_stored(out.data, (size_t)out.len);
    }
    if (payload != NULL)
        result = Py_BuildValue("(Nnn)", payload, n, nrows);
done:
    PyMem_Free(out.data);
    return result;
}

/* The most bytes encode_slot writes for one event: the first byte and six
 * uvarints of at most 10 bytes each. */
#define SLOT_MAX_BYTES 64

/* The string index of a record's text, -1 for none (put_text's), -2 on error. */
static inline Py_ssize_t
text_sid(Tables *t, PyObject *text)
{
    if (text == NULL || text == Py_None)
        return -1;
    Py_ssize_t sid = tab_sid(t, text);
    return sid < 0 ? -2 : sid;
}

/* One packed event (a recorder's slot) into the chunk: what encode_one does with
 * the tuple the slot stands for, without building it.  Every table lookup comes
 * first (they may call Python); then the bytes are written with one room check,
 * which is most of the writer's work per event. */
FNT_ALWAYS_INLINE int
encode_slot(Bytes *body, Tables *t, Py_ssize_t ti, Slot *sl, PyObject *event_codes)
{
    int code = sl->kind == EVENT_TAG_CALL    ? FILE_KIND_CALL
             : sl->kind == EVENT_TAG_ENTRY ? FILE_KIND_ENTRY
                                           : FILE_KIND_EXIT;
    long evcode = t->evmap[sl->evcode];
    if (evcode < 0) {
        PyObject *c = PyDict_GetItemWithError(event_codes, fnt_event_names[sl->evcode]);
        evcode = c != NULL ? PyLong_AsLong(c) : 0;
        if (PyErr_Occurred())
            return -1;
        t->evmap[sl->evcode] = evcode;
    }
    size_t fs = fnt_ptr_slot(sl->obj, FID_SLOTS);
    Py_ssize_t fid;
    if (t->fid_cache[fs].fn == sl->obj) {
        fid = t->fid_cache[fs].fid;
    } else {
        fid = fn_fid(t, sl->obj, 0);
        if (fid < 0)
            return -1;
        t->fid_cache[fs].fn = sl->obj;
        t->fid_cache[fs].fid = fid;
    }
    Py_ssize_t parent = 0;  /* F: the parent's fid + 1 (no args: the recorder writes none) */
    Py_ssize_t sid = -1;    /* E, X: the text's string index, or -1 */
    if (code == FILE_KIND_CALL) {
        if (sl->aux != NULL && sl->aux != Py_None) {
            parent = fn_fid(t, sl->aux, 1);
            if (parent < 0)
                return -1;
            parent++;
        }
    } else {
        sid = text_sid(t, sl->aux);
        if (sid < -1)
            return -1;
    }
    if (bytes_room(body, SLOT_MAX_BYTES) < 0 || bytes_room(&t->times, 20) < 0)
        return -1;
    unsigned char *p = body->data + body->len, *q = t->times.data + t->times.len;
    *p++ = (unsigned char)(code | (evcode << FILE_EVENT_SHIFT) | (sid >= 0 ? FILE_TEXT_FLAG : 0));
    p = thread_at(p, t, ti);
    long long delta = sl->ts - t->last_ts[ti];
    t->last_ts[ti] = sl->ts;
    q = uvarint_at(q, zigzag(delta));
    p = uvarint_at(p, (unsigned long long)fid);
    if (code == FILE_KIND_CALL) {
        p = uvarint_at(p, (unsigned long long)parent);
    } else {
        p = uvarint_at(p, (unsigned long long)(sl->depth > 0 ? sl->depth : 0));
        if (code == FILE_KIND_EXIT)
            q = uvarint_at(q, (unsigned long long)(sl->duration > 0 ? sl->duration : 0));
        if (sid >= 0)
            p = uvarint_at(p, (unsigned long long)sid);
    }
    body->len = p - body->data;
    t->times.len = q - t->times.data;
    return 0;
}

/* A task note's slot into the chunk: the marker record the Python encoder
 * makes of its tuple (tracefile.stored_text: the note's text behind the task
 * prefix, no event code), without building the tuple or calling Python. */
static int
encode_task_slot(Bytes *body, Tables *t, Py_ssize_t ti, Slot *sl)
{
    if (bytes_room(body, 11) < 0)
        return -1;
    body->data[body->len++] = (unsigned char)FILE_KIND_MARKER;
    body->len = thread_at(body->data + body->len, t, ti) - body->data;
    long long delta = sl->ts - t->last_ts[ti];
    t->last_ts[ti] = sl->ts;
    if (put_uvarint(&t->times, zigzag(delta)) < 0)
        return -1;
    PyObject *text = PyUnicode_Concat(fnt_task_prefix, sl->obj);
    if (text == NULL)
        return -1;
    Py_ssize_t sid = tab_sid(t, text);
    Py_DECREF(text);
    return sid < 0 ? -1 : put_uvarint(body, (unsigned long long)sid);
}

typedef struct {
    PyObject *buf;
    Slot *slots;
    EventQueue *queue;   /* held when slots lie in its detached array (array) */
    Slot *array;
    Py_ssize_t array_cap;
    Py_ssize_t n, pos;
    Py_ssize_t ti;  /* its thread's index in the chunk, once its first event is encoded */
    int tuples;     /* whether a slot holds a tuple written from Python (encode_one's) */
} TakenSlots;

/* The room reserved per event for the chunk's fields before encoding: the
 * usual event's (head, function, depth: 3 to 5 bytes; its times go apart). */
#define USUAL_FIELDS 6

/* How many events encode_run writes between two checks of the buffer's room. */
#define RUN_BLOCK 256

/* Every slot of one thread, in order, the chunk's only thread (the usual
 * chunk, whose events store no thread index): no merge, no choosing per
 * event, and no pass over the slots before this one.  The usual event - an
 * entry or an exit with no text, of a function the chunk's table already has
 * - is written right here, with the buffers' room checked once per RUN_BLOCK
 * events; any other goes through encode_slot.  0 done (*bytes: their
 * accounted bytes); 1 when a slot holds a tuple written from Python or a
 * timestamp goes back (the caller starts the chunk again the general way);
 * -1 error. */
static int
encode_run(Bytes *body, Tables *t, TakenSlots *tk, PyObject *event_codes, long long *bytes)
{
    Py_ssize_t ti = tk->ti;
    long long sum = 0, prev = LLONG_MIN, last = t->last_ts[ti];
    Slot *sl = tk->slots, *end = tk->slots + tk->n;
    while (sl < end) {
        Slot *stop = end - sl > RUN_BLOCK ? sl + RUN_BLOCK : end;
        if (bytes_room(body, (stop - sl) * SLOT_MAX_BYTES) < 0 ||
            bytes_room(&t->times, (stop - sl) * 20) < 0)
            return -1;
        unsigned char *p = body->data + body->len, *q = t->times.data + t->times.len;
        for (; sl < stop; sl++) {
            char kind = sl->kind;
            if (kind == 0 || sl->ts < prev)
                return 1;
            prev = sl->ts;
            sum += sl->size;
            size_t fs = fnt_ptr_slot(sl->obj, FID_SLOTS);
            long evcode = t->evmap[sl->evcode];
            if ((kind == EVENT_TAG_ENTRY || kind == EVENT_TAG_EXIT) && evcode >= 0 &&
                (sl->aux == NULL || sl->aux == Py_None) && t->fid_cache[fs].fn == sl->obj) {
                int exit = kind == EVENT_TAG_EXIT;
                *p++ = (unsigned char)((exit ? FILE_KIND_EXIT : FILE_KIND_ENTRY) |
                                       (evcode << FILE_EVENT_SHIFT));
                long long delta = sl->ts - last;
                last = sl->ts;
                q = uvarint_at(q, zigzag(delta));
                p = uvarint_at(p, (unsigned long long)t->fid_cache[fs].fid);
                p = uvarint_at(p, (unsigned long long)(sl->depth > 0 ? sl->depth : 0));
                if (exit)
                    q = uvarint_at(q, (unsigned long long)(sl->duration > 0 ? sl->duration : 0));
                continue;
            }
            /* any other event: the general writers, which check the room themselves */
            body->len = p - body->data;
            t->times.len = q - t->times.data;
            t->last_ts[ti] = last;
            if ((kind == EVENT_TAG_TASK ? encode_task_slot(body, t, ti, sl)
                                        : encode_slot(body, t, ti, sl, event_codes)) < 0)
                return -1;
            last = t->last_ts[ti];
            p = body->data + body->len;
            q = t->times.data + t->times.len;
        }
        body->len = p - body->data;
        t->times.len = q - t->times.data;
    }
    t->last_ts[ti] = last;
    tk->pos = tk->n;
    *bytes = sum;
    return 0;
}

/* Whether the taken events come from more than one thread, by tid as the
 * chunk's thread table tells them apart (two buffers of a thread whose id was
 * reused are one row): their events then store their thread's index.  0 or -1. */
static int
several_threads(TakenSlots *tk, Py_ssize_t k, int *several)
{
    PyObject *seen = NULL;
    int rc = 0;
    *several = 0;
    for (Py_ssize_t j = 0; j < k && !*several; j++) {
        if (tk[j].n == 0)
            continue;
        PyObject *tid = PyObject_GetAttr(tk[j].buf, fnt_st->str_tid);
        if (tid == NULL) {
            rc = -1;
            break;
        }
        if (seen == NULL) {
            seen = tid;
            continue;
        }
        int same = PyObject_RichCompareBool(seen, tid, Py_EQ);
        Py_DECREF(tid);
        if (same < 0) {
            rc = -1;
            break;
        }
        *several = !same;
    }
    Py_XDECREF(seen);
    return rc;
}

/* One thread's taken slots read for the general way: their accounted bytes
 * (the ring's read counters), whether one holds a tuple written from Python
 * (then its size and timestamp are read from it), and the chunk's time bounds
 * so far (*first, *last over *total slots; *monotonic cleared when this
 * thread's timestamps go back).  0, or -1 with tk->n cut to the slots read. */
static int
ring_stats(TakenSlots *tk, Py_ssize_t n, long long *first, long long *last, Py_ssize_t *total,
           int *monotonic)
{
    RingCore *rc = (RingCore *)tk->buf;
    Slot *ss = tk->slots;
    long long bytes = 0, prev = LLONG_MIN;
    int in_order = 1;
    Py_ssize_t i = 0;
    for (; i < n; i++) {
        Slot *sl = &ss[i];
        if (sl->kind != 0) {
            bytes += sl->size;
        } else {  /* a tuple written from Python: its size and timestamp, read */
            long long size = 0;
            int bad = 0;
            tk->tuples = 1;
            if (fnt_slot_size(sl, &size) < 0)
                break;
            sl->ts = event_ts(sl->obj, &bad);
            if (bad)
                break;
            bytes += size;
        }
        in_order &= sl->ts >= prev;
        prev = sl->ts;
    }
    tk->n = i;
    rc->read += i;
    rc->read_bytes += bytes;
    if (i > 0) {
        /* the thread's earliest and latest: its ends when in order (the usual
         * case), else looked for */
        long long lo = ss[0].ts, hi = ss[i - 1].ts;
        if (!in_order) {
            *monotonic = 0;
            for (Py_ssize_t m = 0; m < i; m++) {
                lo = ss[m].ts < lo ? ss[m].ts : lo;
                hi = ss[m].ts > hi ? ss[m].ts : hi;
            }
        }
        *first = *total && *first < lo ? *first : lo;
        *last = *total && *last > hi ? *last : hi;
    }
    *total += i;
    return i == n ? 0 : -1;
}

/* encode_buffers(buffers, other, event_codes[, note_prefix[, keys[, lz4]]]) ->
 * (payload, n, tids, first, last, notes):
 * take every event now in these RingCore buffers (as take_all does) and make the
 * payload of one trace-file event chunk, byte for byte what TraceWriter.write_events
 * makes of to_wevent() of take_all's pairs, without building the pairs (a
 * recorder's packed event is encoded from its slot); with lz4, the payload as
 * an LZ4 chunk stores it, compressed here without a copy of the events; tids
 * are the threads that had events, first and last the chunk's earliest and
 * latest timestamps (None without events): the footer's chunk index, which
 * lets a reader merge the chunks by time before it reads them. */
PyObject *
fnt_encode_buffers(PyObject *module, PyObject *args)
{
    PyObject *buffers, *other, *event_codes, *keys = NULL;
    const char *prefix = NULL;  /* the task notes' prefix (UTF-8), when given */
    Py_ssize_t plen = 0;
    int lz4 = 0;
    if (!PyArg_ParseTuple(args, "OOO!|z#O!p", &buffers, &other, &PyDict_Type, &event_codes,
                          &prefix, &plen, &PyDict_Type, &keys, &lz4))
        return NULL;
    PyObject *seq = PySequence_Fast(buffers, "encode_buffers() needs a sequence of buffers");
    if (seq == NULL)
        return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t j = 0; j < k; j++) {
        if (!PyObject_TypeCheck(PySequence_Fast_GET_ITEM(seq, j), &fnt_RingCore_Type)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "encode_buffers() needs RingCore buffers");
            return NULL;
        }
    }
    TakenSlots *tk = PyMem_Calloc((size_t)(k ? k : 1), sizeof(TakenSlots));
    Tables t;
    Bytes body = {0};
    PyObject *result = NULL, *tids = NULL;
    int ok = tables_init(&t, keys) == 0 && tk != NULL && bytes_room(&body, BODY_HEADROOM) == 0;
    if (tk == NULL)
        PyErr_NoMemory();
    body.len = BODY_HEADROOM;
    Py_ssize_t total = 0;
    int monotonic = 1;
    long long first = 0, last = 0;
    for (Py_ssize_t j = 0; ok && j < k; j++) {
        RingCore *rc = (RingCore *)PySequence_Fast_GET_ITEM(seq, j);
        EventQueue *q = rc->events;
        tk[j].buf = (PyObject *)rc;
        tk[j].ti = -1;
        Py_ssize_t n = q ? q->len : 0;
        if (n == 0)
            continue;
        /* The queue's slots taken out at once (their references are ours now),
         * by taking its array when they lie in one run, else moved into one of
         * ours; a failure below releases the ones not yet counted in tk[j].n. */
        if (fnt_queue_detach(q, &tk[j].slots, &tk[j].array, &tk[j].array_cap)) {
            tk[j].queue = (EventQueue *)Py_NewRef(q);
        } else {
            tk[j].slots = PyMem_Malloc((size_t)n * sizeof(Slot));
            if (tk[j].slots == NULL) {
                PyErr_NoMemory();
                ok = 0;
                break;
            }
            fnt_queue_take_all(q, tk[j].slots);
            tk[j].array = tk[j].slots;
        }
        tk[j].n = n;
    }
    /* The usual chunk, one thread's events: encoded as they are read.  A tuple
     * or a clock that went back sends it the general way, from the start. */
    Py_ssize_t only = -1, filled = 0;
    for (Py_ssize_t j = 0; j < k; j++) {
        if (tk[j].n > 0) {
            only = j;
            filled++;
        }
    }
    int done = 0;
    if (ok && filled == 1) {
        TakenSlots *one = &tk[only];
        long long bytes = 0;
        int r = -1;
        if (bytes_room(&body, one->n * USUAL_FIELDS) == 0 &&
            (one->ti = tab_thread(&t, one->buf)) >= 0)
            r = encode_run(&body, &t, one, event_codes, &bytes);
        if (r == 0) {
            RingCore *rc = (RingCore *)one->buf;
            rc->read += one->n;
            rc->read_bytes += bytes;
            first = one->slots[0].ts;
            last = one->slots[one->n - 1].ts;
            total = one->n;
            done = 1;
        } else if (r > 0) {
            body.len = BODY_HEADROOM;
            tables_free(&t);
            ok = tables_init(&t, keys) == 0;
            one->ti = -1;
            one->pos = 0;
        } else {
            ok = 0;
        }
    }
    for (Py_ssize_t j = 0; ok && !done && j < k; j++) {
        Py_ssize_t n = tk[j].n;
        if (n > 0 && ring_stats(&tk[j], n, &first, &last, &total, &monotonic) < 0) {
            ok = 0;
            for (Py_ssize_t i = tk[j].n; i < n; i++)
                fnt_slot_release(&tk[j].slots[i]);
        }
    }
    if (ok && !done && total > 0 && bytes_room(&body, total * USUAL_FIELDS) < 0)
        ok = 0;  /* more grows as it comes */
    if (ok && !done && several_threads(tk, k, &t.indexed) < 0)
        ok = 0;
    if (!ok || done) {
        /* nothing more to encode */
    } else if (!monotonic) {
        /* a clock that went back: the pairs, sorted as consume() sorts them */
        PyObject *keyed = PyList_New(0);
        for (Py_ssize_t j = 0; keyed != NULL && j < k; j++) {
            for (Py_ssize_t i = 0; i < tk[j].n; i++) {
                PyObject *ev = fnt_slot_event(&tk[j].slots[i]);
                PyObject *item = ev ? Py_BuildValue("(LnnOO)", tk[j].slots[i].ts, j, i,
                                                    tk[j].buf, ev) : NULL;
                Py_XDECREF(ev);
                if (item == NULL || PyList_Append(keyed, item) < 0) {
                    Py_XDECREF(item);
                    Py_CLEAR(keyed);
                    break;
                }
                Py_DECREF(item);
            }
        }
        ok = keyed != NULL && PyList_Sort(keyed) == 0;
        for (Py_ssize_t m = 0; ok && m < total; m++) {
            PyObject *item = PyList_GET_ITEM(keyed, m);
            ok = encode_one(&body, &t, PyTuple_GET_ITEM(item, 3), PyTuple_GET_ITEM(item, 4),
                            other, event_codes) == 0;
        }
        Py_XDECREF(keyed);
    } else {
        /* several threads' events, or tuples among them: merged by time */
        for (Py_ssize_t m = 0; ok && m < total; m++) {
            Py_ssize_t best = -1;
            for (Py_ssize_t j = 0; j < k; j++) {
                if (tk[j].pos < tk[j].n &&
                    (best < 0 || tk[j].slots[tk[j].pos].ts < tk[best].slots[tk[best].pos].ts))
                    best = j;
            }
            Slot *sl = &tk[best].slots[tk[best].pos++];
            if (sl->kind != 0) {
                /* threads enter the chunk's table in the order of their first event */
                if (tk[best].ti < 0)
                    tk[best].ti = tab_thread(&t, tk[best].buf);
                ok = tk[best].ti >= 0 &&
                    (sl->kind == EVENT_TAG_TASK
                         ? encode_task_slot(&body, &t, tk[best].ti, sl)
                         : encode_slot(&body, &t, tk[best].ti, sl, event_codes)) == 0;
            } else {
                ok = encode_one(&body, &t, tk[best].buf, sl->obj, other, event_codes) == 0;
            }
        }
    }
    if (ok) {
        tids = PyList_New(0);
        for (Py_ssize_t j = 0; tids != NULL && j < k; j++) {
            if (tk[j].n == 0)
                continue;
            PyObject *tid = PyObject_GetAttr(tk[j].buf, fnt_st->str_tid);
            if (tid == NULL || PyList_Append(tids, tid) < 0) {
                Py_XDECREF(tid);
                Py_CLEAR(tids);
                break;
            }
            Py_DECREF(tid);
        }
        int notes = prefix == NULL;  /* not asked: say it may hold one */
        PyObject *chunk = tids ? chunk_payload(&t, &body, total, prefix, plen, &notes, lz4)
                               : NULL;
        if (chunk != NULL) {
            PyObject *has = notes ? Py_True : Py_False;
            if (total)
                result = Py_BuildValue("(OnOLLO)", PyTuple_GET_ITEM(chunk, 0), total, tids,
                                       first, last, has);
            else
                result = Py_BuildValue("(OnOOOO)", PyTuple_GET_ITEM(chunk, 0), total, tids,
                                       Py_None, Py_None, has);
            Py_DECREF(chunk);
        }
    }
    for (Py_ssize_t j = 0; tk != NULL && j < k; j++) {
        for (Py_ssize_t i = 0; i < tk[j].n; i++)
            fnt_slot_release(&tk[j].slots[i]);
        if (tk[j].queue != NULL) {
            fnt_queue_give_back(tk[j].queue, tk[j].array, tk[j].array_cap);
            Py_DECREF(tk[j].queue);
        } else {
            PyMem_Free(tk[j].array);
        }
    }
    PyMem_Free(tk);
    Py_XDECREF(tids);
    tables_free(&t);
    PyMem_Free(body.data);
    Py_DECREF(seq);
    return result;
}

#endif  /* FNT_HOT_PATH */
