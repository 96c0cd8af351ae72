/* Changing a layer's widths in a model or variant (model.h, "Layer shapes"): the widths and the
 * tensors (and biases) of the new shapes change together, and a removed block drops its tensors
 * and biases.
 *
 * The layer shape is swapped in first and the expected tensor shapes recomputed
 * (model_refresh_shapes); if any given or kept tensor or bias disagrees, the old shape is put back
 * and nothing else has changed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "model_internal.h"

static cce_status check_widths(const cce_model *m, int layer, const cce_layer_shape *s) {
    const cce_config *c = &m->cfg;
    if (s->removed)
        return cce_fail(CCE_ERR_ARG, "layer %d: reshape with removed = %d (use remove_layer)",
                        layer, (int)s->removed);
    if (s->hidden_dim < 1 || s->hidden_dim > c->hidden_dim)
        return cce_fail(CCE_ERR_RANGE, "layer %d: hidden_dim = %d is outside [1, %d]", layer,
                        (int)s->hidden_dim, (int)c->hidden_dim);
    if (s->n_heads < 1 || s->n_heads > c->n_heads)
        return cce_fail(CCE_ERR_RANGE, "layer %d: n_heads = %d is outside [1, %d]", layer,
                        (int)s->n_heads, (int)c->n_heads);
    if (s->n_kv_heads < 1 || s->n_kv_heads > c->n_kv_heads)
        return cce_fail(CCE_ERR_RANGE, "layer %d: n_kv_heads = %d is outside [1, %d]", layer,
                        (int)s->n_kv_heads, (int)c->n_kv_heads);
    if (!s->kv_of_head) return cce_fail(CCE_ERR_ARG, "layer %d: no kv_of_head given", layer);
    for (int h = 0; h < s->n_heads; h++)
        if (s->kv_of_head[h] < 0 || s->kv_of_head[h] >= s->n_kv_heads)
            return cce_fail(CCE_ERR_RANGE, "layer %d: kv_of_head[%d] = %d is outside [0, %d)",
                            layer, h, (int)s->kv_of_head[h], (int)s->n_kv_heads);
    return CCE_OK;
}

/* The slot of block tensor w of a layer. */
static size_t layer_slot(const cce_model *m, int layer, cce_layer_tensor w) {
    char name[NAME_MAX_LEN];
    cce_layer_tensor_name(layer, w, name, sizeof name);
    return model_slot_index(m, name);
}

/* Checks every slot of the layer against the (already refreshed) expected shapes: the given
 * tensor, or the one that is kept (its shape before the change is in old_*). */
static cce_status check_tensors(const cce_model *m, int layer, cce_tensor *const *tensors,
                                const int old_ndim[CCE_LT_COUNT],
                                int64_t old_shape[CCE_LT_COUNT][CCE_TENSOR_MAX_DIMS]) {
    for (int w = 0; w < CCE_LT_COUNT; w++) {
        const model_slot *sl = &m->slots[layer_slot(m, layer, (cce_layer_tensor)w)];
        const cce_tensor *t = tensors ? tensors[w] : NULL;
        int ndim = t ? t->ndim : old_ndim[w];
        const int64_t *shape = t ? t->shape : old_shape[w];
        int same = ndim == sl->ndim;
        for (int k = 0; same && k < ndim; k++) same = shape[k] == sl->shape[k];
        if (same) continue;
        char got[64], want[64];
        model_shape_text(ndim, shape, got, sizeof got);
        model_shape_text(sl->ndim, sl->shape, want, sizeof want);
        return cce_fail(CCE_ERR_ARG, "tensor %s: %s %s, the new widths of layer %d imply %s",
                        sl->name, t ? "shape" : "kept shape", got, layer, want);
    }
    return CCE_OK;
}

/* Checks the layer's biases against the (already refreshed) expected lengths: the given bias, or
 * the present one that is kept (its length before the change in old_len). */
static cce_status check_biases(const cce_model *m, int layer, cce_tensor *const *biases,
                               const int64_t old_len[CCE_LB_COUNT]) {
    for (int b = 0; b < CCE_LB_COUNT; b++) {
        const model_slot *sl = model_bias_slot(m, layer, (cce_layer_bias)b);
        const cce_tensor *t = biases ? biases[b] : NULL;
        if (!t && !sl->present) continue;
        if (t && (t->ndim != 1 || t->shape[0] != sl->shape[0])) {
            char got[64];
            model_shape_text(t->ndim, t->shape, got, sizeof got);
            return cce_fail(CCE_ERR_ARG,
                            "bias %s: shape %s, the new widths of layer %d imply [%lld]", sl->name,
                            got, layer, (long long)sl->shape[0]);
        }
        if (!t && old_len[b] != sl->shape[0])
            return cce_fail(CCE_ERR_ARG,
                            "bias %s: kept length %lld, the new widths of layer %d imply %lld (a "
                            "resize of its weight's rows must give the sliced bias too)",
                            sl->name, (long long)old_len[b], layer, (long long)sl->shape[0]);
        if (t) {
            cce_status s = cce_tensor_check_finite(t, sl->name);
            if (s) return s;
        }
    }
    return CCE_OK;
}

cce_status cce_model_reshape_layer(cce_model *m, int layer, const cce_layer_shape *shape,
                                   cce_tensor *const *tensors) {
    return cce_model_reshape_layer_biases(m, layer, shape, tensors, NULL);
}

cce_status cce_model_reshape_layer_biases(cce_model *m, int layer, const cce_layer_shape *shape,
                                          cce_tensor *const *tensors, cce_tensor *const *biases) {
    if (!m || !shape) return cce_fail(CCE_ERR_ARG, "reshape_layer: no model or shape given");
    if (layer < 0 || layer >= m->cfg.n_layers)
        return cce_fail(CCE_ERR_RANGE, "reshape_layer: layer %d is outside [0, %d)", layer,
                        (int)m->cfg.n_layers);
    if (m->layers[layer].removed)
        return cce_fail(CCE_ERR_STATE, "reshape_layer: layer %d is removed", layer);
    cce_status s = check_widths(m, layer, shape);
    if (s) return s;
    int32_t *map = malloc((size_t)shape->n_heads * sizeof *map); /* [n_heads] */
    if (!map) return cce_fail(CCE_ERR_NOMEM, "layer %d: head map", layer);
    memcpy(map, shape->kv_of_head, (size_t)shape->n_heads * sizeof *map);

    int old_ndim[CCE_LT_COUNT];
    int64_t old_shape[CCE_LT_COUNT][CCE_TENSOR_MAX_DIMS], old_len[CCE_LB_COUNT];
    for (int w = 0; w < CCE_LT_COUNT; w++) {
        const model_slot *sl = &m->slots[layer_slot(m, layer, (cce_layer_tensor)w)];
        old_ndim[w] = sl->ndim;
        memcpy(old_shape[w], sl->shape, sizeof old_shape[w]);
    }
    for (int b = 0; b < CCE_LB_COUNT; b++)
        old_len[b] = model_bias_slot(m, layer, (cce_layer_bias)b)->shape[0];
    cce_layer_shape old = m->layers[layer];
    m->layers[layer] = *shape;
    m->layers[layer].kv_of_head = map;
    model_refresh_shapes(m);
    if ((s = check_tensors(m, layer, tensors, old_ndim, old_shape)) ||
        (s = check_biases(m, layer, biases, old_len))) {
        m->layers[layer] = old;
        model_refresh_shapes(m);
        free(map);
        return s;
    }
    free(old.kv_of_head);
    for (int w = 0; tensors && w < CCE_LT_COUNT; w++) {
        if (!tensors[w]) continue;
        model_slot *sl = &m->slots[layer_slot(m, layer, (cce_layer_tensor)w)];
        if (sl->t != tensors[w]) cce_tensor_free(sl->t); /* a variant's view frees no data */
        sl->t = tensors[w];
        sl->shared = 0;
    }
    for (int b = 0; biases && b < CCE_LB_COUNT; b++) {
        if (!biases[b]) continue;
        model_slot *sl = model_bias_slot(m, layer, (cce_layer_bias)b);
        if (sl->t != biases[b]) cce_tensor_free(sl->t);
        sl->t = biases[b];
        sl->shared = 0;
        sl->present = 1;
    }
    return CCE_OK;
}

cce_status cce_model_remove_layer(cce_model *m, int layer) {
    if (!m) return cce_fail(CCE_ERR_ARG, "remove_layer: no model given");
    if (layer < 0 || layer >= m->cfg.n_layers)
        return cce_fail(CCE_ERR_RANGE, "remove_layer: layer %d is outside [0, %d)", layer,
                        (int)m->cfg.n_layers);
    m->layers[layer].removed = 1;
    for (int w = 0; w < CCE_LT_COUNT; w++) {
        model_slot *sl = &m->slots[layer_slot(m, layer, (cce_layer_tensor)w)];
        cce_tensor_free(sl->t);
        sl->t = NULL;
        sl->shared = 0;
        sl->present = 0;
    }
    for (int b = 0; b < CCE_LB_COUNT; b++)
        model_slot_clear(model_bias_slot(m, layer, (cce_layer_bias)b));
    model_rebuild_order(m);
    return CCE_OK;
}
