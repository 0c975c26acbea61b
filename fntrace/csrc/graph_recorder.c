/* graph_recorder.c: function_graph's per-thread stack and its entry and exit
 * events, written in C.
 *
 * Why: function_graph records two events per call and keeps a stack of calls
 * per thread (tracers/function_graph.py).  GraphStack is that stack, packed,
 * used by both paths of the tracer; GraphRecorder writes the events of a
 * configuration with no graph filters or threshold without any Python frame,
 * funcgraph-retval and funcgraph-args included (the arguments read from the
 * frame's fast locals, cpython_internals.h).
 */
#include "graph_hot.h"

#ifdef FNT_HOT_PATH

typedef fnt_where Where;
typedef fnt_slot Slot;
typedef fnt_tls_cache TlsCache;

/* ------------------------------------------------------------------------- */
/* GraphStack: function_graph's per-thread stack of calls                     */
/* ------------------------------------------------------------------------- */

static PyTypeObject GraphStack_Type;

/* Room for one more entry (the stack doubles). */
static int
gs_grow(GraphStack *s)
{
    Py_ssize_t ncap = s->cap ? s->cap * 2 : 64;
    GEntry *ne = PyMem_Realloc(s->e, (size_t)ncap * sizeof(GEntry));
    if (ne == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->e = ne;
    s->cap = ncap;
    return 0;
}

FNT_ALWAYS_INLINE int
gs_push(GraphStack *s, void *key, long long ts, int has_ts, long long depth, int state)
{
    if (s->n == s->cap && gs_grow(s) < 0)
        return -1;
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
    fnt_recorder_bind((fnt_recorder *)self, rb);
    Py_XSETREF(self->tls, Py_NewRef(tls));
    Py_XSETREF(self->ev_unwind, Py_NewRef(unwind));
    Py_CLEAR(self->ev_other);
    self->max_depth = 0;
    return 0;
}

static int
GraphRecorder_traverse(GraphRecorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->tls);
    Py_VISIT(self->s_stack.obj);
    Py_VISIT(self->ev_unwind);
    Py_VISIT(self->ev_other);
    Py_VISIT(self->safe_repr);
    if (fnt_value_text_traverse(&self->vt, visit, arg) < 0)
        return -1;
    if (self->ints != NULL) {
        for (int i = 0; i < INT_TEXTS; i++) {
            Py_VISIT(self->ints[i].name);
            Py_VISIT(self->ints[i].text);
        }
    }
    return fnt_recorder_traverse_common((fnt_recorder *)self, visit, arg);
}

static int
GraphRecorder_clear(GraphRecorder *self)
{
    Py_CLEAR(self->tls);
    Py_CLEAR(self->s_stack.obj);
    Py_CLEAR(self->ev_unwind);
    Py_CLEAR(self->ev_other);
    Py_CLEAR(self->safe_repr);
    if (self->ints != NULL) {
        IntText *ints = self->ints;
        self->ints = NULL;
        for (int i = 0; i < INT_TEXTS; i++) {
            Py_CLEAR(ints[i].name);
            Py_CLEAR(ints[i].text);
        }
        PyMem_Free(ints);
    }
    fnt_value_text_clear(&self->vt);
    fnt_recorder_clear_common((fnt_recorder *)self);
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

/* This thread's graph stack: a GraphStack, the type the tracer's Python path
 * uses too. */
static PyObject *
graph_stack(GraphRecorder *self, int create, unsigned long long tsid)
{
    return fnt_tls_object(&self->s_stack, self->tls, fnt_st->str_stack,
                          (PyObject *)&GraphStack_Type, 1, &GraphStack_Type, create, tsid);
}

/* SafeRepr.__call__ (reprs.py) in C where it can be: value_text.py's text by
 * value_text.c (the default), or with repr-call the types SafeRepr renders
 * with repr() itself (None, bool, int, float, complex) and str and bytes (cut
 * before repr, so bounded and never timed), with its text limit.  Anything
 * else is the instance's SafeRepr's to render. */
static PyObject *graph_repr(GraphRecorder *self, PyObject *v);

/* "prefix=tail" (or "tail" when prefix is NULL) as one str, written in place:
 * PyUnicode_FromFormat parses its format and builds through a writer, most of
 * an argument's cost.  NULL without an error when prefix is not ASCII (the
 * caller formats it the general way); tail is ASCII. */
static PyObject *
ascii_join(PyObject *prefix, const char *tail, Py_ssize_t ntail)
{
    Py_ssize_t np = 0;
    if (prefix != NULL) {
        if (!PyUnicode_Check(prefix) || !PyUnicode_IS_ASCII(prefix))
            return NULL;
        np = PyUnicode_GET_LENGTH(prefix) + 1;
    }
    PyObject *s = PyUnicode_New(np + ntail, 127);
    if (s == NULL)
        return NULL;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(s);
    if (prefix != NULL) {
        memcpy(d, PyUnicode_1BYTE_DATA(prefix), (size_t)(np - 1));
        d[np - 1] = '=';
    }
    memcpy(d + np, tail, (size_t)ntail);
    return s;
}

/* "name=text" for two str: in place when both are ASCII, else by PyUnicode_FromFormat. */
static PyObject *
name_equals(PyObject *name, PyObject *text)
{
    if (PyUnicode_IS_ASCII(text)) {
        PyObject *s = ascii_join(name, (const char *)PyUnicode_1BYTE_DATA(text),
                                 PyUnicode_GET_LENGTH(text));
        if (s != NULL || PyErr_Occurred())
            return s;
    }
    return PyUnicode_FromFormat("%U=%U", name, text);
}

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
    if (self->ints == NULL && (self->ints = PyMem_Calloc(INT_TEXTS, sizeof(IntText))) == NULL)
        return PyErr_NoMemory();
    IntText *e = &self->ints[(((uintptr_t)prefix >> 4) ^ ((unsigned long)n * 2654435761UL))
                             & (INT_TEXTS - 1)];
    if (e->text != NULL && e->name == prefix && e->n == n)
        return Py_NewRef(e->text);
    char buf[24], *end = buf + sizeof(buf), *p = end;  /* "%ld", written backwards */
    unsigned long u = n < 0 ? 0UL - (unsigned long)n : (unsigned long)n;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (n < 0)
        *--p = '-';
    PyObject *s = ascii_join(prefix, p, end - p);
    if (s == NULL && !PyErr_Occurred())
        s = PyUnicode_FromFormat("%U=%ld", prefix, n);  /* a non-ASCII name */
    if (s != NULL) {
        PyObject *old_name = e->name, *old_text = e->text;
        e->name = Py_XNewRef(prefix);
        e->text = Py_NewRef(s);
        e->n = n;
        Py_XDECREF(old_name);  /* after the entry is whole: a dealloc may run code */
        Py_XDECREF(old_text);
    }
    return s;
}

static PyObject *
graph_repr(GraphRecorder *self, PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    PyObject *text = graph_small_int(self, NULL, v);
    if (text != NULL)
        return text;
    if (!self->repr_call) {
        /* value_text.py's text, in C where it can be (value_text.c) */
        text = fnt_value_text(&self->vt, NULL, v);
        if (text != NULL || PyErr_Occurred())
            return text;
        return PyObject_CallOneArg(self->safe_repr, v);
    }
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

/* The code and fast locals of the frame a callback runs for (0: none). */
static int
where_fast_locals(Where *w, PyCodeObject **co, PyObject ***localsplus)
{
    PyObject *code;
    fnt_anyframe *f = w->iframe;  /* only ever set on 3.12 and 3.13 */
    if (f == NULL) {
        PyFrameObject *fo = fnt_where_frame(w);
        if (fo == NULL)
            return 0;
        f = fnt_frame_iframe(fo);
    }
    code = f->code;
    if (code == NULL || !PyCode_Check(code))
        return 0;
    *co = (PyCodeObject *)code;
    *localsplus = f->localsplus;
    return 1;
}

/* Up to FEW_PARTS arguments' texts joined by ", ": by hand when all are ASCII
 * (the common case; PyUnicode_Join wants a sequence, a list made and freed per
 * call), else by PyUnicode_Join over a tuple.  The parts stay the caller's. */
#define FEW_PARTS 8
static PyObject *
join_few(PyObject **few, int n)
{
    Py_ssize_t len = 2 * (Py_ssize_t)(n - 1);
    int ascii = 1;
    for (int k = 0; k < n; k++) {
        ascii &= PyUnicode_IS_ASCII(few[k]) != 0;
        len += PyUnicode_GET_LENGTH(few[k]);
    }
    if (!ascii) {
        PyObject *t = PyTuple_New(n);
        if (t == NULL)
            return NULL;
        for (int k = 0; k < n; k++)
            PyTuple_SET_ITEM(t, k, Py_NewRef(few[k]));
        PyObject *text = PyUnicode_Join(fnt_st->str_comma, t);
        Py_DECREF(t);
        return text;
    }
    PyObject *text = PyUnicode_New(len, 127);
    if (text == NULL)
        return NULL;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(text);
    for (int k = 0; k < n; k++) {
        if (k > 0) {
            *d++ = ',';
            *d++ = ' ';
        }
        Py_ssize_t m = PyUnicode_GET_LENGTH(few[k]);
        memcpy(d, PyUnicode_1BYTE_DATA(few[k]), (size_t)m);
        d += m;
    }
    return text;
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
        return Py_NewRef(fnt_st->str_empty);
    int npos = co->co_argcount, nkw = co->co_kwonlyargcount;
    int var = (co->co_flags & CO_VARARGS) != 0, varkw = (co->co_flags & CO_VARKEYWORDS) != 0;
    int total = npos + nkw + var + varkw;
    const char *kinds = PyBytes_AS_STRING(co->co_localspluskinds);
    /* the parts: the first FEW_PARTS in `few`, joined by hand; a list beyond */
    PyObject *few[FEW_PARTS], *parts = NULL, *text = NULL;
    int nfew = 0;
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
        if (part == NULL && !PyErr_Occurred() && !self->repr_call)
            part = fnt_value_text(&self->vt, name, v);
        if (part == NULL && !PyErr_Occurred()) {
            /* the walker's (asked once: a second try in C would ask
             * class_rule again before the walker has seen the class) */
            Py_INCREF(v);
            PyObject *r = self->repr_call ? graph_repr(self, v)
                                          : PyObject_CallOneArg(self->safe_repr, v);
            Py_DECREF(v);
            part = r ? name_equals(name, r) : NULL;
            Py_XDECREF(r);
        }
        if (part == NULL)
            goto fail;
        if (nfew < FEW_PARTS && parts == NULL) {
            few[nfew++] = part;
            continue;
        }
        if (parts == NULL) {  /* past FEW_PARTS: from here on a list */
            if ((parts = PyList_New(0)) == NULL) {
                Py_DECREF(part);
                goto fail;
            }
            for (int k = 0; k < nfew; k++) {
                if (PyList_Append(parts, few[k]) < 0) {
                    Py_DECREF(part);
                    goto fail;
                }
            }
        }
        int r = PyList_Append(parts, part);
        Py_DECREF(part);
        if (r < 0)
            goto fail;
    }
    if (parts != NULL)
        text = PyUnicode_Join(fnt_st->str_comma, parts);
    else if (nfew == 0)
        text = Py_NewRef(fnt_st->str_empty);
    else if (nfew == 1)
        text = Py_NewRef(few[0]);
    else
        text = join_few(few, nfew);
fail:  /* text is NULL when an error brought us here */
    for (int k = 0; k < nfew; k++)
        Py_DECREF(few[k]);
    Py_XDECREF(parts);
    return text;
}

/* An entry the general way (the dispatchers try graph_entry_hot first). */
static int
graph_entry(fnt_recorder *rec, PyObject *fn, PyObject *code, Where *where, PyObject *event,
            unsigned long long tsid)
{
    GraphRecorder *self = (GraphRecorder *)rec;
    (void)code;  /* the vtable's: this recorder needs no code */
    int allowed = fnt_recorder_pid_ok((fnt_recorder *)self, tsid);
    /* A thread the pid filter refuses gets its (empty) stack all the same:
     * its exits then find it in the per-thread cache and return at once,
     * where a missing stack meant a failed attribute lookup (an
     * AttributeError made and dropped) at every exit. */
    PyObject *obj = allowed < 0 ? NULL : graph_stack(self, 1, tsid);
    if (obj == NULL || allowed == 0)
        return obj == NULL ? -1 : 0;
    GraphStack *stack = (GraphStack *)obj;
    long long depth = 0;
    int state = GRAPH_INSIDE;
    if (stack->n > 0) {
        depth = stack->e[stack->n - 1].depth;
        state = stack->e[stack->n - 1].state;
    }
    void *key = fnt_where_key(where);
    /* With no graph filters every function classifies as outside: the state
     * below the caller decides, as in FunctionGraphTracer.entry. */
    if (state == GRAPH_BLOCKED || state == GRAPH_OUTSIDE)
        return gs_push(stack, key, 0, 0, depth, state);
    if ((self->max_depth && depth >= self->max_depth) || !self->tracing)
        return gs_push(stack, key, 0, 0, depth, GRAPH_INSIDE);
    PyObject *args = NULL;  /* a packed entry's NULL args read as None */
    long long size = EVENT_OVERHEAD;
    if (self->args) {
        args = graph_args_text(self, where);
        if (args == NULL)
            return -1;
        size += PyUnicode_GET_LENGTH(args);
    }
    long long now;
    int evcode = fnt_where_evcode(where, event);
    if (evcode < 0 || fnt_recorder_now((fnt_recorder *)self, &now) < 0 ||
        gs_push(stack, key, now, 1, depth + 1, GRAPH_INSIDE) < 0) {
        Py_XDECREF(args);
        return -1;
    }
    return fnt_recorder_emit((fnt_recorder *)self, tsid, EVENT_TAG_ENTRY, (unsigned char)evcode,
                             now, (int32_t)size, (int32_t)depth, 0, Py_NewRef(fn), args);
}

/* An exit the general way (the dispatchers try graph_exit_hot first). */
static int
graph_exit(fnt_recorder *rec, PyObject *fn, PyObject *code, Where *where, PyObject *event,
           PyObject *retval, PyObject *exc, unsigned long long tsid)
{
    GraphRecorder *self = (GraphRecorder *)rec;
    (void)code;
    PyObject *obj = graph_stack(self, 0, tsid);
    if (obj == NULL)
        return -1;
    if (obj == Py_None || ((GraphStack *)obj)->n == 0)
        return 0;  /* no entry seen in this thread (a refused one's stack is empty) */
    GEntry top;
    if (!gs_pop_to((GraphStack *)obj, fnt_where_key(where), &top))
        return 0;  /* its entry was not seen */
    if (!top.has_ts || !self->tracing)
        return 0;
    long long now;
    if (fnt_recorder_now((fnt_recorder *)self, &now) < 0)
        return -1;
    PyObject *value = NULL;  /* a packed exit's NULL value reads as None */
    long long size = EVENT_OVERHEAD;
    /* whether this exit is an unwind, asked only when it matters: by identity with
     * the unwind event or the last event that was not one (held), so that the
     * string compare runs once per distinct event object, not per exit */
    int unwind = 0;
    if (((exc != NULL && exc != Py_None) || self->retval) && event != self->ev_other) {
        unwind = event == self->ev_unwind ||
                 (PyUnicode_Check(event) && PyUnicode_Compare(event, self->ev_unwind) == 0);
        if (!unwind && !PyErr_Occurred())
            Py_XSETREF(self->ev_other, Py_NewRef(event));
    }
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
    }
    int evcode = fnt_where_evcode(where, event);
    if (evcode < 0) {
        Py_XDECREF(value);
        return -1;
    }
    return fnt_recorder_emit((fnt_recorder *)self, tsid, EVENT_TAG_EXIT, (unsigned char)evcode,
                             now, (int32_t)size, (int32_t)(top.depth - 1), now - top.ts,
                             Py_NewRef(fn), value);
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
    PyObject *max_len = PyObject_GetAttr(a[2], fnt_st->str_max_len);
    Py_ssize_t ml = max_len ? PyLong_AsSsize_t(max_len) : -1;
    Py_XDECREF(max_len);
    if (ml < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "safe_repr.max_len < 0");
        return NULL;
    }
    PyObject *call = PyObject_GetAttr(a[2], fnt_st->str_call);
    int repr_call = call ? PyObject_IsTrue(call) : -1;
    Py_XDECREF(call);
    if (repr_call < 0)
        return NULL;
    /* value_text.class_rule, for the C walk (none: every value not rendered
     * above goes to safe_repr) */
    PyObject *rule = NULL;
    if (fnt_optional_attr(a[2], fnt_st->str_class_rule, &rule) < 0)
        return NULL;
    if (rule == Py_None)
        Py_CLEAR(rule);
    Py_XSETREF(self->vt.class_rule, rule);
    self->vt.max_len = ml;
    self->args = args;
    self->retval = retval;
    self->max_len = ml;
    self->repr_call = repr_call;
    Py_XSETREF(self->safe_repr, Py_NewRef(a[2]));
    Py_RETURN_NONE;
}

static PyMethodDef GraphRecorder_methods[] = {
    FNT_RECORDER_RING_CHANGED,
    {"reprs", (PyCFunction)(void (*)(void))GraphRecorder_reprs, METH_FASTCALL,
     "reprs(args, retval, safe_repr): what the events show of values, and how."},
    {NULL}
};

static PyGetSetDef GraphRecorder_getset[] = {
    FNT_RECORDER_GETSETS,
    {"max_depth", (getter)GraphRecorder_get_max_depth, (setter)GraphRecorder_set_max_depth,
     "max_graph_depth (0: no limit)", NULL},
    {NULL}
};

const fnt_recorder_ops fnt_graph_ops = {graph_entry, graph_exit};

static fnt_recorder_type GraphRecorder_Type = {{
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.GraphRecorder",
    .tp_basicsize = sizeof(GraphRecorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "function_graph's entry and exit events, written in C.",
    .tp_new = fnt_recorder_new,
    .tp_init = (initproc)GraphRecorder_init,
    .tp_dealloc = (destructor)GraphRecorder_dealloc,
    .tp_traverse = (traverseproc)GraphRecorder_traverse,
    .tp_clear = (inquiry)GraphRecorder_clear,
    .tp_methods = GraphRecorder_methods,
    .tp_getset = GraphRecorder_getset,
}, &fnt_graph_ops};

int
fnt_graph_recorder_add_types(PyObject *m)
{
    if (fnt_add_type(m, &GraphStack_Type, "GraphStack") < 0 ||
        fnt_add_type(m, &GraphRecorder_Type.type, "GraphRecorder") < 0)
        return -1;
    return 0;
}

#endif  /* FNT_HOT_PATH */
