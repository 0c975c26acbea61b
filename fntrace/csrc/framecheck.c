/* framecheck.c: the frame mirror's module functions - frame_key() and the
 * self-check fntrace.core.accel runs before it lets the C path run.
 *
 * Why: the recorders read CPython's interpreter frames through the mirror in
 * cpython_internals.h.  On an interpreter whose layout differs (a new patch
 * release, another build) they must not run at all: check_frame() compares
 * what the mirror reads with what the interpreter says, and frame_key() gives
 * the Python path the same stack keys the recorders use.
 */
#include "fnt.h"

#ifdef FNT_HOT_PATH

#ifdef FNT_IFRAME
PyObject *
fnt_frame_key(PyObject *module, PyObject *frame)
{
    if (!PyFrame_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "frame_key() needs a frame");
        return NULL;
    }
    return PyLong_FromVoidPtr(((fnt_frameobject *)frame)->f_frame);
}
#else
/* 3.11: the profile hook has the frame object of every call, alive until the
 * call ends: function_graph keys a frame by its address. */
PyObject *
fnt_frame_key(PyObject *module, PyObject *frame)
{
    if (!PyFrame_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "frame_key() needs a frame");
        return NULL;
    }
    return PyLong_FromVoidPtr(frame);
}
#endif

/* ------------------------------------------------------------------------- */
/* The mirror's self-check                                                    */
/* ------------------------------------------------------------------------- */

/* The interpreter frame behind `frame` read through this file's mirror of
 * CPython's layout, against what the interpreter itself says of it: its code,
 * function, globals, frame object, owner, instruction offset, previous frame
 * and the values of its first locals (`args`).  The caller passes its own
 * running frame (fntrace.core.accel does, at import), so the frame is also the
 * thread's current one.  None when everything agrees, else a one-line text
 * saying what does not: fntrace then keeps to its pure-Python path.  Every
 * read stays inside the memory the mirror says the frame has, and pointers
 * are compared before they are followed. */
PyObject *
fnt_check_frame(PyObject *module, PyObject *args)
{
    PyObject *frame, *func, *values;
    int owner;
    if (!PyArg_ParseTuple(args, "O!OO!i", &PyFrame_Type, &frame, &func, &PyTuple_Type,
                          &values, &owner))
        return NULL;
    PyCodeObject *code = PyFrame_GetCode((PyFrameObject *)frame);
    PyFrameObject *back = PyFrame_GetBack((PyFrameObject *)frame);
    PyObject *globals = PyFrame_GetGlobals((PyFrameObject *)frame);
    const char *bad = NULL;
    int lasti = PyFrame_GetLasti((PyFrameObject *)frame);
#ifdef FNT_IFRAME
    fnt_iframe *f = ((fnt_frameobject *)frame)->f_frame;
    fnt_iframe *cur = fnt_iframe_current(PyThreadState_Get());
    if (f == NULL)
        bad = "no interpreter frame behind the frame object";
    else if (f != cur)
        bad = "the frame object's interpreter frame is not the thread's current frame";
    else if (f->code != (PyObject *)code)
        bad = "code";
    else if (f->frame_obj != (PyFrameObject *)frame)
        bad = "frame object";
    else if (f->funcobj != func)
        bad = "function";
    else if (f->globals != globals)
        bad = "globals";
    else if (f->owner != owner)
        bad = "owner";
    else if ((char *)f->instr - (char *)code->co_code_adaptive != lasti)
        bad = "instruction offset";
    else {
        fnt_iframe *p = fnt_iframe_caller(f);
        PyObject *want = back != NULL ? (PyObject *)PyFrame_GetCode(back) : NULL;
        if ((p == NULL) != (want == NULL) || (p != NULL && p->code != want))
            bad = "previous frame";
        Py_XDECREF(want);
    }
#else
    fnt_iframe311 *f = ((fnt_frameobject311 *)frame)->f_frame;
    void *cur = fnt_iframe311_current(PyThreadState_Get());
    if (f == NULL)
        bad = "no interpreter frame behind the frame object";
    else if ((void *)f != cur)  /* compared before it is followed */
        bad = "the frame object's interpreter frame is not the thread's current frame";
    else if (f->code != (PyObject *)code)
        bad = "code";
    else if (f->frame_obj != (PyFrameObject *)frame)
        bad = "frame object";
    else if (f->func != func)
        bad = "function";
    else if (f->globals != globals)
        bad = "globals";
    else if (f->owner != owner)
        bad = "owner";
    else if ((char *)f->prev_instr - (char *)code->co_code_adaptive != lasti)
        bad = "instruction offset";
    else {
        fnt_iframe311 *p = (fnt_iframe311 *)f->previous;
        /* 3.11 has no C-stack-owned frames: the previous frame is the caller's */
        PyObject *want = back != NULL ? (PyObject *)PyFrame_GetCode(back) : NULL;
        if ((p == NULL) != (want == NULL) || (p != NULL && p->code != want))
            bad = "previous frame";
        Py_XDECREF(want);
    }
#endif
    if (bad == NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(values); i++) {
            if (i >= code->co_nlocalsplus || f->localsplus[i] != PyTuple_GET_ITEM(values, i)) {
                bad = "locals";
                break;
            }
        }
    }
    Py_DECREF(code);
    Py_XDECREF(back);
    Py_DECREF(globals);
    if (bad != NULL)
        return PyUnicode_FromFormat("the C extension's view of CPython's frames does not "
                                    "match this interpreter (%s)", bad);
    Py_RETURN_NONE;
}

#endif  /* FNT_HOT_PATH */
