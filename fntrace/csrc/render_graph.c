/* render_graph.c: GraphRenderer - ``fntrace replay``'s function_graph text,
 * written in C a batch of Records at a time.
 *
 * Why: rendered in Python (fntrace/tracing/graph_text.py GraphText) a line
 * costs ~3 us, most of a replay.  This writes the same text: the layout, the
 * leaf rule (an entry is a leaf ``f();`` when its thread's next event is its
 * own exit), the queue that keeps every line in event order while an entry
 * waits, the pairing of an exit with its entry (the same function: name,
 * flags, file and line; the same depth).  GraphText stays the reference and
 * the fallback: the reader (analysis/graph_render.py) takes this path only
 * for what it renders exactly (no asyncio task column, no task notes), and
 * tests/test_render_c.py compares the two on random and recorded traces.
 *
 * What C cannot format as Python does (a time or a duration beyond 64 bits)
 * is handed to a Python callable given at construction, which formats it with
 * graph_text's own functions; a record of another kind (a call, a text) is
 * handed to another, which renders it as the Python path does.
 */
#include "textbuf.h"

#ifdef FNT_HOT_PATH

/* An open block of a thread: the function's identity and its depth. */
typedef struct {
    PyObject *name, *flags, *file, *line;   /* strong references */
    long long depth;
} frame;

typedef struct {
    fnt_tbuf head;         /* " {cpu}) " and the proc column: the same for every line */
    fnt_tbuf label;        /* several processes: the pid label before each line */
    frame *open;
    size_t nopen, cap;
    long long level;       /* GraphText.level's value, */
    int has_level;         /* or none yet (0) */
    PyObject *waiting;     /* the entry waiting for its thread's next event, or NULL */
    uint64_t wseq;         /* its place in the queue */
} gthread;

typedef struct {
    uint32_t thread;
    int final;
    char *text;
    size_t n;
} qitem;

typedef struct {
    PyObject_HEAD
    fnt_rec_layout rl;
    PyObject *type_ref;               /* the record class (a reference for rl.type) */
    PyObject *kind_entry, *kind_exit, *kind_marker, *kind_task;
    PyObject *ev_unwind, *ev_yield;
    PyObject *keys;                   /* dict: (pid, tid) -> thread index */
    PyObject *other;                  /* other(index, record) -> str */
    PyObject *slow;                   /* slow("time" | "column", int) -> str */
    int abstime, duration, overhead, tail, srcline, multi;
    gthread *threads;
    Py_ssize_t nthreads;
    PyObject *last_pid, *last_tid;    /* the last (pid, tid) looked up, held */
    Py_ssize_t last_index;
    qitem *queue;                     /* queue[qhead:qn]: lines waiting behind an entry */
    size_t qhead, qn, qcap;
    uint64_t qbase;                   /* the sequence number of queue[0] */
    fnt_tbuf out, line;
} GraphRenderer;

static void
frame_clear(frame *f)
{
    Py_CLEAR(f->name);
    Py_CLEAR(f->flags);
    Py_CLEAR(f->file);
    Py_CLEAR(f->line);
}

static void
renderer_clear_state(GraphRenderer *self)
{
    for (Py_ssize_t i = 0; i < self->nthreads; i++) {
        gthread *t = &self->threads[i];
        for (size_t k = 0; k < t->nopen; k++)
            frame_clear(&t->open[k]);
        PyMem_Free(t->open);
        fnt_tb_free(&t->head);
        fnt_tb_free(&t->label);
        Py_CLEAR(t->waiting);
    }
    PyMem_Free(self->threads);
    self->threads = NULL;
    self->nthreads = 0;
    for (size_t i = self->qhead; i < self->qn; i++)
        PyMem_Free(self->queue[i].text);
    PyMem_Free(self->queue);
    self->queue = NULL;
    self->qhead = self->qn = self->qcap = 0;
    fnt_tb_free(&self->out);
    fnt_tb_free(&self->line);
}

static void
renderer_dealloc(GraphRenderer *self)
{
    renderer_clear_state(self);
    Py_CLEAR(self->type_ref);
    Py_CLEAR(self->kind_entry);
    Py_CLEAR(self->kind_exit);
    Py_CLEAR(self->kind_marker);
    Py_CLEAR(self->kind_task);
    Py_CLEAR(self->ev_unwind);
    Py_CLEAR(self->ev_yield);
    Py_CLEAR(self->keys);
    Py_CLEAR(self->other);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->last_pid);
    Py_CLEAR(self->last_tid);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
renderer_init(GraphRenderer *self, PyObject *args, PyObject *kwds)
{
    PyTypeObject *type;
    PyObject *fields, *kinds, *events, *keys, *heads, *labels, *other, *slow;
    int abstime, duration, overhead, tail, srcline;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!OpppppOO:GraphRenderer", &PyType_Type, &type,
                          &PyTuple_Type, &fields, &PyTuple_Type, &kinds, &PyTuple_Type,
                          &events, &PyDict_Type, &keys, &PyList_Type, &heads, &labels,
                          &abstime, &duration, &overhead, &tail, &srcline, &other, &slow))
        return -1;
    if (self->keys != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "GraphRenderer is initialised once");
        return -1;
    }
    if (fnt_rec_layout_init(&self->rl, type, fields) < 0)
        return -1;
    if (PyTuple_GET_SIZE(kinds) != 4 || PyTuple_GET_SIZE(events) != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "GraphRenderer: kinds (entry, exit, marker, task), events (unwind, yield)");
        return -1;
    }
    int multi = labels != Py_None;
    if (multi && (!PyList_Check(labels) || PyList_GET_SIZE(labels) != PyList_GET_SIZE(heads))) {
        PyErr_SetString(PyExc_TypeError, "GraphRenderer: a label per thread, or None");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(heads);
    self->threads = PyMem_Calloc(n ? (size_t)n : 1, sizeof(gthread));
    if (self->threads == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->nthreads = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *h = PyList_GET_ITEM(heads, i);
        if (!PyUnicode_Check(h) || fnt_tb_str(&self->threads[i].head, h) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "GraphRenderer: a thread's head is a str");
            return -1;
        }
        if (multi) {
            PyObject *l = PyList_GET_ITEM(labels, i);
            if (!PyUnicode_Check(l) || fnt_tb_str(&self->threads[i].label, l) < 0) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "GraphRenderer: a label is a str");
                return -1;
            }
        }
    }
    self->type_ref = Py_NewRef(type);
    self->kind_entry = Py_NewRef(PyTuple_GET_ITEM(kinds, 0));
    self->kind_exit = Py_NewRef(PyTuple_GET_ITEM(kinds, 1));
    self->kind_marker = Py_NewRef(PyTuple_GET_ITEM(kinds, 2));
    self->kind_task = Py_NewRef(PyTuple_GET_ITEM(kinds, 3));
    self->ev_unwind = Py_NewRef(PyTuple_GET_ITEM(events, 0));
    self->ev_yield = Py_NewRef(PyTuple_GET_ITEM(events, 1));
    self->keys = Py_NewRef(keys);
    self->other = Py_NewRef(other);
    self->slow = Py_NewRef(slow);
    self->abstime = abstime;
    self->duration = duration;
    self->overhead = overhead;
    self->tail = tail;
    self->srcline = srcline;
    self->multi = multi;
    self->last_index = -1;
    return 0;
}

#define GET(rec, f) fnt_rec_get(&self->rl, (rec), (f))

/* The index of a record's thread; -1 with an error (KeyError: not a thread of
 * the files, as the Python path's lookup says). */
static Py_ssize_t
thread_of(GraphRenderer *self, PyObject *rec)
{
    PyObject *pid = GET(rec, FNT_R_PID), *tid = GET(rec, FNT_R_TID);
    if (pid == NULL || tid == NULL)
        return -1;
    if (pid == self->last_pid && tid == self->last_tid)
        return self->last_index;
    PyObject *key = PyTuple_Pack(2, pid, tid);
    if (key == NULL)
        return -1;
    PyObject *found = PyDict_GetItemWithError(self->keys, key);
    if (found == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, key);
        Py_DECREF(key);
        return -1;
    }
    Py_DECREF(key);
    Py_ssize_t i = PyLong_AsSsize_t(found);
    if (i < 0 || i >= self->nthreads) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "GraphRenderer: a thread index out of range");
        return -1;
    }
    Py_XSETREF(self->last_pid, Py_NewRef(pid));
    Py_XSETREF(self->last_tid, Py_NewRef(tid));
    self->last_index = i;
    return i;
}

/* A depth (or level) field as a C number; -1 with an error. */
static int
depth_of(PyObject *v, long long *out)
{
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "a record's depth is an int");
        return -1;
    }
    long long d = PyLong_AsLongLong(v);
    if (d == -1 && PyErr_Occurred())
        return -1;
    *out = d;
    return 0;
}

/* What the slow callable makes of (what, value), appended. */
static int
put_slow(GraphRenderer *self, fnt_tbuf *b, const char *what, PyObject *value)
{
    PyObject *s = PyObject_CallFunction(self->slow, "sO", what, value);
    if (s == NULL)
        return -1;
    int r = PyUnicode_Check(s) ? fnt_tb_str(b, s) : -1;
    if (r < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "GraphRenderer: the slow formatter gave no str");
    Py_DECREF(s);
    return r;
}

/* GraphText.prefix: the time column (funcgraph-abstime), then the thread's head. */
static int
put_prefix(GraphRenderer *self, fnt_tbuf *b, gthread *t, PyObject *ts)
{
    if (self->abstime) {
        int overflow = 0;
        long long v = PyLong_Check(ts) ? PyLong_AsLongLongAndOverflow(ts, &overflow) : 0;
        if (!PyLong_Check(ts) || overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            if (put_slow(self, b, "time", ts) < 0)
                return -1;
        }
        else {
            /* divmod by 1e9, floored as Python's */
            long long secs = v / 1000000000LL, ns = v % 1000000000LL;
            if (ns < 0) {
                ns += 1000000000LL;
                secs -= 1;
            }
            char tmp[64];
            int k = snprintf(tmp, sizeof tmp, "%5lld.%06lld |  ", secs, ns / 1000);
            if (fnt_tb_put(b, tmp, (size_t)k) < 0)
                return -1;
        }
    }
    return fnt_tb_put(b, t->head.p, t->head.n);
}

static const struct { long long limit; char mark; } marks[] = {
    {1000000000LL, '$'}, {100000000LL, '@'}, {10000000LL, '*'}, {1000000LL, '#'},
    {100000LL, '!'}, {10000LL, '+'}};

/* GraphText.column: the duration column; ns NULL: an entry's or a comment's. */
static int
put_column(GraphRenderer *self, fnt_tbuf *b, PyObject *ns)
{
    if (!self->duration)
        return 0;
    if (ns == NULL)
        return FNT_TB_LIT(b, "              |  ");
    int overflow = 0;
    long long v = PyLong_Check(ns) ? PyLong_AsLongLongAndOverflow(ns, &overflow) : -1;
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (!PyLong_Check(ns) || overflow || v < 0)
        return put_slow(self, b, "column", ns);
    char mark = ' ';
    if (self->overhead) {
        for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
            if (v > marks[i].limit) {
                mark = marks[i].mark;
                break;
            }
        }
    }
    /* duration_text: us with at most 7 digits, then the padding to the width */
    char text[48];
    int k = snprintf(text, sizeof text, "%lld", v / 1000);
    if (k < 7) {
        char frac[8];
        snprintf(frac, sizeof frac, "%03lld", v % 1000);
        int digits = 7 - k;   /* f"{ns % 1000:03d}"[:7 - len(text)] */
        text[k++] = '.';
        for (int i = 0; i < digits && frac[i]; i++)
            text[k++] = frac[i];
        text[k] = 0;
    }
    if (fnt_tb_reserve(b, (size_t)k + 24) < 0)
        return -1;
    b->p[b->n++] = mark;
    b->p[b->n++] = ' ';
    memcpy(b->p + b->n, text, (size_t)k);
    b->n += (size_t)k;
    memcpy(b->p + b->n, " us ", 4);
    b->n += 4;
    for (int i = k; i < 8; i++)
        b->p[b->n++] = ' ';
    memcpy(b->p + b->n, "|  ", 3);
    b->n += 3;
    return 0;
}

static int
put_indent(fnt_tbuf *b, long long depth)
{
    return depth > 0 ? fnt_tb_fill(b, ' ', (size_t)depth * 2) : 0;
}

/* _call: ``name()`` or ``name(args)``. */
static int
put_call(GraphRenderer *self, fnt_tbuf *b, PyObject *rec)
{
    PyObject *name = GET(rec, FNT_R_FUNC), *args = GET(rec, FNT_R_ARGS);
    if (name == NULL || args == NULL || fnt_tb_obj(b, name) < 0 || FNT_TB_LIT(b, "(") < 0)
        return -1;
    if (args != Py_None && fnt_tb_obj(b, args) < 0)
        return -1;
    return FNT_TB_LIT(b, ")");
}

/* srcline_comment: the FILE:LINE comment, when both are known. */
static int
put_srcline(GraphRenderer *self, fnt_tbuf *b, PyObject *rec)
{
    PyObject *file = GET(rec, FNT_R_SRC_FILE), *line = GET(rec, FNT_R_SRC_LINE);
    if (file == NULL || line == NULL)
        return -1;
    int f = PyObject_IsTrue(file), l = PyObject_IsTrue(line);
    if (f < 0 || l < 0)
        return -1;
    if (!f || !l)
        return 0;
    if (FNT_TB_LIT(b, " /* ") < 0 || fnt_tb_obj(b, file) < 0 || FNT_TB_LIT(b, ":") < 0
        || fnt_tb_obj(b, line) < 0)
        return -1;
    return FNT_TB_LIT(b, " */");
}

/* _notes of an exit record: 1 when a note was written, 0 when none, -1. */
static int
put_notes(GraphRenderer *self, fnt_tbuf *b, PyObject *rec)
{
    PyObject *event = GET(rec, FNT_R_EVENT), *value = GET(rec, FNT_R_VALUE);
    if (event == NULL || value == NULL)
        return -1;
    if (fnt_same_str(event, self->ev_unwind)) {
        int truth = PyObject_IsTrue(value);
        if (truth < 0 || FNT_TB_LIT(b, "raised ") < 0)
            return -1;
        if (truth)
            return fnt_tb_obj(b, value) < 0 ? -1 : 1;
        return FNT_TB_LIT(b, "(type unknown on 3.11)") < 0 ? -1 : 1;
    }
    if (fnt_same_str(event, self->ev_yield)) {
        if (FNT_TB_LIT(b, "yield") < 0)
            return -1;
        if (value == Py_None)
            return 1;
        return FNT_TB_LIT(b, " ret=") < 0 || fnt_tb_obj(b, value) < 0 ? -1 : 1;
    }
    if (value == Py_None)
        return 0;
    return FNT_TB_LIT(b, "ret=") < 0 || fnt_tb_obj(b, value) < 0 ? -1 : 1;
}

/* Whether two records name the same function (name, flags, file, line), as
 * replay's Functions table makes them one object. */
static int
same_function(GraphRenderer *self, PyObject *a, PyObject *b)
{
    static const int f[] = {FNT_R_FUNC, FNT_R_CODE_FLAGS, FNT_R_SRC_FILE, FNT_R_SRC_LINE};
    for (int i = 0; i < 4; i++) {
        PyObject *x = GET(a, f[i]), *y = GET(b, f[i]);
        if (x == NULL || y == NULL)
            return -1;
        if (x == y)
            continue;
        int eq = PyObject_RichCompareBool(x, y, Py_EQ);
        if (eq <= 0)
            return eq;
    }
    return 1;
}

/* GraphText.enter: the line of an entry that opens a block. */
static int
render_enter(GraphRenderer *self, gthread *t, PyObject *rec, fnt_tbuf *b)
{
    long long depth;
    PyObject *dv = GET(rec, FNT_R_DEPTH), *ts = GET(rec, FNT_R_TS);
    if (dv == NULL || ts == NULL || depth_of(dv, &depth) < 0)
        return -1;
    if (t->nopen == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        frame *o = PyMem_Realloc(t->open, cap * sizeof(frame));
        if (o == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->open = o;
        t->cap = cap;
    }
    frame *f = &t->open[t->nopen];
    PyObject *name = GET(rec, FNT_R_FUNC), *flags = GET(rec, FNT_R_CODE_FLAGS);
    PyObject *file = GET(rec, FNT_R_SRC_FILE), *line = GET(rec, FNT_R_SRC_LINE);
    if (!name || !flags || !file || !line)
        return -1;
    f->name = Py_NewRef(name);
    f->flags = Py_NewRef(flags);
    f->file = Py_NewRef(file);
    f->line = Py_NewRef(line);
    f->depth = depth;
    t->nopen++;
    t->level = depth + 1;
    t->has_level = 1;
    if (put_prefix(self, b, t, ts) < 0 || put_column(self, b, NULL) < 0
        || put_indent(b, depth) < 0 || put_call(self, b, rec) < 0 || FNT_TB_LIT(b, " {") < 0)
        return -1;
    if (self->srcline && put_srcline(self, b, rec) < 0)
        return -1;
    return FNT_TB_LIT(b, "\n");
}

/* GraphText.leaf: an entry and its exit as one line. */
static int
render_leaf(GraphRenderer *self, gthread *t, PyObject *rec, PyObject *ex, fnt_tbuf *b)
{
    long long depth;
    PyObject *dv = GET(rec, FNT_R_DEPTH), *ts = GET(rec, FNT_R_TS);
    PyObject *dur = GET(ex, FNT_R_DURATION);
    if (dv == NULL || ts == NULL || dur == NULL || depth_of(dv, &depth) < 0)
        return -1;
    t->level = depth;
    t->has_level = 1;
    int truth = PyObject_IsTrue(dur);  /* the event's duration is ``rec.duration or 0`` */
    if (truth < 0)
        return -1;
    PyObject *zero = NULL;
    if (!truth && (zero = PyLong_FromLong(0)) == NULL)
        return -1;
    int r = put_prefix(self, b, t, ts);
    if (r == 0)
        r = put_column(self, b, truth ? dur : zero);
    Py_XDECREF(zero);
    if (r < 0 || put_indent(b, depth) < 0 || put_call(self, b, rec) < 0
        || FNT_TB_LIT(b, ";") < 0)
        return -1;
    size_t at = b->n;
    if (FNT_TB_LIT(b, " /* ") < 0)
        return -1;
    int notes = put_notes(self, b, ex);
    if (notes < 0)
        return -1;
    if (notes) {
        if (FNT_TB_LIT(b, " */") < 0)
            return -1;
    }
    else
        b->n = at;
    if (self->srcline && put_srcline(self, b, rec) < 0)
        return -1;
    return FNT_TB_LIT(b, "\n");
}

/* GraphText.close: an exit that ends a block (or whose entry is not here). */
static int
render_close(GraphRenderer *self, gthread *t, PyObject *rec, fnt_tbuf *b)
{
    long long depth;
    PyObject *dv = GET(rec, FNT_R_DEPTH), *ts = GET(rec, FNT_R_TS);
    PyObject *dur = GET(rec, FNT_R_DURATION), *name = GET(rec, FNT_R_FUNC);
    PyObject *flags = GET(rec, FNT_R_CODE_FLAGS), *file = GET(rec, FNT_R_SRC_FILE);
    PyObject *line = GET(rec, FNT_R_SRC_LINE);
    if (!dv || !ts || !dur || !name || !flags || !file || !line || depth_of(dv, &depth) < 0)
        return -1;
    int matched = 0;
    while (t->nopen && t->open[t->nopen - 1].depth >= depth) {
        frame f = t->open[--t->nopen];
        if (f.depth == depth) {
            matched = 1;
            PyObject *mine[4] = {name, flags, file, line};
            PyObject *theirs[4] = {f.name, f.flags, f.file, f.line};
            for (int i = 0; i < 4 && matched; i++) {
                if (mine[i] == theirs[i])
                    continue;
                int eq = PyObject_RichCompareBool(mine[i], theirs[i], Py_EQ);
                if (eq < 0) {
                    frame_clear(&f);
                    return -1;
                }
                matched = eq;
            }
            frame_clear(&f);
            break;
        }
        frame_clear(&f);
    }
    t->level = depth;
    t->has_level = 1;
    int truth = PyObject_IsTrue(dur);
    if (truth < 0)
        return -1;
    PyObject *zero = NULL;
    if (!truth && (zero = PyLong_FromLong(0)) == NULL)
        return -1;
    int r = put_prefix(self, b, t, ts);
    if (r == 0)
        r = put_column(self, b, truth ? dur : zero);
    Py_XDECREF(zero);
    if (r < 0 || put_indent(b, depth) < 0)
        return -1;
    /* the closing brace, then a comment of the name and the notes when there are
     * notes, of the name alone under funcgraph-tail or when the block was not
     * matched; else the brace alone */
    size_t at = b->n;
    if (FNT_TB_LIT(b, "} /* ") < 0 || fnt_tb_obj(b, name) < 0 || FNT_TB_LIT(b, " ") < 0)
        return -1;
    int notes = put_notes(self, b, rec);
    if (notes < 0)
        return -1;
    if (notes) {
        if (FNT_TB_LIT(b, " */\n") < 0)
            return -1;
        return 0;
    }
    b->n--;  /* the space before the notes */
    if (self->tail || !matched)
        return FNT_TB_LIT(b, " */\n");
    b->n = at;
    return FNT_TB_LIT(b, "}\n");
}

/* GraphText.comment: a marker's line at its thread's level. */
static int
render_comment(GraphRenderer *self, gthread *t, PyObject *rec, fnt_tbuf *b)
{
    PyObject *ts = GET(rec, FNT_R_TS), *text = GET(rec, FNT_R_TEXT);
    if (ts == NULL || text == NULL || put_prefix(self, b, t, ts) < 0
        || put_column(self, b, NULL) < 0 || put_indent(b, t->has_level ? t->level : 0) < 0
        || FNT_TB_LIT(b, "/* ") < 0 || fnt_tb_obj(b, text) < 0)
        return -1;
    return FNT_TB_LIT(b, " */\n");
}

/* Text out, each line after the thread's pid label when the files are several
 * processes' (str.splitlines' line ends: \r\n is one). */
static int
write_out(GraphRenderer *self, gthread *t, const char *s, size_t n)
{
    if (!self->multi)
        return fnt_tb_put(&self->out, s, n);
    size_t i = 0;
    while (i < n) {
        if (fnt_tb_put(&self->out, t->label.p, t->label.n) < 0)
            return -1;
        size_t start = i;
        for (;;) {
            if (i >= n)
                break;
            unsigned char c = (unsigned char)s[i];
            size_t w = 0;
            if (c == '\n' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e)
                w = 1;
            else if (c == '\r')
                w = (i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
            else if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] == 0x85)
                w = 2;
            else if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80
                     && ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
                w = 3;
            if (w) {
                i += w;
                break;
            }
            i++;
        }
        if (fnt_tb_put(&self->out, s + start, i - start) < 0)
            return -1;
    }
    return 0;
}

/* Queue the lines that are final at the queue's head out. */
static int
flush_queue(GraphRenderer *self)
{
    while (self->qhead < self->qn && self->queue[self->qhead].final) {
        qitem *q = &self->queue[self->qhead];
        int r = write_out(self, &self->threads[q->thread], q->text, q->n);
        PyMem_Free(q->text);
        q->text = NULL;
        self->qhead++;
        if (r < 0)
            return -1;
    }
    if (self->qhead == self->qn) {
        self->qbase += self->qn;
        self->qhead = self->qn = 0;
    }
    else if (self->qhead > 1024 && self->qhead * 2 > self->qn) {
        memmove(self->queue, self->queue + self->qhead,
                (self->qn - self->qhead) * sizeof(qitem));
        self->qbase += self->qhead;
        self->qn -= self->qhead;
        self->qhead = 0;
    }
    return 0;
}

/* A place in the queue (its text still to come when !final); its sequence number. */
static int
queue_push(GraphRenderer *self, uint32_t thread, int final, const char *s, size_t n,
           uint64_t *seq)
{
    if (self->qn == self->qcap) {
        size_t cap = self->qcap ? self->qcap * 2 : 64;
        qitem *q = PyMem_Realloc(self->queue, cap * sizeof(qitem));
        if (q == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->queue = q;
        self->qcap = cap;
    }
    qitem *q = &self->queue[self->qn];
    q->thread = thread;
    q->final = final;
    q->text = NULL;
    q->n = 0;
    if (final) {
        q->text = PyMem_Malloc(n ? n : 1);
        if (q->text == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(q->text, s, n);
        q->n = n;
    }
    if (seq != NULL)
        *seq = self->qbase + self->qn;
    self->qn++;
    return 0;
}

/* A line made final: out now, or behind the entries that wait. */
static int
emit(GraphRenderer *self, uint32_t thread, const char *s, size_t n)
{
    if (self->qhead == self->qn)
        return write_out(self, &self->threads[thread], s, n);
    if (queue_push(self, thread, 1, s, n, NULL) < 0)
        return -1;
    return flush_queue(self);
}

/* The waiting entry's place gets its text (the line buffer's). */
static int
settle(GraphRenderer *self, uint64_t seq)
{
    qitem *q = &self->queue[seq - self->qbase];
    q->text = PyMem_Malloc(self->line.n ? self->line.n : 1);
    if (q->text == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(q->text, self->line.p, self->line.n);
    q->n = self->line.n;
    q->final = 1;
    return 0;
}

static int
render_one(GraphRenderer *self, PyObject *rec)
{
    if (Py_TYPE(rec) != self->rl.type) {
        PyErr_SetString(PyExc_TypeError, "GraphRenderer: records only");
        return -1;
    }
    PyObject *kind = GET(rec, FNT_R_KIND);
    if (kind == NULL)
        return -1;
    int is_entry = fnt_same_str(kind, self->kind_entry);
    int is_exit = !is_entry && fnt_same_str(kind, self->kind_exit);
    if (!is_entry && !is_exit && fnt_same_str(kind, self->kind_task)) {
        PyErr_SetString(PyExc_ValueError,
                        "GraphRenderer: a task note (the Python renderer reads them)");
        return -1;
    }
    Py_ssize_t ti = thread_of(self, rec);
    if (ti < 0)
        return -1;
    gthread *t = &self->threads[ti];
    fnt_tbuf *line = &self->line;
    if (t->waiting != NULL) {
        PyObject *entry = t->waiting;
        t->waiting = NULL;
        int leaf = 0;
        if (is_exit) {
            PyObject *d1 = GET(rec, FNT_R_DEPTH), *d2 = GET(entry, FNT_R_DEPTH);
            if (d1 == NULL || d2 == NULL) {
                Py_DECREF(entry);
                return -1;
            }
            leaf = same_function(self, rec, entry);
            if (leaf > 0 && d1 != d2)
                leaf = PyObject_RichCompareBool(d1, d2, Py_EQ);
            if (leaf < 0) {
                Py_DECREF(entry);
                return -1;
            }
        }
        line->n = 0;
        int r = leaf ? render_leaf(self, t, entry, rec, line) : render_enter(self, t, entry, line);
        Py_DECREF(entry);
        if (r < 0 || settle(self, t->wseq) < 0)
            return -1;
        if (leaf)
            return flush_queue(self);
    }
    if (is_entry) {
        if (queue_push(self, (uint32_t)ti, 0, NULL, 0, &t->wseq) < 0)
            return -1;
        t->waiting = Py_NewRef(rec);
        return 0;
    }
    line->n = 0;
    if (is_exit) {
        if (render_close(self, t, rec, line) < 0)
            return -1;
    }
    else if (fnt_same_str(kind, self->kind_marker)) {
        if (render_comment(self, t, rec, line) < 0)
            return -1;
    }
    else {
        PyObject *text = PyObject_CallFunction(self->other, "nO", ti, rec);
        if (text == NULL)
            return -1;
        int r = PyUnicode_Check(text) ? fnt_tb_str(line, text) : -1;
        if (r < 0 && !PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "GraphRenderer: other() gave no str");
        Py_DECREF(text);
        if (r < 0)
            return -1;
    }
    return emit(self, (uint32_t)ti, line->p, line->n);
}

/* render_one for fnt_tb_batch. */
static int
render_one_any(void *self, PyObject *rec)
{
    return render_one((GraphRenderer *)self, rec);
}

PyDoc_STRVAR(render_doc,
"render(records, /) -> str\n"
"The text of these records (a list, in time order) that is final once they are\n"
"read: a line waits only while an entry before it waits for its thread's next event.");

static PyObject *
renderer_render(GraphRenderer *self, PyObject *records)
{
    if (self->keys == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "GraphRenderer is not initialised");
        return NULL;
    }
    return fnt_tb_batch(self, render_one_any, &self->out, records, "render");
}

PyDoc_STRVAR(finish_doc,
"finish() -> str\n"
"The rest: each entry still waiting opens its block, and the queue goes out.");

static PyObject *
renderer_finish(GraphRenderer *self, PyObject *unused)
{
    if (self->keys == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "GraphRenderer is not initialised");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->nthreads; i++) {
        gthread *t = &self->threads[i];
        if (t->waiting == NULL)
            continue;
        PyObject *entry = t->waiting;
        t->waiting = NULL;
        self->line.n = 0;
        int r = render_enter(self, t, entry, &self->line);
        Py_DECREF(entry);
        if (r < 0 || settle(self, t->wseq) < 0)
            return NULL;
    }
    if (flush_queue(self) < 0)
        return NULL;
    return fnt_tb_take(&self->out);
}

static PyMethodDef renderer_methods[] = {
    {"render", (PyCFunction)renderer_render, METH_O, render_doc},
    {"finish", (PyCFunction)renderer_finish, METH_NOARGS, finish_doc},
    {NULL}
};

static PyTypeObject GraphRenderer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.GraphRenderer",
    .tp_doc = "GraphRenderer(record_class, field_names, kinds, events, keys, heads, labels, "
              "abstime, duration, overhead, tail, srcline, other, slow): function_graph's "
              "text of Records, as graph_text.GraphText writes it.",
    .tp_basicsize = sizeof(GraphRenderer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)renderer_init,
    .tp_dealloc = (destructor)renderer_dealloc,
    .tp_methods = renderer_methods,
};

int
fnt_render_graph_add_types(PyObject *m)
{
    return fnt_add_type(m, &GraphRenderer_Type, "GraphRenderer");
}

#endif  /* FNT_HOT_PATH */
