/* Hugging Face tokenizer.json (+ tokenizer_config.json) in and out of the project's tokenizer.
 *
 * Supported on import: a BPE model of one of two kinds.
 *
 * SentencePiece style (Llama, Mistral): byte_fallback, the space handling (normalizer Prepend
 * "▁" + Replace " " -> "▁", which always prefixes "▁", or a Metaspace pre-tokenizer with a
 * prefix, which does so only where the text, spaces replaced, does not start with "▁" already,
 * prepend_scheme "first" only at the start of the text), the matching decoders
 * (Replace/ByteFallback/Fuse/Strip or Metaspace). "▁" becomes a space in the pieces, as in
 * llama2.c's tokenizer.bin. Ranked merges become piece scores: a piece made by merges scores
 * -(its best merge rank); any other piece scores -1e10 and so is never formed by merging. This
 * kind merges by score (leftmost on ties), so the importer accepts a merge list only when that
 * gives the same merges as applying it by rank: every split of a mergeable piece into two
 * formable pieces must be a merge of the list, and all merges producing one piece must be
 * consecutive in the list (true of SentencePiece conversions); other lists get CCE_ERR_FORMAT
 * naming the merge.
 *
 * ByteLevel (GPT-2, Llama 3, Qwen2): a ByteLevel pre-tokenizer (add_prefix_space; use_regex:
 * GPT-2's pattern), or a Split pre-tokenizer whose Regex is exactly GPT-2's, Llama 3's or
 * Qwen2's pattern (behavior Isolated) followed by ByteLevel(use_regex=false); the ByteLevel
 * decoder; optional NFC normalizer; ignore_merges and fuse_unk. Merges apply by rank within each
 * word, as the library does. Any other regex is refused naming the pattern; byte_fallback with
 * ByteLevel is refused (every byte already has its character).
 *
 * Both: added_tokens (every one, special or not, is split out of the text where written
 * literally, leftmost then longest, honouring lstrip/rstrip; single_word is refused); the
 * model's unk_token; bos/eos/pad from tokenizer_config.json (a string or {"content"}; null: none).
 * Without a config entry, SentencePiece BOS/EOS are ids 1/2 (llama2.c's convention) and ByteLevel
 * ones <|endoftext|> if it is a token (GPT2Tokenizer's default). Unigram/WordPiece/WordLevel
 * models, other normalizers/pre-tokenizers/decoders, dropout, subword affixes, and mixing the
 * two kinds' parts get CCE_ERR_FORMAT naming the part. A tokenizer with fewer tokens than the
 * model's vocab_size (Qwen2 pads its embedding) gets unreachable padding ids up to it.
 *
 * Known differences from the Hugging Face library, documented rather than emulated:
 *   - the NFC normalizer is recorded but not applied (no Unicode normalization library among
 *     the dependencies): text not already in NFC may encode differently;
 *   - non-special added tokens marked normalized are matched in the raw text (the same unless a
 *     normalizer would change them);
 *   - SentencePiece kind: a literal "▁" in the text is not read as a space (though, as with a
 *     space, a segment starting with one gets no Metaspace prefix); when two different merges
 *     make the same piece and overlap (x+y = y+z), the leftmost is applied (as SentencePiece
 *     does) rather than the lower rank;
 *   - character classes of the ByteLevel patterns: see tokenizer_pretok.c (equal to Unicode
 *     14.0's with glibc 2.36). */
#ifndef CCE_TOKENIZER_HF_H
#define CCE_TOKENIZER_HF_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tokenizer.h"

/* Parses tokenizer.json text (json, json_len bytes) and optional tokenizer_config.json text
 * (config may be NULL) into a tokenizer. `what` names the source in error messages.
 * vocab_size > 0 is the model's: more tokens is CCE_ERR_FORMAT naming both counts, fewer (a
 * padded embedding, as Qwen2's) are padded up to it with cce_tokenizer_pad_to; 0 accepts any
 * count. The caller owns *out. */
cce_status cce_tokenizer_parse_hf(const char *json, size_t json_len, const char *config,
                                  size_t config_len, const char *what, int32_t vocab_size,
                                  cce_tokenizer **out);

/* Reads the file tokenizer_json and, if config_json is not NULL and exists, tokenizer_config.json
 * (see cce_tokenizer_parse_hf). The caller owns *out. */
cce_status cce_tokenizer_load_hf(const char *tokenizer_json, const char *config_json,
                                 int32_t vocab_size, cce_tokenizer **out);

/* tok as tokenizer.json text (tokenizer_hf_export.c). SentencePiece kind: vocab with " " written
 * as "▁", and ranked merges derived the way SentencePiece BPE conversions do: for each piece of
 * more than one character scoring above -1e10, every split into two pieces both in the
 * vocabulary is a merge; merges are ordered by the piece's score (descending), then piece id,
 * then the ids of the two halves; pieces containing "▁" get CCE_ERR_FORMAT. ByteLevel kind: the
 * pieces as stored, the merges in rank order, the pre-tokenizer of the tokenizer's pattern.
 * Padding pieces (cce_tokenizer_pad_to) are left out, so a padded tokenizer gives back the
 * tokenizer.json it was parsed from. Pieces that are not valid UTF-8 get CCE_ERR_FORMAT. *json is
 * malloc'd and owned by the caller. */
cce_status cce_tokenizer_hf_json(const cce_tokenizer *tok, char **json);

/* Writes dir/tokenizer.json and dir/tokenizer_config.json (BOS/EOS/UNK/PAD or null,
 * add_bos_token: true for the SentencePiece kind) for tok, each through a temporary name +
 * rename. */
cce_status cce_tokenizer_save_hf(const cce_tokenizer *tok, const char *dir);

#endif
