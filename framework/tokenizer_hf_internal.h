/* Helpers shared by tokenizer_hf.c (import), tokenizer_hf_export.c (export) and export_hf.c (model
 * folders). Not a public API. */
#ifndef CCE_TOKENIZER_HF_INTERNAL_H
#define CCE_TOKENIZER_HF_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define SP     "\xE2\x96\x81" /* U+2581, SentencePiece's space */
#define SP_LEN 3

/* Byte length of the UTF-8 character starting with c (1 for a stray byte). */
size_t hf_char_len(unsigned char c);
/* 1 if s (len bytes) is exactly one UTF-8 character. */
int hf_one_char(const char *s, size_t len);
/* s with every from (flen bytes) replaced by to (tlen bytes); malloc'd (caller frees), *out_len
 * its length (out_len may be NULL). */
char *hf_replace_all(const char *s, size_t len, const char *from, size_t flen, const char *to,
                     size_t tlen, size_t *out_len);
/* Renders a piece for an error message: printable ASCII as is, other bytes as \xNN (a
 * thread-local buffer, valid for the next three calls). */
const char *hf_show(const char *s);
/* The vocab id of text (len bytes), or -1. */
int32_t hf_lookup(json_t *vocab, const char *text, size_t len);
/* Writes text and a newline to dir/name through a temporary file (fsync'd, then renamed).
 * CCE_ERR_IO naming the file; nothing is handed to the caller. */
cce_status hf_write_text(const char *dir, const char *name, const char *text);

#endif
