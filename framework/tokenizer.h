/* Tokenizers. Two kinds of BPE:
 *   - SentencePiece style (llama2.c's tokenizer.bin, Llama/Mistral tokenizer.json): scored pieces,
 *     the dummy-prefix space, byte fallback; pairs merge by best piece score (tokenizer_sp.c);
 *   - ByteLevel (GPT-2 style: GPT-2, Llama 3, Qwen2 tokenizer.json): every byte of the text is a
 *     character of GPT-2's byte-to-unicode alphabet, the text is first split into words by a
 *     known pre-tokenizer pattern (tokenizer_pretok.c), and ranked merges apply within each word,
 *     lowest rank first (tokenizer_bpe.c).
 * Both may carry added tokens that are split out of the text where written literally, and
 * special ids (BOS/EOS/UNK/PAD) at any id.
 *
 * BOS: cce_tokenizer_bos() is the id that starts every evaluation window and generation prompt.
 * A tokenizer without a BOS token (Qwen2's bos_token is null) returns its EOS instead: such
 * models are trained on documents separated by that token, so a window opens as a document does.
 * GPT-2 has bos = eos = <|endoftext|>. Every tokenizer has a BOS or an EOS. */
#ifndef CCE_TOKENIZER_H
#define CCE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct cce_tokenizer cce_tokenizer;

typedef enum cce_tokenizer_kind {
    CCE_TOKENIZER_SENTENCEPIECE = 0,
    CCE_TOKENIZER_BYTELEVEL = 1,
} cce_tokenizer_kind;

/* How a ByteLevel tokenizer splits text into words before merging (tokenizer_pretok.c). */
typedef enum cce_pretokenizer {
    CCE_PRETOK_NONE = 0, /* each text segment is one word */
    CCE_PRETOK_GPT2 =
        1, /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    CCE_PRETOK_LLAMA3 = 2, /* Llama 3's pattern: case-insensitive contractions, \p{N}{1,3}, ... */
    CCE_PRETOK_QWEN2 = 3,  /* Qwen2's: Llama 3's with \p{N} one digit at a time */
    CCE_PRETOK_COUNT
} cce_pretokenizer;

/* Tokenizer flags (cce_tokenizer_spec.flags). */
#define CCE_TOK_ADD_PREFIX_SPACE 1u  /* ByteLevel: " " before each segment not starting with one */
#define CCE_TOK_IGNORE_MERGES    2u  /* ByteLevel: a word that is itself a piece is that piece */
#define CCE_TOK_FUSE_UNK         4u  /* ByteLevel: a run of unknown characters gives one UNK */
#define CCE_TOK_NFC              8u  /* the source names an NFC normalizer (recorded, see _hf.h) */
#define CCE_TOK_PREFIX_FIRST     16u /* SentencePiece: dummy prefix only on a segment at offset 0 */
#define CCE_TOK_METASPACE        32u /* SentencePiece: Metaspace prefix (see cce_tokenizer_encode) */
#define CCE_TOK_FLAGS_ALL        63u

/* Added-token flags (cce_tokenizer_spec.added_flags). */
#define CCE_ADDED_SPECIAL    1u /* a special token (only recorded: all added tokens split out) */
#define CCE_ADDED_LSTRIP     2u /* the match swallows the whitespace before it */
#define CCE_ADDED_RSTRIP     4u /* the match swallows the whitespace after it */
#define CCE_ADDED_NORMALIZED 8u /* recorded for export */
#define CCE_ADDED_FLAGS_ALL  15u

/* Everything that defines a tokenizer. Arrays are borrowed. */
typedef struct cce_tokenizer_spec {
    cce_tokenizer_kind kind;
    int32_t vocab_size;
    const char *const *pieces; /* [vocab_size] NUL-terminated UTF-8 (ByteLevel: in GPT-2's
                                  alphabet, e.g. "\xC4\xA0the" for " the") */
    const float *scores;       /* [vocab_size] merge scores (SentencePiece); NULL: all 0 */
    int32_t n_merges;
    const int32_t *merges; /* [n_merges, 2] left and right piece ids, rank order (ByteLevel;
                              SentencePiece takes none) */
    int32_t bos_id, eos_id, unk_id, pad_id; /* -1: none */
    int32_t n_added;
    const int32_t *added_ids;   /* [n_added] pieces split out of the text where written */
    const uint8_t *added_flags; /* [n_added] CCE_ADDED_* bits; NULL: all 0 */
    cce_pretokenizer pretok;    /* ByteLevel only */
    uint32_t flags;             /* CCE_TOK_* */
    int32_t
        n_padding; /* the last n_padding pieces are padding (see cce_tokenizer_pad_to); 0: none */
} cce_tokenizer_spec;

/* Builds a tokenizer of either kind. Checked: ids in range, at least a BOS or an EOS, every merge
 * joins two pieces whose concatenation is a piece and appears once, added ids distinct and not
 * empty, flags valid for the kind (CCE_TOK_PREFIX_FIRST needs CCE_TOK_METASPACE), padding pieces
 * neither special, added nor in a merge; failures are CCE_ERR_ARG naming the item. The caller
 * owns *out. */
cce_status cce_tokenizer_new_spec(const cce_tokenizer_spec *spec, cce_tokenizer **out);

/* The spec of t (for storing and exporting it); the arrays are borrowed from t. */
void cce_tokenizer_get_spec(const cce_tokenizer *t, cce_tokenizer_spec *spec);

cce_tokenizer_kind cce_tokenizer_kind_of(const cce_tokenizer *t);
/* 1 if t is exactly what a llama2.c tokenizer.bin holds (SentencePiece kind, <unk> <s> </s> at
 * 0/1/2, no added tokens, flags or padding): such tokenizers store and fingerprint as before. */
int cce_tokenizer_is_llama2c(const cce_tokenizer *t);
/* CCE_OK if t can be written as a llama2.c tokenizer.bin (SentencePiece kind, BOS 1, EOS 2; added
 * tokens are dropped, as llama2.c has none), else CCE_ERR_ARG saying why. */
cce_status cce_tokenizer_check_llama2c(const cce_tokenizer *t);

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

/* A copy of t padded up to vocab_size ids (>= t's count of real pieces) for a model whose
 * embedding has more rows than the tokenizer has tokens (Qwen2). The padding pieces, at the ids
 * after the real ones, are named "<unused_N>" (N from 0; more underscores after "unused" if a real
 * piece has such a name), are never looked up (so never produced by encoding, whatever the
 * text), and are not written by tokenizer.json export. Padding that t already has is renamed.
 * CCE_ERR_ARG names both counts when vocab_size is too small. The caller owns *out. */
cce_status cce_tokenizer_pad_to(const cce_tokenizer *t, int32_t vocab_size, cce_tokenizer **out);

void cce_tokenizer_free(cce_tokenizer *t);

int32_t cce_tokenizer_vocab_size(const cce_tokenizer *t);
/* How many of the last ids are padding (cce_tokenizer_pad_to); 0 for most tokenizers. */
int32_t cce_tokenizer_n_padding(const cce_tokenizer *t);
/* BOS (or EOS when t has no BOS, see above) and EOS (or BOS when t has no EOS). */
int32_t cce_tokenizer_bos(const cce_tokenizer *t);
int32_t cce_tokenizer_eos(const cce_tokenizer *t);
/* UNK / PAD ids, -1 when t has none. */
int32_t cce_tokenizer_unk(const cce_tokenizer *t);
int32_t cce_tokenizer_pad(const cce_tokenizer *t);
/* Piece text and score of id (borrowed), for storing the tokenizer. NULL / NaN for an id outside
 * the vocabulary. */
const char *cce_tokenizer_piece(const cce_tokenizer *t, int32_t id);
float cce_tokenizer_score(const cce_tokenizer *t, int32_t id);

/* Encodes len bytes of text: optional BOS; added tokens written in the text become their id; the
 * rest, segment by segment: SentencePiece kind: the dummy-prefix space (with CCE_TOK_METASPACE
 * not on a segment that starts with " " or a literal "\u2581", as Hugging Face's Metaspace
 * pre-tokenizer does; with CCE_TOK_PREFIX_FIRST only on the segment at offset 0), pieces merged
 * by best score (leftmost on ties) in O(n log n), byte fallback for anything not in the vocabulary;
 * ByteLevel kind: words of the pre-tokenizer, each merged by rank in O(n log n); optional EOS.
 * *tokens is malloc'd and owned by the caller; *n_tokens is its length. */
cce_status cce_tokenizer_encode(const cce_tokenizer *t, const char *text, size_t len, int bos,
                                int eos, int32_t **tokens, size_t *n_tokens);

/* The text of token `id` following token `prev`: SentencePiece byte pieces become their byte;
 * ByteLevel pieces become the bytes their characters stand for (a piece with a character
 * outside the alphabet, e.g. an added token, is its own UTF-8). The leading space of the first
 * piece after BOS is dropped (SentencePiece, and ByteLevel with add_prefix_space). Borrowed; valid
 * while t lives. *len receives the byte length (a byte piece may be a NUL byte). An id outside the
 * vocabulary decodes to "". */
const char *cce_tokenizer_decode(const cce_tokenizer *t, int32_t prev, int32_t id, size_t *len);

/* A 64-bit fingerprint of the vocabulary and scores (and, for tokenizers that are not plain
 * llama2.c ones, of the kind, merges, special ids, added tokens, pre-tokenizer, flags and
 * padding), used to key token caches. */
uint64_t cce_tokenizer_fingerprint(const cce_tokenizer *t);

#endif
