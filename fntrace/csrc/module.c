/* module.c: fntrace._speedups itself - its definition, state and method
 * table, and the map of the extension.
 *
 * Why the extension: in pure Python one traced call costs ~1.5 us (function
 * tracer) and ~3.3 us (function_graph), seven Python frames per call.  The
 * peers record a call in ~0.1 us from C.  This module removes the Python
 * frames from the commonest configurations and changes nothing else.  One
 * file per concern:
 *
 *   module.c               this file: init (multi-phase), module state, functions
 *   cpython_internals.h    the only copy of CPython's frame layouts; version tests
 *   events.h               the event layout constants (the Python schema is the truth)
 *   clock.c/.h             the "local" trace clock (TSC anchored on CLOCK_MONOTONIC)
 *   ring.c/.h              RingCore and its EventQueue: a thread's ring buffer
 *   drain.c                take_all() and encode_buffers(): events out of the rings
 *   recorder.c/.h          the recorders' head and vtable, writing an event
 *   func_recorder.c        FuncRecorder: the function tracer's entry event
 *   graph_recorder.c       GraphStack, GraphRecorder: function_graph
 *   graph_hot.h            their layouts and the short way of a plain event (dispatchers inline it)
 *   identity.c/.h          the identity form <module.Qualname object at 0x...>, per-type prefix
 *   prof_recorder.c        ProfThread, ProfRecorder: the function profiler
 *   sitecache.c/.h         per-code direct-mapped tables and the end of a code
 *   dispatch_monitoring.c  Dispatcher: the sys.monitoring callbacks (3.12+)
 *   dispatch_profile.c     ProfileHook: the 3.11 backend's profile function
 *   framecheck.c           check_frame() and frame_key(): the mirror's self-check
 *   decode.c/.h            ChunkDecoder: a trace file's event chunks into Records
 *   aggregate.c            ReportAggregator: report's per-function numbers from chunks
 *   textbuf.h              the text writers' UTF-8 buffer and Record slot reading
 *   render_graph.c         GraphRenderer: replay's function_graph text of Records
 *   render_chrome.c        ChromeJSON: dump --chrome's JSON events of Records
 *   lzblock.c/.h           lz_compress/lz_decompress: the LZ4 block format (chunk flag 2)
 *
 * The Python side decides when a recorder may be used (recorder.ok) and keeps
 * the same data structures (the events tuples, the stacks), so the two paths
 * can hand over in the middle of a run.  Errors inside a recorder never reach
 * the traced program: they go to the ops' _callback_failed, like the Python
 * trampolines' do.
 */
#include "fnt.h"
#include "value_text.h"
#include "lzblock.h"

#ifndef FNT_HOT_PATH
/* Not verified on this version.  The recorders read interpreter frames and
 * thread state laid out as 3.11-3.13 lay them out; until that is checked
 * against a newer interpreter the module builds as this stub, whose import
 * fails with the reason, and fntrace runs its pure-Python path (_accel.py). */
PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyErr_SetString(PyExc_ImportError,
                    "fntrace's C hot path is verified on Python 3.11-3.13 only; "
                    "the pure-Python path runs instead");
    return NULL;
}
#else

fnt_state *fnt_st;

/* The module whose state fnt_st is (see fnt.h), held for the process's life. */
static PyObject *home;

static PyMethodDef speedups_functions[] = {
    {"local_clock", fnt_local_clock, METH_NOARGS,
     "The \"local\" trace clock in ns: the TSC scaled and anchored on CLOCK_MONOTONIC "
     "where the kernel uses the TSC, else CLOCK_MONOTONIC; never goes backwards."},
    {"check_frame", fnt_check_frame, METH_VARARGS,
     "check_frame(frame, function, first_locals, owner): None when the C mirror reads "
     "this running frame as the interpreter does, else what differs."},
    {"code_gone", fnt_code_gone, METH_O,
     "symbols' report that the code object at this address (its id) is being freed."},
    {"holds_code", fnt_holds_code, METH_O,
     "Whether a per-code table has this address (id of a code object)."},
    {"forget_codes", fnt_forget_codes, METH_NOARGS,
     "Every per-code table forgets every code (symbols.clear)."},
    {"take_all", fnt_take_all, METH_O,
     "Consume every event of these buffers, merged in time order (BufferSet.consume)."},
    {"encode_buffers", fnt_encode_buffers, METH_VARARGS,
     "Consume these buffers and encode their events as one chunk, in one pass."},
    {"value_text", fnt_value_text_fn, METH_VARARGS,
     "value_text(value, max_len, class_rule): value_text.py's text of value, cut to "
     "max_len, rendered by the C recorder's walk; None where that walk hands the value "
     "to the Python walker (for tests)."},
    {"frame_key", fnt_frame_key, METH_O,
     "function_graph's stack key of a running frame (the address of its interpreter "
     "frame, or on 3.11 of its frame object)."},
    {"lz_compress", fnt_lz_compress_fn, METH_O,
     "lz_compress(data): data as one LZ4 block (the trace file's event chunk compression)."},
    {"lz_decompress", fnt_lz_decompress_fn, METH_VARARGS,
     "lz_decompress(block, size): the size bytes an LZ4 block holds; ValueError (why) "
     "when it is not a block of exactly that many."},
    {NULL}
};

/* Every object the state holds, for traverse and clear. */
static PyObject **
state_objects(fnt_state *st, size_t *n)
{
    *n = sizeof(fnt_state) / sizeof(PyObject *);
    return (PyObject **)st;
}

static int
speedups_traverse(PyObject *m, visitproc visit, void *arg)
{
    fnt_state *st = PyModule_GetState(m);
    if (st == NULL)
        return 0;
    size_t n;
    PyObject **objs = state_objects(st, &n);
    for (size_t i = 0; i < n; i++)
        Py_VISIT(objs[i]);
    return 0;
}

static int
speedups_clear(PyObject *m)
{
    fnt_state *st = PyModule_GetState(m);
    if (st == NULL)
        return 0;
    size_t n;
    PyObject **objs = state_objects(st, &n);
    for (size_t i = 0; i < n; i++)
        Py_CLEAR(objs[i]);
    return 0;
}

static void
speedups_free(void *m)
{
    speedups_clear((PyObject *)m);
}

#define INTERN(field, text) \
    if ((st->field = PyUnicode_InternFromString(text)) == NULL) return -1;

static int
state_fill(PyObject *m, fnt_state *st)
{
    INTERN(str_fast, "fast");
    INTERN(str_enter, "enter");
    INTERN(str_has_ret, "has_ret");
    INTERN(str_site, "site");
    INTERN(str_live, "live");
    INTERN(str_local, "local");
    INTERN(str_buf, "buf");
    INTERN(str_new_buffer, "new_buffer");
    INTERN(str_stack, "stack");
    INTERN(str_clock, "clock");
    INTERN(str_write, "write");
    INTERN(str_F, "F");
    INTERN(str_name, "name");
    INTERN(str_code, "code");
    INTERN(str_co_flags, "co_flags");
    INTERN(str_tid, "tid");
    INTERN(str_cpu, "cpu");
    INTERN(str_thread_flags, "thread_flags");
    INTERN(str_E, "E");
    INTERN(str_state, "state");
    INTERN(str_max_len, "max_len");
    INTERN(str_empty, "");
    INTERN(str_comma, ", ");
    INTERN(str_module, "__module__");
    INTERN(str_dunder_dict, "__dict__");
    INTERN(str_class_rule, "class_rule");
    INTERN(str_X, "X");
    INTERN(str_call, "call");
    INTERN(str_filename, "filename");
    INTERN(str_lineno, "lineno");
    PyObject *time_mod = PyImport_ImportModule("time");
    if (time_mod == NULL)
        return -1;
    st->perf_counter_ns = PyObject_GetAttrString(time_mod, "perf_counter_ns");
    st->monotonic_ns = PyObject_GetAttrString(time_mod, "monotonic_ns");
    st->time_ns = PyObject_GetAttrString(time_mod, "time_ns");
    Py_DECREF(time_mod);
    if (st->perf_counter_ns == NULL || st->monotonic_ns == NULL || st->time_ns == NULL)
        return -1;
    st->local_clock_fn = PyObject_GetAttrString(m, "local_clock");
    return st->local_clock_fn == NULL ? -1 : 0;
}

static int
speedups_exec(PyObject *m)
{
    fnt_state *st = PyModule_GetState(m);
    if (state_fill(m, st) < 0)
        return -1;
    if (fnt_ring_add_types(m) < 0 || fnt_graph_recorder_add_types(m) < 0 ||
        fnt_func_recorder_add_types(m) < 0 || fnt_dispatcher_add_types(m) < 0 ||
        fnt_prof_recorder_add_types(m) < 0 || fnt_task_recorder_add_types(m) < 0 ||
        fnt_decode_add_types(m) < 0 || fnt_aggregate_add_types(m) < 0 ||
        fnt_render_graph_add_types(m) < 0 || fnt_render_chrome_add_types(m) < 0)
        return -1;
#ifdef FNT_PROFILE_HOOK
    if (fnt_profile_hook_add_types(m) < 0)
        return -1;
#endif
    if (PyModule_AddIntConstant(m, "FRAME_ARGS", FNT_FRAME_ARGS) < 0 ||
        PyModule_AddIntConstant(m, "VALUE_TEXT_ITEMS", FNT_VT_ITEMS) < 0 ||
        PyModule_AddIntConstant(m, "VALUE_TEXT_LEVEL", FNT_VT_LEVEL) < 0)
        return -1;
    /* The types serve the first module object (a second one, made by importing
     * again after a `del sys.modules[...]`, has its own state for its own
     * functions; the types go on with the first). */
    if (home == NULL) {
        home = Py_NewRef(m);
        fnt_st = st;
    }
    return 0;
}

/* Multi-phase initialisation, so the module can say what it is: its static
 * types and the process-wide tables (fnt_st, the event names, the code tables,
 * the clock) serve one interpreter only, and it is not safe to run without the
 * GIL (free-threaded builds re-enable the GIL on import). */
static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, (void *)speedups_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL}
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fntrace._speedups",
    .m_doc = "fntrace's optional C hot path (see the comment at the top of csrc/module.c).",
    .m_size = sizeof(fnt_state),
    .m_methods = speedups_functions,
    .m_slots = speedups_slots,
    .m_traverse = speedups_traverse,
    .m_clear = speedups_clear,
    .m_free = speedups_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}

#endif  /* FNT_HOT_PATH */
