/* identity.c: "<module.Qualname object at 0x...>" without object.__repr__
 * (see identity.h for why).
 *
 * object_repr (CPython's Objects/typeobject.c) writes "<%U.%U object at %p>"
 * with the type's __module__ and __qualname__ when __module__ is a str other
 * than "builtins", else "<%s object at %p>" with tp_name; "%p" is the C
 * library's, made to start with "0x": on the platforms the hot path is built
 * for, "0x" and the address in lowercase hex without leading zeros.  The
 * prefix is made here as object_repr makes it, reading the type's own dict
 * (no attribute lookup, so no metaclass code runs).
 */
#include "identity.h"

#ifdef FNT_HOT_PATH

/* The type's "<module.Qualname object at 0x" (new reference); NULL without an
 * error when it is not ASCII. */
static PyObject *
make_prefix(PyTypeObject *t)
{
    PyObject *mod = NULL;
    if (t->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        /* object_repr's type_module: the dict's __module__ (a missing one reads
         * as an AttributeError, which object_repr drops) */
        mod = t->tp_dict ? PyDict_GetItemWithError(t->tp_dict, fnt_st->str_module) : NULL;
        if (mod == NULL && PyErr_Occurred()) {
            PyErr_Clear();  /* not decided here: the general path, object_repr, sees it */
            return NULL;
        }
        if (mod != NULL && (!PyUnicode_Check(mod) ||
                            PyUnicode_CompareWithASCIIString(mod, "builtins") == 0))
            mod = NULL;
    }
    /* a static type's module is tp_name's head, and "<mod.name" is tp_name
     * again: the "%s" form gives the same text either way */
    PyObject *text;
    if (mod != NULL) {
        PyObject *qualname = ((PyHeapTypeObject *)t)->ht_qualname;
        text = PyUnicode_FromFormat("<%U.%U object at 0x", mod, qualname);
    } else {
        text = PyUnicode_FromFormat("<%s object at 0x", t->tp_name);
    }
    if (text != NULL && !PyUnicode_IS_ASCII(text))
        Py_CLEAR(text);
    return text;
}

static void
entry_clear(fnt_idtext *e)
{
    PyObject *qualname = e->qualname, *prefix = e->prefix;
    e->type = NULL;
    e->version = 0;
    e->qualname = NULL;
    e->prefix = NULL;
    Py_XDECREF(qualname);  /* after the entry is empty: strings run no code, but still */
    Py_XDECREF(prefix);
}

/* The type's prefix from the table, made on a miss (borrowed); NULL without an
 * error when it has none (no version tag, not ASCII). */
static PyObject *
type_prefix(fnt_idtext **table, PyTypeObject *t)
{
    unsigned int version = t->tp_version_tag;
    if (version == 0)
        return NULL;
    PyObject *qualname = (t->tp_flags & Py_TPFLAGS_HEAPTYPE)
                             ? ((PyHeapTypeObject *)t)->ht_qualname : NULL;
    if (*table == NULL && (*table = PyMem_Calloc(FNT_ID_TEXTS, sizeof(fnt_idtext))) == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    fnt_idtext *e = &(*table)[fnt_ptr_slot(t, FNT_ID_TEXTS)];
    if (e->type == t && e->version == version && e->qualname == qualname)
        return e->prefix;
    PyObject *prefix = make_prefix(t);
    if (prefix == NULL)
        return NULL;
    entry_clear(e);
    e->type = t;
    e->version = version;
    e->qualname = Py_XNewRef(qualname);
    e->prefix = prefix;
    return prefix;
}

PyObject *
fnt_identity_text(fnt_idtext **table, PyObject *name, PyObject *v, Py_ssize_t max_len)
{
    PyObject *prefix = type_prefix(table, Py_TYPE(v));
    if (prefix == NULL)
        return NULL;
    Py_ssize_t nn = 0;
    if (name != NULL) {
        if (!PyUnicode_Check(name) || !PyUnicode_IS_ASCII(name))
            return NULL;
        nn = PyUnicode_GET_LENGTH(name) + 1;
    }
    char hex[2 * sizeof(uintptr_t)], *end = hex + sizeof(hex), *p = fnt_identity_hex(end, v);
    Py_ssize_t np = PyUnicode_GET_LENGTH(prefix), nh = end - p;
    Py_ssize_t n = np + nh + 1;  /* the repr's own length: the limit is on it */
    if (n > max_len)
        return NULL;
    PyObject *s = PyUnicode_New(nn + n, 127);
    if (s == NULL)
        return NULL;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(s);
    if (name != NULL) {
        memcpy(d, PyUnicode_1BYTE_DATA(name), (size_t)(nn - 1));
        d[nn - 1] = '=';
        d += nn;
    }
    memcpy(d, PyUnicode_1BYTE_DATA(prefix), (size_t)np);
    memcpy(d + np, p, (size_t)nh);
    d[np + nh] = '>';
    return s;
}

char *
fnt_identity_hex(char *end, const void *v)
{
    char *p = end;
    uintptr_t a = (uintptr_t)v;
    do {
        *--p = "0123456789abcdef"[a & 15];
        a >>= 4;
    } while (a != 0);
    return p;
}

PyObject *
fnt_identity_prefix(fnt_idtext **table, PyTypeObject *t)
{
    return type_prefix(table, t);
}

void
fnt_identity_clear(fnt_idtext **table)
{
    fnt_idtext *t = *table;
    if (t == NULL)
        return;
    *table = NULL;
    for (int i = 0; i < FNT_ID_TEXTS; i++)
        entry_clear(&t[i]);
    PyMem_Free(t);
}

#endif  /* FNT_HOT_PATH */
