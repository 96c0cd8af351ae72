/* The inside of a cce_model, shared by model.c (models, lazy loading, saving) and variant.c
 * (copy-on-write variants). Not a public API: everything else goes through model.h. */
#ifndef CCE_MODEL_INTERNAL_H
#define CCE_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "store.h"

#define NAME_MAX_LEN 64

typedef struct model_slot {
    int present;
    int ndim;
    int64_t shape[CCE_TENSOR_MAX_DIMS]; /* the tensor's shape, known before it is loaded */
    cce_tensor *t;                      /* NULL until loaded (opened models, variants) */
    int shared;                         /* variants: t is a borrowed view of the base's tensor */
    cce_encoding *enc; /* how t is stored (encoding.h), owned; NULL: plain float32 */
    char name[NAME_MAX_LEN];
} model_slot;

struct cce_model {
    cce_config cfg;
    cce_layer_shape *layers; /* [n_layers] */
    cce_tokenizer *tok;      /* NULL if none */
    int tok_borrowed;        /* 1: tok belongs to the base model (variants) */
    char *source;            /* never NULL */
    char *path;              /* NULL for in-memory models */
    cce_store *store;        /* NULL for in-memory models */
    cce_model *base;         /* variants: the model whose tensors are shared; else NULL */
    model_slot *slots;       /* [n_slots] */
    size_t n_slots;
    size_t *order; /* [n_present]: indices of present slots, canonical order */
    size_t n_present;
};

/* Allocates the model shell: config copy, uniform layer shapes, the slot table with names and
 * expected shapes (nothing present yet). The caller owns *out. (model.c) */
cce_status model_shell(const cce_config *cfg, cce_model **out);

/* Recomputes every slot's expected shape from the config and the layer shapes. (model.c) */
void model_refresh_shapes(cce_model *m);

/* Rebuilds the enumeration order from the present flags. (model.c) */
void model_rebuild_order(cce_model *m);

/* The slot of a canonical tensor name (lm_head of a tied model resolves to embed_tokens), or
 * (size_t)-1. (model.c) */
size_t model_slot_index(const cce_model *m, const char *name);

/* A variant's slot i that holds nothing yet: a borrowed view of the base's tensor of that name
 * (loading it in the base if needed). Sets m->slots[i].t. (variant.c) */
cce_status model_variant_borrow(cce_model *m, size_t i);

#endif
