/* Reporting an evaluation: the protocol line and the JSON form of a result. */
#include <math.h>
#include <stdio.h>

#include "eval.h"

int cce_eval_protocol_line(const cce_eval_result *r, const char *data, const char *sha256,
                           char *buf, size_t size) {
    return snprintf(buf, size,
                    "protocol: window=BOS+%d non-overlapping, ctx=%d, scored=%lld, windows=%lld, "
                    "data=%s sha256=%s",
                    r->ctx - 1, r->ctx, (long long)r->n_tokens, (long long)r->n_windows,
                    data ? data : "-", sha256 ? sha256 : "-");
}

/* A real, or null for NaN/Inf (JSON has no such numbers). New reference. */
static json_t *real_or_null(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

/* Sets key to value, taking the reference; returns 0 on failure (value NULL or no memory). */
static int put(json_t *obj, const char *key, json_t *value) {
    return value && json_object_set_new(obj, key, value) == 0;
}

static int put_protocol(json_t *o, const cce_eval_result *r, const char *data, const char *sha256) {
    char line[1024];
    cce_eval_protocol_line(r, data, sha256, line, sizeof line);
    json_t *p = json_object();
    int ok = p && put(p, "windowing", json_string("BOS + ctx-1 tokens, non-overlapping")) &&
             put(p, "ctx", json_integer(r->ctx)) && put(p, "stride", json_integer(r->ctx - 1)) &&
             put(p, "windows", json_integer(r->n_windows)) &&
             put(p, "scored_tokens", json_integer(r->n_tokens)) &&
             put(p, "max_tokens", json_integer(r->max_tokens)) &&
             put(p, "data", data ? json_string(data) : json_null()) &&
             put(p, "data_sha256", sha256 ? json_string(sha256) : json_null()) &&
             put(p, "line", json_string(line));
    if (!ok) {
        json_decref(p);
        return 0;
    }
    return put(o, "protocol", p);
}

static int put_ref(json_t *o, const cce_eval_result *r) {
    json_t *pct = json_object();
    int ok = pct != NULL;
    for (int i = 0; ok && i < CCE_EVAL_DP_PERCENTILES; i++) {
        char key[16];
        snprintf(key, sizeof key, "p%g", cce_eval_dp_percentiles[i]);
        ok = put(pct, key, real_or_null(r->dp_p[i]));
    }
    if (!ok) {
        json_decref(pct);
        return 0;
    }
    return put(o, "dp_percentiles", pct) && put(o, "kl_mean", real_or_null(r->kl_mean)) &&
           put(o, "kl_stderr", real_or_null(r->kl_stderr)) &&
           put(o, "kl_p99", real_or_null(r->kl_p99)) &&
           put(o, "top1_agree", real_or_null(r->top1_agree)) &&
           put(o, "dp_mean", real_or_null(r->dp_mean)) &&
           put(o, "dp_stderr", real_or_null(r->dp_stderr)) &&
           put(o, "dp_min", real_or_null(r->dp_min)) && put(o, "dp_max", real_or_null(r->dp_max));
}

json_t *cce_eval_result_json(const cce_eval_result *r, const char *data, const char *sha256) {
    json_t *o = json_object();
    int ok = o && put_protocol(o, r, data, sha256) && put(o, "ctx", json_integer(r->ctx)) &&
             put(o, "windows", json_integer(r->n_windows)) &&
             put(o, "tokens", json_integer(r->n_tokens)) &&
             put(o, "mean_nll", real_or_null(r->mean_nll)) &&
             put(o, "nll_stderr", real_or_null(r->nll_stderr)) &&
             put(o, "ppl", real_or_null(r->ppl)) &&
             put(o, "ppl_stderr", real_or_null(r->ppl_stderr)) &&
             put(o, "ppl_stderr_method", json_string("delta method: ppl * nll_stderr")) &&
             put(o, "top1", real_or_null(r->top1)) && put(o, "seconds", json_real(r->seconds)) &&
             put(o, "tokens_per_s", json_real(r->tokens_per_s)) &&
             put(o, "has_ref", json_boolean(r->has_ref)) && (!r->has_ref || put_ref(o, r));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}
