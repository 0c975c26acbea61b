/* prof_recorder.c: the function profiler's per-thread state and its entries
 * and exits of plain functions, in C.
 *
 * Why: the function profiler (tracers/profile.py) keeps, per thread, a stack
 * of running call segments and a table of records (hits, time, sum of
 * squares).  ProfThread is that state, packed, used by both paths of the
 * profiler so they hand over in the middle of a call; ProfRecorder times the
 * calls without any Python frame.  No ring: the profiler ignores tracing_on
 * and the pid filters, as the kernel's does.
 */
#include "recorder.h"

#ifdef FNT_HOT_PATH

typedef fnt_where Where;
typedef fnt_tls_cache TlsCache;

/* One thread's profile (tracers/profile.py): its stack of running call
 * segments and its table of records, both packed.  The Python path of the
 * profiler uses the same object through its methods, so the two paths hand
 * over in the middle of a call; profile.py has the pure-Python twin. */
typedef struct {
    void *key;           /* the frame's key (frame_key) */
    long long start;     /* ns */
    long long children;  /* ns spent in traced callees */
    long long gen;       /* the profiler's reset generation at entry */
} PSeg;

typedef struct {
    PyObject *fn;        /* strong; NULL: free */
    long long hits, time;
    unsigned long long sq_lo, sq_hi;  /* sum of squared ns, 128 bits */
} PRec;

typedef struct {
    PyObject_HEAD
    PSeg *seg;
    Py_ssize_t n, cap;
    PRec *rec;
    Py_ssize_t used, size;  /* size: a power of two, or 0 */
} ProfThread;

static PyTypeObject ProfThread_Type;

static int
ProfThread_traverse(ProfThread *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->size; i++)
        Py_VISIT(self->rec[i].fn);
    return 0;
}

static void
prof_table_free(ProfThread *self)
{
    PRec *rec = self->rec;
    Py_ssize_t size = self->size;
    self->rec = NULL;
    self->size = self->used = 0;
    for (Py_ssize_t i = 0; i < size; i++)
        Py_XDECREF(rec[i].fn);
    PyMem_Free(rec);
}

static int
ProfThread_clear(ProfThread *self)
{
    prof_table_free(self);
    return 0;
}

static void
ProfThread_dealloc(ProfThread *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    prof_table_free(self);
    PyMem_Free(self->seg);
    tp->tp_free((PyObject *)self);
}

/* The record of `fn`, added when missing (NULL: no memory). */
static PRec *
prof_record(ProfThread *self, PyObject *fn)
{
    if (self->size) {
        size_t mask = (size_t)self->size - 1;
        for (size_t i = fnt_ptr_slot(fn, (size_t)self->size);; i = (i + 1) & mask) {
            PRec *r = &self->rec[i];
            if (r->fn == fn)
                return r;
            if (r->fn == NULL)
                break;
        }
    }
    if ((self->used + 1) * 2 > self->size) {
        Py_ssize_t size = self->size ? self->size * 2 : 64;
        PRec *rec = PyMem_Calloc((size_t)size, sizeof(PRec));
        if (rec == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t j = 0; j < self->size; j++) {
            PRec *old = &self->rec[j];
            if (old->fn == NULL)
                continue;
            size_t k = fnt_ptr_slot(old->fn, (size_t)size);
            while (rec[k].fn != NULL)
                k = (k + 1) & ((size_t)size - 1);
            rec[k] = *old;
        }
        PyMem_Free(self->rec);
        self->rec = rec;
        self->size = size;
    }
    size_t mask = (size_t)self->size - 1;
    size_t i = fnt_ptr_slot(fn, (size_t)self->size);
    while (self->rec[i].fn != NULL)
        i = (i + 1) & mask;
    PRec *r = &self->rec[i];
    memset(r, 0, sizeof(*r));
    r->fn = Py_NewRef(fn);
    self->used++;
    return r;
}

static int
prof_hit(ProfThread *self, PyObject *fn)
{
    PRec *r = prof_record(self, fn);
    if (r == NULL)
        return -1;
    r->hits++;
    return 0;
}

static int
prof_add(ProfThread *self, PyObject *fn, long long spent)
{
    PRec *r = prof_record(self, fn);
    if (r == NULL)
        return -1;
    r->time += spent;
    /* spent < 0 only from a clock that went back (a profiler clock a test set) */
    unsigned long long s = spent < 0 ? 0ULL - (unsigned long long)spent
                                     : (unsigned long long)spent;
    unsigned __int128 sq = (unsigned __int128)s * s;
    unsigned __int128 acc = ((unsigned __int128)r->sq_hi << 64) | r->sq_lo;
    acc += sq;
    r->sq_lo = (unsigned long long)acc;
    r->sq_hi = (unsigned long long)(acc >> 64);
    return 0;
}

static int
prof_push(ProfThread *self, void *key, long long start, long long gen)
{
    if (self->n == self->cap) {
        Py_ssize_t cap = self->cap ? self->cap * 2 : 64;
        PSeg *seg = PyMem_Realloc(self->seg, (size_t)cap * sizeof(PSeg));
        if (seg == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->seg = seg;
        self->cap = cap;
    }
    PSeg *s = &self->seg[self->n++];
    s->key = key;
    s->start = start;
    s->children = 0;
    s->gen = gen;
    return 0;
}

/* The segment of `key` (dropping any above it whose exit never came) ended
 * at `now`: its duration goes to the caller's children.  0: no such segment. */
static int
prof_pop_to(ProfThread *self, void *key, long long now, PSeg *out)
{
    for (Py_ssize_t i = self->n - 1; i >= 0; i--) {
        if (self->seg[i].key != key)
            continue;
        *out = self->seg[i];
        self->n = i;
        out->start = now - out->start;  /* the duration, from here on */
        if (i > 0)
            self->seg[i - 1].children += out->start;
        return 1;
    }
    return 0;
}

static PyObject *
ProfThread_hit(ProfThread *self, PyObject *fn)
{
    if (prof_hit(self, fn) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
ProfThread_add(ProfThread *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add(fn, spent_ns)");
        return NULL;
    }
    long long spent = PyLong_AsLongLong(args[1]);
    if (spent == -1 && PyErr_Occurred())
        return NULL;
    if (prof_add(self, args[0], spent) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
ProfThread_push(ProfThread *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "push(key, start_ns, generation)");
        return NULL;
    }
    void *key = PyLong_AsVoidPtr(args[0]);
    if (key == NULL && PyErr_Occurred())
        return NULL;
    long long start = PyLong_AsLongLong(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    long long gen = PyLong_AsLongLong(args[2]);
    if (gen == -1 && PyErr_Occurred())
        return NULL;
    if (prof_push(self, key, start, gen) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
ProfThread_pop_to(ProfThread *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "pop_to(key, now_ns)");
        return NULL;
    }
    void *key = PyLong_AsVoidPtr(args[0]);
    if (key == NULL && PyErr_Occurred())
        return NULL;
    long long now = PyLong_AsLongLong(args[1]);
    if (now == -1 && PyErr_Occurred())
        return NULL;
    PSeg seg;
    if (!prof_pop_to(self, key, now, &seg))
        Py_RETURN_NONE;
    return Py_BuildValue("(LLL)", seg.start, seg.children, seg.gen);
}

static PyObject *
prof_squares(PRec *r)
{
    PyObject *hi = PyLong_FromUnsignedLongLong(r->sq_hi);
    PyObject *lo = PyLong_FromUnsignedLongLong(r->sq_lo);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *up = hi && shift ? PyNumber_Lshift(hi, shift) : NULL;
    PyObject *sum = up && lo ? PyNumber_Or(up, lo) : NULL;
    Py_XDECREF(hi);
    Py_XDECREF(lo);
    Py_XDECREF(shift);
    Py_XDECREF(up);
    return sum;
}

static PyObject *
ProfThread_records(ProfThread *self, PyObject *unused)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->size; i++) {
        PRec *r = &self->rec[i];
        if (r->fn == NULL)
            continue;
        PyObject *sq = prof_squares(r);
        PyObject *item = sq ? Py_BuildValue("(OLLN)", r->fn, r->hits, r->time, sq) : NULL;
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

static PyObject *
ProfThread_clear_table(ProfThread *self, PyObject *unused)
{
    prof_table_free(self);
    Py_RETURN_NONE;
}

static Py_ssize_t
ProfThread_len(ProfThread *self)
{
    return self->n;
}

static PyMethodDef ProfThread_methods[] = {
    {"hit", (PyCFunction)ProfThread_hit, METH_O, "Count a call of fn."},
    {"add", (PyCFunction)(void (*)(void))ProfThread_add, METH_FASTCALL,
     "Add a call's time (ns) to fn's record."},
    {"push", (PyCFunction)(void (*)(void))ProfThread_push, METH_FASTCALL,
     "A call segment starts: push(key, start_ns, generation)."},
    {"pop_to", (PyCFunction)(void (*)(void))ProfThread_pop_to, METH_FASTCALL,
     "The segment of key ends at now_ns: (duration, children, generation), or None."},
    {"records", (PyCFunction)ProfThread_records, METH_NOARGS,
     "[(fn, hits, time ns, sum of squared ns)] of this thread."},
    {"clear_table", (PyCFunction)ProfThread_clear_table, METH_NOARGS,
     "Forget every record (the stack is kept)."},
    {NULL}
};

static PySequenceMethods ProfThread_as_sequence = {
    .sq_length = (lenfunc)ProfThread_len,
};

static PyTypeObject ProfThread_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.ProfThread",
    .tp_basicsize = sizeof(ProfThread),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One thread's profile: its call segments and its records, packed.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)ProfThread_dealloc,
    .tp_traverse = (traverseproc)ProfThread_traverse,
    .tp_clear = (inquiry)ProfThread_clear,
    .tp_methods = ProfThread_methods,
    .tp_as_sequence = &ProfThread_as_sequence,
};

/* The profiler's entries and exits.  No ring: the profiler ignores
 * tracing_on and the pid filters, as the kernel's does.  A generator or
 * coroutine call (one call however often it resumes) is kept in the
 * profiler's table of open calls, shared between threads and with the Python
 * path: frame key -> [time so far, generation, code] (profile.py,
 * _call_started). */
typedef struct {
    FNT_RECORDER_HEAD
    PyObject *tls;         /* the profiler's threading.local (.state) */
    PyObject *make_state;  /* creates and publishes this thread's state */
    PyObject *ev_start, *ev_yield;
    PyObject *open;        /* the open generator calls (a dict) */
    Py_ssize_t open_limit;
    TlsCache s_state;
    long long generation;
    int graph_time;
} ProfRecorder;

#define FNT_GEN_FLAGS (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)

static inline int
is_gen_code(PyObject *code)
{
    return PyCode_Check(code) && (((PyCodeObject *)code)->co_flags & FNT_GEN_FLAGS);
}

static inline int
event_is(PyObject *event, PyObject *want)
{
    return event == want || (PyUnicode_Check(event) && PyUnicode_Compare(event, want) == 0);
}

static int
ProfRecorder_init(ProfRecorder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"tls", "make_state", "start", "yield_", "open", "open_limit",
                             NULL};
    PyObject *tls, *make_state, *start, *yield_, *open;
    Py_ssize_t open_limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO!n", kwlist, &tls, &make_state,
                                     &start, &yield_, &PyDict_Type, &open, &open_limit))
        return -1;
    if (open_limit < 4) {
        PyErr_SetString(PyExc_ValueError, "open_limit < 4");
        return -1;
    }
    fnt_recorder_bind((fnt_recorder *)self, Py_None);
    Py_XSETREF(self->tls, Py_NewRef(tls));
    Py_XSETREF(self->make_state, Py_NewRef(make_state));
    Py_XSETREF(self->ev_start, Py_NewRef(start));
    Py_XSETREF(self->ev_yield, Py_NewRef(yield_));
    Py_XSETREF(self->open, Py_NewRef(open));
    self->open_limit = open_limit;
    Py_CLEAR(self->s_state.obj);
    self->generation = 0;
    self->graph_time = 1;
    return 0;
}

static int
ProfRecorder_traverse(ProfRecorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->tls);
    Py_VISIT(self->make_state);
    Py_VISIT(self->open);
    Py_VISIT(self->s_state.obj);
    return fnt_recorder_traverse_common((fnt_recorder *)self, visit, arg);
}

static int
ProfRecorder_clear(ProfRecorder *self)
{
    Py_CLEAR(self->tls);
    Py_CLEAR(self->make_state);
    Py_CLEAR(self->ev_start);
    Py_CLEAR(self->ev_yield);
    Py_CLEAR(self->open);
    Py_CLEAR(self->s_state.obj);
    fnt_recorder_clear_common((fnt_recorder *)self);
    return 0;
}

static void
ProfRecorder_dealloc(ProfRecorder *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ProfRecorder_clear(self);
    tp->tp_free((PyObject *)self);
}

/* This thread's ProfThread (the profiler's make_state creates and publishes it). */
static PyObject *
prof_state(ProfRecorder *self, int create, unsigned long long tsid)
{
    return fnt_tls_object(&self->s_state, self->tls, fnt_st->str_state, self->make_state, 0,
                      &ProfThread_Type, create, tsid);
}

/* A generator call starts: open[key] = [0, generation, code]; past open_limit
 * the oldest quarter is dropped first (calls of generators that died
 * suspended, whose exits never came). */
static int
prof_call_started(ProfRecorder *self, void *key, PyObject *code)
{
    if (PyDict_GET_SIZE(self->open) >= self->open_limit) {
        PyObject *old = PyList_New(0), *k, *v;
        Py_ssize_t pos = 0;
        while (old != NULL && PyList_GET_SIZE(old) < self->open_limit / 4 &&
               PyDict_Next(self->open, &pos, &k, &v)) {
            if (PyList_Append(old, k) < 0)
                Py_CLEAR(old);
        }
        if (old == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(old); i++) {
            if (PyDict_DelItem(self->open, PyList_GET_ITEM(old, i)) < 0) {
                Py_DECREF(old);
                return -1;
            }
        }
        Py_DECREF(old);
    }
    PyObject *k = PyLong_FromVoidPtr(key);
    PyObject *call = k ? Py_BuildValue("[iLO]", 0, self->generation, code) : NULL;
    int r = call ? PyDict_SetItem(self->open, k, call) : -1;
    Py_XDECREF(k);
    Py_XDECREF(call);
    return r;
}

static int
prof_entry(fnt_recorder *rec, PyObject *fn, PyObject *code, Where *where, PyObject *event,
           unsigned long long tsid)
{
    ProfRecorder *self = (ProfRecorder *)rec;
    PyObject *obj = prof_state(self, 1, tsid);
    if (obj == NULL)
        return -1;
    ProfThread *state = (ProfThread *)obj;
    void *key = fnt_where_key(where);
    if (event_is(event, self->ev_start)) {
        if (prof_hit(state, fn) < 0)
            return -1;
        if (is_gen_code(code) && prof_call_started(self, key, code) < 0)
            return -1;
    }
    return prof_push(state, key, fnt_mono_ns(), self->generation);
}

/* A generator call's segment ended: its time goes to the open call, and to
 * the record when the call ends (any exit but a yield).  1 add `*spent` now,
 * 0 nothing to add, -1 error. */
static int
prof_call_segment(ProfRecorder *self, void *key, PyObject *code, PyObject *event,
                  long long *spent)
{
    PyObject *k = PyLong_FromVoidPtr(key);
    if (k == NULL)
        return -1;
    int yield = event_is(event, self->ev_yield);
    PyObject *call = PyDict_GetItemWithError(self->open, k);  /* borrowed */
    Py_XINCREF(call);
    int r = 0;
    if (call == NULL && PyErr_Occurred())
        r = -1;
    else if (call != NULL && !yield && PyDict_DelItem(self->open, k) < 0)
        r = -1;
    Py_DECREF(k);
    if (r < 0 || call == NULL) {
        Py_XDECREF(call);
        return r;
    }
    /* started before the profiler or before the last reset, or another call's */
    if (!PyList_Check(call) || PyList_GET_SIZE(call) != 3 ||
        PyList_GET_ITEM(call, 2) != code ||
        PyLong_AsLongLong(PyList_GET_ITEM(call, 1)) != self->generation) {
        Py_DECREF(call);
        return PyErr_Occurred() ? -1 : 0;
    }
    long long total = PyLong_AsLongLong(PyList_GET_ITEM(call, 0));
    PyObject *sum = (total == -1 && PyErr_Occurred()) ? NULL
                                                      : PyLong_FromLongLong(total + *spent);
    r = sum != NULL ? PyList_SetItem(call, 0, sum) : -1;  /* steals sum */
    Py_DECREF(call);
    if (r < 0)
        return -1;
    if (yield)
        return 0;
    *spent = total + *spent;
    return 1;
}

static int
prof_exit(fnt_recorder *rec, PyObject *fn, PyObject *code, Where *where, PyObject *event,
          PyObject *value, PyObject *exc, unsigned long long tsid)
{
    ProfRecorder *self = (ProfRecorder *)rec;
    (void)value;  /* the vtable's: the profiler needs no values */
    (void)exc;
    long long now = fnt_mono_ns();
    PyObject *obj = prof_state(self, 0, tsid);
    if (obj == NULL)
        return -1;
    if (obj == Py_None)
        return 0;
    void *key = fnt_where_key(where);
    PSeg seg;
    if (!prof_pop_to((ProfThread *)obj, key, now, &seg))
        return 0;  /* its entry was not seen */
    long long spent = seg.start;  /* the duration */
    if (!self->graph_time)
        spent = spent > seg.children ? spent - seg.children : 0;
    if (is_gen_code(code)) {
        int r = prof_call_segment(self, key, code, event, &spent);
        if (r <= 0)
            return r;
    } else if (seg.gen != self->generation) {
        return 0;  /* began before the last reset */
    }
    return prof_add((ProfThread *)obj, fn, spent);
}

static PyObject *
ProfRecorder_get_generation(ProfRecorder *self, void *closure)
{
    return PyLong_FromLongLong(self->generation);
}

static int
ProfRecorder_set_generation(ProfRecorder *self, PyObject *value, void *closure)
{
    long long g = value ? PyLong_AsLongLong(value) : -1;
    if (g == -1 && (value == NULL || PyErr_Occurred())) {
        if (value == NULL)
            PyErr_SetString(PyExc_TypeError, "cannot delete generation");
        return -1;
    }
    self->generation = g;
    return 0;
}

static PyObject *
ProfRecorder_get_graph_time(ProfRecorder *self, void *closure)
{
    return PyBool_FromLong(self->graph_time);
}

static int
ProfRecorder_set_graph_time(ProfRecorder *self, PyObject *value, void *closure)
{
    int v = value ? PyObject_IsTrue(value) : -1;
    if (v < 0) {
        if (value == NULL)
            PyErr_SetString(PyExc_TypeError, "cannot delete graph_time");
        return -1;
    }
    self->graph_time = v;
    return 0;
}

static PyGetSetDef ProfRecorder_getset[] = {
    {"ok", fnt_recorder_get_ok, fnt_recorder_set_ok,
     "whether the C path may record (set by the profiler)", NULL},
    {"report", fnt_recorder_get_report, fnt_recorder_set_report,
     "called with an exception raised inside the recorder", NULL},
    {"generation", (getter)ProfRecorder_get_generation,
     (setter)ProfRecorder_set_generation,
     "the profiler's reset generation (pushed by reset())", NULL},
    {"graph_time", (getter)ProfRecorder_get_graph_time, (setter)ProfRecorder_set_graph_time,
     "options/graph-time (pushed when options change)", NULL},
    {NULL}
};

static const fnt_recorder_ops prof_ops = {prof_entry, prof_exit};

static fnt_recorder_type ProfRecorder_Type = {{
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.ProfRecorder",
    .tp_basicsize = sizeof(ProfRecorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The function profiler's entries and exits of plain functions, in C.",
    .tp_new = fnt_recorder_new,
    .tp_init = (initproc)ProfRecorder_init,
    .tp_dealloc = (destructor)ProfRecorder_dealloc,
    .tp_traverse = (traverseproc)ProfRecorder_traverse,
    .tp_clear = (inquiry)ProfRecorder_clear,
    .tp_getset = ProfRecorder_getset,
}, &prof_ops};


int
fnt_prof_recorder_add_types(PyObject *m)
{
    if (fnt_add_type(m, &ProfThread_Type, "ProfThread") < 0 ||
        fnt_add_type(m, &ProfRecorder_Type.type, "ProfRecorder") < 0)
        return -1;
    return 0;
}

#endif  /* FNT_HOT_PATH */
