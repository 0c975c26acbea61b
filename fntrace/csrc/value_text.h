/* value_text.h: value_text.py's text of a traced value, made in C.
 *
 * Why: with funcgraph-args and funcgraph-retval, a value the C recorder could
 * not render itself went to the Python walker (SafeRepr -> value_text.py),
 * ~7,850 of the ~10,500 instructions per call of the mixed workload, most of
 * it dataclass instances and containers.  This walk renders those, byte for
 * byte as value_text.py does (its limits: FNT_VT_ITEMS items, FNT_VT_LEVEL
 * levels, str and bytes cut to max_len + 1 before their repr, the whole text
 * cut to max_len), and runs none of the program's code: fields are read from
 * slots and instance dicts, containers through their base type's C code.
 *
 * What a value of a class other than the few builtins tested here by address
 * becomes is value_text.py's decision (class_rule), asked once per class and
 * kept in a direct-mapped table while the class's version tag stays (every
 * change of the class's dict or of a base's gives it another, and tags are
 * never reused), so the table holds no reference to the class.  Anything
 * class_rule leaves to the walker, or anything unusual met on the way (a
 * field whose descriptor is not a slot any more, an error), hands the whole
 * value to the Python walker, as before.
 */
#ifndef FNT_VALUE_TEXT_H
#define FNT_VALUE_TEXT_H

#include "fnt.h"
#include "identity.h"

#ifdef FNT_HOT_PATH

/* value_text.py's MAX_ITEMS and MAX_LEVEL (tests/test_value_text_c.py holds
 * them equal) */
#define FNT_VT_ITEMS 6
#define FNT_VT_LEVEL 2
#define FNT_VT_RULES 256

/* One class's rule (class_rule's answer), valid while the class at `type`
 * has version tag `version`. */
typedef struct {
    PyTypeObject *type;  /* compared by address only, never read */
    unsigned int version;
    int rule;
    int asked;           /* how often class_rule was asked for this class and tag */
    PyObject *arg;       /* held: the base type, or the dataclass plan; or NULL */
} fnt_vtrule;

typedef struct {
    Py_ssize_t max_len;
    PyObject *class_rule;  /* held: value_text.class_rule; NULL: this walk is off */
    fnt_vtrule *rules;     /* FNT_VT_RULES, allocated on first use */
    fnt_idtext *idtexts;   /* the identity form's prefixes (identity.h) */
} fnt_vtext;

/* "name=text" ("text" when name is NULL) for `v`, text cut to max_len as
 * SafeRepr cuts it; NULL without an error when the value is the Python
 * walker's to render; NULL with an error only for KeyboardInterrupt or when
 * memory runs out making the result. */
FNT_HIDDEN PyObject *fnt_value_text(fnt_vtext *vt, PyObject *name, PyObject *v);
FNT_HIDDEN int fnt_value_text_traverse(fnt_vtext *vt, visitproc visit, void *arg);
FNT_HIDDEN void fnt_value_text_clear(fnt_vtext *vt);

#endif  /* FNT_HOT_PATH */
#endif  /* FNT_VALUE_TEXT_H */
