/* llama2.c import: tensor placement (w1/w2/w3, tied/untied classifier after freq_cis), the RoPE
 * row permutation of q and k, header and size validation, NaN weights, the real stories260K. */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "model.h"
#include "tokenizer.h"

/* The hand-made checkpoint: dim 8, hidden 12, 2 layers, 2 heads, 1 kv head (head size 4),
 * vocab 6, seq_len 4. Every float holds its own index in the weight area, so each tensor
 * element tells where in the file it came from. */
enum { DIM = 8, HID = 12, NL = 2, NH = 2, NKV = 1, HS = 4, VOC = 6, SEQ = 4 };

/* Offsets (in floats, from the end of the header) of each llama2.c array. */
typedef struct layout {
    long emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, wcls, total;
} layout;

static layout make_layout(int tied) {
    layout l;
    long o = 0;
    l.emb = o, o += VOC * DIM;
    l.rms_att = o, o += NL * DIM;
    l.wq = o, o += NL * NH * HS * DIM;
    l.wk = o, o += NL * NKV * HS * DIM;
    l.wv = o, o += NL * NKV * HS * DIM;
    l.wo = o, o += NL * DIM * NH * HS;
    l.rms_ffn = o, o += NL * DIM;
    l.w1 = o, o += NL * HID * DIM;
    l.w2 = o, o += NL * DIM * HID;
    l.w3 = o, o += NL * HID * DIM;
    l.rms_final = o, o += DIM;
    l.freq = o, o += 2 * SEQ * HS / 2;
    l.wcls = o, o += tied ? 0 : VOC * DIM;
    l.total = o;
    return l;
}

/* Writes a checkpoint with the given header; `extra` floats are appended (negative: removed);
 * the float at index nan_at (if >= 0) is NaN. */
static void write_bin(const char *path, const int32_t hdr[7], long n_floats, long extra,
                      long nan_at) {
    long n = n_floats + extra;
    size_t bytes = 28 + (size_t)(n > 0 ? n : 0) * 4;
    unsigned char *buf = calloc(1, bytes);
    memcpy(buf, hdr, 28);
    for (long i = 0; i < n; i++) {
        float v = i == nan_at ? NAN : (float)i;
        memcpy(buf + 28 + i * 4, &v, 4);
    }
    test_write_file(path, buf, bytes);
    free(buf);
}

static void write_tokenizer(const char *path, int n) {
    static const char *pieces[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "ba"};
    unsigned char buf[512];
    size_t o = 0;
    int32_t max_len = 5;
    memcpy(buf + o, &max_len, 4), o += 4;
    for (int i = 0; i < n; i++) {
        float score = (float)-i;
        int32_t len = (int32_t)strlen(pieces[i]);
        memcpy(buf + o, &score, 4), o += 4;
        memcpy(buf + o, &len, 4), o += 4;
        memcpy(buf + o, pieces[i], (size_t)len), o += (size_t)len;
    }
    test_write_file(path, buf, o);
}

static const char *dir;
static const char *tok_path;

static int setup(void **state) {
    (void)state;
    dir = test_scratch_dir("import_llama2c");
    static char tp[4096];
    snprintf(tp, sizeof tp, "%s", test_path(dir, "tok.bin"));
    tok_path = tp;
    write_tokenizer(tok_path, VOC);
    return 0;
}

static void header(int32_t hdr[7], int tied) {
    int32_t h[7] = {DIM, HID, NL, NH, NKV, tied ? VOC : -VOC, SEQ};
    memcpy(hdr, h, sizeof h);
}

/* Checks that tensor `name` holds file indices base + its row-major position. */
static void expect_block(cce_model *m, const char *name, long base) {
    cce_tensor *t;
    assert_cce_ok(cce_model_tensor(m, name, &t));
    for (int64_t i = 0; i < cce_tensor_numel(t); i++)
        if (t->data[i] != (float)(base + i))
            fail_msg("%s[%lld] = %g, expected file float %ld", name, (long long)i,
                     (double)t->data[i], base + (long)i);
}

/* Checks every row of a permuted q/k tensor against the expected source rows. */
static void expect_rows(cce_model *m, const char *name, long base, const int *src_rows,
                        int n_rows) {
    cce_tensor *t;
    assert_cce_ok(cce_model_tensor(m, name, &t));
    assert_int_equal(t->shape[0], n_rows);
    for (int r = 0; r < n_rows; r++)
        for (int c = 0; c < DIM; c++)
            if (t->data[r * DIM + c] != (float)(base + src_rows[r] * DIM + c))
                fail_msg("%s row %d holds file row %g, expected row %d", name, r,
                         (double)((t->data[r * DIM] - (float)base) / DIM), src_rows[r]);
}

static void check_import(int tied) {
    const char *bin = test_path(dir, tied ? "tied.bin" : "untied.bin");
    int32_t hdr[7];
    header(hdr, tied);
    layout l = make_layout(tied);
    write_bin(bin, hdr, l.total, 0, -1);
    cce_model *m;
    assert_cce_ok(cce_import_llama2c(bin, tok_path, &m));

    const cce_config *c = cce_model_config(m);
    assert_int_equal(c->dim, DIM);
    assert_int_equal(c->hidden_dim, HID);
    assert_int_equal(c->n_layers, NL);
    assert_int_equal(c->n_heads, NH);
    assert_int_equal(c->n_kv_heads, NKV);
    assert_int_equal(c->head_dim, HS);
    assert_int_equal(c->vocab_size, VOC);
    assert_int_equal(c->seq_len, SEQ);
    assert_int_equal(c->tied_embeddings, tied);
    assert_true(c->rope_theta == 10000.0f);
    assert_true(c->norm_eps == 1e-5f);
    assert_string_equal(cce_model_source(m), tied ? "llama2c:tied.bin" : "llama2c:untied.bin");
    assert_non_null(cce_model_tokenizer(m));
    assert_int_equal(cce_tokenizer_vocab_size(cce_model_tokenizer(m)), VOC);
    assert_string_equal(cce_tokenizer_piece(cce_model_tokenizer(m), 5), "ab");

    expect_block(m, "embed_tokens.weight", l.emb);
    expect_block(m, "norm.weight", l.rms_final);
    if (tied) {
        assert_int_equal(cce_model_tensor_count(m), 1 + NL * 9 + 1);
    } else {
        assert_int_equal(cce_model_tensor_count(m), 1 + NL * 9 + 2);
        expect_block(m, "lm_head.weight", l.wcls); /* after the ignored freq_cis tables */
    }
    /* Rotate-half order, written out by hand: head of 4 rows (pairs (0,1) and (2,3) in llama2.c)
     * becomes rows 0, 2 | 1, 3, i.e. first halves then second halves of each pair. */
    static const int q_rows[NH * HS] = {0, 2, 1, 3, 4, 6, 5, 7};
    static const int k_rows[NKV * HS] = {0, 2, 1, 3};
    for (int layer = 0; layer < NL; layer++) {
        char name[96];
#define NAME(kind) (cce_layer_tensor_name(layer, kind, name, sizeof name), name)
        expect_block(m, NAME(CCE_LT_ATTN_NORM), l.rms_att + layer * DIM);
        expect_rows(m, NAME(CCE_LT_Q), l.wq + layer * NH * HS * DIM, q_rows, NH * HS);
        expect_rows(m, NAME(CCE_LT_K), l.wk + layer * NKV * HS * DIM, k_rows, NKV * HS);
        expect_block(m, NAME(CCE_LT_V), l.wv + layer * NKV * HS * DIM);
        expect_block(m, NAME(CCE_LT_O), l.wo + layer * DIM * NH * HS);
        expect_block(m, NAME(CCE_LT_FFN_NORM), l.rms_ffn + layer * DIM);
        expect_block(m, NAME(CCE_LT_GATE), l.w1 + layer * HID * DIM); /* w1 */
        expect_block(m, NAME(CCE_LT_DOWN), l.w2 + layer * DIM * HID); /* w2 */
        expect_block(m, NAME(CCE_LT_UP), l.w3 + layer * HID * DIM);   /* w3 */
#undef NAME
    }
    cce_model_free(m);
}

static void test_import_tied(void **state) {
    (void)state;
    check_import(1);
}

static void test_import_untied(void **state) {
    (void)state;
    check_import(0);
}

/* Expects the import to fail with `status` and a detail containing every given fragment. */
static void expect_failure(const char *bin, const char *tok, cce_status status, const char *frag1,
                           const char *frag2) {
    cce_model *m = NULL;
    cce_status s = cce_import_llama2c(bin, tok, &m);
    print_message("  %s: %s\n", cce_strerror(s), cce_error_detail());
    assert_int_equal(s, status);
    assert_null(m);
    if (frag1 && !strstr(cce_error_detail(), frag1))
        fail_msg("detail '%s' lacks '%s'", cce_error_detail(), frag1);
    if (frag2 && !strstr(cce_error_detail(), frag2))
        fail_msg("detail '%s' lacks '%s'", cce_error_detail(), frag2);
}

static void test_size_checks(void **state) {
    (void)state;
    const char *bin = test_path(dir, "bad_size.bin");
    int32_t hdr[7];
    header(hdr, 1);
    long total = make_layout(1).total;
    char expected[64];
    snprintf(expected, sizeof expected, "%ld bytes", 28 + total * 4);

    write_bin(bin, hdr, total, -1, -1); /* one float short */
    expect_failure(bin, tok_path, CCE_ERR_FORMAT, bin, expected);
    assert_non_null(strstr(cce_error_detail(), "truncated"));
    write_bin(bin, hdr, total, 3, -1); /* trailing garbage */
    expect_failure(bin, tok_path, CCE_ERR_FORMAT, bin, expected);
    assert_non_null(strstr(cce_error_detail(), "trailing"));
    /* An untied header on a tied-size file: the classifier is missing. */
    header(hdr, 0);
    write_bin(bin, hdr, total, 0, -1);
    expect_failure(bin, tok_path, CCE_ERR_FORMAT, bin, "untied");
    test_write_file(bin, hdr, 10); /* not even a header */
    expect_failure(bin, tok_path, CCE_ERR_FORMAT, bin, "header");
    expect_failure(test_path(dir, "missing.bin"), tok_path, CCE_ERR_IO, "missing.bin", NULL);
}

static void test_bad_headers(void **state) {
    (void)state;
    const char *bin = test_path(dir, "bad_header.bin");
    long total = make_layout(1).total;
    struct {
        int32_t hdr[7];
        const char *field;
    } cases[] = {
        {{-8, HID, NL, NH, NKV, VOC, SEQ}, "dim"},
        {{DIM, 0, NL, NH, NKV, VOC, SEQ}, "hidden_dim"},
        {{DIM, HID, -2, NH, NKV, VOC, SEQ}, "n_layers"},
        {{DIM, HID, NL, 3, 1, VOC, SEQ}, "n_heads"}, /* 8 % 3 != 0 */
        {{DIM, HID, NL, NH, 3, VOC, SEQ}, "n_kv_heads"},
        {{DIM, HID, NL, 8, 8, VOC, SEQ}, "head_dim"}, /* head size 1 is odd */
        {{DIM, HID, NL, NH, NKV, INT32_MIN, SEQ}, "vocab_size"},
        {{DIM, HID, NL, NH, NKV, VOC, 0}, "seq_len"},
        {{1 << 30, HID, NL, NH, NKV, VOC, SEQ}, "dim"},
        {{DIM, HID, 1 << 20, NH, NKV, VOC, SEQ}, "n_layers"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_bin(bin, cases[i].hdr, total, 0, -1);
        expect_failure(bin, tok_path, CCE_ERR_FORMAT, bin, cases[i].field);
    }
}

static void test_tokenizer_problems(void **state) {
    (void)state;
    const char *bin = test_path(dir, "tok_check.bin");
    int32_t hdr[7];
    header(hdr, 1);
    write_bin(bin, hdr, make_layout(1).total, 0, -1);
    const char *missing = test_path(dir, "no_such_tokenizer.bin");
    expect_failure(bin, missing, CCE_ERR_IO, "no_such_tokenizer.bin", NULL);
    const char *seven = test_path(dir, "tok7.bin");
    write_tokenizer(seven, 7); /* one token more than the model's vocabulary */
    expect_failure(bin, seven, CCE_ERR_FORMAT, "tok7.bin", NULL);
}

static void test_nan_weight(void **state) {
    (void)state;
    const char *bin = test_path(dir, "nan.bin");
    int32_t hdr[7];
    header(hdr, 1);
    layout l = make_layout(1);
    write_bin(bin, hdr, l.total, 0, l.w2 + DIM * HID + 5); /* layer 1's w2 */
    expect_failure(bin, tok_path, CCE_ERR_NUMERIC, "layers.1.mlp.down_proj.weight", bin);
}

static void test_real_stories260k(void **state) {
    (void)state;
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    cce_model *m;
    assert_cce_ok(cce_import_llama2c(bin, tok, &m));
    const cce_config *c = cce_model_config(m);
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->hidden_dim, 172);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(c->seq_len, 512);
    assert_int_equal(c->tied_embeddings, 1);
    assert_int_equal(cce_model_total_params(m), 260032);
    assert_string_equal(cce_model_source(m), "llama2c:stories260K.bin");
    assert_int_equal(cce_tokenizer_vocab_size(cce_model_tokenizer(m)), 512);
    assert_string_equal(cce_tokenizer_piece(cce_model_tokenizer(m), 3), "<0x00>");
    assert_cce_ok(cce_model_check_finite(m));

    /* Layer 0's k_proj against the raw file: row j of head h is file row 2j (j < 4) or
     * 2(j - 4) + 1 (j >= 4) of that head. */
    size_t len;
    char *raw = test_read_file(bin, &len);
    assert_non_null(raw);
    long wk = 512 * 64 + 5 * 64 + 5 * 64 * 64; /* embedding, rms_att, wq */
    cce_tensor *k;
    assert_cce_ok(cce_model_layer_tensor(m, 0, CCE_LT_K, &k));
    for (int h = 0; h < 4; h++)
        for (int j = 0; j < 8; j++) {
            int src = j < 4 ? 2 * j : 2 * (j - 4) + 1;
            const char *row = raw + 28 + (wk + (long)(h * 8 + src) * 64) * 4;
            assert_memory_equal(k->data + (h * 8 + j) * 64, row, 64 * 4);
        }
    free(raw);
    cce_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_tied),        cmocka_unit_test(test_import_untied),
        cmocka_unit_test(test_size_checks),        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_tokenizer_problems), cmocka_unit_test(test_nan_weight),
        cmocka_unit_test(test_real_stories260k),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
