/* longmixd serve configuration (contract keys in ../shared/CONTRACT.md, extensions in
 * proto/HTTP.md). */
#ifndef LMXD_CONFIG_H
#define LMXD_CONFIG_H

#include <jansson.h>
#include <stdint.h>
#include "lmx_error.h"
#include "lmx_plan.h"

#define LMXD_MAX_TOKENS 64
#define LMXD_CONFIG_MAX (16 << 20) /* bytes */
#define LMXD_CACHE_MB_DEFAULT 256
#define LMXD_INFLIGHT_MB_DEFAULT 256
/* 1 TiB: anything larger is a typo; and what size_t can count in bytes (32-bit hosts) */
#define LMXD_CACHE_MB_MAX ((SIZE_MAX >> 20) < (1u << 20) ? (int)(SIZE_MAX >> 20) : (1 << 20))

typedef struct lmxd_plan_cfg {
    char *name;
    lmx_plan_spec spec;
} lmxd_plan_cfg;

typedef struct lmxd_config {
    char *listen;    /* HOST:PORT */
    char *index_dir;
    char *state_dir; /* plans added at runtime are persisted here; NULL = not persisted */
    int threads;
    int zstd_level;
    int has_auth;
    int auth_none; /* "auth": "none": no tokens, said explicitly (a reload may then turn auth off) */
    int exposed;   /* the file holds token hashes and is readable by group or others */
    uint8_t read_hashes[LMXD_MAX_TOKENS][32], admin_hashes[LMXD_MAX_TOKENS][32];
    int n_read, n_admin;
    unsigned connection_limit, connection_timeout_s;
    /* Total time for a request's headers (from the accept, or the end of the previous request on
     * the connection) and for its body; both default to connection_timeout_s. */
    int header_timeout_s, body_timeout_s;
    int send_timeout_s; /* total time from the complete request to the response's last byte */
    int inflight_mb;    /* budget for batch/sequence bodies being sent, MiB; 0 = none */
    int per_address_limit; /* connections per client address; 0 = no cap; -1 = default (lmxd_serve.c) */
    int access_log;
    int lag_steps; /* /metrics: a rank more than this many steps behind its world's highest is lagging */
    int cache_mb;  /* response cache budget in MiB; 0 = no cache */
    int verify_background; /* "verify": "background": serve while new/changed shards are verified */
    int verify_wait_s;     /* how long a read waits for a shard being verified (then 503) */
    int plan_table_grace_s; /* item tables of plans not served are removed after this long unused */
    lmxd_plan_cfg *plans;
    size_t n_plans;
} lmxd_config;

/* Loads and validates FILE, which must be a regular file; errors name the file and the key ("config.json: plans.p.seq_len: ...").
 * The caller owns *cfg (lmxd_config_free). */
int lmxd_config_load(const char *path, lmxd_config *cfg, lmx_error *err);
/* Parses the plans object (also used for plans added at runtime). */
int lmxd_config_parse_plans(const json_t *plans, lmxd_plan_cfg **out, size_t *n, lmx_error *err);
void lmxd_plans_free(lmxd_plan_cfg *plans, size_t n);
void lmxd_config_free(lmxd_config *cfg);

/* Token hash as written in configs: "blake2b-256:<hex>" of the token's bytes. */
void lmxd_token_hash(const char *token, uint8_t out[32]);

#endif
