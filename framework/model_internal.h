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
    model_slot *slots;       /* [n_slots] weights (see model.c for the order) */
    size_t n_slots;
    /* [n_layers * CCE_LB_COUNT] optional biases, slot L * CCE_LB_COUNT + b; present when the
     * model has that bias. Not in `order` (the enumeration lists weights only). */
    model_slot *biases;
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

/* "[a, b]": shape [ndim] as text for error messages, into buf [size]. */
void model_shape_text(int ndim, const int64_t *shape, char *buf, size_t size);

/* The slot of a canonical tensor name (lm_head of a tied model resolves to embed_tokens), or
 * (size_t)-1. (model.c) */
size_t model_slot_index(const cce_model *m, const char *name);

/* A variant's slot (weight or bias) that holds nothing yet: a borrowed view of the base's tensor
 * of that name (loading it in the base if needed). Sets sl->t. (variant.c) */
cce_status model_variant_borrow(cce_model *m, model_slot *sl);

/* Loads a present slot (weight or bias) from the file or the base if needed; *out borrowed.
 * CCE_ERR_NOT_FOUND names the tensor if the slot is absent. (model.c) */
cce_status model_load_slot(cce_model *m, model_slot *sl, cce_tensor **out);

/* The bias slot of a layer, or NULL for a layer or kind outside the model. (model_bias.c) */
model_slot *model_bias_slot(const cce_model *m, int layer, cce_layer_bias which);

/* The bias slot of a name ("layers.3.mlp.up_proj.bias"), or NULL. (model_bias.c) */
model_slot *model_bias_slot_of_name(const cce_model *m, const char *name);

/* Names the bias slots and sets their expected shapes [rows of their weight] from the weight
 * slots (call after the weights' shapes are known). (model_bias.c) */
void model_bias_refresh(cce_model *m);

/* Marks present the biases the file has (layers not removed), checking their shapes.
 * CCE_ERR_FORMAT names the file and the bias. (model_bias.c) */
cce_status model_bias_index_file(cce_model *m);

/* Puts t [rows] into bias slot sl (cce_model_put_tensor semantics: owned by the model on success,
 * the caller's on failure). (model_bias.c) */
cce_status model_bias_put(cce_model *m, model_slot *sl, cce_tensor *t);

/* Writes every present bias (loading each lazily and dropping it again, like the weights).
 * (model_bias.c) */
cce_status model_bias_save(cce_model *m, cce_store_writer *w);

/* Parameters in the present biases of one layer. (model_bias.c) */
int64_t model_bias_layer_params(const cce_model *m, int layer);

/* Frees a slot's tensor and encoding and marks it absent. (model.c) */
void model_slot_clear(model_slot *sl);

#endif
