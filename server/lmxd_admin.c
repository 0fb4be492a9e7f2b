/* Plan listing and the admin handlers: GET /v1/plans[/NAME], POST /v1/plans, DELETE /v1/plans/NAME. */
#include "lmxd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *plan_json(plan_ref *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(lmx__plan_name(r->plan)));
    json_object_set_new(o, "plan_id", json_string(lmx__plan_id_hex(r->plan)));
    json_object_set_new(o, "source", json_string(r->runtime ? "runtime" : "config"));
    json_object_set_new(o, "spec", lmx__plan_spec_json(lmx__plan_spec(r->plan)));
    json_object_set_new(o, "separators", lmx__plan_separators_json(r->plan));
    uint64_t ms = lmx__plan_max_steps(r->plan);
    if (ms != UINT64_MAX)
        json_object_set_new(o, "max_steps", json_integer((json_int_t)ms));
    return o;
}

enum MHD_Result lmxd_handle_plans(server *s, struct MHD_Connection *c, const lmxd_request *rq)
{
    if (rq->plan[0]) {
        plan_ref *r = lmxd_plan_find(s, rq->plan);
        if (!r)
            return lmxd_send_error(c, 404, "unknown_plan", rq->plan);
        json_t *o = plan_json(r);
        lmxd_plan_put(r);
        return lmxd_send_json(c, 200, o);
    }
    json_t *root = json_object(), *arr = json_object();
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->n_plans; i++)
        json_object_set_new(arr, lmx__plan_name(s->plans[i]->plan), plan_json(s->plans[i]));
    pthread_rwlock_unlock(&s->lock);
    json_object_set_new(root, "index_id", json_string(lmx__index_identity(s->ix)));
    json_object_set_new(root, "plans", arr);
    return lmxd_send_json(c, 200, root);
}

/* A plan-spec error "plans.NAME.KEY: why" becomes field "spec.KEY", detail "spec.KEY: why". */
static void spec_error(const char *name, const char *msg, char *field, size_t fn, char *detail, size_t dn)
{
    char pre[96];
    snprintf(pre, sizeof pre, "plans.%s", name);
    size_t pl = strlen(pre);
    if (strncmp(msg, pre, pl) == 0 && (msg[pl] == '.' || msg[pl] == ':')) {
        const char *rest = msg + pl;
        const char *colon = strstr(rest, ": ");
        int keylen = (int)(colon ? (size_t)(colon - rest) : strlen(rest));
        snprintf(field, fn, "spec%.*s", keylen, rest);
        snprintf(detail, dn, "spec%s", rest);
    } else {
        snprintf(field, fn, "spec");
        snprintf(detail, dn, "%s", msg);
    }
}

/* POST /v1/plans {"name": NAME, "spec": {...plan keys as in the config...}} */
enum MHD_Result lmxd_handle_plan_add(server *s, struct MHD_Connection *c, const lmx_buf *body)
{
    json_error_t je;
    char d[LMX_ERROR_MESSAGE_MAX + 64], field[128];
    if (body->len == 0)
        return lmxd_send_error_field(c, 400, "bad_json", "body: empty (want {\"name\": NAME, \"spec\": {...}})", "body");
    json_t *root = json_loadb((const char *)body->data, body->len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(d, sizeof d, "body:%d:%d: invalid JSON: %s", je.line, je.column, je.text);
        return lmxd_send_error_field(c, 400, "bad_json", d, "body");
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return lmxd_send_error_field(c, 400, "bad_request", "the body must be a JSON object {\"name\": NAME, \"spec\": {...}}",
                                "body");
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "spec") != 0) {
            snprintf(d, sizeof d, "%.80s: unknown key (the body is {\"name\": NAME, \"spec\": {...}})", key);
            snprintf(field, sizeof field, "%.80s", key);
            json_decref(root);
            return lmxd_send_error_field(c, 400, "bad_request", d, field);
        }
    }
    const char *name = json_string_value(json_object_get(root, "name"));
    json_t *spec = json_object_get(root, "spec");
    if (!name || !lmxd_valid_plan_name(name, strlen(name))) {
        json_decref(root);
        return lmxd_send_error_field(c, 400, "bad_request", "name: must be a plan name, 1-64 characters of [A-Za-z0-9._-]",
                                "name");
    }
    if (!json_is_object(spec)) {
        json_decref(root);
        return lmxd_send_error_field(c, 400, "bad_request", "spec: must be an object of plan keys (as in the config)",
                                "spec");
    }
    if (!s->state_path) {
        json_decref(root);
        return lmxd_send_error(c, 409, "no_state_dir",
                          "runtime plans need \"state_dir\" in the config (they are persisted there)");
    }
    pthread_mutex_lock(&s->admin);
    enum MHD_Result ret;
    plan_ref *old = lmxd_plan_find(s, name), *r = NULL;
    lmx_error err = {0};
    size_t n_rt = 0;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->n_plans; i++)
        n_rt += s->plans[i]->runtime;
    pthread_rwlock_unlock(&s->lock);
    if (old && !old->runtime) {
        snprintf(d, sizeof d, "plan '%s' comes from the config, which wins over runtime plans (edit the config and "
                 "send SIGHUP to change it)", name);
        ret = lmxd_send_error_field(c, 409, "plan_exists", d, "name");
    } else if (!old && n_rt >= LMXD_MAX_RUNTIME_PLANS) {
        snprintf(d, sizeof d, "at most %d runtime plans (DELETE some first)", LMXD_MAX_RUNTIME_PLANS);
        ret = lmxd_send_error(c, 409, "too_many_plans", d);
    } else if (lmxd_plan_make_runtime(s, name, spec, &r, &err) != LMX_OK) {
        char det[LMX_ERROR_MESSAGE_MAX + 8];
        spec_error(name, err.message, field, sizeof field, det, sizeof det);
        unsigned st = err.code == LMX_EINVAL || err.code == LMX_EFORMAT ? 400 : 500;
        ret = lmxd_send_error_field(c, st, st == 400 ? "bad_plan" : "internal", det, field);
    } else if (old) {
        if (strcmp(lmx__plan_id_hex(old->plan), lmx__plan_id_hex(r->plan)) == 0) {
            ret = lmxd_send_json(c, 200, plan_json(old)); /* the same plan again: nothing to do */
        } else {
            snprintf(d, sizeof d, "a different runtime plan '%s' exists (DELETE /v1/plans/%s first)", name, name);
            ret = lmxd_send_error_field(c, 409, "plan_exists", d, "name");
        }
        lmxd_plan_put(r);
    } else {
        size_t n;
        plan_ref **cur = lmxd_plans_snapshot(s, &n);
        plan_ref **nv = cur ? realloc(cur, (n + 2) * sizeof *nv) : NULL;
        if (!nv) {
            lmxd_plans_put(cur, n);
            lmxd_plan_put(r);
            ret = lmxd_send_error(c, 500, "internal", "out of memory");
        } else {
            nv[n] = r;
            if (lmxd_state_save(s, nv, n + 1, &err) != LMX_OK) {
                lmxd_log("POST /v1/plans %s: %s", name, err.message);
                lmxd_plans_put(nv, n + 1);
                ret = lmxd_send_error(c, 500, "state_write_failed", err.message);
            } else {
                atomic_fetch_add(&r->refs, 1);
                lmxd_plans_swap(s, nv, n + 1);
                lmxd_log("plan %s added at runtime (id %s)", name, lmx__plan_id_hex(r->plan));
                ret = lmxd_send_json(c, 201, plan_json(r));
                lmxd_plan_put(r);
            }
        }
    }
    lmxd_plan_put(old);
    pthread_mutex_unlock(&s->admin);
    json_decref(root);
    return ret;
}

/* DELETE /v1/plans/NAME: runtime plans only. */
enum MHD_Result lmxd_handle_plan_delete(server *s, struct MHD_Connection *c, const char *name)
{
    char d[256];
    enum MHD_Result ret;
    pthread_mutex_lock(&s->admin);
    plan_ref *old = lmxd_plan_find(s, name);
    if (!old) {
        snprintf(d, sizeof d, "no plan named '%s'", name);
        ret = lmxd_send_error(c, 404, "unknown_plan", d);
    } else if (!old->runtime) {
        snprintf(d, sizeof d, "plan '%s' comes from the config (remove it there and send SIGHUP)", name);
        ret = lmxd_send_error(c, 409, "config_plan", d);
    } else {
        size_t n, k = 0;
        plan_ref **v = lmxd_plans_snapshot(s, &n);
        for (size_t i = 0; v && i < n; i++) {
            if (v[i] == old)
                lmxd_plan_put(v[i]);
            else
                v[k++] = v[i];
        }
        lmx_error err = {0};
        if (!v) {
            ret = lmxd_send_error(c, 500, "internal", "out of memory");
        } else if (lmxd_state_save(s, v, k, &err) != LMX_OK) {
            lmxd_log("DELETE /v1/plans/%s: %s", name, err.message);
            lmxd_plans_put(v, k);
            ret = lmxd_send_error(c, 500, "state_write_failed", err.message);
        } else {
            lmxd_plans_swap(s, v, k);
            lmxd_log("plan %s deleted", name);
            json_t *o = json_object();
            json_object_set_new(o, "deleted", json_string(name));
            json_object_set_new(o, "plan_id", json_string(lmx__plan_id_hex(old->plan)));
            ret = lmxd_send_json(c, 200, o);
        }
    }
    lmxd_plan_put(old);
    pthread_mutex_unlock(&s->admin);
    return ret;
}
