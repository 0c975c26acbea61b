/* task_recorder.c: the asyncio task notes, written in C.
 *
 * Why: every step of every asyncio task runs through Handle._run (each
 * iteration of the loop through BaseEventLoop._run_once), every task
 * through create_task (and on 3.11/3.12 _set_task_name), and tracing/tasks.py
 * notes there which task the thread runs, and each task's name, creator and
 * end.  Through the Python trampoline and callbacks that cost ~80,000
 * instructions per step and ~150,000 per task, many times function_graph's
 * own cost of the few calls a step makes.  TaskRecorder is the recorder of
 * the ops (told apart by their code's name): it reads the Handle (or
 * create_task's return value, or _set_task_name's arguments) from the frame,
 * the callback's owner, the task's number (the tracker's WeakKeyDictionary
 * read and written directly, behind a small cache), the creating function
 * (the frames below create_task), and writes the notes as the Python path
 * does, their text put together from ASCII parts without Python calls. *
 * TaskThread is one thread's state, shared with the Python path (which uses
 * it too while the extension is there, so the two hand over at any call):
 * the running task, the last `run` note written, the task of the step begun
 * last (its end is noted when the next callback or the loop's iteration
 * begins: Handle._run's exit is not watched, an event per step saved), and
 * a stack of what an iteration (_run_once) saved.
 */
#include "recorder.h"

#ifdef FNT_HOT_PATH

typedef fnt_where Where;

/* ------------------------------------------------------------------------- */
/* TaskThread                                                                 */
/* ------------------------------------------------------------------------- */

typedef struct {
    long long prev;
    PyObject *task;  /* strong, or NULL: the step then running (none, or no task's) */
    long long n;     /* that task's number */
} StepEntry;

/* Steps nest only through a loop run inside a callback: a bound far above
 * what any program nests, so a runaway nesting costs no unbounded memory. */
#define MAX_STEPS 4096

/* A step not begun at Handle._run (3.12+: seen by asyncio's current-task
 * dictionary changing): an eager task's first step, run inside its
 * constructor, or a step of a loop that runs its callbacks in C (uvloop). */
typedef struct {
    PyObject *task;        /* strong */
    PyObject *key;         /* the loop: the dictionary's key (strong) */
    PyObject *prev_value;  /* the key's value before the step (strong), NULL: none */
    long long prev;        /* the running task before (its number) */
    long long n;           /* the task's number */
    int unnamed;           /* numbered at this step: its `new` note is due at its end */
} ForeignStep;

typedef struct {
    PyObject_HEAD
    long long cur;      /* the running task (0: none) */
    long long written;  /* the last run note written (-1: none) */
    PyObject *last;     /* the task of the step begun last (strong), or NULL */
    long long last_n;   /* its number */
    StepEntry *stack;
    Py_ssize_t len, cap;
    ForeignStep *fstack;  /* the open steps not begun at Handle._run */
    Py_ssize_t flen, fcap;
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
    for (Py_ssize_t i = 0; i < self->flen; i++) {
        Py_VISIT(self->fstack[i].task);
        Py_VISIT(self->fstack[i].key);
        Py_VISIT(self->fstack[i].prev_value);
    }
    Py_VISIT(self->last);
    return 0;
}

static int
TaskThread_clear(TaskThread *self)
{
    Py_ssize_t n = self->len;
    self->len = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        Py_CLEAR(self->stack[i].task);
    n = self->flen;
    self->flen = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_CLEAR(self->fstack[i].task);
        Py_CLEAR(self->fstack[i].key);
        Py_CLEAR(self->fstack[i].prev_value);
    }
    Py_CLEAR(self->last);
    return 0;
}

static void
TaskThread_dealloc(TaskThread *self)
{
    PyObject_GC_UnTrack(self);
    TaskThread_clear(self);
    PyMem_Free(self->stack);
    PyMem_Free(self->fstack);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Push (prev, task, n); 0, or -1 with an error (the bound, or memory). */
static int
thread_push(TaskThread *self, long long prev, PyObject *task, long long n)
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
    self->stack[self->len].n = n;
    self->len++;
    return 0;
}

static PyObject *
TaskThread_push(TaskThread *self, PyObject *args)
{
    long long prev, n = 0;
    PyObject *task;
    if (!PyArg_ParseTuple(args, "LO|L:push", &prev, &task, &n))
        return NULL;
    if (thread_push(self, prev, task == Py_None ? NULL : task, n) < 0)
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
    return Py_BuildValue("(LNL)", e->prev, task, e->n);
}

static Py_ssize_t
TaskThread_len(TaskThread *self)
{
    return self->len;
}

static PyMethodDef TaskThread_methods[] = {
    {"push", (PyCFunction)TaskThread_push, METH_VARARGS,
     "push(prev, task, n=0): save the running task and the last step's task and number"},
    {"pop", (PyCFunction)TaskThread_pop, METH_NOARGS,
     "pop() -> (prev, task, n), or None when nothing is saved"},
    {NULL}
};

static PyMemberDef TaskThread_members[] = {
    {"cur", T_LONGLONG, offsetof(TaskThread, cur), 0, "the running task (0: none)"},
    {"written", T_LONGLONG, offsetof(TaskThread, written), 0,
     "the last run note this thread wrote (-1: none)"},
    {"last", T_OBJECT, offsetof(TaskThread, last), 0,
     "the task of the step begun last (None: none, or a callback that is no task's)"},
    {"last_n", T_LONGLONG, offsetof(TaskThread, last_n), 0, "that task's number"},
    {NULL}
};

static PySequenceMethods TaskThread_seq = {.sq_length = (lenfunc)TaskThread_len};

static PyTypeObject TaskThread_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.TaskThread",
    .tp_basicsize = sizeof(TaskThread),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One thread's asyncio task state: cur, written, last, last_n, and a stack of "
              "saved (cur, last, last_n).",
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

/* The watched functions a TaskRecorder serves, told apart by their code's name
 * (Handle._run, BaseEventLoop._run_once, create_task, _set_task_name). */
enum { ROLE_NONE, ROLE_RUN, ROLE_LOOP, ROLE_CREATE, ROLE_NAME, ROLE_RUNNING, ROLE_UVLOOP };

/* Direct-mapped caches (their size a power of two): tasks' numbers, the
 * "run N" strings of the first task numbers, creating functions' names. */
#define KNOWN_SLOTS 4096
#define RUN_STRS 1024
#define FUNC_SLOTS 64

typedef struct {
    PyObject *ref;  /* a weak reference to the task (strong), or NULL */
    long long n;
} KnownTask;

typedef struct {
    PyObject *code, *module, *text;  /* strong, or NULL: text is code's name run in module */
} FuncName;

/* What a type's instances need looked up, found once per type (a step's
 * Handle, its callback, its task), each read then as the type's descriptor
 * reads it; every lookup through getattr was ~200 instructions a step. */
#define TYPE_SLOTS 8
typedef struct {
    PyTypeObject *type;  /* strong, or NULL: a free entry */
    int is_task;         /* an asyncio Task (C or pure, or a subclass) */
    int is_gather;       /* asyncio's _GatheringFuture (gather's outer future), or a subclass */
    PyMemberDef *callback;  /* a Handle's _callback slot (NULL: looked up by name) */
    PyMemberDef *args;      /* a Handle's _args slot (NULL: looked up by name) */
    PyGetSetDef *self_get;  /* a callback's __self__ getter (NULL: looked up by name) */
    PyObject *done;      /* a task's unbound done (strong, or NULL) */
} TypeCache;

typedef struct {
    FNT_RECORDER_HEAD
    PyObject *tls;         /* threading.local: .thread is the TaskThread */
    PyObject *numbers;     /* task weak reference -> number (the tracker's WeakKeyDictionary's) */
    PyObject *forget;      /* its weak references' callback: forget_task bound to it */
    PyObject *ended;       /* set of the numbers whose end is noted */
    PyObject *types_fn;    /* () -> (the Task classes, gather's future class), or None while
                              asyncio is not loaded */
    PyObject *task_types;  /* its answer's Task classes (a tuple), once it had one (NULL before) */
    PyObject *gather_type; /* its answer's gather future class (with task_types) */
    PyMethodDef *wakeup_def;  /* the C Task's task_wakeup, once seen (NULL before) */
    PyObject *current_tasks;  /* asyncio's loop -> running task dictionary, watched (3.12+) */
    PyObject *stepping;    /* the task of the step Handle._run began last (borrowed: compared only) */
    Py_ssize_t foreign;    /* open steps not begun at Handle._run, all threads (a hint: >= the truth) */
    int want;              /* the dictionary watched: 0 no, 1 until the next Handle._run, 2 always */
    PyObject *quote;       /* str -> its JSON text (json's encode_basestring_ascii) */
    PyObject *tag;         /* the TASK event's kind */
    long long next;        /* the next task number (the tracker's take_number too) */
    fnt_tls_cache cache;
    TypeCache types[TYPE_SLOTS];  /* per type: how a step's task and its state are read */
    int type_next;                /* the entry replaced next */
    KnownTask known[KNOWN_SLOTS];  /* numbers looked up lately (the table has them all) */
    PyObject *runs[RUN_STRS];      /* "run N" made (N < RUN_STRS), or NULL */
    FuncName funcs[FUNC_SLOTS];
} TaskRecorder;

/* Drop the caches' references (init and clear). */
static void
caches_clear(TaskRecorder *self)
{
    for (int i = 0; i < TYPE_SLOTS; i++) {
        Py_CLEAR(self->types[i].type);
        Py_CLEAR(self->types[i].done);
    }
    for (int i = 0; i < KNOWN_SLOTS; i++)
        Py_CLEAR(self->known[i].ref);
    for (int i = 0; i < RUN_STRS; i++)
        Py_CLEAR(self->runs[i]);
    for (int i = 0; i < FUNC_SLOTS; i++) {
        Py_CLEAR(self->funcs[i].code);
        Py_CLEAR(self->funcs[i].module);
        Py_CLEAR(self->funcs[i].text);
    }
}

static PyObject *str_thread, *str_callback, *str_self, *str_done, *str_cancelled,
    *str_exception, *str_get_name, *str_name, *str_run, *str_create_task, *str_set_task_name,
    *str_asyncio, *str_asyncio_dot, *str_webloop, *str_state_done, *str_state_cancelled,
    *str_unknown, *str_run_once, *str_args, *str_children, *str_wakeup, *str_is_running,
    *str_new_event_loop;

/* A dead task's entry out of the numbers: the weak reference's callback, as
 * WeakKeyDictionary's own (a Python function, ~1,800 instructions a task,
 * which that dictionary's deferral while it is iterated needs; nothing
 * iterates this one).  A key already gone is no error. */
static PyObject *
forget_task(PyObject *numbers, PyObject *ref)
{
    if (PyDict_DelItem(numbers, ref) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError))
            return NULL;
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

static PyMethodDef forget_def = {"forget_task", forget_task, METH_O,
                                 "Drop a dead task's weak reference from the numbers."};

static int
TaskRecorder_init(TaskRecorder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rb", "tls", "numbers", "ended", "task_types", "quote", "tag",
                             "prefix", NULL};
    PyObject *rb, *tls, *numbers, *ended, *types, *quote, *tag, *prefix;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!O!OOUU", kwlist, &rb, &tls, &PyDict_Type,
                                     &numbers, &PySet_Type, &ended, &types, &quote, &tag,
                                     &prefix))
        return -1;
    PyObject *forget = PyCFunction_New(&forget_def, numbers);
    if (forget == NULL)
        return -1;
    if (fnt_task_tag == NULL) {  /* the schema's strings: the same for every recorder */
        fnt_task_tag = Py_NewRef(tag);
        fnt_task_prefix = Py_NewRef(prefix);
    }
    fnt_recorder_bind((fnt_recorder *)self, rb);
    Py_XSETREF(self->tls, Py_NewRef(tls));
    Py_XSETREF(self->numbers, Py_NewRef(numbers));
    Py_XSETREF(self->forget, forget);
    Py_XSETREF(self->ended, Py_NewRef(ended));
    Py_XSETREF(self->types_fn, Py_NewRef(types));
    Py_CLEAR(self->task_types);
    Py_CLEAR(self->gather_type);
    self->wakeup_def = NULL;
    Py_XSETREF(self->quote, Py_NewRef(quote));
    Py_XSETREF(self->tag, Py_NewRef(tag));
    Py_CLEAR(self->cache.obj);
    caches_clear(self);
    self->next = 1;
    return 0;
}

static int
TaskRecorder_traverse(TaskRecorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->tls);
    Py_VISIT(self->numbers);
    Py_VISIT(self->forget);
    Py_VISIT(self->ended);
    Py_VISIT(self->types_fn);
    Py_VISIT(self->task_types);
    Py_VISIT(self->gather_type);
    Py_VISIT(self->current_tasks);
    Py_VISIT(self->quote);
    Py_VISIT(self->tag);
    Py_VISIT(self->cache.obj);
    for (int i = 0; i < KNOWN_SLOTS; i++)
        Py_VISIT(self->known[i].ref);
    for (int i = 0; i < FUNC_SLOTS; i++) {
        Py_VISIT(self->funcs[i].code);
        Py_VISIT(self->funcs[i].module);
    }
    for (int i = 0; i < TYPE_SLOTS; i++) {
        Py_VISIT(self->types[i].type);
        Py_VISIT(self->types[i].done);
    }
    return fnt_recorder_traverse_common((fnt_recorder *)self, visit, arg);
}

static void unwatch(TaskRecorder *self);

static int
TaskRecorder_clear(TaskRecorder *self)
{
    unwatch(self);
    Py_CLEAR(self->tls);
    Py_CLEAR(self->numbers);
    Py_CLEAR(self->forget);
    Py_CLEAR(self->ended);
    Py_CLEAR(self->types_fn);
    Py_CLEAR(self->task_types);
    Py_CLEAR(self->gather_type);
    Py_CLEAR(self->quote);
    Py_CLEAR(self->tag);
    Py_CLEAR(self->cache.obj);
    caches_clear(self);
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

static int
same_str(PyObject *a, PyObject *b)
{
    return a == b || (PyUnicode_Check(a) && PyUnicode_Compare(a, b) == 0);
}

/* Which watched function `code` is (by its name: the ops's filter chose the functions). */
static int
role_of(PyObject *code)
{
    if (!PyCode_Check(code))
        return ROLE_NONE;
    PyObject *name = ((PyCodeObject *)code)->co_name;
    /* co_name is interned: the same object as ours, but for a copy's code */
    if (name == str_run)
        return ROLE_RUN;
    if (name == str_run_once)
        return ROLE_LOOP;
    if (name == str_create_task)
        return ROLE_CREATE;
    if (name == str_set_task_name)
        return ROLE_NAME;
    if (same_str(name, str_run))
        return ROLE_RUN;
    if (same_str(name, str_run_once))
        return ROLE_LOOP;
    if (same_str(name, str_create_task))
        return ROLE_CREATE;
    if (same_str(name, str_set_task_name))
        return ROLE_NAME;
    if (same_str(name, str_is_running))
        return ROLE_RUNNING;
    if (same_str(name, str_new_event_loop))
        return ROLE_UVLOOP;
    return ROLE_NONE;
}

/* The running interpreter frame of a callback, or NULL. */
static fnt_anyframe *
running_iframe(Where *w)
{
    if (w->iframe != NULL)
        return w->iframe;
    PyFrameObject *fo = fnt_where_frame(w);
    return fo == NULL ? NULL : fnt_frame_iframe(fo);
}

/* The i-th fast local of the running frame (an argument of the watched function), borrowed, or NULL. */
static PyObject *
local_at(Where *w, int i)
{
    fnt_anyframe *f = running_iframe(w);
    if (f == NULL || f->code == NULL || !PyCode_Check(f->code) ||
        ((PyCodeObject *)f->code)->co_argcount <= i)
        return NULL;
    return f->localsplus[i];
}

/* asyncio's classes, asked for once asyncio is loaded (one of its functions
 * runs): 1 known, 0 not (never an error). */
static int
load_types(TaskRecorder *self)
{
    if (self->task_types != NULL)
        return 1;
    PyObject *got = PyObject_CallNoArgs(self->types_fn);
    if (got != NULL && PyTuple_Check(got) && PyTuple_GET_SIZE(got) == 2 &&
        PyTuple_Check(PyTuple_GET_ITEM(got, 0)) && PyTuple_GET_SIZE(PyTuple_GET_ITEM(got, 0)) > 0) {
        self->task_types = Py_NewRef(PyTuple_GET_ITEM(got, 0));
        self->gather_type = Py_NewRef(PyTuple_GET_ITEM(got, 1));
    }
    Py_XDECREF(got);
    PyErr_Clear();
    return self->task_types != NULL;
}

/* Whether instances of `tp` are asyncio Tasks (C or pure): 1, 0, never an error. */
static int
type_is_task(TaskRecorder *self, PyTypeObject *tp)
{
    if (!load_types(self))
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(self->task_types); i++) {
        PyObject *t = PyTuple_GET_ITEM(self->task_types, i);
        if (PyType_Check(t) && PyType_IsSubtype(tp, (PyTypeObject *)t))
            return 1;
    }
    return 0;
}

/* Whether instances of `tp` are gather's outer futures: 1, 0, never an error. */
static int
type_is_gather(TaskRecorder *self, PyTypeObject *tp)
{
    return load_types(self) && PyType_Check(self->gather_type) &&
           PyType_IsSubtype(tp, (PyTypeObject *)self->gather_type);
}

/* The descriptor named `name` of type `tp` if it is of `kind` (borrowed from
 * the type's dictionaries, as attribute lookup finds it: the type, which the
 * cache holds, keeps it), or NULL; never an error. */
static PyObject *
type_descr(PyTypeObject *tp, PyObject *name, PyTypeObject *kind)
{
    PyObject *d = _PyType_Lookup(tp, name);
    return d != NULL && Py_IS_TYPE(d, kind) ? d : NULL;
}

/* The cache entry of `tp` (filled on first sight; the entries are few types,
 * the Handles, the step wrapper, the Tasks: all searched, one replaced in
 * turn when full), or NULL with an error. */
static TypeCache *
type_cache(TaskRecorder *self, PyTypeObject *tp)
{
    for (int i = 0; i < TYPE_SLOTS; i++)
        if (self->types[i].type == tp)
            return &self->types[i];
    TypeCache *c = &self->types[self->type_next];
    self->type_next = (self->type_next + 1) % TYPE_SLOTS;
    Py_CLEAR(c->done);
    Py_XSETREF(c->type, (PyTypeObject *)Py_NewRef(tp));
    c->is_task = type_is_task(self, tp);
    c->is_gather = !c->is_task && type_is_gather(self, tp);
    c->callback = NULL;
    c->args = NULL;
    c->self_get = NULL;
    PyObject *d = type_descr(tp, str_callback, &PyMemberDescr_Type);
    if (d != NULL) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX || m->type == T_OBJECT)
            c->callback = m;
    }
    d = type_descr(tp, str_args, &PyMemberDescr_Type);
    if (d != NULL) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX || m->type == T_OBJECT)
            c->args = m;
    }
    d = type_descr(tp, str_self, &PyGetSetDescr_Type);
    if (d != NULL && ((PyGetSetDescrObject *)d)->d_getset->get != NULL)
        c->self_get = ((PyGetSetDescrObject *)d)->d_getset;
    if (c->is_task) {  /* a method (C) or function (pure): called with the task first */
        PyObject *d = _PyType_Lookup(tp, str_done);
        if (d != NULL && (Py_IS_TYPE(d, &PyMethodDescr_Type) || PyFunction_Check(d)))
            c->done = Py_NewRef(d);
    }
    return c;
}

/* Whether `obj` is an asyncio Task (C or pure): 1, 0, never an error. */
static int
is_task(TaskRecorder *self, PyObject *obj)
{
    TypeCache *c = type_cache(self, Py_TYPE(obj));
    return c != NULL && c->is_task;
}

/* task.done(): 1, 0, or -1 with an error (its unbound method called, not
 * looked up; a C method without arguments called as its descriptor calls it,
 * the task being of the class it was found on). */
static int
task_done(TaskRecorder *self, PyObject *task)
{
    TypeCache *c = type_cache(self, Py_TYPE(task));
    PyObject *done;
    if (c != NULL && c->done != NULL && Py_IS_TYPE(c->done, &PyMethodDescr_Type) &&
        (((PyMethodDescrObject *)c->done)->d_method->ml_flags &
         (METH_VARARGS | METH_FASTCALL | METH_NOARGS | METH_O | METH_KEYWORDS | METH_METHOD)) ==
            METH_NOARGS)
        done = ((PyMethodDescrObject *)c->done)->d_method->ml_meth(task, NULL);
    else if (c != NULL && c->done != NULL)
        done = PyObject_Vectorcall(c->done, &task, 1, NULL);
    else
        done = PyObject_CallMethodNoArgs(task, str_done);
    if (done == Py_True || done == Py_False) {
        int is = done == Py_True;
        Py_DECREF(done);
        return is;
    }
    int is = done == NULL ? -1 : PyObject_IsTrue(done);
    Py_XDECREF(done);
    return is;
}

/* Whether the callback `cb` wakes its task (the C Task's task_wakeup, the
 * pure Task's __wakeup: a future it awaited is done) rather than steps it. */
static int
is_wakeup(TaskRecorder *self, PyObject *cb)
{
    if (PyCFunction_Check(cb)) {
        PyMethodDef *def = ((PyCFunctionObject *)cb)->m_ml;
        if (def == self->wakeup_def)
            return 1;
        if (def != NULL && def->ml_name != NULL && strcmp(def->ml_name, "task_wakeup") == 0) {
            self->wakeup_def = def;
            return 1;
        }
        return 0;
    }
    if (PyMethod_Check(cb) && PyFunction_Check(PyMethod_GET_FUNCTION(cb))) {
        PyObject *name = ((PyFunctionObject *)PyMethod_GET_FUNCTION(cb))->func_name;
        return name == str_wakeup || same_str(name, str_wakeup);
    }
    return 0;
}

/* The future a wakeup Handle passes its task (new reference), or NULL (none; no error). */
static PyObject *
wakeup_future(TaskRecorder *self, PyObject *handle)
{
    TypeCache *hc = type_cache(self, Py_TYPE(handle));  /* again: lookups since may replace it */
    PyObject *args;
    if (hc != NULL && hc->args != NULL) {
        args = Py_XNewRef(*(PyObject **)((char *)handle + hc->args->offset));
    } else if ((args = PyObject_GetAttr(handle, str_args)) == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *fut = args != NULL && PyTuple_Check(args) && PyTuple_GET_SIZE(args) >= 1
                        ? Py_NewRef(PyTuple_GET_ITEM(args, 0)) : NULL;
    Py_XDECREF(args);
    return fut;
}

/* The task whose step the Handle runs (new reference), or NULL (none; no
 * error); *woke: the future whose end wakes it (new reference), or NULL. */
static PyObject *
step_task(TaskRecorder *self, PyObject *handle, PyObject **woke)
{
    *woke = NULL;
    TypeCache *c = type_cache(self, Py_TYPE(handle));
    PyObject *cb;
    if (c != NULL && c->callback != NULL) {
        /* the slot, read as its member descriptor reads it */
        cb = Py_XNewRef(*(PyObject **)((char *)handle + c->callback->offset));
        if (cb == NULL)
            return NULL;
    } else if ((cb = PyObject_GetAttr(handle, str_callback)) == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *owner;
    int bound = 1;  /* a bound method or builtin: a wakeup is one of those */
    if (PyMethod_Check(cb)) {
        owner = Py_NewRef(PyMethod_GET_SELF(cb));
    } else if (PyCFunction_Check(cb)) {
        owner = Py_XNewRef(PyCFunction_GET_SELF(cb));
    } else {  /* the C Task's step wrapper */
        bound = 0;
        c = type_cache(self, Py_TYPE(cb));
        owner = c != NULL && c->self_get != NULL
                    ? c->self_get->get(cb, c->self_get->closure)
                    : PyObject_GetAttr(cb, str_self);
    }
    if (owner == NULL) {
        Py_DECREF(cb);
        PyErr_Clear();
        return NULL;
    }
    if (!is_task(self, owner)) {
        Py_DECREF(cb);
        Py_DECREF(owner);
        return NULL;
    }
    if (bound && is_wakeup(self, cb))
        *woke = wakeup_future(self, handle);
    Py_DECREF(cb);
    return owner;
}

/* ------------------------------------------------------------------------- */
/* The notes' text                                                            */
/* ------------------------------------------------------------------------- */

/* A note's text put together in C: every part is ASCII (JSON text from
 * json's encode_basestring_ascii, or checked to need no escape), so the str is
 * made once, from bytes, with no format string to parse (a note per task
 * otherwise cost several PyUnicode_FromFormat and json calls). */
typedef struct {
    char *p;
    size_t n, cap;
    int failed;
    char local[256];
} Text;

static void
text_init(Text *t)
{
    t->p = t->local;
    t->n = 0;
    t->cap = sizeof t->local;
    t->failed = 0;
}

static void
text_put(Text *t, const char *s, size_t k)
{
    if (t->failed)
        return;
    if (t->n + k > t->cap) {
        size_t cap = (t->n + k) * 2;
        char *p = t->p == t->local ? PyMem_Malloc(cap) : PyMem_Realloc(t->p, cap);
        if (p == NULL) {
            PyErr_NoMemory();
            t->failed = 1;
            return;
        }
        if (t->p == t->local)
            memcpy(p, t->local, t->n);
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, k);
    t->n += k;
}

#define TEXT_LIT(t, s) text_put((t), (s), sizeof(s) - 1)

static void
text_int(Text *t, long long v)
{
    char d[24];
    int i = sizeof d;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        d[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        d[--i] = '-';
    text_put(t, d + i, sizeof d - (size_t)i);
}

/* An ASCII str's characters (`ascii` 1), or put through quote (the JSON text of
 * it) when `json` and it needs escaping or is not ASCII. */
static void
text_str(TaskRecorder *self, Text *t, PyObject *s, int json)
{
    if (t->failed)
        return;
    if (PyUnicode_Check(s) && PyUnicode_IS_ASCII(s)) {
        const char *c = (const char *)PyUnicode_1BYTE_DATA(s);
        Py_ssize_t k = PyUnicode_GET_LENGTH(s), i = 0;
        if (json)
            while (i < k && c[i] >= ' ' && c[i] <= '~' && c[i] != '"' && c[i] != '\\')
                i++;
        if (!json || i == k) {
            if (json)
                TEXT_LIT(t, "\"");
            text_put(t, c, (size_t)k);
            if (json)
                TEXT_LIT(t, "\"");
            return;
        }
    }
    PyObject *q = json ? PyObject_CallOneArg(self->quote, s) : NULL;
    if (q == NULL || !PyUnicode_Check(q) || !PyUnicode_IS_ASCII(q)) {
        if (q != NULL || !json)
            PyErr_SetString(PyExc_TypeError, "a task note's text is not ASCII");
        Py_XDECREF(q);
        t->failed = 1;
        return;
    }
    text_str(self, t, q, 0);
    Py_DECREF(q);
}

/* The str made (new reference), or NULL with an error; the text's memory freed. */
static PyObject *
text_done(Text *t)
{
    PyObject *r = NULL;
    if (!t->failed && (r = PyUnicode_New((Py_ssize_t)t->n, 127)) != NULL)
        memcpy(PyUnicode_1BYTE_DATA(r), t->p, t->n);
    if (t->p != t->local)
        PyMem_Free(t->p);
    return r;
}

/* Write one note (a str, stolen): 1 written, 0 not (tracing off, a thread the
 * pid filter leaves out, or a full ring that drops), -1 error. */
static int
write_note(TaskRecorder *self, PyObject *info, unsigned long long tsid)
{
    if (info == NULL)
        return -1;
    int on = self->tracing;
    if (on > 0)
        on = fnt_recorder_pid_ok((fnt_recorder *)self, tsid);
    long long ts;
    if (on <= 0 || fnt_recorder_now((fnt_recorder *)self, &ts) < 0) {
        Py_DECREF(info);
        return on <= 0 ? on : -1;
    }
    /* packed: the text and two numbers, no tuple (one per note was half a
     * note's cost, the collector's walks included); the ring builds the
     * Python path's (ts, size, tag, info) when a reader asks */
    fnt_slot slot = {0};
    slot.kind = EVENT_TAG_TASK;
    slot.ts = ts;
    slot.size = (int32_t)(EVENT_OVERHEAD + PyUnicode_GET_LENGTH(info));
    slot.obj = info;
    return fnt_recorder_write((fnt_recorder *)self, &slot, tsid) < 0 ? -1 : 1;
}

/* "run n" (new reference; made once for the first numbers), or NULL. */
static PyObject *
run_text(TaskRecorder *self, long long n)
{
    if (n >= 0 && n < RUN_STRS && self->runs[n] != NULL)
        return Py_NewRef(self->runs[n]);
    Text t;
    text_init(&t);
    TEXT_LIT(&t, "run ");
    text_int(&t, n);
    PyObject *r = text_done(&t);
    if (r != NULL && n >= 0 && n < RUN_STRS)
        self->runs[n] = Py_NewRef(r);
    return r;
}

/* Write "run n": as write_note. */
static int
write_run(TaskRecorder *self, long long n, unsigned long long tsid)
{
    if (self->tracing <= 0)
        return 0;
    return write_note(self, run_text(self, n), tsid);
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

/* Note "new {...}" of task n as TaskTracker.note_new (the JSON
 * json.dumps(sort_keys=True) makes): creator < 0 and func NULL leave those
 * fields out.  func: its JSON text already. */
static int
note_new(TaskRecorder *self, long long n, PyObject *task, long long creator, PyObject *func,
         unsigned long long tsid)
{
    if (self->tracing <= 0)
        return 0;
    PyObject *name = PyObject_CallMethodNoArgs(task, str_get_name);
    if (name == NULL)
        return -1;
    Text t;
    text_init(&t);
    TEXT_LIT(&t, "new {");
    if (creator >= 0) {
        TEXT_LIT(&t, "\"creator\": ");
        text_int(&t, creator);
        TEXT_LIT(&t, ", ");
    }
    if (func != NULL) {
        TEXT_LIT(&t, "\"func\": ");
        text_str(self, &t, func, 0);
        TEXT_LIT(&t, ", ");
    }
    TEXT_LIT(&t, "\"name\": ");
    if (name == Py_None) {
        TEXT_LIT(&t, "null");
    } else {
        PyObject *s = PyUnicode_CheckExact(name) ? Py_NewRef(name) : PyObject_Str(name);
        if (s == NULL)
            t.failed = 1;
        else
            text_str(self, &t, s, 1);
        Py_XDECREF(s);
    }
    Py_DECREF(name);
    TEXT_LIT(&t, ", \"task\": ");
    text_int(&t, n);
    TEXT_LIT(&t, "}");
    return write_note(self, text_done(&t), tsid) < 0 ? -1 : 0;
}

/* The slot of an object in a direct-mapped cache of `slots` (a power of two):
 * Fibonacci hashing, since objects of one size class sit at regular strides
 * that low address bits would map to a few slots. */
static size_t
ptr_slot(void *p, size_t slots)
{
    return (size_t)(((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL) >> 40) & (slots - 1);
}

/* The task's number (0: none yet), or -1 with an error.  The cache holds a
 * weak reference: a slot is the task's only while that reference is to it. */
static long long
known_number(TaskRecorder *self, PyObject *task)
{
    KnownTask *k = &self->known[ptr_slot(task, KNOWN_SLOTS)];
    if (k->ref != NULL && fnt_weakref_is(k->ref, task))
        return k->n;
    PyObject *ref = PyWeakref_NewRef(task, NULL);
    if (ref == NULL)
        return -1;
    PyObject *n = PyDict_GetItemWithError(self->numbers, ref);  /* borrowed */
    if (n == NULL) {
        Py_DECREF(ref);
        return PyErr_Occurred() ? -1 : 0;
    }
    long long v = PyLong_AsLongLong(n);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(ref);
        return -1;
    }
    Py_XSETREF(k->ref, ref);
    k->n = v;
    return v;
}

/* A new number given to `task` in the table (as TaskTracker's numbers[task] = n): -1 error. */
static long long
number_task(TaskRecorder *self, PyObject *task)
{
    long long n = self->next++;
    PyObject *ref = PyWeakref_NewRef(task, self->forget);
    PyObject *value = ref == NULL ? NULL : PyLong_FromLongLong(n);
    int r = value == NULL ? -1 : PyDict_SetItem(self->numbers, ref, value);
    Py_XDECREF(value);
    if (r < 0) {
        Py_XDECREF(ref);
        return -1;
    }
    KnownTask *k = &self->known[ptr_slot(task, KNOWN_SLOTS)];
    Py_XSETREF(k->ref, ref);
    k->n = n;
    return n;
}

/* The task's number (taken and noted when it has none, as TaskTracker.first_seen): -1 error. */
static long long
task_number(TaskRecorder *self, PyObject *task, unsigned long long tsid)
{
    long long n = known_number(self, task);
    if (n != 0)
        return n;
    if ((n = number_task(self, task)) < 0 || note_new(self, n, task, -1, NULL, tsid) < 0)
        return -1;
    return n;
}

/* "done", "cancelled" or "raised E" of a finished task as tasks.end_state, or NULL. */
static PyObject *
end_state(TaskRecorder *self, PyObject *task)
{
    PyObject *c = PyObject_CallMethodNoArgs(task, str_cancelled);
    int is = c == NULL ? -1 : PyObject_IsTrue(c);
    Py_XDECREF(c);
    if (is < 0)
        return NULL;
    if (is)
        return Py_NewRef(str_state_cancelled);
    PyObject *exc = PyObject_GetAttr(task, str_exception);  /* getattr(task, "_exception", None) */
    if (exc == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
    }
    if (exc == NULL || exc == Py_None) {
        Py_XDECREF(exc);
        return Py_NewRef(str_state_done);
    }
    PyObject *type_name = PyType_GetName(Py_TYPE(exc));
    Py_DECREF(exc);
    if (type_name == NULL)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("raised %U", type_name);
    Py_DECREF(type_name);
    return r;
}

/* Note the end of task n if it is done and not noted yet (TaskTracker.note_end). */
static int
note_end(TaskRecorder *self, long long n, PyObject *task, unsigned long long tsid)
{
    int is = task_done(self, task);
    if (is <= 0)
        return is;  /* the commonest: the step awaits */
    PyObject *key = PyLong_FromLongLong(n);
    if (key == NULL)
        return -1;
    int seen = PySet_Contains(self->ended, key);
    if (seen == 0 && PySet_Add(self->ended, key) < 0)
        seen = -1;
    Py_DECREF(key);
    if (seen != 0)
        return seen < 0 ? -1 : 0;
    PyObject *state = end_state(self, task);
    if (state == NULL)
        return -1;
    Text t;
    text_init(&t);
    TEXT_LIT(&t, "end {\"state\": ");
    text_str(self, &t, state, 1);
    Py_DECREF(state);
    TEXT_LIT(&t, ", \"task\": ");
    text_int(&t, n);
    TEXT_LIT(&t, "}");
    return write_note(self, text_done(&t), tsid) < 0 ? -1 : 0;
}

/* Put `task`'s number in the text's list if it is a numbered task whose end
 * is noted: the count put so far, or -1 with an error. */
static int
wake_source(TaskRecorder *self, Text *t, PyObject *task, int count)
{
    if (!is_task(self, task))
        return count;
    long long m = known_number(self, task);
    if (m <= 0)
        return m < 0 ? -1 : count;
    PyObject *key = PyLong_FromLongLong(m);
    int ended = key == NULL ? -1 : PySet_Contains(self->ended, key);
    Py_XDECREF(key);
    if (ended <= 0)
        return ended < 0 ? -1 : count;
    if (count > 0)
        TEXT_LIT(t, ", ");
    text_int(t, m);
    return count + 1;
}

/* Task n resumes because `fut` is done (a wakeup step): note which tasks'
 * ends woke it, as TaskTracker.note_wake, "wake {"by": [...], "task": n}":
 * fut itself if it is a task, or gather's outer future's children that are
 * tasks (those whose end is noted, each).  Any other future (a sleep's, a
 * lock's, a TaskGroup's or asyncio.wait's own waiter) says no task: nothing
 * is noted. */
static int
note_wake(TaskRecorder *self, long long n, PyObject *fut, unsigned long long tsid)
{
    if (self->tracing <= 0)
        return 0;
    TypeCache *c = type_cache(self, Py_TYPE(fut));
    if (c == NULL || !(c->is_task || c->is_gather))
        return 0;
    Text t;
    text_init(&t);
    TEXT_LIT(&t, "wake {\"by\": [");
    int count = 0;
    if (c->is_task) {
        count = wake_source(self, &t, fut, 0);
    } else {
        PyObject *children = PyObject_GetAttr(fut, str_children);
        if (children == NULL)
            PyErr_Clear();
        else if (PyList_Check(children) || PyTuple_Check(children)) {
            PyObject *seq = PySequence_Tuple(children);  /* callbacks cannot change it under us */
            if (seq == NULL)
                count = -1;
            for (Py_ssize_t i = 0; seq != NULL && i < PyTuple_GET_SIZE(seq) && count >= 0; i++)
                count = wake_source(self, &t, PyTuple_GET_ITEM(seq, i), count);
            Py_XDECREF(seq);
        }
        Py_XDECREF(children);
    }
    TEXT_LIT(&t, "], \"task\": ");
    text_int(&t, n);
    TEXT_LIT(&t, "}");
    PyObject *text = text_done(&t);
    if (count <= 0) {
        Py_XDECREF(text);
        return count < 0 ? -1 : 0;
    }
    return write_note(self, text, tsid) < 0 ? -1 : 0;
}

/* Whether code of the module `name` is the event loop's own (asyncio, Pyodide's loop). */
static int
loop_module(PyObject *name)
{
    if (!PyUnicode_Check(name))
        return 0;
    if (PyUnicode_Compare(name, str_asyncio) == 0 || PyUnicode_Compare(name, str_webloop) == 0)
        return 1;
    return PyUnicode_Tailmatch(name, str_asyncio_dot, 0, PY_SSIZE_T_MAX, -1) == 1;
}

/* The JSON text of "module:qualname" of `code` run in the module named
 * `module` (cached by code, checked against the module's name), new
 * reference or NULL with an error. */
static PyObject *
func_text(TaskRecorder *self, PyObject *code, PyObject *module)
{
    FuncName *f = &self->funcs[ptr_slot(code, FUNC_SLOTS)];
    if (f->code == code && f->module == module)
        return Py_NewRef(f->text);
    PyObject *mod = PyUnicode_Check(module) ? Py_NewRef(module) : PyObject_Str(module);
    if (mod == NULL)
        return NULL;
    PyObject *plain = PyUnicode_FromFormat("%U:%S", mod, ((PyCodeObject *)code)->co_qualname);
    Py_DECREF(mod);
    if (plain == NULL)
        return NULL;
    Text t;
    text_init(&t);
    text_str(self, &t, plain, 1);
    Py_DECREF(plain);
    PyObject *text = text_done(&t);
    if (text == NULL)
        return NULL;
    Py_XSETREF(f->code, Py_NewRef(code));
    Py_XSETREF(f->module, Py_NewRef(module));
    Py_XSETREF(f->text, Py_NewRef(text));
    return text;
}

/* The JSON text of the first function outside the event loop's code below the
 * running frame (as tasks._creating_function): new reference, Py_None when
 * there is none, NULL with an error. */
static PyObject *
creating_function(TaskRecorder *self, Where *w)
{
#ifdef FNT_IFRAME
    fnt_iframe *f = running_iframe(w);
    for (f = f != NULL ? fnt_iframe_caller(f) : NULL; f != NULL; f = fnt_iframe_caller(f)) {
        if (f->code == NULL || !PyCode_Check(f->code) || f->globals == NULL)
            continue;
        PyObject *module = PyDict_GetItemWithError(f->globals, str_name);  /* borrowed */
        if (module == NULL && PyErr_Occurred())
            return NULL;
        if (module != NULL && loop_module(module))
            continue;
        return func_text(self, f->code, module != NULL ? module : str_unknown);
    }
    Py_RETURN_NONE;
#else
    PyFrameObject *fo = fnt_where_frame(w);
    PyFrameObject *f = fo == NULL ? NULL : PyFrame_GetBack(fo);
    while (f != NULL) {
        PyObject *globals = PyFrame_GetGlobals(f);
        PyObject *module = PyDict_GetItemWithError(globals, str_name);
        Py_XINCREF(module);
        Py_DECREF(globals);
        if (module == NULL && PyErr_Occurred()) {
            Py_DECREF(f);
            return NULL;
        }
        if (module == NULL || !loop_module(module)) {
            if (module == NULL)
                module = Py_NewRef(str_unknown);
            PyCodeObject *code = PyFrame_GetCode(f);
            PyObject *r = func_text(self, (PyObject *)code, module);
            Py_DECREF(code);
            Py_DECREF(module);
            Py_DECREF(f);
            return r;
        }
        Py_DECREF(module);
        Py_SETREF(f, PyFrame_GetBack(f));
    }
    Py_RETURN_NONE;
#endif
}

/* create_task returned `task`: number it (unless a step already did) and note
 * it with its creator, the running task, and its creating function. */
static int
created(TaskRecorder *self, TaskThread *tt, PyObject *task, Where *w, unsigned long long tsid)
{
    long long n = known_number(self, task);
    if (n == 0)
        n = number_task(self, task);
    if (n < 0)
        return -1;
    if (self->tracing <= 0)
        return 0;
    PyObject *func = creating_function(self, w);
    if (func == NULL)
        return -1;
    int r = note_new(self, n, task, tt->cur, func == Py_None ? NULL : func, tsid);
    Py_DECREF(func);
    return r;
}

/* The step begun last has ended (the thread begins another callback, or the
 * loop's iteration ends): note its task's end if the step finished it. */
static int
close_step(TaskRecorder *self, TaskThread *tt, unsigned long long tsid)
{
    PyObject *task = tt->last;  /* its reference is ours now */
    if (task == NULL)
        return 0;
    tt->last = NULL;
    if (self->stepping == task)
        self->stepping = NULL;  /* it may die: no other object may match it */
    int r = note_end(self, tt->last_n, task, tsid);
    Py_DECREF(task);
    return r;
}

/* A step begins (Handle._run): the one before it has ended. */
static void watch_idle(TaskRecorder *self);

static int
step_entry(TaskRecorder *self, TaskThread *tt, Where *where, unsigned long long tsid)
{
    if (self->want == 1)
        watch_idle(self);
    if (close_step(self, tt, tsid) < 0)
        return -1;
    PyObject *handle = local_at(where, 0), *woke = NULL;
    PyObject *task = handle != NULL ? step_task(self, handle, &woke) : NULL;
    long long n = 0;
    if (task != NULL && (n = task_number(self, task, tsid)) < 0) {
        Py_DECREF(task);
        Py_XDECREF(woke);
        return -1;
    }
    Py_XSETREF(tt->last, task);
    tt->last_n = n;
    self->stepping = task;
    int r = thread_switch(self, tt, n, tsid);
    if (woke != NULL) {
        if (r == 0 && n > 0)
            r = note_wake(self, n, woke, tsid);
        Py_DECREF(woke);
    }
    return r;
}

/* An iteration of the loop begins (_run_once): no task runs until its first
 * step; what ran before (the step that runs this loop, if any) is saved. */
static int
loop_entry(TaskRecorder *self, TaskThread *tt, unsigned long long tsid)
{
    if (self->want == 1)
        watch_idle(self);
    if (thread_push(tt, tt->cur, tt->last, tt->last_n) < 0)
        return -1;
    Py_CLEAR(tt->last);
    return thread_switch(self, tt, 0, tsid);
}

/* The iteration ends: its last step has ended; what ran before it runs again. */
static int
loop_exit(TaskRecorder *self, TaskThread *tt, unsigned long long tsid)
{
    int r = close_step(self, tt, tsid);
    long long prev = 0;
    if (tt->len > 0) {
        StepEntry e = tt->stack[--tt->len];  /* the task's reference is ours now */
        prev = e.prev;
        Py_XSETREF(tt->last, e.task);
        tt->last_n = e.n;
    }
    if (thread_switch(self, tt, prev, tsid) < 0)
        r = -1;
    return r;
}

/* ------------------------------------------------------------------------- */
/* Steps not begun at Handle._run (3.12+)                                     */
/* ------------------------------------------------------------------------- */

/* asyncio's C Task (and the pure one, through asyncio.tasks._enter_task and
 * _leave_task) puts the task a step runs into its loop -> task dictionary
 * (asyncio.tasks._current_tasks) as the step begins and takes it out as it
 * ends; an eager task's first step (run inside its constructor, where no
 * Python function of asyncio runs) swaps it in and back around that step,
 * and so does a uvloop step.  A dictionary watcher (3.12+) sees those
 * changes without a Python call: a task put in that Handle._run did not just
 * begin the step of is such a step; the change that restores the key's value
 * ends it.  The steps Handle._run began (nearly all, on asyncio's loops) cost
 * a pointer comparison per change. */
#if PY_VERSION_HEX >= 0x030C0000
#define WATCHING_MAX 8
static int watcher_id = -1;
static TaskRecorder *watching[WATCHING_MAX];  /* borrowed: each removes itself (clear) */
static int watching_top;  /* 1 + the highest entry in use: the watcher looks no further */

static int
foreign_push(TaskThread *tt, ForeignStep *e)
{
    if (tt->flen == tt->fcap) {
        if (tt->fcap >= MAX_STEPS) {
            PyErr_SetString(PyExc_RecursionError, "asyncio task steps nested too deeply");
            return -1;
        }
        Py_ssize_t cap = tt->fcap ? tt->fcap * 2 : 4;
        ForeignStep *s = PyMem_Realloc(tt->fstack, cap * sizeof(ForeignStep));
        if (s == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        tt->fstack = s;
        tt->fcap = cap;
    }
    tt->fstack[tt->flen++] = *e;
    return 0;
}

/* Task `task` begins a step Handle._run did not begin: number it (its `new`
 * note waits for the step's end, when an eager task has its name and its
 * creator's create_task has not yet noted it) and run it. */
static int
foreign_enter(TaskRecorder *self, TaskThread *tt, PyObject *key, PyObject *prev_value,
              PyObject *task, unsigned long long tsid)
{
    long long n = known_number(self, task);
    int unnamed = 0;
    if (n == 0) {
        n = number_task(self, task);
        unnamed = 1;
    }
    if (n < 0)
        return -1;
    ForeignStep e = {Py_NewRef(task), Py_NewRef(key), Py_XNewRef(prev_value), tt->cur, n,
                     unnamed};
    if (foreign_push(tt, &e) < 0) {
        Py_DECREF(e.task);
        Py_DECREF(e.key);
        Py_XDECREF(e.prev_value);
        return -1;
    }
    self->foreign++;
    return thread_switch(self, tt, n, tsid);
}

/* The step begun by foreign_enter has ended: name the task if it was numbered
 * there, note its end if the step finished it, run what ran before. */
static int
foreign_leave(TaskRecorder *self, TaskThread *tt, unsigned long long tsid)
{
    ForeignStep e = tt->fstack[--tt->flen];  /* its references are ours now */
    if (self->foreign > 0)
        self->foreign--;
    int r = e.unnamed ? note_new(self, e.n, e.task, -1, NULL, tsid) : 0;
    if (r == 0)
        r = note_end(self, e.n, e.task, tsid) < 0 ? -1 : 0;
    if (thread_switch(self, tt, e.prev, tsid) < 0)
        r = -1;
    Py_DECREF(e.task);
    Py_DECREF(e.key);
    Py_XDECREF(e.prev_value);
    return r;
}

/* The dictionary changes: a step begins or ends (see above), or neither. */
static int
current_task_changed(TaskRecorder *self, PyDict_WatchEvent event, PyObject *dict,
                     PyObject *key, PyObject *new_value)
{
    unsigned long long tsid = (unsigned long long)PyThreadState_Get()->id;
    TaskThread *tt = thread_state(self, tsid);
    if (tt == NULL)
        return -1;
    Py_INCREF(tt);
    int r = 0;
    ForeignStep *top = tt->flen > 0 ? &tt->fstack[tt->flen - 1] : NULL;
    if (top != NULL && key == top->key &&
        ((event == PyDict_EVENT_DELETED && top->prev_value == NULL) ||
         (event == PyDict_EVENT_MODIFIED && new_value == top->prev_value))) {
        r = foreign_leave(self, tt, tsid);
    } else if ((event == PyDict_EVENT_ADDED || event == PyDict_EVENT_MODIFIED) &&
               new_value != NULL && new_value != tt->last && is_task(self, new_value)) {
        PyObject *prev = NULL;
        if (event == PyDict_EVENT_MODIFIED) {  /* the value it replaces (the callback runs first) */
            prev = PyDict_GetItemWithError(dict, key);
            if (prev == NULL && PyErr_Occurred())
                r = -1;
        }
        if (r == 0)
            r = foreign_enter(self, tt, key, prev, new_value, tsid);
    }
    Py_DECREF(tt);
    return r;
}

/* The watcher: every change of a watched dictionary; never an error to the
 * program (a failure is the recorder's report, as its other callbacks'). */
static int
dict_changed(PyDict_WatchEvent event, PyObject *dict, PyObject *key, PyObject *new_value)
{
    PyObject *pending = NULL;
    for (int i = 0; i < watching_top; i++) {
        TaskRecorder *self = watching[i];
        if (self == NULL)
            continue;
        if (self->foreign == 0 &&
            (event == PyDict_EVENT_DELETED || new_value == self->stepping ||
             (event != PyDict_EVENT_ADDED && event != PyDict_EVENT_MODIFIED)))
            continue;  /* the commonest: a step Handle._run began, or its end */
        if (self->current_tasks != dict || !self->ok)
            continue;
        if (pending == NULL)
            pending = PyErr_GetRaisedException();
        if (current_task_changed(self, event, dict, key, new_value) < 0 &&
            fnt_recorder_failed((fnt_recorder *)self) < 0)
            fnt_interrupt_later();
        PyErr_Clear();
    }
    if (pending != NULL)
        PyErr_SetRaisedException(pending);
    return 0;
}

/* Watch `dict` while a recorder that registered it wants it watched: the
 * watcher costs asyncio every step two calls (~1,500 instructions a task in
 * bench/run_tasks.py), so it is on only while a step Handle._run does not
 * begin may come: from BaseEventLoop.is_running's True (the C Task calls it
 * right before an eager first step; run_forever once) until the next
 * Handle._run with no such step open, and for good once a uvloop loop is made
 * (uvloop.new_event_loop, or uvloop imported when tracing starts). */
static void
dict_refresh(PyObject *dict)
{
    int want = 0;
    for (int i = 0; i < watching_top; i++)
        if (watching[i] != NULL && watching[i]->current_tasks == dict && watching[i]->want)
            want = 1;
    if ((want ? PyDict_Watch(watcher_id, dict) : PyDict_Unwatch(watcher_id, dict)) < 0)
        PyErr_Clear();
}

static void
watch_want(TaskRecorder *self, int level)
{
    if (self->current_tasks == NULL || self->want >= level)
        return;
    int was = self->want;
    self->want = level;
    if (!was)
        dict_refresh(self->current_tasks);
}

static void
watch_idle(TaskRecorder *self)
{
    if (self->want == 1 && self->foreign == 0 && self->current_tasks != NULL) {
        self->want = 0;
        dict_refresh(self->current_tasks);
    }
}

static void
unwatch(TaskRecorder *self)
{
    PyObject *dict = self->current_tasks;
    if (dict == NULL)
        return;
    int others = 0;
    for (int i = 0; i < WATCHING_MAX; i++) {
        if (watching[i] == self)
            watching[i] = NULL;
        else if (watching[i] != NULL && watching[i]->current_tasks == dict)
            others = 1;
    }
    while (watching_top > 0 && watching[watching_top - 1] == NULL)
        watching_top--;
    self->current_tasks = NULL;
    self->want = 0;
    if (!others && watcher_id >= 0 && PyDict_Unwatch(watcher_id, dict) < 0)
        PyErr_Clear();
    else if (others && watcher_id >= 0)
        dict_refresh(dict);
    Py_DECREF(dict);
}

static PyObject *
TaskRecorder_watch(TaskRecorder *self, PyObject *dict)
{
    if (!PyDict_Check(dict)) {
        PyErr_SetString(PyExc_TypeError, "watch() takes asyncio's current-task dict");
        return NULL;
    }
    if (self->current_tasks == dict)
        Py_RETURN_TRUE;
    unwatch(self);
    int slot = -1;
    for (int i = 0; i < WATCHING_MAX && slot < 0; i++)
        if (watching[i] == NULL)
            slot = i;
    if (slot < 0)
        Py_RETURN_FALSE;  /* as many tracers watch already: this one does without */
    if (watcher_id < 0 && (watcher_id = PyDict_AddWatcher(dict_changed)) < 0)
        return NULL;
    self->current_tasks = Py_NewRef(dict);
    watching[slot] = self;
    if (slot >= watching_top)
        watching_top = slot + 1;
    Py_RETURN_TRUE;
}

static PyObject *
TaskRecorder_want(TaskRecorder *self, PyObject *level)
{
    long v = PyLong_AsLong(level);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    if (v == 0)
        watch_idle(self);
    else
        watch_want(self, v > 1 ? 2 : 1);
    Py_RETURN_NONE;
}
#else
static void
unwatch(TaskRecorder *self)
{
    (void)self;
}

static void
watch_want(TaskRecorder *self, int level)
{
    (void)self;
    (void)level;
}

static void
watch_idle(TaskRecorder *self)
{
    (void)self;
}

static PyObject *
TaskRecorder_want(TaskRecorder *self, PyObject *level)
{
    (void)self;
    (void)level;
    Py_RETURN_NONE;
}

static PyObject *
TaskRecorder_watch(TaskRecorder *self, PyObject *dict)
{
    (void)self;
    (void)dict;
    Py_RETURN_FALSE;  /* no dictionary watchers before 3.12 (and no eager tasks) */
}
#endif

static int
task_entry(fnt_recorder *rec, PyObject *fn, PyObject *code, Where *where, PyObject *event,
           unsigned long long tsid)
{
    TaskRecorder *self = (TaskRecorder *)rec;
    (void)fn;
    (void)event;
    int role = role_of(code);
    if (role != ROLE_RUN && role != ROLE_LOOP)
        return 0;  /* create_task and _set_task_name: their exits only */
    TaskThread *tt = thread_state(self, tsid);
    if (tt == NULL)
        return -1;
    Py_INCREF(tt);  /* Python code (a task's name, a clock) may replace the cache's */
    int r = role == ROLE_RUN ? step_entry(self, tt, where, tsid) : loop_entry(self, tt, tsid);
    Py_DECREF(tt);
    return r;
}

static int
task_exit(fnt_recorder *rec, PyObject *fn, PyObject *code, Where *where, PyObject *event,
          PyObject *value, PyObject *exc, unsigned long long tsid)
{
    TaskRecorder *self = (TaskRecorder *)rec;
    (void)fn;
    (void)event;
    int role = role_of(code);
    if (role == ROLE_NONE || role == ROLE_RUN)
        return 0;  /* a step ends where the next callback or the iteration begins */
    if (role == ROLE_RUNNING || role == ROLE_UVLOOP) {
        if (exc == Py_None && (role == ROLE_UVLOOP || value == Py_True))
            watch_want(self, role == ROLE_UVLOOP ? 2 : 1);
        return 0;
    }
    if (role == ROLE_CREATE && (exc != Py_None || value == NULL || !is_task(self, value)))
        return 0;  /* raised: no task */
    PyObject *task = NULL;
    if (role == ROLE_NAME) {
        PyObject *name = local_at(where, 1);
        task = local_at(where, 0);
        if (name == NULL || name == Py_None || task == NULL)
            return 0;  /* no name given: nothing to note */
    }
    TaskThread *tt = thread_state(self, tsid);
    if (tt == NULL)
        return -1;
    Py_INCREF(tt);  /* Python code (done, a name) may replace the cache's */
    int r;
    if (role == ROLE_LOOP) {
        r = loop_exit(self, tt, tsid);
    } else if (role == ROLE_CREATE) {
        r = created(self, tt, value, where, tsid);
    } else {
        Py_INCREF(task);
        long long n = known_number(self, task);
        r = n < 0 ? -1 : n == 0 ? 0 : note_new(self, n, task, -1, NULL, tsid);
        Py_DECREF(task);
    }
    Py_DECREF(tt);
    return r;
}

static PyObject *
TaskRecorder_take_number(TaskRecorder *self, PyObject *unused)
{
    return PyLong_FromLongLong(self->next++);
}

static PyMethodDef TaskRecorder_methods[] = {
    FNT_RECORDER_RING_CHANGED,
    {"take_number", (PyCFunction)TaskRecorder_take_number, METH_NOARGS,
     "The next task number (the one counter of the C and Python paths)."},
    {"watch", (PyCFunction)TaskRecorder_watch, METH_O,
     "watch(asyncio.tasks._current_tasks) -> whether the steps not begun at Handle._run "
     "(eager first steps, uvloop's) can be followed from now (3.12+)."},
    {"want", (PyCFunction)TaskRecorder_want, METH_O,
     "want(level): watch the current-task dict until the next Handle._run (1), for good (2), "
     "or stop unless a step is open or it is wanted for good (0)."},
    {NULL}
};

static PyMemberDef TaskRecorder_members[] = {
    {"wanted", T_INT, offsetof(TaskRecorder, want), READONLY,
     "whether asyncio's current-task dict is watched: 0 no, 1 until the next Handle._run, 2 always"},
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
    .tp_doc = "The asyncio task notes of Handle._run, create_task and _set_task_name "
              "(tracing/tasks.py), written in C.",
    .tp_new = fnt_recorder_new,
    .tp_init = (initproc)TaskRecorder_init,
    .tp_dealloc = (destructor)TaskRecorder_dealloc,
    .tp_traverse = (traverseproc)TaskRecorder_traverse,
    .tp_clear = (inquiry)TaskRecorder_clear,
    .tp_methods = TaskRecorder_methods,
    .tp_getset = TaskRecorder_getset,
    .tp_members = TaskRecorder_members,
}, &task_ops};

static int
intern_all(void)
{
    struct { PyObject **at; const char *s; } names[] = {
        {&str_thread, "thread"}, {&str_callback, "_callback"}, {&str_self, "__self__"},
        {&str_done, "done"}, {&str_cancelled, "cancelled"}, {&str_exception, "_exception"},
        {&str_get_name, "get_name"}, {&str_name, "__name__"}, {&str_run, "_run"},
        {&str_create_task, "create_task"}, {&str_set_task_name, "_set_task_name"},
        {&str_asyncio, "asyncio"}, {&str_asyncio_dot, "asyncio."},
        {&str_webloop, "pyodide.webloop"}, {&str_state_done, "done"},
        {&str_state_cancelled, "cancelled"}, {&str_unknown, "?"},
        {&str_run_once, "_run_once"}, {&str_args, "_args"}, {&str_children, "_children"},
        {&str_wakeup, "__wakeup"}, {&str_is_running, "is_running"},
        {&str_new_event_loop, "new_event_loop"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if ((*names[i].at = PyUnicode_InternFromString(names[i].s)) == NULL)
            return -1;
    return 0;
}

int
fnt_task_recorder_add_types(PyObject *m)
{
    if (str_thread == NULL && intern_all() < 0)
        return -1;
    if (fnt_add_type(m, &TaskThread_Type, "TaskThread") < 0)
        return -1;
    return fnt_add_type(m, &TaskRecorder_Type.type, "TaskRecorder");
}

#endif  /* FNT_HOT_PATH */
