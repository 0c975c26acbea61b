/* aggregate.c: ReportAggregator - ``fntrace report``'s numbers straight from
 * a trace file's event chunks, in C.
 *
 * Why: report reads every event of a recording and keeps a few numbers per
 * function; made of Records walked in Python (analysis/segments.walk and
 * report._Builder) an event costs microseconds.  Here the chunks' calls,
 * entries and exits are kept as 32-byte rows (markers do not count in a
 * report), put in time order as the reader API orders records (a stable sort
 * by timestamp: equal timestamps keep file order), and walked once with the
 * pairing rules of segments.walk and the sums of report._Builder, which stay
 * the reference: tests/test_decoder.py compares the two on random traces.
 *
 * What C's 64 bits cannot sum as Python would (a total over 2**63 ns) makes
 * finish() return None, and the report is made by the Python path instead;
 * so does a chunk add() cannot decode exactly (decode.h).
 */
#include "decode.h"

#ifdef FNT_HOT_PATH

typedef struct {
    int64_t ts, dur;
    uint32_t chunk;           /* the chunk's place in the reader's order: ties go to the lower */
    uint32_t thread, name, depth;
    uint8_t code, event;
} row;

/* (ts, chunk) order: the order of one stable sort of every record by time. */
static inline int
row_before(const row *a, const row *b)
{
    return a->ts < b->ts || (a->ts == b->ts && a->chunk < b->chunk);
}

typedef struct {
    uint32_t tkey, name;
    int64_t calls, total, self_ns, timed, min, max;
} stats;

typedef struct {
    uint32_t thread, depth;
    int64_t ns;
} pending;

typedef struct {
    pending *items;
    size_t n, cap;
} pending_list;

/* An open-addressing map of uint64 keys to uint32 values (an index into a
 * vector that keeps the insertion order). */
typedef struct {
    uint64_t *keys;
    uint32_t *values;   /* UINT32_MAX: empty */
    size_t cap, n;
} map;

static inline uint64_t
mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static int
map_grow(map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *keys = PyMem_Malloc(cap * sizeof(uint64_t));
    uint32_t *values = PyMem_Malloc(cap * sizeof(uint32_t));
    if (keys == NULL || values == NULL) {
        PyMem_Free(keys);
        PyMem_Free(values);
        PyErr_NoMemory();
        return -1;
    }
    memset(values, 0xFF, cap * sizeof(uint32_t));
    for (size_t i = 0; i < m->cap; i++) {
        if (m->values[i] == UINT32_MAX)
            continue;
        size_t j = mix(m->keys[i]) & (cap - 1);
        while (values[j] != UINT32_MAX)
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        values[j] = m->values[i];
    }
    PyMem_Free(m->keys);
    PyMem_Free(m->values);
    m->keys = keys;
    m->values = values;
    m->cap = cap;
    return 0;
}

/* The slot of key: its value, or UINT32_MAX where it would go. */
static inline uint32_t *
map_slot(map *m, uint64_t key)
{
    size_t j = mix(key) & (m->cap - 1);
    while (m->values[j] != UINT32_MAX && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    m->keys[j] = key;
    return &m->values[j];
}

static void
map_free(map *m)
{
    PyMem_Free(m->keys);
    PyMem_Free(m->values);
    m->keys = NULL;
    m->values = NULL;
    m->cap = m->n = 0;
}

/* A growable vector of elements of size sz. */
static int
grow(void **items, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *p = PyMem_Realloc(*items, c * sz);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *items = p;
    *cap = c;
    return 0;
}

/* A thread's walking state: per depth its open frame (segments.walk's frames)
 * and the time of the segments that ended there (its children). */
typedef struct {
    uint8_t *open;        /* 0: none, else the entry's event + 1 */
    uint32_t *name;
    int64_t *children;
    size_t cap;           /* of the three */
    size_t ftop, ctop;    /* no frame at or above ftop, no child time at or above ctop */
} walker;

typedef struct run_s run;
typedef struct trie_s trie;

typedef struct {
    PyObject_HEAD
    int per_thread;
    int folded;               /* what is made: folded stacks (else report's numbers) */
    run *r;                   /* the walk so far (rows already taken in time order) */
    trie *t;                  /* folded: the stacks so far */
    uint32_t max_depth;
    row *rows;
    size_t nrows, rows_cap;
    PyObject *names;          /* list: global name id -> str */
    PyObject *name_ids;       /* dict: str -> id */
    PyObject *threads;        /* list: global thread id -> (pid, tid) */
    PyObject *thread_ids;     /* dict: (pid, tid) -> id */
    uint32_t *thread_pid;     /* global thread id -> its pid's index */
    size_t thread_pid_cap;
    PyObject *pid_ids;        /* dict: pid -> index */
    int broken;               /* a chunk could not be added: finish() says None */
} ReportAggregator;

static void state_free(ReportAggregator *self);

static void
agg_dealloc(ReportAggregator *self)
{
    state_free(self);
    PyMem_Free(self->rows);
    PyMem_Free(self->thread_pid);
    Py_XDECREF(self->names);
    Py_XDECREF(self->name_ids);
    Py_XDECREF(self->threads);
    Py_XDECREF(self->thread_ids);
    Py_XDECREF(self->pid_ids);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
agg_init(ReportAggregator *self, PyObject *args, PyObject *kwds)
{
    int per_thread, folded = 0;
    unsigned int max_depth;
    if (!PyArg_ParseTuple(args, "pI|p:ReportAggregator", &per_thread, &max_depth, &folded))
        return -1;
    if (self->names != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ReportAggregator is initialised once");
        return -1;
    }
    self->per_thread = per_thread;
    self->folded = folded;
    self->max_depth = max_depth;
    self->names = PyList_New(0);
    self->name_ids = PyDict_New();
    self->threads = PyList_New(0);
    self->thread_ids = PyDict_New();
    self->pid_ids = PyDict_New();
    if (!self->names || !self->name_ids || !self->threads || !self->thread_ids
        || !self->pid_ids)
        return -1;
    return 0;
}

/* The global id of key in ids (appending value to list when new); UINT32_MAX on error. */
static uint32_t
global_id(PyObject *ids, PyObject *list, PyObject *key, PyObject *value)
{
    PyObject *found = PyDict_GetItemWithError(ids, key);
    if (found != NULL)
        return (uint32_t)PyLong_AsUnsignedLong(found);
    if (PyErr_Occurred())
        return UINT32_MAX;
    Py_ssize_t n = list != NULL ? PyList_GET_SIZE(list) : PyDict_GET_SIZE(ids);
    PyObject *id = PyLong_FromSsize_t(n);
    if (id == NULL)
        return UINT32_MAX;
    int bad = PyDict_SetItem(ids, key, id) < 0 || (list != NULL && PyList_Append(list, value) < 0);
    Py_DECREF(id);
    return bad ? UINT32_MAX : (uint32_t)n;
}

static uint32_t
thread_id(ReportAggregator *self, PyObject *pid, PyObject *tid)
{
    PyObject *key = PyTuple_Pack(2, pid, tid);
    if (key == NULL)
        return UINT32_MAX;
    size_t before = (size_t)PyList_GET_SIZE(self->threads);
    uint32_t id = global_id(self->thread_ids, self->threads, key, key);
    Py_DECREF(key);
    if (id == UINT32_MAX || id < before)
        return id;
    uint32_t pidx = global_id(self->pid_ids, NULL, pid, NULL);
    if (pidx == UINT32_MAX
        || grow((void **)&self->thread_pid, &self->thread_pid_cap, (size_t)id + 1,
                sizeof(uint32_t)) < 0)
        return UINT32_MAX;
    self->thread_pid[id] = pidx;
    return id;
}

PyDoc_STRVAR(add_doc,
"add(data, pos, count, nstrings, names, tids, pid, order, version, /) -> bool\n"
"Take a chunk's events (data[pos:], count of them; its string table's size, its\n"
"functions' names, its threads' tids, the file's pid, and its place in the reader's\n"
"order: files, then chunks in file order; and the file's format version).  False\n"
"when they are not decoded here exactly (decode.h): the aggregator is then of no\n"
"use.  Chunks are added in the order of their first timestamps, advance() between\n"
"them.");

static PyObject *
agg_add(ReportAggregator *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t pos, count, nstrings;
    PyObject *names, *tids, *pid;
    unsigned int order;
    int version;
    if (!PyArg_ParseTuple(args, "y*nnnO!O!OIi:add", &buf, &pos, &count, &nstrings,
                          &PyList_Type, &names, &PyList_Type, &tids, &pid, &order, &version))
        return NULL;
    if (pos < 0 || pos > buf.len || count < 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "position or count out of range");
        return NULL;
    }
    Py_ssize_t nfuncs = PyList_GET_SIZE(names), nthreads = PyList_GET_SIZE(tids);
    fnt_cursor c;
    PyObject *result = NULL;
    uint32_t *fmap = PyMem_Malloc((nfuncs ? (size_t)nfuncs : 1) * sizeof(uint32_t));
    uint32_t *tmap = PyMem_Malloc((nthreads ? (size_t)nthreads : 1) * sizeof(uint32_t));
    if (fmap == NULL || tmap == NULL) {
        PyMem_Free(fmap);
        PyMem_Free(tmap);
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    memset(fmap, 0xFF, (nfuncs ? (size_t)nfuncs : 1) * sizeof(uint32_t));
    memset(tmap, 0xFF, (nthreads ? (size_t)nthreads : 1) * sizeof(uint32_t));
    if (fnt_cursor_init(&c, buf.buf, buf.len, pos, count, nstrings, nfuncs, nthreads,
                        self->max_depth, version) < 0) {
        PyMem_Free(fmap);
        PyMem_Free(tmap);
        PyBuffer_Release(&buf);
        return NULL;
    }
    size_t first = self->nrows;
    if (grow((void **)&self->rows, &self->rows_cap, self->nrows + (size_t)count,
             sizeof(row)) < 0)
        goto done;
    fnt_event ev = {0};
    int r;
    while ((r = fnt_next(&c, &ev)) == FNT_DEC_OK) {
        if (ev.code > FNT_K_EXIT)
            continue;  /* markers and text: nothing of a report */
        if (fmap[ev.func] == UINT32_MAX) {
            PyObject *name = PyList_GET_ITEM(names, ev.func);
            if ((fmap[ev.func] = global_id(self->name_ids, self->names, name, name))
                == UINT32_MAX)
                goto done;
        }
        if (tmap[ev.thread] == UINT32_MAX) {
            if ((tmap[ev.thread] = thread_id(self, pid, PyList_GET_ITEM(tids, ev.thread)))
                == UINT32_MAX)
                goto done;
        }
        row *w = &self->rows[self->nrows++];
        w->ts = ev.ts;
        w->chunk = order;
        w->dur = ev.code == FNT_K_EXIT ? ev.dur : 0;
        w->thread = tmap[ev.thread];
        w->name = fmap[ev.func];
        if (ev.code == FNT_K_CALL) {
            /* a call's depth is 0; the row keeps its parent's name id + 1 (0: none,
             * or an empty name, which folded_stacks takes for none) */
            w->depth = 0;
            if (ev.parent) {
                PyObject *parent = PyList_GET_ITEM(names, ev.parent - 1);
                if (PyUnicode_GET_LENGTH(parent)) {
                    uint32_t g = global_id(self->name_ids, self->names, parent, parent);
                    if (g == UINT32_MAX)
                        goto done;
                    w = &self->rows[self->nrows - 1];
                    w->depth = g + 1;
                }
            }
        }
        else
            w->depth = ev.depth;
        w->code = (uint8_t)ev.code;
        w->event = (uint8_t)ev.event;
    }
    if (r != FNT_DEC_END) {
        self->nrows = first;
        self->broken = 1;
    }
    result = PyBool_FromLong(r == FNT_DEC_END);
done:
    if (result == NULL)
        self->nrows = first;
    fnt_cursor_done(&c);
    PyMem_Free(fmap);
    PyMem_Free(tmap);
    PyBuffer_Release(&buf);
    return result;
}

/* Sort rows by ts, stably (a natural merge sort: a thread's rows come in runs
 * already in order). */
static int
sort_rows(row *a, size_t n)
{
    if (n < 2)
        return 0;
    size_t *runs = NULL, nruns = 0, cap = 0;
    for (size_t i = 0; i < n;) {
        if (grow((void **)&runs, &cap, nruns + 2, sizeof(size_t)) < 0) {
            PyMem_Free(runs);
            return -1;
        }
        runs[nruns++] = i;
        i++;
        while (i < n && !row_before(&a[i], &a[i - 1]))
            i++;
    }
    runs[nruns] = n;
    if (nruns == 1) {
        PyMem_Free(runs);
        return 0;
    }
    row *tmp = PyMem_Malloc(n * sizeof(row));
    if (tmp == NULL) {
        PyMem_Free(runs);
        PyErr_NoMemory();
        return -1;
    }
    row *src = a, *dst = tmp;
    while (nruns > 1) {
        size_t out = 0;
        for (size_t r = 0; r < nruns; r += 2) {
            /* runs[nruns] is n: an odd run out is copied as it is */
            size_t lo = runs[r], mid = runs[r + 1];
            size_t hi = r + 2 <= nruns ? runs[r + 2] : mid;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = row_before(&src[j], &src[i]) ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
            runs[out++] = lo;
        }
        runs[out] = n;
        nruns = out;
        row *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, n * sizeof(row));
    PyMem_Free(tmp);
    PyMem_Free(runs);
    return 0;
}

struct run_s {
    ReportAggregator *agg;
    map stats_ids;            /* (tkey, name) -> index in st */
    stats *st;
    size_t nst, st_cap;
    map pending_ids;          /* (pid index, name) -> index in pl */
    pending_list *pl;
    size_t npl, pl_cap;
    walker *walkers;          /* per global thread */
    size_t nwalkers;
    int overflow;
    int has_durations;
};

static inline uint32_t
tkey_of(run *r, uint32_t thread)
{
    return r->agg->per_thread ? thread + 1 : 0;
}

/* The stats of (thread's key, name), made when new; NULL on error. */
static stats *
stats_of(run *r, uint32_t thread, uint32_t name)
{
    uint32_t tkey = tkey_of(r, thread);
    uint64_t key = ((uint64_t)tkey << 32) | name;
    if (r->stats_ids.n * 2 >= r->stats_ids.cap && map_grow(&r->stats_ids) < 0)
        return NULL;
    uint32_t *slot = map_slot(&r->stats_ids, key);
    if (*slot == UINT32_MAX) {
        if (grow((void **)&r->st, &r->st_cap, r->nst + 1, sizeof(stats)) < 0)
            return NULL;
        stats *s = &r->st[r->nst];
        memset(s, 0, sizeof(stats));
        s->tkey = tkey;
        s->name = name;
        *slot = (uint32_t)r->nst++;
        r->stats_ids.n++;
    }
    return &r->st[*slot];
}

static inline void
add_call_time(stats *s, int64_t ns)
{
    if (s->timed == 0)
        s->min = s->max = ns;
    else {
        if (ns < s->min)
            s->min = ns;
        if (ns > s->max)
            s->max = ns;
    }
    s->timed++;
}

static pending_list *
pending_of(run *r, uint32_t thread, uint32_t name, int make)
{
    uint64_t key = ((uint64_t)r->agg->thread_pid[thread] << 32) | name;
    if (r->pending_ids.n * 2 >= r->pending_ids.cap && map_grow(&r->pending_ids) < 0)
        return NULL;
    uint32_t *slot = map_slot(&r->pending_ids, key);
    if (*slot == UINT32_MAX) {
        if (!make)
            return NULL;
        if (grow((void **)&r->pl, &r->pl_cap, r->npl + 1, sizeof(pending_list)) < 0)
            return NULL;
        memset(&r->pl[r->npl], 0, sizeof(pending_list));
        *slot = (uint32_t)r->npl++;
        r->pending_ids.n++;
    }
    return &r->pl[*slot];
}

/* report._Builder.take: the time so far of the call a segment continues. */
static int
take(run *r, row *x, int64_t *so_far)
{
    pending_list *l = pending_of(r, x->thread, x->name, 0);
    if (l == NULL || l->n == 0)
        return 0;
    size_t at = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i].thread == x->thread && l->items[i].depth == x->depth) {
            at = i;
            break;
        }
    }
    *so_far = l->items[at].ns;
    memmove(&l->items[at], &l->items[at + 1], (l->n - at - 1) * sizeof(pending));
    l->n--;
    return 1;
}

static int
walker_fit(walker *w, size_t depth)
{
    if (depth < w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 64;
    while (cap <= depth)
        cap *= 2;
    uint8_t *open = PyMem_Realloc(w->open, cap);
    if (open == NULL)
        goto nomem;
    w->open = open;
    uint32_t *name = PyMem_Realloc(w->name, cap * sizeof(uint32_t));
    if (name == NULL)
        goto nomem;
    w->name = name;
    int64_t *children = PyMem_Realloc(w->children, cap * sizeof(int64_t));
    if (children == NULL)
        goto nomem;
    w->children = children;
    memset(w->open + w->cap, 0, cap - w->cap);
    memset(w->children + w->cap, 0, (cap - w->cap) * sizeof(int64_t));
    w->cap = cap;
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

static inline void
drop_from(walker *w, size_t d)
{
    for (size_t i = d; i < w->ftop; i++)
        w->open[i] = 0;
    if (w->ftop > d)
        w->ftop = d;
}

static inline void
clear_children(walker *w, size_t d)
{
    for (size_t i = d; i < w->ctop; i++)
        w->children[i] = 0;
    if (w->ctop > d)
        w->ctop = d;
}

/* An exit at depth d closes a segment of duration dur: its time is added to the
 * children of the frame below (overflow flagged, never wrapped), the deeper
 * frames are let go and, when it closes the frame opened at d by the same
 * function, that frame too.  Returns the segment's self time (never negative).
 * What report and folded both do with an exit, as segments.walk does. */
static int64_t
close_segment(walker *w, size_t d, uint32_t name, int64_t dur, int *overflow)
{
    int64_t below = w->children[d + 1], sum;
    clear_children(w, d + 1);
    if (__builtin_add_overflow(w->children[d], dur, &sum))
        *overflow = 1;
    w->children[d] = sum;
    if (w->ctop < d + 1)
        w->ctop = d + 1;
    if (w->open[d] && w->name[d] == name)
        drop_from(w, d);
    return dur - below > 0 ? dur - below : 0;
}

/* One row through segments.walk and report._Builder; -1 on error. */
static int
step(run *r, row *x)
{
    walker *w = &r->walkers[x->thread];
    size_t d = x->depth;
    if (x->code == FNT_K_CALL) {
        stats *s = stats_of(r, x->thread, x->name);
        if (s == NULL)
            return -1;
        s->calls++;
        return 0;
    }
    if (walker_fit(w, d + 1) < 0)
        return -1;
    if (x->code == FNT_K_ENTRY) {
        drop_from(w, d);
        w->open[d] = (uint8_t)(x->event + 1);
        w->name[d] = x->name;
        w->ftop = d + 1;
        clear_children(w, d + 1);
        return 0;
    }
    /* an exit: one segment */
    int matched = w->open[d] && w->name[d] == x->name;
    int entry_event = matched ? w->open[d] - 1 : 0;
    int64_t duration = x->dur;
    int64_t self_ns = close_segment(w, d, x->name, duration, &r->overflow);
    r->has_durations = 1;
    stats *s = stats_of(r, x->thread, x->name);
    if (s == NULL)
        return -1;
    if (__builtin_add_overflow(s->total, duration, &s->total)
        || __builtin_add_overflow(s->self_ns, self_ns, &s->self_ns))
        r->overflow = 1;
    int final = x->event == FNT_EV_RETURN || x->event == FNT_EV_UNWIND;
    int64_t so_far = 0;
    int known;
    if (entry_event == FNT_EV_START) {
        s->calls++;
        known = 1;
    }
    else if (entry_event) {
        known = take(r, x, &so_far);
    }
    else {
        take(r, x, &so_far);  /* `take(seg) or 0` */
        known = 1;
        if (final)
            s->calls++;
    }
    if (!known)
        return 0;
    int64_t ns;
    if (__builtin_add_overflow(so_far, duration, &ns)) {
        r->overflow = 1;
        return 0;
    }
    if (final) {
        add_call_time(s, ns);
        return 0;
    }
    pending_list *l = pending_of(r, x->thread, x->name, 1);
    if (l == NULL || grow((void **)&l->items, &l->cap, l->n + 1, sizeof(pending)) < 0)
        return -1;
    l->items[l->n++] = (pending){x->thread, x->depth, ns};
    return 0;
}

/* The open calls at the end: those that started count a call (report.build's
 * Unfinished). */
static int
ends(run *r)
{
    for (size_t t = 0; t < r->nwalkers; t++) {
        walker *w = &r->walkers[t];
        for (size_t d = 0; d < w->ftop; d++) {
            if (w->open[d] == FNT_EV_START + 1) {
                stats *s = stats_of(r, (uint32_t)t, w->name[d]);
                if (s == NULL)
                    return -1;
                s->calls++;
            }
        }
    }
    return 0;
}

static void
run_free(run *r)
{
    map_free(&r->stats_ids);
    map_free(&r->pending_ids);
    PyMem_Free(r->st);
    for (size_t i = 0; i < r->npl; i++)
        PyMem_Free(r->pl[i].items);
    PyMem_Free(r->pl);
    for (size_t i = 0; i < r->nwalkers; i++) {
        PyMem_Free(r->walkers[i].open);
        PyMem_Free(r->walkers[i].name);
        PyMem_Free(r->walkers[i].children);
    }
    PyMem_Free(r->walkers);
}

/* {key: {name: (calls, total, self, timed, min, max)}} in the order made. */
static PyObject *
tables(run *r)
{
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < r->nst; i++) {
        stats *s = &r->st[i];
        PyObject *key = s->tkey ? PyList_GET_ITEM(r->agg->threads, s->tkey - 1) : Py_None;
        PyObject *table = PyDict_GetItemWithError(out, key);
        if (table == NULL) {
            if (PyErr_Occurred() || (table = PyDict_New()) == NULL)
                goto fail;
            int bad = PyDict_SetItem(out, key, table) < 0;
            Py_DECREF(table);
            if (bad)
                goto fail;
        }
        PyObject *v = Py_BuildValue("(LLLLLL)", (long long)s->calls, (long long)s->total,
                                    (long long)s->self_ns, (long long)s->timed,
                                    (long long)s->min, (long long)s->max);
        if (v == NULL)
            goto fail;
        int bad = PyDict_SetItem(table, PyList_GET_ITEM(r->agg->names, s->name), v) < 0;
        Py_DECREF(v);
        if (bad)
            goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* -- folded stacks ---------------------------------------------------------------
 * dump --folded's numbers (analysis/dump.folded_stacks): per unique stack of a
 * segment (its known callers, outermost first, then itself) the sum of the
 * segments' self times, and per caller;callee of a call record the calls.  A
 * stack is a node of a trie of (parent node, name): a frame's node is made when
 * its entry comes, its callers being fixed while it is open. */

#define NO_NODE UINT32_MAX
#define THREAD_ROOT 0x80000000u   /* a node of a thread's label: THREAD_ROOT | thread */

typedef struct {
    uint32_t parent, ident;
    int64_t value;
    int hit;
} node;

struct trie_s {
    map ids;                  /* (parent, ident) -> node index */
    node *nodes;
    size_t n, cap;
    uint32_t **frame_node;    /* per thread, per depth: the node of its open frame */
    size_t *frame_cap;
    size_t nthreads;          /* of frame_node and frame_cap */
    int overflow;
};

static uint32_t
node_of(trie *t, uint32_t parent, uint32_t ident)
{
    uint64_t key = ((uint64_t)parent << 32) | ident;
    if (t->ids.n * 2 >= t->ids.cap && map_grow(&t->ids) < 0)
        return NO_NODE;
    uint32_t *slot = map_slot(&t->ids, key);
    if (*slot == UINT32_MAX) {
        if (grow((void **)&t->nodes, &t->cap, t->n + 1, sizeof(node)) < 0)
            return NO_NODE;
        t->nodes[t->n] = (node){parent, ident, 0, 0};
        *slot = (uint32_t)t->n++;
        t->ids.n++;
    }
    return *slot;
}

static inline int
hit(trie *t, uint32_t n, int64_t value)
{
    node *x = &t->nodes[n];
    if (__builtin_add_overflow(x->value, value, &x->value))
        t->overflow = 1;
    x->hit = 1;
    return 0;
}

/* The node a thread's stacks hang from: its label's, or none (merged). */
static inline uint32_t
base_of(run *r, trie *t, uint32_t thread)
{
    return r->agg->per_thread ? node_of(t, NO_NODE, THREAD_ROOT | thread) : NO_NODE;
}

static int
fold_step(run *r, trie *t, row *x)
{
    walker *w = &r->walkers[x->thread];
    size_t d = x->depth;
    uint32_t base = base_of(r, t, x->thread);
    if (r->agg->per_thread && base == NO_NODE)
        return -1;
    if (x->code == FNT_K_CALL) {
        uint32_t n = base;
        if (x->depth && (n = node_of(t, n, x->depth - 1)) == NO_NODE)
            return -1;
        if ((n = node_of(t, n, x->name)) == NO_NODE)
            return -1;
        return hit(t, n, 1);
    }
    if (walker_fit(w, d + 1) < 0
        || grow((void **)&t->frame_node[x->thread], &t->frame_cap[x->thread], w->cap,
                sizeof(uint32_t)) < 0)
        return -1;
    uint32_t *fn = t->frame_node[x->thread];
    /* the callers: the innermost open frame below d */
    uint32_t prefix = base;
    for (size_t i = d < w->ftop ? d : w->ftop; i-- > 0;) {
        if (w->open[i]) {
            prefix = fn[i];
            break;
        }
    }
    if (x->code == FNT_K_ENTRY) {
        drop_from(w, d);
        w->open[d] = (uint8_t)(x->event + 1);
        w->name[d] = x->name;
        w->ftop = d + 1;
        clear_children(w, d + 1);
        if ((fn[d] = node_of(t, prefix, x->name)) == NO_NODE)
            return -1;
        return 0;
    }
    int64_t self_ns = close_segment(w, d, x->name, x->dur, &t->overflow);
    uint32_t n = node_of(t, prefix, x->name);
    if (n == NO_NODE)
        return -1;
    return hit(t, n, self_ns);
}

/* The walk's state, made with the first advance. */
static int
state_make(ReportAggregator *self)
{
    if (self->r != NULL)
        return 0;
    self->r = PyMem_Calloc(1, sizeof(run));
    self->t = PyMem_Calloc(1, sizeof(trie));
    if (self->r == NULL || self->t == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->r->agg = self;
    return 0;
}

static void
state_free(ReportAggregator *self)
{
    if (self->r != NULL) {
        run_free(self->r);
        PyMem_Free(self->r);
        self->r = NULL;
    }
    trie *t = self->t;
    if (t != NULL) {
        for (size_t i = 0; i < t->nthreads; i++)
            PyMem_Free(t->frame_node[i]);
        PyMem_Free(t->frame_node);
        PyMem_Free(t->frame_cap);
        PyMem_Free(t->nodes);
        map_free(&t->ids);
        PyMem_Free(t);
        self->t = NULL;
    }
}

/* A walker (and a frame-node table) per thread known so far. */
static int
fit_threads(ReportAggregator *self)
{
    run *r = self->r;
    trie *t = self->t;
    size_t n = (size_t)PyList_GET_SIZE(self->threads);
    if (n > r->nwalkers) {
        walker *w = PyMem_Realloc(r->walkers, n * sizeof(walker));
        if (w == NULL)
            goto nomem;
        memset(w + r->nwalkers, 0, (n - r->nwalkers) * sizeof(walker));
        r->walkers = w;
        r->nwalkers = n;
    }
    if (n > t->nthreads) {
        uint32_t **fn = PyMem_Realloc(t->frame_node, n * sizeof(uint32_t *));
        if (fn == NULL)
            goto nomem;
        t->frame_node = fn;
        size_t *fc = PyMem_Realloc(t->frame_cap, n * sizeof(size_t));
        if (fc == NULL)
            goto nomem;
        t->frame_cap = fc;
        memset(fn + t->nthreads, 0, (n - t->nthreads) * sizeof(uint32_t *));
        memset(fc + t->nthreads, 0, (n - t->nthreads) * sizeof(size_t));
        t->nthreads = n;
    }
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* Walk the rows before (ts, chunk) in time order (all of them when !limited)
 * and let them go; the others wait for the chunks still to come.  0 or -1. */
static int
walk_rows(ReportAggregator *self, int limited, int64_t ts, uint32_t chunk)
{
    if (state_make(self) < 0 || fit_threads(self) < 0 || sort_rows(self->rows, self->nrows) < 0)
        return -1;
    row until = {0};
    until.ts = ts;
    until.chunk = chunk;
    size_t i = 0;
    for (; i < self->nrows; i++) {
        row *x = &self->rows[i];
        if (limited && !row_before(x, &until))
            break;
        if ((self->folded ? fold_step(self->r, self->t, x) : step(self->r, x)) < 0)
            return -1;
    }
    memmove(self->rows, self->rows + i, (self->nrows - i) * sizeof(row));
    self->nrows -= i;
    return 0;
}

PyDoc_STRVAR(advance_doc,
"advance(ts, order, /) -> None\n"
"Take in every row added so far that comes before (ts, order): the first timestamp\n"
"and the place of the next chunk to be added (which, added in the order of first\n"
"timestamps, nothing still to come precedes).  What is taken in is let go.");

static PyObject *
agg_advance(ReportAggregator *self, PyObject *args)
{
    long long ts;
    unsigned int order;
    if (!PyArg_ParseTuple(args, "LI:advance", &ts, &order))
        return NULL;
    if (self->broken)
        Py_RETURN_NONE;
    if (walk_rows(self, 1, (int64_t)ts, order) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The end of finish() and folded(): the state and the rows let go, once only. */
static void
done_with(ReportAggregator *self)
{
    state_free(self);
    PyMem_Free(self->rows);
    self->rows = NULL;
    self->nrows = self->rows_cap = 0;
    self->broken = 1;
}

PyDoc_STRVAR(finish_doc,
"finish() -> tuple[bool, dict] | None\n"
"(has_durations, {thread key or None: {function: (calls, total, self, timed, min,\n"
"max)}}) of every chunk added; None when a chunk was not added or a sum is over\n"
"what 64 bits hold (the Python path makes the report then).  Once only.");

static PyObject *
agg_finish(ReportAggregator *self, PyObject *unused)
{
    if (self->broken || self->folded)
        Py_RETURN_NONE;
    PyObject *result = NULL;
    if (walk_rows(self, 0, 0, 0) < 0 || ends(self->r) < 0)
        goto done;
    run *r = self->r;
    /* the suspended calls' time, each into the stats its segment made */
    for (size_t i = 0; i < r->pending_ids.cap; i++) {
        uint32_t v = r->pending_ids.values[i];
        if (v == UINT32_MAX)
            continue;
        uint32_t name = (uint32_t)(r->pending_ids.keys[i] & 0xFFFFFFFFu);
        pending_list *l = &r->pl[v];
        for (size_t k = 0; k < l->n; k++) {
            stats *st = stats_of(r, l->items[k].thread, name);
            if (st == NULL)
                goto done;
            add_call_time(st, l->items[k].ns);
        }
    }
    if (r->overflow) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *t = tables(r);
    if (t != NULL)
        result = Py_BuildValue("(ON)", r->has_durations ? Py_True : Py_False, t);
done:
    done_with(self);
    return result;
}

PyDoc_STRVAR(folded_doc,
"folded() -> tuple[list[tuple[int, int, int | None]], list[str], list[tuple[int, int]]] | None\n"
"dump --folded's stacks of every chunk added (an aggregator made with folded=True):\n"
"(nodes, names, threads).  A node is (parent node or -1, ident, value or None):\n"
"ident a name's index, or -1 - a thread's index for the label a per-thread stack\n"
"starts with; a node with a value is a stack folded_stacks counts.  Parents come\n"
"before their children.  None as finish() says.");

static PyObject *
agg_folded(ReportAggregator *self, PyObject *unused)
{
    if (self->broken || !self->folded)
        Py_RETURN_NONE;
    PyObject *result = NULL, *nodes = NULL;
    if (walk_rows(self, 0, 0, 0) < 0)
        goto done;
    trie *t = self->t;
    if (t->overflow) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    nodes = PyList_New((Py_ssize_t)t->n);
    if (nodes == NULL)
        goto done;
    for (size_t i = 0; i < t->n; i++) {
        node *x = &t->nodes[i];
        long long ident = x->ident & THREAD_ROOT && x->parent == NO_NODE && self->per_thread
            ? -1 - (long long)(x->ident & ~THREAD_ROOT) : (long long)x->ident;
        PyObject *v = x->hit ? PyLong_FromLongLong(x->value) : Py_NewRef(Py_None);
        PyObject *item = v == NULL ? NULL : Py_BuildValue(
            "(LLN)", x->parent == NO_NODE ? -1LL : (long long)x->parent, ident, v);
        if (item == NULL)
            goto done;
        PyList_SET_ITEM(nodes, (Py_ssize_t)i, item);
    }
    result = Py_BuildValue("(OOO)", nodes, self->names, self->threads);
done:
    Py_XDECREF(nodes);
    done_with(self);
    return result;
}

static PyMethodDef agg_methods[] = {
    {"add", (PyCFunction)agg_add, METH_VARARGS, add_doc},
    {"finish", (PyCFunction)agg_finish, METH_NOARGS, finish_doc},
    {"folded", (PyCFunction)agg_folded, METH_NOARGS, folded_doc},
    {"advance", (PyCFunction)agg_advance, METH_VARARGS, advance_doc},
    {NULL}
};

static PyTypeObject ReportAggregator_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fntrace._speedups.ReportAggregator",
    .tp_doc = "ReportAggregator(per_thread, max_depth, folded=False): report's "
              "per-function numbers (or dump --folded's stacks) from a recording's event chunks.",
    .tp_basicsize = sizeof(ReportAggregator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)agg_init,
    .tp_dealloc = (destructor)agg_dealloc,
    .tp_methods = agg_methods,
};

int
fnt_aggregate_add_types(PyObject *m)
{
    return fnt_add_type(m, &ReportAggregator_Type, "ReportAggregator");
}

#endif  /* FNT_HOT_PATH */
