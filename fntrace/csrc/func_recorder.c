/* func_recorder.c: the function tracer's entry event, written in C.
 *
 * Why: the function tracer with no options set records one event per call,
 * (ts, 64, "F", fn, parent, None, event), as tracers/function.py writes it;
 * here without any Python frame.  The caller's Function is the costly part:
 * a direct-mapped table of callers (sitecache.h) answers most calls.
 */
#include "recorder.h"
#include "sitecache.h"

#ifdef FNT_HOT_PATH

typedef fnt_parent_slot ParentSlot;
typedef fnt_where Where;
typedef fnt_slot Slot;

/* Callers seen: code -> Function, direct-mapped (the code held only when its
 * Function does not guard it, see sitecache.c). */
#define PARENT_SLOTS 1024

typedef struct {
    FNT_RECORDER_HEAD
    PyObject *fn_cache;           /* symbols._cache: id(code) -> Function */
    PyObject *function_for_frame;
    ParentSlot *parents;
    int borrow;                   /* parents is listed in code_tables */
} FuncRecorder;

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
    fnt_recorder_bind((fnt_recorder *)self, rb);
    Py_XSETREF(self->fn_cache, Py_NewRef(cache));
    Py_XSETREF(self->function_for_frame, Py_NewRef(fff));
    if (self->parents == NULL) {
        self->parents = PyMem_Calloc(PARENT_SLOTS, sizeof(ParentSlot));
        if (self->parents == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->borrow = fnt_code_table_add(self->parents, PARENT_SLOTS, 1);
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
    return fnt_recorder_traverse_common((fnt_recorder *)self, visit, arg);
}

static int
FuncRecorder_clear(FuncRecorder *self)
{
    Py_CLEAR(self->fn_cache);
    Py_CLEAR(self->function_for_frame);
    if (self->parents != NULL)
        fnt_parent_slots_free(self->parents, PARENT_SLOTS);
    fnt_recorder_clear_common((fnt_recorder *)self);
    return 0;
}

static void
FuncRecorder_dealloc(FuncRecorder *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    FuncRecorder_clear(self);
    if (self->parents != NULL)
        fnt_code_table_remove(self->parents);
    PyMem_Free(self->parents);
    tp->tp_free((PyObject *)self);
}

/* Remember `fn` as the Function of the caller code `code`. */
static void
parent_fill(FuncRecorder *self, ParentSlot *slot, PyObject *code, PyObject *fn)
{
    int strong = !(self->borrow && fnt_fn_guards(fn, code));
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
    ParentSlot *slot = &self->parents[fnt_ptr_slot(code, PARENT_SLOTS)];
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
            parent_fill(self, &self->parents[fnt_ptr_slot(code, PARENT_SLOTS)], code, fn);
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
        fnt_iframe *p = fnt_iframe_caller((fnt_iframe *)w->iframe);
        if (p == NULL)
            return Py_NewRef(Py_None);
        if (p->code != NULL && PyCode_Check(p->code)) {
            PyObject *fn = parent_cached(self, p->code);
            if (fn != NULL || PyErr_Occurred())
                return fn;
        }
    }
#endif
    return func_parent(self, fnt_where_frame(w));
}

/* One entry event: (ts, 64, "F", fn, parent, None, event). 0 done, -1 error. */
static int
func_entry(fnt_recorder *rec, PyObject *fn, PyObject *code, Where *where, PyObject *event,
           unsigned long long tsid)
{
    FuncRecorder *self = (FuncRecorder *)rec;
    (void)code;  /* the vtable's: this recorder needs no code */
    int on = self->tracing;  /* pushed by Instance.tracing_on's setter */
    if (on > 0)
        on = fnt_recorder_pid_ok((fnt_recorder *)self, tsid);
    if (on <= 0)
        return on;
    PyObject *parent = where_parent(self, where);
    if (parent == NULL)
        return -1;
    long long ts;
    if (fnt_recorder_now((fnt_recorder *)self, &ts) < 0) {
        Py_DECREF(parent);
        return -1;
    }
    int evcode = fnt_where_evcode(where, event);
    if (evcode < 0) {
        Py_DECREF(parent);
        return -1;
    }
    return fnt_recorder_emit((fnt_recorder *)self, tsid, EVENT_TAG_CALL, (unsigned char)evcode,
                             ts, EVENT_OVERHEAD, 0, 0, Py_NewRef(fn), parent);
}

static PyMethodDef FuncRecorder_methods[] = {
    FNT_RECORDER_RING_CHANGED,
    {NULL}
};

static PyGetSetDef FuncRecorder_getset[] = {
    FNT_RECORDER_GETSETS,
    {NULL}
};

static const fnt_recorder_ops func_ops = {func_entry, NULL};

static fnt_recorder_type FuncRecorder_Type = {{
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.FuncRecorder",
    .tp_basicsize = sizeof(FuncRecorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The function tracer's entry event, written in C.",
    .tp_new = fnt_recorder_new,
    .tp_init = (initproc)FuncRecorder_init,
    .tp_dealloc = (destructor)FuncRecorder_dealloc,
    .tp_traverse = (traverseproc)FuncRecorder_traverse,
    .tp_clear = (inquiry)FuncRecorder_clear,
    .tp_methods = FuncRecorder_methods,
    .tp_getset = FuncRecorder_getset,
}, &func_ops};

int
fnt_func_recorder_add_types(PyObject *m)
{
    return fnt_add_type(m, &FuncRecorder_Type.type, "FuncRecorder");
}

#endif  /* FNT_HOT_PATH */
