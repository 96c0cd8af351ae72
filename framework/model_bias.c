/* Optional layer biases (model.h, "Biases"): a second table of slots beside the weights
 * (m->biases [n_layers * CCE_LB_COUNT]), present only when the model has that bias. They load
 * lazily from the file, are shared by variants and are saved like weights, but are not part of
 * the weight enumeration. Their expected length is the row count of their weight under the
 * layer's current widths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "model_internal.h"
#include "store.h"

static const char *const bias_proj[CCE_LB_COUNT] = {
    [CCE_LB_Q] = "q_proj",       [CCE_LB_K] = "k_proj",       [CCE_LB_V] = "v_proj",
    [CCE_LB_O] = "o_proj",       [CCE_LB_GATE] = "gate_proj", [CCE_LB_UP] = "up_proj",
    [CCE_LB_DOWN] = "down_proj",
};

static const char *const bias_suffix[CCE_LB_COUNT] = {
    [CCE_LB_Q] = "self_attn.q_proj.bias", [CCE_LB_K] = "self_attn.k_proj.bias",
    [CCE_LB_V] = "self_attn.v_proj.bias", [CCE_LB_O] = "self_attn.o_proj.bias",
    [CCE_LB_GATE] = "mlp.gate_proj.bias", [CCE_LB_UP] = "mlp.up_proj.bias",
    [CCE_LB_DOWN] = "mlp.down_proj.bias",
};

static const cce_layer_tensor bias_weight[CCE_LB_COUNT] = {
    [CCE_LB_Q] = CCE_LT_Q,       [CCE_LB_K] = CCE_LT_K,       [CCE_LB_V] = CCE_LT_V,
    [CCE_LB_O] = CCE_LT_O,       [CCE_LB_GATE] = CCE_LT_GATE, [CCE_LB_UP] = CCE_LT_UP,
    [CCE_LB_DOWN] = CCE_LT_DOWN,
};

static int valid_kind(cce_layer_bias which) {
    return (int)which >= 0 && which < CCE_LB_COUNT;
}

const char *cce_layer_bias_proj(cce_layer_bias which) {
    return valid_kind(which) ? bias_proj[which] : "";
}

cce_layer_tensor cce_layer_bias_weight(cce_layer_bias which) {
    return valid_kind(which) ? bias_weight[which] : CCE_LT_COUNT;
}

cce_layer_bias cce_layer_bias_of_weight(cce_layer_tensor which) {
    for (int b = 0; b < CCE_LB_COUNT; b++)
        if (bias_weight[b] == which) return (cce_layer_bias)b;
    return CCE_LB_COUNT;
}

void cce_layer_bias_name(int layer, cce_layer_bias which, char *buf, size_t bufsize) {
    if (bufsize == 0) return;
    if (!valid_kind(which)) {
        buf[0] = '\0';
        return;
    }
    snprintf(buf, bufsize, "layers.%d.%s", layer, bias_suffix[which]);
}

/* ---- Slots ----------------------------------------------------------------------------------- */

model_slot *model_bias_slot(const cce_model *m, int layer, cce_layer_bias which) {
    if (!m || layer < 0 || layer >= m->cfg.n_layers || !valid_kind(which)) return NULL;
    return &m->biases[(size_t)layer * CCE_LB_COUNT + (size_t)which];
}

model_slot *model_bias_slot_of_name(const cce_model *m, const char *name) {
    if (strncmp(name, "layers.", 7) != 0) return NULL;
    const char *p = name + 7;
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9')) return NULL;
    long layer = 0;
    while (*p >= '0' && *p <= '9' && layer <= m->cfg.n_layers) layer = layer * 10 + (*p++ - '0');
    if (*p != '.' || layer >= m->cfg.n_layers) return NULL;
    for (int b = 0; b < CCE_LB_COUNT; b++)
        if (!strcmp(p + 1, bias_suffix[b]))
            return model_bias_slot(m, (int)layer, (cce_layer_bias)b);
    return NULL;
}

int64_t cce_layer_bias_rows(const cce_config *c, const cce_layer_shape *ls, cce_layer_bias which) {
    int64_t hd = c->head_dim;
    switch (which) {
    case CCE_LB_Q:
        return (int64_t)ls->n_heads * hd;
    case CCE_LB_K:
    case CCE_LB_V:
        return (int64_t)ls->n_kv_heads * hd;
    case CCE_LB_GATE:
    case CCE_LB_UP:
        return ls->hidden_dim;
    case CCE_LB_O:
    case CCE_LB_DOWN:
    case CCE_LB_COUNT:
        break;
    }
    return c->dim;
}

void model_bias_refresh(cce_model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int b = 0; b < CCE_LB_COUNT; b++) {
            model_slot *sl = model_bias_slot(m, l, (cce_layer_bias)b);
            cce_layer_bias_name(l, (cce_layer_bias)b, sl->name, sizeof sl->name);
            sl->ndim = 1;
            sl->shape[0] = cce_layer_bias_rows(&m->cfg, &m->layers[l], (cce_layer_bias)b);
            for (int k = 1; k < CCE_TENSOR_MAX_DIMS; k++) sl->shape[k] = 1;
        }
}

cce_status model_bias_index_file(cce_model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        if (m->layers[l].removed) continue; /* a removed layer has no biases */
        for (int b = 0; b < CCE_LB_COUNT; b++) {
            model_slot *sl = model_bias_slot(m, l, (cce_layer_bias)b);
            int ndim;
            int64_t shape[CCE_TENSOR_MAX_DIMS];
            cce_status s =
                cce_store_tensor_shape(m->store, m->cfg.n_layers, sl->name, &ndim, shape);
            if (s == CCE_ERR_NOT_FOUND) {
                cce_error_clear();
                continue;
            }
            if (s) return s;
            if (ndim != 1 || shape[0] != sl->shape[0]) {
                char got[96];
                model_shape_text(ndim, shape, got, sizeof got);
                return cce_fail(CCE_ERR_FORMAT,
                                "%s: bias %s has shape %s, the config implies [%lld]", m->path,
                                sl->name, got, (long long)sl->shape[0]);
            }
            sl->present = 1;
        }
    }
    return CCE_OK;
}

/* ---- Access ---------------------------------------------------------------------------------- */

static int slot_layer(const cce_model *m, const model_slot *sl) {
    return (int)((size_t)(sl - m->biases) / CCE_LB_COUNT);
}

/* Checks t against bias slot sl: a live layer, 1-D of the weight's rows, finite values. */
static cce_status check_bias(const cce_model *m, const model_slot *sl, const cce_tensor *t) {
    int layer = slot_layer(m, sl);
    if (m->layers[layer].removed)
        return cce_fail(CCE_ERR_STATE, "bias %s: layer %d is removed", sl->name, layer);
    if (t->ndim != 1 || t->shape[0] != sl->shape[0]) {
        char got[96], weight[NAME_MAX_LEN];
        model_shape_text(t->ndim, t->shape, got, sizeof got);
        cce_layer_tensor_name(layer, bias_weight[(size_t)(sl - m->biases) % CCE_LB_COUNT], weight,
                              sizeof weight);
        return cce_fail(CCE_ERR_ARG, "bias %s: shape %s, the weight %s has %lld rows", sl->name,
                        got, weight, (long long)sl->shape[0]);
    }
    return cce_tensor_check_finite(t, sl->name);
}

cce_status model_bias_put(cce_model *m, model_slot *sl, cce_tensor *t) {
    cce_status s = check_bias(m, sl, t);
    if (s) return s;
    if (sl->t != t) cce_tensor_free(sl->t); /* a variant's view frees no data */
    sl->t = t;
    sl->shared = 0;
    sl->present = 1;
    return CCE_OK;
}

int cce_model_has_layer_bias(const cce_model *m, int layer, cce_layer_bias which) {
    const model_slot *sl = model_bias_slot(m, layer, which);
    return sl && sl->present;
}

static cce_status no_slot(const cce_model *m, int layer, cce_layer_bias which) {
    if (!m) return cce_fail(CCE_ERR_ARG, "layer bias: no model given");
    if (layer < 0 || layer >= m->cfg.n_layers)
        return cce_fail(CCE_ERR_NOT_FOUND, "bias of layer %d: the layer is outside [0, %d)", layer,
                        (int)m->cfg.n_layers);
    return cce_fail(CCE_ERR_NOT_FOUND, "layer %d: bias kind %d is unknown", layer, (int)which);
}

cce_status cce_model_layer_bias(cce_model *m, int layer, cce_layer_bias which, cce_tensor **out) {
    *out = NULL;
    model_slot *sl = model_bias_slot(m, layer, which);
    if (!sl) return no_slot(m, layer, which);
    if (!sl->present) return CCE_OK;
    return model_load_slot(m, sl, out);
}

cce_status cce_model_set_layer_bias(cce_model *m, int layer, cce_layer_bias which, cce_tensor *t) {
    model_slot *sl = model_bias_slot(m, layer, which);
    if (!sl) {
        cce_tensor_free(t);
        return no_slot(m, layer, which);
    }
    if (!t) {
        model_slot_clear(sl);
        return CCE_OK;
    }
    cce_status s = model_bias_put(m, sl, t);
    if (s) cce_tensor_free(t);
    return s;
}

size_t cce_model_bias_count(const cce_model *m) {
    size_t n = 0;
    for (size_t i = 0; i < (size_t)m->cfg.n_layers * CCE_LB_COUNT; i++) n += m->biases[i].present;
    return n;
}

int64_t model_bias_layer_params(const cce_model *m, int layer) {
    int64_t n = 0;
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        const model_slot *sl = model_bias_slot(m, layer, (cce_layer_bias)b);
        if (sl && sl->present) n += sl->shape[0];
    }
    return n;
}

cce_status model_bias_save(cce_model *m, cce_store_writer *w) {
    int n_layers = m->cfg.n_layers;
    for (size_t i = 0; i < (size_t)n_layers * CCE_LB_COUNT; i++) {
        model_slot *sl = &m->biases[i];
        if (!sl->present) continue;
        int loaded = sl->t != NULL;
        cce_tensor *t;
        cce_status s = model_load_slot(m, sl, &t);
        if (!s) s = cce_store_write_tensor(w, n_layers, sl->name, t);
        if (!loaded) { /* copied through, as the weights are */
            cce_tensor_free(sl->t);
            sl->t = NULL;
            sl->shared = 0;
        }
        if (s) return s;
    }
    return CCE_OK;
}
