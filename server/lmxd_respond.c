/* HTTP response helpers: JSON and error bodies, the LMX_E* -> status mapping, the static dashboard. */
#include "lmxd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum MHD_Result lmxd_send_buf(struct MHD_Connection *c, unsigned status, void *data, size_t len,
                              const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, data, free);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result lmxd_send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *txt = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!txt)
        return MHD_NO;
    size_t n = strlen(txt);
    txt[n] = '\n'; /* json_dumps's NUL becomes the final newline */
    return lmxd_send_buf(c, status, txt, n + 1, "application/json");
}

/* {"error": ..., "detail": ...[, "field": ...]}; field names the offending request field. */
enum MHD_Result lmxd_send_error_field(struct MHD_Connection *c, unsigned status, const char *error,
                                      const char *detail, const char *field)
{
    json_t *j = json_object();
    json_object_set_new(j, "error", json_string(error));
    json_object_set_new(j, "detail", json_string(detail));
    if (field)
        json_object_set_new(j, "field", json_string(field));
    return lmxd_send_json(c, status, j);
}

enum MHD_Result lmxd_send_error(struct MHD_Connection *c, unsigned status, const char *error, const char *detail)
{
    return lmxd_send_error_field(c, status, error, detail, NULL);
}

enum MHD_Result lmxd_send_busy(struct MHD_Connection *c, unsigned retry_after_s, const char *detail)
{
    return lmxd_send_retry(c, 503, retry_after_s, "busy", detail);
}

enum MHD_Result lmxd_send_retry(struct MHD_Connection *c, unsigned status, unsigned retry_after_s, const char *error,
                                const char *detail)
{
    json_t *j = json_object();
    json_object_set_new(j, "error", json_string(error));
    json_object_set_new(j, "detail", json_string(detail));
    char *txt = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!txt)
        return MHD_NO;
    size_t n = strlen(txt);
    txt[n] = '\n';
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(n + 1, txt, free);
    if (!r) {
        free(txt);
        return MHD_NO;
    }
    char ra[16];
    snprintf(ra, sizeof ra, "%u", retry_after_s);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Retry-After", ra);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

unsigned lmxd_status_of(int code)
{
    switch (code) {
    case LMX_EINVAL: return 400;
    case LMX_ENOTFOUND: return 404;
    case LMX_ERANGE: return 416;
    case LMX_EAUTH: return 401;
    default: return 500;
    }
}

/* A static page: the data comes from /v1/stats (with the token from /#token=TOKEN when auth is on). */
enum MHD_Result lmxd_handle_dashboard(struct MHD_Connection *c)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(lmxd_dashboard_html_len, (void *)lmxd_dashboard_html, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}
