/* Low-rank variants stored and run natively (encoding "lowrank", DESIGN section 4): the forward
 * pass runs a lowrank linear tensor as two products (x B^T) A^T in both the window and the decode
 * path and ignores its dense copy; its logits match the dense-product model up to rounding; a
 * compressed variant saved and loaded evaluates exactly as in memory, its file shrinks and holds
 * the factors `a` and `b`; corrupt factor shapes give a format error naming the tensor. */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compress.h"
#include "encoding.h"
#include "eval.h"
#include "forward.h"
#include "../../strategies/lowrank.h"
#include "model.h"
#include "report_store.h"
#include "synth.h"
#include "fixtures.h"
#include "test_support.h"

/* Replaces tensor `name` of m by its rank-r plain SVD factors: the dense product as the strategy
 * computes it, stored under a lowrank encoding. */
static void put_lowrank(cce_model *m, const char *name, int64_t rank) {
    cce_tensor *t, *a, *b, *p;
    assert_cce_ok(cce_model_tensor(m, name, &t));
    assert_cce_ok(cce_lowrank_factor(t, NULL, 0, rank, name, &a, &b));
    assert_cce_ok(cce_tensor_new(t->ndim, t->shape, &p));
    assert_cce_ok(cce_encoding_lowrank_product(a->data, b->data, t->shape[0], rank, t->shape[1],
                                               name, p->data));
    cce_encoding *e;
    assert_cce_ok(cce_encoding_new_lowrank(a->data, b->data, rank, 2, t->shape, name, &e));
    assert_cce_ok(cce_model_put_encoded(m, name, p, e));
    cce_tensor_free(a);
    cce_tensor_free(b);
}

/* A copy of tensor `name` of src put into dst as plain float32 (or all zeros) with src's
 * encoding copied beside it when keep_encoding. */
static void put_copy(cce_model *dst, cce_model *src, const char *name, int zeros,
                     int keep_encoding) {
    cce_tensor *t, *c;
    assert_cce_ok(cce_model_tensor(src, name, &t));
    assert_cce_ok(cce_tensor_new(t->ndim, t->shape, &c));
    if (!zeros) memcpy(c->data, t->data, (size_t)cce_tensor_numel(t) * sizeof *c->data);
    cce_encoding *e = NULL;
    if (keep_encoding) {
        const cce_encoding *se;
        assert_cce_ok(cce_model_tensor_encoding(src, name, &se));
        assert_non_null(se);
        assert_true(se->lowrank);
        assert_cce_ok(cce_encoding_new_lowrank(se->a, se->b, se->rank, 2, t->shape, name, &e));
    }
    assert_cce_ok(cce_model_put_encoded(dst, name, c, e));
}

/* Window logits [T, vocab] of m on tokens [T]. malloc'd. */
static float *window_logits(cce_model *m, const int32_t *tokens, int T) {
    cce_forward *f;
    assert_cce_ok(cce_forward_new(m, T, &f));
    float *out = malloc((size_t)T * (size_t)cce_model_config(m)->vocab_size * sizeof *out);
    assert_non_null(out);
    assert_cce_ok(cce_forward_window(f, tokens, T, out));
    cce_forward_free(f);
    return out;
}

/* Decoded logits [T, vocab] of m, one token at a time from position 0. malloc'd. */
static float *decode_logits(cce_model *m, const int32_t *tokens, int T) {
    cce_forward *f;
    int V = cce_model_config(m)->vocab_size;
    assert_cce_ok(cce_forward_new(m, T, &f));
    float *out = malloc((size_t)T * (size_t)V * sizeof *out);
    assert_non_null(out);
    for (int t = 0; t < T; t++) assert_cce_ok(cce_forward_token(f, tokens[t], t, out + t * V));
    cce_forward_free(f);
    return out;
}

static const char *const LOWRANK_NAMES[] = {
    "layers.0.self_attn.k_proj.weight", /* layer 0: q/k/v not packed for decoding */
    "layers.0.mlp.down_proj.weight",    /* layer 0 keeps its gate/up packed */
    "layers.1.self_attn.o_proj.weight", /* layer 1 keeps its q/k/v packed */
    "layers.1.mlp.up_proj.weight",      /* layer 1: gate/up not packed */
    "lm_head.weight",
};
#define N_LOWRANK (sizeof LOWRANK_NAMES / sizeof LOWRANK_NAMES[0])

/* ---- The forward pass ------------------------------------------------------------------------ */

static void test_native_forward(void **state) {
    (void)state;
    cce_synth_options o;
    assert_cce_ok(cce_synth_preset("tiny", &o));
    o.seed = 5;
    o.zero_classifier = 1; /* untied; a random classifier is put below */
    cce_model *base;
    assert_cce_ok(cce_synth_model(&o, &base));
    const cce_config *c = cce_model_config(base);
    cce_tensor *cls;
    assert_cce_ok(cce_tensor_new_2d(c->vocab_size, c->dim, &cls));
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 11);
    for (int64_t i = 0; i < cce_tensor_numel(cls); i++)
        cls->data[i] = (float)gsl_ran_gaussian(rng, 1.0 / sqrt((double)c->dim));
    gsl_rng_free(rng);
    assert_cce_ok(cce_model_put_tensor(base, "lm_head.weight", cls));

    /* v: a few tensors lowrank; dense: the same dense products without encodings; blind: the
     * encodings over zero dense tensors (the native path must not read them). */
    cce_model *v, *dense, *blind;
    assert_cce_ok(cce_model_variant_new(base, &v));
    for (size_t i = 0; i < N_LOWRANK; i++) put_lowrank(v, LOWRANK_NAMES[i], 3 + (int64_t)i);
    assert_cce_ok(cce_model_variant_new(base, &dense));
    assert_cce_ok(cce_model_variant_new(base, &blind));
    for (size_t i = 0; i < N_LOWRANK; i++) {
        put_copy(dense, v, LOWRANK_NAMES[i], 0, 0);
        put_copy(blind, v, LOWRANK_NAMES[i], 1, 1);
        const cce_encoding *e;
        assert_cce_ok(cce_model_tensor_encoding(dense, LOWRANK_NAMES[i], &e));
        assert_null(e);
    }

    enum { T = 24 };
    int V = c->vocab_size;
    int32_t *tokens = fixture_random_tokens(T, 4);
    float *lv = window_logits(v, tokens, T), *ld = window_logits(dense, tokens, T);
    float *lb = window_logits(blind, tokens, T), *dv = decode_logits(v, tokens, T);
    float *db = decode_logits(blind, tokens, T);
    /* The dense copy is not read: window and decode logits are those of the factors alone. */
    assert_memory_equal(lv, lb, (size_t)T * V * sizeof *lv);
    assert_memory_equal(dv, db, (size_t)T * V * sizeof *dv);
    double max_native = 0, max_decode = 0;
    int differs = 0;
    for (int t = 0; t < T; t++) {
        double scale = 0, dn = 0;
        for (int j = 0; j < V; j++) {
            size_t i = (size_t)t * V + j;
            scale = fmax(scale, fabs(ld[i]));
            dn = fmax(dn, fabs((double)lv[i] - ld[i]));
            max_decode = fmax(max_decode, fabs((double)lv[i] - dv[i]));
            differs |= lv[i] != ld[i];
        }
        assert_true(scale > 0);
        max_native = fmax(max_native, dn / scale);
    }
    print_message("native vs dense product: max relative %.3g; window vs decode: max %.3g\n",
                  max_native, max_decode);
    assert_true(max_native <= 1e-4);
    assert_true(max_decode <= 1e-4);
    assert_true(differs); /* two products round differently from one: the native path ran */
    free(lv);
    free(ld);
    free(lb);
    free(dv);
    free(db);
    free(tokens);
    cce_model_free(blind);
    cce_model_free(dense);
    cce_model_free(v);
    cce_model_free(base);
}

/* ---- Round trip, file size, layout ----------------------------------------------------------- */

static cce_strategy_instance *instance(const char *spec) {
    const cce_strategy *s;
    cce_params *p;
    cce_strategy_instance *inst;
    assert_cce_ok(cce_strategy_parse_spec(spec, &s, &p));
    assert_cce_ok(cce_strategy_instance_new(s, p, &inst));
    cce_params_free(p);
    return inst;
}

static long long file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long long)st.st_size;
}

static void test_round_trip(void **state) {
    (void)state;
    char dir[4096], dense_path[4200], path[4200];
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("lowrank_native_rt"));
    snprintf(dense_path, sizeof dense_path, "%s/dense.h5", dir);
    snprintf(path, sizeof path, "%s/lowrank.h5", dir);
    cce_model *base = fixture_synth_preset("stories260K", 6), *v, *back;
    cce_strategy_instance *inst = instance("lowrank:ratio=0.5");
    cce_compress_options o;
    cce_compress_options_init(&o);
    o.use_cache = 0;
    cce_compress_result res;
    assert_cce_ok(cce_compress(base, &inst, 1, NULL, 0, NULL, &o, &v, &res));
    const cce_config *c = cce_model_config(base);
    assert_int_equal(res.report.n, 7 * (size_t)c->n_layers);

    int32_t *stream = fixture_random_tokens(600, 8);
    cce_eval_options eo = {.ctx = 64};
    cce_eval_result mem, disk;
    assert_cce_ok(cce_eval(v, base, stream, 600, &eo, &mem));
    assert_cce_ok(cce_model_save(base, dense_path, NULL));
    assert_cce_ok(cce_compress_save(v, &res, path, NULL));
    assert_cce_ok(cce_model_open(path, &back));
    assert_cce_ok(cce_eval(back, base, stream, 600, &eo, &disk));
    assert_true(mem.mean_nll == disk.mean_nll);
    assert_true(mem.top1 == disk.top1);
    assert_true(mem.kl_mean == disk.kl_mean);
    assert_true(mem.top1_agree == disk.top1_agree);
    assert_true(mem.kl_mean > 0);

    /* Every compressed tensor comes back lowrank with the report's rank, the dense values equal
     * bit for bit; the stored bytes are the factors'. */
    int64_t saved = 0;
    for (size_t i = 0; i < res.report.n; i++) {
        const cce_report_row *row = &res.report.rows[i];
        const cce_encoding *e;
        cce_tensor *tm, *td;
        assert_cce_ok(cce_model_tensor_encoding(back, row->tensor, &e));
        assert_non_null(e);
        assert_true(e->lowrank);
        assert_int_equal(e->rank, row->rank);
        assert_int_equal(cce_encoding_stored_bytes(e), 4 * e->rank * (e->rows + e->cols));
        assert_int_equal(row->bytes_after, cce_encoding_stored_bytes(e));
        assert_cce_ok(cce_model_tensor(v, row->tensor, &tm));
        assert_cce_ok(cce_model_tensor(back, row->tensor, &td));
        assert_memory_equal(tm->data, td->data, (size_t)cce_tensor_numel(tm) * sizeof(float));
        saved += row->bytes_before - row->bytes_after;
    }
    long long dense_bytes = file_size(dense_path), lowrank_bytes = file_size(path);
    print_message("dense file %lld bytes, lowrank file %lld bytes, factors save %lld\n",
                  dense_bytes, lowrank_bytes, (long long)saved);
    assert_true(saved > 0);
    /* The file shrinks by what the factors save, up to the groups' and the report's overhead. */
    assert_true(lowrank_bytes < dense_bytes - saved * 3 / 4);

    /* h5dump shows the factors' datasets and shapes. */
    const cce_report_row *q = NULL;
    for (size_t i = 0; i < res.report.n && !q; i++)
        if (!strcmp(res.report.rows[i].tensor, "layers.2.self_attn.q_proj.weight"))
            q = &res.report.rows[i];
    assert_non_null(q);
    char cmd[9000], line[512], want_a[64], want_b[64];
    snprintf(cmd, sizeof cmd, "h5dump -H -g /model/layers/02/self_attn/q_proj/weight '%s' 2>&1",
             path);
    snprintf(want_a, sizeof want_a, "( %d, %lld )", (int)c->dim, (long long)q->rank);
    snprintf(want_b, sizeof want_b, "( %lld, %d )", (long long)q->rank, (int)c->dim);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int ds_a = 0, ds_b = 0, shape_a = 0, shape_b = 0, kind = 0, rank = 0;
    while (fgets(line, sizeof line, p)) {
        ds_a |= strstr(line, "DATASET \"a\"") != NULL;
        ds_b |= strstr(line, "DATASET \"b\"") != NULL;
        shape_a |= ds_a && !ds_b && strstr(line, want_a) != NULL;
        shape_b |= ds_b && strstr(line, want_b) != NULL;
        kind |= strstr(line, "ATTRIBUTE \"encoding\"") != NULL;
        rank |= strstr(line, "ATTRIBUTE \"rank\"") != NULL;
    }
    assert_int_equal(pclose(p), 0);
    assert_true(ds_a && ds_b && shape_a && shape_b && kind && rank);

    char text[128];
    for (size_t i = 0; i < cce_model_tensor_count(back); i++)
        if (!strcmp(cce_model_tensor_name_at(back, i), q->tensor)) {
            assert_cce_ok(cce_model_tensor_encoding_text(back, i, text, sizeof text));
            char want[64];
            snprintf(want, sizeof want, "lowrank rank %lld", (long long)q->rank);
            assert_string_equal(text, want);
        }

    cce_eval_result_free(&mem);
    cce_eval_result_free(&disk);
    free(stream);
    cce_model_free(back);
    cce_compress_result_clear(&res);
    cce_model_free(v);
    cce_model_free(base);
    cce_strategy_instance_free(inst);
}

/* ---- Corrupt files --------------------------------------------------------------------------- */

#define K_NAME  "layers.0.self_attn.k_proj.weight"
#define K_GROUP "/model/layers/00/self_attn/k_proj/weight"

enum corruption { WIDE_A, FLAT_B, RANK_ATTR, NO_B };

/* Saves a tiny model whose k_proj of layer 0 is lowrank (rank 3) and damages that group. */
static void write_corrupt(const char *path, enum corruption how) {
    cce_model *m = fixture_synth_preset("tiny", 2);
    put_lowrank(m, K_NAME, 3);
    assert_cce_ok(cce_model_save(m, path, NULL));
    cce_model_free(m);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t g = H5Gopen2(f, K_GROUP, H5P_DEFAULT);
    assert_true(g >= 0);
    if (how == RANK_ATTR) {
        hid_t a = H5Aopen(g, "rank", H5P_DEFAULT);
        int64_t r = 4;
        assert_true(a >= 0);
        assert_true(H5Awrite(a, H5T_NATIVE_INT64, &r) >= 0);
        H5Aclose(a);
    } else {
        const char *ds = how == WIDE_A ? "a" : "b";
        assert_true(H5Ldelete(g, ds, H5P_DEFAULT) >= 0);
        if (how != NO_B) {
            hsize_t dims_a[2] = {16, 4}, dims_b[1] = {3 * 32};
            hid_t sp = how == WIDE_A ? H5Screate_simple(2, dims_a, NULL)
                                     : H5Screate_simple(1, dims_b, NULL);
            hid_t d = H5Dcreate2(g, ds, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            assert_true(d >= 0);
            float *zeros = calloc(16 * 4 + 3 * 32, sizeof *zeros);
            assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0);
            free(zeros);
            H5Dclose(d);
            H5Sclose(sp);
        }
    }
    H5Gclose(g);
    H5Fclose(f);
}

static void test_corrupt_shapes(void **state) {
    (void)state;
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s", test_scratch_dir("lowrank_native_corrupt"));
    const enum corruption cases[] = {WIDE_A, FLAT_B, RANK_ATTR, NO_B};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.h5", dir, i);
        write_corrupt(path, cases[i]);
        cce_model *m;
        assert_cce_ok(cce_model_open(path, &m));
        cce_tensor *t;
        assert_int_equal(cce_model_tensor(m, K_NAME, &t), CCE_ERR_FORMAT);
        print_message("case %zu: %s\n", i, cce_error_detail());
        assert_non_null(strstr(cce_error_detail(), K_NAME));
        cce_model_free(m);
    }
    /* The undamaged file loads, and its tensor is the product of its factors. */
    snprintf(path, sizeof path, "%s/good.h5", dir);
    cce_model *m = fixture_synth_preset("tiny", 2), *back;
    put_lowrank(m, K_NAME, 3);
    assert_cce_ok(cce_model_save(m, path, NULL));
    assert_cce_ok(cce_model_open(path, &back));
    cce_tensor *a, *b;
    assert_cce_ok(cce_model_tensor(m, K_NAME, &a));
    assert_cce_ok(cce_model_tensor(back, K_NAME, &b));
    assert_memory_equal(a->data, b->data, (size_t)cce_tensor_numel(a) * sizeof(float));
    cce_model_free(back);
    cce_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native_forward),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_corrupt_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
