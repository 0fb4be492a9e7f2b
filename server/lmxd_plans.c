/* The plan registry (config plans, runtime plans added over HTTP, swapped whole on reload) and the
 * state file that keeps the runtime plans across restarts (STATE_DIR/plans.json). */
#include "lmxd_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmx_proto.h"

#define MAX_STATE_FILE (16u << 20)

static plan_ref *new_ref(lmx_plan *p, int runtime, json_t *spec_json)
{
    plan_ref *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->plan = p;
    r->runtime = runtime;
    r->spec_json = spec_json;
    pthread_mutex_init(&r->rk_lock, NULL);
    atomic_store(&r->refs, 1);
    return r;
}

/* lmx__plan_create reads the index's document tables: under the SIGBUS guard (lmxd_guard.c), so a
 * shard truncated under the daemon fails the plan, not the daemon. */
static int create_guarded(server *s, const char *name, const lmx_plan_spec *spec, lmx_plan **out, lmx_error *err)
{
    const char *why = lmxd_index_damaged(s);
    if (why)
        return lmx__err(err, LMX_EIO, "%s", why);
    lmxd_guard_begin();
    int rc = lmx__plan_create(s->ix, name, spec, &s->stopping, out, err);
    const void *bad = lmxd_guard_end();
    const char *shard = NULL;
    int gate_fault = lmx__gate_end(&shard); /* the build read a shard that failed verification */
    if (bad || gate_fault) {
        if (rc == LMX_OK)
            lmx__plan_free(*out);
        if (gate_fault == LMX_EFORMAT) /* a damaged document record (lmx_index_read.c) */
            return lmx__err(err, LMX_EFORMAT, "plan %s: %s (its item table is not kept)", name,
                            lmx__gate_fault_message());
        if (gate_fault)
            return lmx__err(err, LMX_ECHECKSUM, "plan %s: shard %s failed verification (its item table is not kept)",
                            name, shard ? shard : "?");
        lmxd_index_damage(s, bad);
        return lmx__err(err, LMX_EIO, "%s", s->damage);
    }
    return rc;
}

void lmxd_plan_put(plan_ref *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        lmx__plan_free(r->plan);
        json_decref(r->spec_json);
        free(r->ranks);
        pthread_mutex_destroy(&r->rk_lock);
        free(r);
    }
}

void lmxd_plans_put(plan_ref **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        lmxd_plan_put(v[i]);
    free(v);
}

plan_ref *lmxd_plan_find(server *s, const char *name)
{
    plan_ref *hit = NULL;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->n_plans; i++)
        if (strcmp(lmx__plan_name(s->plans[i]->plan), name) == 0) {
            hit = s->plans[i];
            atomic_fetch_add(&hit->refs, 1);
            break;
        }
    pthread_rwlock_unlock(&s->lock);
    return hit;
}

/* The current plans, each with a reference taken (refs_put releases them). */
plan_ref **lmxd_plans_snapshot(server *s, size_t *n)
{
    pthread_rwlock_rdlock(&s->lock);
    *n = s->n_plans;
    plan_ref **v = calloc(*n + 1, sizeof *v);
    for (size_t i = 0; v && i < *n; i++) {
        v[i] = s->plans[i];
        atomic_fetch_add(&v[i]->refs, 1);
    }
    pthread_rwlock_unlock(&s->lock);
    if (!v)
        *n = 0;
    return v;
}

/* Builds plan objects for the config's plans, reusing unchanged config plans (same id) from the
 * registry so their caches and step tracking survive a reload. */
int lmxd_plans_build(server *s, const lmxd_plan_cfg *pc, size_t n, plan_ref ***out, lmx_error *err)
{
    plan_ref **v = calloc(n + 1, sizeof *v);
    if (!v)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        lmx_plan *p;
        int rc = create_guarded(s, pc[i].name, &pc[i].spec, &p, err);
        if (rc != LMX_OK) {
            lmxd_plans_put(v, i);
            return rc;
        }
        plan_ref *old = lmxd_plan_find(s, pc[i].name);
        if (old && !old->runtime && strcmp(lmx__plan_id_hex(old->plan), lmx__plan_id_hex(p)) == 0) {
            lmx__plan_free(p); /* unchanged: keep the warm caches */
            v[i] = old;
            continue;
        }
        lmxd_plan_put(old);
        if (!(v[i] = new_ref(p, 0, NULL))) {
            lmx__plan_free(p);
            lmxd_plans_put(v, i);
            return lmx__err(err, LMX_ENOMEM, "out of memory");
        }
    }
    *out = v;
    return LMX_OK;
}

void lmxd_plans_swap(server *s, plan_ref **v, size_t n)
{
    pthread_rwlock_wrlock(&s->lock);
    plan_ref **old = s->plans;
    size_t old_n = s->n_plans;
    s->plans = v;
    s->n_plans = n;
    pthread_rwlock_unlock(&s->lock);
    lmxd_plans_put(old, old_n);
}

/* A runtime plan from its name and posted spec object. */
int lmxd_plan_make_runtime(server *s, const char *name, json_t *spec_obj, plan_ref **out, lmx_error *err)
{
    lmx_plan_spec spec;
    memset(&spec, 0, sizeof spec);
    int rc = lmx__plan_spec_parse(name, spec_obj, &spec, err);
    lmx_plan *p = NULL;
    if (rc == LMX_OK)
        rc = create_guarded(s, name, &spec, &p, err);
    lmx__plan_spec_free(&spec);
    if (rc != LMX_OK)
        return rc;
    json_t *copy = json_deep_copy(spec_obj);
    if (!copy || !(*out = new_ref(p, 1, copy))) {
        json_decref(copy);
        lmx__plan_free(p);
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    }
    return LMX_OK;
}

/* Writes the runtime plans among v to the state file: temp file, fsync, rename, fsync dir. */
int lmxd_state_save(server *s, plan_ref *const *v, size_t n, lmx_error *err)
{
    if (!s->state_path)
        return LMX_OK;
    json_t *root = json_object(), *plans = json_object();
    json_object_set_new(root, "version", json_integer(1));
    for (size_t i = 0; i < n; i++)
        if (v[i]->runtime)
            json_object_set(plans, lmx__plan_name(v[i]->plan), v[i]->spec_json);
    json_object_set_new(root, "plans", plans);
    char *txt = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!txt)
        return lmx__err(err, LMX_ENOMEM, "out of memory");
    size_t len = strlen(txt);
    txt[len] = '\n'; /* json_dumps's NUL becomes the final newline */
    int rc = lmx__write_file_atomic(s->state_path, txt, len + 1, err);
    free(txt);
    return rc;
}

/* Reads the state file's runtime plans (none when the file does not exist). */
int lmxd_state_load(server *s, plan_ref ***out, size_t *n_out, lmx_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (!s->state_path || access(s->state_path, F_OK) != 0)
        return LMX_OK;
    char *txt = NULL;
    size_t len = 0;
    int rc = lmx__read_file(s->state_path, MAX_STATE_FILE, &txt, &len, err);
    if (rc != LMX_OK)
        return rc;
    json_error_t je;
    json_t *root = json_loadb(txt, len, JSON_REJECT_DUPLICATES, &je);
    free(txt);
    json_t *plans = root ? json_object_get(root, "plans") : NULL;
    if (!root || !json_is_object(plans)) {
        json_decref(root);
        return lmx__err(err, LMX_EFORMAT, "state file %s: not a JSON object with \"plans\"", s->state_path);
    }
    size_t n = json_object_size(plans);
    plan_ref **v = calloc(n + 1, sizeof *v);
    size_t k = 0;
    const char *name;
    json_t *spec;
    rc = v ? LMX_OK : lmx__err(err, LMX_ENOMEM, "out of memory");
    json_object_foreach(plans, name, spec)
    {
        if (rc != LMX_OK)
            break;
        if (!lmxd_valid_plan_name(name, strlen(name)))
            rc = lmx__err(err, LMX_EINVAL, "plans.%.80s: a plan name is 1-64 characters of [A-Za-z0-9._-]", name);
        else if ((rc = lmxd_plan_make_runtime(s, name, spec, &v[k], err)) == LMX_OK)
            k++;
    }
    json_decref(root);
    if (rc != LMX_OK) {
        lmxd_plans_put(v, k);
        return lmx__err_prefix(err, "state file %s: ", s->state_path);
    }
    *out = v;
    *n_out = k;
    return LMX_OK;
}

/* The served set: config plans first, then runtime plans whose names no config plan takes (the
 * config wins; a shadowed runtime plan is dropped and the state file rewritten). Consumes the
 * references in cv and rv. */
plan_ref **lmxd_plans_assemble(server *s, plan_ref **cv, size_t nc, plan_ref **rv, size_t nr, size_t *n_out)
{
    plan_ref **v = calloc(nc + nr + 1, sizeof *v);
    size_t n = 0, shadowed = 0;
    if (!v) {
        lmxd_plans_put(rv, nr);
        *n_out = nc;
        return cv; /* out of memory: serve the config plans only */
    }
    for (size_t i = 0; i < nc; i++)
        v[n++] = cv[i];
    free(cv);
    for (size_t i = 0; i < nr; i++) {
        int clash = 0;
        for (size_t j = 0; j < nc && !clash; j++)
            clash = strcmp(lmx__plan_name(v[j]->plan), lmx__plan_name(rv[i]->plan)) == 0;
        if (clash) {
            lmxd_log("plan %s: the config defines it, dropping the runtime plan of that name", lmx__plan_name(rv[i]->plan));
            lmxd_plan_put(rv[i]);
            shadowed++;
        } else {
            v[n++] = rv[i];
        }
    }
    free(rv);
    if (shadowed) {
        lmx_error err = {0};
        if (lmxd_state_save(s, v, n, &err) != LMX_OK)
            lmxd_log("cannot rewrite the state file: %s", err.message);
    }
    *n_out = n;
    return v;
}

void lmxd_plans_gc_tables(server *s)
{
    const char *dir = lmx__index_table_dir(s->ix);
    if (!dir)
        return;
    size_t n;
    plan_ref **v = lmxd_plans_snapshot(s, &n);
    const char **keep = calloc(n + 1, sizeof *keep);
    for (size_t i = 0; keep && i < n; i++)
        keep[i] = lmx__plan_id_hex(v[i]->plan);
    size_t removed = keep ? lmx__plan_table_gc(dir, keep, n, (double)s->cfg.plan_table_grace_s) : 0;
    free(keep);
    lmxd_plans_put(v, n);
    if (removed)
        lmxd_log("removed %zu plan table(s) of plans no longer served from %s (unused for over %d s)", removed, dir,
                 s->cfg.plan_table_grace_s);
}
