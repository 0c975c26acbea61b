/* events.h: the layout of the events the C extension writes and encodes.
 *
 * Why: the same numbers are written on the Python side (the ring buffer's
 * event tuples, the trace file's codes).  The Python event schema is the
 * source of truth; these lines restate it for C, one `#define NAME value`
 * each, so that a test can read them and compare them with the schema.
 * Change the schema first, then this file.
 */
#ifndef FNT_EVENTS_H
#define FNT_EVENTS_H

/* Accounted bytes of an event beyond its text (ring_buffer.EVENT_OVERHEAD). */
#define EVENT_OVERHEAD 64

/* The kind field (index 2) of a ring event tuple, as one character. */
#define EVENT_TAG_CALL 'F'
#define EVENT_TAG_ENTRY 'E'
#define EVENT_TAG_EXIT 'X'
#define EVENT_TAG_TASK 'T'

/* Fields of every ring event tuple. */
#define EVENT_TS 0
#define EVENT_SIZE 1
#define EVENT_KIND 2
#define EVENT_FN 3

/* The function tracer's call: (ts, size, "F", fn, parent, args, event). */
#define CALL_PARENT 4
#define CALL_ARGS 5
#define CALL_EVENT 6
#define CALL_LEN 7

/* function_graph's entry: (ts, size, "E", fn, depth, args, event). */
#define ENTRY_DEPTH 4
#define ENTRY_ARGS 5
#define ENTRY_EVENT 6
#define ENTRY_LEN 7

/* An asyncio task note: (ts, size, "T", info), stored in the file as a marker
 * whose text is the task prefix and the info. */
#define TASK_INFO 3
#define TASK_LEN 4

/* function_graph's exit: (ts, size, "X", fn, depth, duration, event, value). */
#define EXIT_DEPTH 4
#define EXIT_DURATION 5
#define EXIT_EVENT 6
#define EXIT_VALUE 7
#define EXIT_LEN 8

/* Trace file: an event's first byte is kind code | (event code << shift),
 * with the text flag when a call, entry or exit carries a text
 * (formats/tracefile.py KINDS and EVENTS_NAMES; docs/tracefile.md). */
#define FILE_KIND_CALL 0
#define FILE_KIND_ENTRY 1
#define FILE_KIND_EXIT 2
#define FILE_KIND_MARKER 3
#define FILE_EVENT_SHIFT 3
#define FILE_TEXT_FLAG 64

#endif  /* FNT_EVENTS_H */
