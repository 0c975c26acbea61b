/* textbuf.h: what the C text writers (render_graph.c, render_chrome.c) share:
 * a growable UTF-8 buffer, and reading a Record's fields by their slots.
 *
 * Why: a reader that writes text for millions of records cannot afford a
 * Python string operation per field.  The writers build one batch's text as
 * UTF-8 bytes here and make one str of it at the end; a str whose UTF-8 the
 * interpreter refuses (a lone surrogate, which a trace's strings may hold)
 * goes in as "surrogatepass" bytes and comes out of the decoding the same, so
 * the text is the one Python would have made.
 */
#ifndef FNT_TEXTBUF_H
#define FNT_TEXTBUF_H

#include "fnt.h"

#ifdef FNT_HOT_PATH

typedef struct {
    char *p;
    size_t n, cap;
} fnt_tbuf;

static inline int
fnt_tb_reserve(fnt_tbuf *b, size_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int
fnt_tb_put(fnt_tbuf *b, const char *s, size_t n)
{
    if (fnt_tb_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

#define FNT_TB_LIT(b, lit) fnt_tb_put((b), (lit), sizeof(lit) - 1)

static inline int
fnt_tb_fill(fnt_tbuf *b, char c, size_t n)
{
    if (fnt_tb_reserve(b, n) < 0)
        return -1;
    memset(b->p + b->n, c, n);
    b->n += n;
    return 0;
}

/* A str's text as UTF-8 (surrogatepass where plain UTF-8 is refused). */
static inline int
fnt_tb_str(fnt_tbuf *b, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u != NULL)
        return fnt_tb_put(b, u, (size_t)n);
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
        return -1;
    PyErr_Clear();
    PyObject *raw = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    if (raw == NULL)
        return -1;
    int r = fnt_tb_put(b, PyBytes_AS_STRING(raw), (size_t)PyBytes_GET_SIZE(raw));
    Py_DECREF(raw);
    return r;
}

/* str(obj), as an f-string's {obj} writes it. */
static inline int
fnt_tb_obj(fnt_tbuf *b, PyObject *obj)
{
    if (PyUnicode_CheckExact(obj))
        return fnt_tb_str(b, obj);
    if (PyLong_CheckExact(obj)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred())) {
            char tmp[32];
            int k = snprintf(tmp, sizeof tmp, "%lld", v);
            return fnt_tb_put(b, tmp, (size_t)k);
        }
        PyErr_Clear();
    }
    PyObject *s = PyObject_Format(obj, NULL);
    if (s == NULL)
        return -1;
    int r = fnt_tb_str(b, s);
    Py_DECREF(s);
    return r;
}

/* The buffer's text as a str (the buffer is emptied). */
static inline PyObject *
fnt_tb_take(fnt_tbuf *b)
{
    PyObject *s = PyUnicode_DecodeUTF8(b->p ? b->p : "", (Py_ssize_t)b->n, "surrogatepass");
    b->n = 0;
    return s;
}

static inline void
fnt_tb_free(fnt_tbuf *b)
{
    PyMem_Free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* The offset of a writable object slot named name in a slotted class; -1 with
 * an error.  The writers read a Record's fields at these offsets. */
static inline Py_ssize_t
fnt_slot_offset(PyTypeObject *type, PyObject *name)
{
    PyObject *descr = PyDict_GetItemWithError(type->tp_dict, name);
    if (descr == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "the record class has no slot %R", name);
        return -1;
    }
    if (Py_TYPE(descr) != &PyMemberDescr_Type) {
        PyErr_Format(PyExc_TypeError, "the record class's %R is not a slot", name);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
        PyErr_Format(PyExc_TypeError, "the record class's %R is not an object slot", name);
        return -1;
    }
    return m->offset;
}

/* A batch's text: one(self, rec) appends each record of the list records to out;
 * the text as one str, or NULL with the error and out emptied (a failed batch
 * leaves nothing half-written for the next).  Both writers' write/render. */
static inline PyObject *
fnt_tb_batch(void *self, int (*one)(void *, PyObject *), fnt_tbuf *out, PyObject *records,
             const char *what)
{
    if (!PyList_Check(records)) {
        PyErr_Format(PyExc_TypeError, "%s: a list of records", what);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *rec = Py_NewRef(PyList_GET_ITEM(records, i));
        int r = one(self, rec);
        Py_DECREF(rec);
        if (r < 0) {
            out->n = 0;
            return NULL;
        }
    }
    return fnt_tb_take(out);
}

/* A Record's fields in the order of its dataclass (formats/tracefile.py). */
enum { FNT_R_KIND, FNT_R_PID, FNT_R_TID, FNT_R_TS, FNT_R_FUNC, FNT_R_PARENT, FNT_R_DEPTH,
       FNT_R_EVENT, FNT_R_ARGS, FNT_R_VALUE, FNT_R_DURATION, FNT_R_TEXT, FNT_R_CODE_FLAGS,
       FNT_R_SRC_FILE, FNT_R_SRC_LINE, FNT_R_NFIELDS };

/* The record class and its slots' offsets, from (class, field names). */
typedef struct {
    PyTypeObject *type;
    Py_ssize_t off[FNT_R_NFIELDS];
} fnt_rec_layout;

static inline int
fnt_rec_layout_init(fnt_rec_layout *l, PyTypeObject *type, PyObject *fields)
{
    if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != FNT_R_NFIELDS) {
        PyErr_Format(PyExc_TypeError, "%d field names are expected", FNT_R_NFIELDS);
        return -1;
    }
    if (type->tp_itemsize != 0 || type->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError, "the record class must be slotted");
        return -1;
    }
    for (int i = 0; i < FNT_R_NFIELDS; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "field names are strings");
            return -1;
        }
        if ((l->off[i] = fnt_slot_offset(type, name)) < 0)
            return -1;
    }
    l->type = type;
    return 0;
}

/* A record's field (borrowed); NULL with AttributeError when unset. */
static inline PyObject *
fnt_rec_get(const fnt_rec_layout *l, PyObject *rec, int field)
{
    PyObject *v = *(PyObject **)((char *)rec + l->off[field]);
    if (v == NULL)
        PyErr_SetString(PyExc_AttributeError, "a record's field is not set");
    return v;
}

/* A str equal to a (usually the same object: the decoders share their names). */
static inline int
fnt_same_str(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    if (!PyUnicode_Check(a) || !PyUnicode_Check(b))
        return 0;
    return PyUnicode_Compare(a, b) == 0;
}

#endif  /* FNT_HOT_PATH */
#endif  /* FNT_TEXTBUF_H */
