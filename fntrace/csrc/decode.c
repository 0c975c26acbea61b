/* decode.c: ChunkDecoder - a trace file's event chunk into Records, in C.
 *
 * Why: the reader API (fntrace/formats/tracefile.py) hands every reading
 * command Records; made by the pure-Python decoder they cost ~7 us each.
 * Here an event costs one object allocation and its fields' stores: the
 * Record class is a slotted dataclass, so its instance is made with tp_alloc
 * and its slots filled in place (the offsets come from its member
 * descriptors, checked when the decoder is made), as its __init__ would fill
 * them, without running it.
 *
 * The decoder decodes only what it decodes exactly as the Python one does
 * (decode.h): decode() returns None instead of records where the Python
 * decoder has something to say, and the reader then asks it.
 */
#include "decode.h"
#include "textbuf.h"

#ifdef FNT_HOT_PATH

/* Record's fields in the order of its dataclass. */
enum { R_KIND, R_PID, R_TID, R_TS, R_FUNC, R_PARENT, R_DEPTH, R_EVENT, R_ARGS, R_VALUE,
       R_DURATION, R_TEXT, R_CODE_FLAGS, R_SRC_FILE, R_SRC_LINE, R_NFIELDS };

typedef struct {
    PyObject_HEAD
    PyTypeObject *record;               /* the Record class */
    Py_ssize_t offsets[R_NFIELDS];      /* of its slots */
    PyObject *kinds[FNT_N_KINDS];       /* RECORD_KINDS */
    PyObject *events[FNT_N_EVENTS];     /* EVENT_NAMES */
    PyObject *task_prefix, *task_kind, *empty, *zero;
    uint32_t max_depth;
} ChunkDecoder;

static void
decoder_clear_refs(ChunkDecoder *self)
{
    Py_CLEAR(self->record);
    for (int i = 0; i < FNT_N_KINDS; i++)
        Py_CLEAR(self->kinds[i]);
    for (int i = 0; i < FNT_N_EVENTS; i++)
        Py_CLEAR(self->events[i]);
    Py_CLEAR(self->task_prefix);
    Py_CLEAR(self->task_kind);
    Py_CLEAR(self->empty);
    Py_CLEAR(self->zero);
}

static void
decoder_dealloc(ChunkDecoder *self)
{
    decoder_clear_refs(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
take_names(PyObject *seq, PyObject **into, Py_ssize_t n, const char *what)
{
    if (!PyTuple_Check(seq) || PyTuple_GET_SIZE(seq) != n) {
        PyErr_Format(PyExc_TypeError, "%s: a tuple of %zd strings is expected", what, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyTuple_GET_ITEM(seq, i);
        if (!PyUnicode_Check(s)) {
            PyErr_Format(PyExc_TypeError, "%s: a tuple of %zd strings is expected", what, n);
            return -1;
        }
        into[i] = Py_NewRef(s);
    }
    return 0;
}

static int
decoder_init(ChunkDecoder *self, PyObject *args, PyObject *kwds)
{
    PyTypeObject *record;
    PyObject *fields, *kinds, *events, *task_prefix, *task_kind;
    unsigned int max_depth;
    if (!PyArg_ParseTuple(args, "O!O!OOUUI:ChunkDecoder", &PyType_Type, &record,
                          &PyTuple_Type, &fields, &kinds, &events, &task_prefix, &task_kind,
                          &max_depth))
        return -1;
    decoder_clear_refs(self);
    if (PyTuple_GET_SIZE(fields) != R_NFIELDS) {
        PyErr_Format(PyExc_TypeError, "ChunkDecoder: %d field names are expected", R_NFIELDS);
        return -1;
    }
    if (record->tp_itemsize != 0 || record->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError, "ChunkDecoder: the record class must be slotted");
        return -1;
    }
    for (int i = 0; i < R_NFIELDS; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "ChunkDecoder: field names are strings");
            return -1;
        }
        if ((self->offsets[i] = fnt_slot_offset(record, name)) < 0)
            return -1;
    }
    if (take_names(kinds, self->kinds, FNT_N_KINDS, "record kinds") < 0
        || take_names(events, self->events, FNT_N_EVENTS, "event names") < 0)
        return -1;
    self->record = (PyTypeObject *)Py_NewRef(record);
    self->task_prefix = Py_NewRef(task_prefix);
    self->task_kind = Py_NewRef(task_kind);
    self->empty = PyUnicode_FromString("");
    self->zero = PyLong_FromLong(0);
    self->max_depth = max_depth;
    return self->empty == NULL || self->zero == NULL ? -1 : 0;
}

/* The chunk's tables, as the reader parsed them, borrowed for one decode. */
typedef struct {
    PyObject **strings;       /* nstrings str */
    PyObject **funcs;         /* nfuncs (name, flags, file, line) tuples */
    PyObject **tids;          /* nthreads int */
    Py_ssize_t nstrings, nfuncs, nthreads;
} tables;

static int
check_funcs(PyObject *funcs)
{
    Py_ssize_t n = PyList_GET_SIZE(funcs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(funcs, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 4) {
            PyErr_SetString(PyExc_TypeError, "a function row is (name, flags, file, line)");
            return -1;
        }
    }
    return 0;
}

#define SET(obj, field, value) \
    (*(PyObject **)((char *)(obj) + self->offsets[field]) = (value))

/* A new Record whose fields are all None (a new reference), or NULL. */
static inline PyObject *
new_record(ChunkDecoder *self)
{
    PyObject *rec = self->record->tp_alloc(self->record, 0);
    if (rec == NULL)
        return NULL;
    /* Untracked by the cyclic GC, as CPython untracks a tuple of atomic values:
     * a record holds str, int and None only, so it is never part of a cycle,
     * and a reader holding a chunk's thousands of records would otherwise make
     * every collection walk them (it was half of a replay's time).  The GC
     * stays right if a caller stores a container in a record: an untracked
     * object's references count as outside ones, so nothing is freed early. */
    if (PyObject_IS_GC(rec))
        PyObject_GC_UnTrack(rec);
    for (int i = 0; i < R_NFIELDS; i++)
        SET(rec, i, Py_NewRef(Py_None));
    return rec;
}

/* Replace a field (holding None) with value, a new reference. */
static inline void
put(ChunkDecoder *self, PyObject *rec, int field, PyObject *value)
{
    PyObject **at = (PyObject **)((char *)rec + self->offsets[field]);
    PyObject *old = *at;
    *at = value;
    Py_DECREF(old);
}

static inline PyObject *
opt_string(tables *t, uint32_t sid)
{
    return Py_NewRef(sid ? t->strings[sid - 1] : Py_None);
}

/* One event's Record (new reference), or NULL with an error. */
static PyObject *
make_record(ChunkDecoder *self, tables *t, PyObject *pid, fnt_event *ev)
{
    PyObject *rec = new_record(self);
    if (rec == NULL)
        return NULL;
    PyObject *ts = PyLong_FromLongLong(ev->ts);
    if (ts == NULL) {
        Py_DECREF(rec);
        return NULL;
    }
    put(self, rec, R_PID, Py_NewRef(pid));
    put(self, rec, R_TID, Py_NewRef(t->tids[ev->thread]));
    put(self, rec, R_TS, ts);
    if (ev->code <= FNT_K_EXIT) {
        PyObject *row = t->funcs[ev->func];
        put(self, rec, R_KIND, Py_NewRef(self->kinds[ev->code]));
        put(self, rec, R_FUNC, Py_NewRef(PyTuple_GET_ITEM(row, 0)));
        put(self, rec, R_EVENT, Py_NewRef(self->events[ev->event]));
        put(self, rec, R_CODE_FLAGS, Py_NewRef(PyTuple_GET_ITEM(row, 1)));
        put(self, rec, R_SRC_FILE, Py_NewRef(PyTuple_GET_ITEM(row, 2)));
        put(self, rec, R_SRC_LINE, Py_NewRef(PyTuple_GET_ITEM(row, 3)));
        if (ev->code == FNT_K_CALL) {
            put(self, rec, R_DEPTH, Py_NewRef(self->zero));
            if (ev->parent)
                put(self, rec, R_PARENT,
                    Py_NewRef(PyTuple_GET_ITEM(t->funcs[ev->parent - 1], 0)));
            put(self, rec, R_ARGS, opt_string(t, ev->str));
        }
        else {
            PyObject *depth = PyLong_FromUnsignedLong(ev->depth);
            if (depth == NULL)
                goto fail;
            put(self, rec, R_DEPTH, depth);
            if (ev->code == FNT_K_ENTRY)
                put(self, rec, R_ARGS, opt_string(t, ev->str));
            else {
                PyObject *dur = PyLong_FromLongLong(ev->dur);
                if (dur == NULL)
                    goto fail;
                put(self, rec, R_DURATION, dur);
                put(self, rec, R_VALUE, opt_string(t, ev->str));
            }
        }
        return rec;
    }
    PyObject *text = t->strings[ev->str];
    PyObject *kind = self->kinds[ev->code];
    Py_INCREF(text);
    if (ev->code == FNT_K_MARKER) {
        Py_ssize_t match = PyUnicode_Tailmatch(text, self->task_prefix, 0, PY_SSIZE_T_MAX, -1);
        if (match < 0) {
            Py_DECREF(text);
            goto fail;
        }
        if (match) {
            PyObject *rest = PyUnicode_Substring(text, PyUnicode_GET_LENGTH(self->task_prefix),
                                                 PyUnicode_GET_LENGTH(text));
            Py_DECREF(text);
            if (rest == NULL)
                goto fail;
            text = rest;
            kind = self->task_kind;
        }
    }
    put(self, rec, R_KIND, Py_NewRef(kind));
    put(self, rec, R_FUNC, Py_NewRef(self->empty));
    put(self, rec, R_DEPTH, Py_NewRef(self->zero));
    put(self, rec, R_EVENT, Py_NewRef(self->empty));
    put(self, rec, R_TEXT, text);
    put(self, rec, R_CODE_FLAGS, Py_NewRef(self->zero));
    put(self, rec, R_SRC_LINE, Py_NewRef(self->zero));
    return rec;
fail:
    Py_DECREF(rec);
    return NULL;
}

/* Parse (data, pos, count) and the table sizes of a call; 0 or -1. */
static int
open_cursor(ChunkDecoder *self, fnt_cursor *c, Py_buffer *buf, Py_ssize_t pos,
            Py_ssize_t count, Py_ssize_t nstrings, Py_ssize_t nfuncs, Py_ssize_t nthreads,
            int version)
{
    if (pos < 0 || pos > buf->len || count < 0) {
        PyErr_SetString(PyExc_ValueError, "position or count out of range");
        return -1;
    }
    return fnt_cursor_init(c, buf->buf, buf->len, pos, count, nstrings, nfuncs, nthreads,
                           self->max_depth, version);
}

PyDoc_STRVAR(check_doc,
"check(data, pos, count, nstrings, nfuncs, nthreads, version, /) -> bool\n"
"Whether decode() decodes the chunk's events (data[pos:], count of them, tables\n"
"of these sizes, laid out as the file's format version lays them out) exactly\n"
"as the Python decoder would, without a Python object.");

static PyObject *
decoder_check(ChunkDecoder *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t pos, count, nstrings, nfuncs, nthreads;
    int version;
    if (!PyArg_ParseTuple(args, "y*nnnnni:check", &buf, &pos, &count, &nstrings, &nfuncs,
                          &nthreads, &version))
        return NULL;
    fnt_cursor c;
    if (open_cursor(self, &c, &buf, pos, count, nstrings, nfuncs, nthreads, version) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    fnt_event ev;
    int r;
    while ((r = fnt_next(&c, &ev)) == FNT_DEC_OK)
        ;
    fnt_cursor_done(&c);
    PyBuffer_Release(&buf);
    return PyBool_FromLong(r == FNT_DEC_END);
}

PyDoc_STRVAR(tally_doc,
"tally(data, pos, count, nstrings, nfuncs, nthreads, version, /)\n"
"    -> tuple[list[int], int | None, int | None] | None\n"
"Per thread of the chunk's table its events, the earliest and the latest timestamp\n"
"(None: no event): what `fntrace info --scan` counts and where a time-ordered read\n"
"takes the chunk in, without a record; None as check() is False.");

static PyObject *
decoder_tally(ChunkDecoder *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t pos, count, nstrings, nfuncs, nthreads;
    int version;
    if (!PyArg_ParseTuple(args, "y*nnnnni:tally", &buf, &pos, &count, &nstrings, &nfuncs,
                          &nthreads, &version))
        return NULL;
    fnt_cursor c;
    if (open_cursor(self, &c, &buf, pos, count, nstrings, nfuncs, nthreads, version) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t *counts = PyMem_Calloc(nthreads ? (size_t)nthreads : 1, sizeof(Py_ssize_t));
    if (counts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    fnt_event ev;
    int r, any = 0;
    int64_t first = 0, last = 0;
    while ((r = fnt_next(&c, &ev)) == FNT_DEC_OK) {
        counts[ev.thread]++;
        if (!any || ev.ts > last)
            last = ev.ts;
        if (!any || ev.ts < first)
            first = ev.ts;
        any = 1;
    }
    if (r != FNT_DEC_END) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *list = PyList_New(nthreads);
    if (list == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < nthreads; i++) {
        PyObject *n = PyLong_FromSsize_t(counts[i]);
        if (n == NULL) {
            Py_DECREF(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, n);
    }
    result = any ? Py_BuildValue("(NLL)", list, (long long)first, (long long)last)
                 : Py_BuildValue("(NOO)", list, Py_None, Py_None);
done:
    PyMem_Free(counts);
    fnt_cursor_done(&c);
    PyBuffer_Release(&buf);
    return result;
}

PyDoc_STRVAR(decode_doc,
"decode(data, pos, count, strings, funcs, tids, pid, version, /) -> list[Record] | None\n"
"The chunk's events as Records, or None where the Python decoder is to say what\n"
"is wrong with them (nothing is decoded then).");

static PyObject *
decoder_decode(ChunkDecoder *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t pos, count;
    PyObject *strings, *funcs, *tids, *pid;
    int version;
    if (!PyArg_ParseTuple(args, "y*nnO!O!O!Oi:decode", &buf, &pos, &count, &PyList_Type,
                          &strings, &PyList_Type, &funcs, &PyList_Type, &tids, &pid, &version))
        return NULL;
    PyObject *out = NULL;
    fnt_cursor c;
    if (check_funcs(funcs) < 0 || open_cursor(self, &c, &buf, pos, count,
                                              PyList_GET_SIZE(strings),
                                              PyList_GET_SIZE(funcs),
                                              PyList_GET_SIZE(tids), version) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    tables t = {((PyListObject *)strings)->ob_item, ((PyListObject *)funcs)->ob_item,
                ((PyListObject *)tids)->ob_item, PyList_GET_SIZE(strings),
                PyList_GET_SIZE(funcs), PyList_GET_SIZE(tids)};
    out = PyList_New(count);
    if (out == NULL)
        goto done;
    fnt_event ev;
    Py_ssize_t i = 0;
    int r;
    while ((r = fnt_next(&c, &ev)) == FNT_DEC_OK) {
        PyObject *rec = make_record(self, &t, pid, &ev);
        if (rec == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, rec);
        i++;
    }
    if (r != FNT_DEC_END) {
        Py_CLEAR(out);
        out = Py_NewRef(Py_None);
    }
done:
    fnt_cursor_done(&c);
    PyBuffer_Release(&buf);
    return out;
}

static PyMethodDef decoder_methods[] = {
    {"check", (PyCFunction)decoder_check, METH_VARARGS, check_doc},
    {"decode", (PyCFunction)decoder_decode, METH_VARARGS, decode_doc},
    {"tally", (PyCFunction)decoder_tally, METH_VARARGS, tally_doc},
    {NULL}
};

static PyTypeObject ChunkDecoder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.ChunkDecoder",
    .tp_doc = "ChunkDecoder(record_class, field_names, kinds, event_names, task_prefix, "
              "task_kind, max_depth): a trace file's event chunks into records.",
    .tp_basicsize = sizeof(ChunkDecoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)decoder_init,
    .tp_dealloc = (destructor)decoder_dealloc,
    .tp_methods = decoder_methods,
};

int
fnt_decode_add_types(PyObject *m)
{
    return fnt_add_type(m, &ChunkDecoder_Type, "ChunkDecoder");
}

#endif  /* FNT_HOT_PATH */
