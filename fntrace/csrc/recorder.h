/* recorder.h: what every recorder shares - its head, its vtable, and the
 * inline fast paths of writing an event.
 *
 * Why: a recorder (func_recorder.c, graph_recorder.c, prof_recorder.c) is the
 * C twin of a tracer's entry/exit callbacks.  The dispatchers know recorders
 * only through this head: they call ops->entry and ops->exit, and a recorder
 * type is recognised by its tp_new (fnt_recorder_new).  The per-event steps
 * every recorder takes (the pid filter's answer for this thread, the clock,
 * the write into this thread's ring) are inline here with their slow paths in
 * recorder.c, so an event costs no call into another file for them.
 */
#ifndef FNT_RECORDER_H
#define FNT_RECORDER_H

#include "ring.h"
#include "clock.h"

/* Where a callback runs.  On 3.12 and 3.13 the running interpreter frame
 * (cpython_internals.h) when the dispatcher has it; a frame object only when
 * needed.  A frame is keyed by its interpreter frame's address (frame_key()
 * gives the same key from a frame object, for the Python path); on 3.11 by
 * its frame object's. */
typedef struct {
    PyFrameObject *frame;  /* borrowed; fetched only when needed if iframe is set */
    void *iframe;          /* the running interpreter frame, or NULL */
    int ev1;               /* the event's code (fnt_event_code) + 1 when the
                            * dispatcher knows it, else 0 */
} fnt_where;

/* The code of the callback's event: the dispatcher's when it gave one (its
 * events are coded once), else looked up. */
static inline int
fnt_where_evcode(fnt_where *w, PyObject *event)
{
    return w->ev1 > 0 ? w->ev1 - 1 : fnt_event_code(event);
}

static inline PyFrameObject *
fnt_where_frame(fnt_where *w)
{
    if (w->frame == NULL)
        w->frame = PyEval_GetFrame();
    return w->frame;
}

/* The key of the running frame. */
static inline void *
fnt_where_key(fnt_where *w)
{
#ifdef FNT_IFRAME
    if (w->iframe != NULL)
        return w->iframe;
    PyFrameObject *f = fnt_where_frame(w);
    return f ? (void *)fnt_frame_iframe(f) : NULL;
#else
    return (void *)fnt_where_frame(w);
#endif
}

struct fnt_recorder;

/* A recorder type's entry and exit: 0 done (or nothing to write), -1 error. */
typedef struct {
    int (*entry)(struct fnt_recorder *self, PyObject *fn, PyObject *code, fnt_where *w,
                 PyObject *event, unsigned long long tsid);
    /* NULL: the recorder writes no exits (the function tracer's) */
    int (*exit)(struct fnt_recorder *self, PyObject *fn, PyObject *code, fnt_where *w,
                PyObject *event, PyObject *value, PyObject *exc, unsigned long long tsid);
} fnt_recorder_ops;

#define FNT_RECORDER_HEAD                                          \
    PyObject_HEAD                                                  \
    const fnt_recorder_ops *ops; /* set by fnt_recorder_new */     \
    PyObject *rb;                                                  \
    PyObject *report;                                              \
    PyObject *pid_check;                                           \
    PyObject *pid_seen;                                            \
    unsigned long long p_tsid;                                     \
    int p_valid, p_allowed;                                        \
    int ok;                                                        \
    int tracing;                                                   \
    int ring_valid;                                                \
    int clock_native;                                              \
    int c_is_ring;                                                 \
    PyObject *clock_fn;                                            \
    unsigned long long c_tsid;                                     \
    PyObject *c_live;                                              \
    PyObject *c_buf;                                               \
    unsigned long long hot_tsid;

typedef struct fnt_recorder {
    FNT_RECORDER_HEAD
} fnt_recorder;

/* A recorder type: a static type that carries its ops. */
typedef struct {
    PyTypeObject type;
    const fnt_recorder_ops *ops;
} fnt_recorder_type;

/* Every recorder type's tp_new: sets the instance's ops from its type. */
FNT_HIDDEN PyObject *fnt_recorder_new(PyTypeObject *type, PyObject *args, PyObject *kwds);

/* Whether `o` is a recorder (recorder types are final: no subclasses). */
static inline int
fnt_is_recorder(PyObject *o)
{
    return Py_TYPE(o)->tp_new == fnt_recorder_new;
}

/* An entry written by a site's recorder (through its type's ops): 0 done (or
 * nothing to write), -1 error. */
static inline int
fnt_recorder_entry(PyObject *fast, PyObject *fn, PyObject *code, fnt_where *w,
                   PyObject *event, unsigned long long tsid)
{
    fnt_recorder *r = (fnt_recorder *)fast;
    return r->ops->entry(r, fn, code, w, event, tsid);
}

/* Whether a site's recorder writes its exits itself (the function tracer's has none). */
static inline int
fnt_recorder_has_exit(PyObject *fast)
{
    return fast != NULL && ((fnt_recorder *)fast)->ops->exit != NULL &&
           ((fnt_recorder *)fast)->ok;
}

static inline int
fnt_recorder_exit(PyObject *fast, PyObject *fn, PyObject *code, fnt_where *w, PyObject *event,
                  PyObject *value, PyObject *exc, unsigned long long tsid)
{
    fnt_recorder *r = (fnt_recorder *)fast;
    return r->ops->exit(r, fn, code, w, event, value, exc, tsid);
}

/* A recorder's per-thread object and the thread it is for (see fnt_tls_object). */
typedef struct {
    PyObject *obj;
    unsigned long long tsid;
} fnt_tls_cache;

FNT_HIDDEN int fnt_recorder_traverse_common(fnt_recorder *self, visitproc visit, void *arg);
FNT_HIDDEN void fnt_recorder_clear_common(fnt_recorder *self);
FNT_HIDDEN int fnt_recorder_bind(fnt_recorder *self, PyObject *rb);
FNT_HIDDEN int fnt_recorder_ring(fnt_recorder *self);
FNT_HIDDEN int fnt_recorder_call_clock(fnt_recorder *self, long long *now);
FNT_HIDDEN int fnt_recorder_pid_decide(fnt_recorder *self, unsigned long long tsid);
FNT_HIDDEN int fnt_recorder_write_slow(fnt_recorder *self, fnt_slot *slot,
                                       unsigned long long tsid);
FNT_HIDDEN int fnt_recorder_failed(fnt_recorder *self);
FNT_HIDDEN void fnt_recorder_warm(fnt_recorder *self, unsigned long long tsid);
FNT_HIDDEN int fnt_interrupt_later(void);
FNT_HIDDEN PyObject *fnt_tls_object_slow(fnt_tls_cache *cache, PyObject *tls, PyObject *attr,
                                         PyObject *make, int store, PyTypeObject *type,
                                         int create, unsigned long long tsid);

/* Python's view of the head (getset entries and ring_changed). */
FNT_HIDDEN PyObject *fnt_recorder_get_ok(PyObject *self, void *closure);
FNT_HIDDEN int fnt_recorder_set_ok(PyObject *self, PyObject *value, void *closure);
FNT_HIDDEN PyObject *fnt_recorder_get_report(PyObject *self, void *closure);
FNT_HIDDEN int fnt_recorder_set_report(PyObject *self, PyObject *value, void *closure);
FNT_HIDDEN PyObject *fnt_recorder_get_pid_check(PyObject *self, void *closure);
FNT_HIDDEN int fnt_recorder_set_pid_check(PyObject *self, PyObject *value, void *closure);
FNT_HIDDEN PyObject *fnt_recorder_get_tracing(PyObject *self, void *closure);
FNT_HIDDEN int fnt_recorder_set_tracing(PyObject *self, PyObject *value, void *closure);
FNT_HIDDEN PyObject *fnt_recorder_ring_changed(PyObject *self, PyObject *unused);

#define FNT_RECORDER_OK_DOC "whether the C path may record (set by the tracer from its options)"
#define FNT_RECORDER_GETSETS                                                                 \
    {"ok", fnt_recorder_get_ok, fnt_recorder_set_ok, FNT_RECORDER_OK_DOC, NULL},             \
    {"report", fnt_recorder_get_report, fnt_recorder_set_report,                             \
     "called with an exception raised inside the recorder", NULL},                           \
    {"pid_check", fnt_recorder_get_pid_check, fnt_recorder_set_pid_check,                    \
     "None, or called in a thread to say whether the pid filters let it be traced", NULL},   \
    {"tracing", fnt_recorder_get_tracing, fnt_recorder_set_tracing,                          \
     "the instance's tracing_on (pushed by its setter)", NULL}
#define FNT_RECORDER_RING_CHANGED                                                            \
    {"ring_changed", fnt_recorder_ring_changed, METH_NOARGS,                                 \
     "The ring buffer's clock or live buffer set changed."}

/* The instance's pid filter for this thread: 1 traced, 0 not, -1 error. */
static inline int
fnt_recorder_pid_ok(fnt_recorder *self, unsigned long long tsid)
{
    if (tsid == self->hot_tsid || self->pid_check == NULL || self->pid_check == Py_None)
        return 1;
    if (self->p_valid && self->p_tsid == tsid)
        return self->p_allowed;
    return fnt_recorder_pid_decide(self, tsid);
}

/* The ring's clock now: natively when it is perf_counter_ns or monotonic_ns
 * (on Linux all read CLOCK_MONOTONIC, so events of the two paths order
 * together), local_clock, or time_ns (CLOCK_REALTIME); else called. */
FNT_ALWAYS_INLINE int
fnt_recorder_now(fnt_recorder *self, long long *now)
{
    if (!self->ring_valid && fnt_recorder_ring(self) < 0)
        return -1;
    if (self->clock_native == 2) {  /* the default: tested first */
        *now = fnt_local_ns();
        return 0;
    }
    switch (self->clock_native) {
    case 2:
        *now = fnt_local_ns();
        return 0;
    case 1:
        *now = fnt_mono_ns();
        return 0;
    case 3:
        *now = fnt_real_ns();
        return 0;
    default:
        return fnt_recorder_call_clock(self, now);
    }
}

/* Write an event into this thread's buffer; the slot's references go to the
 * ring (or are released).  0 done, -1 error. */
FNT_ALWAYS_INLINE int
fnt_recorder_write(fnt_recorder *self, fnt_slot *slot, unsigned long long tsid)
{
    if (self->ring_valid && self->c_buf != NULL && self->c_tsid == tsid && self->c_is_ring) {
        if (fnt_ring_put((fnt_RingCore *)self->c_buf, slot)) {
            fnt_recorder_warm(self, tsid);
            return 0;
        }
        /* held: a full ring's hook runs Python code, which may drop the ring */
        PyObject *buf = Py_NewRef(self->c_buf);
        int r = fnt_ring_write_slot((fnt_RingCore *)buf, slot);
        Py_DECREF(buf);
        return r < 0 ? -1 : 0;
    }
    return fnt_recorder_write_slow(self, slot, tsid);
}

/* The slot of this thread's ring that the event of `size` bytes goes into, when
 * this is the hot thread (hot_tsid: the one test of the ring's state per
 * event) and its ring takes it the cheap way (fnt_ring_claim: fill it
 * whole at once, then drop *gone's references), else NULL: then build the
 * slot and fnt_recorder_write() it. */
FNT_ALWAYS_INLINE fnt_slot *
fnt_recorder_claim(fnt_recorder *self, unsigned long long tsid, int32_t size, fnt_slot *gone)
{
    if (tsid == self->hot_tsid)
        return fnt_ring_claim((fnt_RingCore *)self->c_buf, size, gone);
    return NULL;
}

/* A packed event's fields, all of them (a claimed slot is filled at once). */
FNT_ALWAYS_INLINE void
fnt_slot_set(fnt_slot *d, char kind, unsigned char evcode, long long ts, int32_t size,
             int32_t depth, long long duration, PyObject *obj, PyObject *aux)
{
    d->obj = obj;
    d->aux = aux;
    d->ts = ts;
    d->duration = duration;
    d->depth = depth;
    d->size = size;
    d->kind = kind;
    d->evcode = evcode;
}

/* Write an event (its references given to the ring, or released): into the
 * claimed slot, else through fnt_recorder_write.  0 done, -1 error. */
FNT_ALWAYS_INLINE int
fnt_recorder_emit(fnt_recorder *self, unsigned long long tsid, char kind, unsigned char evcode,
                  long long ts, int32_t size, int32_t depth, long long duration, PyObject *obj,
                  PyObject *aux)
{
    fnt_slot gone, built;
    fnt_slot *d = fnt_recorder_claim(self, tsid, size, &gone);
    fnt_slot_set(d != NULL ? d : &built, kind, evcode, ts, size, depth, duration, obj, aux);
    if (d != NULL) {
        fnt_slot_release(&gone);
        return 0;
    }
    return fnt_recorder_write(self, &built, tsid);
}

/* A recorder's per-thread object, tls.<attr> (borrowed through a one-thread
 * cache): made by calling `make` when the thread has none and `create` (and
 * stored in tls when `store`; else `make` stores it), else Py_None. */
static inline PyObject *
fnt_tls_object(fnt_tls_cache *cache, PyObject *tls, PyObject *attr, PyObject *make, int store,
               PyTypeObject *type, int create, unsigned long long tsid)
{
    if (cache->obj != NULL && cache->tsid == tsid)
        return cache->obj;
    return fnt_tls_object_slow(cache, tls, attr, make, store, type, create, tsid);
}

#endif  /* FNT_RECORDER_H */
