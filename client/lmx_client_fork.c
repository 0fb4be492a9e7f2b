/* Fork safety for the prefetch threads. fork() copies a process whose other threads may be in the
 * middle of libcurl, malloc (ASan's allocator has no fork handler) or libc, holding their locks;
 * the child's copies of those locks stay held forever and a new client there hangs. So before
 * fork() each registered client parks its worker (in a condition wait, holding nothing), and the
 * parent resumes them after; a request in flight is abandoned and fetched again. */
#include "lmx_client_internal.h"

#include <pthread.h>

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static lmx__fork_hook *reg_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void before_fork(void)
{
    pthread_mutex_lock(&reg_lock);
    for (lmx__fork_hook *h = reg_head; h; h = h->next)
        h->hold(h->arg);
}

static void after_fork_parent(void)
{
    for (lmx__fork_hook *h = reg_head; h; h = h->next)
        h->release(h->arg);
    pthread_mutex_unlock(&reg_lock);
}

/* The child's clients are the parent's copies, unusable there (lmx_client.c: forked_child). */
static void after_fork_child(void)
{
    reg_head = NULL;
    pthread_mutex_unlock(&reg_lock);
}

static void install(void) { pthread_atfork(before_fork, after_fork_parent, after_fork_child); }

void lmx__fork_register(lmx__fork_hook *h)
{
    pthread_once(&reg_once, install);
    pthread_mutex_lock(&reg_lock);
    h->prev = NULL;
    h->next = reg_head;
    if (reg_head)
        reg_head->prev = h;
    reg_head = h;
    h->registered = 1;
    pthread_mutex_unlock(&reg_lock);
}

void lmx__fork_unregister(lmx__fork_hook *h)
{
    if (!h->registered)
        return;
    pthread_mutex_lock(&reg_lock);
    if (h->prev)
        h->prev->next = h->next;
    else
        reg_head = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->registered = 0;
    pthread_mutex_unlock(&reg_lock);
}
