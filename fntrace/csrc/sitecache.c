/* sitecache.c: the per-code tables' slots, and the end of a code object.
 *
 * Why: the direct-mapped tables (the dispatcher's and the 3.11 hook's sites,
 * the function recorder's callers) are keyed by a code object's address.
 * Holding every code they saw would keep code the program dropped alive (up
 * to a table's size: thousands of exec'd or generated functions), so a table
 * keeps only the address when the Function it holds guards the code: its
 * weak reference (the Function itself) calls symbols._code_gone when the code is
 * freed, which calls fnt_code_gone() below before the address can be reused.
 * Each table is listed here while it exists; a table that finds the list
 * full holds its codes (the old way: bounded, never wrong).
 */
#include "sitecache.h"
#include "recorder.h"

#ifdef FNT_HOT_PATH

typedef fnt_site_slot SiteSlot;
typedef fnt_parent_slot ParentSlot;

/* References a site slot gave up while a callback borrowed from the slots
 * (fnt_inflight > 0), dropped when none does any more (fnt_deferred_flush).
 * The recorded path of the dispatcher calls its recorder with the slot's
 * recorder and Function borrowed - two reference round trips fewer per event -
 * and a recorder may run Python code (a repr, a hook) that empties or refills
 * slots, or frees the dispatcher: their references stay alive until then.
 * Process-wide and read under the GIL, like the tables.  Should the list not
 * grow, a reference is kept for good rather than dropped early. */
int fnt_inflight;
Py_ssize_t fnt_n_deferred;
static PyObject **deferred;
static Py_ssize_t cap_deferred;

static void
slot_drop(PyObject *o)
{
    if (o == NULL)
        return;
    if (fnt_inflight == 0) {
        Py_DECREF(o);
        return;
    }
    if (fnt_n_deferred == cap_deferred) {
        Py_ssize_t ncap = cap_deferred ? cap_deferred * 2 : 64;
        PyObject **n = PyMem_Realloc(deferred, (size_t)ncap * sizeof(PyObject *));
        if (n == NULL)
            return;  /* kept: never dropped while borrowed */
        deferred = n;
        cap_deferred = ncap;
    }
    deferred[fnt_n_deferred++] = o;
}

void
fnt_deferred_flush(void)
{
    while (fnt_n_deferred > 0 && fnt_inflight == 0) {
        /* taken out first: a drop may run code that defers more */
        PyObject **list = deferred;
        Py_ssize_t n = fnt_n_deferred;
        deferred = NULL;
        fnt_n_deferred = cap_deferred = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            Py_DECREF(list[i]);
        PyMem_Free(list);
    }
}

#define MAX_CODE_TABLES 256
typedef struct {
    void *slots;
    size_t n;
    char parents;  /* ParentSlot (1) or SiteSlot (0) */
} CodeTable;

/* The list of live tables.  Process-wide: symbols reports a code's end once,
 * for every table of every dispatcher, hook and recorder. */
static CodeTable code_tables[MAX_CODE_TABLES];
static int n_code_tables;

/* 1 when the table is listed (it may borrow), 0 when the list is full. */
int
fnt_code_table_add(void *slots, size_t n, char parents)
{
    if (n_code_tables == MAX_CODE_TABLES)
        return 0;
    code_tables[n_code_tables].slots = slots;
    code_tables[n_code_tables].n = n;
    code_tables[n_code_tables].parents = parents;
    n_code_tables++;
    return 1;
}

/* Bumped by every removal: a walk of the list that dropped references (which
 * may free a table's owner) starts again rather than trust its index. */
static unsigned long code_tables_gen;

void
fnt_code_table_remove(void *slots)
{
    for (int i = 0; i < n_code_tables; i++) {
        if (code_tables[i].slots == slots) {
            code_tables[i] = code_tables[--n_code_tables];
            code_tables_gen++;
            return;
        }
    }
}

/* Whether `fn` (a symbols.Function: itself the weak reference to its code) is
 * a live weak reference to `code`.  Reads a weakref: runs no Python code. */
int
fnt_fn_guards(PyObject *fn, PyObject *code)
{
    return PyWeakref_Check(fn) && fnt_weakref_is(fn, code);
}

void
fnt_parent_slots_free(ParentSlot *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ParentSlot *p = &slots[i];
        PyObject *c = p->strong ? p->code : NULL, *fn = p->fn;
        p->code = p->fn = NULL;
        p->strong = 0;
        Py_XDECREF(c);
        Py_XDECREF(fn);
    }
}

/* symbols._code_gone: the code object at this address is being freed.  The
 * slots are emptied first and their references dropped after (dropping one may
 * free a table, which changes the list). */
PyObject *
fnt_code_gone(PyObject *module, PyObject *arg)
{
    void *code = PyLong_AsVoidPtr(arg);
    if (code == NULL && PyErr_Occurred())
        return NULL;
    PyObject *drop[MAX_CODE_TABLES * 4];
    int n = 0;
    for (int i = 0; i < n_code_tables; i++) {
        CodeTable *t = &code_tables[i];
        size_t k = fnt_ptr_slot(code, t->n);
        if (t->parents) {
            ParentSlot *p = &((ParentSlot *)t->slots)[k];
            if (p->code == code && !p->strong) {
                drop[n++] = p->fn;
                p->code = p->fn = NULL;
            }
        } else {
            SiteSlot *p = &((SiteSlot *)t->slots)[k];
            if (p->code == code && !p->strong) {
                drop[n++] = p->site;
                drop[n++] = p->fast;
                drop[n++] = p->fn;
                drop[n++] = p->enter;
                p->code = p->site = p->fast = p->fn = p->enter = NULL;
            }
        }
    }
    for (int i = 0; i < n; i++)
        slot_drop(drop[i]);
    Py_RETURN_NONE;
}

/* Whether some table still has this address (for tests: a freed code's must be gone). */
PyObject *
fnt_holds_code(PyObject *module, PyObject *arg)
{
    void *code = PyLong_AsVoidPtr(arg);
    if (code == NULL && PyErr_Occurred())
        return NULL;
    for (int i = 0; i < n_code_tables; i++) {
        CodeTable *t = &code_tables[i];
        size_t k = fnt_ptr_slot(code, t->n);
        void *held = t->parents ? (void *)((ParentSlot *)t->slots)[k].code
                                : (void *)((SiteSlot *)t->slots)[k].code;
        if (held == code)
            Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* symbols.clear: every table forgets every code (nothing is traced any more).
 * Slot by slot; when dropping references freed a table, the walk starts again. */
PyObject *
fnt_forget_codes(PyObject *module, PyObject *unused)
{
again:
    for (int i = 0; i < n_code_tables; i++) {
        CodeTable *t = &code_tables[i];
        for (size_t k = 0; k < t->n; k++) {
            unsigned long gen = code_tables_gen;
            if (t->parents)
                fnt_parent_slots_free(&((ParentSlot *)t->slots)[k], 1);
            else
                fnt_slots_free(&((SiteSlot *)t->slots)[k], 1);
            if (gen != code_tables_gen)
                goto again;
        }
    }
    Py_RETURN_NONE;
}

/* Fill `slot` with `code` and what the callbacks need of `patched` (borrowed:
 * the code's Function in engine.sites) and its configuration (Function.site),
 * or with `code` alone when `patched` is NULL (a code known to be no site).  A
 * configuration never changes (a function's is replaced whole, and the
 * backend's sites_changed follows), so its attributes are read once, here.
 * Attribute reads of a Function and a Site run no Python code: the slot is
 * still ours to fill when they are done.  1 (the slot untouched) when the
 * function has no configuration any more (unpatched since it was found). */
int
fnt_slot_fill(SiteSlot *slot, PyObject *code, PyObject *patched, PyObject *guard, int borrow)
{
    PyObject *site = NULL, *fast = NULL, *fn = NULL, *enter = NULL;
    int ret = 0;
    if (patched == NULL && guard != NULL)
        fn = Py_NewRef(guard);
    if (patched != NULL) {
        site = PyObject_GetAttr(patched, fnt_st->str_site);
        if (site == Py_None) {
            Py_DECREF(site);
            return 1;
        }
        fn = site ? Py_NewRef(patched) : NULL;
        fast = fn ? PyObject_GetAttr(site, fnt_st->str_fast) : NULL;
        enter = fast ? PyObject_GetAttr(site, fnt_st->str_enter) : NULL;
        PyObject *has_ret = enter ? PyObject_GetAttr(site, fnt_st->str_has_ret) : NULL;
        ret = has_ret ? PyObject_IsTrue(has_ret) : -1;
        Py_XDECREF(has_ret);
        if (ret < 0) {
            Py_XDECREF(enter);
            Py_XDECREF(fn);
            Py_XDECREF(fast);
            Py_XDECREF(site);
            return -1;
        }
        if (fast == Py_None || !fnt_is_recorder(fast))
            Py_CLEAR(fast);
    }
    /* The address alone is kept when the Function held here reports the code's
     * end (fnt_code_gone clears the slot before the address can be reused). */
    int strong = !(borrow && fn != NULL && fnt_fn_guards(fn, code));
    PyObject *oc = slot->strong ? slot->code : NULL, *os = slot->site, *of = slot->fast,
             *ofn = slot->fn, *oe = slot->enter;
    slot->code = strong ? Py_NewRef(code) : code;
    slot->strong = strong;
    slot->site = site;  /* the reference read above */
    slot->fast = fast;
    slot->fn = fn;
    slot->enter = enter;
    slot->has_ret = ret;
    slot_drop(oc);
    slot_drop(os);
    slot_drop(of);
    slot_drop(ofn);
    slot_drop(oe);
    return 0;
}

/* Empty every slot of a table of `n`. */
void
fnt_slots_free(SiteSlot *slots, size_t n)
{
    if (slots == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        SiteSlot *s = &slots[i];
        if (s->code == NULL)
            continue;
        PyObject *c = s->strong ? s->code : NULL, *site = s->site, *f = s->fast, *fn = s->fn,
                 *e = s->enter;
        s->code = s->site = s->fast = s->fn = s->enter = NULL;
        s->strong = 0;
        slot_drop(c);
        slot_drop(site);
        slot_drop(f);
        slot_drop(fn);
        slot_drop(e);
    }
}

int
fnt_slots_traverse(SiteSlot *slots, size_t n, visitproc visit, void *arg)
{
    if (slots != NULL) {
        for (size_t i = 0; i < n; i++) {
            if (slots[i].strong)
                Py_VISIT(slots[i].code);
            Py_VISIT(slots[i].site);
            Py_VISIT(slots[i].fast);
            Py_VISIT(slots[i].fn);
            Py_VISIT(slots[i].enter);
        }
    }
    return 0;
}

/* The six event names a backend passes (start, resume, throw, return, yield,
 * unwind), held in `slots`. */
int
fnt_events_take(PyObject *events, PyObject **slots[6])
{
    if (!PyTuple_Check(events) || PyTuple_GET_SIZE(events) != 6) {
        PyErr_SetString(PyExc_ValueError,
                        "events: (start, resume, throw, return, yield, unwind)");
        return -1;
    }
    for (int i = 0; i < 6; i++)
        Py_XSETREF(*slots[i], Py_NewRef(PyTuple_GET_ITEM(events, i)));
    return 0;
}

#endif  /* FNT_HOT_PATH */
