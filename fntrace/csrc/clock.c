/* clock.c: the "local" trace clock.
 *
 * Why: as the kernel's trace_clock_local() (sched_clock, the TSC), the
 * default clock is the cheapest one: the TSC scaled to nanoseconds.  Reading
 * CLOCK_MONOTONIC costs ~20 ns even through the vDSO, twice per traced call
 * for function_graph (15% of its cost); the TSC costs a third of that.  It is
 * used only where the kernel itself uses the TSC as its clocksource (then it
 * is invariant and synchronised between CPUs), is re-anchored on
 * CLOCK_MONOTONIC every 20 ms (its scale refined each time), so it stays
 * within ~1 us of time.perf_counter_ns(), and never goes backwards.
 * Elsewhere "local" is CLOCK_MONOTONIC itself.  The per-event read is inline
 * in clock.h; this file decides once whether the TSC is used.
 */
#include "clock.h"

#ifdef FNT_HOT_PATH

FNT_HIDDEN fnt_clock_state fnt_clock;

#ifdef FNT_TSC
static int
tsc_reliable(void)
{
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == NULL)
        return 0;
    char buf[32] = {0};
    int ok = fgets(buf, sizeof buf, f) != NULL && strncmp(buf, "tsc", 3) == 0 &&
             (buf[3] == '\n' || buf[3] == '\0');
    fclose(f);
    return ok;
}
#endif

void
fnt_tsc_decide(void)
{
    fnt_clock_state *c = &fnt_clock;
    c->tsc_state = -1;
#ifdef FNT_TSC
    if (getenv("FNTRACE_NO_TSC") != NULL || !tsc_reliable())
        return;
    /* the scale, over 1 ms */
    unsigned long long t0 = __rdtsc();
    long long n0 = fnt_mono_ns(), n1;
    do {
        n1 = fnt_mono_ns();
    } while (n1 - n0 < 1000000LL);
    unsigned long long t1 = __rdtsc();
    if (t1 <= t0)
        return;
    c->ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
    /* and only if it is cheaper here than the vDSO clock */
    volatile unsigned long long sink = 0;
    long long a = fnt_mono_ns();
    for (int i = 0; i < 2000; i++)
        sink += __rdtsc();
    long long b = fnt_mono_ns();
    for (int i = 0; i < 2000; i++)
        sink += (unsigned long long)fnt_mono_ns();
    long long d = fnt_mono_ns();
    (void)sink;
    if (b - a >= d - b)
        return;
    c->mult = (unsigned long long)(c->ns_per_tick * 4294967296.0);
    c->tsc_first = c->tsc_anchor = __rdtsc();
    c->ns_first = c->ns_anchor = fnt_mono_ns();
    c->tsc_state = 1;
#endif
}

/* Every read of the local clock fnt_local_ns() does not make inline: the
 * first (which decides), one past the re-anchor interval (the TSC's rate is
 * measured again against CLOCK_MONOTONIC, so that the two never drift apart
 * by more than the rate's error over one interval), and every read without
 * the TSC. */
long long
fnt_local_ns_slow(void)
{
    fnt_clock_state *c = &fnt_clock;
#ifdef FNT_TSC
    if (c->tsc_state == 0)
        fnt_tsc_decide();
    if (c->tsc_state == 1) {
        long long v = fnt_tsc_ns(c);
        if (v - c->ns_anchor > FNT_REANCHOR_NS) {
            long long n = fnt_mono_ns();
            unsigned long long t2 = __rdtsc();
            if (t2 > c->tsc_first) {
                c->ns_per_tick = (double)(n - c->ns_first) / (double)(t2 - c->tsc_first);
                c->mult = (unsigned long long)(c->ns_per_tick * 4294967296.0);
            }
            c->tsc_anchor = t2;
            c->ns_anchor = n;
            v = n;
        }
        return fnt_clock_forward(c, v);
    }
#endif
    return fnt_clock_forward(c, fnt_mono_ns());
}

PyObject *
fnt_local_clock(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(fnt_local_ns());
}

#endif  /* FNT_HOT_PATH */
