/* A Llama model: config, per-layer shapes, tokenizer and named weights, in memory or lazily
 * backed by a cce-model HDF5 file (model.h).
 *
 * Tensors live in a fixed table of "slots" in canonical order:
 *   slot 0                      embed_tokens.weight
 *   slot 1 + L * CCE_LT_COUNT + w  block tensor w of layer L
 *   slot 1 + n_layers * CCE_LT_COUNT      norm.weight
 *   slot 2 + n_layers * CCE_LT_COUNT      lm_head.weight (present only when untied)
 * A slot is present when the model has that tensor (lm_head is absent when tied; the blocks of a
 * removed layer may be absent in a file). `order` lists the present slots for enumeration.
 * Biases live in a second table of slots (m->biases, model_bias.c), present only when set. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "model_internal.h"
#include "store.h"

static const char *const layer_suffix[CCE_LT_COUNT] = {
    [CCE_LT_ATTN_NORM] = "input_layernorm.weight",
    [CCE_LT_Q] = "self_attn.q_proj.weight",
    [CCE_LT_K] = "self_attn.k_proj.weight",
    [CCE_LT_V] = "self_attn.v_proj.weight",
    [CCE_LT_O] = "self_attn.o_proj.weight",
    [CCE_LT_FFN_NORM] = "post_attention_layernorm.weight",
    [CCE_LT_GATE] = "mlp.gate_proj.weight",
    [CCE_LT_UP] = "mlp.up_proj.weight",
    [CCE_LT_DOWN] = "mlp.down_proj.weight",
};

static const char *const global_names[CCE_GT_COUNT] = {
    [CCE_GT_EMBED] = "embed_tokens.weight",
    [CCE_GT_NORM] = "norm.weight",
    [CCE_GT_LM_HEAD] = "lm_head.weight",
};

/* ---- Config ---------------------------------------------------------------------------------- */

#define DIM_LIMIT   (1 << 20)
#define VOCAB_LIMIT (1 << 22)
#define LAYER_LIMIT 1024

static cce_status check_int(const char *origin, const char *field, int32_t v, int32_t max) {
    if (v <= 0 || v > max)
        return cce_fail(CCE_ERR_RANGE, "%s: %s = %d is outside [1, %d]", origin, field, (int)v,
                        (int)max);
    return CCE_OK;
}

cce_status cce_config_validate(const cce_config *cfg, const char *origin) {
    if (!origin) origin = "config";
    cce_status s;
    if ((s = check_int(origin, "dim", cfg->dim, DIM_LIMIT)) ||
        (s = check_int(origin, "hidden_dim", cfg->hidden_dim, DIM_LIMIT)) ||
        (s = check_int(origin, "n_layers", cfg->n_layers, LAYER_LIMIT)) ||
        (s = check_int(origin, "n_heads", cfg->n_heads, DIM_LIMIT)) ||
        (s = check_int(origin, "n_kv_heads", cfg->n_kv_heads, DIM_LIMIT)) ||
        (s = check_int(origin, "head_dim", cfg->head_dim, DIM_LIMIT)) ||
        (s = check_int(origin, "vocab_size", cfg->vocab_size, VOCAB_LIMIT)) ||
        (s = check_int(origin, "seq_len", cfg->seq_len, DIM_LIMIT)))
        return s;
    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return cce_fail(CCE_ERR_RANGE, "%s: n_heads = %d is not a multiple of n_kv_heads = %d",
                        origin, (int)cfg->n_heads, (int)cfg->n_kv_heads);
    if (cfg->head_dim % 2 != 0)
        return cce_fail(CCE_ERR_RANGE, "%s: head_dim = %d is odd (RoPE rotates pairs)", origin,
                        (int)cfg->head_dim);
    if ((int64_t)cfg->n_heads * cfg->head_dim > DIM_LIMIT)
        return cce_fail(CCE_ERR_RANGE, "%s: n_heads * head_dim = %lld exceeds %d", origin,
                        (long long)cfg->n_heads * cfg->head_dim, DIM_LIMIT);
    if (!(cfg->rope_theta > 0) || cfg->rope_theta > 1e12f)
        return cce_fail(CCE_ERR_RANGE, "%s: rope_theta = %g must be positive and finite", origin,
                        (double)cfg->rope_theta);
    if (!(cfg->norm_eps > 0) || cfg->norm_eps >= 1.0f)
        return cce_fail(CCE_ERR_RANGE, "%s: norm_eps = %g is outside (0, 1)", origin,
                        (double)cfg->norm_eps);
    if (cfg->tied_embeddings != 0 && cfg->tied_embeddings != 1)
        return cce_fail(CCE_ERR_RANGE, "%s: tied_embeddings = %d is neither 0 nor 1", origin,
                        (int)cfg->tied_embeddings);
    return CCE_OK;
}

/* ---- Names and slots ------------------------------------------------------------------------- */

void cce_layer_tensor_name(int layer, cce_layer_tensor which, char *buf, size_t bufsize) {
    if (bufsize == 0) return;
    if ((int)which < 0 || which >= CCE_LT_COUNT) {
        buf[0] = '\0';
        return;
    }
    snprintf(buf, bufsize, "layers.%d.%s", layer, layer_suffix[which]);
}

const char *cce_global_tensor_name(cce_global_tensor which) {
    if ((int)which < 0 || which >= CCE_GT_COUNT) return "";
    return global_names[which];
}

static size_t slot_of_layer(int layer, cce_layer_tensor w) {
    return 1 + (size_t)layer * CCE_LT_COUNT + (size_t)w;
}

static size_t slot_of_global(const cce_config *cfg, cce_global_tensor g) {
    size_t base = 1 + (size_t)cfg->n_layers * CCE_LT_COUNT;
    switch (g) {
    case CCE_GT_EMBED:
        return 0;
    case CCE_GT_NORM:
        return base;
    case CCE_GT_LM_HEAD:
        return base + 1;
    case CCE_GT_COUNT:
        break;
    }
    return (size_t)-1;
}

/* The slot of a canonical name, or (size_t)-1. Layer numbers must be written without padding. */
static size_t slot_of_name(const cce_config *cfg, const char *name) {
    for (int g = 0; g < CCE_GT_COUNT; g++)
        if (!strcmp(name, global_names[g])) return slot_of_global(cfg, (cce_global_tensor)g);
    if (strncmp(name, "layers.", 7) != 0) return (size_t)-1;
    const char *p = name + 7;
    if (*p < '0' || *p > '9') return (size_t)-1;
    long layer = 0;
    while (*p >= '0' && *p <= '9' && layer <= LAYER_LIMIT) layer = layer * 10 + (*p++ - '0');
    if (*p != '.' || layer >= cfg->n_layers) return (size_t)-1;
    for (int w = 0; w < CCE_LT_COUNT; w++) {
        char canon[NAME_MAX_LEN];
        cce_layer_tensor_name((int)layer, (cce_layer_tensor)w, canon, sizeof canon);
        if (!strcmp(canon, name)) return slot_of_layer((int)layer, (cce_layer_tensor)w);
    }
    return (size_t)-1;
}

/* The shape slot i must have under the current config and layer shapes. */
static void expected_shape(const cce_model *m, size_t i, int *ndim, int64_t shape[2]) {
    const cce_config *c = &m->cfg;
    size_t n_block = (size_t)c->n_layers * CCE_LT_COUNT;
    if (i == 0 || i == n_block + 2) { /* embed_tokens, lm_head */
        *ndim = 2;
        shape[0] = c->vocab_size;
        shape[1] = c->dim;
        return;
    }
    if (i == n_block + 1) { /* norm */
        *ndim = 1;
        shape[0] = c->dim;
        return;
    }
    const cce_layer_shape *l = &m->layers[(i - 1) / CCE_LT_COUNT];
    int64_t q_rows = (int64_t)l->n_heads * c->head_dim,
            kv_rows = (int64_t)l->n_kv_heads * c->head_dim;
    *ndim = 2;
    switch ((cce_layer_tensor)((i - 1) % CCE_LT_COUNT)) {
    case CCE_LT_ATTN_NORM:
    case CCE_LT_FFN_NORM:
        *ndim = 1;
        shape[0] = c->dim;
        break;
    case CCE_LT_Q:
        shape[0] = q_rows, shape[1] = c->dim;
        break;
    case CCE_LT_K:
    case CCE_LT_V:
        shape[0] = kv_rows, shape[1] = c->dim;
        break;
    case CCE_LT_O:
        shape[0] = c->dim, shape[1] = q_rows;
        break;
    case CCE_LT_GATE:
    case CCE_LT_UP:
        shape[0] = l->hidden_dim, shape[1] = c->dim;
        break;
    case CCE_LT_DOWN:
        shape[0] = c->dim, shape[1] = l->hidden_dim;
        break;
    case CCE_LT_COUNT:
        break;
    }
}

static int shape_equal(int nd_a, const int64_t *a, int nd_b, const int64_t *b) {
    if (nd_a != nd_b) return 0;
    for (int k = 0; k < nd_a; k++)
        if (a[k] != b[k]) return 0;
    return 1;
}

/* "[a, b]": a shape for error messages. */
void model_shape_text(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int k = 0; k < ndim && n < size; k++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", k ? ", " : "", (long long)shape[k]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

void model_rebuild_order(cce_model *m) {
    m->n_present = 0;
    for (size_t i = 0; i < m->n_slots; i++)
        if (m->slots[i].present) m->order[m->n_present++] = i;
}

cce_status model_shell(const cce_config *cfg, cce_model **out) {
    cce_model *m = calloc(1, sizeof *m);
    if (!m) return cce_fail(CCE_ERR_NOMEM, "model");
    m->cfg = *cfg;
    m->n_slots = 3 + (size_t)cfg->n_layers * CCE_LT_COUNT;
    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    m->slots = calloc(m->n_slots, sizeof *m->slots);
    m->order = calloc(m->n_slots, sizeof *m->order);
    m->biases = calloc((size_t)cfg->n_layers * CCE_LB_COUNT, sizeof *m->biases);
    m->source = calloc(1, 1);
    if (!m->layers || !m->slots || !m->order || !m->biases || !m->source) {
        cce_model_free(m);
        return cce_fail(CCE_ERR_NOMEM, "model of %d layers", (int)cfg->n_layers);
    }
    int group = cfg->n_heads / cfg->n_kv_heads;
    for (int l = 0; l < cfg->n_layers; l++) {
        cce_layer_shape *ls = &m->layers[l];
        ls->hidden_dim = cfg->hidden_dim;
        ls->n_heads = cfg->n_heads;
        ls->n_kv_heads = cfg->n_kv_heads;
        ls->kv_of_head = malloc((size_t)cfg->n_heads * sizeof *ls->kv_of_head);
        if (!ls->kv_of_head) {
            cce_model_free(m);
            return cce_fail(CCE_ERR_NOMEM, "layer %d head map", l);
        }
        for (int h = 0; h < cfg->n_heads; h++) ls->kv_of_head[h] = h / group;
    }
    for (size_t i = 0; i < m->n_slots; i++) {
        model_slot *sl = &m->slots[i];
        if (i == 0)
            snprintf(sl->name, sizeof sl->name, "%s", global_names[CCE_GT_EMBED]);
        else if (i == m->n_slots - 2)
            snprintf(sl->name, sizeof sl->name, "%s", global_names[CCE_GT_NORM]);
        else if (i == m->n_slots - 1)
            snprintf(sl->name, sizeof sl->name, "%s", global_names[CCE_GT_LM_HEAD]);
        else
            cce_layer_tensor_name((int)((i - 1) / CCE_LT_COUNT),
                                  (cce_layer_tensor)((i - 1) % CCE_LT_COUNT), sl->name,
                                  sizeof sl->name);
    }
    model_refresh_shapes(m);
    *out = m;
    return CCE_OK;
}

void model_refresh_shapes(cce_model *m) {
    for (size_t i = 0; i < m->n_slots; i++) {
        model_slot *sl = &m->slots[i];
        expected_shape(m, i, &sl->ndim, sl->shape);
        for (int k = sl->ndim; k < CCE_TENSOR_MAX_DIMS; k++) sl->shape[k] = 1;
    }
    model_bias_refresh(m);
}

/* ---- Lifetime -------------------------------------------------------------------------------- */

cce_status cce_model_new(const cce_config *cfg, cce_model **out) {
    cce_status s = cce_config_validate(cfg, "config");
    if (s) return s;
    cce_model *m;
    if ((s = model_shell(cfg, &m))) return s;
    for (size_t i = 0; i < m->n_slots; i++) {
        if (i == m->n_slots - 1 && cfg->tied_embeddings) continue;
        model_slot *sl = &m->slots[i];
        if ((s = cce_tensor_new(sl->ndim, sl->shape, &sl->t))) {
            cce_error_prefix("%s: ", sl->name);
            cce_model_free(m);
            return s;
        }
        sl->present = 1;
    }
    model_rebuild_order(m);
    *out = m;
    return CCE_OK;
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Indexes the file's tensors: every slot the config expects must be there with the right shape,
 * except lm_head of a tied model and the blocks of a removed layer. */
static cce_status index_file_tensors(cce_model *m) {
    const char *file = m->path;
    for (size_t i = 0; i < m->n_slots; i++) {
        model_slot *sl = &m->slots[i];
        int is_lm_head = i == m->n_slots - 1;
        int removed = i > 0 && i < m->n_slots - 2 && m->layers[(i - 1) / CCE_LT_COUNT].removed;
        int ndim;
        int64_t shape[CCE_TENSOR_MAX_DIMS];
        cce_status s = cce_store_tensor_shape(m->store, m->cfg.n_layers, sl->name, &ndim, shape);
        if (s == CCE_ERR_NOT_FOUND) {
            if ((is_lm_head && m->cfg.tied_embeddings) || removed) continue;
            return cce_fail(CCE_ERR_FORMAT, "%s: tensor %s is missing", file, sl->name);
        }
        if (s) return s;
        if (is_lm_head && m->cfg.tied_embeddings)
            return cce_fail(CCE_ERR_FORMAT, "%s: tensor %s is present but tied_embeddings = 1",
                            file, sl->name);
        if (!shape_equal(ndim, shape, sl->ndim, sl->shape)) {
            char got[96], want[96];
            model_shape_text(ndim, shape, got, sizeof got);
            model_shape_text(sl->ndim, sl->shape, want, sizeof want);
            return cce_fail(CCE_ERR_FORMAT, "%s: tensor %s has shape %s, the config implies %s",
                            file, sl->name, got, want);
        }
        sl->present = 1;
    }
    model_rebuild_order(m);
    return model_bias_index_file(m);
}

cce_status cce_model_open(const char *path, cce_model **out) {
    cce_store *store = NULL;
    cce_model *m = NULL;
    char *source = NULL;
    cce_config cfg;
    cce_status s = cce_store_open(path, &store);
    if (s) return s;
    if ((s = cce_store_read_config(store, &cfg, &source))) goto fail;
    if ((s = model_shell(&cfg, &m))) goto fail;
    m->store = store;
    store = NULL;
    free(m->source);
    m->source = source;
    source = NULL;
    if (!(m->path = dup_string(path))) {
        s = cce_fail(CCE_ERR_NOMEM, "model path");
        goto fail;
    }
    for (int l = 0; l < cfg.n_layers; l++) {
        cce_layer_shape ls;
        if ((s = cce_store_read_layer_shape(m->store, &cfg, l, &ls))) goto fail;
        free(m->layers[l].kv_of_head);
        m->layers[l] = ls;
    }
    /* Layer shapes may differ from the config: recompute the expected tensor shapes. */
    model_refresh_shapes(m);
    if (cce_store_has_tokenizer(m->store) && (s = cce_store_read_tokenizer(m->store, &m->tok)))
        goto fail;
    if (m->tok && cce_tokenizer_vocab_size(m->tok) != cfg.vocab_size) {
        s = cce_fail(CCE_ERR_FORMAT, "%s: /tokenizer has %d pieces but vocab_size = %d", path,
                     (int)cce_tokenizer_vocab_size(m->tok), (int)cfg.vocab_size);
        goto fail;
    }
    if ((s = index_file_tensors(m))) goto fail;
    *out = m;
    return CCE_OK;
fail:
    free(source);
    cce_store_close(store);
    cce_model_free(m);
    return s;
}

void cce_model_free(cce_model *m) {
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++) free(m->layers[l].kv_of_head);
    free(m->layers);
    if (m->slots)
        for (size_t i = 0; i < m->n_slots; i++) {
            cce_tensor_free(m->slots[i].t);
            cce_encoding_free(m->slots[i].enc);
        }
    free(m->slots);
    if (m->biases)
        for (size_t i = 0; i < (size_t)m->cfg.n_layers * CCE_LB_COUNT; i++)
            model_slot_clear(&m->biases[i]);
    free(m->biases);
    free(m->order);
    if (!m->tok_borrowed) cce_tokenizer_free(m->tok);
    cce_store_close(m->store);
    free(m->source);
    free(m->path);
    free(m);
}

/* ---- Accessors ------------------------------------------------------------------------------- */

const cce_config *cce_model_config(const cce_model *m) {
    return &m->cfg;
}

const cce_layer_shape *cce_model_layer(const cce_model *m, int layer) {
    if (layer < 0 || layer >= m->cfg.n_layers) return NULL;
    return &m->layers[layer];
}

const char *cce_model_path(const cce_model *m) {
    return m->path;
}

const char *cce_model_source(const cce_model *m) {
    return m->source;
}

void cce_model_set_source(cce_model *m, const char *source) {
    char *d = dup_string(source ? source : "");
    if (!d) return; /* keeps the old source; only an allocation failure gets here */
    free(m->source);
    m->source = d;
}

const cce_tokenizer *cce_model_tokenizer(const cce_model *m) {
    return m->tok;
}

void cce_model_set_tokenizer(cce_model *m, cce_tokenizer *tok) {
    if (m->tok == tok) return;
    if (!m->tok_borrowed) cce_tokenizer_free(m->tok);
    m->tok = tok;
    m->tok_borrowed = 0;
}

/* ---- Tensor access --------------------------------------------------------------------------- */

void model_slot_clear(model_slot *sl) {
    cce_tensor_free(sl->t);
    cce_encoding_free(sl->enc);
    sl->t = NULL;
    sl->enc = NULL;
    sl->shared = 0;
    sl->present = 0;
}

cce_status model_load_slot(cce_model *m, model_slot *sl, cce_tensor **out) {
    if (!sl->present) return cce_fail(CCE_ERR_NOT_FOUND, "the model has no tensor %s", sl->name);
    if (!sl->t && m->base) {
        cce_status s = model_variant_borrow(m, sl);
        if (s) return s;
    }
    if (!sl->t) {
        if (!m->store) return cce_fail(CCE_ERR_INTERNAL, "tensor %s has no data", sl->name);
        cce_tensor *t;
        cce_encoding *enc = NULL;
        cce_status s = cce_store_read_encoded(m->store, m->cfg.n_layers, sl->name, &t, &enc);
        if (s) return s;
        cce_encoding_free(sl->enc);
        sl->enc = enc; /* freed with the slot if the checks below fail */
        if (!shape_equal(t->ndim, t->shape, sl->ndim, sl->shape)) {
            char got[96], want[96];
            model_shape_text(t->ndim, t->shape, got, sizeof got);
            model_shape_text(sl->ndim, sl->shape, want, sizeof want);
            cce_tensor_free(t);
            return cce_fail(CCE_ERR_FORMAT, "%s: tensor %s has shape %s, the config implies %s",
                            m->path, sl->name, got, want);
        }
        if ((s = cce_tensor_check_finite(t, sl->name))) {
            cce_error_prefix("%s: ", m->path);
            cce_tensor_free(t);
            return s;
        }
        sl->t = t;
    }
    *out = sl->t;
    return CCE_OK;
}

/* Loads slot i from the file if needed. */
static cce_status slot_tensor(cce_model *m, size_t i, cce_tensor **out) {
    return model_load_slot(m, &m->slots[i], out);
}

/* lm_head of a tied model is embed_tokens. */
static size_t resolve_tied(const cce_model *m, size_t i) {
    if (i == m->n_slots - 1 && m->cfg.tied_embeddings) return 0;
    return i;
}

cce_status cce_model_tensor(cce_model *m, const char *name, cce_tensor **out) {
    size_t i = name ? slot_of_name(&m->cfg, name) : (size_t)-1;
    model_slot *b = i == (size_t)-1 && name ? model_bias_slot_of_name(m, name) : NULL;
    if (b) return model_load_slot(m, b, out);
    if (i == (size_t)-1)
        return cce_fail(CCE_ERR_NOT_FOUND, "the model has no tensor %s", name ? name : "(null)");
    return slot_tensor(m, resolve_tied(m, i), out);
}

cce_status cce_model_layer_tensor(cce_model *m, int layer, cce_layer_tensor which,
                                  cce_tensor **out) {
    if (layer < 0 || layer >= m->cfg.n_layers)
        return cce_fail(CCE_ERR_NOT_FOUND, "layer %d is outside [0, %d)", layer,
                        (int)m->cfg.n_layers);
    if ((int)which < 0 || which >= CCE_LT_COUNT)
        return cce_fail(CCE_ERR_NOT_FOUND, "layer tensor kind %d is unknown", (int)which);
    return slot_tensor(m, slot_of_layer(layer, which), out);
}

cce_status cce_model_global_tensor(cce_model *m, cce_global_tensor which, cce_tensor **out) {
    if ((int)which < 0 || which >= CCE_GT_COUNT)
        return cce_fail(CCE_ERR_NOT_FOUND, "global tensor kind %d is unknown", (int)which);
    return slot_tensor(m, resolve_tied(m, slot_of_global(&m->cfg, which)), out);
}

size_t model_slot_index(const cce_model *m, const char *name) {
    size_t i = name ? slot_of_name(&m->cfg, name) : (size_t)-1;
    return i == (size_t)-1 ? i : resolve_tied(m, i);
}

int cce_model_tensor_is_loaded(const cce_model *m, const char *name) {
    size_t i = name ? slot_of_name(&m->cfg, name) : (size_t)-1;
    const model_slot *b = i == (size_t)-1 && name ? model_bias_slot_of_name(m, name) : NULL;
    if (b) return b->present && b->t != NULL;
    if (i == (size_t)-1) return 0;
    i = resolve_tied(m, i);
    return m->slots[i].present && m->slots[i].t != NULL;
}

cce_status cce_model_put_tensor(cce_model *m, const char *name, cce_tensor *t) {
    if (!t) return cce_fail(CCE_ERR_ARG, "put_tensor %s: no tensor given", name ? name : "(null)");
    size_t i = name ? slot_of_name(&m->cfg, name) : (size_t)-1;
    model_slot *b = i == (size_t)-1 && name ? model_bias_slot_of_name(m, name) : NULL;
    if (b) return model_bias_put(m, b, t);
    if (i == (size_t)-1)
        return cce_fail(CCE_ERR_NOT_FOUND, "%s is not a tensor name of this model (%d layers)",
                        name ? name : "(null)", (int)m->cfg.n_layers);
    model_slot *sl = &m->slots[i];
    if (!shape_equal(t->ndim, t->shape, sl->ndim, sl->shape)) {
        char got[96], want[96];
        model_shape_text(t->ndim, t->shape, got, sizeof got);
        model_shape_text(sl->ndim, sl->shape, want, sizeof want);
        return cce_fail(CCE_ERR_ARG, "tensor %s: shape %s, the model expects %s", name, got, want);
    }
    if (sl->t != t) cce_tensor_free(sl->t);
    sl->t = t;
    sl->shared = 0;
    cce_encoding_free(sl->enc);
    sl->enc = NULL;
    if (i == m->n_slots - 1) m->cfg.tied_embeddings = 0;
    if (!sl->present) {
        sl->present = 1;
        model_rebuild_order(m);
    }
    return CCE_OK;
}

/* ---- Enumeration and counts ------------------------------------------------------------------ */

size_t cce_model_tensor_count(const cce_model *m) {
    return m->n_present;
}

const char *cce_model_tensor_name_at(const cce_model *m, size_t i) {
    if (i >= m->n_present) return NULL;
    return m->slots[m->order[i]].name;
}

void cce_model_tensor_shape_at(const cce_model *m, size_t i, int *ndim, int64_t shape[4]) {
    if (i >= m->n_present) {
        *ndim = 0;
        for (int k = 0; k < 4; k++) shape[k] = 0;
        return;
    }
    const model_slot *sl = &m->slots[m->order[i]];
    *ndim = sl->ndim;
    for (int k = 0; k < 4; k++) shape[k] = sl->shape[k];
}

static int64_t slot_numel(const model_slot *sl) {
    if (!sl->present) return 0;
    int64_t n = 1;
    for (int k = 0; k < sl->ndim; k++) n *= sl->shape[k];
    return n;
}

int64_t cce_model_layer_params(const cce_model *m, int layer) {
    if (layer < 0 || layer >= m->cfg.n_layers) return 0;
    int64_t n = model_bias_layer_params(m, layer);
    for (int w = 0; w < CCE_LT_COUNT; w++)
        n += slot_numel(&m->slots[slot_of_layer(layer, (cce_layer_tensor)w)]);
    return n;
}

int64_t cce_model_total_params(const cce_model *m) {
    int64_t n = 0;
    for (size_t i = 0; i < m->n_slots; i++) n += slot_numel(&m->slots[i]);
    for (int l = 0; l < m->cfg.n_layers; l++) n += model_bias_layer_params(m, l);
    return n;
}

cce_status cce_model_load_all(cce_model *m) {
    for (size_t k = 0; k < m->n_present; k++) {
        cce_tensor *t;
        cce_status s = slot_tensor(m, m->order[k], &t);
        if (s) return s;
    }
    for (size_t i = 0; i < (size_t)m->cfg.n_layers * CCE_LB_COUNT; i++) {
        cce_tensor *t;
        cce_status s;
        if (m->biases[i].present && (s = model_load_slot(m, &m->biases[i], &t))) return s;
    }
    return CCE_OK;
}

cce_status cce_model_check_finite(cce_model *m) {
    cce_status s = cce_model_load_all(m);
    if (s) return s;
    for (size_t k = 0; k < m->n_present; k++) {
        const model_slot *sl = &m->slots[m->order[k]];
        if ((s = cce_tensor_check_finite(sl->t, sl->name))) return s;
    }
    for (size_t i = 0; i < (size_t)m->cfg.n_layers * CCE_LB_COUNT; i++) {
        const model_slot *sl = &m->biases[i];
        if (sl->present && (s = cce_tensor_check_finite(sl->t, sl->name))) return s;
    }
    return CCE_OK;
}

/* ---- Encodings ------------------------------------------------------------------------------- */

/* The encoding of a loaded slot: its own, or for a variant's shared view the base's (NULL when
 * the encoding no longer matches the tensor's shape). */
static const cce_encoding *slot_encoding(const cce_model *m, const model_slot *sl) {
    const cce_encoding *e = sl->enc;
    if (!e && sl->shared && m->base) {
        size_t j = model_slot_index(m->base, sl->name);
        if (j != (size_t)-1) e = slot_encoding(m->base, &m->base->slots[j]);
    }
    if (e && sl->t && (e->ndim != sl->t->ndim || memcmp(e->shape, sl->t->shape, sizeof e->shape)))
        return NULL;
    return e;
}

cce_status cce_model_put_encoded(cce_model *m, const char *name, cce_tensor *t, cce_encoding *enc) {
    if (enc && t && (enc->ndim != t->ndim || memcmp(enc->shape, t->shape, sizeof enc->shape)))
        return cce_fail(CCE_ERR_ARG, "tensor %s: the encoding's shape is not the tensor's",
                        name ? name : "(null)");
    size_t i = name ? slot_of_name(&m->cfg, name) : (size_t)-1;
    if (enc && i == (size_t)-1)
        return cce_fail(CCE_ERR_ARG, "tensor %s: only weights can be stored encoded",
                        name ? name : "(null)");
    cce_status s = cce_model_put_tensor(m, name, t);
    if (s) return s;
    if (i != (size_t)-1) m->slots[i].enc = enc;
    return CCE_OK;
}

cce_status cce_model_tensor_encoding(cce_model *m, const char *name, const cce_encoding **out) {
    *out = NULL;
    size_t i = name ? slot_of_name(&m->cfg, name) : (size_t)-1;
    model_slot *b = i == (size_t)-1 && name ? model_bias_slot_of_name(m, name) : NULL;
    if (b) { /* biases are plain float32 */
        cce_tensor *t;
        return model_load_slot(m, b, &t);
    }
    if (i == (size_t)-1)
        return cce_fail(CCE_ERR_NOT_FOUND, "the model has no tensor %s", name ? name : "(null)");
    i = resolve_tied(m, i);
    cce_tensor *t;
    cce_status s = slot_tensor(m, i, &t);
    if (s) return s;
    *out = slot_encoding(m, &m->slots[i]);
    return CCE_OK;
}

cce_status cce_model_tensor_encoding_text(cce_model *m, size_t i, char *buf, size_t cap) {
    if (i >= m->n_present) return cce_fail(CCE_ERR_NOT_FOUND, "no tensor number %zu", i);
    model_slot *sl = &m->slots[m->order[i]];
    if (sl->t || m->base || !m->store) {
        const cce_encoding *e;
        cce_status s = cce_model_tensor_encoding(m, sl->name, &e);
        if (s) return s;
        if (e)
            cce_encoding_describe(e, buf, cap);
        else if (cap)
            snprintf(buf, cap, "dense");
        return CCE_OK;
    }
    return cce_store_tensor_encoding_text(m->store, m->cfg.n_layers, sl->name, buf, cap);
}

/* ---- Saving ---------------------------------------------------------------------------------- */

cce_status cce_model_save(cce_model *m, const char *path, const cce_save_options *opts) {
    cce_store_writer *w;
    cce_status s = cce_store_create(path, opts, &w);
    if (s) return s;
    int n_layers = m->cfg.n_layers;
    if ((s = cce_store_write_config(w, &m->cfg, m->source))) goto fail;
    for (int l = 0; l < n_layers; l++)
        if ((s = cce_store_write_layer_shape(w, &m->cfg, l, &m->layers[l]))) goto fail;
    if (m->tok && (s = cce_store_write_tokenizer(w, m->tok))) goto fail;
    for (size_t k = 0; k < m->n_present; k++) {
        model_slot *sl = &m->slots[m->order[k]];
        if (sl->t) {
            s = cce_store_write_encoded(w, n_layers, sl->name, sl->t, slot_encoding(m, sl));
        } else {
            /* Not loaded: copy through without keeping it, so a large model is saved tensor by
             * tensor within bounded memory. */
            cce_tensor *t;
            if ((s = slot_tensor(m, m->order[k], &t))) goto fail;
            s = cce_store_write_encoded(w, n_layers, sl->name, t, slot_encoding(m, sl));
            cce_tensor_free(sl->t);
            sl->t = NULL;
            if (!m->base) {
                cce_encoding_free(sl->enc);
                sl->enc = NULL;
            }
        }
        if (s) goto fail;
    }
    if ((s = model_bias_save(m, w))) goto fail;
    return cce_store_commit(w);
fail:
    cce_store_abort(w);
    return s;
}
