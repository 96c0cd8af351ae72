/* Hugging Face checkpoint import (import.h): config.json + safetensors (single or sharded), with
 * the biases of Qwen2 and of Llama/Mistral's attention_bias/mlp_bias, and the per-layer widths
 * and removed layers that cce_export_hf records in config.json for structurally compressed
 * models ("cce_layer_shapes", "cce_removed_layers", "cce_removed_layer_shapes"). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "import.h"
#include "safetensors.h"
#include "tokenizer_hf.h"

static const char *const ARCHS[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"};
enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2, ARCH_COUNT };

/* What config.json says beyond the cce_config: the architecture, which biases the checkpoint
 * holds, and how its layers map to the model's. */
typedef struct hf_layout {
    int arch;
    int attention_bias, mlp_bias; /* Llama/Mistral flags (Qwen2: q/k/v biases, optional) */
    int n_hf;                     /* layers in the checkpoint (num_hidden_layers) */
    int32_t *layer_of_hf;         /* [n_hf] the model layer of checkpoint layer k */
    int32_t *hf_of_layer;    /* [cfg n_layers] checkpoint layer of a model layer, -1: removed */
    cce_layer_shape *shapes; /* [n_hf] cce_layer_shapes (kv_of_head owned), NULL: uniform */
    int n_removed;           /* entries of cce_removed_layers */
    int32_t *removed;        /* [n_removed] the removed layers' indices */
    cce_layer_shape *removed_shapes; /* [n_removed] cce_removed_layer_shapes, NULL: config's */
} hf_layout;

static void layout_free(hf_layout *lay) {
    for (int k = 0; lay->shapes && k < lay->n_hf; k++) free(lay->shapes[k].kv_of_head);
    for (int k = 0; lay->removed_shapes && k < lay->n_removed; k++)
        free(lay->removed_shapes[k].kv_of_head);
    free(lay->shapes);
    free(lay->removed_shapes);
    free(lay->removed);
    free(lay->layer_of_hf);
    free(lay->hf_of_layer);
    memset(lay, 0, sizeof *lay);
}

/* An integer field in [1, INT32_MAX]; `dflt` > 0 is used when the field is absent or null. */
static cce_status get_int(const char *path, json_t *root, const char *key, int32_t dflt,
                          int32_t *out) {
    json_t *v = json_object_get(root, key);
    if ((!v || json_is_null(v)) && dflt > 0) {
        *out = dflt;
        return CCE_OK;
    }
    if (!v) return cce_fail(CCE_ERR_FORMAT, "%s: missing field '%s'", path, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX)
        return cce_fail(CCE_ERR_FORMAT, "%s: field '%s' must be an integer in [1, %d]", path, key,
                        INT32_MAX);
    *out = (int32_t)json_integer_value(v);
    return CCE_OK;
}

static cce_status get_real(const char *path, json_t *root, const char *key, double dflt,
                           float *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = (float)dflt;
        return CCE_OK;
    }
    if (!json_is_number(v) || !(json_number_value(v) > 0))
        return cce_fail(CCE_ERR_FORMAT, "%s: field '%s' must be a positive number", path, key);
    *out = (float)json_number_value(v);
    return CCE_OK;
}

/* 1 if the field is absent, null or false. */
static int off(json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    return !v || json_is_null(v) || json_is_false(v);
}

/* A boolean flag: absent/null = false. */
static cce_status get_flag(const char *path, json_t *root, const char *key, int *out) {
    json_t *v = json_object_get(root, key);
    if (v && !json_is_null(v) && !json_is_boolean(v))
        return cce_fail(CCE_ERR_FORMAT, "%s: field '%s' must be true or false", path, key);
    *out = json_is_true(v);
    return CCE_OK;
}

static cce_status check_config_rules(const char *path, json_t *root, hf_layout *lay,
                                     cce_config *c) {
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) &&
        (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
        return cce_fail(CCE_ERR_FORMAT, "%s: hidden_act must be \"silu\" (SwiGLU)", path);
    if (!off(root, "rope_scaling"))
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: rope_scaling is set; only unscaled RoPE is supported (rope_scaling "
                        "must be null)",
                        path);
    cce_status s;
    if (lay->arch != ARCH_QWEN2 &&
        ((s = get_flag(path, root, "attention_bias", &lay->attention_bias)) ||
         (s = get_flag(path, root, "mlp_bias", &lay->mlp_bias))))
        return s;
    if (lay->arch == ARCH_QWEN2 && !off(root, "mlp_bias"))
        return cce_fail(CCE_ERR_FORMAT, "%s: mlp_bias is true; Qwen2 has no MLP biases", path);
    if (lay->arch == ARCH_MISTRAL) {
        json_t *sw = json_object_get(root, "sliding_window");
        if (sw && !json_is_null(sw) &&
            (!json_is_integer(sw) || json_integer_value(sw) < c->seq_len))
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: sliding_window must be null or at least max_position_embeddings "
                            "(%d); sliding-window attention is not supported",
                            path, (int)c->seq_len);
    }
    if (lay->arch == ARCH_QWEN2 && !off(root, "use_sliding_window"))
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: use_sliding_window is true; sliding-window attention is not "
                        "supported",
                        path);
    return CCE_OK;
}

/* ---- The layout note (cce_export_hf writes it for structurally compressed models) ------------ */

/* An integer element of the note in [lo, hi]; `what` names it ("cce_layer_shapes[2].kv_of_head
 * [1]"). */
static cce_status note_int(const char *path, json_t *v, const char *what, json_int_t lo,
                           json_int_t hi, int32_t *out) {
    if (!json_is_integer(v))
        return cce_fail(CCE_ERR_FORMAT, "%s: %s must be an integer", path, what);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s = %lld is outside [%lld, %lld]", path, what,
                        (long long)x, (long long)lo, (long long)hi);
    *out = (int32_t)x;
    return CCE_OK;
}

/* "cce_removed_layers": strictly increasing original indices. Sets cfg n_layers to the original
 * count and fills the layer maps. */
static cce_status read_removed(const char *path, json_t *root, hf_layout *lay, cce_config *c) {
    json_t *gone = json_object_get(root, "cce_removed_layers");
    size_t n_gone = 0;
    if (gone && !json_is_null(gone)) {
        if (!json_is_array(gone))
            return cce_fail(CCE_ERR_FORMAT, "%s: cce_removed_layers must be an array", path);
        n_gone = json_array_size(gone);
        if (n_gone > (size_t)(INT32_MAX - lay->n_hf))
            return cce_fail(CCE_ERR_FORMAT, "%s: cce_removed_layers has %zu entries", path, n_gone);
    }
    c->n_layers = lay->n_hf + (int32_t)n_gone;
    if (cce_config_validate(c, path)) return CCE_ERR_FORMAT; /* the detail names n_layers */
    lay->n_removed = (int)n_gone;
    lay->removed = malloc((n_gone ? n_gone : 1) * sizeof *lay->removed);       /* [n_removed] */
    lay->layer_of_hf = malloc((size_t)lay->n_hf * sizeof *lay->layer_of_hf);   /* [n_hf] */
    lay->hf_of_layer = malloc((size_t)c->n_layers * sizeof *lay->hf_of_layer); /* [n_layers] */
    if (!lay->removed || !lay->layer_of_hf || !lay->hf_of_layer)
        return cce_fail(CCE_ERR_NOMEM, "%s: layer map", path);
    for (int l = 0; l < c->n_layers; l++) lay->hf_of_layer[l] = 0;
    int32_t prev = -1;
    for (size_t i = 0; i < n_gone; i++) {
        char what[64];
        int32_t l = 0;
        snprintf(what, sizeof what, "cce_removed_layers[%zu]", i);
        cce_status s = note_int(path, json_array_get(gone, i), what, 0, c->n_layers - 1, &l);
        if (s) return s;
        if (l <= prev)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: cce_removed_layers must be strictly increasing (%s = %d after "
                            "%d)",
                            path, what, (int)l, (int)prev);
        lay->hf_of_layer[l] = -1;
        lay->removed[i] = l;
        prev = l;
    }
    for (int l = 0, k = 0; l < c->n_layers; l++)
        if (lay->hf_of_layer[l] == 0) {
            lay->layer_of_hf[k] = l;
            lay->hf_of_layer[l] = k++;
        }
    return CCE_OK;
}

/* A list of layer shapes under `key` (cce_layer_shapes: one per checkpoint layer;
 * cce_removed_layer_shapes: one per removed layer), n objects with widths within the config's.
 * *out stays NULL when the key is absent or null. */
static cce_status read_shapes(const char *path, json_t *root, const char *key, int n,
                              const char *count_name, const cce_config *c, cce_layer_shape **out) {
    json_t *arr = json_object_get(root, key);
    if (!arr || json_is_null(arr)) return CCE_OK;
    if (!json_is_array(arr) || json_array_size(arr) != (size_t)n)
        return cce_fail(CCE_ERR_FORMAT, "%s: %s must be an array of %s = %d objects", path, key,
                        count_name, n);
    if (!(*out = calloc(n ? (size_t)n : 1, sizeof **out)))
        return cce_fail(CCE_ERR_NOMEM, "%s: layer shapes", path);
    for (int k = 0; k < n; k++) {
        json_t *o = json_array_get(arr, (size_t)k);
        cce_layer_shape *ls = &(*out)[k];
        char what[128];
        cce_status s;
        if (!json_is_object(o))
            return cce_fail(CCE_ERR_FORMAT, "%s: %s[%d] must be an object", path, key, k);
        static const char *const keys[3] = {"intermediate_size", "num_attention_heads",
                                            "num_key_value_heads"};
        const int32_t hi[3] = {c->hidden_dim, c->n_heads, c->n_kv_heads};
        int32_t *dst[3] = {&ls->hidden_dim, &ls->n_heads, &ls->n_kv_heads};
        for (int f = 0; f < 3; f++) {
            snprintf(what, sizeof what, "%s[%d].%s", key, k, keys[f]);
            json_t *v = json_object_get(o, keys[f]);
            if (!v) return cce_fail(CCE_ERR_FORMAT, "%s: %s is missing", path, what);
            if ((s = note_int(path, v, what, 1, hi[f], dst[f]))) return s;
        }
        json_t *kv = json_object_get(o, "kv_of_head");
        if (!json_is_array(kv) || json_array_size(kv) != (size_t)ls->n_heads)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: %s[%d].kv_of_head must be an array of num_attention_heads = %d "
                            "integers",
                            path, key, k, (int)ls->n_heads);
        if (!(ls->kv_of_head = malloc((size_t)ls->n_heads * sizeof *ls->kv_of_head)))
            return cce_fail(CCE_ERR_NOMEM, "%s: layer shapes", path); /* [n_heads] */
        for (int h = 0; h < ls->n_heads; h++) {
            snprintf(what, sizeof what, "%s[%d].kv_of_head[%d]", key, k, h);
            if ((s = note_int(path, json_array_get(kv, (size_t)h), what, 0, ls->n_kv_heads - 1,
                              &ls->kv_of_head[h])))
                return s;
        }
    }
    return CCE_OK;
}

/* Parses config.json into *cfg (n_layers: the model's, removed layers included) and *lay (the
 * caller frees it with layout_free, also on failure). */
static cce_status read_config(const char *path, cce_config *cfg, hf_layout *lay) {
    memset(lay, 0, sizeof *lay);
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        FILE *f = fopen(path, "rb");
        if (!f) return cce_fail(CCE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        fclose(f);
        return cce_fail(CCE_ERR_FORMAT, "%s: malformed JSON at line %d column %d: %s", path,
                        err.line, err.column, err.text);
    }
    cce_status s = CCE_OK;
    lay->arch = -1;
    json_t *archs = json_object_get(root, "architectures");
    const char *name = json_string_value(json_array_get(archs, 0));
    for (int a = 0; name && a < ARCH_COUNT; a++)
        if (!strcmp(name, ARCHS[a])) lay->arch = a;
    if (!json_is_object(root)) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    if (lay->arch < 0) {
        s = cce_fail(CCE_ERR_FORMAT,
                     "%s: architectures[0] is %s%s%s; supported: LlamaForCausalLM, "
                     "MistralForCausalLM, Qwen2ForCausalLM",
                     path, name ? "\"" : "", name ? name : "missing", name ? "\"" : "");
        goto done;
    }
    memset(cfg, 0, sizeof *cfg);
    if ((s = get_int(path, root, "hidden_size", 0, &cfg->dim)) ||
        (s = get_int(path, root, "intermediate_size", 0, &cfg->hidden_dim)) ||
        (s = get_int(path, root, "num_hidden_layers", 0, &cfg->n_layers)) ||
        (s = get_int(path, root, "num_attention_heads", 0, &cfg->n_heads)) ||
        (s = get_int(path, root, "num_key_value_heads", cfg->n_heads, &cfg->n_kv_heads)) ||
        (s = get_int(path, root, "vocab_size", 0, &cfg->vocab_size)) ||
        (s = get_int(path, root, "max_position_embeddings", 0, &cfg->seq_len)))
        goto done;
    if (!json_object_get(root, "head_dim") && cfg->dim % cfg->n_heads != 0) {
        s = cce_fail(CCE_ERR_FORMAT,
                     "%s: hidden_size %d is not a multiple of num_attention_heads "
                     "%d and head_dim is not given",
                     path, (int)cfg->dim, (int)cfg->n_heads);
        goto done;
    }
    if ((s = get_int(path, root, "head_dim", cfg->dim / cfg->n_heads, &cfg->head_dim)) ||
        (s = get_real(path, root, "rope_theta", 10000.0, &cfg->rope_theta)) ||
        (s = get_real(path, root, "rms_norm_eps", 1e-6, &cfg->norm_eps)))
        goto done;
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    if (tie && !json_is_boolean(tie) && !json_is_null(tie)) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: tie_word_embeddings must be true or false", path);
        goto done;
    }
    cfg->tied_embeddings = json_is_true(tie);
    if ((s = check_config_rules(path, root, lay, cfg))) goto done;
    if (cce_config_validate(cfg, path)) { /* the detail names the field */
        s = CCE_ERR_FORMAT;
        goto done;
    }
    lay->n_hf = cfg->n_layers;
    if ((s = read_removed(path, root, lay, cfg))) goto done;
    if ((s = read_shapes(path, root, "cce_layer_shapes", lay->n_hf, "num_hidden_layers", cfg,
                         &lay->shapes)))
        goto done;
    s = read_shapes(path, root, "cce_removed_layer_shapes", lay->n_removed,
                    "the length of cce_removed_layers", cfg, &lay->removed_shapes);
done:
    json_decref(root);
    return s;
}

cce_status cce_hf_read_config(const char *path, cce_config *cfg, int *arch_out) {
    hf_layout lay;
    cce_status s = read_config(path, cfg, &lay);
    if (!s && arch_out) *arch_out = lay.arch;
    layout_free(&lay);
    return s;
}

/* ---- Tensors -------------------------------------------------------------------------------- */

typedef struct shards {
    cce_safetensors **files; /* [n] */
    size_t n;
    json_t *weight_map; /* name -> shard file, NULL when unsharded */
    char **names;       /* [n] shard file names (weight_map values) */
} shards;

static void shards_free(shards *sh) {
    for (size_t i = 0; i < sh->n; i++) {
        cce_safetensors_close(sh->files[i]);
        free(sh->names[i]);
    }
    free(sh->files);
    free(sh->names);
    json_decref(sh->weight_map);
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static cce_status open_shard(shards *sh, const char *dir, const char *name) {
    for (size_t i = 0; i < sh->n; i++)
        if (!strcmp(sh->names[i], name)) return CCE_OK;
    if (strchr(name, '/') || !strcmp(name, "..") || !*name)
        return cce_fail(CCE_ERR_FORMAT, "%s: shard name '%s' is not a plain file name", dir, name);
    char *path = join(dir, name);
    cce_safetensors **f = realloc(sh->files, (sh->n + 1) * sizeof *f);
    if (f) sh->files = f;
    char **nm = realloc(sh->names, (sh->n + 1) * sizeof *nm);
    if (nm) sh->names = nm;
    if (!path || !f || !nm || !(sh->names[sh->n] = strdup(name))) {
        free(path);
        return cce_fail(CCE_ERR_NOMEM, "%s: shard list", dir);
    }
    cce_status s = cce_safetensors_open(path, &sh->files[sh->n]);
    free(path);
    if (s) {
        free(sh->names[sh->n]);
        if (s == CCE_ERR_IO) cce_error_prefix("missing or unreadable shard: ");
        return s;
    }
    sh->n++;
    return CCE_OK;
}

static cce_status open_shards(const char *dir, shards *sh) {
    memset(sh, 0, sizeof *sh);
    char *index = join(dir, "model.safetensors.index.json");
    if (!index) return cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
    cce_status s = CCE_OK;
    if (!exists(index)) {
        free(index);
        char *single = join(dir, "model.safetensors");
        if (!single) return cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
        if (!exists(single))
            s = cce_fail(CCE_ERR_IO,
                         "%s: neither model.safetensors nor model.safetensors.index.json exists",
                         dir);
        free(single);
        return s ? s : open_shard(sh, dir, "model.safetensors");
    }
    json_error_t err;
    json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: malformed JSON at line %d column %d: %s", index, err.line,
                     err.column, err.text);
        goto done;
    }
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: weight_map is missing or not an object", index);
        goto done;
    }
    sh->weight_map = json_incref(map);
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        if (!json_is_string(v)) {
            s = cce_fail(CCE_ERR_FORMAT, "%s: weight_map['%s'] is not a file name", index, key);
            goto done;
        }
        if ((s = open_shard(sh, dir, json_string_value(v)))) goto done;
    }
done:
    json_decref(root);
    free(index);
    return s;
}

/* Finds tensor `name`: in the shard the index names (which must hold it), else in the only file. */
static cce_status find_tensor(const shards *sh, const char *dir, const char *name,
                              const cce_safetensors **file, const cce_st_tensor **t) {
    if (sh->weight_map) {
        const char *fname = json_string_value(json_object_get(sh->weight_map, name));
        if (!fname) return CCE_ERR_NOT_FOUND;
        for (size_t i = 0; i < sh->n; i++)
            if (!strcmp(sh->names[i], fname)) {
                *file = sh->files[i];
                if (!(*t = cce_safetensors_find(sh->files[i], name)))
                    return cce_fail(CCE_ERR_FORMAT,
                                    "%s: model.safetensors.index.json puts tensor '%s' in %s, "
                                    "which does not hold it",
                                    dir, name, fname);
                return CCE_OK;
            }
        return cce_fail(CCE_ERR_INTERNAL, "%s: shard %s not open", dir, fname);
    }
    *file = sh->files[0];
    return (*t = cce_safetensors_find(sh->files[0], name)) ? CCE_OK : CCE_ERR_NOT_FOUND;
}

/* The safetensors name of a model tensor name: "model." prefix, checkpoint layer numbering. */
static void hf_name(const hf_layout *lay, const char *name, char *buf, size_t cap) {
    int l, used = 0;
    if (!strcmp(name, "lm_head.weight"))
        snprintf(buf, cap, "%s", name);
    else if (sscanf(name, "layers.%d.%n", &l, &used) == 1 && used > 0)
        snprintf(buf, cap, "model.layers.%d.%s", (int)lay->hf_of_layer[l], name + used);
    else
        snprintf(buf, cap, "model.%s", name);
}

/* The model tensor name of safetensors name n (NULL into *local's buffer when n is not a model
 * tensor name under this layout): "model.layers.K.rest" -> "layers.L.rest" with K canonical
 * (no sign, no leading zeros) and in range. */
static int model_name(const hf_layout *lay, const char *n, char *buf, size_t cap) {
    if (!strcmp(n, "lm_head.weight")) {
        snprintf(buf, cap, "%s", n);
        return 1;
    }
    if (strncmp(n, "model.", 6) != 0) return 0;
    n += 6;
    if (strncmp(n, "layers.", 7) != 0) {
        snprintf(buf, cap, "%s", n);
        return 1;
    }
    const char *digits = n + 7, *p = digits;
    long k = 0;
    while (*p >= '0' && *p <= '9' && k < lay->n_hf) k = k * 10 + (*p++ - '0');
    if (p == digits || *p != '.' || (*digits == '0' && p - digits > 1) || k >= lay->n_hf) return 0;
    snprintf(buf, cap, "layers.%d.%s", (int)lay->layer_of_hf[k], p + 1);
    return 1;
}

static cce_status load_tensor(cce_model *m, const hf_layout *lay, const shards *sh, const char *dir,
                              const char *name, unsigned *dtypes_seen) {
    char hname[160];
    hf_name(lay, name, hname, sizeof hname);
    const cce_safetensors *f = NULL;
    const cce_st_tensor *st = NULL;
    cce_status s = find_tensor(sh, dir, hname, &f, &st);
    if (s == CCE_ERR_NOT_FOUND)
        return cce_fail(CCE_ERR_FORMAT, "%s: the checkpoint has no tensor '%s'", dir, hname);
    if (s) return s;
    cce_tensor *t;
    if ((s = cce_model_tensor(m, name, &t))) return s;
    int same = st->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = st->shape[d] == t->shape[d];
    if (!same)
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: tensor '%s' has shape [%lld, %lld] (%d dims), config.json%s implies "
                        "[%lld, %lld]",
                        cce_safetensors_path(f), hname, (long long)st->shape[0],
                        (long long)(st->ndim > 1 ? st->shape[1] : 1), st->ndim,
                        lay->shapes && strstr(hname, "layers.") ? " (cce_layer_shapes)" : "",
                        (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 1));
    if ((s = cce_safetensors_read_f32(f, st, 0, st->numel, t->data))) return s;
    *dtypes_seen |= 1u << st->dtype;
    if ((s = cce_tensor_check_finite(t, hname))) cce_error_prefix("%s: ", cce_safetensors_path(f));
    return s;
}

/* ---- Biases ----------------------------------------------------------------------------------
 */

/* 1 if the checkpoint may hold bias b (Qwen2: q, k, v; Llama/Mistral: q, k, v, o with
 * attention_bias, gate, up, down with mlp_bias); *required: it must. */
static int bias_allowed(const hf_layout *lay, cce_layer_bias b, int *required) {
    int attn = b <= CCE_LB_O;
    if (lay->arch == ARCH_QWEN2) {
        *required = 0;
        return b <= CCE_LB_V;
    }
    *required = attn ? lay->attention_bias : lay->mlp_bias;
    return *required;
}

/* The bias of safetensors name n ("...self_attn.q_proj.bias"), or -1. */
static int bias_of_name(const char *n) {
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        char suffix[64];
        snprintf(suffix, sizeof suffix, ".%s.%s.bias", b <= CCE_LB_O ? "self_attn" : "mlp",
                 cce_layer_bias_proj((cce_layer_bias)b));
        size_t ln = strlen(n), ls = strlen(suffix);
        if (ln > ls && !strcmp(n + ln - ls, suffix)) return b;
    }
    return -1;
}

/* 1 if every value is zero (+0 or -0). */
static int all_zero(const cce_tensor *t) {
    for (int64_t i = 0; i < cce_tensor_numel(t); i++)
        if (t->data[i] != 0.0f) return 0;
    return 1;
}

/* Reads the biases of model layer l that the checkpoint holds. A bias of zeros is the same as
 * none and is not kept (an exported model writes zeros for biases it lacks). */
static cce_status load_biases(cce_model *m, const hf_layout *lay, const shards *sh, const char *dir,
                              int l, unsigned *dtypes_seen) {
    const cce_config *c = cce_model_config(m);
    const cce_layer_shape *ls = cce_model_layer(m, l);
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        int required;
        if (!bias_allowed(lay, (cce_layer_bias)b, &required)) continue;
        char hname[160];
        snprintf(hname, sizeof hname, "model.layers.%d.%s.%s.bias", (int)lay->hf_of_layer[l],
                 b <= CCE_LB_O ? "self_attn" : "mlp", cce_layer_bias_proj((cce_layer_bias)b));
        const cce_safetensors *f = NULL;
        const cce_st_tensor *st = NULL;
        cce_status s = find_tensor(sh, dir, hname, &f, &st);
        if (s == CCE_ERR_NOT_FOUND && !required) continue;
        if (s == CCE_ERR_NOT_FOUND)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: the checkpoint has no tensor '%s' (config.json: %s)", dir, hname,
                            b <= CCE_LB_O ? "attention_bias" : "mlp_bias");
        if (s) return s;
        int64_t rows = b == CCE_LB_Q                        ? (int64_t)ls->n_heads * c->head_dim
                       : b == CCE_LB_K || b == CCE_LB_V     ? (int64_t)ls->n_kv_heads * c->head_dim
                       : b == CCE_LB_GATE || b == CCE_LB_UP ? ls->hidden_dim
                                                            : c->dim;
        if (st->ndim != 1 || st->shape[0] != rows)
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: tensor '%s' has %d dims and %lld values, config.json%s implies "
                            "[%lld]",
                            cce_safetensors_path(f), hname, st->ndim, (long long)st->numel,
                            lay->shapes ? " (cce_layer_shapes)" : "", (long long)rows);
        cce_tensor *t;
        if ((s = cce_tensor_new_1d(rows, &t))) return s;
        if ((s = cce_safetensors_read_f32(f, st, 0, rows, t->data)) ||
            (s = cce_tensor_check_finite(t, hname))) {
            if (s == CCE_ERR_NUMERIC) cce_error_prefix("%s: ", cce_safetensors_path(f));
            cce_tensor_free(t);
            return s;
        }
        *dtypes_seen |= 1u << st->dtype;
        if (all_zero(t)) {
            cce_tensor_free(t);
            continue;
        }
        if ((s = cce_model_set_layer_bias(m, l, (cce_layer_bias)b, t))) return s;
    }
    return CCE_OK;
}

/* ---- Layer shapes ----------------------------------------------------------------------------
 */

/* Gives model layer l the widths ls (new zero tensors of those shapes; `what` names the note's
 * entry in messages). */
static cce_status reshape(cce_model *m, int l, const cce_layer_shape *ls, const char *what) {
    const cce_config *c = cce_model_config(m);
    int64_t q = (int64_t)ls->n_heads * c->head_dim, kv = (int64_t)ls->n_kv_heads * c->head_dim;
    const int64_t rows[CCE_LT_COUNT] = {0,     q, kv, kv, c->dim, 0, ls->hidden_dim, ls->hidden_dim,
                                        c->dim};
    const int64_t cols[CCE_LT_COUNT] = {0, c->dim, c->dim, c->dim,        q,
                                        0, c->dim, c->dim, ls->hidden_dim};
    cce_tensor *t[CCE_LT_COUNT] = {0}; /* the norms are kept */
    cce_status s = CCE_OK;
    for (int w = 0; !s && w < CCE_LT_COUNT; w++)
        if (rows[w]) s = cce_tensor_new_2d(rows[w], cols[w], &t[w]);
    if (!s) s = cce_model_reshape_layer(m, l, ls, t);
    if (s) {
        for (int w = 0; w < CCE_LT_COUNT; w++) cce_tensor_free(t[w]);
        cce_error_prefix("config.json: %s: ", what);
        return s == CCE_ERR_NOMEM ? s : CCE_ERR_FORMAT;
    }
    return CCE_OK;
}

/* Gives the model the widths of cce_layer_shapes (tensors filled by load_tensor later) and of
 * cce_removed_layer_shapes, and removes the layers of cce_removed_layers. */
static cce_status apply_layout(cce_model *m, const hf_layout *lay) {
    char what[64];
    cce_status s;
    for (int k = 0; lay->shapes && k < lay->n_hf; k++) {
        snprintf(what, sizeof what, "cce_layer_shapes[%d]", k);
        if ((s = reshape(m, lay->layer_of_hf[k], &lay->shapes[k], what))) return s;
    }
    for (int k = 0; k < lay->n_removed; k++) {
        snprintf(what, sizeof what, "cce_removed_layer_shapes[%d]", k);
        if (lay->removed_shapes && (s = reshape(m, lay->removed[k], &lay->removed_shapes[k], what)))
            return s;
        if ((s = cce_model_remove_layer(m, lay->removed[k]))) return s;
    }
    return CCE_OK;
}

/* Every tensor of the checkpoint must be one the model took, or one that may be skipped: RoPE
 * inverse-frequency buffers, a tied lm_head equal to embed_tokens, biases of zeros. */
static cce_status check_unused(cce_model *m, const hf_layout *lay, const shards *sh) {
    int tied = cce_model_config(m)->tied_embeddings;
    for (size_t i = 0; i < sh->n; i++)
        for (size_t j = 0; j < cce_safetensors_count(sh->files[i]); j++) {
            const cce_st_tensor *t = cce_safetensors_at(sh->files[i], j);
            const char *n = t->name, *path = cce_safetensors_path(sh->files[i]);
            size_t len = strlen(n);
            char local[160];
            if (sh->weight_map) {
                const char *fn = json_string_value(json_object_get(sh->weight_map, n));
                if (!fn || strcmp(fn, sh->names[i]) != 0)
                    return cce_fail(CCE_ERR_FORMAT,
                                    "%s: tensor '%s' is not listed for this shard in "
                                    "model.safetensors.index.json",
                                    path, n);
            }
            if (len > 20 && !strcmp(n + len - 20, ".rotary_emb.inv_freq")) continue;
            if (model_name(lay, n, local, sizeof local)) {
                int b = bias_of_name(local), required, l;
                if (b >= 0 && sscanf(local, "layers.%d.", &l) == 1) {
                    char canon[160];
                    cce_layer_bias_name(l, (cce_layer_bias)b, canon, sizeof canon);
                    if (!strcmp(canon, local) && bias_allowed(lay, (cce_layer_bias)b, &required))
                        continue; /* loaded by load_biases */
                } else if (strcmp(local, "lm_head.weight") != 0 || !tied) {
                    cce_tensor *mt;
                    if (cce_model_tensor(m, local, &mt) == CCE_OK) continue;
                } else {
                    cce_tensor *e;
                    cce_status s = cce_model_global_tensor(m, CCE_GT_EMBED, &e);
                    if (s) return s;
                    float *tmp = malloc((size_t)cce_tensor_numel(e) * sizeof *tmp); /* [v, d] */
                    if (!tmp) return cce_fail(CCE_ERR_NOMEM, "%s: lm_head", path);
                    int eq = t->numel == cce_tensor_numel(e) &&
                             cce_safetensors_read_f32(sh->files[i], t, 0, t->numel, tmp) == 0 &&
                             !memcmp(tmp, e->data, (size_t)t->numel * sizeof *tmp);
                    free(tmp);
                    if (eq) continue;
                    return cce_fail(CCE_ERR_FORMAT,
                                    "%s: tie_word_embeddings is true but lm_head.weight differs "
                                    "from model.embed_tokens.weight",
                                    path);
                }
            }
            int b = bias_of_name(n);
            return cce_fail(CCE_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of a %s model%s)",
                            path, n, ARCHS[lay->arch],
                            b < 0 || lay->arch == ARCH_QWEN2 ? ""
                            : b <= CCE_LB_O                  ? " without attention_bias"
                                                             : " without mlp_bias");
        }
    return CCE_OK;
}

cce_status cce_import_hf(const char *dir, const char *tokenizer_bin, cce_model **out) {
    cce_config cfg;
    hf_layout lay;
    cce_model *m = NULL;
    shards sh = {0};
    char *config = join(dir, "config.json");
    if (!config) return cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
    cce_status s = read_config(config, &cfg, &lay);
    free(config);
    if (s) goto done;
    if ((s = open_shards(dir, &sh))) goto done;
    if ((s = cce_model_new(&cfg, &m)) || (s = apply_layout(m, &lay))) goto done;
    unsigned seen = 0;
    for (size_t i = 0; i < cce_model_tensor_count(m); i++)
        if ((s = load_tensor(m, &lay, &sh, dir, cce_model_tensor_name_at(m, i), &seen))) goto done;
    for (int l = 0; l < cfg.n_layers; l++)
        if (lay.hf_of_layer[l] >= 0 && (s = load_biases(m, &lay, &sh, dir, l, &seen))) goto done;
    if ((s = check_unused(m, &lay, &sh))) goto done;
    if (tokenizer_bin) {
        cce_tokenizer *tok;
        if ((s = cce_tokenizer_load_llama2c(tokenizer_bin, cfg.vocab_size, &tok))) goto done;
        cce_model_set_tokenizer(m, tok);
    } else {
        /* tokenizer.json (+ tokenizer_config.json) when the folder has one */
        char *tj = join(dir, "tokenizer.json"), *tc = join(dir, "tokenizer_config.json");
        cce_tokenizer *tok = NULL;
        if (!tj || !tc)
            s = cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
        else if (exists(tj) && !(s = cce_tokenizer_load_hf(tj, tc, cfg.vocab_size, &tok)))
            cce_model_set_tokenizer(m, tok);
        free(tj);
        free(tc);
        if (s) goto done;
    }
    /* source "hf:<last component of dir>" */
    size_t end = strlen(dir);
    while (end > 1 && dir[end - 1] == '/') end--;
    size_t begin = end;
    while (begin > 0 && dir[begin - 1] != '/') begin--;
    char source[512];
    int n = snprintf(source, sizeof source, "hf:%.*s", (int)(end - begin < 256 ? end - begin : 256),
                     dir + begin);
    for (int d = 0; d < CCE_ST_DTYPE_COUNT && n < (int)sizeof source - 8; d++)
        if (seen & (1u << d))
            n += snprintf(source + n, sizeof source - (size_t)n, " %s",
                          cce_st_dtype_name((cce_st_dtype)d));
    cce_model_set_source(m, source);
done:
    shards_free(&sh);
    layout_free(&lay);
    if (s) {
        cce_model_free(m);
        return s;
    }
    *out = m;
    return CCE_OK;
}
