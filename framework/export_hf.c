/* Hugging Face folder export (import.h): config.json, safetensors (single or sharded) and the
 * tokenizer in llama2.c form and as tokenizer.json + tokenizer_config.json. */
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

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Dumps json to dir/name through a temporary file. */
static cce_status write_json(const char *dir, const char *name, json_t *j) {
    char *path = join(dir, name), *tmp = path ? malloc(strlen(path) + 32) : NULL;
    if (!tmp) {
        free(path);
        return cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
    }
    sprintf(tmp, "%s.tmp.%ld", path, (long)getpid());
    cce_status s = CCE_OK;
    FILE *f = fopen(tmp, "w");
    int ok = f && json_dumpf(j, f, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) == 0 &&
             fputc('\n', f) != EOF && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (f && fclose(f) != 0 && ok) ok = 0, err = errno;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) err = errno;
        s = cce_fail(CCE_ERR_IO, "%s: cannot write: %s", path, strerror(err));
        remove(tmp);
    }
    free(tmp);
    free(path);
    return s;
}

static const char *torch_dtype(int d) {
    return d == CCE_ST_F16 ? "float16" : d == CCE_ST_BF16 ? "bfloat16" : "float32";
}

static json_t *config_json(const cce_model *m, int dtype) {
    const cce_config *c = cce_model_config(m);
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    json_t *j = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:b, s:b, s:n, "
        "s:s}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", (int)c->dim,
        "intermediate_size", (int)c->hidden_dim, "num_hidden_layers", (int)c->n_layers,
        "num_attention_heads", (int)c->n_heads, "num_key_value_heads", (int)c->n_kv_heads,
        "head_dim", (int)c->head_dim, "vocab_size", (int)c->vocab_size, "max_position_embeddings",
        (int)c->seq_len, "rope_theta", (double)c->rope_theta, "rms_norm_eps", (double)c->norm_eps,
        "tie_word_embeddings", (int)c->tied_embeddings, "hidden_act", "silu", "attention_bias", 0,
        "mlp_bias", 0, "rope_scaling", "torch_dtype", torch_dtype(dtype));
    if (j && tok) {
        json_object_set_new(j, "bos_token_id", json_integer(cce_tokenizer_bos(tok)));
        json_object_set_new(j, "eos_token_id", json_integer(cce_tokenizer_eos(tok)));
    }
    return j;
}

/* The safetensors name of tensor i. */
static void hf_name(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s", strcmp(name, "lm_head.weight") ? "model." : "", name);
}

static cce_status check_uniform(const cce_model *m, const char *dir) {
    const cce_config *c = cce_model_config(m);
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        if (ls->removed || ls->hidden_dim != c->hidden_dim || ls->n_heads != c->n_heads ||
            ls->n_kv_heads != c->n_kv_heads)
            return cce_fail(CCE_ERR_ARG,
                            "%s: layer %d is %s; config.json describes uniform layers only", dir, l,
                            ls->removed ? "removed" : "narrower than the config");
        int group = c->n_heads / c->n_kv_heads;
        for (int h = 0; h < c->n_heads; h++)
            if (ls->kv_of_head[h] != h / group)
                return cce_fail(CCE_ERR_ARG, "%s: layer %d: head %d reads kv head %d, not %d", dir,
                                l, h, (int)ls->kv_of_head[h], h / group);
    }
    return CCE_OK;
}

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

/* Writes tensors [first, last) of m into dir/fname. */
static cce_status write_shard(cce_model *m, const char *dir, const char *fname, size_t first,
                              size_t last, int dtype) {
    char *path = join(dir, fname);
    if (!path) return cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
    cce_st_writer *w;
    cce_status s = cce_st_writer_new(path, &w);
    free(path);
    if (s) return s;
    if ((s = cce_st_writer_metadata(w, "format", "pt"))) goto fail;
    for (size_t i = first; i < last; i++) {
        const char *name = cce_model_tensor_name_at(m, i);
        char hname[160];
        cce_tensor *t;
        hf_name(name, hname, sizeof hname);
        if ((s = cce_model_tensor(m, name, &t)) ||
            (s = cce_st_writer_add(w, hname, (cce_st_dtype)dtype, t->ndim, t->shape, t->data)))
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
    cce_status s = check_uniform(m, dir);
    if (s) return s;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return cce_fail(CCE_ERR_IO, "%s: cannot create the folder: %s", dir, strerror(errno));
    size_t n = cce_model_tensor_count(m), width = cce_st_dtype_size((cce_st_dtype)o.dtype);
    /* Shard boundaries: consecutive tensors while the shard's data stays within shard_bytes. */
    size_t *start = malloc((n + 1) * sizeof *start); /* [n_shards + 1] */
    if (!start) return cce_fail(CCE_ERR_NOMEM, "%s: shard plan", dir);
    size_t n_shards = 0;
    uint64_t in_shard = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        int nd;
        int64_t shape[4];
        cce_model_tensor_shape_at(m, i, &nd, shape);
        uint64_t bytes = width;
        for (int d = 0; d < nd; d++) bytes *= (uint64_t)shape[d];
        if (i == 0 || (o.shard_bytes && in_shard + bytes > o.shard_bytes)) {
            start[n_shards++] = i;
            in_shard = 0;
        }
        in_shard += bytes;
        total += bytes;
    }
    start[n_shards] = n;
    json_t *cfg = config_json(m, o.dtype);
    if (!cfg) {
        free(start);
        return cce_fail(CCE_ERR_NOMEM, "%s: config.json", dir);
    }
    if ((s = write_json(dir, "config.json", cfg))) goto done;
    if (!o.shard_bytes || n_shards == 1) {
        if ((s = write_shard(m, dir, "model.safetensors", 0, n, o.dtype))) goto done;
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
            char fname[64], hname[160];
            snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
            s = write_shard(m, dir, fname, start[k], start[k + 1], o.dtype);
            for (size_t i = start[k]; !s && i < start[k + 1]; i++) {
                hf_name(cce_model_tensor_name_at(m, i), hname, sizeof hname);
                json_object_set_new(map, hname, json_string(fname));
            }
        }
        if (!s) s = write_json(dir, "model.safetensors.index.json", index);
        json_decref(index);
        if (!s) s = remove_stale(dir, "model.safetensors");
    }
    if (!s && cce_model_tokenizer(m)) {
        char *tp = join(dir, "tokenizer.bin");
        s = tp ? cce_export_llama2c_tokenizer(cce_model_tokenizer(m), tp)
               : cce_fail(CCE_ERR_NOMEM, "%s: path", dir);
        free(tp);
        if (!s) s = cce_tokenizer_save_hf(cce_model_tokenizer(m), dir);
    }
done:
    json_decref(cfg);
    free(start);
    return s;
}
