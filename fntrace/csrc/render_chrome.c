/* render_chrome.c: ChromeJSON - ``fntrace dump --chrome``'s Trace Event Format
 * events, written in C a batch of Records at a time.
 *
 * Why: made in Python (analysis/dump.py ChromeWriter over segments.walk, a
 * dict and a json.dumps per event) an event costs ~7 us.  This writes the same
 * bytes: segments paired as segments.walk pairs them (per thread, an exit
 * closes the open entry of its depth when it is the same function), the
 * events' keys in ChromeWriter's order, each function's source location as
 * Locations notes it (the first record of a name that carries one), numbers
 * as json.dumps writes them (a time in us is repr(ns / 1000)), strings as
 * json.dumps(ensure_ascii=True) escapes them.  ChromeWriter stays the
 * reference and the fallback (a trace with asyncio task notes is written by
 * chrome_tasks.py); tests/test_chrome_c.py compares the two.
 *
 * A thread met for the first time is named by a Python callable (the writer's
 * own metadata events); a time C's 64 bits cannot hold is computed with
 * Python's numbers.
 */
#include "textbuf.h"

#ifdef FNT_HOT_PATH

/* |ns| below this: ns / 1000 as a double is exact enough that its repr is the
 * decimal ns / 1000 itself (an ulp of it is below 0.001). */
#define US_EXACT 8796093022208000LL
/* |ns| below this: sums and differences of two stay in 64 bits. */
#define SMALL (1LL << 61)

typedef struct {
    PyObject *func, *ts, *event, *args;   /* strong references */
    long long depth;
} cframe;

typedef struct {
    PyObject *pid, *tid;
    cframe *frames;          /* open entries, in ascending depth */
    size_t n, cap;
    int walked;              /* met as an entry or an exit (segments.walk's threads) */
    int named;               /* the writer was asked to name it */
} cthread;

/* A str's JSON, kept for the str object (held): names and event names repeat. */
typedef struct {
    PyObject *key;
    char *json;
    size_t n;
} esc_entry;

#define ESC_SLOTS 1024

typedef struct {
    PyObject_HEAD
    fnt_rec_layout rl;
    PyObject *type_ref;
    esc_entry esc[ESC_SLOTS];
    PyObject *k_entry, *k_exit, *k_call, *k_marker, *k_text;
    PyObject *e_unwind, *e_yield;
    PyObject *name_thread;     /* name_thread(pid, tid) -> list of JSON texts */
    PyObject *keys;            /* dict: (pid, tid) -> index */
    PyObject *locations;       /* dict: function name -> (file, line) */
    PyObject *t0, *last;       /* None until the first record when t0 is not given */
    cthread *threads;
    size_t nthreads, cap;
    size_t *walk_order;        /* thread indices in the order walk met them */
    size_t nwalk;
    PyObject *last_pid, *last_tid;
    size_t last_index;
    long long count;           /* events written, the metadata's included */
    fnt_tbuf out;
} ChromeJSON;

static void
cframe_clear(cframe *f)
{
    Py_CLEAR(f->func);
    Py_CLEAR(f->ts);
    Py_CLEAR(f->event);
    Py_CLEAR(f->args);
}

static void
chrome_dealloc(ChromeJSON *self)
{
    for (size_t i = 0; i < self->nthreads; i++) {
        cthread *t = &self->threads[i];
        for (size_t k = 0; k < t->n; k++)
            cframe_clear(&t->frames[k]);
        PyMem_Free(t->frames);
        Py_CLEAR(t->pid);
        Py_CLEAR(t->tid);
    }
    PyMem_Free(self->threads);
    PyMem_Free(self->walk_order);
    fnt_tb_free(&self->out);
    for (size_t i = 0; i < ESC_SLOTS; i++) {
        Py_CLEAR(self->esc[i].key);
        PyMem_Free(self->esc[i].json);
    }
    Py_CLEAR(self->type_ref);
    Py_CLEAR(self->k_entry);
    Py_CLEAR(self->k_exit);
    Py_CLEAR(self->k_call);
    Py_CLEAR(self->k_marker);
    Py_CLEAR(self->k_text);
    Py_CLEAR(self->e_unwind);
    Py_CLEAR(self->e_yield);
    Py_CLEAR(self->name_thread);
    Py_CLEAR(self->keys);
    Py_CLEAR(self->locations);
    Py_CLEAR(self->t0);
    Py_CLEAR(self->last);
    Py_CLEAR(self->last_pid);
    Py_CLEAR(self->last_tid);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
chrome_init(ChromeJSON *self, PyObject *args, PyObject *kwds)
{
    PyTypeObject *type;
    PyObject *fields, *kinds, *events, *t0, *name_thread;
    long long count;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OLO:ChromeJSON", &PyType_Type, &type, &PyTuple_Type,
                          &fields, &PyTuple_Type, &kinds, &PyTuple_Type, &events, &t0, &count,
                          &name_thread))
        return -1;
    if (self->keys != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ChromeJSON is initialised once");
        return -1;
    }
    if (fnt_rec_layout_init(&self->rl, type, fields) < 0)
        return -1;
    if (PyTuple_GET_SIZE(kinds) != 5 || PyTuple_GET_SIZE(events) != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "ChromeJSON: kinds (entry, exit, call, marker, text), events (unwind, "
                        "yield)");
        return -1;
    }
    if (t0 != Py_None && !PyLong_Check(t0)) {
        PyErr_SetString(PyExc_TypeError, "ChromeJSON: t0 is an int or None");
        return -1;
    }
    self->type_ref = Py_NewRef(type);
    self->k_entry = Py_NewRef(PyTuple_GET_ITEM(kinds, 0));
    self->k_exit = Py_NewRef(PyTuple_GET_ITEM(kinds, 1));
    self->k_call = Py_NewRef(PyTuple_GET_ITEM(kinds, 2));
    self->k_marker = Py_NewRef(PyTuple_GET_ITEM(kinds, 3));
    self->k_text = Py_NewRef(PyTuple_GET_ITEM(kinds, 4));
    self->e_unwind = Py_NewRef(PyTuple_GET_ITEM(events, 0));
    self->e_yield = Py_NewRef(PyTuple_GET_ITEM(events, 1));
    self->name_thread = Py_NewRef(name_thread);
    self->t0 = Py_NewRef(t0);
    self->last = Py_NewRef(t0);
    self->count = count;
    self->keys = PyDict_New();
    self->locations = PyDict_New();
    return self->keys && self->locations ? 0 : -1;
}

#define GET(rec, f) fnt_rec_get(&self->rl, (rec), (f))

/* -- numbers and strings as json.dumps writes them ---------------------------------- */

static const char hexdigits[] = "0123456789abcdef";

/* A str as json.dumps(ensure_ascii=True) writes it, quotes included. */
static int
put_json_str(fnt_tbuf *b, PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (fnt_tb_reserve(b, (size_t)n + 2) < 0)
        return -1;
    b->p[b->n++] = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= ' ' && c <= '~' && c != '\\' && c != '"') {
            if (fnt_tb_reserve(b, 1) < 0)
                return -1;
            b->p[b->n++] = (char)c;
            continue;
        }
        if (fnt_tb_reserve(b, 12) < 0)
            return -1;
        char *p = b->p + b->n;
        switch (c) {
        case '\\': p[0] = '\\'; p[1] = '\\'; b->n += 2; continue;
        case '"': p[0] = '\\'; p[1] = '"'; b->n += 2; continue;
        case '\n': p[0] = '\\'; p[1] = 'n'; b->n += 2; continue;
        case '\r': p[0] = '\\'; p[1] = 'r'; b->n += 2; continue;
        case '\t': p[0] = '\\'; p[1] = 't'; b->n += 2; continue;
        case '\b': p[0] = '\\'; p[1] = 'b'; b->n += 2; continue;
        case '\f': p[0] = '\\'; p[1] = 'f'; b->n += 2; continue;
        default: break;
        }
        Py_UCS4 units[2];
        int nu = 1;
        if (c >= 0x10000) {
            Py_UCS4 v = c - 0x10000;
            units[0] = 0xd800 | ((v >> 10) & 0x3ff);
            units[1] = 0xdc00 | (v & 0x3ff);
            nu = 2;
        }
        else
            units[0] = c;
        for (int u = 0; u < nu; u++) {
            p[0] = '\\';
            p[1] = 'u';
            p[2] = hexdigits[(units[u] >> 12) & 0xf];
            p[3] = hexdigits[(units[u] >> 8) & 0xf];
            p[4] = hexdigits[(units[u] >> 4) & 0xf];
            p[5] = hexdigits[units[u] & 0xf];
            p += 6;
            b->n += 6;
        }
    }
    if (fnt_tb_reserve(b, 1) < 0)
        return -1;
    b->p[b->n++] = '"';
    return 0;
}

/* A field's value: a str, None (null) or an int, as json.dumps writes it. */
static int
put_json_value(fnt_tbuf *b, PyObject *v)
{
    if (PyUnicode_Check(v))
        return put_json_str(b, v);
    if (v == Py_None)
        return FNT_TB_LIT(b, "null");
    if (PyLong_CheckExact(v))
        return fnt_tb_obj(b, v);
    PyErr_Format(PyExc_TypeError, "ChromeJSON: a field of type %.100s", Py_TYPE(v)->tp_name);
    return -1;
}

/* put_json_value of a str that recurs (a function's or an event's name). */
static int
put_json_name(ChromeJSON *self, fnt_tbuf *b, PyObject *s)
{
    if (!PyUnicode_Check(s))
        return put_json_value(b, s);
    esc_entry *e = &self->esc[fnt_ptr_slot(s, ESC_SLOTS)];
    if (e->key != s) {
        fnt_tbuf tmp = {0};
        if (put_json_str(&tmp, s) < 0) {
            fnt_tb_free(&tmp);
            return -1;
        }
        Py_XSETREF(e->key, Py_NewRef(s));
        PyMem_Free(e->json);
        e->json = tmp.p;
        e->n = tmp.n;
    }
    return fnt_tb_put(b, e->json, e->n);
}

/* repr(ns / 1000) of a Python int: json.dumps' float of a time in us. */
static int
put_us_obj(fnt_tbuf *b, PyObject *ns)
{
    PyObject *k = PyLong_FromLong(1000);
    if (k == NULL)
        return -1;
    PyObject *f = PyNumber_TrueDivide(ns, k);
    Py_DECREF(k);
    if (f == NULL)
        return -1;
    PyObject *r = PyObject_Repr(f);
    Py_DECREF(f);
    if (r == NULL)
        return -1;
    int rc = fnt_tb_str(b, r);
    Py_DECREF(r);
    return rc;
}

static int
put_us(fnt_tbuf *b, long long ns)
{
    if (ns <= -US_EXACT || ns >= US_EXACT) {
        PyObject *o = PyLong_FromLongLong(ns);
        if (o == NULL)
            return -1;
        int r = put_us_obj(b, o);
        Py_DECREF(o);
        return r;
    }
    char tmp[40];
    int k = 0;
    unsigned long long a = ns < 0 ? (unsigned long long)(-ns) : (unsigned long long)ns;
    if (ns < 0)
        tmp[k++] = '-';
    k += snprintf(tmp + k, sizeof tmp - (size_t)k, "%llu", a / 1000);
    tmp[k++] = '.';
    unsigned r = (unsigned)(a % 1000);
    if (r == 0)
        tmp[k++] = '0';
    else {
        char d[3] = {(char)('0' + r / 100), (char)('0' + r / 10 % 10), (char)('0' + r % 10)};
        int nd = 3;
        while (d[nd - 1] == '0')
            nd--;
        memcpy(tmp + k, d, (size_t)nd);
        k += nd;
    }
    return fnt_tb_put(b, tmp, (size_t)k);
}

/* A Python int as a C number when it is small enough for sums; 0 when not. */
static int
small(PyObject *v, long long *out)
{
    if (!PyLong_Check(v))
        return 0;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if (x <= -SMALL || x >= SMALL)
        return 0;
    *out = x;
    return 1;
}

/* max(a - b, 0) / 1000, written; Python's numbers where C's do not hold them. */
static int
put_since(fnt_tbuf *b, PyObject *a, PyObject *t)
{
    long long x, y;
    if (small(a, &x) && small(t, &y))
        return put_us(b, x > y ? x - y : 0);
    PyObject *d = PyNumber_Subtract(a, t);
    if (d == NULL)
        return -1;
    PyObject *zero = PyLong_FromLong(0);
    int neg = zero ? PyObject_RichCompareBool(d, zero, Py_LT) : -1;
    int r = neg < 0 ? -1 : put_us_obj(b, neg ? zero : d);
    Py_XDECREF(zero);
    Py_DECREF(d);
    return r;
}

/* max(a, b) (a new reference). */
static PyObject *
num_max(PyObject *a, PyObject *b)
{
    long long x, y;
    if (small(a, &x) && small(b, &y))
        return Py_NewRef(x >= y ? a : b);
    int lt = PyObject_RichCompareBool(a, b, Py_LT);
    if (lt < 0)
        return NULL;
    return Py_NewRef(lt ? b : a);
}

/* -- threads ------------------------------------------------------------------------- */

static cthread *
thread_of(ChromeJSON *self, PyObject *rec)
{
    PyObject *pid = GET(rec, FNT_R_PID), *tid = GET(rec, FNT_R_TID);
    if (pid == NULL || tid == NULL)
        return NULL;
    if (pid == self->last_pid && tid == self->last_tid)
        return &self->threads[self->last_index];
    PyObject *key = PyTuple_Pack(2, pid, tid);
    if (key == NULL)
        return NULL;
    PyObject *found = PyDict_GetItemWithError(self->keys, key);
    size_t i;
    if (found != NULL)
        i = PyLong_AsSize_t(found);
    else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    else {
        if (self->nthreads == self->cap) {
            size_t cap = self->cap ? self->cap * 2 : 16;
            cthread *t = PyMem_Realloc(self->threads, cap * sizeof(cthread));
            size_t *w = PyMem_Realloc(self->walk_order, cap * sizeof(size_t));
            if (t != NULL)
                self->threads = t;
            if (w != NULL)
                self->walk_order = w;
            if (t == NULL || w == NULL) {
                Py_DECREF(key);
                PyErr_NoMemory();
                return NULL;
            }
            self->cap = cap;
        }
        i = self->nthreads;
        PyObject *index = PyLong_FromSize_t(i);
        int bad = index == NULL || PyDict_SetItem(self->keys, key, index) < 0;
        Py_XDECREF(index);
        if (bad) {
            Py_DECREF(key);
            return NULL;
        }
        cthread *t = &self->threads[i];
        memset(t, 0, sizeof *t);
        t->pid = Py_NewRef(pid);
        t->tid = Py_NewRef(tid);
        self->nthreads++;
    }
    Py_DECREF(key);
    Py_XSETREF(self->last_pid, Py_NewRef(pid));
    Py_XSETREF(self->last_tid, Py_NewRef(tid));
    self->last_index = i;
    return &self->threads[i];
}

static int
separator(ChromeJSON *self)
{
    int r = self->count ? FNT_TB_LIT(&self->out, ",\n") : 0;
    self->count++;
    return r;
}

/* The writer's metadata events of a thread met for the first time (once). */
static int
name_once(ChromeJSON *self, cthread *t)
{
    if (t->named)
        return 0;
    t->named = 1;
    PyObject *texts = PyObject_CallFunctionObjArgs(self->name_thread, t->pid, t->tid, NULL);
    if (texts == NULL)
        return -1;
    if (!PyList_Check(texts)) {
        Py_DECREF(texts);
        PyErr_SetString(PyExc_TypeError, "ChromeJSON: name_thread gives a list of str");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(texts); i++) {
        PyObject *s = PyList_GET_ITEM(texts, i);
        if (!PyUnicode_Check(s) || separator(self) < 0 || fnt_tb_str(&self->out, s) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "ChromeJSON: name_thread gives a list of str");
            Py_DECREF(texts);
            return -1;
        }
    }
    Py_DECREF(texts);
    return 0;
}

/* -- events -------------------------------------------------------------------------- */

/* ``"args": {...}`` 's location keys of a function, when Locations knows it. */
static int
put_location(ChromeJSON *self, fnt_tbuf *b, PyObject *func, int first)
{
    PyObject *where = PyDict_GetItemWithError(self->locations, func);
    if (where == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!first && FNT_TB_LIT(b, ", ") < 0)
        return -1;
    if (FNT_TB_LIT(b, "\"file\": ") < 0 || put_json_name(self, b, PyTuple_GET_ITEM(where, 0)) < 0
        || FNT_TB_LIT(b, ", \"line\": ") < 0 || put_json_value(b, PyTuple_GET_ITEM(where, 1)) < 0)
        return -1;
    return 0;
}

/* ``"pid": P, "tid": T`` */
static int
put_ids(fnt_tbuf *b, cthread *t)
{
    if (FNT_TB_LIT(b, "\"pid\": ") < 0 || put_json_value(b, t->pid) < 0
        || FNT_TB_LIT(b, ", \"tid\": ") < 0 || put_json_value(b, t->tid) < 0)
        return -1;
    return 0;
}

/* A complete ``X`` event of a function, up to its args: start and end in C
 * numbers (start at or after t0), all of them small. */
static int
put_x_small(ChromeJSON *self, cthread *t, PyObject *func, long long start, long long end,
            long long t0)
{
    fnt_tbuf *b = &self->out;
    if (separator(self) < 0 || FNT_TB_LIT(b, "{\"name\": ") < 0 || put_json_name(self, b, func) < 0
        || FNT_TB_LIT(b, ", \"cat\": \"function\", \"ph\": \"X\", \"ts\": ") < 0
        || put_us(b, start - t0) < 0 || FNT_TB_LIT(b, ", \"dur\": ") < 0
        || put_us(b, end - start) < 0)
        return -1;
    return FNT_TB_LIT(b, ", ") < 0 || put_ids(b, t) < 0 ? -1 : FNT_TB_LIT(b, ", \"args\": {");
}

/* The same of Python ints. */
static int
put_x(ChromeJSON *self, cthread *t, PyObject *func, PyObject *start, PyObject *end)
{
    fnt_tbuf *b = &self->out;
    if (separator(self) < 0 || FNT_TB_LIT(b, "{\"name\": ") < 0 || put_json_name(self, b, func) < 0
        || FNT_TB_LIT(b, ", \"cat\": \"function\", \"ph\": \"X\", \"ts\": ") < 0
        || put_since(b, start, self->t0) < 0 || FNT_TB_LIT(b, ", \"dur\": ") < 0)
        return -1;
    long long s, e;
    if (small(start, &s) && small(end, &e)) {
        if (put_us(b, e - s) < 0)
            return -1;
    }
    else {
        PyObject *d = PyNumber_Subtract(end, start);
        if (d == NULL)
            return -1;
        int r = put_us_obj(b, d);
        Py_DECREF(d);
        if (r < 0)
            return -1;
    }
    return FNT_TB_LIT(b, ", ") < 0 || put_ids(b, t) < 0 ? -1 : FNT_TB_LIT(b, ", \"args\": {");
}

/* An exit: the segment it ends, as ChromeWriter._segment writes it. */
static int
exit_record(ChromeJSON *self, cthread *t, PyObject *rec, long long depth)
{
    PyObject *func = GET(rec, FNT_R_FUNC), *ts = GET(rec, FNT_R_TS);
    PyObject *dur = GET(rec, FNT_R_DURATION), *event = GET(rec, FNT_R_EVENT);
    PyObject *value = GET(rec, FNT_R_VALUE);
    if (!func || !ts || !dur || !event || !value)
        return -1;
    /* frames.get(depth) and whether it is this function */
    cframe *opened = NULL;
    size_t at = 0;
    for (size_t k = t->n; k > 0; k--) {
        if (t->frames[k - 1].depth == depth) {
            opened = &t->frames[k - 1];
            at = k - 1;
            break;
        }
        if (t->frames[k - 1].depth < depth)
            break;
    }
    int matched = 0;
    if (opened != NULL) {
        matched = opened->func == func ? 1 : PyObject_RichCompareBool(opened->func, func, Py_EQ);
        if (matched < 0)
            return -1;
    }
    if (name_once(self, t) < 0)
        return -1;
    PyObject *duration = NULL, *zero = NULL, *start = NULL, *begin = NULL;
    int r = -1;
    /* the duration: the exit's, else from the entry, else 0; never below 0 */
    long long tsv, durv = 0, t0v, lastv, ov = 0;
    if (small(ts, &tsv) && small(self->t0, &t0v) && small(self->last, &lastv)
        && (dur != Py_None ? small(dur, &durv) : !matched || small(opened->ts, &ov))) {
        if (dur == Py_None)
            durv = matched ? tsv - ov : 0;
        if (durv < 0)
            durv = 0;
        if (tsv > lastv)
            Py_SETREF(self->last, Py_NewRef(ts));
        if (put_x_small(self, t, func, tsv - durv < t0v ? t0v : tsv - durv, tsv, t0v) < 0)
            return -1;
        goto args;
    }
    if (dur != Py_None)
        duration = Py_NewRef(dur);
    else if (matched)
        duration = PyNumber_Subtract(ts, opened->ts);
    else
        duration = PyLong_FromLong(0);
    if (duration == NULL || (zero = PyLong_FromLong(0)) == NULL)
        goto done;
    Py_SETREF(duration, num_max(duration, zero));
    if (duration == NULL)
        goto done;
    if ((start = PyNumber_Subtract(ts, duration)) == NULL
        || (begin = num_max(start, self->t0)) == NULL)
        goto done;
    PyObject *last = num_max(self->last, ts);  /* the segment's end is the exit's time */
    if (last == NULL)
        goto done;
    Py_SETREF(self->last, last);
    if (put_x(self, t, func, begin, ts) < 0)
        goto done;
    Py_CLEAR(zero);
    Py_CLEAR(start);
    Py_CLEAR(begin);
    Py_CLEAR(duration);
args:;
    fnt_tbuf *b = &self->out;
    if (matched) {
        if (FNT_TB_LIT(b, "\"entry\": ") < 0 || put_json_name(self, b, opened->event) < 0)
            goto done;
        if (opened->args != Py_None && (FNT_TB_LIT(b, ", \"args\": ") < 0
                                        || put_json_value(b, opened->args) < 0))
            goto done;
        if (FNT_TB_LIT(b, ", ") < 0)
            goto done;
    }
    if (FNT_TB_LIT(b, "\"exit\": ") < 0 || put_json_name(self, b, event) < 0)
        goto done;
    if (value != Py_None) {
        const char *key = fnt_same_str(event, self->e_unwind) ? ", \"raised\": "
                          : fnt_same_str(event, self->e_yield) ? ", \"yielded\": "
                          : ", \"retval\": ";
        if (fnt_tb_put(b, key, strlen(key)) < 0 || put_json_value(b, value) < 0)
            goto done;
    }
    if (put_location(self, b, func, 0) < 0 || FNT_TB_LIT(b, "}}") < 0)
        goto done;
    if (matched) {  /* drop_from(depth) */
        for (size_t k = at; k < t->n; k++)
            cframe_clear(&t->frames[k]);
        t->n = at;
    }
    r = 0;
done:
    Py_XDECREF(zero);
    Py_XDECREF(start);
    Py_XDECREF(begin);
    Py_XDECREF(duration);
    return r;
}

static int
entry_record(ChromeJSON *self, cthread *t, PyObject *rec, long long depth)
{
    PyObject *func = GET(rec, FNT_R_FUNC), *ts = GET(rec, FNT_R_TS);
    PyObject *event = GET(rec, FNT_R_EVENT), *args = GET(rec, FNT_R_ARGS);
    if (!func || !ts || !event || !args)
        return -1;
    while (t->n && t->frames[t->n - 1].depth >= depth)
        cframe_clear(&t->frames[--t->n]);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        cframe *f = PyMem_Realloc(t->frames, cap * sizeof(cframe));
        if (f == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->frames = f;
        t->cap = cap;
    }
    cframe *f = &t->frames[t->n++];
    f->func = Py_NewRef(func);
    f->ts = Py_NewRef(ts);
    f->event = Py_NewRef(event);
    f->args = Py_NewRef(args);
    f->depth = depth;
    return 0;
}

/* A call, a marker or a text: an instant ``i`` event (ChromeWriter._record). */
static int
other_record(ChromeJSON *self, cthread *t, PyObject *rec, PyObject *kind)
{
    PyObject *ts = GET(rec, FNT_R_TS);
    if (ts == NULL || name_once(self, t) < 0)
        return -1;
    PyObject *last = num_max(self->last, ts);
    if (last == NULL)
        return -1;
    Py_SETREF(self->last, last);
    int call = fnt_same_str(kind, self->k_call);
    int note = !call && (fnt_same_str(kind, self->k_marker) || fnt_same_str(kind, self->k_text));
    if (!call && !note)
        return 0;
    fnt_tbuf *b = &self->out;
    if (separator(self) < 0 || FNT_TB_LIT(b, "{\"name\": ") < 0)
        return -1;
    PyObject *func = NULL;
    if (call) {
        if ((func = GET(rec, FNT_R_FUNC)) == NULL || put_json_name(self, b, func) < 0
            || FNT_TB_LIT(b, ", \"cat\": \"call\"") < 0)
            return -1;
    }
    else {
        PyObject *text = GET(rec, FNT_R_TEXT);
        if (text == NULL)
            return -1;
        int truth = PyObject_IsTrue(text);
        if (truth < 0)
            return -1;
        if ((truth ? put_json_value(b, text) : FNT_TB_LIT(b, "\"\"")) < 0
            || FNT_TB_LIT(b, ", \"cat\": ") < 0 || put_json_name(self, b, kind) < 0)
            return -1;
    }
    if (FNT_TB_LIT(b, ", \"ph\": \"i\", \"s\": \"t\", ") < 0 || put_ids(b, t) < 0
        || FNT_TB_LIT(b, ", \"ts\": ") < 0 || put_since(b, ts, self->t0) < 0)
        return -1;
    if (!call)
        return FNT_TB_LIT(b, "}");
    PyObject *parent = GET(rec, FNT_R_PARENT), *args = GET(rec, FNT_R_ARGS);
    if (parent == NULL || args == NULL || FNT_TB_LIT(b, ", \"args\": {") < 0)
        return -1;
    int first = 1;
    if (parent != Py_None) {
        if (FNT_TB_LIT(b, "\"parent\": ") < 0 || put_json_name(self, b, parent) < 0)
            return -1;
        first = 0;
    }
    if (args != Py_None) {
        if ((!first && FNT_TB_LIT(b, ", ") < 0) || FNT_TB_LIT(b, "\"args\": ") < 0
            || put_json_value(b, args) < 0)
            return -1;
        first = 0;
    }
    if (put_location(self, b, func, first) < 0)
        return -1;
    return FNT_TB_LIT(b, "}}");
}

static int
write_one(ChromeJSON *self, PyObject *rec)
{
    if (Py_TYPE(rec) != self->rl.type) {
        PyErr_SetString(PyExc_TypeError, "ChromeJSON: records only");
        return -1;
    }
    PyObject *kind = GET(rec, FNT_R_KIND), *func = GET(rec, FNT_R_FUNC);
    PyObject *file = GET(rec, FNT_R_SRC_FILE), *ts = GET(rec, FNT_R_TS);
    if (!kind || !func || !file || !ts)
        return -1;
    /* Locations.watch: the first location of each name */
    if (file != Py_None) {
        int has = PyDict_Contains(self->locations, func);
        if (has < 0)
            return -1;
        if (!has) {
            PyObject *line = GET(rec, FNT_R_SRC_LINE);
            if (line == NULL)
                return -1;
            PyObject *where = PyTuple_Pack(2, file, line);
            int bad = where == NULL || PyDict_SetItem(self->locations, func, where) < 0;
            Py_XDECREF(where);
            if (bad)
                return -1;
        }
    }
    int entry = fnt_same_str(kind, self->k_entry);
    int exit = !entry && fnt_same_str(kind, self->k_exit);
    if (self->t0 == Py_None) {  /* the earliest record is time zero */
        PyObject *t0 = Py_NewRef(ts);
        if (exit) {
            PyObject *dur = GET(rec, FNT_R_DURATION);
            int truth = dur ? PyObject_IsTrue(dur) : -1;
            if (truth < 0) {
                Py_DECREF(t0);
                return -1;
            }
            if (truth) {
                PyObject *d = PyNumber_Subtract(ts, dur), *zero = PyLong_FromLong(0);
                PyObject *m = d && zero ? num_max(d, zero) : NULL;
                Py_XDECREF(d);
                Py_XDECREF(zero);
                Py_DECREF(t0);
                if (m == NULL)
                    return -1;
                t0 = m;
            }
        }
        Py_SETREF(self->t0, t0);
        Py_SETREF(self->last, Py_NewRef(t0));
    }
    cthread *t = thread_of(self, rec);
    if (t == NULL)
        return -1;
    if (entry || exit) {
        if (!t->walked) {
            t->walked = 1;
            self->walk_order[self->nwalk++] = (size_t)(t - self->threads);
        }
        PyObject *dv = GET(rec, FNT_R_DEPTH);
        long long depth;
        if (dv == NULL)
            return -1;
        if (!small(dv, &depth)) {
            PyErr_SetString(PyExc_ValueError, "ChromeJSON: a depth beyond 64 bits");
            return -1;
        }
        return entry ? entry_record(self, t, rec, depth) : exit_record(self, t, rec, depth);
    }
    return other_record(self, t, rec, kind);
}

/* write_one for fnt_tb_batch. */
static int
write_one_any(void *self, PyObject *rec)
{
    return write_one((ChromeJSON *)self, rec);
}

PyDoc_STRVAR(write_doc,
"write(records, /) -> str\n"
"The JSON events of these records (a list, in time order), each after ',\\n' but\n"
"the document's first.");

static PyObject *
chrome_write(ChromeJSON *self, PyObject *records)
{
    if (self->keys == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ChromeJSON is not initialised");
        return NULL;
    }
    return fnt_tb_batch(self, write_one_any, &self->out, records, "write");
}

PyDoc_STRVAR(finish_doc,
"finish() -> tuple[str, int]\n"
"The entries still open, each ended at the last time seen (ChromeWriter.\n"
"close_unfinished), and the number of events written in all.");

static PyObject *
chrome_finish(ChromeJSON *self, PyObject *unused)
{
    if (self->keys == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ChromeJSON is not initialised");
        return NULL;
    }
    /* (pid, tid, -depth, thread, frame), sorted: innermost first per thread */
    PyObject *open = PyList_New(0);
    if (open == NULL)
        return NULL;
    for (size_t w = 0; w < self->nwalk; w++) {
        cthread *t = &self->threads[self->walk_order[w]];
        for (size_t k = 0; k < t->n; k++) {
            if (name_once(self, t) < 0)
                goto fail;
            PyObject *item = Py_BuildValue("(OOLnn)", t->pid, t->tid, -t->frames[k].depth,
                                           (Py_ssize_t)self->walk_order[w], (Py_ssize_t)k);
            if (item == NULL || PyList_Append(open, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
        }
    }
    if (PyList_Sort(open) < 0)
        goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(open); i++) {
        PyObject *item = PyList_GET_ITEM(open, i);
        cthread *t = &self->threads[PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 3))];
        cframe *f = &t->frames[PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 4))];
        PyObject *start = num_max(f->ts, self->t0);
        if (start == NULL)
            goto fail;
        PyObject *end = num_max(self->last, start);  /* max(last - start, 0) */
        int r = end == NULL ? -1 : put_x(self, t, f->func, start, end);
        Py_XDECREF(end);
        Py_DECREF(start);
        fnt_tbuf *b = &self->out;
        if (r < 0 || FNT_TB_LIT(b, "\"entry\": ") < 0 || put_json_name(self, b, f->event) < 0)
            goto fail;
        if (f->args != Py_None && (FNT_TB_LIT(b, ", \"args\": ") < 0
                                   || put_json_value(b, f->args) < 0))
            goto fail;
        if (FNT_TB_LIT(b, ", \"unfinished\": true") < 0 || put_location(self, b, f->func, 0) < 0
            || FNT_TB_LIT(b, "}}") < 0)
            goto fail;
    }
    Py_DECREF(open);
    PyObject *text = fnt_tb_take(&self->out);
    if (text == NULL)
        return NULL;
    return Py_BuildValue("(NL)", text, self->count);
fail:
    Py_DECREF(open);
    self->out.n = 0;
    return NULL;
}

static PyMethodDef chrome_methods[] = {
    {"write", (PyCFunction)chrome_write, METH_O, write_doc},
    {"finish", (PyCFunction)chrome_finish, METH_NOARGS, finish_doc},
    {NULL}
};

static PyTypeObject ChromeJSON_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.ChromeJSON",
    .tp_doc = "ChromeJSON(record_class, field_names, kinds, events, t0, count, name_thread): "
              "dump --chrome's events of Records, as dump.ChromeWriter writes them.",
    .tp_basicsize = sizeof(ChromeJSON),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)chrome_init,
    .tp_dealloc = (destructor)chrome_dealloc,
    .tp_methods = chrome_methods,
};

int
fnt_render_chrome_add_types(PyObject *m)
{
    return fnt_add_type(m, &ChromeJSON_Type, "ChromeJSON");
}

#endif  /* FNT_HOT_PATH */
