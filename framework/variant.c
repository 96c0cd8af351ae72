/* Copy-on-write variants of a model (model.h, "Variants"): a model shell with the base's config,
 * layer shapes and tokenizer whose slots start empty and are filled on demand with borrowed views
 * of the base's tensors. Tensors put into the variant replace the views and are owned by it. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "model_internal.h"

/* Copies one layer shape, with its own kv_of_head array. */
static cce_status copy_layer_shape(const cce_layer_shape *src, cce_layer_shape *dst, int layer) {
    int32_t *map = malloc((size_t)(src->n_heads > 0 ? src->n_heads : 1) * sizeof *map);
    if (!map) return cce_fail(CCE_ERR_NOMEM, "variant: layer %d head map", layer);
    if (src->n_heads > 0 && src->kv_of_head)
        memcpy(map, src->kv_of_head, (size_t)src->n_heads * sizeof *map);
    free(dst->kv_of_head);
    *dst = *src;
    dst->kv_of_head = map;
    return CCE_OK;
}

cce_status cce_model_variant_new(cce_model *base, cce_model **out) {
    if (!out) return cce_fail(CCE_ERR_ARG, "variant: no output given");
    *out = NULL;
    if (!base) return cce_fail(CCE_ERR_ARG, "variant: no base model given");
    cce_model *m;
    cce_status s = model_shell(&base->cfg, &m);
    if (s) return s;
    for (int l = 0; l < base->cfg.n_layers; l++)
        if ((s = copy_layer_shape(&base->layers[l], &m->layers[l], l))) {
            cce_model_free(m);
            return s;
        }
    model_refresh_shapes(m);
    for (size_t i = 0; i < m->n_slots; i++) m->slots[i].present = base->slots[i].present;
    for (size_t i = 0; i < (size_t)base->cfg.n_layers * CCE_LB_COUNT; i++)
        m->biases[i].present = base->biases[i].present;
    model_rebuild_order(m);
    cce_model_set_source(m, base->source);
    m->tok = base->tok;
    m->tok_borrowed = 1;
    m->base = base;
    *out = m;
    return CCE_OK;
}

cce_status model_variant_borrow(cce_model *m, model_slot *sl) {
    cce_tensor *bt, *view;
    cce_status s = cce_model_tensor(m->base, sl->name, &bt);
    if (s) {
        cce_error_prefix("variant: base tensor: ");
        return s;
    }
    if (bt->ndim != sl->ndim || memcmp(bt->shape, sl->shape, sizeof bt->shape) != 0)
        return cce_fail(CCE_ERR_STATE,
                        "variant: the base's tensor %s changed shape after the variant was made",
                        sl->name);
    if ((s = cce_tensor_borrow(bt->data, bt->ndim, bt->shape, &view))) return s;
    sl->t = view;
    sl->shared = 1;
    return CCE_OK;
}

cce_model *cce_model_base(const cce_model *m) {
    return m ? m->base : NULL;
}

int cce_model_tensor_is_shared(const cce_model *m, const char *name) {
    if (!m || !m->base || !name) return 0;
    size_t i = model_slot_index(m, name);
    const model_slot *sl = i == (size_t)-1 ? model_bias_slot_of_name(m, name) : &m->slots[i];
    if (!sl || !sl->present) return 0;
    return sl->t == NULL || sl->shared;
}

size_t cce_model_owned_tensor_count(const cce_model *m) {
    if (!m || !m->base) return 0;
    size_t n = 0;
    for (size_t k = 0; k < m->n_present; k++) {
        const model_slot *sl = &m->slots[m->order[k]];
        n += sl->t != NULL && !sl->shared;
    }
    for (size_t i = 0; i < (size_t)m->cfg.n_layers * CCE_LB_COUNT; i++) {
        const model_slot *sl = &m->biases[i];
        n += sl->present && sl->t != NULL && !sl->shared;
    }
    return n;
}
