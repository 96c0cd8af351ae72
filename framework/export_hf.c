/* Hugging Face folder export (import.h): config.json, safetensors (single or sharded) and the
 * tokenizer in llama2.c form and as tokenizer.json + tokenizer_config.json.
 *
 * What is written is planned first (a list of items: safetensors name, shape, where the values
 * come from), so that removed layers can be left out and the others renumbered, and so that the
 * biases Hugging Face expects as a set (attention_bias: q, k, v, o; mlp_bias: gate, up, down;
 * Qwen2: q, k, v) are all written, as zeros where the model has none. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "import.h"
#include "safetensors.h"
#include "tokenizer_hf.h"
#include "tokenizer_hf_internal.h"

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Dumps json (2-space indent) to dir/name through a temporary file. */
static cce_status write_json(const char *dir, const char *name, json_t *j) {
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    if (!text) return cce_fail(CCE_ERR_NOMEM, "%s/%s: JSON text", dir, name);
    cce_status s = hf_write_text(dir, name, text);
    free(text);
    return s;
}

static const char *torch_dtype(int d) {
    return d == CCE_ST_F16 ? "float16" : d == CCE_ST_BF16 ? "bfloat16" : "float32";
}

/* ---- The plan --------------------------------------------------------------------------------
 */

enum { SRC_GLOBAL, SRC_WEIGHT, SRC_BIAS };

typedef struct item {
    char hname[96]; /* safetensors name ("model.layers.3.mlp.up_proj.weight": exported index) */
    int src;        /* SRC_* */
    int layer;      /* the model's layer (SRC_WEIGHT, SRC_BIAS) */
    int which;      /* cce_global_tensor, cce_layer_tensor or cce_layer_bias */
    int ndim;
    int64_t shape[2];
} item;

typedef struct plan {
    item *items; /* [n] in file order */
    size_t n;
    int n_kept;         /* layers written (not removed) */
    int non_uniform;    /* some kept layer has widths or a kv grouping of its own */
    int removed;        /* some layer is removed */
    int qwen2;          /* biases on q/k/v only: written as Qwen2ForCausalLM */
    int attention_bias; /* Llama: q, k, v, o biases written */
    int mlp_bias;       /* Llama: gate, up, down biases written */
    float *zeros;       /* [max bias length] the values of biases the model lacks */
} plan;

static void plan_free(plan *p) {
    free(p->items);
    free(p->zeros);
}

/* 1 if layer l has the config's widths and the standard grouping (head h reads kv head
 * h / (n_heads / n_kv_heads)). */
static int standard_layer(const cce_config *c, const cce_layer_shape *ls) {
    if (ls->hidden_dim != c->hidden_dim || ls->n_heads != c->n_heads ||
        ls->n_kv_heads != c->n_kv_heads)
        return 0;
    int group = c->n_heads / c->n_kv_heads;
    for (int h = 0; h < c->n_heads; h++)
        if (ls->kv_of_head[h] != h / group) return 0;
    return 1;
}

/* The shape of block tensor w under layer shape ls. */
static void weight_shape(const cce_config *c, const cce_layer_shape *ls, cce_layer_tensor w,
                         int *ndim, int64_t shape[2]) {
    int64_t q = (int64_t)ls->n_heads * c->head_dim, kv = (int64_t)ls->n_kv_heads * c->head_dim;
    *ndim = 2;
    shape[1] = c->dim;
    switch (w) {
    case CCE_LT_ATTN_NORM:
    case CCE_LT_FFN_NORM:
        *ndim = 1;
        shape[0] = c->dim;
        break;
    case CCE_LT_Q:
        shape[0] = q;
        break;
    case CCE_LT_K:
    case CCE_LT_V:
        shape[0] = kv;
        break;
    case CCE_LT_O:
        shape[0] = c->dim;
        shape[1] = q;
        break;
    case CCE_LT_GATE:
    case CCE_LT_UP:
        shape[0] = ls->hidden_dim;
        break;
    default: /* down */
        shape[0] = c->dim;
        shape[1] = ls->hidden_dim;
        break;
    }
}

static void add(plan *p, int src, int layer, int which, const char *hname, int ndim, int64_t rows,
                int64_t cols) {
    item *it = &p->items[p->n++];
    snprintf(it->hname, sizeof it->hname, "%s", hname);
    it->src = src;
    it->layer = layer;
    it->which = which;
    it->ndim = ndim;
    it->shape[0] = rows;
    it->shape[1] = ndim > 1 ? cols : 1;
}

/* Which biases the model has decides the architecture written and the biases that are filled
 * with zeros. */
static void plan_biases(const cce_model *m, plan *p) {
    const cce_config *c = cce_model_config(m);
    int have[CCE_LB_COUNT] = {0};
    for (int l = 0; l < c->n_layers; l++)
        for (int b = 0; b < CCE_LB_COUNT; b++)
            have[b] |= cce_model_has_layer_bias(m, l, (cce_layer_bias)b);
    int qkv = have[CCE_LB_Q] || have[CCE_LB_K] || have[CCE_LB_V];
    int mlp = have[CCE_LB_GATE] || have[CCE_LB_UP] || have[CCE_LB_DOWN];
    p->qwen2 = qkv && !have[CCE_LB_O] && !mlp;
    p->attention_bias = !p->qwen2 && (qkv || have[CCE_LB_O]);
    p->mlp_bias = mlp;
}

/* 1 if bias b is written for every kept layer. */
static int bias_written(const plan *p, cce_layer_bias b) {
    if (b <= CCE_LB_V) return p->qwen2 || p->attention_bias;
    if (b == CCE_LB_O) return p->attention_bias;
    return p->mlp_bias;
}

static cce_status make_plan(const cce_model *m, const char *dir, plan *p) {
    const cce_config *c = cce_model_config(m);
    memset(p, 0, sizeof *p);
    size_t cap = 3 + (size_t)c->n_layers * (CCE_LT_COUNT + CCE_LB_COUNT);
    int64_t longest = c->dim;
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        if (ls->removed) {
            p->removed = 1;
            continue;
        }
        p->n_kept++;
        p->non_uniform |= !standard_layer(c, ls);
        for (int b = 0; b < CCE_LB_COUNT; b++)
            if (cce_layer_bias_rows(c, ls, (cce_layer_bias)b) > longest)
                longest = cce_layer_bias_rows(c, ls, (cce_layer_bias)b);
    }
    if (p->n_kept == 0)
        return cce_fail(CCE_ERR_ARG, "%s: every layer of the model is removed; nothing to export",
                        dir);
    plan_biases(m, p);
    p->items = malloc(cap * sizeof *p->items);            /* [cap] */
    p->zeros = calloc((size_t)longest, sizeof *p->zeros); /* [longest] */
    if (!p->items || !p->zeros) return cce_fail(CCE_ERR_NOMEM, "%s: export plan", dir);
    char hname[96], local[80];
    add(p, SRC_GLOBAL, -1, CCE_GT_EMBED, "model.embed_tokens.weight", 2, c->vocab_size, c->dim);
    int k = 0; /* exported index */
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        if (ls->removed) continue;
        for (int w = 0; w < CCE_LT_COUNT; w++) {
            int nd;
            int64_t shape[2];
            weight_shape(c, ls, (cce_layer_tensor)w, &nd, shape);
            cce_layer_tensor_name(k, (cce_layer_tensor)w, local, sizeof local);
            snprintf(hname, sizeof hname, "model.%s", local);
            add(p, SRC_WEIGHT, l, w, hname, nd, shape[0], shape[1]);
        }
        for (int b = 0; b < CCE_LB_COUNT; b++) {
            if (!bias_written(p, (cce_layer_bias)b)) continue;
            snprintf(hname, sizeof hname, "model.layers.%d.%s.%s.bias", k,
                     b <= CCE_LB_O ? "self_attn" : "mlp", cce_layer_bias_proj((cce_layer_bias)b));
            add(p, SRC_BIAS, l, b, hname, 1, cce_layer_bias_rows(c, ls, (cce_layer_bias)b), 1);
        }
        k++;
    }
    add(p, SRC_GLOBAL, -1, CCE_GT_NORM, "model.norm.weight", 1, c->dim, 1);
    if (!c->tied_embeddings)
        add(p, SRC_GLOBAL, -1, CCE_GT_LM_HEAD, "lm_head.weight", 2, c->vocab_size, c->dim);
    return CCE_OK;
}

/* The values of item it: the model's tensor (loaded if needed) or zeros for a missing bias.
 * Borrowed from the model or the plan. */
static cce_status item_values(cce_model *m, const plan *p, const item *it, const char *dir,
                              const float **out) {
    cce_tensor *t = NULL;
    cce_status s;
    if (it->src == SRC_GLOBAL)
        s = cce_model_global_tensor(m, (cce_global_tensor)it->which, &t);
    else if (it->src == SRC_WEIGHT)
        s = cce_model_layer_tensor(m, it->layer, (cce_layer_tensor)it->which, &t);
    else
        s = cce_model_layer_bias(m, it->layer, (cce_layer_bias)it->which, &t);
    if (s) return s;
    if (!t) { /* a bias the model lacks */
        *out = p->zeros;
        return CCE_OK;
    }
    if (cce_tensor_numel(t) != it->shape[0] * it->shape[1])
        return cce_fail(CCE_ERR_INTERNAL, "%s: tensor '%s' has %lld values, its layer implies %lld",
                        dir, it->hname, (long long)cce_tensor_numel(t),
                        (long long)(it->shape[0] * it->shape[1]));
    *out = t->data;
    return CCE_OK;
}

/* ---- config.json ------------------------------------------------------------------------------
 */

/* One entry of cce_layer_shapes / cce_removed_layer_shapes (NULL when out of memory). */
static json_t *shape_json(const cce_layer_shape *ls) {
    json_t *kv = json_array();
    for (int h = 0; kv && h < ls->n_heads; h++)
        if (json_array_append_new(kv, json_integer(ls->kv_of_head[h]))) {
            json_decref(kv);
            return NULL;
        }
    return json_pack("{s:i, s:i, s:i, s:o}", "intermediate_size", (int)ls->hidden_dim,
                     "num_attention_heads", (int)ls->n_heads, "num_key_value_heads",
                     (int)ls->n_kv_heads, "kv_of_head", kv);
}

/* "cce_layer_shapes" (one object per written layer) and "cce_removed_layers" (original indices)
 * with the sentence "cce_note", added to j when the layers are not what the standard fields say;
 * "cce_removed_layer_shapes" (one object per removed layer) when a removed layer had been
 * narrowed before, so that import restores its widths too. Nonzero when out of memory. */
static int add_layout_note(json_t *j, const cce_model *m, const plan *p) {
    const cce_config *c = cce_model_config(m);
    if (!p->non_uniform && !p->removed) return 0;
    int err = 0, odd_removed = 0;
    json_t *shapes = json_array(), *gone = json_array(), *gone_shapes = json_array();
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        if (ls->removed) {
            odd_removed |= !standard_layer(c, ls);
            err |= json_array_append_new(gone, json_integer(l));
            err |= json_array_append_new(gone_shapes, shape_json(ls));
        } else {
            err |= json_array_append_new(shapes, shape_json(ls));
        }
    }
    err |= p->non_uniform ? json_object_set(j, "cce_layer_shapes", shapes) : 0;
    err |= p->removed ? json_object_set(j, "cce_removed_layers", gone) : 0;
    err |= odd_removed ? json_object_set(j, "cce_removed_layer_shapes", gone_shapes) : 0;
    json_decref(shapes);
    json_decref(gone);
    json_decref(gone_shapes);
    const char *note =
        p->non_uniform
            ? "Structurally compressed model: layer i has the widths cce_layer_shapes[i] (the "
              "uniform fields above are those of the original model)"
              "%s; stock transformers cannot load per-layer widths, and `cce import hf` "
              "restores them."
            : "Layers were removed (cce_removed_layers: their original indices; the others are "
              "renumbered)%s, so transformers loads this folder as a smaller model, and `cce "
              "import hf` restores the original numbering.";
    char text[512];
    snprintf(text, sizeof text, note,
             p->non_uniform && p->removed
                 ? " and the layers cce_removed_layers (original indices) were removed, the "
                   "others renumbered"
                 : "");
    err |= json_object_set_new(j, "cce_note", json_string(text));
    return err;
}

static json_t *config_json(const cce_model *m, const plan *p, int dtype) {
    const cce_config *c = cce_model_config(m);
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    json_t *j = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:n, s:s}",
        "architectures", p->qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM", "model_type",
        p->qwen2 ? "qwen2" : "llama", "hidden_size", (int)c->dim, "intermediate_size",
        (int)c->hidden_dim, "num_hidden_layers", p->n_kept, "num_attention_heads", (int)c->n_heads,
        "num_key_value_heads", (int)c->n_kv_heads, "head_dim", (int)c->head_dim, "vocab_size",
        (int)c->vocab_size, "max_position_embeddings", (int)c->seq_len, "rope_theta",
        (double)c->rope_theta, "rms_norm_eps", (double)c->norm_eps, "tie_word_embeddings",
        (int)c->tied_embeddings, "hidden_act", "silu", "rope_scaling", "torch_dtype",
        torch_dtype(dtype));
    if (!j) return NULL;
    int err = 0;
    if (p->qwen2) { /* Qwen2's q/k/v biases are implied by the architecture */
        err |= json_object_set_new(j, "use_sliding_window", json_false());
        err |= json_object_set_new(j, "sliding_window", json_null());
        err |= json_object_set_new(j, "max_window_layers", json_integer(p->n_kept));
    } else {
        err |= json_object_set_new(j, "attention_bias", json_boolean(p->attention_bias));
        err |= json_object_set_new(j, "mlp_bias", json_boolean(p->mlp_bias));
    }
    if (tok) {
        err |= json_object_set_new(j, "bos_token_id", json_integer(cce_tokenizer_bos(tok)));
        err |= json_object_set_new(j, "eos_token_id", json_integer(cce_tokenizer_eos(tok)));
    }
    err |= add_layout_note(j, m, p);
    if (err) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---- Writing ---------------------------------------------------------------------------------
 */

/* Removes dir/name if it exists (a file of the other layout). */
static cce_status remove_stale(const char *dir, const char *name) {
    char *p = join(dir, name);
    if (!p) return cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
    cce_status s = CCE_OK;
    if (remove(p) != 0 && errno != ENOENT)
        s = cce_fail(CCE_ERR_IO, "%s: cannot remove the stale file: %s", p, strerror(errno));
    free(p);
    return s;
}

/* Writes items [first, last) of the plan into dir/fname. */
static cce_status write_shard(cce_model *m, const plan *p, const char *dir, const char *fname,
                              size_t first, size_t last, int dtype) {
    char *path = join(dir, fname);
    if (!path) return cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
    cce_st_writer *w;
    cce_status s = cce_st_writer_new(path, &w);
    free(path);
    if (s) return s;
    if ((s = cce_st_writer_metadata(w, "format", "pt"))) goto fail;
    for (size_t i = first; i < last; i++) {
        const item *it = &p->items[i];
        const float *v = NULL;
        if ((s = item_values(m, p, it, dir, &v)) ||
            (s = cce_st_writer_add(w, it->hname, (cce_st_dtype)dtype, it->ndim, it->shape, v)))
            goto fail;
    }
    return cce_st_writer_commit(w);
fail:
    cce_st_writer_abort(w);
    return s;
}

cce_status cce_export_hf(cce_model *m, const char *dir, const cce_export_hf_options *opts) {
    cce_export_hf_options o = opts ? *opts : (cce_export_hf_options){0};
    if (o.dtype != CCE_ST_F32 && o.dtype != CCE_ST_F16 && o.dtype != CCE_ST_BF16)
        return cce_fail(CCE_ERR_ARG, "%s: dtype must be F32, F16 or BF16", dir);
    plan p;
    cce_status s = make_plan(m, dir, &p);
    if (s) {
        plan_free(&p);
        return s;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        plan_free(&p);
        return cce_fail(CCE_ERR_IO, "%s: cannot create the folder: %s", dir, strerror(errno));
    }
    size_t width = cce_st_dtype_size((cce_st_dtype)o.dtype);
    /* Shard boundaries: consecutive items while the shard's data stays within shard_bytes. */
    size_t *start = malloc((p.n + 1) * sizeof *start); /* [n_shards + 1] */
    json_t *cfg = start ? config_json(m, &p, o.dtype) : NULL;
    if (!cfg) {
        free(start);
        plan_free(&p);
        return cce_fail(CCE_ERR_NOMEM, "%s: config.json", dir);
    }
    size_t n_shards = 0;
    uint64_t in_shard = 0, total = 0;
    for (size_t i = 0; i < p.n; i++) {
        uint64_t bytes = width * (uint64_t)p.items[i].shape[0] * (uint64_t)p.items[i].shape[1];
        if (i == 0 || (o.shard_bytes && in_shard + bytes > o.shard_bytes)) {
            start[n_shards++] = i;
            in_shard = 0;
        }
        in_shard += bytes;
        total += bytes;
    }
    start[n_shards] = p.n;
    if ((s = write_json(dir, "config.json", cfg))) goto done;
    if (!o.shard_bytes || n_shards == 1) {
        if ((s = write_shard(m, &p, dir, "model.safetensors", 0, p.n, o.dtype))) goto done;
        s = remove_stale(dir, "model.safetensors.index.json");
    } else {
        json_t *map = json_object();
        json_t *index = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total,
                                  "weight_map", map);
        if (!index) {
            s = cce_fail(CCE_ERR_NOMEM, "%s: index", dir);
            goto done;
        }
        for (size_t k = 0; !s && k < n_shards; k++) {
            char fname[64];
            snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
            s = write_shard(m, &p, dir, fname, start[k], start[k + 1], o.dtype);
            for (size_t i = start[k]; !s && i < start[k + 1]; i++)
                if (json_object_set_new(map, p.items[i].hname, json_string(fname)))
                    s = cce_fail(CCE_ERR_NOMEM, "%s: index", dir);
        }
        if (!s) s = write_json(dir, "model.safetensors.index.json", index);
        json_decref(index);
        if (!s) s = remove_stale(dir, "model.safetensors");
    }
    if (!s && cce_model_tokenizer(m)) {
        char *tp = join(dir, "tokenizer.bin");
        /* tokenizer.bin only for tokenizers llama2.c's format can hold (not ByteLevel) */
        s = !tp ? cce_fail(CCE_ERR_NOMEM, "%s: path", dir)
            : cce_tokenizer_check_llama2c(cce_model_tokenizer(m)) == CCE_OK
                ? cce_export_llama2c_tokenizer(cce_model_tokenizer(m), tp)
                : remove_stale(dir, "tokenizer.bin");
        free(tp);
        if (!s) s = cce_tokenizer_save_hf(cce_model_tokenizer(m), dir);
    }
done:
    json_decref(cfg);
    free(start);
    plan_free(&p);
    return s;
}
