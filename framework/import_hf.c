/* Hugging Face checkpoint import (import.h): config.json + safetensors (single or sharded). */
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

static cce_status check_config_rules(const char *path, json_t *root, int arch, cce_config *c) {
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) &&
        (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
        return cce_fail(CCE_ERR_FORMAT, "%s: hidden_act must be \"silu\" (SwiGLU)", path);
    if (!off(root, "rope_scaling"))
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: rope_scaling is set; only unscaled RoPE is supported (rope_scaling "
                        "must be null)",
                        path);
    if (arch != ARCH_QWEN2 && !off(root, "attention_bias"))
        return cce_fail(CCE_ERR_FORMAT, "%s: attention_bias is true; the model has no biases",
                        path);
    if (!off(root, "mlp_bias"))
        return cce_fail(CCE_ERR_FORMAT, "%s: mlp_bias is true; the model has no biases", path);
    if (arch == ARCH_MISTRAL) {
        json_t *sw = json_object_get(root, "sliding_window");
        if (sw && !json_is_null(sw) &&
            (!json_is_integer(sw) || json_integer_value(sw) < c->seq_len))
            return cce_fail(CCE_ERR_FORMAT,
                            "%s: sliding_window must be null or at least max_position_embeddings "
                            "(%d); sliding-window attention is not supported",
                            path, (int)c->seq_len);
    }
    if (arch == ARCH_QWEN2 && !off(root, "use_sliding_window"))
        return cce_fail(CCE_ERR_FORMAT,
                        "%s: use_sliding_window is true; sliding-window attention is not "
                        "supported",
                        path);
    return CCE_OK;
}

cce_status cce_hf_read_config(const char *path, cce_config *cfg, int *arch_out) {
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
    int arch = -1;
    json_t *archs = json_object_get(root, "architectures");
    const char *name = json_string_value(json_array_get(archs, 0));
    for (int a = 0; name && a < ARCH_COUNT; a++)
        if (!strcmp(name, ARCHS[a])) arch = a;
    if (!json_is_object(root)) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    if (arch < 0) {
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
    if ((s = check_config_rules(path, root, arch, cfg))) goto done;
    if (cce_config_validate(cfg, path)) s = CCE_ERR_FORMAT; /* the detail names the field */
    if (arch_out) *arch_out = arch;
done:
    json_decref(root);
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

/* The safetensors name of a model tensor name. */
static void hf_name(const char *name, char *buf, size_t cap) {
    if (!strcmp(name, "lm_head.weight"))
        snprintf(buf, cap, "%s", name);
    else
        snprintf(buf, cap, "model.%s", name);
}

static cce_status load_tensor(cce_model *m, const shards *sh, const char *dir, const char *name,
                              unsigned *dtypes_seen) {
    char hname[160];
    hf_name(name, hname, sizeof hname);
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
                        "%s: tensor '%s' has shape [%lld, %lld] (%d dims), config.json implies "
                        "[%lld, %lld]",
                        cce_safetensors_path(f), hname, (long long)st->shape[0],
                        (long long)(st->ndim > 1 ? st->shape[1] : 1), st->ndim,
                        (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 1));
    if ((s = cce_safetensors_read_f32(f, st, 0, st->numel, t->data))) return s;
    *dtypes_seen |= 1u << st->dtype;
    if ((s = cce_tensor_check_finite(t, hname))) cce_error_prefix("%s: ", cce_safetensors_path(f));
    return s;
}

/* 1 if every element of an F32/F16/BF16 tensor is zero. */
static int all_zero(const cce_st_tensor *t) {
    for (uint64_t i = 0; i < t->end - t->begin; i++) {
        if (t->data[i] == 0) continue;
        /* -0.0 has only the sign bit set in its last byte */
        size_t w = cce_st_dtype_size(t->dtype);
        if ((i + 1) % w == 0 && t->data[i] == 0x80) continue;
        return 0;
    }
    return 1;
}

/* Every tensor of the checkpoint must be one the model took, or one that may be skipped: RoPE
 * inverse-frequency buffers, a tied lm_head equal to embed_tokens, zero Qwen2 q/k/v biases. */
static cce_status check_unused(cce_model *m, const shards *sh, int arch) {
    int tied = cce_model_config(m)->tied_embeddings;
    for (size_t i = 0; i < sh->n; i++)
        for (size_t j = 0; j < cce_safetensors_count(sh->files[i]); j++) {
            const cce_st_tensor *t = cce_safetensors_at(sh->files[i], j);
            const char *n = t->name, *path = cce_safetensors_path(sh->files[i]);
            size_t len = strlen(n);
            if (sh->weight_map) {
                const char *fn = json_string_value(json_object_get(sh->weight_map, n));
                if (!fn || strcmp(fn, sh->names[i]) != 0)
                    return cce_fail(CCE_ERR_FORMAT,
                                    "%s: tensor '%s' is not listed for this shard in "
                                    "model.safetensors.index.json",
                                    path, n);
            }
            if (len > 20 && !strcmp(n + len - 20, ".rotary_emb.inv_freq")) continue;
            if (!strncmp(n, "model.", 6) || !strcmp(n, "lm_head.weight")) {
                const char *local = strcmp(n, "lm_head.weight") ? n + 6 : n;
                if (strcmp(local, "lm_head.weight") != 0 || !tied) {
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
            if (arch == ARCH_QWEN2 && len > 5 && !strcmp(n + len - 5, ".bias") &&
                strstr(n, ".self_attn.")) {
                if (all_zero(t)) continue;
                return cce_fail(CCE_ERR_FORMAT,
                                "%s: tensor '%s': nonzero attention biases are not supported by "
                                "the model format",
                                path, n);
            }
            return cce_fail(CCE_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of a %s model)",
                            path, n, ARCHS[arch]);
        }
    return CCE_OK;
}

cce_status cce_import_hf(const char *dir, const char *tokenizer_bin, cce_model **out) {
    cce_config cfg;
    int arch;
    cce_model *m = NULL;
    shards sh = {0};
    char *config = join(dir, "config.json");
    if (!config) return cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
    cce_status s = cce_hf_read_config(config, &cfg, &arch);
    free(config);
    if (s) return s;
    if ((s = open_shards(dir, &sh))) goto done;
    if ((s = cce_model_new(&cfg, &m))) goto done;
    unsigned seen = 0;
    for (size_t i = 0; i < cce_model_tensor_count(m); i++)
        if ((s = load_tensor(m, &sh, dir, cce_model_tensor_name_at(m, i), &seen))) goto done;
    if ((s = check_unused(m, &sh, arch))) goto done;
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
    if (s) {
        cce_model_free(m);
        return s;
    }
    *out = m;
    return CCE_OK;
}
