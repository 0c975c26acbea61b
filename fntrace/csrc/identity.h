/* identity.h: the identity form of a value whose type keeps object's repr,
 * "<module.Qualname object at 0x...>", written without object.__repr__.
 *
 * Why: a user object shown by its identity (value_text.py's default) went
 * through PyObject_Repr -> object_repr -> PyUnicode_FromFormat, whose format
 * parsing, "%p" (the C library's printf) and writer were ~3,000 instructions
 * per value, most of what funcgraph-args and funcgraph-retval cost on such
 * values.  The text before the address depends on the type alone: it is made
 * once per type and kept in a small direct-mapped table (fnt_idtexts), the
 * address written in hex by hand, the whole text (with its "name=") in one
 * allocation.  The output is object_repr's, byte for byte.
 */
#ifndef FNT_IDENTITY_H
#define FNT_IDENTITY_H

#include "fnt.h"

#define FNT_ID_TEXTS 64

/* One type's "<module.Qualname object at 0x", valid while the type's version
 * tag is `version` (every change of the type's dict, __module__ included,
 * gives it another, and tags are never reused) and, for a heap type, while
 * its __qualname__ is `qualname` (set without a new tag: held, compared by
 * identity).  `type` is compared by address only, never read. */
typedef struct {
    PyTypeObject *type;
    unsigned int version;
    PyObject *qualname;  /* held; NULL for a static type */
    PyObject *prefix;    /* held, ASCII */
} fnt_idtext;

/* "name=<...>" ("<...>" when name is NULL) for `v`, whose type's tp_repr must be
 * object's; NULL without an error when the fast form does not apply (a type
 * without a version tag, a text not ASCII or longer than max_len: the caller
 * renders it the general way).  *table is allocated on first use. */
FNT_HIDDEN PyObject *fnt_identity_text(fnt_idtext **table, PyObject *name, PyObject *v,
                                       Py_ssize_t max_len);
/* The type's "<module.Qualname object at 0x" from the table (borrowed, valid
 * until the table's next use); NULL without an error when it has none (no
 * version tag, not ASCII: object's repr then makes the text). */
FNT_HIDDEN PyObject *fnt_identity_prefix(fnt_idtext **table, PyTypeObject *t);
/* The address as object_repr's "%p" writes it after "0x": lowercase hex
 * digits, no leading zeros, at the end of buf[2 * sizeof(uintptr_t)]; returns
 * the first digit. */
FNT_HIDDEN char *fnt_identity_hex(char *end, const void *v);
FNT_HIDDEN void fnt_identity_clear(fnt_idtext **table);

#endif  /* FNT_IDENTITY_H */
