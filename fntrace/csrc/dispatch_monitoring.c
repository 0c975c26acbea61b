/* dispatch_monitoring.c: the sys.monitoring callbacks of the monitoring
 * backend (3.12+), in C.
 *
 * Why: every PY_START/RESUME/THROW/RETURN/YIELD/UNWIND event of traced code
 * reaches these callbacks.  A site whose only ops carries an enabled recorder
 * (Site.fast) is recorded here without any Python frame; every other site
 * goes to its Python trampoline, unknown code to the Python discovery
 * callback (core/backends/monitoring.py).
 */
#include "graph_hot.h"
#include "sitecache.h"

#ifdef FNT_HOT_PATH

typedef fnt_site_slot SiteSlot;
typedef fnt_site_refs SiteRefs;
typedef fnt_where Where;

/* Sites seen: code -> (Site, its recorder, its Function), direct-mapped and
 * cleared by sites_changed() whenever the engine replaces or removes a site
 * (adding one needs nothing: misses are never cached).  Saves the PyLong key
 * and the dict lookup, and the Site's attribute reads, on every event. */
#define SITE_SLOTS 4096

typedef struct {
    PyObject_HEAD
    SiteSlot *slots;
    PyObject *sites;        /* engine.sites: id(code) -> Site */
    PyObject *slow_start;   /* the Python PY_START callback (discovery) */
    PyObject *slow_resume;  /* the Python PY_RESUME callback */
    PyObject *exit_call;    /* engine.exit_call */
    PyObject *disable;      /* sys.monitoring.DISABLE */
    PyObject *ev_start, *ev_resume, *ev_throw, *ev_return, *ev_yield, *ev_unwind;
    int ev1[6];             /* their codes + 1 (fnt_where.ev1), in that order */
    PyObject *refused;      /* engine.refused_modules: [ {module name: True} ] or NULL */
    PyObject *allowed;      /* engine.allowed_modules: [ (exact frozenset, prefixes) | None ] */
    PyObject *name_key;     /* "__name__" */
    PyObject *frozen_prefix;  /* "<frozen " */
    int borrow;             /* slots is listed in code_tables */
} Dispatcher;

static int
Dispatcher_init(Dispatcher *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sites", "slow_start", "slow_resume", "exit_call", "events",
                             "disable", "refused", "allowed", NULL};
    PyObject *sites, *ss, *sr, *ec, *events, *disable, *refused = NULL, *allowed = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOOO!O|O!O!", kwlist, &PyDict_Type, &sites,
                                     &ss, &sr, &ec, &PyTuple_Type, &events, &disable,
                                     &PyList_Type, &refused, &PyList_Type, &allowed))
        return -1;
    if (refused != NULL && PyList_GET_SIZE(refused) != 1) {
        PyErr_SetString(PyExc_ValueError, "refused: a list of one dict");
        return -1;
    }
    if (allowed != NULL && PyList_GET_SIZE(allowed) != 1) {
        PyErr_SetString(PyExc_ValueError, "allowed: a list of one bound (or None)");
        return -1;
    }
    if (self->name_key == NULL && (self->name_key = PyUnicode_InternFromString("__name__")) == NULL)
        return -1;
    if (self->frozen_prefix == NULL &&
            (self->frozen_prefix = PyUnicode_InternFromString("<frozen ")) == NULL)
        return -1;
    PyObject **ev[6] = {&self->ev_start, &self->ev_resume, &self->ev_throw,
                        &self->ev_return, &self->ev_yield, &self->ev_unwind};
    if (fnt_events_take(events, ev) < 0)
        return -1;
    for (int i = 0; i < 6; i++) {
        int code = fnt_event_code(*ev[i]);
        if (code < 0)
            return -1;
        self->ev1[i] = code + 1;
    }
    if (self->slots == NULL) {
        self->slots = PyMem_Calloc(SITE_SLOTS, sizeof(SiteSlot));
        if (self->slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->borrow = fnt_code_table_add(self->slots, SITE_SLOTS, 0);
    }
    Py_XSETREF(self->sites, Py_NewRef(sites));
    Py_XSETREF(self->slow_start, Py_NewRef(ss));
    Py_XSETREF(self->slow_resume, Py_NewRef(sr));
    Py_XSETREF(self->exit_call, Py_NewRef(ec));
    Py_XSETREF(self->disable, Py_NewRef(disable));
    Py_XSETREF(self->refused, Py_XNewRef(refused));
    Py_XSETREF(self->allowed, Py_XNewRef(allowed));
    return 0;
}

static int
Dispatcher_traverse(Dispatcher *self, visitproc visit, void *arg)
{
    int r = fnt_slots_traverse(self->slots, SITE_SLOTS, visit, arg);
    if (r)
        return r;
    Py_VISIT(self->sites);
    Py_VISIT(self->slow_start);
    Py_VISIT(self->slow_resume);
    Py_VISIT(self->exit_call);
    Py_VISIT(self->refused);
    Py_VISIT(self->allowed);
    return 0;
}

static int
Dispatcher_clear(Dispatcher *self)
{
    fnt_slots_free(self->slots, SITE_SLOTS);
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
    Py_CLEAR(self->refused);
    Py_CLEAR(self->allowed);
    Py_CLEAR(self->name_key);
    Py_CLEAR(self->frozen_prefix);
    return 0;
}

static void
Dispatcher_dealloc(Dispatcher *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Dispatcher_clear(self);
    if (self->slots != NULL)
        fnt_code_table_remove(self->slots);
    PyMem_Free(self->slots);
    tp->tp_free((PyObject *)self);
}

/* Strong references to what a slot holds, for one event (the slot itself may
 * be refilled while Python code runs). */
/* The site of `code` with its recorder and Function, as new references in
 * *refs: 1 found, 0 no site, -1 error. */
static int
site_of(Dispatcher *self, PyObject *code, SiteRefs *refs)
{
    SiteSlot *slot = &self->slots[fnt_ptr_slot(code, SITE_SLOTS)];
    if (slot->code != code) {
        PyObject *key = PyLong_FromVoidPtr(code);
        if (key == NULL)
            return -1;
        PyObject *site = PyDict_GetItemWithError(self->sites, key);
        Py_DECREF(key);
        if (site == NULL)
            return PyErr_Occurred() ? -1 : 0;
        int r = fnt_slot_fill(slot, code, site, NULL, self->borrow);
        if (r != 0)
            return r < 0 ? -1 : 0;  /* > 0: unpatched meanwhile */
    }
    fnt_refs_take(slot, refs);
    return 1;
}

/* Where the traced code runs, for a recorder: its interpreter frame when that
 * is the running one (checked against the callback's code), else its frame
 * object.  0 when there is no frame at all. */
FNT_ALWAYS_INLINE int
where_for(Where *w, PyObject *code, int ev1, unsigned long long *tsid)
{
    PyThreadState *ts = fnt_tstate();
    *tsid = (unsigned long long)ts->id;
    w->frame = NULL;
    w->iframe = NULL;
    w->ev1 = ev1;
#ifdef FNT_IFRAME
    fnt_iframe *f = fnt_iframe_current(ts);
    if (f != NULL && f->code == code) {
        w->iframe = f;
        return 1;
    }
#endif
    w->frame = PyEval_GetFrame();
    return w->frame != NULL;
}

/* What a monitoring callback returns: NULL only for fntrace's own failures. */
static PyObject *
to_program(PyObject *r)
{
    if (r == NULL && fnt_interrupt_later())
        Py_RETURN_NONE;
    return r;
}

static PyObject *
dispatch_enter(SiteRefs *refs, PyObject *code, PyObject *event, int ev1, PyObject *offset)
{
    PyObject *fast = refs->fast;
    if (fast != NULL && ((fnt_recorder *)fast)->ok) {
        Where w;
        unsigned long long tsid;
        if (!where_for(&w, code, ev1, &tsid))
            Py_RETURN_NONE;
        int r = fnt_recorder_entry(fast, refs->fn, code, &w, event, tsid);
        if (r < 0 && fnt_recorder_failed((fnt_recorder *)fast) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyFrameObject *frame = PyEval_GetFrame();  /* borrowed: the traced frame */
    if (frame == NULL)
        Py_RETURN_NONE;
    PyObject *args[5] = {refs->fn, refs->site, (PyObject *)frame, event, offset};
    return PyObject_Vectorcall(refs->enter, args, 5, NULL);
}

static PyObject *
dispatch_exit(Dispatcher *self, SiteRefs *refs, PyObject *code, PyObject *event, int ev1,
              PyObject *offset, PyObject *value, PyObject *exc)
{
    PyObject *fast = refs->fast;
    if (fnt_recorder_has_exit(fast)) {
        Where w;
        unsigned long long tsid;
        if (!where_for(&w, code, ev1, &tsid))
            Py_RETURN_NONE;
        int r = fnt_recorder_exit(fast, refs->fn, code, &w, event, value, exc, tsid);
        if (r < 0 && fnt_recorder_failed((fnt_recorder *)fast) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (!refs->has_ret)
        Py_RETURN_NONE;
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL)
        Py_RETURN_NONE;
    PyObject *args[7] = {refs->fn, refs->site, (PyObject *)frame, event, offset, value, exc};
    return PyObject_Vectorcall(self->exit_call, args, 7, NULL);
}

/* First look at unknown code (monitoring.py's discover_at): DISABLE or None
 * when it is no site, else its patched Function, whose entry is then dispatched here
 * as any other, so that a recorder writes it when it may (the Python
 * trampoline would leave an entry on the engine's shadow stack that the
 * recorder's exit never pops).  The site serves this event only: engine.sites
 * is the truth for the next one. */
static PyObject *
enter_first(Dispatcher *self, PyObject *const *args, PyObject *event, int ev1, PyObject *slow)
{
    PyObject *site = PyObject_Vectorcall(slow, args, 2, NULL);
    if (site == NULL || site == Py_None || site == self->disable)
        return site;
    SiteSlot one = {0};
    SiteRefs refs;
    PyObject *r = NULL;
    int filled = fnt_slot_fill(&one, args[0], site, NULL, 0);
    if (filled == 0) {
        fnt_refs_take(&one, &refs);
        r = dispatch_enter(&refs, args[0], event, ev1, args[1]);
        fnt_refs_release(&refs);
    } else if (filled > 0) {
        r = Py_NewRef(Py_None);  /* unpatched meanwhile */
    }
    fnt_slots_free(&one, 1);
    Py_DECREF(site);
    return r;
}

/* 1 when the module `name` is outside the engine's bound of selectable
 * modules (engine.allowed_modules: exact names and prefixes), 0 when inside
 * it or when there is no bound. */
static int
outside_bound(Dispatcher *self, PyObject *name)
{
    if (self->allowed == NULL)
        return 0;
    PyObject *bound = PyList_GET_ITEM(self->allowed, 0);
    if (!PyTuple_CheckExact(bound) || PyTuple_GET_SIZE(bound) != 2)
        return 0;
    PyObject *exact = PyTuple_GET_ITEM(bound, 0), *prefixes = PyTuple_GET_ITEM(bound, 1);
    if (!PyFrozenSet_CheckExact(exact) || !PyTuple_CheckExact(prefixes))
        return 0;
    int in = PySet_Contains(exact, name);
    if (in != 0) {
        if (in < 0)
            PyErr_Clear();
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(prefixes); i++) {
        PyObject *prefix = PyTuple_GET_ITEM(prefixes, i);
        if (!PyUnicode_Check(prefix))
            return 0;
        Py_ssize_t hit = PyUnicode_Tailmatch(name, prefix, 0, PY_SSIZE_T_MAX, -1);
        if (hit != 0) {
            if (hit < 0)
                PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

/* 1 when `code`'s module is one no ops can select a function of, so that its
 * code is DISABLEd here without Python: a module the engine refused as a whole
 * (engine.discover), or one outside the bound the active filters give
 * (engine.allowed_modules).  Only for code the engine names by its globals'
 * __name__ (a file name not in <...>: never generated code, which naming.py
 * may name after its caller's module).  No Python code runs between this test
 * and the DISABLE taking effect, and the engine replaces both before any
 * rebuild, so a refusal is never one of older filters. */
static int
refused_module(Dispatcher *self, PyObject *code)
{
    if (self->refused == NULL || !PyCode_Check(code))
        return 0;
    PyObject *refused = PyList_GET_ITEM(self->refused, 0);
    int bounded = self->allowed != NULL && PyList_GET_ITEM(self->allowed, 0) != Py_None;
    if (!PyDict_CheckExact(refused) || (PyDict_GET_SIZE(refused) == 0 && !bounded))
        return 0;
    PyObject *filename = ((PyCodeObject *)code)->co_filename;
    if (!PyUnicode_Check(filename) || PyUnicode_GET_LENGTH(filename) == 0)
        return 0;
    if (PyUnicode_READ_CHAR(filename, 0) == '<') {
        /* <frozen ...>: a real module's, named by its __name__ (naming.generated) */
        Py_ssize_t frozen = PyUnicode_Tailmatch(filename, self->frozen_prefix, 0,
                                                PY_SSIZE_T_MAX, -1);
        if (frozen != 1) {
            if (frozen < 0)
                PyErr_Clear();
            return 0;
        }
    }
    PyObject *globals = PyEval_GetGlobals();  /* borrowed: the traced frame's */
    if (globals == NULL || !PyDict_CheckExact(globals))
        return 0;
    PyObject *name = PyDict_GetItemWithError(globals, self->name_key);
    if (name == NULL || !PyUnicode_CheckExact(name)) {
        PyErr_Clear();
        return 0;
    }
    if (bounded && outside_bound(self, name))
        return 1;
    PyObject *hit = PyDict_GetItemWithError(refused, name);
    if (hit == NULL) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static PyObject *
enter_event(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
            PyObject *event, int ev1, PyObject *slow)
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
        PyObject *r = dispatch_enter(&refs, args[0], event, ev1, args[1]);
        fnt_refs_release(&refs);
        return r;
    }
    if (slow == NULL)
        Py_RETURN_NONE;
    if (refused_module(self, args[0]))
        return Py_NewRef(self->disable);
    /* sys.monitoring holds no reference to a callback while it runs: another
     * thread may stop the backend (and free this dispatcher) while discover_at
     * runs Python code, so the dispatcher is held until it is done with. */
    Py_INCREF(self);
    PyObject *r = enter_first(self, args, event, ev1, slow);
    Py_DECREF(self);
    return r;
}

/* The site of a code seen before whose recorder writes its events itself, or
 * NULL (then the general path decides).  The usual case of every event, so
 * the callbacks below test it first and take no reference to the Site. */
FNT_ALWAYS_INLINE SiteSlot *
recorded_slot(Dispatcher *self, PyObject *code)
{
    SiteSlot *slot = &self->slots[fnt_ptr_slot(code, SITE_SLOTS)];
    if (slot->code != code || slot->fast == NULL || !((fnt_recorder *)slot->fast)->ok)
        return NULL;
    return slot;
}

/* An entry event for a recorded_slot(): the slot's recorder and Function
 * borrowed for the call, which counts as in flight (Python code a recorder
 * runs may empty the slot, or free this dispatcher: what a slot gives up
 * meanwhile is dropped after, see fnt_inflight). */
FNT_ALWAYS_INLINE PyObject *
recorded_entry(SiteSlot *slot, PyObject *code, PyObject *event, int ev1)
{
    Where w;
    unsigned long long tsid;
    if (!where_for(&w, code, ev1, &tsid))
        Py_RETURN_NONE;
    PyObject *fast = slot->fast, *fn = slot->fn;  /* borrowed while in flight */
    /* function_graph's usual entry, inline (graph_hot.h): it runs no Python
     * code before its last step, which drops an overwritten event and uses
     * nothing borrowed after, so it needs no in-flight count */
    if (((fnt_recorder *)fast)->ops == &fnt_graph_ops &&
            graph_entry_hot((GraphRecorder *)fast, fn, &w, tsid))
        Py_RETURN_NONE;
    fnt_inflight++;
    int r = fnt_recorder_entry(fast, fn, code, &w, event, tsid);
    int interrupted = r < 0 && fnt_recorder_failed((fnt_recorder *)fast) < 0;
    fnt_inflight_end();
    if (interrupted)
        return to_program(NULL);
    Py_RETURN_NONE;
}

/* An exit event for a recorded_slot() whose recorder writes exits. */
FNT_ALWAYS_INLINE PyObject *
recorded_exit(SiteSlot *slot, PyObject *code, PyObject *event, int ev1, PyObject *value,
              PyObject *exc)
{
    Where w;
    unsigned long long tsid;
    if (!where_for(&w, code, ev1, &tsid))
        Py_RETURN_NONE;
    PyObject *fast = slot->fast, *fn = slot->fn;  /* borrowed while in flight */
    if (((fnt_recorder *)fast)->ops == &fnt_graph_ops &&
            graph_exit_hot((GraphRecorder *)fast, fn, &w, exc, tsid))
        Py_RETURN_NONE;  /* as for an entry (recorded_entry) */
    fnt_inflight++;
    int r = fnt_recorder_exit(fast, fn, code, &w, event, value, exc, tsid);
    int interrupted = r < 0 && fnt_recorder_failed((fnt_recorder *)fast) < 0;
    fnt_inflight_end();
    if (interrupted)
        return to_program(NULL);
    Py_RETURN_NONE;
}

static PyObject *
Dispatcher_py_start(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    SiteSlot *slot = nargs == 2 ? recorded_slot(self, args[0]) : NULL;
    if (slot != NULL)
        return recorded_entry(slot, args[0], self->ev_start, self->ev1[0]);
    return to_program(enter_event(self, args, nargs, 2, self->ev_start, self->ev1[0], self->slow_start));
}

static PyObject *
Dispatcher_py_resume(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    SiteSlot *slot = nargs == 2 ? recorded_slot(self, args[0]) : NULL;
    if (slot != NULL)
        return recorded_entry(slot, args[0], self->ev_resume, self->ev1[1]);
    return to_program(enter_event(self, args, nargs, 2, self->ev_resume, self->ev1[1], self->slow_resume));
}

static PyObject *
Dispatcher_py_throw(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    return to_program(enter_event(self, args, nargs, 3, self->ev_throw, self->ev1[2], NULL));
}

static PyObject *
exit_event(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs, PyObject *event,
           int ev1, int is_unwind)
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
        ? dispatch_exit(self, &refs, args[0], event, ev1, args[1], Py_None, args[2])
        : dispatch_exit(self, &refs, args[0], event, ev1, args[1], args[2], Py_None);
    fnt_refs_release(&refs);
    return r;
}

static PyObject *
Dispatcher_py_return(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    SiteSlot *slot = nargs == 3 ? recorded_slot(self, args[0]) : NULL;
    if (slot != NULL && ((fnt_recorder *)slot->fast)->ops->exit != NULL)
        return recorded_exit(slot, args[0], self->ev_return, self->ev1[3], args[2], Py_None);
    return to_program(exit_event(self, args, nargs, self->ev_return, self->ev1[3], 0));
}

static PyObject *
Dispatcher_py_yield(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    SiteSlot *slot = nargs == 3 ? recorded_slot(self, args[0]) : NULL;
    if (slot != NULL && ((fnt_recorder *)slot->fast)->ops->exit != NULL)
        return recorded_exit(slot, args[0], self->ev_yield, self->ev1[4], args[2], Py_None);
    return to_program(exit_event(self, args, nargs, self->ev_yield, self->ev1[4], 0));
}

static PyObject *
Dispatcher_py_unwind(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    return to_program(exit_event(self, args, nargs, self->ev_unwind, self->ev1[5], 1));
}

static PyObject *
Dispatcher_sites_changed(Dispatcher *self, PyObject *unused)
{
    fnt_slots_free(self->slots, SITE_SLOTS);
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

int
fnt_dispatcher_add_types(PyObject *m)
{
    return fnt_add_type(m, &Dispatcher_Type, "Dispatcher");
}

#endif  /* FNT_HOT_PATH */
