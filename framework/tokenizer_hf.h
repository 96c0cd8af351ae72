/* Hugging Face tokenizer.json (+ tokenizer_config.json) in and out of the project's tokenizer.
 *
 * Supported on import: a BPE model with byte_fallback, the SentencePiece-style space handling
 * (normalizer Prepend "▁" + Replace " " -> "▁", or a Metaspace pre-tokenizer with a prefix), the
 * matching decoders (Replace/ByteFallback/Fuse/Strip or Metaspace), as Llama and Mistral ship
 * them. "▁" becomes a space in the pieces, as in llama2.c's tokenizer.bin. Ranked merges become
 * piece scores: a piece made by merges scores -(its best merge rank); any other piece scores
 * -1e10 and so is never formed by merging. The project's tokenizer merges by score (leftmost on
 * ties), so the importer accepts a merge list only when that gives the same merges as applying
 * it by rank: every split of a mergeable piece into two formable pieces must be a merge of the
 * list, and all merges producing one piece must be consecutive in the list (true of
 * SentencePiece conversions). Other lists, Unigram/WordPiece/WordLevel models, ByteLevel (GPT-2
 * style) pre-tokenizers and decoders, and other normalizers get CCE_ERR_FORMAT naming the part.
 * <unk>/<s>/</s> must sit at ids 0/1/2 (the project's fixed special ids).
 *
 * Known differences from the Hugging Face library, documented rather than emulated: added
 * tokens written literally in the text (e.g. "<s>") are encoded as plain text; a literal "▁"
 * in the text is not read as a space; when two different merges make the same piece and
 * overlap (x+y = y+z), the leftmost is applied (as SentencePiece does) rather than the lower
 * rank. */
#ifndef CCE_TOKENIZER_HF_H
#define CCE_TOKENIZER_HF_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tokenizer.h"

/* Parses tokenizer.json text (json, json_len bytes) and optional tokenizer_config.json text
 * (config may be NULL) into a tokenizer. `what` names the source in error messages.
 * vocab_size > 0 requires exactly that many tokens; 0 accepts any count. The caller owns *out. */
cce_status cce_tokenizer_parse_hf(const char *json, size_t json_len, const char *config,
                                  size_t config_len, const char *what, int32_t vocab_size,
                                  cce_tokenizer **out);

/* Reads the file tokenizer_json and, if config_json is not NULL and exists, tokenizer_config.json
 * (see cce_tokenizer_parse_hf). The caller owns *out. */
cce_status cce_tokenizer_load_hf(const char *tokenizer_json, const char *config_json,
                                 int32_t vocab_size, cce_tokenizer **out);

/* tok as tokenizer.json text: vocab with " " written as "▁", and ranked merges derived the way
 * SentencePiece BPE conversions do: for each piece of more than one character scoring above
 * -1e10, every split into two pieces both in the vocabulary is a merge; merges are ordered by the
 * piece's score (descending), then piece id, then the ids of the two halves. Pieces that are not
 * valid UTF-8 or contain "▁" get CCE_ERR_FORMAT. *json is malloc'd and owned by the caller. */
cce_status cce_tokenizer_hf_json(const cce_tokenizer *tok, char **json);

/* Writes dir/tokenizer.json and dir/tokenizer_config.json (BOS/EOS/UNK, add_bos_token) for tok,
 * each through a temporary name + rename. */
cce_status cce_tokenizer_save_hf(const cce_tokenizer *tok, const char *dir);

#endif
