/* Tokenizers. One type so far: the llama2.c / SentencePiece-style BPE (scored pieces, byte
 * fallback, BOS/EOS, the dummy-prefix space). */
#ifndef CCE_TOKENIZER_H
#define CCE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct cce_tokenizer cce_tokenizer;

/* Reads a llama2.c tokenizer.bin (int32 max_token_length, then per token: float score,
 * int32 len, len bytes) holding exactly vocab_size tokens. Truncated or inconsistent files get
 * CCE_ERR_FORMAT naming the file and token index. The caller owns *out. */
cce_status cce_tokenizer_load_llama2c(const char *path, int32_t vocab_size, cce_tokenizer **out);

/* Builds a tokenizer from pieces (NUL-terminated UTF-8 strings, copied) and scores. bos/eos/unk
 * ids are 1/2/0 in the llama2.c convention; byte-fallback pieces "<0x00>".."<0xFF>" are found by
 * name. The caller owns *out. */
cce_status cce_tokenizer_new(int32_t vocab_size, const char *const *pieces, const float *scores,
                             cce_tokenizer **out);

/* A byte-level tokenizer of vocab_size >= 259 pieces: <unk> <s> </s>, the 256 byte pieces, then
 * filler pieces "<unused_N>" that never match text. The caller owns *out. */
cce_status cce_tokenizer_new_bytes(int32_t vocab_size, cce_tokenizer **out);

void cce_tokenizer_free(cce_tokenizer *t);

int32_t cce_tokenizer_vocab_size(const cce_tokenizer *t);
int32_t cce_tokenizer_bos(const cce_tokenizer *t);
int32_t cce_tokenizer_eos(const cce_tokenizer *t);
/* Piece text and score of id (borrowed), for storing the tokenizer. NULL / NaN for an id outside
 * the vocabulary. */
const char *cce_tokenizer_piece(const cce_tokenizer *t, int32_t id);
float cce_tokenizer_score(const cce_tokenizer *t, int32_t id);

/* Encodes len bytes of UTF-8 text: optional BOS, the dummy-prefix space (when text is non-empty),
 * pieces merged by best score (leftmost on ties) in O(n log n), byte fallback for anything not in
 * the vocabulary, optional EOS. *tokens is malloc'd and owned by the caller; *n_tokens is its
 * length. */
cce_status cce_tokenizer_encode(const cce_tokenizer *t, const char *text, size_t len, int bos,
                                int eos, int32_t **tokens, size_t *n_tokens);

/* The text of token `id` following token `prev`: byte pieces become their byte, and the leading
 * space of the first piece after BOS is dropped. Borrowed; valid while t lives. *len receives
 * the byte length (a byte piece may be a NUL byte). An id outside the vocabulary decodes to "". */
const char *cce_tokenizer_decode(const cce_tokenizer *t, int32_t prev, int32_t id, size_t *len);

/* A 64-bit fingerprint of the vocabulary and scores, used to key token caches. */
uint64_t cce_tokenizer_fingerprint(const cce_tokenizer *t);

#endif
