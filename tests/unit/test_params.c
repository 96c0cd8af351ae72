/* Strategy parameters: parsing "k=v,k=v" and key/value lists against a schema, defaults, typed
 * getters, the uniform error messages (unknown name, wrong type, out of range), schema checks,
 * strategy specs, the registry, and `cce strategies`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strategy.h"
#include "test_support.h"

static const char *const shapes[] = {"row", "tensor", "global", NULL};

static cce_status dummy_apply(void *priv, cce_block_job *job, cce_report *r) {
    (void)priv, (void)job, (void)r;
    return CCE_OK;
}

static const cce_param tester_params[] = {
    {"ratio", CCE_PARAM_FLOAT, "0.5", 0, 1, CCE_PARAM_MAX_OPEN, NULL, "fraction removed"},
    {"bits", CCE_PARAM_INT, "4", 2, 8, 0, NULL, "code width"},
    {"nm", CCE_PARAM_NM, NULL, 0, 0, 0, NULL, "N:M pattern"},
    {"symmetric", CCE_PARAM_BOOL, "false", 0, 0, 0, NULL, "symmetric grid"},
    {"scope", CCE_PARAM_ENUM, "row", 0, 0, 0, shapes, "scope"},
    {"label", CCE_PARAM_STRING, NULL, 0, 0, 0, NULL, "free text"},
    {"damp", CCE_PARAM_FLOAT, "0.01", 0, 1, CCE_PARAM_MIN_OPEN, NULL, "damping"},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

static const cce_strategy tester = {
    .api_version = CCE_STRATEGY_API_VERSION,
    .name = "tester",
    .summary = "a schema for tests",
    .params = tester_params,
    .apply = dummy_apply,
};

/* Parses text that must fail with status st and a detail containing every needle. */
static void expect_parse_error(const char *text, cce_status st, const char *n1, const char *n2) {
    cce_params *p = (cce_params *)0x1;
    cce_status got = cce_params_parse(&tester, text, &p);
    if (got != st)
        fail_msg("'%s': expected %s, got %s (%s)", text, cce_strerror(st), cce_strerror(got),
                 cce_error_detail());
    assert_null(p);
    const char *d = cce_error_detail();
    if (!strstr(d, "tester") || (n1 && !strstr(d, n1)) || (n2 && !strstr(d, n2)))
        fail_msg("'%s': detail '%s' lacks 'tester' / '%s' / '%s'", text, d, n1 ? n1 : "",
                 n2 ? n2 : "");
}

static void test_schema_valid(void **state) {
    (void)state;
    assert_cce_ok(cce_strategy_validate(&tester, "test"));
    for (size_t i = 0; i < cce_strategy_count(); i++)
        assert_cce_ok(cce_strategy_validate(cce_strategy_at(i), "built-in"));
}

static void test_defaults_and_getters(void **state) {
    (void)state;
    cce_params *p;
    assert_cce_ok(cce_params_parse(&tester, NULL, &p));
    double f;
    int64_t i;
    int b, idx;
    const char *s;
    assert_cce_ok(cce_params_get_float(p, "ratio", &f));
    assert_true(f == 0.5);
    assert_cce_ok(cce_params_get_int(p, "bits", &i));
    assert_int_equal(i, 4);
    assert_cce_ok(cce_params_get_bool(p, "symmetric", &b));
    assert_int_equal(b, 0);
    assert_cce_ok(cce_params_get_enum(p, "scope", &s, &idx));
    assert_string_equal(s, "row");
    assert_int_equal(idx, 0);
    assert_false(cce_params_has(p, "nm"));
    assert_true(cce_params_has(p, "ratio"));
    assert_false(cce_params_given(p, "ratio"));
    int n, m;
    assert_int_equal(cce_params_get_nm(p, "nm", &n, &m), CCE_ERR_STATE);
    assert_non_null(strstr(cce_error_detail(), "nm"));
    assert_int_equal(cce_params_get_float(p, "bits", &f), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "bits"));
    assert_int_equal(cce_params_get_float(p, "nosuch", &f), CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "nosuch"));
    assert_ptr_equal(cce_params_strategy(p), &tester);
    cce_params_free(p);
}

static void test_parse_values(void **state) {
    (void)state;
    cce_params *p;
    assert_cce_ok(cce_params_parse(
        &tester, " ratio = 0.25 ,bits=8,nm=2:4,symmetric=YES,scope=global,label=hello,", &p));
    double f;
    int64_t i;
    int b, n, m;
    const char *s;
    assert_cce_ok(cce_params_get_float(p, "ratio", &f));
    assert_true(f == 0.25);
    assert_true(cce_params_given(p, "ratio"));
    assert_cce_ok(cce_params_get_int(p, "bits", &i));
    assert_int_equal(i, 8);
    assert_cce_ok(cce_params_get_nm(p, "nm", &n, &m));
    assert_int_equal(n, 2);
    assert_int_equal(m, 4);
    assert_cce_ok(cce_params_get_bool(p, "symmetric", &b));
    assert_int_equal(b, 1);
    assert_cce_ok(cce_params_get_enum(p, "scope", &s, NULL));
    assert_string_equal(s, "global");
    assert_cce_ok(cce_params_get_string(p, "label", &s));
    assert_string_equal(s, "hello");

    /* The canonical text parses back to the same set; JSON carries every value. */
    char *text, *json;
    assert_cce_ok(cce_params_format(p, &text));
    assert_string_equal(
        text, "ratio=0.25,bits=8,nm=2:4,symmetric=true,scope=global,label=hello,damp=0.01");
    cce_params *q;
    assert_cce_ok(cce_params_parse(&tester, text, &q));
    char *text2;
    assert_cce_ok(cce_params_format(q, &text2));
    assert_string_equal(text, text2);
    assert_cce_ok(cce_params_to_json(p, &json));
    assert_string_equal(json, "{\"ratio\":0.25,\"bits\":8,\"nm\":\"2:4\",\"symmetric\":true,"
                              "\"scope\":\"global\",\"label\":\"hello\",\"damp\":0.01}");
    free(text);
    free(text2);
    free(json);
    cce_params_free(q);

    /* Range ends: 0 is in [0, 1), 2 and 8 in [2, 8], and an open lower end excludes itself. */
    cce_params_free(p);
    assert_cce_ok(cce_params_parse(&tester, "ratio=0,bits=2", &p));
    cce_params_free(p);
    assert_cce_ok(cce_params_parse(&tester, "ratio=0.999999,damp=1", &p));
    cce_params_free(p);
}

static void test_parse_errors(void **state) {
    (void)state;
    /* Out of range: CCE_ERR_RANGE, "tester: NAME = VALUE is outside RANGE". */
    expect_parse_error("ratio=1.5", CCE_ERR_RANGE, "ratio = 1.5 is outside [0, 1)", NULL);
    expect_parse_error("ratio=1", CCE_ERR_RANGE, "ratio = 1 is outside [0, 1)", NULL);
    expect_parse_error("ratio=-0.1", CCE_ERR_RANGE, "ratio = -0.1 is outside [0, 1)", NULL);
    expect_parse_error("bits=0", CCE_ERR_RANGE, "bits = 0 is outside [2, 8]", NULL);
    expect_parse_error("bits=9", CCE_ERR_RANGE, "bits = 9 is outside [2, 8]", NULL);
    expect_parse_error("damp=0", CCE_ERR_RANGE, "damp = 0 is outside (0, 1]", NULL);
    expect_parse_error("nm=4:4", CCE_ERR_RANGE, "nm = 4:4 is outside", "0 < N < M");
    expect_parse_error("nm=5:4", CCE_ERR_RANGE, "nm = 5:4", "0 < N < M");
    expect_parse_error("nm=0:4", CCE_ERR_RANGE, "nm = 0:4", "0 < N < M");
    expect_parse_error("scope=diag", CCE_ERR_RANGE, "scope = diag is outside",
                       "{row, tensor, global}");
    /* Wrong type: CCE_ERR_ARG, naming the parameter, what it needs and what it got. */
    expect_parse_error("ratio=abc", CCE_ERR_ARG, "ratio needs a number in [0, 1)", "'abc'");
    expect_parse_error("ratio=nan", CCE_ERR_ARG, "ratio needs a number", "'nan'");
    expect_parse_error("ratio=inf", CCE_ERR_ARG, "ratio needs a number", "'inf'");
    expect_parse_error("ratio=", CCE_ERR_ARG, "ratio needs a number", NULL);
    expect_parse_error("bits=4.5", CCE_ERR_ARG, "bits needs a whole number in [2, 8]", "'4.5'");
    expect_parse_error("bits=99999999999999999999", CCE_ERR_ARG, "bits needs a whole number", NULL);
    expect_parse_error("symmetric=maybe", CCE_ERR_ARG, "symmetric needs a truth value", "'maybe'");
    expect_parse_error("nm=2-4", CCE_ERR_ARG, "nm needs a pair written N:M", "'2-4'");
    expect_parse_error("nm=2:", CCE_ERR_ARG, "nm needs a pair", NULL);
    /* Unknown names, missing '=', repeats. */
    expect_parse_error("ratio=0.5,alpha=3", CCE_ERR_ARG, "unknown parameter 'alpha'",
                       "parameters: ratio, bits, nm, symmetric, scope, label, damp");
    expect_parse_error("ratio", CCE_ERR_ARG, "'ratio' needs the form name=value", NULL);
    expect_parse_error("=3", CCE_ERR_ARG, "no parameter name", NULL);
    expect_parse_error("bits=3,bits=4", CCE_ERR_ARG, "'bits' is given twice", NULL);
}

static void test_kv_list(void **state) {
    (void)state;
    cce_params *p;
    cce_param_kv kv[] = {
        {.key = "ratio", .kind = CCE_VALUE_NUMBER, .number = 0.3},
        {.key = "bits", .kind = CCE_VALUE_NUMBER, .number = 6.0}, /* Lua floats that are whole */
        {.key = "symmetric", .kind = CCE_VALUE_BOOL, .boolean = 1},
        {.key = "nm", .kind = CCE_VALUE_TEXT, .text = "4:8"},
        {.key = "damp", .kind = CCE_VALUE_INTEGER, .integer = 1},
    };
    assert_cce_ok(cce_params_from_kv(&tester, kv, 5, &p));
    double f;
    int64_t i;
    int b, n, m;
    assert_cce_ok(cce_params_get_float(p, "ratio", &f));
    assert_true(f == 0.3);
    assert_cce_ok(cce_params_get_int(p, "bits", &i));
    assert_int_equal(i, 6);
    assert_cce_ok(cce_params_get_bool(p, "symmetric", &b));
    assert_int_equal(b, 1);
    assert_cce_ok(cce_params_get_nm(p, "nm", &n, &m));
    assert_int_equal(n * 100 + m, 408);
    assert_cce_ok(cce_params_get_float(p, "damp", &f));
    assert_true(f == 1.0);
    cce_params_free(p);

    struct {
        cce_param_kv kv;
        cce_status st;
        const char *needle;
    } bad[] = {
        {{.key = "ratio", .kind = CCE_VALUE_NUMBER, .number = 1.5},
         CCE_ERR_RANGE,
         "tester: ratio = 1.5 is outside [0, 1)"},
        {{.key = "ratio", .kind = CCE_VALUE_NUMBER, .number = NAN},
         CCE_ERR_ARG,
         "tester: ratio needs a number"},
        {{.key = "bits", .kind = CCE_VALUE_NUMBER, .number = 4.5},
         CCE_ERR_ARG,
         "tester: bits needs a whole number"},
        {{.key = "bits", .kind = CCE_VALUE_INTEGER, .integer = 9},
         CCE_ERR_RANGE,
         "tester: bits = 9 is outside [2, 8]"},
        {{.key = "ratio", .kind = CCE_VALUE_BOOL, .boolean = 1},
         CCE_ERR_ARG,
         "tester: ratio needs a number"},
        {{.key = "nm", .kind = CCE_VALUE_NUMBER, .number = 2}, CCE_ERR_ARG, "tester: nm needs"},
        {{.key = "label", .kind = CCE_VALUE_TEXT, .text = "a,b"},
         CCE_ERR_ARG,
         "tester: label needs text without ','"},
        {{.key = "colour", .kind = CCE_VALUE_TEXT, .text = "red"},
         CCE_ERR_ARG,
         "tester: unknown parameter 'colour'"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        cce_status st = cce_params_from_kv(&tester, &bad[k].kv, 1, &p);
        if (st != bad[k].st || !strstr(cce_error_detail(), bad[k].needle))
            fail_msg("kv %zu: got %s '%s', expected %s '%s'", k, cce_strerror(st),
                     cce_error_detail(), cce_strerror(bad[k].st), bad[k].needle);
        assert_null(p);
    }
}

static void test_required_and_bad_schemas(void **state) {
    (void)state;
    static const cce_param req[] = {
        {"rank", CCE_PARAM_INT, NULL, 1, 4096, CCE_PARAM_REQUIRED, NULL, "kept rank"},
        {NULL, 0, NULL, 0, 0, 0, NULL, NULL},
    };
    cce_strategy s = tester;
    s.params = req;
    assert_cce_ok(cce_strategy_validate(&s, "test"));
    cce_params *p;
    assert_int_equal(cce_params_parse(&s, "", &p), CCE_ERR_ARG);
    assert_non_null(strstr(cce_error_detail(), "'rank' is required"));
    assert_cce_ok(cce_params_parse(&s, "rank=16", &p));
    cce_params_free(p);

    static const char *const no_choices[] = {NULL};
    static const cce_param bad_default[] = {
        {"ratio", CCE_PARAM_FLOAT, "1.5", 0, 1, CCE_PARAM_MAX_OPEN, NULL, "x"},
        {NULL, 0, NULL, 0, 0, 0, NULL, NULL}};
    static const cce_param dup[] = {{"a", CCE_PARAM_INT, "1", 0, 2, 0, NULL, "x"},
                                    {"a", CCE_PARAM_INT, "1", 0, 2, 0, NULL, "x"},
                                    {NULL, 0, NULL, 0, 0, 0, NULL, NULL}};
    static const cce_param empty_enum[] = {{"e", CCE_PARAM_ENUM, NULL, 0, 0, 0, no_choices, "x"},
                                           {NULL, 0, NULL, 0, 0, 0, NULL, NULL}};
    static const cce_param bad_range[] = {{"r", CCE_PARAM_FLOAT, NULL, 2, 1, 0, NULL, "x"},
                                          {NULL, 0, NULL, 0, 0, 0, NULL, NULL}};
    static const cce_param bad_name[] = {{"Bad Name", CCE_PARAM_INT, NULL, 0, 1, 0, NULL, "x"},
                                         {NULL, 0, NULL, 0, 0, 0, NULL, NULL}};
    const cce_param *schemas[] = {bad_default, dup, empty_enum, bad_range, bad_name};
    const char *needles[] = {"default '1.5'", "appears twice", "without choices", "empty",
                             "bad name"};
    for (size_t k = 0; k < 5; k++) {
        s.params = schemas[k];
        assert_int_equal(cce_strategy_validate(&s, "plugin.so"), CCE_ERR_FORMAT);
        const char *d = cce_error_detail();
        if (!strstr(d, "plugin.so") || !strstr(d, needles[k]))
            fail_msg("schema %zu: '%s' lacks '%s'", k, d, needles[k]);
    }
    s = tester;
    s.name = "Bad-Name";
    assert_int_equal(cce_strategy_validate(&s, "x"), CCE_ERR_FORMAT);
    s = tester;
    s.apply = NULL;
    assert_int_equal(cce_strategy_validate(&s, "x"), CCE_ERR_FORMAT);
    s = tester;
    s.api_version = CCE_STRATEGY_API_VERSION + 1;
    assert_int_equal(cce_strategy_validate(&s, "x"), CCE_ERR_FORMAT);
    assert_non_null(strstr(cce_error_detail(), "version"));
}

static void test_registry_and_specs(void **state) {
    (void)state;
    const cce_strategy *s;
    assert_cce_ok(cce_strategy_find("magnitude", &s));
    assert_string_equal(s->name, "magnitude");
    assert_int_equal(cce_strategy_find("nosuch", &s), CCE_ERR_NOT_FOUND);
    assert_non_null(strstr(cce_error_detail(), "'nosuch'"));
    assert_non_null(strstr(cce_error_detail(), "magnitude"));

    /* "NAME:k=v,k=v" splits at the first ':' only, so N:M values survive. */
    cce_params *p;
    assert_cce_ok(cce_strategy_parse_spec("magnitude:nm=2:4", &s, &p));
    int n, m;
    assert_cce_ok(cce_params_get_nm(p, "nm", &n, &m));
    assert_int_equal(n * 10 + m, 24);
    cce_params_free(p);
    assert_cce_ok(cce_strategy_parse_spec("magnitude", &s, &p));
    double f;
    assert_cce_ok(cce_params_get_float(p, "ratio", &f));
    assert_true(f == 0.5);
    cce_params_free(p);
    assert_int_equal(cce_strategy_parse_spec("magnitude:ratio=1.5", &s, &p), CCE_ERR_RANGE);
    assert_string_equal(cce_error_detail(), "magnitude: ratio = 1.5 is outside [0, 1)");
    assert_null(s);
    assert_null(p);
    assert_int_equal(cce_strategy_parse_spec("nosuch:ratio=0.5", &s, &p), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_strategy_parse_spec(":ratio=0.5", &s, &p), CCE_ERR_ARG);
}

static void test_ratio_count(void **state) {
    (void)state;
    /* floor(ratio * n), robust to the rounding of ratio * n. */
    assert_int_equal(cce_ratio_count(0.5, 5), 2);
    assert_int_equal(cce_ratio_count(0.29, 100), 29); /* 0.29 * 100 = 28.999999999999996 */
    assert_int_equal(cce_ratio_count(0.3, 10), 3);
    assert_int_equal(cce_ratio_count(0.7, 10), 7);
    assert_int_equal(cce_ratio_count(0.57, 100), 57); /* 56.99999999999999 */
    assert_int_equal(cce_ratio_count(0.999, 10), 9);
    assert_int_equal(cce_ratio_count(0.0, 10), 0);
    assert_int_equal(cce_ratio_count(-1.0, 10), 0);
    assert_int_equal(cce_ratio_count(1.0, 10), 10);
    for (int64_t n = 1; n < 300; n++)
        for (int64_t k = 0; k <= n; k++) assert_int_equal(cce_ratio_count((double)k / n, n), k);
    /* Encoded sizes: dense when pruning saves nothing, else values + mask or N:M indices. */
    assert_int_equal(cce_sparse_encoded_bytes(64, 64, 0), 256);
    assert_int_equal(cce_sparse_encoded_bytes(64, 32, 0), 128 + 8);
    assert_int_equal(cce_sparse_encoded_bytes(64, 32, 4), 128 + 8); /* 2 bits x 32 */
    assert_int_equal(cce_sparse_encoded_bytes(64, 24, 8), 96 + 9);  /* 3 bits x 24 */
}

static void test_cli_lists_strategies(void **state) {
    (void)state;
    char *out = NULL;
    assert_int_equal(test_run_cce("strategies", &out), 0);
    const char *needles[] = {
        "magnitude",          "ratio",          "[0, 1)", "scope", "{row, tensor, global}", "nm",
        "N:M with 0 < N < M", "needs: nothing", "0.5"};
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++)
        if (!strstr(out, needles[i])) fail_msg("'%s' missing from:\n%s", needles[i], out);
    free(out);
    assert_int_equal(test_run_cce("strategies --help", &out), 0);
    assert_non_null(strstr(out, "usage: cce strategies"));
    free(out);
    assert_int_equal(test_run_cce("strategies nosuch", &out), 1);
    assert_non_null(strstr(out, "unknown strategy 'nosuch'"));
    free(out);
    assert_int_equal(test_run_cce("strategies --bogus", &out), 2);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_valid),
        cmocka_unit_test(test_defaults_and_getters),
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_kv_list),
        cmocka_unit_test(test_required_and_bad_schemas),
        cmocka_unit_test(test_registry_and_specs),
        cmocka_unit_test(test_ratio_count),
        cmocka_unit_test(test_cli_lists_strategies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
