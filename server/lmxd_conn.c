/* Per-connection deadlines. libmicrohttpd's connection_timeout only closes connections that are
 * idle for that long, so a client sending one byte a second holds a connection (and a slot of
 * connection_limit) for ever. Each connection here has a phase and a total deadline for it:
 *
 *   headers  from the accept (or the end of the previous request) to complete headers: header_timeout
 *   body     from complete headers to the end of the request body: body_timeout
 *   sending  from the complete request to the response's last byte: send_timeout
 *
 * A watchdog thread checks the deadlines a few times a second and shuts down the socket of a
 * connection past its deadline; libmicrohttpd then sees the socket fail and closes the connection
 * itself (through its normal path: lmxd_on_completed runs, counters stay right). The list is
 * guarded by s->conn_lock, which the CLOSED notification also takes, and MHD closes the socket
 * only after that notification: so the watchdog never shuts down a descriptor that was reused. */
#include "lmxd_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

struct lmxd_conn {
    struct lmxd_conn *prev, *next;
    int fd;
    _Atomic int phase;       /* LMXD_PHASE_* */
    _Atomic double deadline; /* lmx__now() seconds; 0 = none */
    int cut;                 /* shut down by the watchdog (counted once) */
};

void lmxd_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
    server *s = cls;
    lmxd_conn *k = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci || !(k = calloc(1, sizeof *k)))
            return; /* out of memory: this connection has MHD's idle timeout only */
        k->fd = ci->connect_fd;
        pthread_mutex_lock(&s->conn_lock);
        k->next = s->conns;
        if (s->conns)
            s->conns->prev = k;
        s->conns = k;
        pthread_mutex_unlock(&s->conn_lock);
        lmxd_conn_phase(s, k, LMXD_PHASE_HEADERS);
        *socket_context = k;
        return;
    }
    if (!k)
        return;
    pthread_mutex_lock(&s->conn_lock);
    if (k->prev)
        k->prev->next = k->next;
    else
        s->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    pthread_mutex_unlock(&s->conn_lock);
    free(k);
    *socket_context = NULL;
}

lmxd_conn *lmxd_conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void lmxd_conn_phase(server *s, lmxd_conn *k, int phase)
{
    if (!k)
        return;
    int t = phase == LMXD_PHASE_HEADERS ? s->cfg.header_timeout_s
            : phase == LMXD_PHASE_BODY  ? s->cfg.body_timeout_s
                                        : s->cfg.send_timeout_s;
    atomic_store(&k->deadline, t > 0 ? lmx__now() + t : 0.0);
    atomic_store(&k->phase, phase);
}

static void *watchdog(void *arg)
{
    server *s = arg;
    int tmin = s->cfg.header_timeout_s;
    if (s->cfg.body_timeout_s < tmin)
        tmin = s->cfg.body_timeout_s;
    if (s->cfg.send_timeout_s > 0 && s->cfg.send_timeout_s < tmin)
        tmin = s->cfg.send_timeout_s;
    /* A tenth of the shortest deadline, at most 1 s: a deadline is enforced within 10%. */
    long tick_ms = tmin >= 10 ? 1000 : tmin * 100L;
    pthread_mutex_lock(&s->conn_lock);
    while (!s->watchdog_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += tick_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->watchdog_cv, &s->conn_lock, &ts);
        double now = lmx__now();
        for (lmxd_conn *k = s->conns; k; k = k->next) {
            double dl = atomic_load(&k->deadline);
            if (k->cut || dl == 0.0 || now < dl)
                continue;
            int ph = atomic_load(&k->phase);
            k->cut = 1;
            shutdown(k->fd, SHUT_RDWR);
            atomic_fetch_add(&s->cut[ph], 1);
        }
    }
    pthread_mutex_unlock(&s->conn_lock);
    return NULL;
}

int lmxd_watchdog_start(server *s)
{
    int rc = pthread_create(&s->watchdog, NULL, watchdog, s);
    s->watchdog_on = rc == 0;
    return rc == 0 ? 0 : -1;
}

void lmxd_watchdog_stop(server *s)
{
    if (!s->watchdog_on)
        return;
    pthread_mutex_lock(&s->conn_lock);
    s->watchdog_stop = 1;
    pthread_cond_signal(&s->watchdog_cv);
    pthread_mutex_unlock(&s->conn_lock);
    pthread_join(s->watchdog, NULL);
    s->watchdog_on = 0;
}
