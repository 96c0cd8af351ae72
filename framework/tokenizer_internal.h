/* The tokenizer's representation, shared by tokenizer_sp.c (construction, SentencePiece-style
 * encoding, the merge heap both encoders use, the encode driver), tokenizer_spec.c (spec
 * construction, fingerprint), tokenizer_bpe.c (ByteLevel ranked-merge encoding) and
 * tokenizer_pretok.c (the byte-level alphabet and pre-tokenizer patterns). Not a public API. */
#ifndef CCE_TOKENIZER_INTERNAL_H
#define CCE_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tokenizer.h"

#define TOK_MAX_VOCAB       (1 << 22)
#define TOK_MAX_TOKEN_BYTES 65536

struct cce_tokenizer {
    cce_tokenizer_kind kind;
    int32_t vocab_size;
    char **pieces;        /* [vocab_size] NUL-terminated UTF-8, owned */
    uint32_t *piece_len;  /* [vocab_size] byte lengths */
    float *scores;        /* [vocab_size] */
    int16_t *byte_of;     /* [vocab_size] the byte of a "<0xNN>" piece, -1 for other pieces */
    int32_t *table;       /* [table_mask + 1] piece ids, -1 marks an empty slot */
    size_t table_mask;    /* table size - 1 (a power of two) */
    int32_t byte_id[256]; /* id of the piece "<0xNN>" for byte NN, -1 if absent */
    int32_t space_id;     /* the dummy prefix: " ", else "<0x20>", else <unk> */
    uint32_t max_piece_len;
    uint64_t fingerprint;
    /* Bit (a << 8 | b) is set if byte a is directly followed by byte b inside some piece. Where
     * the last byte of one symbol and the first byte of the next form no such pair, no merge can
     * ever join across that boundary, so the text splits there into independent segments. */
    uint64_t bigram[1024];

    int32_t bos_id, eos_id, unk_id, pad_id; /* -1: none */
    uint32_t flags;                         /* CCE_TOK_* */
    int32_t n_padding; /* ids [vocab_size - n_padding, vocab_size) are padding: stored in the
                          lookup table (for the duplicate check) but never found by it */
    cce_pretokenizer pretok;

    int32_t n_added;
    int32_t *added_ids;       /* [n_added] as given */
    uint8_t *added_flags;     /* [n_added] CCE_ADDED_* */
    int32_t *added_order;     /* [n_added] indices into added_ids: by first byte, longest first */
    int32_t added_first[257]; /* added_order[added_first[b] .. added_first[b + 1]) start with b */

    /* ByteLevel */
    int32_t n_merges;
    int32_t *merges;      /* [n_merges, 2] left, right ids in rank order */
    uint64_t *merge_keys; /* [merge_mask + 1] left << 32 | right, UINT64_MAX: empty */
    uint32_t *merge_rank; /* [merge_mask + 1] */
    int32_t *merge_out;   /* [merge_mask + 1] the merged piece */
    size_t merge_mask;
    int32_t char_id[256]; /* piece id of the alphabet character of byte b, -1 if absent */
    char *decoded;        /* [sum of decoded_len] the bytes each piece stands for */
    size_t *decoded_off;  /* [vocab_size + 1] offsets into decoded */
};

/* ---- tokenizer_sp.c --------------------------------------------------------------------- */

/* An empty tokenizer (kind SentencePiece, specials 1/2/0, no pad) with room for vocab_size >=
 * min_vocab pieces. The caller owns *out. */
cce_status tok_alloc(int32_t vocab_size, int32_t min_vocab, cce_tokenizer **out);
/* Stores a copy of piece id (len bytes, no NUL inside). */
cce_status tok_set_piece(cce_tokenizer *t, int32_t id, const char *text, size_t len, float score);
/* Builds the lookup table, byte map, dummy prefix and the llama2.c fingerprint once every piece is
 * set (and t->n_padding, whose pieces get no byte map or bigrams). Duplicate pieces fail with
 * dup_status, the message prefixed by `what`. */
cce_status tok_finish(cce_tokenizer *t, const char *what, cce_status dup_status);
/* The id of the piece whose text is a (alen bytes) followed by b (blen bytes), or -1 (also when
 * that piece is padding). */
int32_t tok_lookup2(const cce_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen);
/* Renders s for an error message (printable ASCII as is, other bytes \xNN) into buf. */
const char *tok_printable(const char *s, size_t len, char *buf, size_t cap);

/* A growing list of token ids. */
typedef struct tok_ids {
    int32_t *ids; /* [cap] */
    size_t n, cap;
} tok_ids;
cce_status tok_ids_push(tok_ids *v, int32_t id);

/* ---- Merging (tokenizer_sp.c), used by both encoders ------------------------------------ */

#define TOK_NONE UINT32_MAX

/* A symbol of the text being encoded; symbols form a doubly linked list in text order. */
typedef struct tok_sym {
    int32_t id;    /* piece id, -1 once merged into its left neighbour */
    uint32_t prev; /* previous live symbol, TOK_NONE at the head */
    uint32_t next; /* next live symbol, TOK_NONE at the tail */
    uint32_t ver;  /* bumped whenever id changes */
} tok_sym;

/* A candidate merge of the adjacent symbols left and right into piece id; lower keys merge first
 * (ByteLevel: the merge rank; SentencePiece: tok_score_key of the piece score), the leftmost on
 * ties. It is stale unless left is alive, still followed by right, and right's version is
 * unchanged: left's own id can only change by merging with right, which would unlink right. */
typedef struct tok_pair {
    uint32_t key;
    int32_t id;
    uint32_t left, right;
    uint32_t right_ver;
} tok_pair;

/* A binary heap of candidate merges, best first. Free items with free(). */
typedef struct tok_heap {
    tok_pair *items; /* [cap] */
    size_t n, cap;
} tok_heap;

/* The heap key of a SentencePiece piece score: higher scores get lower keys, equal scores (also
 * -0 and +0) equal keys. score must not be NaN. */
uint32_t tok_score_key(float score);
/* Restores the heap order below item i (after filling items in any order, call it for
 * i = n / 2 - 1 down to 0). */
void tok_heap_sift_down(tok_heap *h, size_t i);
/* Adds p, growing the array (CCE_ERR_NOMEM). */
cce_status tok_heap_push(tok_heap *h, tok_pair p);
/* Removes and returns the best pair (h->n > 0). */
tok_pair tok_heap_pop(tok_heap *h);
/* Merges p's right symbol into its left one unless p is stale; 1 if it merged. */
int tok_sym_merge(tok_sym *sy, const tok_pair *p);

/* ---- tokenizer_spec.c ------------------------------------------------------------------- */

/* Sets up the added-token matcher of t from t->added_ids (sorted copies); CCE_ERR_ARG for a bad
 * entry. */
cce_status tok_setup_added(cce_tokenizer *t);
/* Frees what tokenizer_spec.c and tokenizer_bpe.c allocate in t. */
void tok_free_extra(cce_tokenizer *t);

/* ---- tokenizer_bpe.c -------------------------------------------------------------------- */

/* Builds the merge table (CCE_ERR_ARG for a merge that is out of range, repeated, or makes no
 * piece), the byte -> piece map and the decoded bytes of every piece. */
cce_status bpe_setup(cce_tokenizer *t);
/* Scratch space of the ByteLevel encoder, reused across segments. */
typedef struct bpe_scratch bpe_scratch;
void bpe_scratch_free(bpe_scratch *s);
/* Appends the ids of one text segment (no added tokens inside) to out. *scratch is created on
 * first use; free it with bpe_scratch_free. */
cce_status bpe_encode_segment(const cce_tokenizer *t, const char *text, size_t len,
                              bpe_scratch **scratch, tok_ids *out);

/* ---- tokenizer_pretok.c ----------------------------------------------------------------- */

/* Opens the C.UTF-8 locale the character classes use (once); CCE_ERR_STATE if the C library has
 * none. */
cce_status pretok_init(void);
/* GPT-2's byte-to-unicode alphabet: the codepoint that stands for byte b, and the byte a
 * codepoint stands for (-1 if none). */
uint32_t bytelevel_char(unsigned char b);
int bytelevel_byte(uint32_t cp);
/* Character classes used by the patterns (see tokenizer_pretok.c for how they relate to
 * Unicode's \p{L}, \p{N} and White_Space). */
int pretok_is_letter(uint32_t cp);
int pretok_is_number(uint32_t cp);
int pretok_is_space(uint32_t cp);
/* The codepoint of the UTF-8 character at s[0..len) and its byte length in *n (an invalid
 * byte is U+FFFD of length 1). */
uint32_t pretok_decode(const unsigned char *s, size_t len, size_t *n);
/* The end of the word that starts at pos (< len) of text under pattern p: the regex match at pos
 * (every pattern matches at every position), or len for CCE_PRETOK_NONE. */
size_t pretok_next(cce_pretokenizer p, const char *text, size_t len, size_t pos);
/* The pattern's regex as tokenizer.json writes it, and its short name ("gpt2", ...). */
const char *pretok_regex(cce_pretokenizer p);
const char *pretok_name(cce_pretokenizer p);

#endif
