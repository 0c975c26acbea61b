/* value_text.c: value_text.py's walk, in C (see value_text.h for why).
 *
 * Every rule here is one of value_text.py's, and the comments name it; where
 * this walk would need more than those rules read (a value whose text depends
 * on more than its class, a descriptor that is not what the class's plan
 * said, any error), it stops and the whole value goes to the Python walker,
 * whose text is then the value's.  The text is built in a local buffer (one
 * byte a character while every character is below 256, else four) and made
 * into one str at the end, cut there as SafeRepr cuts it.
 */
#include "value_text.h"

#ifdef FNT_HOT_PATH

/* The rules (class_rule's answers). */
enum {
    VT_WALKER = 0,  /* the Python walker's: not rendered here */
    VT_RETRY,       /* the walker's for now; class_rule asked again next time (the
                     * walker may have planned the class meanwhile), VT_ASKS times */
    VT_REPR,        /* repr() of a type whose repr is C code reading only the value */
    VT_TYPE,        /* type's repr */
    VT_CUT_STR, VT_CUT_BYTES, VT_CUT_BYTEARRAY,  /* the first max_len + 1, then repr() */
    VT_SCALAR,      /* the base type's repr (arg: the base) */
    VT_LIST, VT_TUPLE, VT_DICT, VT_SET, VT_FROZENSET,
    VT_IDENTITY,    /* object's repr */
    VT_PLAN,        /* a dataclass's fields (arg: the plan, see make_plan) */
};

#define VT_ASKS 4

/* A field's kind in a plan (value_text.py's _OWN, _SLOT, _HIDDEN). */
#define FIELD_OWN 'o'
#define FIELD_SLOT 's'
#define FIELD_HIDDEN 'h'

/* ------------------------------------------------------------------------- */
/* The text buffer                                                            */
/* ------------------------------------------------------------------------- */

typedef struct {
    Py_UCS1 *a;       /* the text while every character is below 256 */
    Py_UCS4 *w;       /* else the text (a is then NULL) */
    Py_ssize_t n, cap;
    Py_UCS4 max;      /* a bound on the characters: exact in the kind it gives */
    Py_UCS1 local[512];
} vbuf;

static void
vb_init(vbuf *b)
{
    b->a = b->local;
    b->w = NULL;
    b->n = 0;
    b->cap = sizeof(b->local);
    b->max = 0;
}

static void
vb_free(vbuf *b)
{
    if (b->a != b->local)
        PyMem_Free(b->a);
    PyMem_Free(b->w);
}

static int
vb_grow(vbuf *b, Py_ssize_t more)
{
    Py_ssize_t cap = b->cap;
    while (cap < b->n + more) {
        if (cap > PY_SSIZE_T_MAX / 8) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    if (b->w != NULL) {
        Py_UCS4 *w = PyMem_Realloc(b->w, (size_t)cap * sizeof(Py_UCS4));
        if (w == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->w = w;
    } else {
        Py_UCS1 *a = PyMem_Malloc((size_t)cap);
        if (a == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(a, b->a, (size_t)b->n);
        if (b->a != b->local)
            PyMem_Free(b->a);
        b->a = a;
    }
    b->cap = cap;
    return 0;
}

static inline int
vb_reserve(vbuf *b, Py_ssize_t more)
{
    return b->n + more <= b->cap ? 0 : vb_grow(b, more);
}

/* From one byte a character to four (a character above 255 is coming). */
static int
vb_widen(vbuf *b)
{
    Py_UCS4 *w = PyMem_Malloc((size_t)b->cap * sizeof(Py_UCS4));
    if (w == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < b->n; i++)
        w[i] = b->a[i];
    if (b->a != b->local)
        PyMem_Free(b->a);
    b->a = NULL;
    b->w = w;
    return 0;
}

/* One ASCII character, room reserved. */
static inline void
vb_putc(vbuf *b, char c)
{
    if (b->w != NULL)
        b->w[b->n++] = (unsigned char)c;
    else
        b->a[b->n++] = (Py_UCS1)c;
}

static int
vb_ascii(vbuf *b, const char *s, Py_ssize_t k)
{
    if (vb_reserve(b, k) < 0)
        return -1;
    if (b->w != NULL) {
        for (Py_ssize_t i = 0; i < k; i++)
            b->w[b->n + i] = (unsigned char)s[i];
    } else {
        memcpy(b->a + b->n, s, (size_t)k);
    }
    b->n += k;
    return 0;
}

#define VB_LIT(b, lit) vb_ascii((b), (lit), (Py_ssize_t)sizeof(lit) - 1)

static int
vb_str(vbuf *b, PyObject *s)
{
    Py_ssize_t k = PyUnicode_GET_LENGTH(s);
    Py_UCS4 m = PyUnicode_MAX_CHAR_VALUE(s);
    if (m > 255 && b->w == NULL && vb_widen(b) < 0)
        return -1;
    if (vb_reserve(b, k) < 0)
        return -1;
    int kind = PyUnicode_KIND(s);
    const void *d = PyUnicode_DATA(s);
    if (b->w != NULL) {
        for (Py_ssize_t i = 0; i < k; i++)
            b->w[b->n + i] = PyUnicode_READ(kind, d, i);
    } else {
        memcpy(b->a + b->n, d, (size_t)k);  /* kind 1 */
    }
    b->n += k;
    if (m > b->max)
        b->max = m;
    return 0;
}

/* A new str's text (its reference taken). */
static int
vb_take(vbuf *b, PyObject *s)
{
    if (s == NULL)
        return -1;
    int r = vb_str(b, s);
    Py_DECREF(s);
    return r;
}

static inline Py_UCS4
vb_at(vbuf *b, Py_ssize_t i)
{
    return b->w != NULL ? b->w[i] : b->a[i];
}

/* "name=" and the text, the text cut as SafeRepr cuts it: past max_len, its
 * first max(max_len - 3, 1) characters and "...". */
static PyObject *
vb_finish(vbuf *b, PyObject *name, Py_ssize_t max_len)
{
    Py_ssize_t n = b->n;
    int cut = n > max_len;
    Py_UCS4 max = b->max;
    if (cut) {
        n = max_len - 3 > 1 ? max_len - 3 : 1;
        if (max > 127) {
            max = 0;
            for (Py_ssize_t i = 0; i < n; i++)
                if (vb_at(b, i) > max)
                    max = vb_at(b, i);
        }
    }
    Py_ssize_t nn = 0;
    if (name != NULL) {
        nn = PyUnicode_GET_LENGTH(name) + 1;
        if (PyUnicode_MAX_CHAR_VALUE(name) > max)
            max = PyUnicode_MAX_CHAR_VALUE(name);
    }
    PyObject *s = PyUnicode_New(nn + n + (cut ? 3 : 0), max < 127 ? 127 : max);
    if (s == NULL)
        return NULL;
    int kind = PyUnicode_KIND(s);
    void *d = PyUnicode_DATA(s);
    Py_ssize_t at = 0;
    if (name != NULL) {
        if (PyUnicode_CopyCharacters(s, 0, name, 0, nn - 1) < 0) {
            Py_DECREF(s);
            return NULL;
        }
        PyUnicode_WRITE(kind, d, nn - 1, '=');
        at = nn;
    }
    if (kind == PyUnicode_1BYTE_KIND && b->w == NULL) {
        memcpy((Py_UCS1 *)d + at, b->a, (size_t)n);
    } else {
        for (Py_ssize_t i = 0; i < n; i++)
            PyUnicode_WRITE(kind, d, at + i, vb_at(b, i));
    }
    if (cut) {
        for (int i = 0; i < 3; i++)
            PyUnicode_WRITE(kind, d, at + n + i, '.');
    }
    return s;
}

/* ------------------------------------------------------------------------- */
/* Scalars                                                                    */
/* ------------------------------------------------------------------------- */

/* An exact int: repr(), its digits written here when it fits a long. */
static int
put_int(vbuf *b, PyObject *v)
{
    int overflow;
    long n = PyLong_AsLongAndOverflow(v, &overflow);
    if (overflow)
        return vb_take(b, PyObject_Repr(v));  /* may raise (int_max_str_digits) */
    if (n == -1 && PyErr_Occurred())
        return -1;
    char buf[24], *end = buf + sizeof(buf), *p = end;
    unsigned long u = n < 0 ? 0UL - (unsigned long)n : (unsigned long)n;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (n < 0)
        *--p = '-';
    return vb_ascii(b, p, end - p);
}

/* repr() of a str's first `keep` characters (value_text.py's cut): written
 * here for an ASCII str as unicode_repr writes it, else by repr(). */
static int
put_str_cut(vbuf *b, PyObject *s, Py_ssize_t keep)
{
    Py_ssize_t k = PyUnicode_GET_LENGTH(s);
    if (k > keep)
        k = keep;
    if (!PyUnicode_IS_ASCII(s)) {
        PyObject *head = PyUnicode_Substring(s, 0, k);  /* an exact str */
        if (head == NULL)
            return -1;
        PyObject *r = PyObject_Repr(head);
        Py_DECREF(head);
        return vb_take(b, r);
    }
    const Py_UCS1 *d = PyUnicode_1BYTE_DATA(s);
    int squote = 0, dquote = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        squote |= d[i] == '\'';
        dquote |= d[i] == '"';
    }
    char quote = squote && !dquote ? '"' : '\'';
    if (vb_reserve(b, 4 * k + 2) < 0)
        return -1;
    vb_putc(b, quote);
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_UCS1 c = d[i];
        if (c == (Py_UCS1)quote || c == '\\') {
            vb_putc(b, '\\');
            vb_putc(b, (char)c);
        } else if (c == '\t') {
            vb_putc(b, '\\');
            vb_putc(b, 't');
        } else if (c == '\n') {
            vb_putc(b, '\\');
            vb_putc(b, 'n');
        } else if (c == '\r') {
            vb_putc(b, '\\');
            vb_putc(b, 'r');
        } else if (c < ' ' || c == 0x7f) {
            vb_putc(b, '\\');
            vb_putc(b, 'x');
            vb_putc(b, "0123456789abcdef"[c >> 4]);
            vb_putc(b, "0123456789abcdef"[c & 15]);
        } else {
            vb_putc(b, (char)c);
        }
    }
    vb_putc(b, quote);
    if (b->max < 127)
        b->max = 127;
    return 0;
}

/* repr() of the first `keep` bytes of a bytes or (exact) bytearray. */
static int
put_bytes_cut(vbuf *b, PyObject *v, Py_ssize_t keep, int bytearray)
{
    PyObject *head;
    if (bytearray) {
        Py_ssize_t k = PyByteArray_GET_SIZE(v);
        head = PyByteArray_FromStringAndSize(PyByteArray_AS_STRING(v), k > keep ? keep : k);
    } else {
        Py_ssize_t k = PyBytes_GET_SIZE(v);
        head = k <= keep && PyBytes_CheckExact(v)
                   ? Py_NewRef(v) : PyBytes_FromStringAndSize(PyBytes_AS_STRING(v),
                                                              k > keep ? keep : k);
    }
    if (head == NULL)
        return -1;
    PyObject *r = PyObject_Repr(head);
    Py_DECREF(head);
    return vb_take(b, r);
}

/* object's repr: the identity table's prefix and the address, or object_repr. */
static int
put_identity(fnt_vtext *vt, vbuf *b, PyObject *v)
{
    PyObject *prefix = fnt_identity_prefix(&vt->idtexts, Py_TYPE(v));
    if (prefix == NULL) {
        if (PyErr_Occurred())
            return -1;
        return vb_take(b, PyBaseObject_Type.tp_repr(v));
    }
    char hex[2 * sizeof(uintptr_t) + 1], *end = hex + sizeof(hex) - 1;
    char *p = fnt_identity_hex(end, v);
    *end = '>';
    if (vb_str(b, prefix) < 0)
        return -1;
    return vb_ascii(b, p, end + 1 - p);
}

/* ------------------------------------------------------------------------- */
/* The walk                                                                   */
/* ------------------------------------------------------------------------- */

/* Each returns 0 (written), 1 (the Python walker's, no error) or -1 (error). */
static int walk(fnt_vtext *vt, vbuf *b, PyObject *v, int level);
static int rule_of(fnt_vtext *vt, PyTypeObject *t, PyObject **arg);

/* Items written "a, b, ..." (value_text.py's sequence and _dict), the items
 * taken first (held: nothing of the container is read while they are
 * written).  `vals` NULL: a sequence, else a dict's keys and values. */
static int
put_items(fnt_vtext *vt, vbuf *b, PyObject **keys, PyObject **vals, Py_ssize_t m,
          Py_ssize_t n, int level)
{
    int r = 0;
    for (Py_ssize_t i = 0; i < m && r == 0; i++) {
        if (i > 0 && VB_LIT(b, ", ") < 0)
            r = -1;
        if (r == 0)
            r = walk(vt, b, keys[i], level + 1);
        if (r == 0 && vals != NULL) {
            r = VB_LIT(b, ": ");
            if (r == 0)
                r = walk(vt, b, vals[i], level + 1);
        }
    }
    if (r == 0 && n > FNT_VT_ITEMS)
        r = VB_LIT(b, ", ...");
    for (Py_ssize_t i = 0; i < m; i++) {
        Py_DECREF(keys[i]);
        if (vals != NULL)
            Py_DECREF(vals[i]);
    }
    return r;
}

/* value_text.py's _seq over list or tuple (a subclass read as its base). */
static int
put_seq(fnt_vtext *vt, vbuf *b, PyObject *v, int level, int tuple)
{
    Py_ssize_t n = Py_SIZE(v);
    PyObject **items = tuple ? ((PyTupleObject *)v)->ob_item : ((PyListObject *)v)->ob_item;
    char left = tuple ? '(' : '[', right = tuple ? ')' : ']';
    if (level >= FNT_VT_LEVEL) {
        char text[5] = {left, '.', '.', '.', right};
        if (n)
            return vb_ascii(b, text, 5);
        text[1] = right;
        return vb_ascii(b, text, 2);
    }
    PyObject *held[FNT_VT_ITEMS];
    Py_ssize_t m = n < FNT_VT_ITEMS ? n : FNT_VT_ITEMS;
    for (Py_ssize_t i = 0; i < m; i++)
        held[i] = Py_NewRef(items[i]);
    if (vb_ascii(b, &left, 1) < 0) {
        for (Py_ssize_t i = 0; i < m; i++)
            Py_DECREF(held[i]);
        return -1;
    }
    int r = put_items(vt, b, held, NULL, m, n, level);
    if (r == 0 && tuple && n == 1)
        r = VB_LIT(b, ",");
    return r == 0 ? vb_ascii(b, &right, 1) : r;
}

/* value_text.py's _dict (a subclass read through dict's own storage). */
static int
put_dict(fnt_vtext *vt, vbuf *b, PyObject *v, int level)
{
    Py_ssize_t n = PyDict_GET_SIZE(v);
    if (level >= FNT_VT_LEVEL)
        return n ? VB_LIT(b, "{...}") : VB_LIT(b, "{}");
    PyObject *keys[FNT_VT_ITEMS], *vals[FNT_VT_ITEMS], *k, *x;
    Py_ssize_t pos = 0, m = 0;
    while (m < FNT_VT_ITEMS && PyDict_Next(v, &pos, &k, &x)) {
        keys[m] = Py_NewRef(k);
        vals[m++] = Py_NewRef(x);
    }
    if (VB_LIT(b, "{") < 0) {
        for (Py_ssize_t i = 0; i < m; i++) {
            Py_DECREF(keys[i]);
            Py_DECREF(vals[i]);
        }
        return -1;
    }
    int r = put_items(vt, b, keys, vals, m, n, level);
    return r == 0 ? VB_LIT(b, "}") : r;
}

/* value_text.py's _set: set or frozenset, by the base. */
static int
put_set(fnt_vtext *vt, vbuf *b, PyObject *v, int level, int frozen)
{
    Py_ssize_t n = PySet_GET_SIZE(v);
    if (n == 0)
        return frozen ? VB_LIT(b, "frozenset()") : VB_LIT(b, "set()");
    if (frozen && VB_LIT(b, "frozenset(") < 0)
        return -1;
    int r;
    if (level >= FNT_VT_LEVEL) {
        r = VB_LIT(b, "{...}");
    } else {
        PyObject *held[FNT_VT_ITEMS];
        Py_ssize_t m = 0;
        PyObject *it = PySet_Type.tp_iter(v);  /* set.__iter__, whatever the subclass says */
        if (it == NULL)
            return -1;
        while (m < FNT_VT_ITEMS) {
            PyObject *x = Py_TYPE(it)->tp_iternext(it);
            if (x == NULL)
                break;
            held[m++] = x;
        }
        Py_DECREF(it);
        if (PyErr_Occurred()) {
            for (Py_ssize_t i = 0; i < m; i++)
                Py_DECREF(held[i]);
            return -1;
        }
        r = VB_LIT(b, "{");
        if (r < 0) {
            for (Py_ssize_t i = 0; i < m; i++)
                Py_DECREF(held[i]);
            return -1;
        }
        r = put_items(vt, b, held, NULL, m, n, level);
        if (r == 0)
            r = VB_LIT(b, "}");
    }
    if (r == 0 && frozen)
        r = VB_LIT(b, ")");
    return r;
}

/* `name` as value_text.py's _class_attr finds it: the first value other than
 * None in the dicts of t's MRO (new reference), or NULL (an error set or not). */
static PyObject *
class_attr(PyTypeObject *t, PyObject *name)
{
    PyObject *mro = t->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *base = PyTuple_GET_ITEM(mro, i);
        if (!PyType_Check(base))
            continue;
        PyObject *d = fnt_type_dict((PyTypeObject *)base);
        if (d == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        PyObject *x = PyDict_GetItemWithError(d, name);
        Py_XINCREF(x);
        Py_DECREF(d);
        if (x != NULL && x != Py_None)
            return x;
        Py_XDECREF(x);
        if (PyErr_Occurred())
            return NULL;
    }
    return NULL;
}

/* value_text.py's _DataclassText.__call__, from a plan: (qualname, kinds
 * (bytes, one a field shown), more (bool: fields past FNT_VT_ITEMS), field
 * names...).  The instance dict and slots are read through the class's own
 * descriptors found as _class_attr finds them (make_plan checked that the
 * type's lookup finds the same ones). */
static int
put_plan(fnt_vtext *vt, vbuf *b, PyObject *v, PyObject *plan, int level)
{
    PyTypeObject *t = Py_TYPE(v);
    if (vb_str(b, PyTuple_GET_ITEM(plan, 0)) < 0)
        return -1;
    if (level >= FNT_VT_LEVEL)
        return VB_LIT(b, "(...)");
    PyObject *own = NULL;
    PyObject *getter = _PyType_Lookup(t, fnt_st->str_dunder_dict);
    if (getter != NULL && (Py_IS_TYPE(getter, &PyGetSetDescr_Type) ||
                           Py_IS_TYPE(getter, &PyMemberDescr_Type))) {
        Py_INCREF(getter);
        PyObject *got = Py_TYPE(getter)->tp_descr_get(getter, v, NULL);
        Py_DECREF(getter);
        if (got == NULL)
            return -1;
        if (PyDict_CheckExact(got))
            own = got;
        else
            Py_DECREF(got);
    }
    const char *kinds = PyBytes_AS_STRING(PyTuple_GET_ITEM(plan, 1));
    Py_ssize_t nshown = PyBytes_GET_SIZE(PyTuple_GET_ITEM(plan, 1));
    int r = VB_LIT(b, "(");
    for (Py_ssize_t i = 0; i < nshown && r == 0; i++) {
        PyObject *fname = PyTuple_GET_ITEM(plan, 3 + i);
        if (i > 0 && VB_LIT(b, ", ") < 0) {
            r = -1;
            break;
        }
        if (vb_str(b, fname) < 0 || VB_LIT(b, "=") < 0) {
            r = -1;
            break;
        }
        PyObject *x = NULL;
        if (kinds[i] == FIELD_HIDDEN) {
            r = VB_LIT(b, "<descriptor>");
            continue;
        }
        if (kinds[i] == FIELD_SLOT) {
            PyObject *slot = _PyType_Lookup(t, fname);
            if (slot != NULL && !Py_IS_TYPE(slot, &PyMemberDescr_Type)) {
                r = 1;  /* no longer a slot: the walker's to say what it is now */
                break;
            }
            if (slot != NULL) {
                Py_INCREF(slot);
                x = Py_TYPE(slot)->tp_descr_get(slot, v, (PyObject *)t);
                Py_DECREF(slot);
                if (x == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                        r = -1;
                        break;
                    }
                    PyErr_Clear();
                }
            }
        } else if (own != NULL) {
            x = PyDict_GetItemWithError(own, fname);
            if (x == NULL && PyErr_Occurred()) {
                r = -1;
                break;
            }
            Py_XINCREF(x);
            if (x == NULL && (x = class_attr(t, fname)) == NULL && PyErr_Occurred()) {
                r = -1;
                break;
            }
        } else if ((x = class_attr(t, fname)) == NULL && PyErr_Occurred()) {
            r = -1;
            break;
        }
        if (x == NULL) {
            r = VB_LIT(b, "<unset>");
        } else {
            r = walk(vt, b, x, level + 1);
            Py_DECREF(x);
        }
    }
    Py_XDECREF(own);
    if (r == 0 && PyTuple_GET_ITEM(plan, 2) == Py_True)
        r = VB_LIT(b, ", ...");
    return r == 0 ? VB_LIT(b, ")") : r;
}

static int
apply_rule(fnt_vtext *vt, vbuf *b, PyObject *v, int level, int rule, PyObject *arg)
{
    switch (rule) {
    case VT_REPR:
        return vb_take(b, PyObject_Repr(v));
    case VT_TYPE:
        return vb_take(b, PyType_Type.tp_repr(v));
    case VT_SCALAR:
        return vb_take(b, ((PyTypeObject *)arg)->tp_repr(v));
    case VT_CUT_STR:
        return put_str_cut(b, v, vt->max_len + 1);
    case VT_CUT_BYTES:
        return put_bytes_cut(b, v, vt->max_len + 1, 0);
    case VT_CUT_BYTEARRAY:
        return put_bytes_cut(b, v, vt->max_len + 1, 1);
    case VT_LIST:
        return put_seq(vt, b, v, level, 0);
    case VT_TUPLE:
        return put_seq(vt, b, v, level, 1);
    case VT_DICT:
        return put_dict(vt, b, v, level);
    case VT_SET:
        return put_set(vt, b, v, level, 0);
    case VT_FROZENSET:
        return put_set(vt, b, v, level, 1);
    case VT_IDENTITY:
        return put_identity(vt, b, v);
    case VT_PLAN:
        return put_plan(vt, b, v, arg, level);
    default:
        return 1;
    }
}

/* value_text.py's _Walk.text for the exact builtins of its _FAST tested here by
 * address (2: not one of them). */
static int
walk_builtin(fnt_vtext *vt, vbuf *b, PyObject *v, int level)
{
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyLong_Type)
        return put_int(b, v);
    if (t == &PyUnicode_Type)
        return put_str_cut(b, v, vt->max_len + 1);
    if (v == Py_None)
        return VB_LIT(b, "None");
    if (t == &PyBool_Type)
        return v == Py_True ? VB_LIT(b, "True") : VB_LIT(b, "False");
    if (t == &PyTuple_Type)
        return put_seq(vt, b, v, level, 1);
    if (t == &PyList_Type)
        return put_seq(vt, b, v, level, 0);
    if (t == &PyDict_Type)
        return put_dict(vt, b, v, level);
    if (t == &PyFloat_Type || t == &PyComplex_Type)
        return vb_take(b, PyObject_Repr(v));
    if (t == &PySet_Type || t == &PyFrozenSet_Type)
        return put_set(vt, b, v, level, t == &PyFrozenSet_Type);
    if (t == &PyBytes_Type)
        return put_bytes_cut(b, v, vt->max_len + 1, 0);
    return 2;
}

/* value_text.py's _Walk.text: the builtins above, any other class by its rule. */
static int
walk(fnt_vtext *vt, vbuf *b, PyObject *v, int level)
{
    int r = walk_builtin(vt, b, v, level);
    if (r != 2)
        return r;
    PyObject *arg;
    int rule = rule_of(vt, Py_TYPE(v), &arg);
    if (rule < 0)
        return -1;
    r = apply_rule(vt, b, v, level, rule, arg);
    Py_XDECREF(arg);
    return r;
}

/* ------------------------------------------------------------------------- */
/* The rules                                                                  */
/* ------------------------------------------------------------------------- */

/* Whether t's own lookup finds `name` where _class_attr does (it skips None). */
static int
lookup_agrees(PyTypeObject *t, PyObject *name)
{
    PyObject *mine = class_attr(t, name);
    if (mine == NULL && PyErr_Occurred())
        return -1;
    int same = mine == _PyType_Lookup(t, name);
    Py_XDECREF(mine);
    return same;
}

/* The C plan of class_rule's ("plan", (qualname, ((field, kind), ...))): see
 * put_plan.  NULL without an error when this walk cannot follow it. */
static PyObject *
make_plan(PyTypeObject *t, PyObject *spec)
{
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2)
        return NULL;
    PyObject *qualname = PyTuple_GET_ITEM(spec, 0), *fields = PyTuple_GET_ITEM(spec, 1);
    if (!PyUnicode_Check(qualname) || !PyTuple_Check(fields))
        return NULL;
    Py_ssize_t total = PyTuple_GET_SIZE(fields);
    Py_ssize_t shown = total < FNT_VT_ITEMS ? total : FNT_VT_ITEMS;
    char kinds[FNT_VT_ITEMS];
    int ok = lookup_agrees(t, fnt_st->str_dunder_dict);
    for (Py_ssize_t i = 0; i < shown && ok > 0; i++) {
        PyObject *f = PyTuple_GET_ITEM(fields, i);
        if (!PyTuple_Check(f) || PyTuple_GET_SIZE(f) != 2 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(f, 0)) || !PyUnicode_Check(PyTuple_GET_ITEM(f, 1)))
            return NULL;
        PyObject *kind = PyTuple_GET_ITEM(f, 1);
        if (PyUnicode_CompareWithASCIIString(kind, "slot") == 0) {
            kinds[i] = FIELD_SLOT;
            ok = lookup_agrees(t, PyTuple_GET_ITEM(f, 0));
        } else if (PyUnicode_CompareWithASCIIString(kind, "own") == 0) {
            kinds[i] = FIELD_OWN;
        } else if (PyUnicode_CompareWithASCIIString(kind, "hidden") == 0) {
            kinds[i] = FIELD_HIDDEN;
        } else {
            return NULL;
        }
    }
    if (ok <= 0)
        return NULL;  /* an error is the caller's to clear */
    PyObject *plan = PyTuple_New(3 + shown);
    if (plan == NULL)
        return NULL;
    PyObject *kb = PyBytes_FromStringAndSize(kinds, shown);
    if (kb == NULL) {
        Py_DECREF(plan);
        return NULL;
    }
    PyTuple_SET_ITEM(plan, 0, Py_NewRef(qualname));
    PyTuple_SET_ITEM(plan, 1, kb);
    PyTuple_SET_ITEM(plan, 2, Py_NewRef(total > FNT_VT_ITEMS ? Py_True : Py_False));
    for (Py_ssize_t i = 0; i < shown; i++)
        PyTuple_SET_ITEM(plan, 3 + i, Py_NewRef(PyTuple_GET_ITEM(PyTuple_GET_ITEM(fields, i), 0)));
    return plan;
}

/* class_rule's answer as a rule and its arg (new reference or NULL); -1 only
 * for KeyboardInterrupt (any other error: the walker's). */
static int
ask(fnt_vtext *vt, PyTypeObject *t, PyObject **arg)
{
    *arg = NULL;
    PyObject *fn = Py_NewRef(vt->class_rule);  /* (replaced meanwhile: still alive) */
    PyObject *res = PyObject_CallOneArg(fn, (PyObject *)t);
    Py_DECREF(fn);
    int rule = VT_WALKER;
    if (res == NULL)
        goto error;
    if (res == Py_None) {
        Py_DECREF(res);
        return VT_RETRY;
    }
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(res, 0))) {
        Py_DECREF(res);
        return VT_WALKER;
    }
    PyObject *name = PyTuple_GET_ITEM(res, 0), *a = PyTuple_GET_ITEM(res, 1);
    static const struct { const char *name; int rule; } plain[] = {
        {"repr", VT_REPR}, {"type", VT_TYPE}, {"list", VT_LIST}, {"tuple", VT_TUPLE},
        {"dict", VT_DICT}, {"set", VT_SET}, {"frozenset", VT_FROZENSET},
        {"identity", VT_IDENTITY},
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        if (PyUnicode_CompareWithASCIIString(name, plain[i].name) == 0) {
            rule = plain[i].rule;
            break;
        }
    }
    if (PyUnicode_CompareWithASCIIString(name, "cut") == 0) {
        rule = a == (PyObject *)&PyUnicode_Type ? VT_CUT_STR
             : a == (PyObject *)&PyBytes_Type ? VT_CUT_BYTES
             : a == (PyObject *)&PyByteArray_Type && t == &PyByteArray_Type ? VT_CUT_BYTEARRAY
             : VT_WALKER;
    } else if (PyUnicode_CompareWithASCIIString(name, "scalar") == 0) {
        if (PyType_Check(a) && ((PyTypeObject *)a)->tp_repr != NULL &&
            PyType_IsSubtype(t, (PyTypeObject *)a)) {
            rule = VT_SCALAR;
            *arg = Py_NewRef(a);
        }
    } else if (PyUnicode_CompareWithASCIIString(name, "plan") == 0) {
        *arg = make_plan(t, a);
        rule = *arg != NULL ? VT_PLAN : VT_WALKER;
    }
    Py_DECREF(res);
    if (!PyErr_Occurred())
        return rule;
    Py_CLEAR(*arg);
error:
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return -1;
    PyErr_Clear();
    return VT_WALKER;
}

static void
rule_clear(fnt_vtrule *e)
{
    PyObject *arg = e->arg;
    e->type = NULL;
    e->version = 0;
    e->rule = VT_WALKER;
    e->asked = 0;
    e->arg = NULL;
    Py_XDECREF(arg);
}

/* t's rule (and its arg, a new reference or NULL) from the table, asked of
 * class_rule on a miss and kept while t's version tag stays. */
static int
rule_of(fnt_vtext *vt, PyTypeObject *t, PyObject **arg)
{
    *arg = NULL;
    if (vt->rules == NULL &&
        (vt->rules = PyMem_Calloc(FNT_VT_RULES, sizeof(fnt_vtrule))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    fnt_vtrule *e = &vt->rules[fnt_ptr_slot(t, FNT_VT_RULES)];
    unsigned int version = t->tp_version_tag;
    if (version != 0 && e->type == t && e->version == version && e->rule != VT_RETRY) {
        *arg = Py_XNewRef(e->arg);
        return e->rule;
    }
    int asked = version != 0 && e->type == t && e->version == version ? e->asked : 0;
    /* a class without a version tag gets one from a lookup (as the type cache
     * gives it); the answer is kept only if the tag is the same after it */
    if (version == 0) {
        (void)_PyType_Lookup(t, fnt_st->str_dunder_dict);
        version = t->tp_version_tag;
    }
    int rule = ask(vt, t, arg);
    if (rule < 0)
        return -1;
    if (rule == VT_RETRY && asked >= VT_ASKS)
        rule = VT_WALKER;  /* the walker's each time: it stays so */
    if (version != 0 && t->tp_version_tag == version) {
        PyObject *old = e->arg;
        e->type = t;
        e->version = version;
        e->rule = rule;
        e->asked = asked + 1;
        e->arg = Py_XNewRef(*arg);
        Py_XDECREF(old);
    }
    return rule == VT_RETRY ? VT_WALKER : rule;
}

/* ------------------------------------------------------------------------- */
/* Entry points                                                               */
/* ------------------------------------------------------------------------- */

PyObject *
fnt_value_text(fnt_vtext *vt, PyObject *name, PyObject *v)
{
    if (vt->class_rule == NULL || (name != NULL && !PyUnicode_Check(name)))
        return NULL;
    /* a class already known to show by identity (user objects' commonest):
     * the identity text at once, before any of the walk's set-up */
    PyTypeObject *t = Py_TYPE(v);
    if (vt->rules != NULL) {
        fnt_vtrule *e = &vt->rules[fnt_ptr_slot(t, FNT_VT_RULES)];
        if (e->type == t && e->version == t->tp_version_tag && e->version != 0 &&
            e->rule == VT_IDENTITY) {
            PyObject *text = fnt_identity_text(&vt->idtexts, name, v, vt->max_len);
            if (text != NULL || PyErr_Occurred())
                return text;
        }
    }
    vbuf b;
    vb_init(&b);
    Py_INCREF(v);
    int r = walk_builtin(vt, &b, v, 0);
    if (r == 2) {
        PyObject *arg;
        int rule = rule_of(vt, t, &arg);
        if (rule == VT_IDENTITY) {
            /* the identity form (user objects' commonest), without the buffer */
            PyObject *text = fnt_identity_text(&vt->idtexts, name, v, vt->max_len);
            if (text != NULL || PyErr_Occurred()) {
                Py_XDECREF(arg);
                Py_DECREF(v);
                return text;
            }
        }
        r = rule < 0 ? -1 : apply_rule(vt, &b, v, 0, rule, arg);
        Py_XDECREF(arg);
    }
    Py_DECREF(v);
    PyObject *text = NULL;
    if (r == 0)
        text = vb_finish(&b, name, vt->max_len);
    else if (r < 0 && !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        PyErr_Clear();  /* the walker's: it says what the error makes the text */
    vb_free(&b);
    return text;
}

int
fnt_value_text_traverse(fnt_vtext *vt, visitproc visit, void *arg)
{
    Py_VISIT(vt->class_rule);
    if (vt->rules != NULL) {
        for (int i = 0; i < FNT_VT_RULES; i++)
            Py_VISIT(vt->rules[i].arg);
    }
    return 0;
}

void
fnt_value_text_clear(fnt_vtext *vt)
{
    Py_CLEAR(vt->class_rule);
    fnt_vtrule *rules = vt->rules;
    vt->rules = NULL;
    if (rules != NULL) {
        for (int i = 0; i < FNT_VT_RULES; i++)
            rule_clear(&rules[i]);
        PyMem_Free(rules);
    }
    fnt_identity_clear(&vt->idtexts);
}

PyObject *
fnt_value_text_fn(PyObject *module, PyObject *args)
{
    PyObject *value, *class_rule, *name = NULL;
    Py_ssize_t max_len;
    if (!PyArg_ParseTuple(args, "OnO|O", &value, &max_len, &class_rule, &name))
        return NULL;
    if (max_len < 0) {
        PyErr_SetString(PyExc_ValueError, "max_len < 0");
        return NULL;
    }
    fnt_vtext vt = {max_len, Py_NewRef(class_rule), NULL, NULL};
    PyObject *text = fnt_value_text(&vt, name == Py_None ? NULL : name, value);
    fnt_value_text_clear(&vt);
    if (text == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return text;
}

#endif  /* FNT_HOT_PATH */
