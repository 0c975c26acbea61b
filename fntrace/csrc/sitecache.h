/* sitecache.h: the direct-mapped per-code tables (sites seen, callers seen)
 * and the registry that empties them when a code object is freed.
 *
 * Why: the dispatchers look a code object's site up on every event, and the
 * function recorder its caller's Function; a slot compare is much cheaper
 * than a dict lookup with a PyLong key.  Such a table must not keep code the
 * program dropped alive, nor be fooled by a new code at a freed one's
 * address: sitecache.c explains how.
 */
#ifndef FNT_SITECACHE_H
#define FNT_SITECACHE_H

#include "fnt.h"

/* A site table's slot (the dispatcher's, the 3.11 hook's). */
typedef struct {
    PyObject *code;   /* strong when `strong`, else borrowed (see sitecache.c) */
    PyObject *site;   /* the Function's configuration (engine.Site) */
    PyObject *fast;   /* Site.fast, NULL when None (or not a recorder) */
    PyObject *fn;     /* the patched Function; for a "no site" slot, the guard */
    PyObject *enter;  /* Site.enter (the trampoline) */
    int has_ret;      /* Site.has_ret */
    int strong;
} fnt_site_slot;

/* The function recorder's callers: code -> Function. */
typedef struct {
    PyObject *code;  /* strong when `strong`, else borrowed (see sitecache.c) */
    PyObject *fn;
    int strong;
} fnt_parent_slot;

/* A table is listed while it exists: 1 listed (its slots may borrow their
 * codes), 0 the list is full (its slots hold their codes). */
FNT_HIDDEN int fnt_code_table_add(void *slots, size_t n, char parents);
FNT_HIDDEN void fnt_code_table_remove(void *slots);
FNT_HIDDEN int fnt_fn_guards(PyObject *fn, PyObject *code);
FNT_HIDDEN void fnt_parent_slots_free(fnt_parent_slot *slots, size_t n);
FNT_HIDDEN int fnt_slot_fill(fnt_site_slot *slot, PyObject *code, PyObject *patched,
                             PyObject *guard, int borrow);
FNT_HIDDEN void fnt_slots_free(fnt_site_slot *slots, size_t n);
FNT_HIDDEN int fnt_slots_traverse(fnt_site_slot *slots, size_t n, visitproc visit, void *arg);

/* Callbacks now using references borrowed from site slots; while there are
 * any, references the slots give up are deferred (sitecache.c). */
extern FNT_HIDDEN int fnt_inflight;
extern FNT_HIDDEN Py_ssize_t fnt_n_deferred;
FNT_HIDDEN void fnt_deferred_flush(void);

/* The end of a callback that borrowed from the slots. */
static inline void
fnt_inflight_end(void)
{
    if (--fnt_inflight == 0 && fnt_n_deferred > 0)
        fnt_deferred_flush();
}

/* What one callback needs of a slot, held for the callback (the slot itself
 * may be refilled while Python code runs). */
typedef struct {
    PyObject *site, *fast, *fn;  /* strong references */
    PyObject *enter;             /* borrowed: the Site (held above) holds it */
    int has_ret;
} fnt_site_refs;

static inline void
fnt_refs_take(fnt_site_slot *slot, fnt_site_refs *refs)
{
    refs->site = Py_NewRef(slot->site);
    refs->fast = Py_XNewRef(slot->fast);
    refs->fn = Py_NewRef(slot->fn);
    refs->enter = slot->enter;
    refs->has_ret = slot->has_ret;
}

static inline void
fnt_refs_release(fnt_site_refs *refs)
{
    Py_DECREF(refs->site);
    Py_XDECREF(refs->fast);
    Py_DECREF(refs->fn);
}

/* The six event names a backend passes (start, resume, throw, return, yield,
 * unwind), held in `slots`. */
FNT_HIDDEN int fnt_events_take(PyObject *events, PyObject **slots[6]);

#endif  /* FNT_SITECACHE_H */
