/* Multiple-choice tasks (DESIGN 6): items of a context and n choices of which one is right, read
 * from a JSONL file or built as a paragraph cloze from a text, and scored the lm-eval-harness way.
 *
 * task.c: items and JSONL files; task_cloze.c: the paragraph cloze builder; task_score.c:
 * scoring a model on a task; task_report.c: the protocol line and the JSON form of a result.
 *
 * Scoring (cce_task_score), per item and choice:
 *   - the text is context + " " + choice (no space is added when the context is empty, ends in
 *     whitespace, or the choice starts with whitespace: lm-eval's target_delimiter);
 *   - the choice's tokens are the tokens of encode(that text) after its longest common prefix with
 *     encode(context), as lm-eval splits context and continuation (with SentencePiece pieces,
 *     which never span a space, that is exactly the tokens after the context's own);
 *   - one window per choice: BOS + all tokens but the last, through cce_forward_window; when it is
 *     longer than ctx the context is cut from the left (BOS stays first, the choice is never cut;
 *     a choice of more than ctx tokens is an error);
 *   - ll = sum over the choice's tokens of log p(token | everything before it), in double;
 *   - acc: the item is right when argmax_i ll_i is the answer;
 *   - acc_norm: argmax_i ll_i / bytes_i, with bytes_i the UTF-8 byte length of choice i as given
 *     (without the delimiter): lm-eval's acc_norm, which divides by the string length (characters;
 *     equal to bytes for ASCII text);
 *   - ties: the lowest index wins (the first maximum; exact comparison of the doubles), for both;
 *   - stderr of an accuracy p over n items: sqrt(p (1 - p) / (n - 1)), which is the sample
 *     standard deviation of the 0/1 outcomes over sqrt(n) (lm-eval's mean_stderr); NaN for n < 2.
 */
#ifndef CCE_TASK_H
#define CCE_TASK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "model.h"
#include "status.h"
#include "tokenizer.h"

/* ---- items and tasks (task.c) --------------------------------------------------------------- */

typedef struct cce_task_item {
    char *context;  /* owned; may be "" */
    char **choices; /* [n_choices] owned strings, none empty */
    int n_choices;  /* >= 2 */
    int answer;     /* in [0, n_choices) */
} cce_task_item;

typedef struct cce_task {
    char *name;           /* "cloze", or the JSONL file's path (owned) */
    char *source;         /* the dataset name or file it comes from (owned) */
    char sha256[65];      /* of that file; "" when built from a buffer */
    char *recipe;         /* how it was made, e.g. "paragraph cloze: items=500 choices=4 seed=1
                             context=2-4 sentences min_words=3" or "jsonl" (owned) */
    size_t n_items, cap;  /* items used / allocated */
    cce_task_item *items; /* [n_items] */
} cce_task;

/* Most choices an item may have. */
#define CCE_TASK_MAX_CHOICES 64

/* A new empty task; name, source and recipe are copied (NULL: ""). The caller owns *out
 * (cce_task_free). */
cce_status cce_task_new(const char *name, const char *source, const char *recipe, cce_task **out);

void cce_task_free(cce_task *t);

/* Appends an item, copying context (NULL: "") and choices [n_choices]. CCE_ERR_RANGE for
 * n_choices outside [2, CCE_TASK_MAX_CHOICES] or answer outside [0, n_choices); CCE_ERR_ARG for a
 * NULL or empty choice (names its index). Nothing is appended on failure. */
cce_status cce_task_add(cce_task *t, const char *context, const char *const *choices, int n_choices,
                        int answer);

/* Keeps the first n items of t and drops the rest; the recipe gains ", first N items".
 * CCE_ERR_RANGE (t unchanged) when n is 0 or more than t holds. */
cce_status cce_task_keep_first(cce_task *t, size_t n);

/* The chance accuracy of the task: the mean over items of 1 / n_choices (NaN for no items). */
double cce_task_chance(const cce_task *t);

/* Reads a JSONL task: one JSON object per line, {"context": string, "choices": [string, ...],
 * "answer": integer}; other keys are ignored, blank lines skipped, CRLF accepted. Any bad line
 * (malformed JSON, duplicate keys, not an object, a missing or ill-typed field, fewer than two or
 * more than CCE_TASK_MAX_CHOICES choices, an empty choice, an answer out of range) is
 * CCE_ERR_FORMAT naming "origin:LINE" and the problem; a file without items too. The task is
 * named after origin (NULL: "jsonl"). The caller owns *out. */
cce_status cce_task_parse_jsonl(const char *text, size_t len, const char *origin, cce_task **out);

/* cce_task_parse_jsonl on a file (CCE_ERR_IO naming it if unreadable); source = path and sha256
 * = the file's. The caller owns *out. */
cce_status cce_task_read_jsonl(const char *path, cce_task **out);

/* Writes t as JSONL (the format cce_task_read_jsonl reads), through a temporary name renamed into
 * place. CCE_ERR_IO names the file. */
cce_status cce_task_write_jsonl(const cce_task *t, const char *path);

/* ---- the paragraph cloze (task_cloze.c) ------------------------------------------------------
 *
 * Built deterministically from a text (datasets/README.md, "The paragraph cloze"):
 *   - paragraphs are split at blank lines (lines of only whitespace); a paragraph's lines are
 *     joined with single spaces;
 *   - sentences end after a run of '.', '!' or '?' followed by optional closing quotes or
 *     brackets (" ' ) ]) and then whitespace or the paragraph's end; a '.' right after "Mr", "Mrs",
 *     "Ms", "Dr" or "St" does not end one; text after the last end is a sentence too;
 *   - a paragraph is eligible when it has at least min_context + 1 sentences and the sentence
 *     after its context has at least min_words words; its context is its first
 *     k = min(n_sentences - 1, max_context) sentences (joined by single spaces) and the true
 *     ending is sentence k + 1;
 *   - items: all eligible paragraphs in text order, or, when n_items is smaller, n_items of them
 *     chosen uniformly without replacement (gsl_ran_choose, which keeps text order);
 *   - per item, in order: the answer's position is uniform in [0, n_choices); then n_choices - 1
 *     distractors are drawn uniformly from the sentences of other paragraphs that have at least
 *     min_words words and a byte length within max(5, 20%) of the true ending's (the tolerance
 *     doubles until enough are found), none equal to a sentence of the item's own paragraph
 *     (its context or ending) or to each other;
 *   - one GSL mt19937 stream seeded with seed drives every choice (seed 0 is GSL's 4357). */

typedef struct cce_cloze_options {
    size_t n_items;  /* 0: every eligible paragraph */
    int n_choices;   /* 0: 4; else in [2, CCE_TASK_MAX_CHOICES] */
    uint64_t seed;   /* the item and distractor choice */
    int min_context; /* sentences; 0: 2 */
    int max_context; /* sentences; 0: 4; >= min_context */
    int min_words;   /* of an ending or a distractor; 0: 3 */
} cce_cloze_options;

/* A sentence of a paragraph: bytes [start, end) of the paragraph text. */
typedef struct cce_span {
    size_t start, end;
} cce_span;

/* The sentences of one paragraph p [len] by the rule above, leading and trailing whitespace of
 * each dropped, empty ones skipped. *spans [*n] is malloc'd and owned by the caller (NULL when
 * *n is 0). */
cce_status cce_cloze_sentences(const char *p, size_t len, cce_span **spans, size_t *n);

/* Builds the cloze of text [len] (o NULL: defaults). CCE_ERR_RANGE for bad options or when the
 * text has fewer eligible paragraphs than n_items asks for (or none), or too few sentences to
 * draw distractors from; both name the numbers. The task is named "cloze", source "-". The caller
 * owns *out. */
cce_status cce_cloze_build(const char *text, size_t len, const cce_cloze_options *o,
                           cce_task **out);

/* The cloze of a dataset (a manifest name, e.g. "tinystories_val", or a text file; provisioned
 * and checked as cce_dataset_resolve does, CRLF read as LF); source = name_or_path and sha256 =
 * the file's. The caller owns *out. */
cce_status cce_cloze_build_dataset(const char *name_or_path, const cce_cloze_options *o,
                                   cce_task **out);

/* ---- scoring (task_score.c) ------------------------------------------------------------------ */

/* The tokens of one choice: *tokens [*n] = encode(context + delimiter + choice) (malloc'd, owned
 * by the caller), of which the last *n_choice are the choice's (>= 1). CCE_ERR_ARG when the
 * choice adds no token of its own. */
cce_status cce_task_tokenize(const cce_tokenizer *tok, const char *context, const char *choice,
                             int32_t **tokens, size_t *n, size_t *n_choice);

/* The index of the first maximum of x [n] (the tie rule); NaN entries never win unless all are
 * NaN (then 0). */
int cce_task_argmax(const double *x, int n);

/* sqrt(p (1 - p) / (n - 1)) for an accuracy p over n items; NaN for n < 2. */
double cce_task_stderr(double p, size_t n);

typedef struct cce_task_options {
    int ctx; /* the longest window, BOS included; 0 = min(seq_len, 512), as cce_eval */
    /* Called after each item with (items done, items total); may be NULL. */
    void (*progress)(void *user, long done, long total);
    void *progress_user;
} cce_task_options;

typedef struct cce_task_result {
    int ctx;          /* the window cap used */
    size_t n_items;   /* scored items */
    size_t n_choices; /* choices over all items */
    double acc, acc_stderr, acc_norm, acc_norm_stderr;
    double chance;             /* cce_task_chance */
    size_t n_truncated;        /* items with a choice window whose context was cut */
    int64_t n_tokens;          /* scored choice tokens */
    double seconds;            /* wall time of the forward passes and scoring */
    size_t *first;             /* [n_items + 1]: item i's choices are [first[i], first[i+1]) */
    double *loglik;            /* [n_choices] summed log-likelihood of each choice */
    int32_t *n_choice_tokens;  /* [n_choices] tokens scored per choice */
    int32_t *pred, *pred_norm; /* [n_items] chosen index by acc / acc_norm */
    uint8_t *correct, *correct_norm; /* [n_items] 1 when that choice is the answer */
} cce_task_result;

/* Scores model m on task t (both borrowed). m needs a tokenizer (CCE_ERR_STATE otherwise).
 * Errors: CCE_ERR_RANGE for ctx outside [2, seq_len] or a choice longer than ctx tokens (names the
 * item and choice); CCE_ERR_NUMERIC for non-finite logits (names the item and choice); whatever
 * the forward pass reports. On success the caller releases *out with cce_task_result_free; on
 * failure *out holds nothing to free. */
cce_status cce_task_score(cce_model *m, const cce_task *t, const cce_task_options *o,
                          cce_task_result *out);

/* Frees the arrays of r and zeroes it; r itself is the caller's. NULL is allowed. */
void cce_task_result_free(cce_task_result *r);

/* Fills pred/pred_norm/correct/correct_norm and the accuracies of r (whose first, loglik and
 * n_items are set) from the choices of t: the decision rule of cce_task_score, exposed so that
 * tests can drive it with log-likelihoods of their own. */
cce_status cce_task_decide(const cce_task *t, cce_task_result *r);

/* ---- reporting (task_report.c) -------------------------------------------------------------- */

/* The protocol line printed with every task result:
 *   "protocol: task=cloze items=500 choices=4 ctx=512 window=BOS+context+choice (context cut
 *    from the left) score=sum log p(choice tokens) acc_norm=per byte ties=lowest index
 *    recipe=<recipe> data=<source> sha256=<sha256>"
 * into buf (NUL-terminated, truncated to size); returns the length the line needs. "choices" is
 * the count when all items have the same, else "mixed". */
int cce_task_protocol_line(const cce_task *t, const cce_task_result *r, char *buf, size_t size);

/* The result as a JSON object: task (name, source, sha256, recipe), protocol (line and fields),
 * items, choices, ctx, acc, acc_stderr, acc_norm, acc_norm_stderr, chance, truncated, tokens,
 * seconds (NaN becomes null). New reference owned by the caller; NULL if out of memory. */
json_t *cce_task_result_json(const cce_task *t, const cce_task_result *r);

struct cce_table;

/* The per-item table of a result, for recording in a run (results_table.h) and for comparing two
 * runs with cce_bootstrap_tables: one row per item with the int64 columns item, n_choices,
 * answer, pred, pred_norm, correct, correct_norm, and the float64 vector loglik [max choices]
 * (NaN-padded). name: the table's name, e.g. "task_cloze" ([A-Za-z0-9_]+; CCE_ERR_ARG
 * otherwise). The caller owns *out (cce_table_free). */
cce_status cce_task_result_table(const cce_task *t, const cce_task_result *r, const char *name,
                                 struct cce_table **out);

#endif
