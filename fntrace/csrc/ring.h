/* ring.h: a thread's ring buffer as the recorders and the drain see it.
 *
 * Why: the recorders write packed events (Slot) into a RingCore's
 * EventQueue; the drain (drain.c) takes them out and encodes them.  Both
 * need the layouts; the writing itself is ring.c's.
 */
#ifndef FNT_RING_H
#define FNT_RING_H

#include "fnt.h"

/* One event.  Events the recorders write are stored packed, as C fields: no
 * tuple, no int objects, nothing to free when the ring overwrites them; a
 * tuple equal to the one the Python path writes (events.h) is built only
 * when a reader asks for the event. */
typedef struct {
    PyObject *obj;       /* kind 0: the event (a tuple written from Python); T: the note's
                          * text; else the Function */
    PyObject *aux;       /* F: parent (or None); E: args text (or NULL); X: value text (or None) */
    long long ts;
    long long duration;  /* X */
    int32_t depth;       /* E, X */
    int32_t size;
    char kind;           /* 0, EVENT_TAG_CALL, EVENT_TAG_ENTRY, EVENT_TAG_EXIT, EVENT_TAG_TASK */
    unsigned char evcode;  /* the Event string: fnt_event_names[evcode] */
} fnt_slot;              /* 48 bytes: a 1408 KiB ring of 64-byte events is ~1 MiB */

/* The Event strings the recorders were given (pointer-compared; six in
 * practice).  Process-wide: a slot holds an index into this table, and slots
 * live in rings that outlive any one module object. */
#define FNT_MAX_EVENT_NAMES 64
extern FNT_HIDDEN PyObject *fnt_event_names[FNT_MAX_EVENT_NAMES];
extern FNT_HIDDEN int fnt_n_event_names;
FNT_HIDDEN int fnt_event_code_add(PyObject *event);

/* A task note's ring tag ("T") and its file text's prefix (TASK_PREFIX):
 * process-wide, set by the first TaskRecorder (the only writer of task slots)
 * from the schema's strings, so the ring builds a note's tuple and the drain
 * its marker text without asking Python. */
extern FNT_HIDDEN PyObject *fnt_task_tag, *fnt_task_prefix;

/* The code of an Event string (added when new); -1 with an error when full. */
static inline int
fnt_event_code(PyObject *event)
{
    for (int i = 0; i < fnt_n_event_names; i++)
        if (fnt_event_names[i] == event)
            return i;
    return fnt_event_code_add(event);
}

typedef struct {
    PyObject_HEAD
    fnt_slot *slots;
    Py_ssize_t cap;
    Py_ssize_t head;  /* the oldest */
    Py_ssize_t len;
    Py_ssize_t hint;  /* the first allocation: as many events as the ring can hold */
    fnt_slot *spare;  /* an array of spare_cap slots a drain gave back (fnt_queue_detach) */
    Py_ssize_t spare_cap;
} fnt_EventQueue;

typedef struct {
    PyObject_HEAD
    fnt_EventQueue *events;
    PyObject *on_full;  /* no-loss hook or None */
    long long capacity, written, in_bytes, overrun, overrun_bytes, dropped, read, read_bytes;
    char overwrite;
    char cheap_overwrite;  /* overwrite and no no-loss hook (fnt_ring_claim's one test) */
} fnt_RingCore;

extern FNT_HIDDEN PyTypeObject fnt_RingCore_Type;

/* The slot's references dropped (the caller has taken it out of its queue). */
static inline void
fnt_slot_release(fnt_slot *s)
{
    Py_XDECREF(s->obj);
    Py_XDECREF(s->aux);
}

/* The slot one event of `size` bytes goes into, claimed the cheap way, inline
 * in the recorders; NULL when this write needs fnt_ring_write_slot (nothing
 * done).  The caller fills every field of the slot before anything else runs
 * (the counters already count it), then drops the references left in *gone.
 * The cheap ways: there is room; or the ring overwrites, has no no-loss hook
 * and dropping its oldest event (a packed one) makes room, which is what
 * ring_room() would do - the usual write once a ring has wrapped.  The oldest
 * event's slot is reused in place, nothing freed or allocated, and its
 * references are left to drop when the ring is whole again (a finalizer they
 * run may write into this ring, or drop it). */
FNT_ALWAYS_INLINE fnt_slot *
fnt_ring_claim(fnt_RingCore *r, int32_t size, fnt_slot *gone)
{
    fnt_EventQueue *q = r->events;
    if (q == NULL)
        return NULL;
    long long used = r->in_bytes - r->overrun_bytes - r->read_bytes;
    Py_ssize_t tail;
    if (used + size <= r->capacity) {
        if (q->len == q->cap)
            return NULL;  /* the queue grows */
        tail = q->head + q->len;
        q->len++;
        gone->obj = gone->aux = NULL;
    } else {
        if (!r->cheap_overwrite || q->len == 0)
            return NULL;
        fnt_slot *oldest = &q->slots[q->head];
        if (oldest->kind == 0 || used - oldest->size + size > r->capacity)
            return NULL;
        gone->obj = oldest->obj;
        gone->aux = oldest->aux;
        r->overrun++;
        r->overrun_bytes += oldest->size;
        tail = q->head + q->len;  /* the oldest's slot when the queue is full */
        q->head = q->head + 1 == q->cap ? 0 : q->head + 1;
    }
    r->written++;
    r->in_bytes += size;
    return &q->slots[tail >= q->cap ? tail - q->cap : tail];
}

/* Write one built slot the cheap way: 1 written (its references are the
 * ring's), 0 when this write needs fnt_ring_write_slot (nothing done). */
FNT_ALWAYS_INLINE int
fnt_ring_put(fnt_RingCore *r, fnt_slot *s)
{
    fnt_slot gone;
    fnt_slot *d = fnt_ring_claim(r, s->size, &gone);
    if (d == NULL)
        return 0;
    *d = *s;
    fnt_slot_release(&gone);
    return 1;
}

/* Every slot of the queue moved into out (room for q->len slots), oldest
 * first: their references are the caller's; the queue is empty after.  Slot by
 * slot (a few moves each) rather than memcpy, whose large copies are byte loops
 * (rep movsb); the vacated slots are not cleared: a slot is written whole
 * before the queue counts it again (fnt_ring_claim, EventQueue's append). */
static inline void
fnt_queue_take_all(fnt_EventQueue *q, fnt_slot *out)
{
    Py_ssize_t at = q->head;
    for (Py_ssize_t i = 0; i < q->len; i++) {
        out[i] = q->slots[at];
        at = at + 1 == q->cap ? 0 : at + 1;
    }
    q->head = 0;
    q->len = 0;
}

/* The queue's events taken out whole by handing over its array, when they lie
 * in one run (the usual case: a drained ring refills from its start): 1 with
 * *slots (the oldest first, n = the old len) and *array (what to give back),
 * the queue left empty on its spare array; 0 when they wrap (nothing done:
 * fnt_queue_take_all them).  The caller owns the slots' references. */
static inline int
fnt_queue_detach(fnt_EventQueue *q, fnt_slot **slots, fnt_slot **array, Py_ssize_t *array_cap)
{
    if (q->head + q->len > q->cap)
        return 0;
    *array = q->slots;
    *array_cap = q->cap;
    *slots = q->slots + q->head;
    q->slots = q->spare;
    q->cap = q->spare_cap;
    q->spare = NULL;
    q->spare_cap = 0;
    q->head = 0;
    q->len = 0;
    return 1;
}

/* An array fnt_queue_detach handed over, once its slots are released: kept as
 * the queue's spare (the next detach uses it: no allocation per drain), or
 * freed when the queue has one. */
static inline void
fnt_queue_give_back(fnt_EventQueue *q, fnt_slot *array, Py_ssize_t array_cap)
{
    if (q->spare == NULL && array_cap > 0) {
        q->spare = array;
        q->spare_cap = array_cap;
    } else {
        PyMem_Free(array);
    }
}

FNT_HIDDEN int fnt_slot_size(fnt_slot *s, long long *size);
FNT_HIDDEN PyObject *fnt_slot_event(fnt_slot *s);
FNT_HIDDEN int fnt_queue_take(fnt_EventQueue *q, fnt_slot *out);
FNT_HIDDEN int fnt_ring_write_slot(fnt_RingCore *self, fnt_slot *s);

#endif  /* FNT_RING_H */
