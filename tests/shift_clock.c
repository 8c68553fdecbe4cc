/* A wrong wall clock for one process, for tests: LD_PRELOAD this, and the process's CLOCK_REALTIME
 * (clock_gettime, gettimeofday, time) reads the number of seconds in $SHIFT_CLOCK_FILE added to it,
 * re-read at most every 0.2 s, so that a test steps the clock by rewriting the file, as NTP steps a
 * real one. The monotonic clocks are left alone, as a step of the wall clock leaves them.
 *
 * Why not Debian's libfaketime: its 0.9.10 breaks Python 3.11's time.sleep (EINVAL from
 * clock_nanosleep) when the monotonic clock is left alone, and hangs threading waits when it is
 * not. This does the one thing the tests need. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static volatile double shift_s;
static long long next_read_ns;
static int busy;

static long long mono_ns(void) {
    struct timespec m;
    real_clock_gettime(CLOCK_MONOTONIC, &m);
    return (long long)m.tv_sec * 1000000000LL + m.tv_nsec;
}

static void refresh(void) {
    const char *path = getenv("SHIFT_CLOCK_FILE");
    if (!path || __atomic_test_and_set(&busy, __ATOMIC_ACQUIRE))
        return; /* another thread is reading it: use the shift as it stands */
    long long now = mono_ns();
    if (now >= next_read_ns) {
        next_read_ns = now + 200000000LL;
        FILE *f = fopen(path, "r");
        if (f) {
            double v;
            if (fscanf(f, "%lf", &v) == 1)
                shift_s = v;
            fclose(f);
        }
    }
    __atomic_clear(&busy, __ATOMIC_RELEASE);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    if (!real_clock_gettime)
        real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int r = real_clock_gettime(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        refresh();
        long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + (long long)(shift_s * 1e9);
        ts->tv_sec = ns / 1000000000LL;
        ts->tv_nsec = ns % 1000000000LL;
    }
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}
