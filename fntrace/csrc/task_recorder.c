/* task_recorder.c: the asyncio task notes of a task step, written in C.
 *
 * Why: every step of every asyncio task runs through Handle._run, and
 * tracing/tasks.py notes there which task the thread now runs.  Through the
 * Python trampoline and two Python callbacks that cost ~80,000 instructions
 * per step, many times function_graph's own cost of the few calls a step
 * makes.  TaskRecorder is that ops' recorder: it reads the Handle from the
 * frame's first fast local, its callback's owner, the task's number (the
 * tracker's WeakKeyDictionary read directly), and writes the `run N` note as
 * the Python path does.  The rare events (a task seen first at a step, a task
 * that ended) call back into the tracker.
 *
 * TaskThread is one thread's state, shared with the Python path (which uses
 * it too while the extension is there, so the two hand over at any call):
 * the running task, the last `run` note written, and a stack of (task before
 * the step, the step's task or None).
 */
#include "recorder.h"

#ifdef FNT_HOT_PATH

typedef fnt_where Where;

/* ------------------------------------------------------------------------- */
/* TaskThread                                                                 */
/* ------------------------------------------------------------------------- */

typedef struct {
    long long prev;
    PyObject *task;  /* strong, or NULL: a callback that is no task step */
} StepEntry;

/* Steps nest only through a loop run inside a callback: a bound far above
 * what any program nests, so a runaway nesting costs no unbounded memory. */
#define MAX_STEPS 4096

typedef struct {
    PyObject_HEAD
    long long cur;      /* the running task (0: none) */
    long long written;  /* the last run note written (-1: none) */
    StepEntry *stack;
    Py_ssize_t len, cap;
} TaskThread;

static PyTypeObject TaskThread_Type;

static int
TaskThread_init(TaskThread *self, PyObject *args, PyObject *kwds)
{
    if (!PyArg_ParseTuple(args, ":TaskThread"))
        return -1;
    self->cur = 0;
    self->written = -1;
    return 0;
}

static int
TaskThread_traverse(TaskThread *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->len; i++)
        Py_VISIT(self->stack[i].task);
    return 0;
}

static int
TaskThread_clear(TaskThread *self)
{
    Py_ssize_t n = self->len;
    self->len = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        Py_CLEAR(self->stack[i].task);
    return 0;
}

static void
TaskThread_dealloc(TaskThread *self)
{
    PyObject_GC_UnTrack(self);
    TaskThread_clear(self);
    PyMem_Free(self->stack);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Push (prev, task); 0, or -1 with an error (the bound, or memory). */
static int
thread_push(TaskThread *self, long long prev, PyObject *task)
{
    if (self->len == self->cap) {
        if (self->cap >= MAX_STEPS) {
            PyErr_SetString(PyExc_RecursionError, "asyncio task steps nested too deeply");
            return -1;
        }
        Py_ssize_t cap = self->cap ? self->cap * 2 : 8;
        StepEntry *s = PyMem_Realloc(self->stack, cap * sizeof(StepEntry));
        if (s == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->stack = s;
        self->cap = cap;
    }
    self->stack[self->len].prev = prev;
    self->stack[self->len].task = Py_XNewRef(task);
    self->len++;
    return 0;
}

static PyObject *
TaskThread_push(TaskThread *self, PyObject *args)
{
    long long prev;
    PyObject *task;
    if (!PyArg_ParseTuple(args, "LO:push", &prev, &task))
        return NULL;
    if (thread_push(self, prev, task == Py_None ? NULL : task) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
TaskThread_pop(TaskThread *self, PyObject *unused)
{
    if (self->len == 0)
        Py_RETURN_NONE;
    StepEntry *e = &self->stack[--self->len];
    PyObject *task = e->task ? e->task : Py_NewRef(Py_None);  /* the stack's reference */
    e->task = NULL;
    PyObject *prev = PyLong_FromLongLong(e->prev);
    if (prev == NULL) {
        Py_DECREF(task);
        return NULL;
    }
    PyObject *r = PyTuple_Pack(2, prev, task);
    Py_DECREF(prev);
    Py_DECREF(task);
    return r;
}

static Py_ssize_t
TaskThread_len(TaskThread *self)
{
    return self->len;
}

static PyMethodDef TaskThread_methods[] = {
    {"push", (PyCFunction)TaskThread_push, METH_VARARGS,
     "push(prev, task): a step starts (task None: a callback that is no task's step)"},
    {"pop", (PyCFunction)TaskThread_pop, METH_NOARGS,
     "pop() -> (prev, task), or None when no step is open"},
    {NULL}
};

static PyMemberDef TaskThread_members[] = {
    {"cur", T_LONGLONG, offsetof(TaskThread, cur), 0, "the running task (0: none)"},
    {"written", T_LONGLONG, offsetof(TaskThread, written), 0,
     "the last run note this thread wrote (-1: none)"},
    {NULL}
};

static PySequenceMethods TaskThread_seq = {.sq_length = (lenfunc)TaskThread_len};

static PyTypeObject TaskThread_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.TaskThread",
    .tp_basicsize = sizeof(TaskThread),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One thread's asyncio task state: cur, written, and a stack of open steps.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TaskThread_init,
    .tp_dealloc = (destructor)TaskThread_dealloc,
    .tp_traverse = (traverseproc)TaskThread_traverse,
    .tp_clear = (inquiry)TaskThread_clear,
    .tp_methods = TaskThread_methods,
    .tp_members = TaskThread_members,
    .tp_as_sequence = &TaskThread_seq,
};

/* ------------------------------------------------------------------------- */
/* TaskRecorder                                                               */
/* ------------------------------------------------------------------------- */

typedef struct {
    FNT_RECORDER_HEAD
    PyObject *tls;         /* threading.local: .thread is the TaskThread */
    PyObject *numbers;     /* task weak reference -> number (the tracker's) */
    PyObject *types_fn;    /* () -> the Task classes (a tuple), or None while asyncio is not loaded */
    PyObject *task_types;  /* its answer, once it had one (NULL before) */
    PyObject *first_seen;  /* task -> number, for a task no create_task numbered */
    PyObject *note_end;    /* (number, task): a step ended its task */
    PyObject *tag;         /* the TASK event's kind */
    PyObject *runs;        /* "run N" strings already made, N -> str */
    fnt_tls_cache cache;
} TaskRecorder;

static PyObject *str_thread, *str_callback, *str_self, *str_done;

static int
TaskRecorder_init(TaskRecorder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rb", "tls", "numbers", "task_types", "first_seen", "note_end",
                             "tag", NULL};
    PyObject *rb, *tls, *numbers, *types, *first, *end, *tag;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!OOOU", kwlist, &rb, &tls, &PyDict_Type,
                                     &numbers, &types, &first, &end, &tag))
        return -1;
    fnt_recorder_bind((fnt_recorder *)self, rb);
    Py_XSETREF(self->tls, Py_NewRef(tls));
    Py_XSETREF(self->numbers, Py_NewRef(numbers));
    Py_XSETREF(self->types_fn, Py_NewRef(types));
    Py_CLEAR(self->task_types);
    Py_XSETREF(self->first_seen, Py_NewRef(first));
    Py_XSETREF(self->note_end, Py_NewRef(end));
    Py_XSETREF(self->tag, Py_NewRef(tag));
    Py_XSETREF(self->runs, PyDict_New());
    Py_CLEAR(self->cache.obj);
    return self->runs == NULL ? -1 : 0;
}

static int
TaskRecorder_traverse(TaskRecorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->tls);
    Py_VISIT(self->numbers);
    Py_VISIT(self->types_fn);
    Py_VISIT(self->task_types);
    Py_VISIT(self->first_seen);
    Py_VISIT(self->note_end);
    Py_VISIT(self->tag);
    Py_VISIT(self->runs);
    Py_VISIT(self->cache.obj);
    return fnt_recorder_traverse_common((fnt_recorder *)self, visit, arg);
}

static int
TaskRecorder_clear(TaskRecorder *self)
{
    Py_CLEAR(self->tls);
    Py_CLEAR(self->numbers);
    Py_CLEAR(self->types_fn);
    Py_CLEAR(self->task_types);
    Py_CLEAR(self->first_seen);
    Py_CLEAR(self->note_end);
    Py_CLEAR(self->tag);
    Py_CLEAR(self->runs);
    Py_CLEAR(self->cache.obj);
    fnt_recorder_clear_common((fnt_recorder *)self);
    return 0;
}

static void
TaskRecorder_dealloc(TaskRecorder *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    TaskRecorder_clear(self);
    tp->tp_free((PyObject *)self);
}

static TaskThread *
thread_state(TaskRecorder *self, unsigned long long tsid)
{
    return (TaskThread *)fnt_tls_object(&self->cache, self->tls, str_thread,
                                        (PyObject *)&TaskThread_Type, 1, &TaskThread_Type, 1,
                                        tsid);
}

/* The first fast local of the running frame (Handle._run's `self`), borrowed, or NULL. */
static PyObject *
first_local(Where *w)
{
    fnt_anyframe *f = w->iframe;
    if (f == NULL) {
        PyFrameObject *fo = fnt_where_frame(w);
        if (fo == NULL)
            return NULL;
        f = fnt_frame_iframe(fo);
    }
    if (f->code == NULL || !PyCode_Check(f->code) || ((PyCodeObject *)f->code)->co_argcount < 1)
        return NULL;
    return f->localsplus[0];
}

/* The task whose step the Handle runs (new reference), or NULL (none; no error). */
static PyObject *
step_task(TaskRecorder *self, PyObject *handle)
{
    PyObject *cb = PyObject_GetAttr(handle, str_callback);
    if (cb == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *owner;
    if (PyMethod_Check(cb))
        owner = Py_NewRef(PyMethod_GET_SELF(cb));
    else if (PyCFunction_Check(cb))
        owner = Py_XNewRef(PyCFunction_GET_SELF(cb));
    else
        owner = PyObject_GetAttr(cb, str_self);  /* the C Task's step wrapper */
    Py_DECREF(cb);
    if (owner == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (self->task_types == NULL) {  /* asyncio is loaded: a Handle runs */
        PyObject *types = PyObject_CallNoArgs(self->types_fn);
        if (types != NULL && PyTuple_Check(types))
            self->task_types = types;
        else
            Py_XDECREF(types);
        if (self->task_types == NULL) {
            PyErr_Clear();
            Py_DECREF(owner);
            return NULL;
        }
    }
    int is = PyObject_IsInstance(owner, self->task_types);
    if (is <= 0) {
        PyErr_Clear();
        Py_DECREF(owner);
        return NULL;
    }
    return owner;
}

/* The task's number (taken and noted by the tracker when it has none): -1 error. */
static long long
task_number(TaskRecorder *self, PyObject *task)
{
    PyObject *ref = PyWeakref_NewRef(task, NULL);
    if (ref == NULL)
        return -1;
    PyObject *n = PyDict_GetItemWithError(self->numbers, ref);  /* borrowed */
    Py_DECREF(ref);
    if (n != NULL)
        return PyLong_AsLongLong(n);
    if (PyErr_Occurred())
        return -1;
    PyObject *r = PyObject_CallOneArg(self->first_seen, task);
    if (r == NULL)
        return -1;
    long long v = PyLong_AsLongLong(r);
    Py_DECREF(r);
    return v;
}

/* Write "run n": 1 written, 0 not (tracing off, a thread the pid filter
 * leaves out, or a full ring that drops), -1 error. */
static int
write_run(TaskRecorder *self, long long n, unsigned long long tsid)
{
    int on = self->tracing;
    if (on > 0)
        on = fnt_recorder_pid_ok((fnt_recorder *)self, tsid);
    if (on <= 0)
        return on;
    PyObject *key = PyLong_FromLongLong(n);
    if (key == NULL)
        return -1;
    PyObject *info = PyDict_GetItemWithError(self->runs, key);
    if (info != NULL) {
        Py_INCREF(info);
    } else if (PyErr_Occurred() ||
               (info = PyUnicode_FromFormat("run %lld", n)) == NULL ||
               (PyDict_GET_SIZE(self->runs) < 4096 && PyDict_SetItem(self->runs, key, info) < 0)) {
        Py_XDECREF(info);
        Py_DECREF(key);
        return -1;
    }
    Py_DECREF(key);
    long long ts;
    if (fnt_recorder_now((fnt_recorder *)self, &ts) < 0) {
        Py_DECREF(info);
        return -1;
    }
    Py_ssize_t size = EVENT_OVERHEAD + PyUnicode_GET_LENGTH(info);
    PyObject *event = Py_BuildValue("(LnON)", ts, size, self->tag, info);
    if (event == NULL)
        return -1;
    fnt_slot slot = {0};
    slot.kind = 0;
    slot.ts = ts;
    slot.size = (int32_t)size;
    slot.obj = event;
    if (fnt_recorder_write((fnt_recorder *)self, &slot, tsid) < 0)
        return -1;
    return 1;
}

/* The thread now runs task n (as TaskTracker.switch). */
static int
thread_switch(TaskRecorder *self, TaskThread *tt, long long n, unsigned long long tsid)
{
    tt->cur = n;
    if (tt->written == n)
        return 0;
    int r = write_run(self, n, tsid);
    tt->written = r > 0 ? n : -1;
    return r < 0 ? -1 : 0;
}

static int
task_entry(fnt_recorder *rec, PyObject *fn, PyObject *code, Where *where, PyObject *event,
           unsigned long long tsid)
{
    TaskRecorder *self = (TaskRecorder *)rec;
    (void)fn;
    (void)code;
    (void)event;
    TaskThread *tt = thread_state(self, tsid);
    if (tt == NULL)
        return -1;
    Py_INCREF(tt);  /* Python code (first_seen, a clock) may replace the cache's */
    PyObject *handle = first_local(where);
    PyObject *task = handle != NULL ? step_task(self, handle) : NULL;
    long long n = 0;
    if (task != NULL && (n = task_number(self, task)) < 0) {
        Py_DECREF(task);
        Py_DECREF(tt);
        return -1;
    }
    int r = thread_push(tt, tt->cur, task);
    Py_XDECREF(task);
    if (r == 0)
        r = thread_switch(self, tt, n, tsid);
    Py_DECREF(tt);
    return r;
}

static int
task_exit(fnt_recorder *rec, PyObject *fn, PyObject *code, Where *where, PyObject *event,
          PyObject *value, PyObject *exc, unsigned long long tsid)
{
    TaskRecorder *self = (TaskRecorder *)rec;
    (void)fn;
    (void)code;
    (void)where;
    (void)event;
    (void)value;
    (void)exc;
    TaskThread *tt = thread_state(self, tsid);
    if (tt == NULL)
        return -1;
    if (tt->len == 0)
        return 0;
    Py_INCREF(tt);  /* Python code (done, note_end) may replace the cache's */
    StepEntry e = tt->stack[--tt->len];  /* the task's reference is ours now */
    int r = 0;
    if (e.task != NULL) {
        PyObject *done = PyObject_CallMethodNoArgs(e.task, str_done);
        int is = done == NULL ? -1 : PyObject_IsTrue(done);
        Py_XDECREF(done);
        if (is > 0) {
            PyObject *cur = PyLong_FromLongLong(tt->cur);
            PyObject *res = cur == NULL ? NULL
                                        : PyObject_CallFunctionObjArgs(self->note_end, cur,
                                                                       e.task, NULL);
            Py_XDECREF(cur);
            if (res == NULL)
                is = -1;
            Py_XDECREF(res);
        }
        Py_DECREF(e.task);
        r = is < 0 ? -1 : 0;
    }
    if (thread_switch(self, tt, e.prev, tsid) < 0)
        r = -1;
    Py_DECREF(tt);
    return r;
}

static PyMethodDef TaskRecorder_methods[] = {
    FNT_RECORDER_RING_CHANGED,
    {NULL}
};

static PyGetSetDef TaskRecorder_getset[] = {
    FNT_RECORDER_GETSETS,
    {NULL}
};

static const fnt_recorder_ops task_ops = {task_entry, task_exit};

static fnt_recorder_type TaskRecorder_Type = {{
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.TaskRecorder",
    .tp_basicsize = sizeof(TaskRecorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The asyncio task notes of Handle._run (tracing/tasks.py), written in C.",
    .tp_new = fnt_recorder_new,
    .tp_init = (initproc)TaskRecorder_init,
    .tp_dealloc = (destructor)TaskRecorder_dealloc,
    .tp_traverse = (traverseproc)TaskRecorder_traverse,
    .tp_clear = (inquiry)TaskRecorder_clear,
    .tp_methods = TaskRecorder_methods,
    .tp_getset = TaskRecorder_getset,
}, &task_ops};

int
fnt_task_recorder_add_types(PyObject *m)
{
    if (str_thread == NULL) {
        if ((str_thread = PyUnicode_InternFromString("thread")) == NULL ||
            (str_callback = PyUnicode_InternFromString("_callback")) == NULL ||
            (str_self = PyUnicode_InternFromString("__self__")) == NULL ||
            (str_done = PyUnicode_InternFromString("done")) == NULL)
            return -1;
    }
    if (fnt_add_type(m, &TaskThread_Type, "TaskThread") < 0)
        return -1;
    return fnt_add_type(m, &TaskRecorder_Type.type, "TaskRecorder");
}

#endif  /* FNT_HOT_PATH */
