/* The floor of a sys.monitoring tracer: callbacks that return None at once.
 *
 * bench/instructions.py builds this file into a throw-away directory and
 * registers `noop` for PY_START and PY_RETURN: what is left of a traced call's
 * cost is then CPython's own dispatch of the two events (building the vector
 * call, the call itself), which no tracer written on sys.monitoring can go
 * under.  `counted` is the same callback plus one increment, read back with
 * `count()`, so that a test can prove the events really reach the extension.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static unsigned long long calls;

static PyObject *
noop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self; (void)args; (void)nargs;
    Py_RETURN_NONE;
}

static PyObject *
counted(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self; (void)args; (void)nargs;
    calls++;
    Py_RETURN_NONE;
}

static PyObject *
count(PyObject *self, PyObject *unused)
{
    (void)self; (void)unused;
    return PyLong_FromUnsignedLongLong(calls);
}

static PyMethodDef methods[] = {
    {"noop", (PyCFunction)(void (*)(void))noop, METH_FASTCALL,
     "A sys.monitoring callback that returns None at once."},
    {"counted", (PyCFunction)(void (*)(void))counted, METH_FASTCALL,
     "noop plus one increment of the counter count() reads."},
    {"count", count, METH_NOARGS, "How many times counted() ran."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fntrace_floor",
    "No-op sys.monitoring callbacks: the floor a tracer's cost is measured against.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fntrace_floor(void)
{
    return PyModule_Create(&module);
}
