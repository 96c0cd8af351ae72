/* Multiple-choice tasks: JSONL reading and its errors, the sentence splitter, the paragraph cloze
 * builder (determinism, well-formed items, the pinned first item of the real text), tokenization
 * of choices, the decision and tie rules, scoring against cce_eval, context truncation, and the
 * real stories260K cloze accuracy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

#include "eval.h"
#include "fixtures.h"
#include "bootstrap.h"
#include "import.h"
#include "results_table.h"
#include "sha256.h"
#include "synth.h"
#include "task.h"

/* The sha256 of the JSONL of the cloze of tinystories_val with 300 items, seed 1. */
#define PINNED_CLOZE_SHA256 "cc752ae72bc3a60917be46fa71afd44f2f0c666b358eca70df8e5f65b8e4428e"

#define assert_near(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol)))                                                             \
            fail_msg("%s = %.12g, expected %.12g (tolerance %g)", #a, a_, b_, (double)(tol));      \
    } while (0)

/* Fails unless status s is want and the error detail contains needle. */
static void expect_error(cce_status s, cce_status want, const char *needle) {
    if (s != want)
        fail_msg("status %s, expected %s (detail: %s)", cce_strerror(s), cce_strerror(want),
                 cce_error_detail());
    if (!strstr(cce_error_detail(), needle))
        fail_msg("detail '%s' lacks '%s'", cce_error_detail(), needle);
}

/* ---- JSONL ---------------------------------------------------------------------------------- */

static void test_jsonl_parse(void **state) {
    (void)state;
    const char *text =
        "{\"context\": \"The cat\", \"choices\": [\"sat.\", \"flew.\"], \"answer\": 0}\n"
        "\n"
        "   \r\n"
        "{\"id\": 7, \"answer\": 2, \"choices\": [\"a\", \"b\", \"c\"], "
        "\"context\": \"\"}\r\n"
        "{\"context\": \"caf\\u00e9\", \"choices\": [\"x y\", \"z\"], \"answer\": 1}";
    cce_task *t;
    assert_cce_ok(cce_task_parse_jsonl(text, strlen(text), "mem.jsonl", &t));
    assert_int_equal(t->n_items, 3);
    assert_string_equal(t->name, "mem.jsonl");
    assert_string_equal(t->items[0].context, "The cat");
    assert_int_equal(t->items[0].n_choices, 2);
    assert_string_equal(t->items[0].choices[1], "flew.");
    assert_int_equal(t->items[0].answer, 0);
    assert_string_equal(t->items[1].context, "");
    assert_int_equal(t->items[1].n_choices, 3);
    assert_int_equal(t->items[1].answer, 2);
    assert_string_equal(t->items[2].context, "caf\xc3\xa9");
    assert_int_equal(t->items[2].answer, 1);
    assert_near(cce_task_chance(t), (0.5 + 1.0 / 3 + 0.5) / 3, 1e-15);
    cce_task_free(t);
}

static void test_jsonl_errors(void **state) {
    (void)state;
    static const char ok[] = "{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": 1}\n";
    struct {
        const char *line, *needle;
    } cases[] = {
        {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": 1", "malformed JSON"},
        {"[1, 2]", "must be a JSON object"},
        {"\"text\"", "malformed JSON"},
        {"{\"choices\": [\"a\", \"b\"], \"answer\": 0}", "'context' is missing"},
        {"{\"context\": 3, \"choices\": [\"a\", \"b\"], \"answer\": 0}", "'context' must be"},
        {"{\"context\": \"c\", \"answer\": 0}", "'choices' is missing"},
        {"{\"context\": \"c\", \"choices\": \"a\", \"answer\": 0}", "'choices' must be"},
        {"{\"context\": \"c\", \"choices\": [\"a\"], \"answer\": 0}", "1 entries, outside [2,"},
        {"{\"context\": \"c\", \"choices\": [\"a\", 5], \"answer\": 0}",
         "choice 1 is not a string"},
        {"{\"context\": \"c\", \"choices\": [\"\", \"b\"], \"answer\": 0}", "choice 0 is empty"},
        {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"]}", "'answer' is missing"},
        {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": 1.0}", "'answer' must be"},
        {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": \"1\"}",
         "'answer' must be"},
        {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": 2}", "answer 2 is outside"},
        {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": -1}",
         "answer -1 is outside"},
        {"{\"context\": \"c\", \"context\": \"d\", \"choices\": [\"a\", \"b\"], \"answer\": 0}",
         "duplicate"},
        {"{\"context\": \"c\\u0000d\", \"choices\": [\"a\", \"b\"], \"answer\": 0}", "NUL"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        /* The bad line is line 3, after a good line and a blank one. */
        char text[512];
        snprintf(text, sizeof text, "%s\n%s\n%s", ok, cases[k].line, ok);
        cce_task *t = (cce_task *)1;
        cce_status s = cce_task_parse_jsonl(text, strlen(text), "bad.jsonl", &t);
        if (s != CCE_ERR_FORMAT)
            fail_msg("case %zu (%s): status %s, expected format error", k, cases[k].line,
                     cce_strerror(s));
        assert_null(t);
        if (!strstr(cce_error_detail(), "bad.jsonl:3:") ||
            !strstr(cce_error_detail(), cases[k].needle))
            fail_msg("case %zu: detail '%s' lacks 'bad.jsonl:3:' or '%s'", k, cce_error_detail(),
                     cases[k].needle);
    }
    cce_task *t;
    expect_error(cce_task_parse_jsonl("", 0, "empty.jsonl", &t), CCE_ERR_FORMAT, "no items");
    expect_error(cce_task_parse_jsonl("\n \n\n", 4, "blank.jsonl", &t), CCE_ERR_FORMAT,
                 "blank.jsonl: no items");
    expect_error(cce_task_read_jsonl(test_path(test_scratch_dir("task_missing"), "none.jsonl"), &t),
                 CCE_ERR_IO, "none.jsonl");
}

static void test_jsonl_roundtrip_and_add(void **state) {
    (void)state;
    cce_task *t;
    assert_cce_ok(cce_task_new("mine", "src", "by hand", &t));
    const char *c1[] = {"one \"quoted\"", "two\nlines", "three"};
    const char *c2[] = {"x", "y"};
    assert_cce_ok(cce_task_add(t, "A context\twith tab.", c1, 3, 2));
    assert_cce_ok(cce_task_add(t, NULL, c2, 2, 0));
    /* Bad items are refused and change nothing. */
    const char *empty[] = {"a", ""};
    expect_error(cce_task_add(t, "c", empty, 2, 0), CCE_ERR_ARG, "choice 1 is empty");
    expect_error(cce_task_add(t, "c", c2, 1, 0), CCE_ERR_RANGE, "1 choices");
    expect_error(cce_task_add(t, "c", c2, 2, 2), CCE_ERR_RANGE, "answer 2");
    assert_int_equal(t->n_items, 2);

    const char *dir = test_scratch_dir("task_roundtrip");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "items.jsonl"));
    assert_cce_ok(cce_task_write_jsonl(t, path));
    cce_task *back;
    assert_cce_ok(cce_task_read_jsonl(path, &back));
    assert_int_equal(back->n_items, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(back->items[i].context, t->items[i].context);
        assert_int_equal(back->items[i].n_choices, t->items[i].n_choices);
        assert_int_equal(back->items[i].answer, t->items[i].answer);
        for (int c = 0; c < t->items[i].n_choices; c++)
            assert_string_equal(back->items[i].choices[c], t->items[i].choices[c]);
    }
    char sha[65];
    assert_cce_ok(cce_sha256_file(path, sha));
    assert_string_equal(back->sha256, sha);
    assert_string_equal(back->source, path);
    /* Writing into a folder that does not exist fails cleanly. */
    expect_error(cce_task_write_jsonl(t, test_path(dir, "no/such/dir/x.jsonl")), CCE_ERR_IO,
                 "x.jsonl");
    cce_task_free(back);
    cce_task_free(t);
}

/* ---- sentences and the cloze ---------------------------------------------------------------- */

static void expect_sentences(const char *p, const char *const *want, size_t n_want) {
    cce_span *s;
    size_t n;
    assert_cce_ok(cce_cloze_sentences(p, strlen(p), &s, &n));
    if (n != n_want) fail_msg("'%s': %zu sentences, expected %zu", p, n, n_want);
    for (size_t i = 0; i < n; i++) {
        size_t len = s[i].end - s[i].start;
        if (len != strlen(want[i]) || memcmp(p + s[i].start, want[i], len))
            fail_msg("'%s': sentence %zu is '%.*s', expected '%s'", p, i, (int)len, p + s[i].start,
                     want[i]);
    }
    free(s);
}

static void test_sentences(void **state) {
    (void)state;
    /* "Spot." is a sentence of its own: the rule splits after any '.' followed by a space. */
    const char *b[] = {"Spot.", "Spot saw the shiny car and said, \"Wow, Kitty!\"",
                       "Kitty smiled."};
    expect_sentences("Spot. Spot saw the shiny car and said, \"Wow, Kitty!\" Kitty smiled.", b, 3);
    const char *c[] = {"Mr. Brown met Dr. Lee at 3.5 km.", "Really?!", "Yes...", "no end"};
    expect_sentences("  Mr. Brown met Dr. Lee at 3.5 km.  Really?! Yes... no end ", c, 4);
    const char *d[] = {"He said 'go.'", "(Then he left.)", "Done."};
    expect_sentences("He said 'go.' (Then he left.) Done.", d, 3);
    cce_span *s = (cce_span *)1;
    size_t n = 7;
    assert_cce_ok(cce_cloze_sentences("   ", 3, &s, &n));
    assert_int_equal(n, 0);
    assert_null(s);
}

/* A small text of paragraphs of distinct sentences (each names its own house number); paragraph
 * p has 3 + p % 3 sentences, and its third starts on a line of its own. */
static char *make_text(int n_paras) {
    static const char *const names[] = {"Ann", "Bob", "Cat", "Dan", "Eve", "Fay", "Gus"};
    static const char *const verbs[] = {"sees", "finds", "likes", "paints", "holds"};
    static const char *const things[] = {"a red ball",  "the big tree", "two small cups",
                                         "a blue kite", "the old boat", "some warm bread"};
    size_t cap = (size_t)n_paras * 400 + 1, w = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int p = 0; p < n_paras; p++) {
        int ns = 3 + p % 3;
        for (int k = 0; k < ns; k++)
            w += (size_t)snprintf(text + w, cap - w, "%s%s %s %s near house %d%s",
                                  k ? (k == 2 ? "\n" : " ") : "", names[(p + k) % 7],
                                  verbs[(p * 3 + k) % 5], things[(p + 2 * k) % 6], 10 * p + k,
                                  (p + k) % 4 == 0 ? " today!" : ".");
        w += (size_t)snprintf(text + w, cap - w, "\n\n%s", p % 5 == 4 ? "  \n" : "");
    }
    return text;
}

/* Checks that every item is well formed for its text: the context and the true ending are
 * consecutive in the (space-joined) text, the choices are distinct, the distractors are not part
 * of the context. */
static void check_items(const cce_task *t, const char *joined, int n_choices) {
    for (size_t i = 0; i < t->n_items; i++) {
        const cce_task_item *it = &t->items[i];
        assert_int_equal(it->n_choices, n_choices);
        assert_true(it->answer >= 0 && it->answer < n_choices);
        char *both = malloc(strlen(it->context) + strlen(it->choices[it->answer]) + 2);
        sprintf(both, "%s %s", it->context, it->choices[it->answer]);
        if (!strstr(joined, both)) fail_msg("item %zu: '%s' is not in the text", i, both);
        free(both);
        for (int c = 0; c < n_choices; c++) {
            assert_true(strlen(it->choices[c]) > 0);
            if (c != it->answer && strstr(it->context, it->choices[c]))
                fail_msg("item %zu: distractor '%s' is in the context", i, it->choices[c]);
            for (int e = 0; e < c; e++)
                if (!strcmp(it->choices[c], it->choices[e]))
                    fail_msg("item %zu: choices %d and %d are equal", i, e, c);
        }
    }
}

/* The text with every run of spaces and newlines made one space (as the builder joins a
 * paragraph's lines). */
static char *joined_text(const char *text) {
    char *j = malloc(strlen(text) + 1);
    size_t w = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '\n' || *p == ' ') {
            if (w && j[w - 1] != ' ' && j[w - 1] != '\n') j[w++] = ' ';
            continue;
        }
        j[w++] = *p;
    }
    j[w] = '\0';
    return j;
}

static int tasks_equal(const cce_task *a, const cce_task *b) {
    if (a->n_items != b->n_items) return 0;
    for (size_t i = 0; i < a->n_items; i++) {
        const cce_task_item *x = &a->items[i], *y = &b->items[i];
        if (strcmp(x->context, y->context) || x->answer != y->answer ||
            x->n_choices != y->n_choices)
            return 0;
        for (int c = 0; c < x->n_choices; c++)
            if (strcmp(x->choices[c], y->choices[c])) return 0;
    }
    return 1;
}

static void test_cloze_synthetic(void **state) {
    (void)state;
    char *text = make_text(60);
    char *joined = joined_text(text);
    cce_cloze_options o = {.seed = 5};
    cce_task *all, *again, *some, *other, *three;
    assert_cce_ok(cce_cloze_build(text, strlen(text), &o, &all));
    assert_int_equal(all->n_items, 60); /* every paragraph has >= 3 sentences */
    check_items(all, joined, 4);
    assert_non_null(strstr(all->recipe, "seed=5"));
    /* Context = first min(n - 1, 4) sentences: paragraph 0 has 3 sentences, so 2 of context. */
    assert_string_equal(all->items[0].context,
                        "Ann sees a red ball near house 0 today! Bob finds two small cups near "
                        "house 1.");
    assert_string_equal(all->items[0].choices[all->items[0].answer],
                        "Cat likes the old boat near house 2.");

    assert_cce_ok(cce_cloze_build(text, strlen(text), &o, &again));
    assert_true(tasks_equal(all, again));
    o.n_items = 20;
    assert_cce_ok(cce_cloze_build(text, strlen(text), &o, &some));
    assert_int_equal(some->n_items, 20);
    check_items(some, joined, 4);
    o.seed = 6;
    assert_cce_ok(cce_cloze_build(text, strlen(text), &o, &other));
    assert_false(tasks_equal(some, other));
    /* Answers are spread over the positions. */
    int at[4] = {0};
    for (size_t i = 0; i < all->n_items; i++) at[all->items[i].answer]++;
    for (int c = 0; c < 4; c++) assert_true(at[c] >= 5);
    o.n_choices = 3;
    o.n_items = 0;
    assert_cce_ok(cce_cloze_build(text, strlen(text), &o, &three));
    check_items(three, joined, 3);

    /* Bad options and too small texts. */
    cce_task *t = NULL;
    o = (cce_cloze_options){.n_items = 61};
    expect_error(cce_cloze_build(text, strlen(text), &o, &t), CCE_ERR_RANGE, "61 items");
    assert_null(t);
    o = (cce_cloze_options){.n_choices = 1};
    expect_error(cce_cloze_build(text, strlen(text), &o, &t), CCE_ERR_RANGE, "choices = 1");
    o = (cce_cloze_options){.min_context = 3, .max_context = 2};
    expect_error(cce_cloze_build(text, strlen(text), &o, &t), CCE_ERR_RANGE, "context");
    const char *short_text = "One sentence only here.\n\nAnother lone one here.\n";
    expect_error(cce_cloze_build(short_text, strlen(short_text), NULL, &t), CCE_ERR_RANGE,
                 "no eligible paragraph");
    /* One eligible paragraph and no other sentences to draw distractors from. */
    const char *lonely = "Ann sees a ball. Bob finds a tree. Cat likes the cups.\n";
    expect_error(cce_cloze_build(lonely, strlen(lonely), NULL, &t), CCE_ERR_RANGE,
                 "too few distinct sentences");
    expect_error(cce_cloze_build_dataset("no_such_text_xyz", NULL, &t), CCE_ERR_NOT_FOUND,
                 "no_such_text_xyz");

    cce_task_free(three);
    cce_task_free(other);
    cce_task_free(some);
    cce_task_free(again);
    cce_task_free(all);
    free(joined);
    free(text);
}

/* The real cloze: stable for a seed (the first item and a hash of all items are pinned) and
 * well formed. */
static void test_cloze_real_stable(void **state) {
    (void)state;
    const char *path = test_require_mirror_file("text/tinystories_val.txt");
    cce_cloze_options o = {.n_items = 300, .seed = 1};
    cce_task *t;
    assert_cce_ok(cce_cloze_build_dataset("tinystories_val", &o, &t));
    assert_int_equal(t->n_items, 300);
    assert_string_equal(t->sha256,
                        "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6");
    assert_string_equal(t->source, "tinystories_val");
    const cce_task_item *it = &t->items[0];
    assert_string_equal(it->context,
                        "Roxy told Billy about the icy hill and how she couldn't climb it. Billy "
                        "said, \"I have an idea! Let's find some big leaves to put under your "
                        "feet. They will help you climb the icy hill.\"");
    assert_int_equal(it->answer, 1);
    const char *want[4] = {"When Tommy was done, he smiled and admired his handiwork.",
                           "Roxy and Billy looked for big leaves and found some.",
                           "From then on they were the best of friends.",
                           "Timmy loved to swim in the ocean with his mommy and daddy."};
    for (int c = 0; c < 4; c++) assert_string_equal(it->choices[c], want[c]);

    /* A hash of every item pins the whole construction. */
    const char *dir = test_scratch_dir("task_real");
    char out[4096];
    snprintf(out, sizeof out, "%s", test_path(dir, "cloze.jsonl"));
    assert_cce_ok(cce_task_write_jsonl(t, out));
    char sha[65];
    assert_cce_ok(cce_sha256_file(out, sha));
    print_message("cloze seed 1, 300 items: sha256 of the JSONL %s\n", sha);
    assert_string_equal(sha, PINNED_CLOZE_SHA256);

    char *text = test_read_file(path, NULL);
    assert_non_null(text);
    char *joined = joined_text(text);
    check_items(t, joined, 4);
    free(joined);
    free(text);
    cce_task_free(t);
}

/* ---- tokenization, decisions, scoring -------------------------------------------------------- */

static void test_tokenize(void **state) {
    (void)state;
    cce_tokenizer *tok;
    assert_cce_ok(cce_tokenizer_new_bytes(300, &tok));
    /* Byte-level: every byte is a token, and encoding puts one dummy-prefix space first. */
    struct {
        const char *context, *choice;
        size_t n, n_choice;
    } cases[] = {
        {"hi", "there", 9, 6},  /* " hi there": the choice is " there" */
        {"", "x", 2, 2},        /* " x": all of it */
        {"hi ", "there", 9, 5}, /* no second space: the choice is "there" */
        {"hi", " there", 9, 6}, /* the choice brings its own space */
        {"a\n", "b", 4, 1},     /* a context ending in whitespace */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int32_t *tokens;
        size_t n, nc;
        assert_cce_ok(cce_task_tokenize(tok, cases[k].context, cases[k].choice, &tokens, &n, &nc));
        if (n != cases[k].n || nc != cases[k].n_choice)
            fail_msg("case %zu: %zu tokens (%zu of the choice), expected %zu (%zu)", k, n, nc,
                     cases[k].n, cases[k].n_choice);
        free(tokens);
    }
    cce_tokenizer_free(tok);

    /* The real tokenizer: the context's own tokens are a prefix of the joined encoding (no merge
     * across the space), so every choice is scored after the same context tokens. */
    const char *bin = test_mirror_file("models/stories260K/tok512.bin");
    if (!bin) return;
    assert_cce_ok(cce_tokenizer_load_llama2c(bin, 512, &tok));
    const char *ctx = "Lily went to the park. She saw a big dog.";
    const char *choices[] = {"The dog was happy.", "\"Hello!\" said Tom.", "It rained."};
    int32_t *c_tok;
    size_t n_c;
    assert_cce_ok(cce_tokenizer_encode(tok, ctx, strlen(ctx), 0, 0, &c_tok, &n_c));
    for (int c = 0; c < 3; c++) {
        int32_t *tokens;
        size_t n, nc;
        assert_cce_ok(cce_task_tokenize(tok, ctx, choices[c], &tokens, &n, &nc));
        assert_int_equal(n - nc, n_c);
        assert_memory_equal(tokens, c_tok, n_c * sizeof *c_tok);
        free(tokens);
    }
    free(c_tok);
    cce_tokenizer_free(tok);
}

static void test_argmax_and_stderr(void **state) {
    (void)state;
    double a[] = {-3, -1, -1, -2};
    assert_int_equal(cce_task_argmax(a, 4), 1); /* a tie goes to the lowest index */
    double b[] = {NAN, -5, NAN, -4};
    assert_int_equal(cce_task_argmax(b, 4), 3);
    double c[] = {NAN, NAN};
    assert_int_equal(cce_task_argmax(c, 2), 0);
    double d[] = {-2, -2, -2};
    assert_int_equal(cce_task_argmax(d, 3), 0);
    assert_near(cce_task_stderr(0.5, 101), sqrt(0.25 / 100), 1e-15);
    assert_true(isnan(cce_task_stderr(1.0, 1)));
    assert_near(cce_task_stderr(0.0, 10), 0.0, 0);
}

/* cce_task_decide on hand-made log-likelihoods: acc by sum, acc_norm by sum per byte. */
static void test_decide(void **state) {
    (void)state;
    cce_task *t;
    assert_cce_ok(cce_task_new("hand", NULL, NULL, &t));
    const char *c0[] = {"ab", "abcd", "abcdefgh"}; /* 2, 4, 8 bytes */
    assert_cce_ok(cce_task_add(t, "ctx", c0, 3, 2));
    assert_cce_ok(cce_task_add(t, "ctx", c0, 3, 0));
    const char *c1[] = {"x", "y"};
    assert_cce_ok(cce_task_add(t, "ctx", c1, 2, 1));
    cce_task_result r = {0};
    r.n_items = 3;
    r.first = malloc(4 * sizeof *r.first);
    r.loglik = malloc(8 * sizeof *r.loglik);
    size_t first[4] = {0, 3, 6, 8};
    memcpy(r.first, first, sizeof first);
    /* Item 0: sums -4, -6, -8: acc picks 0; per byte -2, -1.5, -1: acc_norm picks 2 (right). */
    /* Item 1: the same sums: acc picks 0 (right), acc_norm 2. */
    /* Item 2: a tie at -3: index 0 wins both times (wrong). */
    double ll[8] = {-4, -6, -8, -4, -6, -8, -3, -3};
    memcpy(r.loglik, ll, sizeof ll);
    assert_cce_ok(cce_task_decide(t, &r));
    int pred[3] = {0, 0, 0}, pred_norm[3] = {2, 2, 0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r.pred[i], pred[i]);
        assert_int_equal(r.pred_norm[i], pred_norm[i]);
    }
    assert_int_equal(r.correct[0] + 2 * r.correct[1] + 4 * r.correct[2], 2);
    assert_int_equal(r.correct_norm[0] + 2 * r.correct_norm[1] + 4 * r.correct_norm[2], 1);
    assert_near(r.acc, 1.0 / 3, 1e-15);
    assert_near(r.acc_norm, 1.0 / 3, 1e-15);
    assert_near(r.acc_stderr, sqrt((1.0 / 3) * (2.0 / 3) / 2), 1e-15);
    assert_near(r.chance, (1.0 / 3 + 1.0 / 3 + 0.5) / 3, 1e-15);
    /* Offsets that disagree with the items are refused. */
    r.first[1] = 2;
    expect_error(cce_task_decide(t, &r), CCE_ERR_ARG, "item 0 has 3 choices");
    cce_task_result_free(&r);
    cce_task_free(t);
}

/* A model whose logits are all 0: every token has log-probability -log(V), so choices of equal
 * token length tie exactly, and the tie rule (lowest index) decides. */
static void test_constant_logits_tie(void **state) {
    (void)state;
    cce_synth_options so;
    assert_cce_ok(cce_synth_preset("tiny", &so));
    so.seed = 3;
    so.zero_classifier = 1;
    cce_model *m;
    assert_cce_ok(cce_synth_model(&so, &m));
    const int V = cce_model_config(m)->vocab_size;
    cce_task *t;
    assert_cce_ok(cce_task_new("ties", NULL, NULL, &t));
    const char *same[] = {"red", "big", "sad", "old"};       /* 3 bytes each */
    const char *diff[] = {"red ball", "a", "sad dog", "ox"}; /* 8, 1, 7, 2 bytes */
    assert_cce_ok(cce_task_add(t, "The cat was", same, 4, 0));
    assert_cce_ok(cce_task_add(t, "The cat was", same, 4, 2));
    assert_cce_ok(cce_task_add(t, "", same, 4, 3));
    assert_cce_ok(cce_task_add(t, "The cat saw a", diff, 4, 1));
    cce_task_result r;
    assert_cce_ok(cce_task_score(m, t, NULL, &r));
    assert_int_equal(r.n_items, 4);
    assert_int_equal(r.n_choices, 16);
    for (int i = 0; i < 3; i++) {
        const double *ll = r.loglik + r.first[i];
        for (int c = 0; c < 4; c++) {
            /* Byte tokens: " red" after a context (4 tokens), " red" with the dummy prefix. */
            assert_int_equal(r.n_choice_tokens[r.first[i] + c], 4);
            assert_near(ll[c], -4 * log((double)V), 1e-9);
            assert_true(ll[c] == ll[0]); /* an exact tie */
        }
        assert_int_equal(r.pred[i], 0);
        assert_int_equal(r.pred_norm[i], 0);
    }
    assert_int_equal(r.correct[0], 1);
    assert_int_equal(r.correct[1], 0);
    assert_int_equal(r.correct[2], 0);
    /* Unequal lengths: the sum prefers the fewest tokens ("a"), the per-byte score
     * -(bytes + 1) log V / bytes the most bytes ("red ball"). */
    assert_int_equal(r.pred[3], 1);
    assert_int_equal(r.correct[3], 1);
    assert_int_equal(r.pred_norm[3], 0);
    assert_int_equal(r.correct_norm[3], 0);
    assert_near(r.acc, 0.5, 1e-15);
    assert_near(r.acc_norm, 0.25, 1e-15);
    assert_near(r.acc_stderr, sqrt(0.25 / 3), 1e-15);
    assert_near(r.chance, 0.25, 1e-15);
    assert_int_equal(r.n_tokens, 3 * 4 * 4 + 9 + 2 + 8 + 3);
    assert_int_equal(r.n_truncated, 0);
    assert_int_equal(r.ctx, cce_model_config(m)->seq_len);

    /* The per-item table, and the paired bootstrap of two such tables. */
    cce_table *tab;
    assert_cce_ok(cce_task_result_table(t, &r, "task_ties", &tab));
    assert_int_equal(tab->n_rows, 4);
    int c_correct = cce_table_column(tab, "correct"), c_ll = cce_table_column(tab, "loglik");
    assert_true(c_correct >= 0 && c_ll >= 0);
    assert_int_equal(cce_table_i64(tab, 0, c_correct), 1);
    assert_int_equal(cce_table_i64(tab, 1, c_correct), 0);
    assert_int_equal(cce_table_i64(tab, 3, cce_table_column(tab, "pred_norm")), 0);
    assert_near(cce_table_vec(tab, 3, c_ll)[1], r.loglik[r.first[3] + 1], 0);
    cce_bootstrap_result b;
    assert_cce_ok(cce_bootstrap_tables(tab, tab, "correct", NULL, NULL, &b));
    assert_near(b.mean_a, 0.5, 1e-15);
    assert_true(b.ci_low == 0 && b.ci_high == 0);
    cce_table *bad;
    expect_error(cce_task_result_table(t, &r, "no spaces", &bad), CCE_ERR_ARG, "no spaces");
    cce_table_free(tab);
    cce_task_result_free(&r);
    cce_task_free(t);
    cce_model_free(m);
}

/* The summed log-likelihood equals minus the sum of cce_eval's per-token NLLs of the choice's
 * tokens on the window BOS + context + choice, with and without cutting the context. */
static void test_score_matches_eval(void **state) {
    (void)state;
    cce_model *m = fixture_synth_preset("tiny", 11); /* seq_len 64, byte tokenizer */
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    const char *ctx_long = "Once there was a fox who lived near a quiet river and sang all day.";
    const char *choices[] = {"It was glad.", "Rain fell."};
    cce_task *t;
    assert_cce_ok(cce_task_new("match", NULL, NULL, &t));
    assert_cce_ok(cce_task_add(t, "A fox sang.", choices, 2, 0));
    assert_cce_ok(cce_task_add(t, ctx_long, choices, 2, 1));
    for (int ctx = 48; ctx >= 32; ctx -= 16) {
        cce_task_options o = {.ctx = ctx};
        cce_task_result r;
        assert_cce_ok(cce_task_score(m, t, &o, &r));
        /* The long item (1 + 67 + 1 + 12 byte tokens) is cut at ctx 48 and 32; the short is not.
         * cce_eval checks it with a window one longer than ctx, within seq_len 64. */
        assert_int_equal(r.n_truncated, 1);
        for (size_t i = 0; i < 2; i++)
            for (int c = 0; c < 2; c++) {
                int32_t *all;
                size_t n, nc;
                assert_cce_ok(
                    cce_task_tokenize(tok, t->items[i].context, choices[c], &all, &n, &nc));
                size_t start = n > (size_t)ctx ? n - (size_t)ctx : 0;
                /* cce_eval's one window BOS + all[start..n-1] scores every token after BOS. */
                cce_eval_options eo = {.ctx = (int)(n - start + 1), .keep_token_nll = 1};
                cce_eval_result er;
                assert_cce_ok(cce_eval(m, NULL, all + start, n - start, &eo, &er));
                assert_int_equal(er.n_tokens, (int64_t)(n - start));
                double sum = 0;
                for (size_t j = n - start - nc; j < n - start; j++) sum += er.token_nll[j];
                /* Windows of other lengths round the float32 GEMMs differently: ~1e-8 relative. */
                assert_near(r.loglik[r.first[i] + (size_t)c], -sum, 1e-6 * fabs(sum));
                assert_int_equal(r.n_choice_tokens[r.first[i] + (size_t)c], (int32_t)nc);
                cce_eval_result_free(&er);
                free(all);
            }
        cce_task_result_free(&r);
    }

    /* A choice longer than ctx, a ctx beyond seq_len, a model without a tokenizer. */
    char longer[80];
    memset(longer, 'z', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    const char *bad[] = {"ok", longer};
    cce_task *t2;
    assert_cce_ok(cce_task_new("long", NULL, NULL, &t2));
    assert_cce_ok(cce_task_add(t2, "c", bad, 2, 0));
    cce_task_result r;
    cce_task_options o = {.ctx = 32};
    expect_error(cce_task_score(m, t2, &o, &r), CCE_ERR_RANGE, "item 0 choice 1 has 80 tokens");
    o.ctx = 65;
    expect_error(cce_task_score(m, t2, &o, &r), CCE_ERR_RANGE, "ctx = 65");
    cce_model_set_tokenizer(m, NULL);
    expect_error(cce_task_score(m, t2, NULL, &r), CCE_ERR_STATE, "tokenizer");
    cce_task_free(t2);
    cce_task_free(t);
    cce_model_free(m);
}

static void count_progress(void *user, long done, long total) {
    long *calls = user;
    calls[0]++;
    calls[1] = done;
    calls[2] = total;
}

/* The real model on the real cloze: clearly above chance. Measured on the whole cloze of the
 * text (3,113 items, seed 1): acc 0.378, acc_norm 0.419; on these 200 items 0.440 and 0.465. The
 * threshold 0.33 lies 2.6 standard errors (0.031) of a chance-level result above 0.25, and below
 * the accuracy of the whole cloze. */
static void test_real_cloze_above_chance(void **state) {
    (void)state;
    const char *bin = test_require_mirror_file("models/stories260K/stories260K.bin");
    const char *tok = test_require_mirror_file("models/stories260K/tok512.bin");
    test_require_mirror_file("text/tinystories_val.txt");
    cce_model *m;
    assert_cce_ok(cce_import_llama2c(bin, tok, &m));
    cce_cloze_options co = {.n_items = 200, .seed = 1};
    cce_task *t;
    assert_cce_ok(cce_cloze_build_dataset("tinystories_val", &co, &t));
    long calls[3] = {0};
    cce_task_options o = {.progress = count_progress, .progress_user = calls};
    cce_task_result r;
    assert_cce_ok(cce_task_score(m, t, &o, &r));
    print_message("stories260K paragraph cloze, 200 items: acc %.4f ± %.4f, acc_norm %.4f ± %.4f "
                  "(chance %.2f), %.2f s\n",
                  r.acc, r.acc_stderr, r.acc_norm, r.acc_norm_stderr, r.chance, r.seconds);
    assert_int_equal(calls[0], 200);
    assert_int_equal(calls[1], 200);
    assert_int_equal(calls[2], 200);
    assert_near(r.chance, 0.25, 1e-15);
    assert_true(r.acc > 0.33);
    assert_true(r.acc_norm > 0.33);
    assert_int_equal(r.n_truncated, 0);
    assert_int_equal(r.ctx, 512);

    char line[2048];
    cce_task_protocol_line(t, &r, line, sizeof line);
    assert_non_null(strstr(line, "protocol: task=cloze items=200 choices=4 ctx=512"));
    assert_non_null(strstr(line, "ties=lowest index"));
    assert_non_null(strstr(line, "data=tinystories_val sha256=5fc1fb01"));
    json_t *j = cce_task_result_json(t, &r);
    assert_non_null(j);
    assert_near(json_real_value(json_object_get(j, "acc")), r.acc, 0);
    assert_int_equal(json_integer_value(json_object_get(j, "items")), 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "protocol"), "line")),
                        line);
    json_decref(j);
    cce_task_result_free(&r);
    cce_task_free(t);
    cce_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonl_parse),
        cmocka_unit_test(test_jsonl_errors),
        cmocka_unit_test(test_jsonl_roundtrip_and_add),
        cmocka_unit_test(test_sentences),
        cmocka_unit_test(test_cloze_synthetic),
        cmocka_unit_test(test_cloze_real_stable),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_argmax_and_stderr),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_constant_logits_tie),
        cmocka_unit_test(test_score_matches_eval),
        cmocka_unit_test(test_real_cloze_above_chance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
