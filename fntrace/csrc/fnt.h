/* fnt.h: what every file of fntrace._speedups shares.
 *
 * Why: the extension is one module compiled from several translation units
 * (one concern each, see module.c).  Names one file gives another carry the
 * fnt_ prefix and hidden visibility (FNT_HIDDEN, and -fvisibility=hidden in
 * setup.py), so the shared object exports PyInit__speedups alone.  This header
 * holds the module state and the module-level functions' prototypes; each
 * concern's own header holds its types.
 */
#ifndef FNT_H
#define FNT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "cpython_internals.h"

#ifdef FNT_HOT_PATH
#include <structmember.h>
#include <stdint.h>
#include "events.h"

#if defined(__GNUC__)
#define FNT_HIDDEN __attribute__((visibility("hidden")))
#else
#define FNT_HIDDEN
#endif

/* For the few per-event helpers the compiler would otherwise keep out of line
 * (a call and its prologue cost more than their bodies). */
#if defined(__GNUC__)
#define FNT_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define FNT_ALWAYS_INLINE static inline
#endif

/* For a rare branch of an inline short way (a call to the vDSO clock): kept
 * out of line so that the short way pays none of its register saving. */
#if defined(__GNUC__)
#define FNT_NOINLINE __attribute__((noinline))
#else
#define FNT_NOINLINE
#endif

/* The slot of a pointer in a direct-mapped table of n (a power of two) slots. */
static inline size_t
fnt_ptr_slot(void *p, size_t n)
{
    uintptr_t v = (uintptr_t)p;
    return (size_t)((v >> 4) ^ (v >> 14)) & (n - 1);
}

/* The module's state: the Python objects it looks up once (attribute names,
 * the time module's clocks, its own local_clock). */
typedef struct {
    PyObject *str_fast, *str_enter, *str_has_ret, *str_site, *str_live, *str_local,
        *str_buf, *str_new_buffer, *str_stack, *str_clock, *str_write,
        *str_F, *str_E, *str_X, *str_name, *str_code, *str_co_flags, *str_tid, *str_cpu,
        *str_thread_flags, *str_state, *str_max_len, *str_empty, *str_comma,
        *str_call, *str_filename, *str_lineno, *str_module, *str_dunder_dict, *str_class_rule;
    PyObject *perf_counter_ns;  /* time.perf_counter_ns: read natively */
    PyObject *monotonic_ns;     /* time.monotonic_ns: the same clock on Linux */
    PyObject *time_ns;          /* time.time_ns: CLOCK_REALTIME */
    PyObject *local_clock_fn;   /* the module's local_clock, read natively */
} fnt_state;

/* The state the types read.  A process-wide pointer, not a lookup: the types
 * are static (shared by every module object; they cannot name "their" module)
 * and read these names in their callbacks, where a lookup through the type
 * would cost instructions on every traced call.  It is the state of the first
 * module object executed, which module.c keeps alive for the process's life
 * (the lifetime of the static types that use it). */
extern FNT_HIDDEN fnt_state *fnt_st;

/* Module-level functions (the method table is module.c's). */
FNT_HIDDEN PyObject *fnt_local_clock(PyObject *module, PyObject *unused);
FNT_HIDDEN PyObject *fnt_check_frame(PyObject *module, PyObject *args);
FNT_HIDDEN PyObject *fnt_frame_key(PyObject *module, PyObject *frame);
FNT_HIDDEN PyObject *fnt_code_gone(PyObject *module, PyObject *arg);
FNT_HIDDEN PyObject *fnt_holds_code(PyObject *module, PyObject *arg);
FNT_HIDDEN PyObject *fnt_forget_codes(PyObject *module, PyObject *unused);
FNT_HIDDEN PyObject *fnt_take_all(PyObject *module, PyObject *buffers);
FNT_HIDDEN PyObject *fnt_encode_buffers(PyObject *module, PyObject *args);
FNT_HIDDEN PyObject *fnt_value_text_fn(PyObject *module, PyObject *args);  /* value_text.c */

/* Each concern readies its types and adds them to the module (0, or -1). */
FNT_HIDDEN int fnt_ring_add_types(PyObject *m);
FNT_HIDDEN int fnt_func_recorder_add_types(PyObject *m);
FNT_HIDDEN int fnt_graph_recorder_add_types(PyObject *m);
FNT_HIDDEN int fnt_prof_recorder_add_types(PyObject *m);
FNT_HIDDEN int fnt_dispatcher_add_types(PyObject *m);
FNT_HIDDEN int fnt_task_recorder_add_types(PyObject *m);  /* task_recorder.c */
FNT_HIDDEN int fnt_decode_add_types(PyObject *m);  /* decode.c */
FNT_HIDDEN int fnt_aggregate_add_types(PyObject *m);  /* aggregate.c */
FNT_HIDDEN int fnt_render_graph_add_types(PyObject *m);  /* render_graph.c */
FNT_HIDDEN int fnt_render_chrome_add_types(PyObject *m);  /* render_chrome.c */
#ifdef FNT_PROFILE_HOOK
FNT_HIDDEN int fnt_profile_hook_add_types(PyObject *m);
#endif

/* Ready a static type and add it to the module under its short name. */
static inline int
fnt_add_type(PyObject *m, PyTypeObject *type, const char *name)
{
    if (PyType_Ready(type) < 0)
        return -1;
    return PyModule_AddObjectRef(m, name, (PyObject *)type);
}

#endif  /* FNT_HOT_PATH */
#endif  /* FNT_H */
