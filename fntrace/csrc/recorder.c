/* recorder.c: the recorders' common part - binding to a ring buffer, its
 * clock and this thread's buffer, the pid filter, failure reporting.
 *
 * Why: the function, graph and profile recorders write events the same way
 * and fail the same way (a failure is counted on the ops, never raised to the
 * traced program).  The per-event fast paths are inline in recorder.h; this
 * file has what runs once per thread, per ring change or per failure.
 */
#include "recorder.h"

#ifdef FNT_HOT_PATH

PyObject *
fnt_recorder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *self = PyType_GenericNew(type, args, kwds);
    if (self != NULL)
        ((fnt_recorder *)self)->ops = ((fnt_recorder_type *)type)->ops;
    return self;
}

int
fnt_recorder_traverse_common(fnt_recorder *self, visitproc visit, void *arg)
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

void
fnt_recorder_clear_common(fnt_recorder *self)
{
    Py_CLEAR(self->rb);
    Py_CLEAR(self->report);
    Py_CLEAR(self->pid_check);
    Py_CLEAR(self->pid_seen);
    Py_CLEAR(self->clock_fn);
    Py_CLEAR(self->c_live);
    Py_CLEAR(self->c_buf);
    self->hot_tsid = 0;
}

int
fnt_recorder_bind(fnt_recorder *self, PyObject *rb)
{
    Py_XSETREF(self->rb, Py_NewRef(rb));
    Py_XSETREF(self->report, Py_NewRef(Py_None));
    self->ok = 0;
    self->tracing = 1;
    self->ring_valid = 0;
    self->hot_tsid = 0;
    return 0;
}

/* The ring's clock and live buffer set, read again after ring_changed(). */
int
fnt_recorder_ring(fnt_recorder *self)
{
    if (self->ring_valid)
        return 0;
    PyObject *clock = PyObject_GetAttr(self->rb, fnt_st->str_clock);
    if (clock == NULL)
        return -1;
    PyObject *live = PyObject_GetAttr(self->rb, fnt_st->str_live);
    if (live == NULL) {
        Py_DECREF(clock);
        return -1;
    }
#ifdef __linux__
    int mono = clock == fnt_st->perf_counter_ns || clock == fnt_st->monotonic_ns;
#else
    int mono = clock == fnt_st->perf_counter_ns;
#endif
    self->clock_native = mono ? 1
                       : clock == fnt_st->local_clock_fn ? 2
                       : clock == fnt_st->time_ns        ? 3
                                                         : 0;
    Py_XSETREF(self->clock_fn, clock);
    Py_CLEAR(self->c_buf);
    self->hot_tsid = 0;
    Py_XSETREF(self->c_live, live);
    self->ring_valid = 1;
    return 0;
}

/* A clock read in Python (any other the ring was given). */
int
fnt_recorder_call_clock(fnt_recorder *self, long long *now)
{
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
recorder_buffer(fnt_recorder *self, unsigned long long tsid)
{
    if (fnt_recorder_ring(self) < 0)
        return NULL;
    if (self->c_buf != NULL && self->c_tsid == tsid)
        return Py_NewRef(self->c_buf);
    PyObject *live = Py_NewRef(self->c_live);
    PyObject *local = PyObject_GetAttr(live, fnt_st->str_local);
    PyObject *buf = NULL;
    if (local != NULL) {
        buf = PyObject_GetAttr(local, fnt_st->str_buf);
        Py_DECREF(local);
        if (buf == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            buf = PyObject_CallMethodNoArgs(live, fnt_st->str_new_buffer);
        }
    }
    if (buf == NULL) {
        Py_DECREF(live);
        return NULL;
    }
    Py_XSETREF(self->c_live, live);  /* steals live */
    self->hot_tsid = 0;
    Py_XSETREF(self->c_buf, Py_NewRef(buf));
    self->c_tsid = tsid;
    self->c_is_ring = PyObject_TypeCheck(buf, &fnt_RingCore_Type);
    return buf;
}

/* After a write by thread `tsid`: it becomes the hot thread (hot_tsid) when
 * its events may take the fast path with no other test - the pid filter lets
 * it be traced, the ring's state is read and its buffer is the cached ring.
 * Every change to one of those sets hot_tsid to 0 (no thread: thread ids
 * start at 1). */
void
fnt_recorder_warm(fnt_recorder *self, unsigned long long tsid)
{
    int pid_ok = self->pid_check == NULL || self->pid_check == Py_None ||
                 (self->p_valid && self->p_tsid == tsid && self->p_allowed == 1);
    if (tsid != 0 && pid_ok && self->ring_valid && self->c_buf != NULL &&
        self->c_tsid == tsid && self->c_is_ring)
        self->hot_tsid = tsid;
}

/* fnt_recorder_write when this thread's buffer is not the cached ring. */
int
fnt_recorder_write_slow(fnt_recorder *self, fnt_slot *slot, unsigned long long tsid)
{
    PyObject *buf = recorder_buffer(self, tsid);
    if (buf == NULL) {
        fnt_slot_release(slot);
        return -1;
    }
    int r;
    if (buf == self->c_buf ? self->c_is_ring : PyObject_TypeCheck(buf, &fnt_RingCore_Type)) {
        r = fnt_ring_write_slot((fnt_RingCore *)buf, slot);
        if (r >= 0)
            fnt_recorder_warm(self, tsid);
    } else {
        PyObject *event = fnt_slot_event(slot);
        fnt_slot_release(slot);
        PyObject *res = event ? PyObject_CallMethodOneArg(buf, fnt_st->str_write, event) : NULL;
        r = res == NULL ? -1 : 0;
        Py_XDECREF(res);
        Py_XDECREF(event);
    }
    Py_DECREF(buf);
    return r < 0 ? -1 : 0;
}

/* A failure inside a recorder: counted on the ops, never raised to the program
 * (SystemExit included).  KeyboardInterrupt goes on, to be raised again in the
 * program (fnt_interrupt_later). */
int
fnt_recorder_failed(fnt_recorder *self)
{
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return -1;
    PyObject *exc = fnt_take_exception();
    if (self->report != NULL && self->report != Py_None) {
        PyObject *r = PyObject_CallOneArg(self->report, exc);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    Py_DECREF(exc);
    return 0;
}

/* KeyboardInterrupt raised while fntrace's code ran (the program's SIGINT
 * handler ran inside a repr or callback, or one raised it): the program gets it
 * at its next bytecode check, as without fntrace, with no fntrace frame in its
 * traceback (docs/exceptions.md).  Returns 1 when it took the error. */
int
fnt_interrupt_later(void)
{
    if (!PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return 0;
    PyErr_Clear();
    PyThreadState_SetAsyncExc(PyThread_get_thread_ident(), PyExc_KeyboardInterrupt);
    return 1;
}

/* The pid filter's answer for a thread not decided yet: pid_check() (Python,
 * run in the thread itself) decides once per thread. */
int
fnt_recorder_pid_decide(fnt_recorder *self, unsigned long long tsid)
{
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

PyObject *
fnt_tls_object_slow(fnt_tls_cache *cache, PyObject *tls, PyObject *attr, PyObject *make,
                    int store, PyTypeObject *type, int create, unsigned long long tsid)
{
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

/* ------------------------------------------------------------------------- */
/* Python's view of the head                                                  */
/* ------------------------------------------------------------------------- */

#define REC(o) ((fnt_recorder *)(o))

PyObject *
fnt_recorder_get_ok(PyObject *self, void *closure)
{
    return PyBool_FromLong(REC(self)->ok);
}

int
fnt_recorder_set_ok(PyObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete ok");
        return -1;
    }
    int t = PyObject_IsTrue(value);
    if (t < 0)
        return -1;
    REC(self)->ok = t;
    return 0;
}

PyObject *
fnt_recorder_get_pid_check(PyObject *self, void *closure)
{
    return Py_NewRef(REC(self)->pid_check ? REC(self)->pid_check : Py_None);
}

int
fnt_recorder_set_pid_check(PyObject *self, PyObject *value, void *closure)
{
    /* The same callable again (the tracer refreshes every setting at once):
     * the filter did not change, the threads' answers stand.  Another one is
     * a new pid filter (Instance.pid_check makes one per generation, and a
     * forked child a new generation): every thread is decided again. */
    PyObject *check = value ? value : Py_None;
    if (check == REC(self)->pid_check)
        return 0;
    Py_XSETREF(REC(self)->pid_check, Py_NewRef(check));
    Py_CLEAR(REC(self)->pid_seen);
    REC(self)->p_valid = 0;
    REC(self)->hot_tsid = 0;
    return 0;
}

PyObject *
fnt_recorder_get_tracing(PyObject *self, void *closure)
{
    return PyBool_FromLong(REC(self)->tracing);
}

int
fnt_recorder_set_tracing(PyObject *self, PyObject *value, void *closure)
{
    int t = value ? PyObject_IsTrue(value) : 0;
    if (t < 0)
        return -1;
    REC(self)->tracing = t;
    return 0;
}

PyObject *
fnt_recorder_ring_changed(PyObject *self, PyObject *unused)
{
    REC(self)->ring_valid = 0;
    REC(self)->hot_tsid = 0;
    Py_CLEAR(REC(self)->c_buf);
    Py_RETURN_NONE;
}

PyObject *
fnt_recorder_get_report(PyObject *self, void *closure)
{
    return Py_NewRef(REC(self)->report ? REC(self)->report : Py_None);
}

int
fnt_recorder_set_report(PyObject *self, PyObject *value, void *closure)
{
    Py_XSETREF(REC(self)->report, Py_NewRef(value ? value : Py_None));
    return 0;
}

#endif  /* FNT_HOT_PATH */
