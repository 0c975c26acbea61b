/* fntrace._speedups: the hot path in C (optional; fntrace runs without it).
 *
 * Why: in pure Python one traced call costs ~1.5 us (function tracer) and
 * ~3.3 us (function_graph), seven Python frames per call.  The peers record a
 * call in ~0.1 us from C.  This module removes the Python frames from the
 * commonest configurations and changes nothing else:
 *
 *   RingCore        the per-thread ring buffer's counters and its write(),
 *                   byte-for-byte the semantics of the pure-Python
 *                   ring_buffer._PyRingCore (base class of ThreadBuffer).
 *   Dispatcher      the sys.monitoring callbacks (3.12+).  A site whose only
 *                   ops carries an enabled recorder (Site.fast) is recorded
 *                   here; every other site goes to its Python trampoline,
 *                   unknown code to the Python discovery callback.
 *   ProfileHook     the 3.11 backend's profile function (backends/profile.py).
 *   FuncRecorder    the function tracer's entry event, as
 *                   tracers/function.py writes it with no options set.
 *   GraphRecorder   function_graph's entry and exit events and its per-thread
 *                   stack, as tracers/function_graph.py keeps them with no
 *                   graph filters or threshold; funcgraph-retval, and on 3.12
 *                   and 3.13 funcgraph-args, included.
 *   ProfThread,     the function profiler's per-thread segments and records,
 *   ProfRecorder    and its entries and exits of plain functions.
 *
 * The Python side decides when a recorder may be used (recorder.ok) and keeps
 * the same data structures (the events tuples, the stacks), so the two paths
 * can hand over in the middle of a run.  Errors inside a recorder never reach
 * the traced program: they go to the ops' _callback_failed, like the Python
 * trampolines' do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX >= 0x030E0000
/* 3.14 and newer: not verified.  The recorders below read interpreter frames
 * and thread state laid out as 3.11-3.13 lay them out; until that is checked
 * against a newer interpreter the module builds as this stub, whose import
 * fails with the reason, and fntrace runs its pure-Python path (_accel.py). */
PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyErr_SetString(PyExc_ImportError,
                    "fntrace's C hot path is verified on Python 3.11-3.13 only; "
                    "the pure-Python path runs instead");
    return NULL;
}
#else  /* 3.11-3.13: the whole hot path, to the end of the file */
#include <structmember.h>
#include <time.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <x86intrin.h>
#define FNT_TSC 1
#endif

static PyObject *str_fast, *str_enter, *str_has_ret, *str_fn, *str_live, *str_local,
    *str_buf, *str_new_buffer, *str_stack, *str_clock, *str_write,
    *str_F, *str_E, *str_X, *str_name, *str_code, *str_co_flags, *str_tid, *str_cpu,
    *str_thread_flags, *str_state, *str_max_len, *str_empty, *str_comma, *str_code_ref;
static PyObject *perf_counter_ns;  /* time.perf_counter_ns: read natively */
static PyObject *monotonic_ns;     /* time.monotonic_ns: the same clock on Linux */
static PyObject *time_ns;          /* time.time_ns: CLOCK_REALTIME */

#define EVENT_OVERHEAD 64

/* The slot of a pointer in a direct-mapped table of n (a power of two) slots. */
static inline size_t
ptr_slot(void *p, size_t n)
{
    uintptr_t v = (uintptr_t)p;
    return (size_t)((v >> 4) ^ (v >> 14)) & (n - 1);
}

/* ------------------------------------------------------------------------- */
/* The "local" trace clock                                                    */
/* ------------------------------------------------------------------------- */

/* As the kernel's trace_clock_local() (sched_clock, the TSC), the default
 * clock is the cheapest one: the TSC scaled to nanoseconds.  Reading
 * CLOCK_MONOTONIC costs ~20 ns even through the vDSO, twice per traced call
 * for function_graph (15% of its cost); the TSC costs a third of that.  It is
 * used only where the kernel itself uses the TSC as its clocksource (then it
 * is invariant and synchronised between CPUs), is re-anchored on
 * CLOCK_MONOTONIC every 20 ms (its scale refined each time), so it stays
 * within ~1 us of time.perf_counter_ns(), and never goes backwards.
 * Elsewhere "local" is CLOCK_MONOTONIC itself. */
static long long
mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

#ifdef FNT_TSC
#define REANCHOR_NS 20000000LL
static int tsc_state;  /* 0: not yet decided, 1: in use, -1: not used */
static unsigned long long tsc_first, tsc_anchor;
static long long ns_first, ns_anchor;
static double ns_per_tick;

static int
tsc_reliable(void)
{
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == NULL)
        return 0;
    char buf[32] = {0};
    int ok = fgets(buf, sizeof buf, f) != NULL && strncmp(buf, "tsc", 3) == 0 &&
             (buf[3] == '\n' || buf[3] == '\0');
    fclose(f);
    return ok;
}

static void
tsc_decide(void)
{
    tsc_state = -1;
    if (getenv("FNTRACE_NO_TSC") != NULL || !tsc_reliable())
        return;
    /* the scale, over 1 ms */
    unsigned long long t0 = __rdtsc();
    long long n0 = mono_ns(), n1;
    do {
        n1 = mono_ns();
    } while (n1 - n0 < 1000000LL);
    unsigned long long t1 = __rdtsc();
    if (t1 <= t0)
        return;
    ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
    /* and only if it is cheaper here than the vDSO clock */
    volatile unsigned long long sink = 0;
    long long a = mono_ns();
    for (int i = 0; i < 2000; i++)
        sink += __rdtsc();
    long long b = mono_ns();
    for (int i = 0; i < 2000; i++)
        sink += (unsigned long long)mono_ns();
    long long c = mono_ns();
    (void)sink;
    if (b - a >= c - b)
        return;
    tsc_first = tsc_anchor = __rdtsc();
    ns_first = ns_anchor = mono_ns();
    tsc_state = 1;
}
#endif

static long long last_local;

/* The "local" clock now (the GIL is held: the static state is not shared
 * with any other thread at the same time). */
static inline long long
local_ns(void)
{
#ifdef FNT_TSC
    if (tsc_state == 0)
        tsc_decide();
    if (tsc_state == 1) {
        unsigned long long t = __rdtsc();
        long long v = ns_anchor + (long long)((double)(long long)(t - tsc_anchor) * ns_per_tick);
        if (v - ns_anchor > REANCHOR_NS) {
            long long n = mono_ns();
            unsigned long long t2 = __rdtsc();
            if (t2 > tsc_first)
                ns_per_tick = (double)(n - ns_first) / (double)(t2 - tsc_first);
            tsc_anchor = t2;
            ns_anchor = n;
            v = n;
        }
        if (v < last_local)
            v = last_local;
        last_local = v;
        return v;
    }
#endif
    long long v = mono_ns();
    if (v < last_local)
        v = last_local;
    last_local = v;
    return v;
}

static PyObject *
local_clock(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(local_ns());
}

static PyObject *local_clock_fn;  /* the module's local_clock, read natively */

/* Where a callback runs.  On 3.12 and 3.13 the recorders read the interpreter's
 * own frame (the first fields of _PyInterpreterFrame, and PyFrameObject's
 * f_frame, mirrored below: the same in both versions) instead of asking for a
 * frame object: PyEval_GetFrame() allocates one for every call, which cost
 * more than the whole event (~90 ns of ~250).  A frame is then keyed by the
 * address of its interpreter frame (frame_key() gives the same key from a
 * frame object, for the Python path).  Other versions use frame objects. */
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030E0000
#define FNT_IFRAME 1
#define FNT_OWNED_BY_CSTACK 3
typedef struct fnt_iframe {
    PyObject *code;  /* f_code (3.12), f_executable (3.13) */
    struct fnt_iframe *previous;
    PyObject *funcobj, *globals, *builtins, *locals;
    PyFrameObject *frame_obj;
    void *instr;
    int stacktop;
    uint16_t return_offset;
    char owner;
    PyObject *localsplus[1];  /* arguments first, in co_varnames order */
} fnt_iframe;

typedef struct {
    PyObject_HEAD
    PyFrameObject *f_back;
    fnt_iframe *f_frame;
} fnt_frameobject;

static inline fnt_iframe *
iframe_current(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    return (fnt_iframe *)ts->current_frame;
#else
    return ts->cframe ? (fnt_iframe *)ts->cframe->current_frame : NULL;
#endif
}
#elif PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
/* 3.11: the profile function gets frame objects; funcgraph-args reads the
 * fast locals of the interpreter frame behind one (mirrored likewise). */
#define FNT_IFRAME311 1
typedef struct {
    PyObject *func, *globals, *builtins, *locals;
    PyObject *code;  /* f_code */
    PyFrameObject *frame_obj;
    void *previous, *prev_instr;
    int stacktop;
    char is_entry, owner;
    PyObject *localsplus[1];
} fnt_iframe311;

typedef struct {
    PyObject_HEAD
    PyFrameObject *f_back;
    fnt_iframe311 *f_frame;
} fnt_frameobject311;
#endif

typedef struct {
    PyFrameObject *frame;  /* borrowed; fetched only when needed if iframe is set */
    void *iframe;          /* the running interpreter frame, or NULL */
} Where;

static PyFrameObject *
where_frame(Where *w)
{
    if (w->frame == NULL)
        w->frame = PyEval_GetFrame();
    return w->frame;
}

#define GRAPH_OUTSIDE 0
#define GRAPH_INSIDE 1
#define GRAPH_BLOCKED 2

/* ------------------------------------------------------------------------- */
/* EventQueue: a thread buffer's events                                       */
/* ------------------------------------------------------------------------- */

/* A FIFO of events that reads like the deque of tuples the pure-Python path
 * keeps (append, popleft, len, [i], iteration, clear).  Events the recorders
 * write are stored packed, as C fields: no tuple, no int objects, nothing to
 * free when the ring overwrites them; a tuple equal to the one the Python
 * path writes is built only when a reader asks for the event. */
typedef struct {
    PyObject *obj;       /* kind 0: the event (a tuple written from Python); else the Function */
    PyObject *aux;       /* F: parent (or None); X: value text (or None); kind 0: NULL */
    long long ts;
    long long duration;  /* X */
    int32_t depth;       /* E, X */
    int32_t size;
    char kind;           /* 0, 'F', 'E', 'X' */
    unsigned char evcode;  /* the Event string: event_names[evcode] */
} Slot;                  /* 48 bytes: a 1408 KiB ring of 64-byte events is ~1 MiB */

/* The Event strings the recorders were given (pointer-compared; six in practice). */
#define MAX_EVENT_NAMES 64
static PyObject *event_names[MAX_EVENT_NAMES];
static int n_event_names;

static int
event_code(PyObject *event)
{
    for (int i = 0; i < n_event_names; i++)
        if (event_names[i] == event)
            return i;
    if (n_event_names == MAX_EVENT_NAMES) {
        PyErr_SetString(PyExc_RuntimeError, "too many distinct event names");
        return -1;
    }
    event_names[n_event_names] = Py_NewRef(event);
    return n_event_names++;
}

typedef struct {
    PyObject_HEAD
    Slot *slots;
    Py_ssize_t cap;
    Py_ssize_t head;  /* the oldest */
    Py_ssize_t len;
    Py_ssize_t hint;  /* the first allocation: as many events as the ring can hold */
} EventQueue;

static inline Py_ssize_t
qidx(EventQueue *q, Py_ssize_t i)
{
    Py_ssize_t k = q->head + i;
    return k >= q->cap ? k - q->cap : k;
}

static PyTypeObject EventQueue_Type;

static void
slot_release(Slot *s)
{
    /* the caller has taken the slot out of the queue already */
    Py_XDECREF(s->obj);
    Py_XDECREF(s->aux);
}

static int
slot_size(Slot *s, long long *size)
{
    if (s->kind != 0) {
        *size = s->size;
        return 0;
    }
    PyObject *item;
    if (PyTuple_CheckExact(s->obj) && PyTuple_GET_SIZE(s->obj) >= 2) {
        *size = PyLong_AsLongLong(PyTuple_GET_ITEM(s->obj, 1));
    } else {
        item = PySequence_GetItem(s->obj, 1);
        if (item == NULL)
            return -1;
        *size = PyLong_AsLongLong(item);
        Py_DECREF(item);
    }
    return (*size == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* The event as the Python path writes it (new reference). */
static PyObject *
slot_event(Slot *s)
{
    if (s->kind == 0)
        return Py_NewRef(s->obj);
    PyObject *event = event_names[s->evcode];
    PyObject *ts = PyLong_FromLongLong(s->ts);
    PyObject *size = PyLong_FromLongLong(s->size);
    PyObject *kind = s->kind == 'F' ? str_F : s->kind == 'E' ? str_E : str_X;
    PyObject *t = NULL;
    if (ts != NULL && size != NULL) {
        if (s->kind == 'F') {
            t = PyTuple_Pack(7, ts, size, kind, s->obj, s->aux, Py_None, event);
        } else {
            PyObject *depth = PyLong_FromLongLong(s->depth);
            if (depth != NULL && s->kind == 'E') {
                t = PyTuple_Pack(7, ts, size, kind, s->obj, depth, s->aux ? s->aux : Py_None,
                                 event);
            } else if (depth != NULL) {
                PyObject *dur = PyLong_FromLongLong(s->duration);
                if (dur != NULL)
                    t = PyTuple_Pack(8, ts, size, kind, s->obj, depth, dur, event, s->aux);
                Py_XDECREF(dur);
            }
            Py_XDECREF(depth);
        }
    }
    Py_XDECREF(ts);
    Py_XDECREF(size);
    return t;
}

static int
queue_reserve(EventQueue *q)
{
    if (q->len < q->cap)
        return 0;
    Py_ssize_t ncap = q->cap ? q->cap * 2 : (q->hint > 64 ? q->hint : 64);
    Slot *n = PyMem_Calloc((size_t)ncap, sizeof(Slot));
    if (n == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < q->len; i++)
        n[i] = q->slots[qidx(q, i)];
    PyMem_Free(q->slots);
    q->slots = n;
    q->cap = ncap;
    q->head = 0;
    return 0;
}

/* Append a slot (its references are given to the queue). */
static int
queue_push(EventQueue *q, Slot *s)
{
    if (queue_reserve(q) < 0)
        return -1;
    q->slots[qidx(q, q->len)] = *s;
    q->len++;
    return 0;
}

/* Take the oldest slot out into *out (0), or -1 with IndexError when empty. */
static int
queue_take(EventQueue *q, Slot *out)
{
    if (q->len == 0) {
        PyErr_SetString(PyExc_IndexError, "pop from an empty event queue");
        return -1;
    }
    Slot *s = &q->slots[q->head];
    *out = *s;
    memset(s, 0, sizeof(Slot));
    q->head = q->head + 1 == q->cap ? 0 : q->head + 1;
    q->len--;
    return 0;
}

static PyObject *
EventQueue_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    EventQueue *q = (EventQueue *)type->tp_alloc(type, 0);
    return (PyObject *)q;
}

static void
queue_clear_all(EventQueue *q)
{
    while (q->len > 0) {
        Slot s;
        queue_take(q, &s);
        slot_release(&s);
    }
}

static void
EventQueue_dealloc(EventQueue *q)
{
    queue_clear_all(q);
    PyMem_Free(q->slots);
    Py_TYPE(q)->tp_free((PyObject *)q);
}

static PyObject *
EventQueue_append(EventQueue *q, PyObject *obj)
{
    Slot s = {0};
    s.obj = Py_NewRef(obj);
    if (queue_push(q, &s) < 0) {
        Py_DECREF(obj);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
EventQueue_popleft(EventQueue *q, PyObject *unused)
{
    Slot s;
    if (queue_take(q, &s) < 0)
        return NULL;
    PyObject *ev = slot_event(&s);
    slot_release(&s);
    return ev;
}

static PyObject *
EventQueue_clear_method(EventQueue *q, PyObject *unused)
{
    queue_clear_all(q);
    Py_RETURN_NONE;
}

static Py_ssize_t
EventQueue_len(EventQueue *q)
{
    return q->len;
}

static PyObject *
EventQueue_item(EventQueue *q, Py_ssize_t i)
{
    if (i < 0 || i >= q->len) {
        PyErr_SetString(PyExc_IndexError, "event queue index out of range");
        return NULL;
    }
    return slot_event(&q->slots[qidx(q, i)]);
}

/* A list of the events now in the queue (iteration works on this copy, so the
 * owner may go on writing meanwhile). */
static PyObject *
queue_list(EventQueue *q)
{
    Py_ssize_t n = q->len;
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i >= q->len) {  /* a reader took some meanwhile (a collection ran code) */
            if (PyList_SetSlice(list, i, n, NULL) < 0) {
                Py_DECREF(list);
                return NULL;
            }
            break;
        }
        PyObject *ev = slot_event(&q->slots[qidx(q, i)]);
        if (ev == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, ev);
    }
    return list;
}

static PyObject *
EventQueue_iter(EventQueue *q)
{
    PyObject *list = queue_list(q);
    if (list == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(list);
    Py_DECREF(list);
    return it;
}

static PyObject *
EventQueue_repr(EventQueue *q)
{
    return PyUnicode_FromFormat("<EventQueue of %zd events>", q->len);
}

static PyMethodDef EventQueue_methods[] = {
    {"append", (PyCFunction)EventQueue_append, METH_O, "Add an event at the newest end."},
    {"popleft", (PyCFunction)EventQueue_popleft, METH_NOARGS, "Take the oldest event."},
    {"clear", (PyCFunction)EventQueue_clear_method, METH_NOARGS, "Drop every event."},
    {NULL}
};

static PySequenceMethods EventQueue_as_sequence = {
    .sq_length = (lenfunc)EventQueue_len,
    .sq_item = (ssizeargfunc)EventQueue_item,
};

static PyTypeObject EventQueue_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.EventQueue",
    .tp_basicsize = sizeof(EventQueue),
    /* Not tracked by the cycle collector: an event never refers back to what
     * holds it, and walking a ring's tens of thousands of slots at every full
     * collection costs the traced program for nothing. */
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A thread buffer's events, oldest first (reads like a deque of tuples).",
    .tp_new = EventQueue_new,
    .tp_dealloc = (destructor)EventQueue_dealloc,
    .tp_methods = EventQueue_methods,
    .tp_as_sequence = &EventQueue_as_sequence,
    .tp_iter = (getiterfunc)EventQueue_iter,
    .tp_repr = (reprfunc)EventQueue_repr,
};

/* ------------------------------------------------------------------------- */
/* RingCore                                                                   */
/* ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    EventQueue *events;
    PyObject *on_full;  /* no-loss hook or None */
    long long capacity, written, in_bytes, overrun, overrun_bytes, dropped, read, read_bytes;
    char overwrite;
} RingCore;

static PyTypeObject RingCore_Type;

static int
RingCore_init(RingCore *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", "overwrite", NULL};
    long long capacity = 0;
    int overwrite = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Lp", kwlist, &capacity, &overwrite))
        return -1;
    PyObject *events = PyObject_CallNoArgs((PyObject *)&EventQueue_Type);
    if (events == NULL)
        return -1;
    long long hint = capacity / EVENT_OVERHEAD + 1;
    ((EventQueue *)events)->hint = (Py_ssize_t)(hint < (1 << 20) ? hint : (1 << 20));
    Py_XSETREF(self->events, (EventQueue *)events);
    Py_XSETREF(self->on_full, Py_NewRef(Py_None));
    self->capacity = capacity;
    self->overwrite = (char)overwrite;
    self->written = self->in_bytes = self->overrun = self->overrun_bytes = 0;
    self->dropped = self->read = self->read_bytes = 0;
    return 0;
}

static int
RingCore_traverse(RingCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->events);
    Py_VISIT(self->on_full);
    return 0;
}

static int
RingCore_clear(RingCore *self)
{
    Py_CLEAR(self->events);
    Py_CLEAR(self->on_full);
    return 0;
}

static void
RingCore_dealloc(RingCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    RingCore_clear(self);
    tp->tp_free((PyObject *)self);
}

/* The accounted size of an event: its second field. */
static int
event_size(PyObject *event, long long *size)
{
    Slot s = {0};
    s.obj = event;
    return slot_size(&s, size);
}

/* Room for an event of `size` bytes: 1 yes, 0 dropped, -1 error.  The owner
 * thread only (readers only take from the oldest end). */
static int
ring_room(RingCore *self, long long size)
{
    long long used = self->in_bytes - self->overrun_bytes - self->read_bytes;
    if (used + size <= self->capacity)
        return 1;
    if (self->on_full != Py_None && self->on_full != NULL) {
        PyObject *hook = Py_NewRef(self->on_full);
        PyObject *r = PyObject_CallNoArgs(hook);
        Py_DECREF(hook);
        if (r == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                return -1;
            /* the consumer failed: fall back to the bounded ring */
            PyErr_Clear();
            Py_XSETREF(self->on_full, Py_NewRef(Py_None));
        } else {
            Py_DECREF(r);
        }
        used = self->in_bytes - self->overrun_bytes - self->read_bytes;
        if (used + size <= self->capacity)
            return 1;
    }
    if (!self->overwrite || size > self->capacity) {
        self->dropped++;
        return 0;
    }
    /* Overwrite: drop the oldest events until this one fits (usually one). */
    long long room = self->capacity - size, freed = 0, n = 0;
    while (used - freed > room) {
        EventQueue *q = self->events;
        if (q == NULL || q->len == 0)  /* a reader took it first */
            break;
        Slot old;
        queue_take(q, &old);
        long long osize;
        int bad = slot_size(&old, &osize);
        slot_release(&old);
        if (bad) {
            self->overrun += n;
            self->overrun_bytes += freed;
            return -1;
        }
        freed += osize;
        n++;
    }
    self->overrun += n;
    self->overrun_bytes += freed;
    return 1;
}

/* Write one slot (its references are the ring's, or released when dropped):
 * 1 written, 0 dropped, -1 error. */
static int
ring_write_slot(RingCore *self, Slot *s)
{
    int r = ring_room(self, s->size);
    if (r <= 0 || self->events == NULL || queue_push(self->events, s) < 0) {
        slot_release(s);
        return r <= 0 ? r : -1;
    }
    self->written++;
    self->in_bytes += s->size;
    return 1;
}

/* 1 written, 0 dropped, -1 error. */
static int
ring_write(RingCore *self, PyObject *event, long long size)
{
    if (size < 0 || size > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "event size out of range");
        return -1;
    }
    Slot s = {0};
    s.obj = Py_NewRef(event);
    s.size = (int32_t)size;
    return ring_write_slot(self, &s);
}

static PyObject *
RingCore_write(RingCore *self, PyObject *event)
{
    long long size;
    if (event_size(event, &size) < 0)
        return NULL;
    int r = ring_write(self, event, size);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *
RingCore_get_events(RingCore *self, void *closure)
{
    if (self->events == NULL) {
        PyErr_SetString(PyExc_AttributeError, "events");
        return NULL;
    }
    return Py_NewRef((PyObject *)self->events);
}

static PyObject *
RingCore_get_overwrite(RingCore *self, void *closure)
{
    return PyBool_FromLong(self->overwrite);
}

static int
RingCore_set_overwrite(RingCore *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete overwrite");
        return -1;
    }
    int t = PyObject_IsTrue(value);
    if (t < 0)
        return -1;
    self->overwrite = (char)t;
    return 0;
}

static PyObject *
RingCore_get_on_full(RingCore *self, void *closure)
{
    return Py_NewRef(self->on_full ? self->on_full : Py_None);
}

static int
RingCore_set_on_full(RingCore *self, PyObject *value, void *closure)
{
    Py_XSETREF(self->on_full, Py_NewRef(value ? value : Py_None));
    return 0;
}

static PyMethodDef RingCore_methods[] = {
    {"write", (PyCFunction)RingCore_write, METH_O,
     "Append one event (owner thread only); False when it was dropped."},
    {NULL}
};

static PyMemberDef RingCore_members[] = {
    {"capacity", T_LONGLONG, offsetof(RingCore, capacity), 0, "bytes"},
    {"written", T_LONGLONG, offsetof(RingCore, written), 0, "events accepted (owner)"},
    {"in_bytes", T_LONGLONG, offsetof(RingCore, in_bytes), 0, "bytes accepted (owner)"},
    {"overrun", T_LONGLONG, offsetof(RingCore, overrun), 0, "oldest events overwritten"},
    {"overrun_bytes", T_LONGLONG, offsetof(RingCore, overrun_bytes), 0, ""},
    {"dropped", T_LONGLONG, offsetof(RingCore, dropped), 0, "newest events refused"},
    {"read", T_LONGLONG, offsetof(RingCore, read), 0, "events consumed by readers"},
    {"read_bytes", T_LONGLONG, offsetof(RingCore, read_bytes), 0, ""},
    {NULL}
};

static PyGetSetDef RingCore_getset[] = {
    {"events", (getter)RingCore_get_events, NULL, "the events, oldest first", NULL},
    {"overwrite", (getter)RingCore_get_overwrite, (setter)RingCore_set_overwrite, NULL, NULL},
    {"on_full", (getter)RingCore_get_on_full, (setter)RingCore_set_on_full, NULL, NULL},
    {NULL}
};

static PyTypeObject RingCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.RingCore",
    .tp_basicsize = sizeof(RingCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A thread's ring buffer: events and counters, write() in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RingCore_init,
    .tp_dealloc = (destructor)RingCore_dealloc,
    .tp_traverse = (traverseproc)RingCore_traverse,
    .tp_clear = (inquiry)RingCore_clear,
    .tp_methods = RingCore_methods,
    .tp_members = RingCore_members,
    .tp_getset = RingCore_getset,
};

/* ------------------------------------------------------------------------- */
/* GraphStack: function_graph's per-thread stack of calls                     */
/* ------------------------------------------------------------------------- */

/* Each entry: the frame's key (its interpreter frame's address, see
 * frame_key()), the entry timestamp when the entry was recorded, the depth
 * below it and the selection state below it.  Both paths of the tracer use
 * it through push/last/pop_to, the C recorder directly. */
typedef struct {
    void *key;
    long long ts;
    long long depth;
    int state;
    char has_ts;
} GEntry;

typedef struct {
    PyObject_HEAD
    GEntry *e;
    Py_ssize_t n, cap;
} GraphStack;

static PyTypeObject GraphStack_Type;

static int
gs_push(GraphStack *s, void *key, long long ts, int has_ts, long long depth, int state)
{
    if (s->n == s->cap) {
        Py_ssize_t ncap = s->cap ? s->cap * 2 : 64;
        GEntry *ne = PyMem_Realloc(s->e, (size_t)ncap * sizeof(GEntry));
        if (ne == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->e = ne;
        s->cap = ncap;
    }
    GEntry *e = &s->e[s->n++];
    e->key = key;
    e->ts = ts;
    e->has_ts = (char)has_ts;
    e->depth = depth;
    e->state = state;
    return 0;
}

/* Take the newest entry of `key` and drop those above it (calls whose exits
 * never came): 1 found (in *out), 0 not there (nothing changes). */
static int
gs_pop_to(GraphStack *s, void *key, GEntry *out)
{
    for (Py_ssize_t i = s->n - 1; i >= 0; i--) {
        if (s->e[i].key == key) {
            *out = s->e[i];
            s->n = i;
            return 1;
        }
    }
    return 0;
}

static void
GraphStack_dealloc(GraphStack *s)
{
    PyMem_Free(s->e);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *
GraphStack_push(GraphStack *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "push(key, ts or None, depth, state)");
        return NULL;
    }
    void *key = PyLong_AsVoidPtr(args[0]);
    if (key == NULL && PyErr_Occurred())
        return NULL;
    long long ts = 0;
    int has_ts = args[1] != Py_None;
    if (has_ts) {
        ts = PyLong_AsLongLong(args[1]);
        if (ts == -1 && PyErr_Occurred())
            return NULL;
    }
    long long depth = PyLong_AsLongLong(args[2]);
    long state = PyLong_AsLong(args[3]);
    if ((depth == -1 || state == -1) && PyErr_Occurred())
        return NULL;
    if (gs_push(s, key, ts, has_ts, depth, (int)state) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
GraphStack_last(GraphStack *s, PyObject *unused)
{
    if (s->n == 0)
        Py_RETURN_NONE;
    GEntry *e = &s->e[s->n - 1];
    return Py_BuildValue("(Li)", e->depth, e->state);
}

static PyObject *
gentry_tuple(GEntry *e)
{
    PyObject *key = PyLong_FromVoidPtr(e->key);
    if (key == NULL)
        return NULL;
    PyObject *r = e->has_ts ? Py_BuildValue("(NLLi)", key, e->ts, e->depth, e->state)
                            : Py_BuildValue("(NOLi)", key, Py_None, e->depth, e->state);
    return r;
}

static PyObject *
GraphStack_pop_to(GraphStack *s, PyObject *keyobj)
{
    void *key = PyLong_AsVoidPtr(keyobj);
    if (key == NULL && PyErr_Occurred())
        return NULL;
    GEntry e;
    if (!gs_pop_to(s, key, &e))
        Py_RETURN_NONE;
    return gentry_tuple(&e);
}

static Py_ssize_t
GraphStack_len(GraphStack *s)
{
    return s->n;
}

static PyObject *
GraphStack_item(GraphStack *s, Py_ssize_t i)
{
    if (i < 0 || i >= s->n) {
        PyErr_SetString(PyExc_IndexError, "graph stack index out of range");
        return NULL;
    }
    return gentry_tuple(&s->e[i]);
}

static PyMethodDef GraphStack_methods[] = {
    {"push", (PyCFunction)(void (*)(void))GraphStack_push, METH_FASTCALL,
     "push(key, ts or None, depth, state)"},
    {"last", (PyCFunction)GraphStack_last, METH_NOARGS,
     "(depth, state) of the newest entry, or None"},
    {"pop_to", (PyCFunction)GraphStack_pop_to, METH_O,
     "The newest entry of key (entries above it dropped), or None"},
    {NULL}
};

static PySequenceMethods GraphStack_as_sequence = {
    .sq_length = (lenfunc)GraphStack_len,
    .sq_item = (ssizeargfunc)GraphStack_item,
};

static PyTypeObject GraphStack_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.GraphStack",
    .tp_basicsize = sizeof(GraphStack),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "function_graph's stack of calls for one thread, packed.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)GraphStack_dealloc,
    .tp_methods = GraphStack_methods,
    .tp_as_sequence = &GraphStack_as_sequence,
};

/* ------------------------------------------------------------------------- */
/* take_all: consume every thread's events, merged in time order               */
/* ------------------------------------------------------------------------- */

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
        ? Py_NewRef(PyTuple_GET_ITEM(ev, 0)) : PySequence_GetItem(ev, 0);
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
static PyObject *
take_all(PyObject *module, PyObject *buffers)
{
    PyObject *seq = PySequence_Fast(buffers, "take_all() needs a sequence of buffers");
    if (seq == NULL)
        return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t j = 0; j < k; j++) {
        if (!PyObject_TypeCheck(PySequence_Fast_GET_ITEM(seq, j), &RingCore_Type)) {
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
            queue_take(q, &sl);
            long long size = 0;
            PyObject *ev = NULL;
            if (slot_size(&sl, &size) == 0)
                ev = slot_event(&sl);
            long long ts = sl.kind != 0 ? sl.ts : 0;
            slot_release(&sl);
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
/* encode_buffers: one event chunk of the trace file (formats/tracefile.py)   */
/* ------------------------------------------------------------------------- */

typedef struct {
    unsigned char *data;
    Py_ssize_t len, cap;
} Bytes;

static int
bytes_room(Bytes *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap)
        return 0;
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

static int
put_uvarint(Bytes *b, unsigned long long n)
{
    if (bytes_room(b, 10) < 0)
        return -1;
    while (n >= 0x80) {
        b->data[b->len++] = (unsigned char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    b->data[b->len++] = (unsigned char)n;
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
    PyObject *funcs;    /* (name, flags) -> index */
    PyObject *threads;  /* tid -> index */
    PyObject *rows;     /* [(tid, name, cpu, flags, lost)] */
    PyObject *fn_fid;   /* Function -> fid (per chunk) */
    PyObject *par_fid;  /* Function -> fid of (name, 0) */
    PyObject *buf_idx;  /* buffer -> thread index */
    long long *last_ts;
    Py_ssize_t n_last;
    /* The packed path's per-event lookups, without a dict: the fid of the
     * functions seen (direct-mapped; every Function stays alive in fn_fid and
     * in the slots until the chunk is done) and the file's code of each event
     * name (-1: not looked up yet). */
    struct { PyObject *fn; Py_ssize_t fid; } fid_cache[FID_SLOTS];
    long evmap[MAX_EVENT_NAMES];
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
tab_fid(Tables *t, PyObject *name, PyObject *flags)
{
    PyObject *key = PyTuple_Pack(2, name, flags);
    if (key == NULL)
        return -1;
    int added;
    Py_ssize_t fid = intern_index(t->funcs, key, &added);
    Py_DECREF(key);
    if (fid >= 0 && added && tab_sid(t, name) < 0)
        return -1;
    return fid;
}

/* fid of a Function: (fn.name, fn.code.co_flags), or (fn.name, 0) for parents. */
static Py_ssize_t
fn_fid(Tables *t, PyObject *fn, int as_parent)
{
    PyObject *cache = as_parent ? t->par_fid : t->fn_fid;
    PyObject *v = PyDict_GetItemWithError(cache, fn);
    if (v != NULL)
        return PyLong_AsSsize_t(v);
    if (PyErr_Occurred())
        return -1;
    PyObject *name = PyObject_GetAttr(fn, str_name);
    if (name == NULL)
        return -1;
    PyObject *flags;
    if (as_parent) {
        flags = PyLong_FromLong(0);
    } else {
        PyObject *code = PyObject_GetAttr(fn, str_code);
        flags = code ? PyObject_GetAttr(code, str_co_flags) : NULL;
        Py_XDECREF(code);
    }
    Py_ssize_t fid = flags ? tab_fid(t, name, flags) : -1;
    Py_DECREF(name);
    Py_XDECREF(flags);
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
    PyObject *tid = PyObject_GetAttr(buf, str_tid);
    PyObject *name = tid ? PyObject_GetAttr(buf, str_name) : NULL;
    PyObject *cpu = name ? PyObject_GetAttr(buf, str_cpu) : NULL;
    PyObject *flags = cpu ? PyObject_GetAttr(buf, str_thread_flags) : NULL;
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

static int
put_opt(Bytes *b, Tables *t, PyObject *text)
{
    if (text == Py_None)
        return put_uvarint(b, 0);
    Py_ssize_t sid = tab_sid(t, text);
    return sid < 0 ? -1 : put_uvarint(b, (unsigned long long)sid + 1);
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
    if (!PyTuple_Check(ev) || PyTuple_GET_SIZE(ev) < 3 || !PyObject_TypeCheck(buf, &RingCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "encode_buffers: RingCore buffers holding event tuples");
        return -1;
    }
    PyObject *kind = PyTuple_GET_ITEM(ev, 2);
    Py_ssize_t nev = PyTuple_GET_SIZE(ev);
    int code;
    PyObject *text = NULL;
    if (kind_is(kind, str_F) && nev == 7)
        code = 0;
    else if (kind_is(kind, str_E) && nev == 7)
        code = 1;
    else if (kind_is(kind, str_X) && nev == 8)
        code = 2;
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
        PyObject *event = PyTuple_GET_ITEM(ev, code == 2 ? 6 : 6);
        PyObject *c = PyDict_GetItemWithError(event_codes, event);
        if (c != NULL)
            evcode = PyLong_AsLong(c);
        else if (PyErr_Occurred())
            goto done;
    }
    if (bytes_room(body, 1) < 0)
        goto done;
    body->data[body->len++] = (unsigned char)(code | (evcode << 3));
    if (put_uvarint(body, (unsigned long long)ti) < 0)
        goto done;
    int bad = 0;
    long long ts = event_ts(ev, &bad);
    if (bad)
        goto done;
    long long delta = ts - t->last_ts[ti];
    t->last_ts[ti] = ts;
    if (put_uvarint(body, ((unsigned long long)delta << 1) ^ (unsigned long long)(delta >> 63)) < 0)
        goto done;
    if (text != NULL) {
        Py_ssize_t sid = tab_sid(t, text);
        rc = sid < 0 ? -1 : put_uvarint(body, (unsigned long long)sid);
        goto done;
    }
    Py_ssize_t fid = fn_fid(t, PyTuple_GET_ITEM(ev, 3), 0);
    if (fid < 0 || put_uvarint(body, (unsigned long long)fid) < 0)
        goto done;
    if (code == 0) {          /* (ts, size, F, ip, parent, args, event) */
        PyObject *parent = PyTuple_GET_ITEM(ev, 4);
        if (parent == Py_None) {
            if (put_uvarint(body, 0) < 0)
                goto done;
        } else {
            Py_ssize_t pf = fn_fid(t, parent, 1);
            if (pf < 0 || put_uvarint(body, (unsigned long long)pf + 1) < 0)
                goto done;
        }
        rc = put_opt(body, t, PyTuple_GET_ITEM(ev, 5));
    } else if (code == 1) {   /* (ts, size, E, fn, depth, args, event) */
        if (put_pyuvarint(body, PyTuple_GET_ITEM(ev, 4)) < 0)
            goto done;
        rc = put_opt(body, t, PyTuple_GET_ITEM(ev, 5));
    } else {                  /* (ts, size, X, fn, depth, duration, event, value) */
        if (put_pyuvarint(body, PyTuple_GET_ITEM(ev, 4)) < 0)
            goto done;
        long long dur = PyLong_AsLongLong(PyTuple_GET_ITEM(ev, 5));
        if (dur == -1 && PyErr_Occurred())
            goto done;
        if (put_uvarint(body, (unsigned long long)(dur > 0 ? dur : 0)) < 0)
            goto done;
        rc = put_opt(body, t, PyTuple_GET_ITEM(ev, 7));
    }
done:
    Py_XDECREF(text);
    return rc;
}

static int
tables_init(Tables *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < MAX_EVENT_NAMES; i++)
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
}

/* The chunk's payload: the tables, then the count, then the events
 * (TraceWriter.write_table_chunk).  Returns (payload, n, rows) or NULL. */
static PyObject *
chunk_payload(Tables *t, Bytes *body, Py_ssize_t n)
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
        if (sid == NULL || put_pyuvarint(&out, sid) < 0 ||
            put_pyuvarint(&out, PyTuple_GET_ITEM(key, 1)) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "function name not in the string table");
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
    if (put_uvarint(&out, (unsigned long long)n) < 0 ||
        put_raw(&out, (char *)body->data, body->len) < 0)
        goto done;
    PyObject *payload = PyBytes_FromStringAndSize((char *)out.data, out.len);
    if (payload != NULL)
        result = Py_BuildValue("(Nnn)", payload, n, nrows);
done:
    PyMem_Free(out.data);
    return result;
}

/* One packed event (a recorder's slot) into the chunk: what encode_one does with
 * the tuple the slot stands for, without building it. */
static int
encode_slot(Bytes *body, Tables *t, Py_ssize_t ti, Slot *sl, PyObject *event_codes)
{
    int code = sl->kind == 'F' ? 0 : sl->kind == 'E' ? 1 : 2;
    long evcode = t->evmap[sl->evcode];
    if (evcode < 0) {
        PyObject *c = PyDict_GetItemWithError(event_codes, event_names[sl->evcode]);
        evcode = c != NULL ? PyLong_AsLong(c) : 0;
        if (PyErr_Occurred())
            return -1;
        t->evmap[sl->evcode] = evcode;
    }
    if (bytes_room(body, 1) < 0)
        return -1;
    body->data[body->len++] = (unsigned char)(code | (evcode << 3));
    if (put_uvarint(body, (unsigned long long)ti) < 0)
        return -1;
    long long delta = sl->ts - t->last_ts[ti];
    t->last_ts[ti] = sl->ts;
    if (put_uvarint(body, ((unsigned long long)delta << 1) ^ (unsigned long long)(delta >> 63)) < 0)
        return -1;
    size_t fs = ptr_slot(sl->obj, FID_SLOTS);
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
    if (put_uvarint(body, (unsigned long long)fid) < 0)
        return -1;
    if (code == 0) {
        if (sl->aux == NULL || sl->aux == Py_None)
            return put_uvarint(body, 0) < 0 || put_uvarint(body, 0) < 0 ? -1 : 0;
        Py_ssize_t pf = fn_fid(t, sl->aux, 1);
        if (pf < 0 || put_uvarint(body, (unsigned long long)pf + 1) < 0)
            return -1;
        return put_uvarint(body, 0);  /* no args: the recorder writes none */
    }
    if (put_uvarint(body, (unsigned long long)(sl->depth > 0 ? sl->depth : 0)) < 0)
        return -1;
    if (code == 1)
        return put_opt(body, t, sl->aux ? sl->aux : Py_None);  /* funcgraph-args */
    if (put_uvarint(body, (unsigned long long)(sl->duration > 0 ? sl->duration : 0)) < 0)
        return -1;
    return put_opt(body, t, sl->aux ? sl->aux : Py_None);
}

typedef struct {
    PyObject *buf;
    Slot *slots;
    Py_ssize_t n, pos;
    Py_ssize_t ti;  /* its thread's index in the chunk, once its first event is encoded */
} TakenSlots;

/* encode_buffers(buffers, other, event_codes) -> (payload, n, tids): take every
 * event now in these RingCore buffers (as take_all does) and make the payload
 * of one trace-file event chunk, byte for byte what TraceWriter.write_events
 * makes of to_wevent() of take_all's pairs, without building the pairs (a
 * recorder's packed event is encoded from its slot); tids are the threads
 * that had events. */
static PyObject *
encode_buffers(PyObject *module, PyObject *args)
{
    PyObject *buffers, *other, *event_codes;
    if (!PyArg_ParseTuple(args, "OOO!", &buffers, &other, &PyDict_Type, &event_codes))
        return NULL;
    PyObject *seq = PySequence_Fast(buffers, "encode_buffers() needs a sequence of buffers");
    if (seq == NULL)
        return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t j = 0; j < k; j++) {
        if (!PyObject_TypeCheck(PySequence_Fast_GET_ITEM(seq, j), &RingCore_Type)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "encode_buffers() needs RingCore buffers");
            return NULL;
        }
    }
    TakenSlots *tk = PyMem_Calloc((size_t)(k ? k : 1), sizeof(TakenSlots));
    Tables t;
    Bytes body = {0};
    PyObject *result = NULL, *tids = NULL;
    int ok = tables_init(&t) == 0 && tk != NULL;
    if (tk == NULL)
        PyErr_NoMemory();
    Py_ssize_t total = 0;
    int monotonic = 1;
    for (Py_ssize_t j = 0; ok && j < k; j++) {
        RingCore *rc = (RingCore *)PySequence_Fast_GET_ITEM(seq, j);
        EventQueue *q = rc->events;
        tk[j].buf = (PyObject *)rc;
        tk[j].ti = -1;
        Py_ssize_t n = q ? q->len : 0;
        if (n == 0)
            continue;
        tk[j].slots = PyMem_Calloc((size_t)n, sizeof(Slot));
        if (tk[j].slots == NULL) {
            PyErr_NoMemory();
            ok = 0;
            break;
        }
        for (Py_ssize_t i = 0; i < n && q->len > 0; i++) {
            Slot *sl = &tk[j].slots[tk[j].n];
            queue_take(q, sl);
            long long size = 0;
            if (slot_size(sl, &size) < 0) {
                slot_release(sl);
                ok = 0;
                break;
            }
            if (sl->kind == 0) {  /* its timestamp, for the merge */
                int bad = 0;
                sl->ts = event_ts(sl->obj, &bad);
                if (bad) {
                    slot_release(sl);
                    ok = 0;
                    break;
                }
            }
            rc->read++;
            rc->read_bytes += size;
            if (tk[j].n > 0 && sl->ts < tk[j].slots[tk[j].n - 1].ts)
                monotonic = 0;
            tk[j].n++;
            total++;
        }
    }
    if (ok && !monotonic) {
        /* a clock that went back: the pairs, sorted as consume() sorts them */
        PyObject *keyed = PyList_New(0);
        for (Py_ssize_t j = 0; keyed != NULL && j < k; j++) {
            for (Py_ssize_t i = 0; i < tk[j].n; i++) {
                PyObject *ev = slot_event(&tk[j].slots[i]);
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
                    encode_slot(&body, &t, tk[best].ti, sl, event_codes) == 0;
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
            PyObject *tid = PyObject_GetAttr(tk[j].buf, str_tid);
            if (tid == NULL || PyList_Append(tids, tid) < 0) {
                Py_XDECREF(tid);
                Py_CLEAR(tids);
                break;
            }
            Py_DECREF(tid);
        }
        PyObject *chunk = tids ? chunk_payload(&t, &body, total) : NULL;
        if (chunk != NULL) {
            result = Py_BuildValue("(OnO)", PyTuple_GET_ITEM(chunk, 0), total, tids);
            Py_DECREF(chunk);
        }
    }
    for (Py_ssize_t j = 0; tk != NULL && j < k; j++) {
        for (Py_ssize_t i = 0; i < tk[j].n; i++)
            slot_release(&tk[j].slots[i]);
        PyMem_Free(tk[j].slots);
    }
    PyMem_Free(tk);
    Py_XDECREF(tids);
    tables_free(&t);
    PyMem_Free(body.data);
    Py_DECREF(seq);
    return result;
}

/* ------------------------------------------------------------------------- */
/* Recorders: common part                                                     */
/* ------------------------------------------------------------------------- */

#define RECORDER_HEAD            \
    PyObject_HEAD                \
    PyObject *rb;                \
    PyObject *report;            \
    PyObject *pid_check;         \
    PyObject *pid_seen;          \
    unsigned long long p_tsid;   \
    int p_valid, p_allowed;      \
    int ok;                      \
    int tracing;                 \
    int ring_valid;              \
    int clock_native;            \
    int c_is_ring;               \
    PyObject *clock_fn;          \
    unsigned long long c_tsid;   \
    PyObject *c_live;            \
    PyObject *c_buf;

typedef struct {
    RECORDER_HEAD
} Recorder;

/* A recorder's per-thread object and the thread it is for (see tls_object). */
typedef struct {
    PyObject *obj;
    unsigned long long tsid;
} TlsCache;

/* ------------------------------------------------------------------------- */
/* Per-code tables and the end of a code object                               */
/* ------------------------------------------------------------------------- */

/* The direct-mapped tables below (the dispatcher's and the 3.11 hook's sites,
 * the function recorder's callers) are keyed by a code object's address.
 * Holding every code they saw would keep code the program dropped alive (up
 * to a table's size: thousands of exec'd or generated functions), so a table
 * keeps only the address when the Function it holds guards the code: its
 * weak reference (`code_ref`) calls symbols._code_gone when the code is
 * freed, which calls code_gone() below before the address can be reused.
 * Each table is listed here while it exists; a table that finds the list
 * full holds its codes (the old way: bounded, never wrong). */
#define MAX_CODE_TABLES 256
typedef struct {
    void *slots;
    size_t n;
    char parents;  /* ParentSlot (1) or SiteSlot (0) */
} CodeTable;
/* A site table's slot (the dispatcher's, the 3.11 hook's). */
typedef struct {
    PyObject *code;   /* strong when `strong`, else borrowed (see code_tables) */
    PyObject *site;
    PyObject *fast;   /* Site.fast, NULL when None */
    PyObject *fn;     /* the site's Function; for a "no site" slot, the guard */
    PyObject *enter;  /* Site.enter (the trampoline) */
    int has_ret;      /* Site.has_ret */
    int strong;
} SiteSlot;

static CodeTable code_tables[MAX_CODE_TABLES];
static int n_code_tables;

/* 1 when the table is listed (it may borrow), 0 when the list is full. */
static int
code_table_add(void *slots, size_t n, char parents)
{
    if (n_code_tables == MAX_CODE_TABLES)
        return 0;
    code_tables[n_code_tables].slots = slots;
    code_tables[n_code_tables].n = n;
    code_tables[n_code_tables].parents = parents;
    n_code_tables++;
    return 1;
}

/* Bumped by every removal: a walk of the list that dropped references (which
 * may free a table's owner) starts again rather than trust its index. */
static unsigned long code_tables_gen;

static void
code_table_remove(void *slots)
{
    for (int i = 0; i < n_code_tables; i++) {
        if (code_tables[i].slots == slots) {
            code_tables[i] = code_tables[--n_code_tables];
            code_tables_gen++;
            return;
        }
    }
}

/* Whether `fn` (a symbols.Function) has a live weak reference to `code`.
 * Reads a __slots__ member and a weakref: runs no Python code. */
static int
fn_guards(PyObject *fn, PyObject *code)
{
    PyObject *ref = PyObject_GetAttr(fn, str_code_ref);
    if (ref == NULL) {
        PyErr_Clear();
        return 0;
    }
    int ok = 0;
    if (PyWeakref_Check(ref)) {
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *obj = NULL;
        if (PyWeakref_GetRef(ref, &obj) > 0) {
            ok = obj == code;
            Py_DECREF(obj);
        }
        PyErr_Clear();
#else
        ok = PyWeakref_GET_OBJECT(ref) == code;
#endif
    }
    Py_DECREF(ref);
    return ok;
}

typedef struct {
    PyObject *code;  /* strong when `strong`, else borrowed (see code_tables) */
    PyObject *fn;
    int strong;
} ParentSlot;

static void slots_free(SiteSlot *slots, size_t n);

static void
parent_slots_free(ParentSlot *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ParentSlot *p = &slots[i];
        PyObject *c = p->strong ? p->code : NULL, *fn = p->fn;
        p->code = p->fn = NULL;
        p->strong = 0;
        Py_XDECREF(c);
        Py_XDECREF(fn);
    }
}

/* symbols._code_gone: the code object at this address is being freed.  The
 * slots are emptied first and their references dropped after (dropping one may
 * free a table, which changes the list). */
static PyObject *
code_gone(PyObject *module, PyObject *arg)
{
    void *code = PyLong_AsVoidPtr(arg);
    if (code == NULL && PyErr_Occurred())
        return NULL;
    PyObject *drop[MAX_CODE_TABLES * 4];
    int n = 0;
    for (int i = 0; i < n_code_tables; i++) {
        CodeTable *t = &code_tables[i];
        size_t k = ptr_slot(code, t->n);
        if (t->parents) {
            ParentSlot *p = &((ParentSlot *)t->slots)[k];
            if (p->code == code && !p->strong) {
                drop[n++] = p->fn;
                p->code = p->fn = NULL;
            }
        } else {
            SiteSlot *p = &((SiteSlot *)t->slots)[k];
            if (p->code == code && !p->strong) {
                drop[n++] = p->site;
                drop[n++] = p->fast;
                drop[n++] = p->fn;
                drop[n++] = p->enter;
                p->code = p->site = p->fast = p->fn = p->enter = NULL;
            }
        }
    }
    for (int i = 0; i < n; i++)
        Py_XDECREF(drop[i]);
    Py_RETURN_NONE;
}

/* Whether some table still has this address (for tests: a freed code's must be gone). */
static PyObject *
holds_code(PyObject *module, PyObject *arg)
{
    void *code = PyLong_AsVoidPtr(arg);
    if (code == NULL && PyErr_Occurred())
        return NULL;
    for (int i = 0; i < n_code_tables; i++) {
        CodeTable *t = &code_tables[i];
        size_t k = ptr_slot(code, t->n);
        void *held = t->parents ? (void *)((ParentSlot *)t->slots)[k].code
                                : (void *)((SiteSlot *)t->slots)[k].code;
        if (held == code)
            Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* symbols.clear: every table forgets every code (nothing is traced any more).
 * Slot by slot; when dropping references freed a table, the walk starts again. */
static PyObject *
forget_codes(PyObject *module, PyObject *unused)
{
again:
    for (int i = 0; i < n_code_tables; i++) {
        CodeTable *t = &code_tables[i];
        for (size_t k = 0; k < t->n; k++) {
            unsigned long gen = code_tables_gen;
            if (t->parents)
                parent_slots_free(&((ParentSlot *)t->slots)[k], 1);
            else
                slots_free(&((SiteSlot *)t->slots)[k], 1);
            if (gen != code_tables_gen)
                goto again;
        }
    }
    Py_RETURN_NONE;
}

/* Callers seen: code -> Function, direct-mapped (the code held only when its
 * Function does not guard it, see code_tables). */
#define PARENT_SLOTS 1024

typedef struct {
    RECORDER_HEAD
    PyObject *fn_cache;           /* symbols._cache: id(code) -> Function */
    PyObject *function_for_frame;
    ParentSlot *parents;
    int borrow;                   /* parents is listed in code_tables */
} FuncRecorder;


typedef struct {
    RECORDER_HEAD
    PyObject *tls;                /* the tracer's threading.local (its .stack) */
    long long max_depth;
    TlsCache s_stack;
    PyObject *ev_unwind;
    /* funcgraph-args / funcgraph-retval, and the instance's SafeRepr (whose
     * text limit the common values are rendered with, in C) */
    int args, retval;
    PyObject *safe_repr;
    Py_ssize_t max_len;
} GraphRecorder;

static PyTypeObject FuncRecorder_Type, GraphRecorder_Type;

static int
recorder_traverse_common(Recorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->rb);
    Py_VISIT(self->report);
    Py_VISIT(self->pid_check);
    Py_VISIT(self->pid_seen);
    Py_VISIT(self->clock_fn);
    Py_VISIT(self->c_live);
    Py_VISIT(self->c_buf);
    return 0;
}

static void
recorder_clear_common(Recorder *self)
{
    Py_CLEAR(self->rb);
    Py_CLEAR(self->report);
    Py_CLEAR(self->pid_check);
    Py_CLEAR(self->pid_seen);
    Py_CLEAR(self->clock_fn);
    Py_CLEAR(self->c_live);
    Py_CLEAR(self->c_buf);
}

static int
recorder_bind(Recorder *self, PyObject *rb)
{
    Py_XSETREF(self->rb, Py_NewRef(rb));
    Py_XSETREF(self->report, Py_NewRef(Py_None));
    self->ok = 0;
    self->tracing = 1;
    self->ring_valid = 0;
    return 0;
}

/* The clock of the ring buffer, natively when it is perf_counter_ns or
 * monotonic_ns (on Linux all three read CLOCK_MONOTONIC, so events of the two
 * paths order together), time_ns (CLOCK_REALTIME) or local_clock. */
/* The ring's clock and live buffer set, read again after ring_changed(). */
static int
recorder_ring(Recorder *self)
{
    if (self->ring_valid)
        return 0;
    PyObject *clock = PyObject_GetAttr(self->rb, str_clock);
    if (clock == NULL)
        return -1;
    PyObject *live = PyObject_GetAttr(self->rb, str_live);
    if (live == NULL) {
        Py_DECREF(clock);
        return -1;
    }
#ifdef __linux__
    int mono = clock == perf_counter_ns || clock == monotonic_ns;
#else
    int mono = clock == perf_counter_ns;
#endif
    self->clock_native = mono ? 1 : clock == local_clock_fn ? 2 : clock == time_ns ? 3 : 0;
    Py_XSETREF(self->clock_fn, clock);
    Py_CLEAR(self->c_buf);
    Py_XSETREF(self->c_live, live);
    self->ring_valid = 1;
    return 0;
}

static int
recorder_now(Recorder *self, long long *now)
{
    if (recorder_ring(self) < 0)
        return -1;
    if (self->clock_native == 2) {
        *now = local_ns();
        return 0;
    }
    if (self->clock_native == 1) {
        *now = mono_ns();
        return 0;
    }
    if (self->clock_native == 3) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        *now = (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
        return 0;
    }
    PyObject *clock = Py_NewRef(self->clock_fn);
    PyObject *ts = PyObject_CallNoArgs(clock);
    Py_DECREF(clock);
    if (ts == NULL)
        return -1;
    *now = PyLong_AsLongLong(ts);
    Py_DECREF(ts);
    return (*now == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* This thread's buffer in the ring's live set (new reference). */
static PyObject *
recorder_buffer(Recorder *self, unsigned long long tsid)
{
    if (recorder_ring(self) < 0)
        return NULL;
    if (self->c_buf != NULL && self->c_tsid == tsid)
        return Py_NewRef(self->c_buf);
    PyObject *live = Py_NewRef(self->c_live);
    PyObject *local = PyObject_GetAttr(live, str_local);
    PyObject *buf = NULL;
    if (local != NULL) {
        buf = PyObject_GetAttr(local, str_buf);
        Py_DECREF(local);
        if (buf == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            buf = PyObject_CallMethodNoArgs(live, str_new_buffer);
        }
    }
    if (buf == NULL) {
        Py_DECREF(live);
        return NULL;
    }
    Py_XSETREF(self->c_live, live);  /* steals live */
    Py_XSETREF(self->c_buf, Py_NewRef(buf));
    self->c_tsid = tsid;
    self->c_is_ring = PyObject_TypeCheck(buf, &RingCore_Type);
    return buf;
}

/* Write an event (steals it) into this thread's buffer. */
static int
recorder_write(Recorder *self, Slot *slot, unsigned long long tsid)
{
    /* The slot's references go to the ring (or are released). */
    PyObject *buf = recorder_buffer(self, tsid);
    if (buf == NULL) {
        slot_release(slot);
        return -1;
    }
    int r;
    if (buf == self->c_buf ? self->c_is_ring : PyObject_TypeCheck(buf, &RingCore_Type)) {
        r = ring_write_slot((RingCore *)buf, slot);
    } else {
        PyObject *event = slot_event(slot);
        slot_release(slot);
        PyObject *res = event ? PyObject_CallMethodOneArg(buf, str_write, event) : NULL;
        r = res == NULL ? -1 : 0;
        Py_XDECREF(res);
        Py_XDECREF(event);
    }
    Py_DECREF(buf);
    return r < 0 ? -1 : 0;
}

/* A failure inside a recorder: counted on the ops, never raised to the program
 * (SystemExit included).  KeyboardInterrupt goes on, to be raised again in the
 * program (interrupt_later). */
static int
recorder_failed(Recorder *self)
{
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return -1;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *val, *tb;
    PyErr_Fetch(&type, &val, &tb);
    PyErr_NormalizeException(&type, &val, &tb);
    if (tb != NULL)
        PyException_SetTraceback(val, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    PyObject *exc = val;
#endif
    if (self->report != NULL && self->report != Py_None) {
        PyObject *r = PyObject_CallOneArg(self->report, exc);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    Py_DECREF(exc);
    return 0;
}

static PyObject *
Recorder_get_ok(Recorder *self, void *closure)
{
    return PyBool_FromLong(self->ok);
}

static int
Recorder_set_ok(Recorder *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete ok");
        return -1;
    }
    int t = PyObject_IsTrue(value);
    if (t < 0)
        return -1;
    self->ok = t;
    return 0;
}

/* The instance's pid filter for this thread: 1 traced, 0 not, -1 error.
 * pid_check() (Python, run in the thread itself) decides once per thread. */
static int
recorder_pid_ok(Recorder *self, unsigned long long tsid)
{
    if (self->pid_check == NULL || self->pid_check == Py_None)
        return 1;
    if (self->p_valid && self->p_tsid == tsid)
        return self->p_allowed;
    if (self->pid_seen == NULL && (self->pid_seen = PyDict_New()) == NULL)
        return -1;
    PyObject *key = PyLong_FromUnsignedLongLong(tsid);
    if (key == NULL)
        return -1;
    PyObject *v = PyDict_GetItemWithError(self->pid_seen, key);
    int allowed;
    if (v != NULL) {
        allowed = v == Py_True;
    } else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    } else {
        PyObject *r = PyObject_CallNoArgs(self->pid_check);
        allowed = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (allowed < 0 || PyDict_SetItem(self->pid_seen, key, allowed ? Py_True : Py_False) < 0) {
            Py_DECREF(key);
            return -1;
        }
    }
    Py_DECREF(key);
    self->p_tsid = tsid;
    self->p_allowed = allowed;
    self->p_valid = 1;
    return allowed;
}

static PyObject *
Recorder_get_pid_check(Recorder *self, void *closure)
{
    return Py_NewRef(self->pid_check ? self->pid_check : Py_None);
}

static int
Recorder_set_pid_check(Recorder *self, PyObject *value, void *closure)
{
    /* a new pid filter: every thread is decided again */
    Py_XSETREF(self->pid_check, Py_NewRef(value ? value : Py_None));
    Py_CLEAR(self->pid_seen);
    self->p_valid = 0;
    return 0;
}

static PyObject *
Recorder_get_tracing(Recorder *self, void *closure)
{
    return PyBool_FromLong(self->tracing);
}

static int
Recorder_set_tracing(Recorder *self, PyObject *value, void *closure)
{
    int t = value ? PyObject_IsTrue(value) : 0;
    if (t < 0)
        return -1;
    self->tracing = t;
    return 0;
}

static PyObject *
Recorder_ring_changed(Recorder *self, PyObject *unused)
{
    self->ring_valid = 0;
    Py_CLEAR(self->c_buf);
    Py_RETURN_NONE;
}

static PyObject *
Recorder_get_report(Recorder *self, void *closure)
{
    return Py_NewRef(self->report ? self->report : Py_None);
}

static int
Recorder_set_report(Recorder *self, PyObject *value, void *closure)
{
    Py_XSETREF(self->report, Py_NewRef(value ? value : Py_None));
    return 0;
}

/* ------------------------------------------------------------------------- */
/* FuncRecorder                                                               */
/* ------------------------------------------------------------------------- */

static int
FuncRecorder_init(FuncRecorder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rb", "fn_cache", "function_for_frame", NULL};
    PyObject *rb, *cache, *fff;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O", kwlist, &rb, &PyDict_Type, &cache,
                                     &fff))
        return -1;
    recorder_bind((Recorder *)self, rb);
    Py_XSETREF(self->fn_cache, Py_NewRef(cache));
    Py_XSETREF(self->function_for_frame, Py_NewRef(fff));
    if (self->parents == NULL) {
        self->parents = PyMem_Calloc(PARENT_SLOTS, sizeof(ParentSlot));
        if (self->parents == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->borrow = code_table_add(self->parents, PARENT_SLOTS, 1);
    }
    return 0;
}

static int
FuncRecorder_traverse(FuncRecorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fn_cache);
    Py_VISIT(self->function_for_frame);
    if (self->parents != NULL) {
        for (size_t i = 0; i < PARENT_SLOTS; i++) {
            if (self->parents[i].strong)
                Py_VISIT(self->parents[i].code);
            Py_VISIT(self->parents[i].fn);
        }
    }
    return recorder_traverse_common((Recorder *)self, visit, arg);
}

static int
FuncRecorder_clear(FuncRecorder *self)
{
    Py_CLEAR(self->fn_cache);
    Py_CLEAR(self->function_for_frame);
    if (self->parents != NULL)
        parent_slots_free(self->parents, PARENT_SLOTS);
    recorder_clear_common((Recorder *)self);
    return 0;
}

static void
FuncRecorder_dealloc(FuncRecorder *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    FuncRecorder_clear(self);
    if (self->parents != NULL)
        code_table_remove(self->parents);
    PyMem_Free(self->parents);
    tp->tp_free((PyObject *)self);
}

/* Remember `fn` as the Function of the caller code `code`. */
static void
parent_fill(FuncRecorder *self, ParentSlot *slot, PyObject *code, PyObject *fn)
{
    int strong = !(self->borrow && fn_guards(fn, code));
    PyObject *old_code = slot->strong ? slot->code : NULL, *old_fn = slot->fn;
    slot->code = strong ? Py_NewRef(code) : code;
    slot->strong = strong;
    slot->fn = Py_NewRef(fn);
    Py_XDECREF(old_code);
    Py_XDECREF(old_fn);
}

/* The Function of a caller's code if known (new reference); NULL without an
 * error when it is not (then function_for_frame must name it). */
static PyObject *
parent_cached(FuncRecorder *self, PyObject *code)
{
    ParentSlot *slot = &self->parents[ptr_slot(code, PARENT_SLOTS)];
    if (slot->code == code)
        return Py_NewRef(slot->fn);
    PyObject *key = PyLong_FromVoidPtr(code);
    if (key == NULL)
        return NULL;
    PyObject *fn = PyDict_GetItemWithError(self->fn_cache, key);
    Py_DECREF(key);
    if (fn == NULL || PyObject_IsTrue(fn) != 1)
        return NULL;
    parent_fill(self, slot, code, fn);
    return Py_NewRef(fn);
}

/* The Function of the caller of `frame`, or None (new reference). */
static PyObject *
func_parent(FuncRecorder *self, PyFrameObject *frame)
{
    PyFrameObject *back = frame ? PyFrame_GetBack(frame) : NULL;
    if (back == NULL)
        return Py_NewRef(Py_None);
    PyObject *code = (PyObject *)PyFrame_GetCode(back);
    PyObject *fn = parent_cached(self, code);
    if (fn == NULL && !PyErr_Occurred()) {
        fn = PyObject_CallOneArg(self->function_for_frame, (PyObject *)back);
        if (fn != NULL)
            parent_fill(self, &self->parents[ptr_slot(code, PARENT_SLOTS)], code, fn);
    }
    Py_DECREF(code);
    Py_DECREF(back);
    return fn;
}

static PyObject *
where_parent(FuncRecorder *self, Where *w)
{
#ifdef FNT_IFRAME
    if (w->iframe != NULL) {
        fnt_iframe *p = ((fnt_iframe *)w->iframe)->previous;
        while (p != NULL && p->owner == FNT_OWNED_BY_CSTACK)
            p = p->previous;
        if (p == NULL)
            return Py_NewRef(Py_None);
        if (p->code != NULL && PyCode_Check(p->code)) {
            PyObject *fn = parent_cached(self, p->code);
            if (fn != NULL || PyErr_Occurred())
                return fn;
        }
    }
#endif
    return func_parent(self, where_frame(w));
}

/* One entry event: (ts, 64, "F", fn, parent, None, event). 0 done, -1 error. */
static int
func_entry(FuncRecorder *self, PyObject *fn, Where *where, PyObject *event,
           unsigned long long tsid)
{
    int on = self->tracing;  /* pushed by Instance.tracing_on's setter */
    if (on > 0)
        on = recorder_pid_ok((Recorder *)self, tsid);
    if (on <= 0)
        return on;
    PyObject *parent = where_parent(self, where);
    if (parent == NULL)
        return -1;
    long long ts;
    if (recorder_now((Recorder *)self, &ts) < 0) {
        Py_DECREF(parent);
        return -1;
    }
    Slot slot = {0};
    slot.kind = 'F';
    slot.ts = ts;
    slot.size = EVENT_OVERHEAD;
    slot.obj = Py_NewRef(fn);
    slot.aux = parent;
    int code = event_code(event);
    if (code < 0) {
        slot_release(&slot);
        return -1;
    }
    slot.evcode = (unsigned char)code;
    return recorder_write((Recorder *)self, &slot, tsid);
}

static PyGetSetDef Recorder_getset[] = {
    {"ok", (getter)Recorder_get_ok, (setter)Recorder_set_ok,
     "whether the C path may record (set by the tracer from its options)", NULL},
    {"report", (getter)Recorder_get_report, (setter)Recorder_set_report,
     "called with an exception raised inside the recorder", NULL},
    {"pid_check", (getter)Recorder_get_pid_check, (setter)Recorder_set_pid_check,
     "None, or called in a thread to say whether the pid filters let it be traced", NULL},
    {"tracing", (getter)Recorder_get_tracing, (setter)Recorder_set_tracing,
     "the instance's tracing_on (pushed by its setter)", NULL},
    {NULL}
};

static PyMethodDef FuncRecorder_methods[] = {
    {"ring_changed", (PyCFunction)Recorder_ring_changed, METH_NOARGS,
     "The ring buffer's clock or live buffer set changed."},
    {NULL}
};

static PyTypeObject FuncRecorder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.FuncRecorder",
    .tp_basicsize = sizeof(FuncRecorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The function tracer's entry event, written in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FuncRecorder_init,
    .tp_dealloc = (destructor)FuncRecorder_dealloc,
    .tp_traverse = (traverseproc)FuncRecorder_traverse,
    .tp_clear = (inquiry)FuncRecorder_clear,
    .tp_methods = FuncRecorder_methods,
    .tp_getset = Recorder_getset,
};

/* ------------------------------------------------------------------------- */
/* GraphRecorder                                                              */
/* ------------------------------------------------------------------------- */

static int
GraphRecorder_init(GraphRecorder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rb", "tls", "unwind", NULL};
    PyObject *rb, *tls, *unwind;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO", kwlist, &rb, &tls, &unwind))
        return -1;
    recorder_bind((Recorder *)self, rb);
    Py_XSETREF(self->tls, Py_NewRef(tls));
    Py_XSETREF(self->ev_unwind, Py_NewRef(unwind));
    self->max_depth = 0;
    return 0;
}

static int
GraphRecorder_traverse(GraphRecorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->tls);
    Py_VISIT(self->s_stack.obj);
    Py_VISIT(self->ev_unwind);
    Py_VISIT(self->safe_repr);
    return recorder_traverse_common((Recorder *)self, visit, arg);
}

static int
GraphRecorder_clear(GraphRecorder *self)
{
    Py_CLEAR(self->tls);
    Py_CLEAR(self->s_stack.obj);
    Py_CLEAR(self->ev_unwind);
    Py_CLEAR(self->safe_repr);
    recorder_clear_common((Recorder *)self);
    return 0;
}

static void
GraphRecorder_dealloc(GraphRecorder *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    GraphRecorder_clear(self);
    tp->tp_free((PyObject *)self);
}

/* A recorder's per-thread object, tls.<attr> (borrowed through a one-thread
 * cache): made by calling `make` when the thread has none and `create` (and
 * stored in tls when `store`; else `make` stores it), else Py_None. */
static PyObject *
tls_object(TlsCache *cache, PyObject *tls, PyObject *attr, PyObject *make, int store,
           PyTypeObject *type, int create, unsigned long long tsid)
{
    if (cache->obj != NULL && cache->tsid == tsid)
        return cache->obj;
    PyObject *obj = PyObject_GetAttr(tls, attr);
    if (obj == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
        if (!create)
            return Py_None;
        obj = PyObject_CallNoArgs(make);
        if (obj == NULL)
            return NULL;
        if (store && PyObject_SetAttr(tls, attr, obj) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    if (Py_TYPE(obj) != type) {
        Py_DECREF(obj);
        PyErr_Format(PyExc_TypeError, "a recorder's per-thread %U is not a %s", attr,
                     type->tp_name);
        return NULL;
    }
    Py_XSETREF(cache->obj, obj);
    cache->tsid = tsid;
    return obj;
}

/* This thread's graph stack: a GraphStack, the type the tracer's Python path
 * uses too. */
static PyObject *
graph_stack(GraphRecorder *self, int create, unsigned long long tsid)
{
    return tls_object(&self->s_stack, self->tls, str_stack, (PyObject *)&GraphStack_Type, 1,
                      &GraphStack_Type, create, tsid);
}

/* The key of the running frame: its interpreter frame's address. */
static void *
where_ptr(Where *w)
{
#ifdef FNT_IFRAME
    if (w->iframe != NULL)
        return w->iframe;
    PyFrameObject *f = where_frame(w);
    return f ? (void *)((fnt_frameobject *)f)->f_frame : NULL;
#else
    return (void *)where_frame(w);
#endif
}

/* SafeRepr.__call__ (reprs.py) for the commonest values, in C: the types it
 * renders with repr() itself (None, bool, int, float, complex) and str and
 * bytes (cut before repr, so bounded and never timed), with its text limit.
 * Anything else is the instance's SafeRepr's to render. */
static PyObject *graph_repr(GraphRecorder *self, PyObject *v);

/* A machine-size int (the commonest argument and value) as "prefix=digits" or
 * "digits" in one allocation; NULL without an error when `v` is no such int or
 * its text would pass the limit (graph_repr then cuts it). */
static PyObject *
graph_small_int(GraphRecorder *self, PyObject *prefix, PyObject *v)
{
    if (Py_TYPE(v) != &PyLong_Type)
        return NULL;
    int overflow;
    long n = PyLong_AsLongAndOverflow(v, &overflow);
    if (overflow || (n == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return NULL;
    }
    if (self->max_len < 20)
        return NULL;
    return prefix ? PyUnicode_FromFormat("%U=%ld", prefix, n) : PyUnicode_FromFormat("%ld", n);
}

static PyObject *
graph_repr(GraphRecorder *self, PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    PyObject *text = graph_small_int(self, NULL, v);
    if (text != NULL)
        return text;
    if (v == Py_None || t == &PyLong_Type || t == &PyBool_Type || t == &PyFloat_Type ||
        t == &PyComplex_Type) {
        text = PyObject_Repr(v);
    } else if (t == &PyUnicode_Type || t == &PyBytes_Type) {
        Py_ssize_t keep = self->max_len + 1;
        PyObject *cut;
        if (t == &PyUnicode_Type)
            cut = PyUnicode_GET_LENGTH(v) > keep ? PyUnicode_Substring(v, 0, keep)
                                                 : Py_NewRef(v);
        else
            cut = PyBytes_GET_SIZE(v) > keep ? PyBytes_FromStringAndSize(PyBytes_AS_STRING(v),
                                                                         keep)
                                             : Py_NewRef(v);
        text = cut ? PyObject_Repr(cut) : NULL;
        Py_XDECREF(cut);
    } else {
        return PyObject_CallOneArg(self->safe_repr, v);
    }
    if (text == NULL)
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n > self->max_len) {
        Py_ssize_t keep = self->max_len - 3 > 1 ? self->max_len - 3 : 1;
        PyObject *head = PyUnicode_Substring(text, 0, keep);
        Py_DECREF(text);
        if (head == NULL)
            return NULL;
        text = PyUnicode_FromFormat("%U...", head);
        Py_DECREF(head);
    }
    return text;
}

#if defined(FNT_IFRAME) || defined(FNT_IFRAME311)
#define FNT_CO_FAST_CELL 0x40
/* The code and fast locals of the frame a callback runs for (0: none). */
static int
where_fast_locals(Where *w, PyCodeObject **co, PyObject ***localsplus)
{
    PyObject *code;
#ifdef FNT_IFRAME
    fnt_iframe *f = w->iframe;
    if (f == NULL) {
        PyFrameObject *fo = where_frame(w);
        if (fo == NULL)
            return 0;
        f = ((fnt_frameobject *)fo)->f_frame;
    }
#else
    PyFrameObject *fo = where_frame(w);
    if (fo == NULL)
        return 0;
    fnt_iframe311 *f = ((fnt_frameobject311 *)fo)->f_frame;
#endif
    code = f->code;
    if (code == NULL || !PyCode_Check(code))
        return 0;
    *co = (PyCodeObject *)code;
    *localsplus = f->localsplus;
    return 1;
}

/* funcgraph-args' text: "name=repr, ..." over the parameters in signature
 * order (positional, *args, keyword-only, **kwargs), read from the frame's
 * fast locals as FtraceRegs.arguments reads them from f_locals: unbound ones
 * left out, cells (a parameter a closure captures) opened. */
static PyObject *
graph_args_text(GraphRecorder *self, Where *w)
{
    PyCodeObject *co;
    PyObject **localsplus;
    if (!where_fast_locals(w, &co, &localsplus))
        return Py_NewRef(str_empty);
    int npos = co->co_argcount, nkw = co->co_kwonlyargcount;
    int var = (co->co_flags & CO_VARARGS) != 0, varkw = (co->co_flags & CO_VARKEYWORDS) != 0;
    int total = npos + nkw + var + varkw;
    const char *kinds = PyBytes_AS_STRING(co->co_localspluskinds);
    PyObject *parts = NULL, *one = NULL;  /* the parts, or the only one so far */
    for (int j = 0; j < total; j++) {
        int idx;
        if (j < npos)
            idx = j;
        else if (var && j == npos)
            idx = npos + nkw;
        else if (j < npos + var + nkw)
            idx = j - var;
        else
            idx = npos + nkw + var;
        PyObject *v = localsplus[idx];
        if (v != NULL && (kinds[idx] & FNT_CO_FAST_CELL) && PyCell_Check(v))
            v = PyCell_GET(v);
        if (v == NULL)
            continue;
        PyObject *name = PyTuple_GET_ITEM(co->co_localsplusnames, idx);
        PyObject *part = graph_small_int(self, name, v);
        if (part == NULL && !PyErr_Occurred()) {
            Py_INCREF(v);
            PyObject *r = graph_repr(self, v);
            Py_DECREF(v);
            part = r ? PyUnicode_FromFormat("%U=%U", name, r) : NULL;
            Py_XDECREF(r);
        }
        if (part != NULL && one != NULL) {  /* a second part: from here on a list */
            parts = PyList_New(0);
            if (parts == NULL || PyList_Append(parts, one) < 0)
                Py_CLEAR(part);
            Py_CLEAR(one);
        }
        if (part != NULL && parts == NULL) {
            one = part;
            continue;
        }
        if (part == NULL || PyList_Append(parts, part) < 0) {
            Py_XDECREF(part);
            Py_XDECREF(parts);
            return NULL;
        }
        Py_DECREF(part);
    }
    if (parts == NULL)
        return one != NULL ? one : Py_NewRef(str_empty);
    PyObject *text = PyUnicode_Join(str_comma, parts);
    Py_DECREF(parts);
    return text;
}
#define FNT_FRAME_ARGS 1
#else
static PyObject *
graph_args_text(GraphRecorder *self, Where *w)
{
    PyErr_SetString(PyExc_RuntimeError, "funcgraph-args is read in Python on this version");
    return NULL;
}
#define FNT_FRAME_ARGS 0
#endif

static int
graph_entry(GraphRecorder *self, PyObject *fn, Where *where, PyObject *event,
            unsigned long long tsid)
{
    int allowed = recorder_pid_ok((Recorder *)self, tsid);
    if (allowed <= 0)
        return allowed;
    PyObject *obj = graph_stack(self, 1, tsid);
    if (obj == NULL)
        return -1;
    GraphStack *stack = (GraphStack *)obj;
    long long depth = 0;
    int state = GRAPH_INSIDE;
    if (stack->n > 0) {
        depth = stack->e[stack->n - 1].depth;
        state = stack->e[stack->n - 1].state;
    }
    void *key = where_ptr(where);
    /* With no graph filters every function classifies as outside: the state
     * below the caller decides, as in FunctionGraphTracer.entry. */
    if (state == GRAPH_BLOCKED || state == GRAPH_OUTSIDE)
        return gs_push(stack, key, 0, 0, depth, state);
    if ((self->max_depth && depth >= self->max_depth) || !self->tracing)
        return gs_push(stack, key, 0, 0, depth, GRAPH_INSIDE);
    PyObject *args = Py_NewRef(Py_None);
    long long size = EVENT_OVERHEAD;
    if (self->args) {
        Py_SETREF(args, graph_args_text(self, where));
        if (args == NULL)
            return -1;
        size += PyUnicode_GET_LENGTH(args);
    }
    long long now;
    if (recorder_now((Recorder *)self, &now) < 0 ||
        gs_push(stack, key, now, 1, depth + 1, GRAPH_INSIDE) < 0) {
        Py_DECREF(args);
        return -1;
    }
    Slot slot = {0};
    slot.kind = 'E';
    slot.ts = now;
    slot.size = (int32_t)size;
    slot.depth = (int32_t)depth;
    slot.obj = Py_NewRef(fn);
    slot.aux = args;
    int code = event_code(event);
    if (code < 0) {
        slot_release(&slot);
        return -1;
    }
    slot.evcode = (unsigned char)code;
    return recorder_write((Recorder *)self, &slot, tsid);
}

static int
graph_exit(GraphRecorder *self, PyObject *fn, Where *where, PyObject *event,
           PyObject *retval, PyObject *exc, unsigned long long tsid)
{
    PyObject *obj = graph_stack(self, 0, tsid);
    if (obj == NULL)
        return -1;
    if (obj == Py_None)
        return 0;
    GEntry top;
    if (!gs_pop_to((GraphStack *)obj, where_ptr(where), &top))
        return 0;  /* its entry was not seen */
    if (!top.has_ts || !self->tracing)
        return 0;
    long long now;
    if (recorder_now((Recorder *)self, &now) < 0)
        return -1;
    PyObject *value = Py_None;
    long long size = EVENT_OVERHEAD;
    /* whether this exit is an unwind, asked only when it matters (a string compare) */
    int unwind = ((exc != NULL && exc != Py_None) || self->retval) &&
        (event == self->ev_unwind ||
         (PyUnicode_Check(event) && PyUnicode_Compare(event, self->ev_unwind) == 0));
    if (unwind && exc != NULL && exc != Py_None) {
        value = PyType_GetName(Py_TYPE(exc));
        if (value == NULL)
            return -1;
        size += PyUnicode_GET_LENGTH(value);
    } else if (!unwind && self->retval) {
        value = graph_repr(self, retval ? retval : Py_None);
        if (value == NULL)
            return -1;
        size += PyUnicode_GET_LENGTH(value);
    } else {
        Py_INCREF(value);
    }
    Slot slot = {0};
    slot.kind = 'X';
    slot.ts = now;
    slot.size = (int32_t)size;
    slot.depth = (int32_t)(top.depth - 1);
    slot.duration = now - top.ts;
    slot.obj = Py_NewRef(fn);
    slot.aux = value;
    int code = event_code(event);
    if (code < 0) {
        slot_release(&slot);
        return -1;
    }
    slot.evcode = (unsigned char)code;
    return recorder_write((Recorder *)self, &slot, tsid);
}

static PyObject *
GraphRecorder_get_max_depth(GraphRecorder *self, void *closure)
{
    return PyLong_FromLongLong(self->max_depth);
}

static int
GraphRecorder_set_max_depth(GraphRecorder *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete max_depth");
        return -1;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    self->max_depth = v;
    return 0;
}

/* reprs(args, retval, safe_repr): funcgraph-args, funcgraph-retval and the
 * instance's SafeRepr (replaced whole when its limits change). */
static PyObject *
GraphRecorder_reprs(GraphRecorder *self, PyObject *const *a, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "reprs(args, retval, safe_repr)");
        return NULL;
    }
    int args = PyObject_IsTrue(a[0]), retval = PyObject_IsTrue(a[1]);
    if (args < 0 || retval < 0)
        return NULL;
    if (args && !FNT_FRAME_ARGS) {
        PyErr_SetString(PyExc_ValueError, "funcgraph-args is read in Python on this version");
        return NULL;
    }
    PyObject *max_len = PyObject_GetAttr(a[2], str_max_len);
    Py_ssize_t ml = max_len ? PyLong_AsSsize_t(max_len) : -1;
    Py_XDECREF(max_len);
    if (ml < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "safe_repr.max_len < 0");
        return NULL;
    }
    self->args = args;
    self->retval = retval;
    self->max_len = ml;
    Py_XSETREF(self->safe_repr, Py_NewRef(a[2]));
    Py_RETURN_NONE;
}

static PyMethodDef GraphRecorder_methods[] = {
    {"ring_changed", (PyCFunction)Recorder_ring_changed, METH_NOARGS,
     "The ring buffer's clock or live buffer set changed."},
    {"reprs", (PyCFunction)(void (*)(void))GraphRecorder_reprs, METH_FASTCALL,
     "reprs(args, retval, safe_repr): what the events show of values, and how."},
    {NULL}
};

static PyGetSetDef GraphRecorder_getset[] = {
    {"ok", (getter)Recorder_get_ok, (setter)Recorder_set_ok,
     "whether the C path may record (set by the tracer from its options)", NULL},
    {"report", (getter)Recorder_get_report, (setter)Recorder_set_report,
     "called with an exception raised inside the recorder", NULL},
    {"pid_check", (getter)Recorder_get_pid_check, (setter)Recorder_set_pid_check,
     "None, or called in a thread to say whether the pid filters let it be traced", NULL},
    {"tracing", (getter)Recorder_get_tracing, (setter)Recorder_set_tracing,
     "the instance's tracing_on (pushed by its setter)", NULL},
    {"max_depth", (getter)GraphRecorder_get_max_depth, (setter)GraphRecorder_set_max_depth,
     "max_graph_depth (0: no limit)", NULL},
    {NULL}
};

static PyTypeObject GraphRecorder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.GraphRecorder",
    .tp_basicsize = sizeof(GraphRecorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "function_graph's entry and exit events, written in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)GraphRecorder_init,
    .tp_dealloc = (destructor)GraphRecorder_dealloc,
    .tp_traverse = (traverseproc)GraphRecorder_traverse,
    .tp_clear = (inquiry)GraphRecorder_clear,
    .tp_methods = GraphRecorder_methods,
    .tp_getset = GraphRecorder_getset,
};

/* ------------------------------------------------------------------------- */
/* The function profiler: per-thread state and its recorder                   */
/* ------------------------------------------------------------------------- */

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
        for (size_t i = ptr_slot(fn, (size_t)self->size);; i = (i + 1) & mask) {
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
            size_t k = ptr_slot(old->fn, (size_t)size);
            while (rec[k].fn != NULL)
                k = (k + 1) & ((size_t)size - 1);
            rec[k] = *old;
        }
        PyMem_Free(self->rec);
        self->rec = rec;
        self->size = size;
    }
    size_t mask = (size_t)self->size - 1;
    size_t i = ptr_slot(fn, (size_t)self->size);
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
    RECORDER_HEAD
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

static PyTypeObject ProfRecorder_Type;

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
    recorder_bind((Recorder *)self, Py_None);
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
    return recorder_traverse_common((Recorder *)self, visit, arg);
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
    recorder_clear_common((Recorder *)self);
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
    return tls_object(&self->s_state, self->tls, str_state, self->make_state, 0,
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
prof_entry(ProfRecorder *self, PyObject *fn, PyObject *code, Where *where, PyObject *event,
           unsigned long long tsid)
{
    PyObject *obj = prof_state(self, 1, tsid);
    if (obj == NULL)
        return -1;
    ProfThread *state = (ProfThread *)obj;
    void *key = where_ptr(where);
    if (event_is(event, self->ev_start)) {
        if (prof_hit(state, fn) < 0)
            return -1;
        if (is_gen_code(code) && prof_call_started(self, key, code) < 0)
            return -1;
    }
    return prof_push(state, key, mono_ns(), self->generation);
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
prof_exit(ProfRecorder *self, PyObject *fn, PyObject *code, Where *where, PyObject *event,
          unsigned long long tsid)
{
    long long now = mono_ns();
    PyObject *obj = prof_state(self, 0, tsid);
    if (obj == NULL)
        return -1;
    if (obj == Py_None)
        return 0;
    void *key = where_ptr(where);
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
    {"ok", (getter)Recorder_get_ok, (setter)Recorder_set_ok,
     "whether the C path may record (set by the profiler)", NULL},
    {"report", (getter)Recorder_get_report, (setter)Recorder_set_report,
     "called with an exception raised inside the recorder", NULL},
    {"generation", (getter)ProfRecorder_get_generation,
     (setter)ProfRecorder_set_generation,
     "the profiler's reset generation (pushed by reset())", NULL},
    {"graph_time", (getter)ProfRecorder_get_graph_time, (setter)ProfRecorder_set_graph_time,
     "options/graph-time (pushed when options change)", NULL},
    {NULL}
};

static PyTypeObject ProfRecorder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.ProfRecorder",
    .tp_basicsize = sizeof(ProfRecorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The function profiler's entries and exits of plain functions, in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ProfRecorder_init,
    .tp_dealloc = (destructor)ProfRecorder_dealloc,
    .tp_traverse = (traverseproc)ProfRecorder_traverse,
    .tp_clear = (inquiry)ProfRecorder_clear,
    .tp_getset = ProfRecorder_getset,
};

/* ------------------------------------------------------------------------- */
/* Dispatcher: the sys.monitoring callbacks                                   */
/* ------------------------------------------------------------------------- */

/* Sites seen: code -> (Site, its recorder, its Function), direct-mapped and
 * cleared by sites_changed() whenever the engine replaces or removes a site
 * (adding one needs nothing: misses are never cached).  Saves the PyLong key
 * and the dict lookup, and the Site's attribute reads, on every event. */
#define SITE_SLOTS 4096

/* Fill `slot` with `code` and what the callbacks need of `site` (borrowed), or
 * with `code` alone when `site` is NULL (a code known to be no site).  A Site
 * never changes (it is replaced whole), so its attributes are read once, here.
 * Attribute reads of a Site run no Python code: the slot is still ours to fill
 * when they are done. */
static int
slot_fill(SiteSlot *slot, PyObject *code, PyObject *site, PyObject *guard, int borrow)
{
    PyObject *fast = NULL, *fn = NULL, *enter = NULL;
    int ret = 0;
    if (site == NULL && guard != NULL)
        fn = Py_NewRef(guard);
    if (site != NULL) {
        fast = PyObject_GetAttr(site, str_fast);
        fn = fast ? PyObject_GetAttr(site, str_fn) : NULL;
        enter = fn ? PyObject_GetAttr(site, str_enter) : NULL;
        PyObject *has_ret = enter ? PyObject_GetAttr(site, str_has_ret) : NULL;
        ret = has_ret ? PyObject_IsTrue(has_ret) : -1;
        Py_XDECREF(has_ret);
        if (ret < 0) {
            Py_XDECREF(enter);
            Py_XDECREF(fn);
            Py_XDECREF(fast);
            return -1;
        }
        if (fast == Py_None ||
            (Py_TYPE(fast) != &FuncRecorder_Type && Py_TYPE(fast) != &GraphRecorder_Type &&
             Py_TYPE(fast) != &ProfRecorder_Type))
            Py_CLEAR(fast);
    }
    /* The address alone is kept when the Function held here reports the code's
     * end (code_gone clears the slot before the address can be reused). */
    int strong = !(borrow && fn != NULL && fn_guards(fn, code));
    PyObject *oc = slot->strong ? slot->code : NULL, *os = slot->site, *of = slot->fast,
             *ofn = slot->fn, *oe = slot->enter;
    slot->code = strong ? Py_NewRef(code) : code;
    slot->strong = strong;
    slot->site = Py_XNewRef(site);
    slot->fast = fast;
    slot->fn = fn;
    slot->enter = enter;
    slot->has_ret = ret;
    Py_XDECREF(oc);
    Py_XDECREF(os);
    Py_XDECREF(of);
    Py_XDECREF(ofn);
    Py_XDECREF(oe);
    return 0;
}

/* Empty every slot of a table of `n`. */
static void
slots_free(SiteSlot *slots, size_t n)
{
    if (slots == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        SiteSlot *s = &slots[i];
        if (s->code == NULL)
            continue;
        PyObject *c = s->strong ? s->code : NULL, *site = s->site, *f = s->fast, *fn = s->fn,
                 *e = s->enter;
        s->code = s->site = s->fast = s->fn = s->enter = NULL;
        s->strong = 0;
        Py_XDECREF(c);
        Py_XDECREF(site);
        Py_XDECREF(f);
        Py_XDECREF(fn);
        Py_XDECREF(e);
    }
}

static int
slots_traverse(SiteSlot *slots, size_t n, visitproc visit, void *arg)
{
    if (slots != NULL) {
        for (size_t i = 0; i < n; i++) {
            if (slots[i].strong)
                Py_VISIT(slots[i].code);
            Py_VISIT(slots[i].site);
            Py_VISIT(slots[i].fast);
            Py_VISIT(slots[i].fn);
            Py_VISIT(slots[i].enter);
        }
    }
    return 0;
}

typedef struct {
    PyObject *site, *fast, *fn;  /* strong references, for one callback */
    PyObject *enter;             /* borrowed: the Site (held above) holds it */
    int has_ret;
} SiteRefs;

typedef struct {
    PyObject_HEAD
    SiteSlot *slots;
    PyObject *sites;        /* engine.sites: id(code) -> Site */
    PyObject *slow_start;   /* the Python PY_START callback (discovery) */
    PyObject *slow_resume;  /* the Python PY_RESUME callback */
    PyObject *exit_call;    /* engine.exit_call */
    PyObject *disable;      /* sys.monitoring.DISABLE */
    PyObject *ev_start, *ev_resume, *ev_throw, *ev_return, *ev_yield, *ev_unwind;
    int borrow;             /* slots is listed in code_tables */
} Dispatcher;

/* The six event names a backend passes (start, resume, throw, return, yield,
 * unwind), held in `slots`. */
static int
events_take(PyObject *events, PyObject **slots[6])
{
    if (!PyTuple_Check(events) || PyTuple_GET_SIZE(events) != 6) {
        PyErr_SetString(PyExc_ValueError,
                        "events: (start, resume, throw, return, yield, unwind)");
        return -1;
    }
    for (int i = 0; i < 6; i++)
        Py_XSETREF(*slots[i], Py_NewRef(PyTuple_GET_ITEM(events, i)));
    return 0;
}

static int
Dispatcher_init(Dispatcher *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sites", "slow_start", "slow_resume", "exit_call", "events",
                             "disable", NULL};
    PyObject *sites, *ss, *sr, *ec, *events, *disable;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOOO!O", kwlist, &PyDict_Type, &sites,
                                     &ss, &sr, &ec, &PyTuple_Type, &events, &disable))
        return -1;
    PyObject **ev[6] = {&self->ev_start, &self->ev_resume, &self->ev_throw,
                        &self->ev_return, &self->ev_yield, &self->ev_unwind};
    if (events_take(events, ev) < 0)
        return -1;
    if (self->slots == NULL) {
        self->slots = PyMem_Calloc(SITE_SLOTS, sizeof(SiteSlot));
        if (self->slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->borrow = code_table_add(self->slots, SITE_SLOTS, 0);
    }
    Py_XSETREF(self->sites, Py_NewRef(sites));
    Py_XSETREF(self->slow_start, Py_NewRef(ss));
    Py_XSETREF(self->slow_resume, Py_NewRef(sr));
    Py_XSETREF(self->exit_call, Py_NewRef(ec));
    Py_XSETREF(self->disable, Py_NewRef(disable));
    return 0;
}

static int
Dispatcher_traverse(Dispatcher *self, visitproc visit, void *arg)
{
    int r = slots_traverse(self->slots, SITE_SLOTS, visit, arg);
    if (r)
        return r;
    Py_VISIT(self->sites);
    Py_VISIT(self->slow_start);
    Py_VISIT(self->slow_resume);
    Py_VISIT(self->exit_call);
    return 0;
}

static int
Dispatcher_clear(Dispatcher *self)
{
    slots_free(self->slots, SITE_SLOTS);
    Py_CLEAR(self->sites);
    Py_CLEAR(self->slow_start);
    Py_CLEAR(self->slow_resume);
    Py_CLEAR(self->exit_call);
    Py_CLEAR(self->disable);
    Py_CLEAR(self->ev_start);
    Py_CLEAR(self->ev_resume);
    Py_CLEAR(self->ev_throw);
    Py_CLEAR(self->ev_return);
    Py_CLEAR(self->ev_yield);
    Py_CLEAR(self->ev_unwind);
    return 0;
}

static void
Dispatcher_dealloc(Dispatcher *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Dispatcher_clear(self);
    if (self->slots != NULL)
        code_table_remove(self->slots);
    PyMem_Free(self->slots);
    tp->tp_free((PyObject *)self);
}

/* Strong references to what a slot holds, for one event (the slot itself may
 * be refilled while Python code runs). */
static void
refs_take(SiteSlot *slot, SiteRefs *refs)
{
    refs->site = Py_NewRef(slot->site);
    refs->fast = Py_XNewRef(slot->fast);
    refs->fn = Py_NewRef(slot->fn);
    refs->enter = slot->enter;
    refs->has_ret = slot->has_ret;
}

/* The site of `code` with its recorder and Function, as new references in
 * *refs: 1 found, 0 no site, -1 error. */
static int
site_of(Dispatcher *self, PyObject *code, SiteRefs *refs)
{
    SiteSlot *slot = &self->slots[ptr_slot(code, SITE_SLOTS)];
    if (slot->code != code) {
        PyObject *key = PyLong_FromVoidPtr(code);
        if (key == NULL)
            return -1;
        PyObject *site = PyDict_GetItemWithError(self->sites, key);
        Py_DECREF(key);
        if (site == NULL)
            return PyErr_Occurred() ? -1 : 0;
        if (slot_fill(slot, code, site, NULL, self->borrow) < 0)
            return -1;
    }
    refs_take(slot, refs);
    return 1;
}

static void
refs_release(SiteRefs *refs)
{
    Py_DECREF(refs->site);
    Py_XDECREF(refs->fast);
    Py_DECREF(refs->fn);
}

/* An entry of a known site: the recorder when it may, else the Python trampoline. */
/* Where the traced code runs, for a recorder: its interpreter frame when that
 * is the running one (checked against the callback's code), else its frame
 * object.  0 when there is no frame at all. */
static int
where_for(Where *w, PyObject *code, unsigned long long *tsid)
{
    PyThreadState *ts = PyThreadState_Get();
    *tsid = (unsigned long long)PyThreadState_GetID(ts);
    w->frame = NULL;
    w->iframe = NULL;
#ifdef FNT_IFRAME
    fnt_iframe *f = iframe_current(ts);
    if (f != NULL && f->code == code) {
        w->iframe = f;
        return 1;
    }
#endif
    w->frame = PyEval_GetFrame();
    return w->frame != NULL;
}

/* An entry written by a site's recorder: 0 done (or nothing to write), -1 error. */
static int
recorder_entry(PyObject *fast, PyObject *fn, PyObject *code, Where *w, PyObject *event,
               unsigned long long tsid)
{
    if (Py_TYPE(fast) == &FuncRecorder_Type)
        return func_entry((FuncRecorder *)fast, fn, w, event, tsid);
    if (Py_TYPE(fast) == &GraphRecorder_Type)
        return graph_entry((GraphRecorder *)fast, fn, w, event, tsid);
    return prof_entry((ProfRecorder *)fast, fn, code, w, event, tsid);
}

/* Whether a site's recorder writes its exits itself (the function tracer's has none). */
static inline int
recorder_has_exit(PyObject *fast)
{
    return fast != NULL && Py_TYPE(fast) != &FuncRecorder_Type && ((Recorder *)fast)->ok;
}

static int
recorder_exit(PyObject *fast, PyObject *fn, PyObject *code, Where *w, PyObject *event,
              PyObject *value, PyObject *exc, unsigned long long tsid)
{
    if (Py_TYPE(fast) == &GraphRecorder_Type)
        return graph_exit((GraphRecorder *)fast, fn, w, event, value, exc, tsid);
    return prof_exit((ProfRecorder *)fast, fn, code, w, event, tsid);
}

/* KeyboardInterrupt raised while fntrace's code ran (the program's SIGINT
 * handler ran inside a repr or callback, or one raised it): the program gets it
 * at its next bytecode check, as without fntrace, with no fntrace frame in its
 * traceback (docs/exceptions.md).  Returns 1 when it took the error. */
static int
interrupt_later(void)
{
    if (!PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return 0;
    PyErr_Clear();
    PyThreadState_SetAsyncExc(PyThread_get_thread_ident(), PyExc_KeyboardInterrupt);
    return 1;
}

/* What a monitoring callback returns: NULL only for fntrace's own failures. */
static PyObject *
to_program(PyObject *r)
{
    if (r == NULL && interrupt_later())
        Py_RETURN_NONE;
    return r;
}

static PyObject *
dispatch_enter(SiteRefs *refs, PyObject *code, PyObject *event, PyObject *offset)
{
    PyObject *fast = refs->fast;
    if (fast != NULL && ((Recorder *)fast)->ok) {
        Where w;
        unsigned long long tsid;
        if (!where_for(&w, code, &tsid))
            Py_RETURN_NONE;
        int r = recorder_entry(fast, refs->fn, code, &w, event, tsid);
        if (r < 0 && recorder_failed((Recorder *)fast) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyFrameObject *frame = PyEval_GetFrame();  /* borrowed: the traced frame */
    if (frame == NULL)
        Py_RETURN_NONE;
    PyObject *args[4] = {refs->site, (PyObject *)frame, event, offset};
    return PyObject_Vectorcall(refs->enter, args, 4, NULL);
}

static PyObject *
dispatch_exit(Dispatcher *self, SiteRefs *refs, PyObject *code, PyObject *event,
              PyObject *offset, PyObject *value, PyObject *exc)
{
    PyObject *fast = refs->fast;
    if (recorder_has_exit(fast)) {
        Where w;
        unsigned long long tsid;
        if (!where_for(&w, code, &tsid))
            Py_RETURN_NONE;
        int r = recorder_exit(fast, refs->fn, code, &w, event, value, exc, tsid);
        if (r < 0 && recorder_failed((Recorder *)fast) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (!refs->has_ret)
        Py_RETURN_NONE;
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL)
        Py_RETURN_NONE;
    PyObject *args[6] = {refs->site, (PyObject *)frame, event, offset, value, exc};
    return PyObject_Vectorcall(self->exit_call, args, 6, NULL);
}

/* First look at unknown code (monitoring.py's discover_at): DISABLE or None
 * when it is no site, else its new site, whose entry is then dispatched here
 * as any other, so that a recorder writes it when it may (the Python
 * trampoline would leave an entry on the engine's shadow stack that the
 * recorder's exit never pops).  The site serves this event only: engine.sites
 * is the truth for the next one. */
static PyObject *
enter_first(Dispatcher *self, PyObject *const *args, PyObject *event, PyObject *slow)
{
    PyObject *site = PyObject_Vectorcall(slow, args, 2, NULL);
    if (site == NULL || site == Py_None || site == self->disable)
        return site;
    SiteSlot one = {0};
    SiteRefs refs;
    PyObject *r = NULL;
    if (slot_fill(&one, args[0], site, NULL, 0) == 0) {
        refs_take(&one, &refs);
        r = dispatch_enter(&refs, args[0], event, args[1]);
        refs_release(&refs);
    }
    slots_free(&one, 1);
    Py_DECREF(site);
    return r;
}

static PyObject *
enter_event(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
            PyObject *event, PyObject *slow)
{
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, "wrong number of arguments for a monitoring event");
        return NULL;
    }
    SiteRefs refs;
    int found = site_of(self, args[0], &refs);
    if (found < 0)
        return NULL;
    if (found > 0) {
        PyObject *r = dispatch_enter(&refs, args[0], event, args[1]);
        refs_release(&refs);
        return r;
    }
    if (slow == NULL)
        Py_RETURN_NONE;
    /* sys.monitoring holds no reference to a callback while it runs: another
     * thread may stop the backend (and free this dispatcher) while discover_at
     * runs Python code, so the dispatcher is held until it is done with. */
    Py_INCREF(self);
    PyObject *r = enter_first(self, args, event, slow);
    Py_DECREF(self);
    return r;
}

static PyObject *
Dispatcher_py_start(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    return to_program(enter_event(self, args, nargs, 2, self->ev_start, self->slow_start));
}

static PyObject *
Dispatcher_py_resume(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    return to_program(enter_event(self, args, nargs, 2, self->ev_resume, self->slow_resume));
}

static PyObject *
Dispatcher_py_throw(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    return to_program(enter_event(self, args, nargs, 3, self->ev_throw, NULL));
}

static PyObject *
exit_event(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs, PyObject *event,
           int is_unwind)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "callback(code, offset, value)");
        return NULL;
    }
    SiteRefs refs;
    int found = site_of(self, args[0], &refs);
    if (found <= 0)
        return found < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *r = is_unwind
        ? dispatch_exit(self, &refs, args[0], event, args[1], Py_None, args[2])
        : dispatch_exit(self, &refs, args[0], event, args[1], args[2], Py_None);
    refs_release(&refs);
    return r;
}

static PyObject *
Dispatcher_py_return(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    return to_program(exit_event(self, args, nargs, self->ev_return, 0));
}

static PyObject *
Dispatcher_py_yield(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    return to_program(exit_event(self, args, nargs, self->ev_yield, 0));
}

static PyObject *
Dispatcher_py_unwind(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    return to_program(exit_event(self, args, nargs, self->ev_unwind, 1));
}

static PyObject *
Dispatcher_sites_changed(Dispatcher *self, PyObject *unused)
{
    slots_free(self->slots, SITE_SLOTS);
    Py_RETURN_NONE;
}

static PyMethodDef Dispatcher_methods[] = {
    {"py_start", (PyCFunction)(void (*)(void))Dispatcher_py_start, METH_FASTCALL, NULL},
    {"py_resume", (PyCFunction)(void (*)(void))Dispatcher_py_resume, METH_FASTCALL, NULL},
    {"py_throw", (PyCFunction)(void (*)(void))Dispatcher_py_throw, METH_FASTCALL, NULL},
    {"py_return", (PyCFunction)(void (*)(void))Dispatcher_py_return, METH_FASTCALL, NULL},
    {"py_yield", (PyCFunction)(void (*)(void))Dispatcher_py_yield, METH_FASTCALL, NULL},
    {"py_unwind", (PyCFunction)(void (*)(void))Dispatcher_py_unwind, METH_FASTCALL, NULL},
    {"sites_changed", (PyCFunction)Dispatcher_sites_changed, METH_NOARGS,
     "A site was replaced or removed: forget the sites seen."},
    {NULL}
};

static PyTypeObject Dispatcher_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.Dispatcher",
    .tp_basicsize = sizeof(Dispatcher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The sys.monitoring callbacks of the monitoring backend, in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Dispatcher_init,
    .tp_dealloc = (destructor)Dispatcher_dealloc,
    .tp_traverse = (traverseproc)Dispatcher_traverse,
    .tp_clear = (inquiry)Dispatcher_clear,
    .tp_methods = Dispatcher_methods,
};

/* ------------------------------------------------------------------------- */
/* ProfileHook: the profile function of the 3.11 backend                      */
/* ------------------------------------------------------------------------- */

/* 3.11 has no per-code events: every call and return of every thread reaches
 * the profile function (backends/profile.py says how events are told apart).
 * In Python that function alone cost ~0.6 us per call of untraced code.  Here
 * it is a C Py_tracefunc: code known to be no site is dismissed by one slot
 * compare, a site whose recorder may write is recorded without any Python
 * frame, and everything else goes to the same Python pieces as before
 * (engine.discover, Site.enter, engine.exit_call).
 *
 * The slots cache both answers: a site (filled from engine.sites, the truth)
 * and "no site" (after discover said so).  Every change of the engine's
 * decisions reaches the hook (forget / clear), and a "no site" learnt while a
 * clear happened is not kept (the epoch). */
#if PY_VERSION_HEX < 0x030C0000
#define FNT_PROFILE_HOOK 1
#define HOOK_SLOTS 4096

typedef struct {
    PyObject_HEAD
    SiteSlot *slots;
    unsigned long long epoch;  /* bumped by every clear */
    PyObject *sites;           /* engine.sites: id(code) -> Site */
    PyObject *discover;        /* engine.discover(code, frame) -> Site | None */
    PyObject *exit_call;       /* engine.exit_call */
    PyObject *throws;          /* frame -> f_lasti of a THROW entry awaiting its exit */
    PyObject *fn_cache;        /* symbols._cache, for the guard of a "no site" (or NULL) */
    PyObject *ev_start, *ev_resume, *ev_throw, *ev_return, *ev_yield, *ev_unwind;
    int op_resume, op_return, op_yield;
    int borrow;                /* slots is listed in code_tables */
} ProfileHook;

static PyTypeObject ProfileHook_Type;

static int
ProfileHook_init(ProfileHook *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sites", "discover", "exit_call", "throws", "events",
                             "opcodes", "fn_cache", NULL};
    PyObject *sites, *discover, *ec, *throws, *events, *fn_cache = NULL;
    int op_resume, op_return, op_yield;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOO!O!(iii)|O!", kwlist, &PyDict_Type,
                                     &sites, &discover, &ec, &PyDict_Type, &throws,
                                     &PyTuple_Type, &events, &op_resume, &op_return,
                                     &op_yield, &PyDict_Type, &fn_cache))
        return -1;
    PyObject **ev[6] = {&self->ev_start, &self->ev_resume, &self->ev_throw,
                        &self->ev_return, &self->ev_yield, &self->ev_unwind};
    if (events_take(events, ev) < 0)
        return -1;
    if (self->slots == NULL) {
        self->slots = PyMem_Calloc(HOOK_SLOTS, sizeof(SiteSlot));
        if (self->slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->borrow = code_table_add(self->slots, HOOK_SLOTS, 0);
    }
    Py_XSETREF(self->fn_cache, Py_XNewRef(fn_cache));
    Py_XSETREF(self->sites, Py_NewRef(sites));
    Py_XSETREF(self->discover, Py_NewRef(discover));
    Py_XSETREF(self->exit_call, Py_NewRef(ec));
    Py_XSETREF(self->throws, Py_NewRef(throws));
    self->op_resume = op_resume;
    self->op_return = op_return;
    self->op_yield = op_yield;
    return 0;
}

static int
ProfileHook_traverse(ProfileHook *self, visitproc visit, void *arg)
{
    int r = slots_traverse(self->slots, HOOK_SLOTS, visit, arg);
    if (r)
        return r;
    Py_VISIT(self->sites);
    Py_VISIT(self->discover);
    Py_VISIT(self->exit_call);
    Py_VISIT(self->throws);
    Py_VISIT(self->fn_cache);
    return 0;
}

static int
ProfileHook_clear(ProfileHook *self)
{
    slots_free(self->slots, HOOK_SLOTS);
    self->epoch++;
    Py_CLEAR(self->sites);
    Py_CLEAR(self->discover);
    Py_CLEAR(self->exit_call);
    Py_CLEAR(self->throws);
    Py_CLEAR(self->fn_cache);
    Py_CLEAR(self->ev_start);
    Py_CLEAR(self->ev_resume);
    Py_CLEAR(self->ev_throw);
    Py_CLEAR(self->ev_return);
    Py_CLEAR(self->ev_yield);
    Py_CLEAR(self->ev_unwind);
    return 0;
}

static void
ProfileHook_dealloc(ProfileHook *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ProfileHook_clear(self);
    if (self->slots != NULL)
        code_table_remove(self->slots);
    PyMem_Free(self->slots);
    tp->tp_free((PyObject *)self);
}

/* The site of `code` in *refs (new references): 1 a site, 0 no site (or not
 * decided yet, when `discover` is 0), -1 error. */
static int
hook_site(ProfileHook *self, PyObject *code, PyFrameObject *frame, int discover,
          SiteRefs *refs)
{
    SiteSlot *slot = &self->slots[ptr_slot(code, HOOK_SLOTS)];
    if (slot->code == code) {
        if (slot->site == NULL)
            return 0;
        refs_take(slot, refs);
        return 1;
    }
    if (self->sites == NULL)
        return 0;
    PyObject *key = PyLong_FromVoidPtr(code);
    if (key == NULL)
        return -1;
    PyObject *site = PyDict_GetItemWithError(self->sites, key);
    Py_DECREF(key);
    if (site != NULL) {
        if (slot_fill(slot, code, site, NULL, self->borrow) < 0)
            return -1;
        refs_take(slot, refs);
        return 1;
    }
    if (PyErr_Occurred())
        return -1;
    if (!discover)
        return 0;
    unsigned long long epoch = self->epoch;
    PyObject *args[2] = {code, (PyObject *)frame};
    site = PyObject_Vectorcall(self->discover, args, 2, NULL);
    if (site == NULL)
        return -1;
    int found = site != Py_None;
    /* discover ran Python code: other threads may have used the slots and the
     * engine cleared them meanwhile.  A decision from before a clear serves
     * this event only (as the Python hook's generation test). */
    /* A "no site" keeps its code's Function, whose weak reference reports the
     * code's end (read without running Python code: see fn_guards). */
    PyObject *guard = NULL;
    if (!found && self->fn_cache != NULL) {
        PyObject *key = PyLong_FromVoidPtr(code);
        if (key == NULL) {
            Py_DECREF(site);
            return -1;
        }
        guard = PyDict_GetItemWithError(self->fn_cache, key);
        Py_DECREF(key);
        if (guard == NULL && PyErr_Occurred()) {
            Py_DECREF(site);
            return -1;
        }
    }
    SiteSlot one = {0};
    slot = epoch == self->epoch ? &self->slots[ptr_slot(code, HOOK_SLOTS)] : &one;
    int r = slot_fill(slot, code, found ? site : NULL, guard, slot == &one ? 0 : self->borrow);
    Py_DECREF(site);
    if (r == 0 && found)
        refs_take(slot, refs);
    slots_free(&one, 1);
    return r < 0 ? -1 : found;
}

/* Forget what is known of `code` (the engine patched or unpatched it). */
static PyObject *
ProfileHook_forget(ProfileHook *self, PyObject *code)
{
    if (self->slots != NULL) {
        SiteSlot *slot = &self->slots[ptr_slot(code, HOOK_SLOTS)];
        if (slot->code == code)
            slots_free(slot, 1);
    }
    Py_RETURN_NONE;
}

/* Forget every decision (sites replaced, or a selection that may grow). */
static PyObject *
ProfileHook_clear_method(ProfileHook *self, PyObject *unused)
{
    slots_free(self->slots, HOOK_SLOTS);
    self->epoch++;
    Py_RETURN_NONE;
}

/* The opcode at f_lasti and its argument; -1 when f_lasti is outside the code. */
static int
hook_opcode(PyObject *code, int lasti, int *oparg)
{
    PyObject *raw = PyCode_GetCode((PyCodeObject *)code);
    if (raw == NULL)
        return -2;
    int op = -1;
    if (lasti >= 0 && lasti + 1 < PyBytes_GET_SIZE(raw)) {
        const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(raw);
        op = b[lasti];
        *oparg = b[lasti + 1];
    }
    Py_DECREF(raw);
    return op;
}

static int
hook_call(ProfileHook *self, PyFrameObject *frame, PyObject *code)
{
    SiteRefs refs;
    int found = hook_site(self, code, frame, 1, &refs);
    if (found <= 0)
        return found;
    int lasti = PyFrame_GetLasti(frame), oparg = 0;
    int op = hook_opcode(code, lasti, &oparg);
    PyObject *event = self->ev_throw;
    if (op == -2)
        goto fail;
    if (op == self->op_resume)
        event = oparg ? self->ev_resume : self->ev_start;
    else if (refs.has_ret) {  /* else no exit pops it: it would keep the frame alive */
        PyObject *at = PyLong_FromLong(lasti);
        if (at == NULL || PyDict_SetItem(self->throws, (PyObject *)frame, at) < 0) {
            Py_XDECREF(at);
            goto fail;
        }
        Py_DECREF(at);
    }
    PyObject *fast = refs.fast;
    if (fast != NULL && ((Recorder *)fast)->ok) {
        Where w = {frame, NULL};
        unsigned long long tsid = (unsigned long long)PyThreadState_GetID(PyThreadState_Get());
        int rr = recorder_entry(fast, refs.fn, code, &w, event, tsid);
        if (rr < 0 && recorder_failed((Recorder *)fast) < 0)
            goto fail;
        refs_release(&refs);
        return 0;
    }
    PyObject *at = PyLong_FromLong(lasti);
    if (at == NULL)
        goto fail;
    PyObject *args[4] = {refs.site, (PyObject *)frame, event, at};
    PyObject *res = PyObject_Vectorcall(refs.enter, args, 4, NULL);
    Py_DECREF(at);
    if (res == NULL)
        goto fail;
    Py_DECREF(res);
    refs_release(&refs);
    return 0;
fail:
    refs_release(&refs);
    return -1;
}

static int
hook_return(ProfileHook *self, PyFrameObject *frame, PyObject *code, PyObject *value)
{
    SiteRefs refs;
    int found = hook_site(self, code, frame, 0, &refs);
    if (found <= 0)
        return found;
    if (!refs.has_ret) {
        refs_release(&refs);
        return 0;
    }
    int lasti = PyFrame_GetLasti(frame), oparg = 0;
    int op = hook_opcode(code, lasti, &oparg);
    if (op == -2)
        goto fail;
    long thrown = -1;
    if (PyDict_GET_SIZE(self->throws)) {
        PyObject *at = PyDict_GetItemWithError(self->throws, (PyObject *)frame);
        if (at != NULL) {
            thrown = PyLong_AsLong(at);
            if (PyDict_DelItem(self->throws, (PyObject *)frame) < 0)
                goto fail;
        } else if (PyErr_Occurred()) {
            goto fail;
        }
    }
    PyObject *event = self->ev_unwind;
    if (op == self->op_return)
        event = self->ev_return;
    else if (op == self->op_yield && !(thrown == lasti && value == Py_None))
        event = self->ev_yield;  /* else: a throw into this yield that ended the frame */
    else
        value = Py_None;  /* 3.11 does not give the exception of an unwinding frame */
    PyObject *fast = refs.fast;
    if (recorder_has_exit(fast)) {
        Where w = {frame, NULL};
        unsigned long long tsid = (unsigned long long)PyThreadState_GetID(PyThreadState_Get());
        if (recorder_exit(fast, refs.fn, code, &w, event, value, Py_None, tsid) < 0 &&
            recorder_failed((Recorder *)fast) < 0)
            goto fail;
        refs_release(&refs);
        return 0;
    }
    PyObject *at = PyLong_FromLong(lasti);
    if (at == NULL)
        goto fail;
    PyObject *args[6] = {refs.site, (PyObject *)frame, event, at, value, Py_None};
    PyObject *res = PyObject_Vectorcall(self->exit_call, args, 6, NULL);
    Py_DECREF(at);
    if (res == NULL)
        goto fail;
    Py_DECREF(res);
    refs_release(&refs);
    return 0;
fail:
    refs_release(&refs);
    return -1;
}

/* The Py_tracefunc.  Only Python calls and returns matter (C calls are
 * ignored, as by the Python hook).  A failure of fntrace itself must not
 * reach the traced program: it is reported as unraisable and the program goes
 * on; KeyboardInterrupt is raised again in the program (interrupt_later). */
static int
hook_func(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    if (what != PyTrace_CALL && what != PyTrace_RETURN)
        return 0;
    ProfileHook *self = (ProfileHook *)obj;
    if (self->slots == NULL || self->sites == NULL)
        return 0;
    /* held while Python code may run: another thread may uninstall the hook and
     * drop the last other reference meanwhile */
    Py_INCREF(obj);
    PyObject *code = (PyObject *)PyFrame_GetCode(frame);
    int r = what == PyTrace_CALL ? hook_call(self, frame, code)
                                 : hook_return(self, frame, code, arg ? arg : Py_None);
    Py_DECREF(code);
    if (r < 0 && interrupt_later())
        r = 0;
    if (r < 0) {
        r = PyErr_ExceptionMatches(PyExc_Exception) ? 0 : -1;
        if (r == 0)
            PyErr_WriteUnraisable(obj);
    }
    Py_DECREF(obj);
    return r;
}

/* Called as a Python profile function: threading.setprofile(hook) in a thread
 * that starts, or sys.setprofile(hook).  From then on the thread calls the C
 * function directly (same profile object, so sys.getprofile() is the hook). */
static PyObject *
ProfileHook_call(ProfileHook *self, PyObject *args, PyObject *kwds)
{
    PyObject *frame, *event, *arg;
    if (!PyArg_ParseTuple(args, "O!UO", &PyFrame_Type, &frame, &event, &arg))
        return NULL;
    PyEval_SetProfile(hook_func, (PyObject *)self);
    int what;
    if (PyUnicode_CompareWithASCIIString(event, "call") == 0)
        what = PyTrace_CALL;
    else if (PyUnicode_CompareWithASCIIString(event, "return") == 0)
        what = PyTrace_RETURN;
    else
        Py_RETURN_NONE;
    if (hook_func((PyObject *)self, (PyFrameObject *)frame, what, arg) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Every thread of the interpreter, this one included: profile function set.
 * (_PyEval_SetProfile runs the sys.setprofile audit hooks, if any.) */
static PyObject *
ProfileHook_install_all(ProfileHook *self, PyObject *unused)
{
    PyInterpreterState *interp = PyThreadState_GetInterpreter(PyThreadState_Get());
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        if (_PyEval_SetProfile(ts, hook_func, (PyObject *)self) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* Every thread whose profile function is this hook: none any more. */
static PyObject *
ProfileHook_uninstall_all(ProfileHook *self, PyObject *unused)
{
    PyInterpreterState *interp = PyThreadState_GetInterpreter(PyThreadState_Get());
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        if (ts->c_profileobj != (PyObject *)self)
            continue;
        if (_PyEval_SetProfile(ts, NULL, NULL) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef ProfileHook_methods[] = {
    {"forget", (PyCFunction)ProfileHook_forget, METH_O,
     "The engine patched or unpatched this code: decide it again."},
    {"clear", (PyCFunction)ProfileHook_clear_method, METH_NOARGS,
     "Forget every decision (sites replaced, or the selection may grow)."},
    {"install_all", (PyCFunction)ProfileHook_install_all, METH_NOARGS,
     "Make this hook the profile function of every thread, this one included."},
    {"uninstall_all", (PyCFunction)ProfileHook_uninstall_all, METH_NOARGS,
     "Remove this hook from every thread that has it."},
    {NULL}
};

static PyTypeObject ProfileHook_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.ProfileHook",
    .tp_basicsize = sizeof(ProfileHook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The profile function of the 3.11 backend, in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ProfileHook_init,
    .tp_dealloc = (destructor)ProfileHook_dealloc,
    .tp_traverse = (traverseproc)ProfileHook_traverse,
    .tp_clear = (inquiry)ProfileHook_clear,
    .tp_call = (ternaryfunc)ProfileHook_call,
    .tp_methods = ProfileHook_methods,
};
#endif

/* ------------------------------------------------------------------------- */

#ifdef FNT_IFRAME
static PyObject *
frame_key(PyObject *module, PyObject *frame)
{
    if (!PyFrame_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "frame_key() needs a frame");
        return NULL;
    }
    return PyLong_FromVoidPtr(((fnt_frameobject *)frame)->f_frame);
}
#elif defined(FNT_PROFILE_HOOK)
/* 3.11: the profile hook has the frame object of every call, alive until the
 * call ends: function_graph keys a frame by its address. */
static PyObject *
frame_key(PyObject *module, PyObject *frame)
{
    if (!PyFrame_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "frame_key() needs a frame");
        return NULL;
    }
    return PyLong_FromVoidPtr(frame);
}
#endif

/* ------------------------------------------------------------------------- */
/* The mirror's self-check                                                    */
/* ------------------------------------------------------------------------- */

/* The interpreter frame behind `frame` read through this file's mirror of
 * CPython's layout, against what the interpreter itself says of it: its code,
 * function, globals, frame object, owner, instruction offset, previous frame
 * and the values of its first locals (`args`).  The caller passes its own
 * running frame (fntrace.core.accel does, at import), so the frame is also the
 * thread's current one.  None when everything agrees, else a one-line text
 * saying what does not: fntrace then keeps to its pure-Python path.  Every
 * read stays inside the memory the mirror says the frame has, and pointers
 * are compared before they are followed. */
static PyObject *
check_frame(PyObject *module, PyObject *args)
{
    PyObject *frame, *func, *values;
    int owner;
    if (!PyArg_ParseTuple(args, "O!OO!i", &PyFrame_Type, &frame, &func, &PyTuple_Type,
                          &values, &owner))
        return NULL;
#if defined(FNT_IFRAME) || defined(FNT_IFRAME311)
    PyCodeObject *code = PyFrame_GetCode((PyFrameObject *)frame);
    PyFrameObject *back = PyFrame_GetBack((PyFrameObject *)frame);
    PyObject *globals = PyFrame_GetGlobals((PyFrameObject *)frame);
    const char *bad = NULL;
    int lasti = PyFrame_GetLasti((PyFrameObject *)frame);
#ifdef FNT_IFRAME
    fnt_iframe *f = ((fnt_frameobject *)frame)->f_frame;
    fnt_iframe *cur = iframe_current(PyThreadState_Get());
    if (f == NULL)
        bad = "no interpreter frame behind the frame object";
    else if (f != cur)
        bad = "the frame object's interpreter frame is not the thread's current frame";
    else if (f->code != (PyObject *)code)
        bad = "code";
    else if (f->frame_obj != (PyFrameObject *)frame)
        bad = "frame object";
    else if (f->funcobj != func)
        bad = "function";
    else if (f->globals != globals)
        bad = "globals";
    else if (f->owner != owner)
        bad = "owner";
    else if ((char *)f->instr - (char *)code->co_code_adaptive != lasti)
        bad = "instruction offset";
    else {
        fnt_iframe *p = f->previous;
        while (p != NULL && p->owner == FNT_OWNED_BY_CSTACK)
            p = p->previous;
        PyObject *want = back != NULL ? (PyObject *)PyFrame_GetCode(back) : NULL;
        if ((p == NULL) != (want == NULL) || (p != NULL && p->code != want))
            bad = "previous frame";
        Py_XDECREF(want);
    }
#else
    fnt_iframe311 *f = ((fnt_frameobject311 *)frame)->f_frame;
    PyThreadState *ts = PyThreadState_Get();
    void *cur = ts->cframe != NULL ? (void *)ts->cframe->current_frame : NULL;
    if (f == NULL)
        bad = "no interpreter frame behind the frame object";
    else if ((void *)f != cur)  /* compared before it is followed */
        bad = "the frame object's interpreter frame is not the thread's current frame";
    else if (f->code != (PyObject *)code)
        bad = "code";
    else if (f->frame_obj != (PyFrameObject *)frame)
        bad = "frame object";
    else if (f->func != func)
        bad = "function";
    else if (f->globals != globals)
        bad = "globals";
    else if (f->owner != owner)
        bad = "owner";
    else if ((char *)f->prev_instr - (char *)code->co_code_adaptive != lasti)
        bad = "instruction offset";
    else {
        fnt_iframe311 *p = (fnt_iframe311 *)f->previous;
        /* 3.11 has no C-stack-owned frames: the previous frame is the caller's */
        PyObject *want = back != NULL ? (PyObject *)PyFrame_GetCode(back) : NULL;
        if ((p == NULL) != (want == NULL) || (p != NULL && p->code != want))
            bad = "previous frame";
        Py_XDECREF(want);
    }
#endif
    if (bad == NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(values); i++) {
            if (i >= code->co_nlocalsplus || f->localsplus[i] != PyTuple_GET_ITEM(values, i)) {
                bad = "locals";
                break;
            }
        }
    }
    Py_DECREF(code);
    Py_XDECREF(back);
    Py_DECREF(globals);
    if (bad != NULL)
        return PyUnicode_FromFormat("the C extension's view of CPython's frames does not "
                                    "match this interpreter (%s)", bad);
    Py_RETURN_NONE;
#else
    return PyUnicode_FromString("no frame mirror for this Python version");
#endif
}

static PyMethodDef speedups_functions[] = {
    {"local_clock", (PyCFunction)local_clock, METH_NOARGS,
     "The \"local\" trace clock in ns: the TSC scaled and anchored on CLOCK_MONOTONIC "
     "where the kernel uses the TSC, else CLOCK_MONOTONIC; never goes backwards."},
    {"check_frame", (PyCFunction)check_frame, METH_VARARGS,
     "check_frame(frame, function, first_locals, owner): None when the C mirror reads "
     "this running frame as the interpreter does, else what differs."},
    {"code_gone", (PyCFunction)code_gone, METH_O,
     "symbols' report that the code object at this address (its id) is being freed."},
    {"holds_code", (PyCFunction)holds_code, METH_O,
     "Whether a per-code table has this address (id of a code object)."},
    {"forget_codes", (PyCFunction)forget_codes, METH_NOARGS,
     "Every per-code table forgets every code (symbols.clear)."},
    {"take_all", (PyCFunction)take_all, METH_O,
     "Consume every event of these buffers, merged in time order (BufferSet.consume)."},
    {"encode_buffers", (PyCFunction)encode_buffers, METH_VARARGS,
     "Consume these buffers and encode their events as one chunk, in one pass."},
#if defined(FNT_IFRAME) || defined(FNT_PROFILE_HOOK)
    {"frame_key", (PyCFunction)frame_key, METH_O,
     "function_graph's stack key of a running frame (the address of its interpreter "
     "frame, or on 3.11 of its frame object)."},
#endif
    {NULL}
};

#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return -1;

static int speedups_exec(PyObject *m);

/* Multi-phase initialisation, so the module can say what it is: it keeps
 * process-wide state in C statics (one interpreter only) and is not safe to
 * run without the GIL (free-threaded builds re-enable the GIL on import). */
static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, (void *)speedups_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL}
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "fntrace._speedups",
    "fntrace's optional C hot path (see the comment at the top of _speedups.c).", 0,
    speedups_functions, speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}

static int
speedups_exec(PyObject *m)
{
    INTERN(str_fast, "fast");
    INTERN(str_enter, "enter");
    INTERN(str_has_ret, "has_ret");
    INTERN(str_fn, "fn");
    INTERN(str_live, "live");
    INTERN(str_local, "local");
    INTERN(str_buf, "buf");
    INTERN(str_new_buffer, "new_buffer");
    INTERN(str_stack, "stack");
    INTERN(str_clock, "clock");
    INTERN(str_write, "write");
    INTERN(str_F, "F");
    INTERN(str_name, "name");
    INTERN(str_code, "code");
    INTERN(str_code_ref, "code_ref");
    INTERN(str_co_flags, "co_flags");
    INTERN(str_tid, "tid");
    INTERN(str_cpu, "cpu");
    INTERN(str_thread_flags, "thread_flags");
    INTERN(str_E, "E");
    INTERN(str_state, "state");
    INTERN(str_max_len, "max_len");
    INTERN(str_empty, "");
    INTERN(str_comma, ", ");
    INTERN(str_X, "X");
    PyObject *time_mod = PyImport_ImportModule("time");
    if (time_mod == NULL)
        return -1;
    perf_counter_ns = PyObject_GetAttrString(time_mod, "perf_counter_ns");
    monotonic_ns = PyObject_GetAttrString(time_mod, "monotonic_ns");
    time_ns = PyObject_GetAttrString(time_mod, "time_ns");
    Py_DECREF(time_mod);
    if (perf_counter_ns == NULL || monotonic_ns == NULL || time_ns == NULL)
        return -1;
    if (PyType_Ready(&EventQueue_Type) < 0 || PyType_Ready(&GraphStack_Type) < 0 ||
        PyType_Ready(&RingCore_Type) < 0 || PyType_Ready(&FuncRecorder_Type) < 0 ||
        PyType_Ready(&GraphRecorder_Type) < 0 || PyType_Ready(&Dispatcher_Type) < 0 ||
        PyType_Ready(&ProfThread_Type) < 0 || PyType_Ready(&ProfRecorder_Type) < 0)
        return -1;
#ifdef FNT_PROFILE_HOOK
    if (PyType_Ready(&ProfileHook_Type) < 0)
        return -1;
#endif
    local_clock_fn = PyObject_GetAttrString(m, "local_clock");
    if (local_clock_fn == NULL)
        return -1;
    if (PyModule_AddObjectRef(m, "EventQueue", (PyObject *)&EventQueue_Type) < 0 ||
        PyModule_AddObjectRef(m, "GraphStack", (PyObject *)&GraphStack_Type) < 0 ||
        PyModule_AddObjectRef(m, "RingCore", (PyObject *)&RingCore_Type) < 0 ||
        PyModule_AddObjectRef(m, "FuncRecorder", (PyObject *)&FuncRecorder_Type) < 0 ||
        PyModule_AddObjectRef(m, "GraphRecorder", (PyObject *)&GraphRecorder_Type) < 0 ||
        PyModule_AddObjectRef(m, "Dispatcher", (PyObject *)&Dispatcher_Type) < 0 ||
        PyModule_AddObjectRef(m, "ProfThread", (PyObject *)&ProfThread_Type) < 0 ||
        PyModule_AddObjectRef(m, "ProfRecorder", (PyObject *)&ProfRecorder_Type) < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(m, "FRAME_ARGS", FNT_FRAME_ARGS) < 0) {
        return -1;
    }
#ifdef FNT_PROFILE_HOOK
    if (PyModule_AddObjectRef(m, "ProfileHook", (PyObject *)&ProfileHook_Type) < 0) {
        return -1;
    }
#endif
    return 0;
}
#endif  /* 3.11-3.13 */
