/* dispatch_profile.c: the profile function of the 3.11 backend, in C.
 *
 * Why: 3.11 has no per-code events: every call and return of every thread
 * reaches the profile function (core/backends/profile.py says how events are
 * told apart).  In Python that function alone cost ~0.6 us per call of
 * untraced code.  Here it is a C Py_tracefunc: code known to be no site is
 * dismissed by one slot compare, a site whose recorder may write is recorded
 * without any Python frame, and everything else goes to the same Python
 * pieces as before (engine.discover, Site.enter, engine.exit_call).
 *
 * The slots cache both answers: a site (filled from engine.sites, the truth)
 * and "no site" (after discover said so).  Every change of the engine's
 * decisions reaches the hook (forget / clear), and a "no site" learnt while a
 * clear happened is not kept (the epoch).
 */
#include "recorder.h"
#include "sitecache.h"

#ifdef FNT_PROFILE_HOOK

typedef fnt_site_slot SiteSlot;
typedef fnt_site_refs SiteRefs;
typedef fnt_where Where;

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
    if (fnt_events_take(events, ev) < 0)
        return -1;
    if (self->slots == NULL) {
        self->slots = PyMem_Calloc(HOOK_SLOTS, sizeof(SiteSlot));
        if (self->slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->borrow = fnt_code_table_add(self->slots, HOOK_SLOTS, 0);
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
    int r = fnt_slots_traverse(self->slots, HOOK_SLOTS, visit, arg);
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
    fnt_slots_free(self->slots, HOOK_SLOTS);
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
        fnt_code_table_remove(self->slots);
    PyMem_Free(self->slots);
    tp->tp_free((PyObject *)self);
}

/* The site of `code` in *refs (new references): 1 a site, 0 no site (or not
 * decided yet, when `discover` is 0), -1 error. */
static int
hook_site(ProfileHook *self, PyObject *code, PyFrameObject *frame, int discover,
          SiteRefs *refs)
{
    SiteSlot *slot = &self->slots[fnt_ptr_slot(code, HOOK_SLOTS)];
    if (slot->code == code) {
        if (slot->site == NULL)
            return 0;
        fnt_refs_take(slot, refs);
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
        int r = fnt_slot_fill(slot, code, site, NULL, self->borrow);
        if (r != 0)
            return r < 0 ? -1 : 0;  /* > 0: unpatched meanwhile */
        fnt_refs_take(slot, refs);
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
    slot = epoch == self->epoch ? &self->slots[fnt_ptr_slot(code, HOOK_SLOTS)] : &one;
    int r = fnt_slot_fill(slot, code, found ? site : NULL, guard, slot == &one ? 0 : self->borrow);
    Py_DECREF(site);
    if (r > 0)
        found = r = 0;  /* unpatched meanwhile: no site for this event */
    if (r == 0 && found)
        fnt_refs_take(slot, refs);
    fnt_slots_free(&one, 1);
    return r < 0 ? -1 : found;
}

/* Forget what is known of `code` (the engine patched or unpatched it). */
static PyObject *
ProfileHook_forget(ProfileHook *self, PyObject *code)
{
    if (self->slots != NULL) {
        SiteSlot *slot = &self->slots[fnt_ptr_slot(code, HOOK_SLOTS)];
        if (slot->code == code)
            fnt_slots_free(slot, 1);
    }
    Py_RETURN_NONE;
}

/* Forget every decision (sites replaced, or a selection that may grow). */
static PyObject *
ProfileHook_clear_method(ProfileHook *self, PyObject *unused)
{
    fnt_slots_free(self->slots, HOOK_SLOTS);
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
    if (fast != NULL && ((fnt_recorder *)fast)->ok) {
        Where w = {frame, NULL};
        unsigned long long tsid = (unsigned long long)PyThreadState_GetID(PyThreadState_Get());
        int rr = fnt_recorder_entry(fast, refs.fn, code, &w, event, tsid);
        if (rr < 0 && fnt_recorder_failed((fnt_recorder *)fast) < 0)
            goto fail;
        fnt_refs_release(&refs);
        return 0;
    }
    PyObject *at = PyLong_FromLong(lasti);
    if (at == NULL)
        goto fail;
    PyObject *args[5] = {refs.fn, refs.site, (PyObject *)frame, event, at};
    PyObject *res = PyObject_Vectorcall(refs.enter, args, 5, NULL);
    Py_DECREF(at);
    if (res == NULL)
        goto fail;
    Py_DECREF(res);
    fnt_refs_release(&refs);
    return 0;
fail:
    fnt_refs_release(&refs);
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
        fnt_refs_release(&refs);
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
    if (fnt_recorder_has_exit(fast)) {
        Where w = {frame, NULL};
        unsigned long long tsid = (unsigned long long)PyThreadState_GetID(PyThreadState_Get());
        if (fnt_recorder_exit(fast, refs.fn, code, &w, event, value, Py_None, tsid) < 0 &&
            fnt_recorder_failed((fnt_recorder *)fast) < 0)
            goto fail;
        fnt_refs_release(&refs);
        return 0;
    }
    PyObject *at = PyLong_FromLong(lasti);
    if (at == NULL)
        goto fail;
    PyObject *args[7] = {refs.fn, refs.site, (PyObject *)frame, event, at, value, Py_None};
    PyObject *res = PyObject_Vectorcall(self->exit_call, args, 7, NULL);
    Py_DECREF(at);
    if (res == NULL)
        goto fail;
    Py_DECREF(res);
    fnt_refs_release(&refs);
    return 0;
fail:
    fnt_refs_release(&refs);
    return -1;
}

/* The Py_tracefunc.  Only Python calls and returns matter (C calls are
 * ignored, as by the Python hook).  A failure of fntrace itself must not
 * reach the traced program: it is reported as unraisable and the program goes
 * on; KeyboardInterrupt is raised again in the program (fnt_interrupt_later). */
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
    if (r < 0 && fnt_interrupt_later())
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
        if (fnt_set_profile(ts, hook_func, (PyObject *)self) < 0)
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
        if (fnt_profile_object(ts) != (PyObject *)self)
            continue;
        if (fnt_set_profile(ts, NULL, NULL) < 0)
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

int
fnt_profile_hook_add_types(PyObject *m)
{
    return fnt_add_type(m, &ProfileHook_Type, "ProfileHook");
}

#endif  /* FNT_PROFILE_HOOK */
