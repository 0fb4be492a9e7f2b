/* Reads of the mapped index that survive a shard truncated under the daemon (`truncate`, or `cp`
 * over a live index). Touching a mapped page past the file's new end raises SIGBUS, which would
 * kill the daemon. Inside a guarded section (lmxd_guard_begin/end, one thread's own) the SIGBUS
 * handler notes the address and maps a zero page over the faulting one, so the read returns
 * zeros and the code under it (which may hold locks: no longjmp) runs to its end; the caller then
 * throws the result away and marks the index damaged (lmxd_index_damage): from then on every
 * body request and /healthz answer 503 naming the shard, until a restart maps a good index.
 * A SIGBUS outside a guarded section keeps its default action (core dump). */
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#include "lmxd_internal.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static _Thread_local volatile sig_atomic_t guard_on;
static _Thread_local void *volatile fault_addr;
static uintptr_t page_size;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (guard_on && si->si_code == BUS_ADRERR) {
        if (!fault_addr)
            fault_addr = si->si_addr;
        /* mmap is a plain system call here (not on POSIX's async-signal-safe list, safe in
         * practice on Linux); on failure fall through to the default action. */
        void *page = (void *)((uintptr_t)si->si_addr & ~(page_size - 1));
        if (mmap(page, page_size, PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED)
            return;
    }
    signal(sig, SIG_DFL); /* returning re-runs the access: the default action then */
}

int lmxd_guard_install(void)
{
    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGBUS, &sa, NULL);
}

void lmxd_guard_begin(void)
{
    lmx__gate_begin(); /* the verification gate's fault, read by the caller with lmx__gate_end */
    fault_addr = NULL;
    guard_on = 1;
}

const void *lmxd_guard_end(void)
{
    guard_on = 0;
    return fault_addr;
}

void lmxd_index_damage(server *s, const void *addr)
{
    const char *shard = lmx__index_shard_at(s->ix, addr);
    if (atomic_exchange(&s->damage_claimed, 1) == 0) {
        snprintf(s->damage, sizeof s->damage,
                 "shard %s changed under the daemon (truncated or overwritten while mapped); this node serves no "
                 "more bodies: replace the index and restart (docs/OPERATIONS.md)",
                 shard ? shard : "(unknown file)");
        atomic_store(&s->damaged, 1); /* published after the message */
        lmxd_log("SIGBUS reading the index: %s", s->damage);
    }
}

const char *lmxd_index_damaged(server *s)
{
    return atomic_load(&s->damaged) ? s->damage : NULL;
}
