/* The parts of the /tokenizer group of a model file that go beyond a llama2.c tokenizer (type
 * "hf-bpe"; layout in store.h and framework/README.md). Used by store.c and store_write.c. Not a
 * public API. */
#ifndef CCE_TOKENIZER_STORE_H
#define CCE_TOKENIZER_STORE_H

#include <hdf5.h>
#include <stdint.h>

#include "status.h"
#include "tokenizer.h"

/* Writes kind, pretokenizer, flags and pad_id attributes and the merges / added_ids /
 * added_flags datasets of tok into the open group g (gpath, file name the errors). */
cce_status tokenizer_store_write_extra(hid_t g, const char *file, const char *gpath,
                                       const cce_tokenizer *tok);

/* Builds the tokenizer of an "hf-bpe" group g from its n pieces and scores (already read), the
 * bos/eos/unk attributes (given) and the rest of the group. CCE_ERR_FORMAT names the file and
 * object for anything missing or inconsistent. The caller owns *out. */
cce_status tokenizer_store_read(hid_t g, const char *file, const char *gpath, int32_t n,
                                const char *const *pieces, const float *scores, int32_t bos,
                                int32_t eos, int32_t unk, cce_tokenizer **out);

#endif
