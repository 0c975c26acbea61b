/* graph_hot.h: function_graph's recorder as the dispatchers see it - its
 * layout and the short way of its usual entry and exit.
 *
 * Why: an event of a plain function_graph (no filters, args or retval, the
 * thread's stack and ring cached) costs a few dozen instructions of its own;
 * reached through the recorder vtable it paid as much again in a call, its
 * prologue and the dispatcher's bookkeeping.  The dispatcher tests the
 * recorder's ops against fnt_graph_ops and runs the short way inline; any
 * event it does not take goes through the vtable to graph_recorder.c, which
 * writes the same events the general way.
 */
#ifndef FNT_GRAPH_HOT_H
#define FNT_GRAPH_HOT_H

#include "recorder.h"
#include "value_text.h"

#ifdef FNT_HOT_PATH

/* The selection state below a call (FunctionGraphTracer's). */
#define GRAPH_OUTSIDE 0
#define GRAPH_INSIDE 1
#define GRAPH_BLOCKED 2

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

/* The text of a small int argument or value, "name=digits" or "digits" (name
 * NULL): direct-mapped by (name, value), since the same small ints come back
 * call after call (counters, indexes, sizes, flags) and a hit costs a
 * reference instead of an allocation and its later free.  Holds its name and
 * text. */
#define INT_TEXTS 256
typedef struct {
    PyObject *name;
    PyObject *text;
    long n;
} IntText;

typedef struct {
    FNT_RECORDER_HEAD
    IntText *ints;                /* INT_TEXTS entries, or NULL until the first */
    fnt_vtext vt;                 /* value_text.py's walk in C (value_text.h) */
    PyObject *tls;                /* the tracer's threading.local (its .stack) */
    long long max_depth;
    fnt_tls_cache s_stack;
    PyObject *ev_unwind;
    PyObject *ev_other;           /* the last event found not to be an unwind */
    /* funcgraph-args / funcgraph-retval, and the instance's SafeRepr (whose
     * text limit the common values are rendered with, in C) */
    int args, retval;
    PyObject *safe_repr;
    Py_ssize_t max_len;
    int repr_call;                /* safe_repr.call: the program's reprs are called */
} GraphRecorder;

/* GraphRecorder's ops (graph_recorder.c): how a dispatcher recognises one. */
extern FNT_HIDDEN const fnt_recorder_ops fnt_graph_ops;

/* Whether this event takes the short way (graph_entry_hot, graph_exit_hot):
 * the thread is the hot one (its pid filter passed, its ring is the cached
 * one), its stack is the cached one, the clock is a native one, and no
 * option asks for more than the two packed events.  Everything else goes the
 * general way, which writes the same events.  Only for a dispatcher that
 * gives the event's code (where->ev1 > 0: the monitoring dispatcher's always
 * do). */
FNT_ALWAYS_INLINE GraphStack *
graph_hot_stack(GraphRecorder *self, unsigned long long tsid)
{
    GraphStack *stack = (GraphStack *)self->s_stack.obj;
    if (tsid != self->hot_tsid || stack == NULL || self->s_stack.tsid != tsid ||
        (unsigned)(self->clock_native - 1) > 2u || !self->tracing)
        return NULL;
    return stack;
}

/* CLOCK_MONOTONIC (1, what `record` uses) or CLOCK_REALTIME (3): a call to
 * the vDSO either way, kept out of line. */
static FNT_NOINLINE long long
graph_system_now(int clock_native)
{
    return clock_native == 1 ? fnt_mono_ns() : fnt_real_ns();
}

/* The ring's clock now, for a short way (graph_hot_stack let only the native
 * clocks through): the local clock, the default, inline. */
FNT_ALWAYS_INLINE long long
graph_hot_now(GraphRecorder *self)
{
    if (self->clock_native == 2)
        return fnt_local_ns();
    return graph_system_now(self->clock_native);
}

/* An entry the short way: 1 written, 0 when the general way must decide
 * (nothing done).  The same steps as graph_entry (graph_recorder.c), in the
 * same order of effects: the slot claimed and filled at once, then the stack
 * pushed, and the overwritten event dropped last (the one step that may run
 * Python code: nothing borrowed is used after it).  graph_exit_hot has the
 * same shape on purpose rather than a shared helper, which would have to hand
 * the overwritten event back to be dropped after the stack's update. */
FNT_ALWAYS_INLINE int
graph_entry_hot(GraphRecorder *self, PyObject *fn, fnt_where *where, unsigned long long tsid)
{
    if (self->args || self->max_depth)  /* first: those configurations fail at once */
        return 0;
    GraphStack *stack = graph_hot_stack(self, tsid);
    if (stack == NULL || stack->n == stack->cap)
        return 0;
    long long depth = 0;
    if (stack->n > 0) {
        GEntry *top = &stack->e[stack->n - 1];
        if (top->state != GRAPH_INSIDE)
            return 0;
        depth = top->depth;
    }
    fnt_slot gone;
    fnt_slot *d = fnt_ring_claim((fnt_RingCore *)self->c_buf, EVENT_OVERHEAD, &gone);
    if (d == NULL)
        return 0;
    long long now = graph_hot_now(self);
    fnt_slot_set(d, EVENT_TAG_ENTRY, (unsigned char)(where->ev1 - 1), now, EVENT_OVERHEAD,
                 (int32_t)depth, 0, Py_NewRef(fn), NULL);
    GEntry *e = &stack->e[stack->n++];
    e->key = fnt_where_key(where);
    e->ts = now;
    e->has_ts = 1;
    e->depth = depth + 1;
    e->state = GRAPH_INSIDE;
    fnt_slot_release(&gone);
    return 1;
}

/* An exit the short way: 1 written, 0 when the general way must decide
 * (nothing done): a return (no exception) without funcgraph-retval, whose
 * entry is the newest on the stack. */
FNT_ALWAYS_INLINE int
graph_exit_hot(GraphRecorder *self, PyObject *fn, fnt_where *where, PyObject *exc,
               unsigned long long tsid)
{
    if (self->retval)  /* first: that configuration fails at once */
        return 0;
    GraphStack *stack = graph_hot_stack(self, tsid);
    if (stack == NULL || stack->n == 0 || (exc != NULL && exc != Py_None))
        return 0;
    GEntry *top = &stack->e[stack->n - 1];
    if (top->key != fnt_where_key(where) || !top->has_ts)
        return 0;
    fnt_slot gone;
    fnt_slot *d = fnt_ring_claim((fnt_RingCore *)self->c_buf, EVENT_OVERHEAD, &gone);
    if (d == NULL)
        return 0;
    long long now = graph_hot_now(self);
    fnt_slot_set(d, EVENT_TAG_EXIT, (unsigned char)(where->ev1 - 1), now, EVENT_OVERHEAD,
                 (int32_t)(top->depth - 1), now - top->ts, Py_NewRef(fn), NULL);
    stack->n--;
    fnt_slot_release(&gone);
    return 1;
}

#endif  /* FNT_HOT_PATH */

#endif  /* FNT_GRAPH_HOT_H */
