/* clock.h: the trace clocks the recorders read on every event.
 *
 * Why a header of inline functions: a clock is read once or twice per traced
 * call; inlined, it costs the read itself and no call.  clock.c has the
 * one-off part (deciding whether the TSC may be used) and local_clock().
 */
#ifndef FNT_CLOCK_H
#define FNT_CLOCK_H

#include "fnt.h"
#include <time.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <x86intrin.h>
#define FNT_TSC 1
#endif

static inline long long
fnt_mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline long long
fnt_real_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The "local" clock's state.  Process-wide on purpose: it is one clock for
 * every ring and recorder (it must never go backwards between them), read on
 * every event under the GIL (never by two threads at once). */
typedef struct {
    int tsc_state;  /* 0: not yet decided, 1: in use, -1: not used */
    unsigned long long tsc_first, tsc_anchor;
    long long ns_first, ns_anchor;
    double ns_per_tick;
    unsigned long long mult;  /* ns_per_tick in 32.32 fixed point (the per-read scale) */
    long long last;  /* the last value given: the clock never goes backwards */
} fnt_clock_state;

extern FNT_HIDDEN fnt_clock_state fnt_clock;
FNT_HIDDEN void fnt_tsc_decide(void);

#define FNT_REANCHOR_NS 20000000LL

/* The "local" clock now (see clock.c): the usual read inline - the TSC
 * scaled from the anchor, kept from going back - and everything else (the
 * first read, which decides whether the TSC is used; a re-anchor every
 * FNT_REANCHOR_NS; no TSC) in fnt_local_ns_slow.  Always inline: it is read
 * twice per traced call, and a call to it cost a fifth of its body again. */
FNT_HIDDEN long long fnt_local_ns_slow(void);

/* A reading kept from going back (the last one given, across threads). */
FNT_ALWAYS_INLINE long long
fnt_clock_forward(fnt_clock_state *c, long long v)
{
    if (v < c->last)
        v = c->last;
    c->last = v;
    return v;
}

#ifdef FNT_TSC
/* The TSC now as ns: ticks since the anchor scaled in fixed point, an integer
 * multiply exact to the ns for any gap (128-bit product). */
FNT_ALWAYS_INLINE long long
fnt_tsc_ns(fnt_clock_state *c)
{
    unsigned long long t = __rdtsc();
    return c->ns_anchor + (long long)(((unsigned __int128)(t - c->tsc_anchor) * c->mult) >> 32);
}
#endif

FNT_ALWAYS_INLINE long long
fnt_local_ns(void)
{
#ifdef FNT_TSC
    fnt_clock_state *c = &fnt_clock;
    if (c->tsc_state == 1) {
        long long v = fnt_tsc_ns(c);
        if (v - c->ns_anchor <= FNT_REANCHOR_NS)
            return fnt_clock_forward(c, v);
    }
#endif
    return fnt_local_ns_slow();
}

#endif  /* FNT_CLOCK_H */
