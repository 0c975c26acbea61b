/* cpython_internals.h: the only place fntrace's C extension knows CPython's
 * private layouts, and every Python-version test of the extension.
 *
 * Why: the recorders read the running interpreter frame (its code, its caller,
 * its fast locals) instead of asking for a frame object: PyEval_GetFrame()
 * allocates one for every call, which cost more than the whole event (~90 ns
 * of ~250).  Those frames are CPython internals, mirrored here by hand for
 * 3.11, 3.12 and 3.13 (the first fields of _PyInterpreterFrame and
 * PyFrameObject's f_frame).  Keeping the one copy here, behind small inline
 * accessors, means a new CPython version is checked in one file;
 * fntrace.core.accel.self_check() (check_frame in framecheck.c) refuses the C
 * path when an interpreter's frames do not read as this mirror says.
 *
 * Feature macros the other files test (never PY_VERSION_HEX itself):
 *   FNT_HOT_PATH      3.11-3.13: the whole extension; else it builds as a stub
 *                     whose import fails with the reason (module.c)
 *   FNT_IFRAME        3.12-3.13: callbacks run with the interpreter frame at hand
 *   FNT_IFRAME311     3.11: interpreter frames reached through frame objects
 *   FNT_PROFILE_HOOK  3.11: the backend is a profile function (dispatch_profile.c)
 *   FNT_FRAME_ARGS    1 when funcgraph-args is read in C (from the fast locals)
 */
#ifndef FNT_CPYTHON_INTERNALS_H
#define FNT_CPYTHON_INTERNALS_H

#include <Python.h>

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
#define FNT_HOT_PATH 1
#endif

#ifdef FNT_HOT_PATH

/* The running thread's state, in a callback (never NULL there): without
 * PyThreadState_Get()'s check, one thread-local read. */
static inline PyThreadState *
fnt_tstate(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

#if PY_VERSION_HEX >= 0x030C0000
/* 3.12 and 3.13: _PyInterpreterFrame's first fields (the same in both) */
#define FNT_IFRAME 1
#define FNT_OWNED_BY_CSTACK 3
typedef struct fnt_iframe {
    PyObject *code;  /* f_code (3.12), f_executable (3.13) */
    struct fnt_iframe *previous;
    PyObject *funcobj, *globals, *builtins, *locals;
    PyFrameObject *frame_obj;
    void *instr;
    int stacktop;
    uint16_t return_offset;
    char owner;
    PyObject *localsplus[1];  /* arguments first, in co_varnames order */
} fnt_iframe;

typedef struct {
    PyObject_HEAD
    PyFrameObject *f_back;
    fnt_iframe *f_frame;
} fnt_frameobject;

/* The thread's running interpreter frame (NULL: none). */
static inline fnt_iframe *
fnt_iframe_current(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    return (fnt_iframe *)ts->current_frame;
#else
    return ts->cframe ? (fnt_iframe *)ts->cframe->current_frame : NULL;
#endif
}

/* The interpreter frame of the caller (frames the C stack owns skipped), or NULL. */
static inline fnt_iframe *
fnt_iframe_caller(fnt_iframe *f)
{
    fnt_iframe *p = f->previous;
    while (p != NULL && p->owner == FNT_OWNED_BY_CSTACK)
        p = p->previous;
    return p;
}

#else
/* 3.11: the profile function gets frame objects; funcgraph-args reads the
 * fast locals of the interpreter frame behind one. */
#define FNT_IFRAME311 1
#define FNT_PROFILE_HOOK 1
typedef struct {
    PyObject *func, *globals, *builtins, *locals;
    PyObject *code;  /* f_code */
    PyFrameObject *frame_obj;
    void *previous, *prev_instr;
    int stacktop;
    char is_entry, owner;
    PyObject *localsplus[1];
} fnt_iframe311;

typedef struct {
    PyObject_HEAD
    PyFrameObject *f_back;
    fnt_iframe311 *f_frame;
} fnt_frameobject311;

/* The thread's running interpreter frame, only to compare (never followed). */
static inline void *
fnt_iframe311_current(PyThreadState *ts)
{
    return ts->cframe != NULL ? (void *)ts->cframe->current_frame : NULL;
}

/* The thread's profile object (the hook's own, when it is installed there). */
static inline PyObject *
fnt_profile_object(PyThreadState *ts)
{
    return ts->c_profileobj;
}

/* Set another thread's profile function (runs the sys.setprofile audit hooks). */
static inline int
fnt_set_profile(PyThreadState *ts, Py_tracefunc func, PyObject *obj)
{
    return _PyEval_SetProfile(ts, func, obj);
}
#endif

/* The interpreter frame behind a frame object, and its code and fast locals:
 * the same two fields in both mirrors. */
#ifdef FNT_IFRAME
typedef fnt_iframe fnt_anyframe;
#define FNT_FRAME_IFRAME(fo) (((fnt_frameobject *)(fo))->f_frame)
#else
typedef fnt_iframe311 fnt_anyframe;
#define FNT_FRAME_IFRAME(fo) (((fnt_frameobject311 *)(fo))->f_frame)
#endif

static inline fnt_anyframe *
fnt_frame_iframe(PyFrameObject *fo)
{
    return FNT_FRAME_IFRAME(fo);
}

#define FNT_FRAME_ARGS 1
#define FNT_CO_FAST_CELL 0x40  /* co_localspluskinds: a cell variable */

/* The exception being raised, taken (new reference; the error indicator cleared). */
static inline PyObject *
fnt_take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *val, *tb;
    PyErr_Fetch(&type, &val, &tb);
    PyErr_NormalizeException(&type, &val, &tb);
    if (tb != NULL)
        PyException_SetTraceback(val, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return val;
#endif
}

/* A type's own dict (new reference; NULL without an error when it has none).
 * 3.12 keeps a static builtin type's dict in the interpreter, not in tp_dict. */
static inline PyObject *
fnt_type_dict(PyTypeObject *t)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyType_GetDict(t);
#else
    return Py_XNewRef(t->tp_dict);
#endif
}

/* getattr(obj, name, absent): 1 found (*out a new reference), 0 absent (*out
 * NULL), -1 error. */
static inline int
fnt_optional_attr(PyObject *obj, PyObject *name, PyObject **out)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(obj, name, out);
#else
    return _PyObject_LookupAttr(obj, name, out);
#endif
}

/* Whether the weak reference `ref` refers to `obj` (runs no Python code). */
static inline int
fnt_weakref_is(PyObject *ref, PyObject *obj)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *target = NULL;
    int ok = 0;
    if (PyWeakref_GetRef(ref, &target) > 0) {
        ok = target == obj;
        Py_DECREF(target);
    }
    PyErr_Clear();
    return ok;
#else
    return PyWeakref_GET_OBJECT(ref) == obj;
#endif
}

#endif  /* FNT_HOT_PATH */
#endif  /* FNT_CPYTHON_INTERNALS_H */
