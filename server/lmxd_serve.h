/* `longmixd serve`: the HTTP data service (proto/HTTP.md). */
#ifndef LMXD_SERVE_H
#define LMXD_SERVE_H

typedef struct lmxd_serve_options {
    const char *config_path;
    const char *listen;    /* overrides the config's "listen" */
    const char *index_dir; /* overrides the config's "index" */
    int insecure;          /* allow a non-loopback address without auth */
    int skip_verify;       /* do not check shard checksums at start */
    const char *port_file; /* when set, the bound port is written here (atomically) once serving */
} lmxd_serve_options;

/* Runs until SIGTERM/SIGINT (drains in-flight requests, returns 0); SIGHUP reloads the plans.
 * Returns non-zero after printing a one-line reason when it cannot start. */
int lmxd_serve(const lmxd_serve_options *opts);

#endif
