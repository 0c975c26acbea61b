/* ring.c: a thread's ring buffer in C - its event queue and its counters.
 *
 * Why: RingCore is the base class of ring_buffer.ThreadBuffer, byte-for-byte
 * the semantics of the pure-Python _PyRingCore (write(), overwrite, the
 * no-loss hook, the counters), and the place the recorders write their
 * packed events.  EventQueue is its FIFO of events, read from Python like
 * the deque of tuples the pure-Python path keeps.  The Event-string table
 * the packed events index is here too.
 */
#include "ring.h"

#ifdef FNT_HOT_PATH

PyObject *fnt_event_names[FNT_MAX_EVENT_NAMES];
int fnt_n_event_names;
PyObject *fnt_task_tag, *fnt_task_prefix;

int
fnt_event_code_add(PyObject *event)
{
    if (fnt_n_event_names == FNT_MAX_EVENT_NAMES) {
        PyErr_SetString(PyExc_RuntimeError, "too many distinct event names");
        return -1;
    }
    fnt_event_names[fnt_n_event_names] = Py_NewRef(event);
    return fnt_n_event_names++;
}

/* ------------------------------------------------------------------------- */
/* EventQueue: a thread buffer's events                                       */
/* ------------------------------------------------------------------------- */

/* A FIFO of events that reads like the deque of tuples the pure-Python path
 * keeps (append, popleft, len, [i], iteration, clear). */
typedef fnt_EventQueue EventQueue;
typedef fnt_slot Slot;

static inline Py_ssize_t
qidx(EventQueue *q, Py_ssize_t i)
{
    Py_ssize_t k = q->head + i;
    return k >= q->cap ? k - q->cap : k;
}

static PyTypeObject EventQueue_Type;

int
fnt_slot_size(Slot *s, long long *size)
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
PyObject *
fnt_slot_event(Slot *s)
{
    if (s->kind == 0)
        return Py_NewRef(s->obj);
    PyObject *ts = PyLong_FromLongLong(s->ts);
    PyObject *size = PyLong_FromLongLong(s->size);
    if (s->kind == EVENT_TAG_TASK) {
        PyObject *t = ts && size ? PyTuple_Pack(TASK_LEN, ts, size, fnt_task_tag, s->obj) : NULL;
        Py_XDECREF(ts);
        Py_XDECREF(size);
        return t;
    }
    PyObject *event = fnt_event_names[s->evcode];
    PyObject *kind = s->kind == EVENT_TAG_CALL    ? fnt_st->str_F
                     : s->kind == EVENT_TAG_ENTRY ? fnt_st->str_E
                                                  : fnt_st->str_X;
    PyObject *t = NULL;
    if (ts != NULL && size != NULL) {
        if (s->kind == EVENT_TAG_CALL) {
            t = PyTuple_Pack(7, ts, size, kind, s->obj, s->aux, Py_None, event);
        } else {
            PyObject *depth = PyLong_FromLongLong(s->depth);
            if (depth != NULL && s->kind == EVENT_TAG_ENTRY) {
                t = PyTuple_Pack(7, ts, size, kind, s->obj, depth, s->aux ? s->aux : Py_None,
                                 event);
            } else if (depth != NULL) {
                PyObject *dur = PyLong_FromLongLong(s->duration);
                if (dur != NULL)
                    t = PyTuple_Pack(8, ts, size, kind, s->obj, depth, dur, event,
                                     s->aux ? s->aux : Py_None);
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
int
fnt_queue_take(EventQueue *q, Slot *out)
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
        fnt_queue_take(q, &s);
        fnt_slot_release(&s);
    }
}

static void
EventQueue_dealloc(EventQueue *q)
{
    queue_clear_all(q);
    PyMem_Free(q->slots);
    PyMem_Free(q->spare);
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
    if (fnt_queue_take(q, &s) < 0)
        return NULL;
    PyObject *ev = fnt_slot_event(&s);
    fnt_slot_release(&s);
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
    return fnt_slot_event(&q->slots[qidx(q, i)]);
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
        PyObject *ev = fnt_slot_event(&q->slots[qidx(q, i)]);
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

typedef fnt_RingCore RingCore;

/* After overwrite or on_full changed. */
static void
ring_cheap_update(RingCore *self)
{
    self->cheap_overwrite = (char)(self->overwrite && self->on_full == Py_None);
}

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
    ring_cheap_update(self);
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
    self->cheap_overwrite = 0;
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
    return fnt_slot_size(&s, size);
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
            ring_cheap_update(self);
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
        fnt_queue_take(q, &old);
        long long osize;
        int bad = fnt_slot_size(&old, &osize);
        fnt_slot_release(&old);
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
int
fnt_ring_write_slot(RingCore *self, Slot *s)
{
    int r = ring_room(self, s->size);
    if (r <= 0 || self->events == NULL || queue_push(self->events, s) < 0) {
        fnt_slot_release(s);
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
    return fnt_ring_write_slot(self, &s);
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
    ring_cheap_update(self);
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
    ring_cheap_update(self);
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

PyTypeObject fnt_RingCore_Type = {
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

int
fnt_ring_add_types(PyObject *m)
{
    if (fnt_add_type(m, &EventQueue_Type, "EventQueue") < 0 ||
        fnt_add_type(m, &fnt_RingCore_Type, "RingCore") < 0)
        return -1;
    return 0;
}

#endif  /* FNT_HOT_PATH */
