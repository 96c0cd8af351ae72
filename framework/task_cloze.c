/* The paragraph cloze (task.h): a multiple-choice task built deterministically from a text. The
 * true next sentence of a paragraph against sentences of other paragraphs of similar length. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "dataset.h"
#include "task.h"

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_terminator(char c) {
    return c == '.' || c == '!' || c == '?';
}

static int is_closer(char c) {
    return c == '"' || c == '\'' || c == ')' || c == ']';
}

/* 1 if the word just before position i of p (letters only) is an abbreviation after which '.'
 * does not end a sentence. */
static int abbreviation_before(const char *p, size_t i) {
    static const char *const abbr[] = {"Mr", "Mrs", "Ms", "Dr", "St"};
    size_t k = i;
    while (k > 0 && ((p[k - 1] >= 'a' && p[k - 1] <= 'z') || (p[k - 1] >= 'A' && p[k - 1] <= 'Z')))
        k--;
    if (k > 0 && !is_space(p[k - 1]) && p[k - 1] != '"' && p[k - 1] != '(') return 0;
    for (size_t a = 0; a < sizeof abbr / sizeof abbr[0]; a++)
        if (strlen(abbr[a]) == i - k && !memcmp(p + k, abbr[a], i - k)) return 1;
    return 0;
}

/* Appends [start, end) of p, trimmed, to spans unless empty. */
static void push_trimmed(const char *p, size_t start, size_t end, cce_span *spans, size_t *n) {
    while (start < end && is_space(p[start])) start++;
    while (end > start && is_space(p[end - 1])) end--;
    if (end > start) spans[(*n)++] = (cce_span){start, end};
}

cce_status cce_cloze_sentences(const char *p, size_t len, cce_span **spans, size_t *n) {
    if (!spans || !n || (!p && len)) return cce_fail(CCE_ERR_ARG, "cce_cloze_sentences: NULL");
    *spans = NULL;
    *n = 0;
    /* Every sentence but the last ends at a terminator, so there are at most len / 1 + 1. */
    size_t cap = 1;
    for (size_t i = 0; i < len; i++) cap += is_terminator(p[i]);
    cce_span *s = malloc(cap * sizeof *s); /* [cap] */
    if (!s) return cce_fail(CCE_ERR_NOMEM, "sentences of a paragraph of %zu bytes", len);
    size_t count = 0, start = 0, i = 0;
    while (i < len) {
        if (!is_terminator(p[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && is_terminator(p[j])) j++;
        int single_dot = (j == i + 1 && p[i] == '.');
        while (j < len && is_closer(p[j])) j++;
        if ((j == len || is_space(p[j])) && !(single_dot && abbreviation_before(p, i))) {
            push_trimmed(p, start, j, s, &count);
            start = j;
        }
        i = j;
    }
    push_trimmed(p, start, len, s, &count);
    if (count == 0) {
        free(s);
        return CCE_OK;
    }
    *spans = s;
    *n = count;
    return CCE_OK;
}

/* ---- the builder ---------------------------------------------------------------------------- */

typedef struct paragraph {
    size_t start, len; /* bytes of the joined text */
    cce_span *sent;    /* [n_sent], offsets relative to start */
    size_t n_sent;
} paragraph;

/* A sentence that may serve as a distractor. */
typedef struct pool_entry {
    size_t para;  /* its paragraph */
    size_t start; /* bytes [start, start + len) of the joined text */
    size_t len;
} pool_entry;

typedef struct cloze_state {
    char *joined;     /* every paragraph's text, whitespace-joined lines, back to back */
    paragraph *paras; /* [n_paras] */
    size_t n_paras;
    pool_entry *pool; /* [n_pool], sorted by (len, start) */
    size_t n_pool;
} cloze_state;

static void state_free(cloze_state *st) {
    for (size_t i = 0; i < st->n_paras; i++) free(st->paras[i].sent);
    free(st->paras);
    free(st->pool);
    free(st->joined);
}

static size_t count_words(const char *p, size_t len) {
    size_t w = 0;
    for (size_t i = 0; i < len; i++)
        if (!is_space(p[i]) && (i == 0 || is_space(p[i - 1]))) w++;
    return w;
}

/* Splits text into paragraphs (blank lines) and their sentences. */
static cce_status split_paragraphs(const char *text, size_t len, cloze_state *st) {
    st->joined = malloc(len + 1);
    size_t cap = 256;
    st->paras = malloc(cap * sizeof *st->paras);
    if (!st->joined || !st->paras) return cce_fail(CCE_ERR_NOMEM, "a text of %zu bytes", len);
    size_t w = 0, pos = 0, para_start = 0;
    int in_para = 0;
    while (pos <= len) {
        const char *nl = pos < len ? memchr(text + pos, '\n', len - pos) : NULL;
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t a = pos, b = end;
        while (a < b && is_space(text[a])) a++;
        while (b > a && is_space(text[b - 1])) b--;
        int last = (end >= len);
        if (b > a) { /* a line of the current paragraph */
            if (!in_para) {
                para_start = w;
                in_para = 1;
            } else
                st->joined[w++] = ' ';
            memcpy(st->joined + w, text + a, b - a);
            w += b - a;
        }
        if ((b == a || last) && in_para) { /* a blank line or the end closes the paragraph */
            if (st->n_paras == cap) {
                cap *= 2;
                paragraph *grown = realloc(st->paras, cap * sizeof *grown);
                if (!grown) return cce_fail(CCE_ERR_NOMEM, "%zu paragraphs", cap);
                st->paras = grown;
            }
            paragraph *pg = &st->paras[st->n_paras++];
            *pg = (paragraph){para_start, w - para_start, NULL, 0};
            cce_status s =
                cce_cloze_sentences(st->joined + pg->start, pg->len, &pg->sent, &pg->n_sent);
            if (s) return s;
            in_para = 0;
        }
        if (last) break;
        pos = end + 1;
    }
    st->joined[w] = '\0';
    return CCE_OK;
}

static int pool_cmp(const void *a, const void *b) {
    const pool_entry *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->start < y->start ? -1 : (x->start > y->start);
}

static cce_status build_pool(cloze_state *st, int min_words) {
    size_t n = 0;
    for (size_t i = 0; i < st->n_paras; i++) n += st->paras[i].n_sent;
    st->pool = malloc((n ? n : 1) * sizeof *st->pool);
    if (!st->pool) return cce_fail(CCE_ERR_NOMEM, "%zu sentences", n);
    for (size_t i = 0; i < st->n_paras; i++) {
        const paragraph *pg = &st->paras[i];
        for (size_t k = 0; k < pg->n_sent; k++) {
            size_t start = pg->start + pg->sent[k].start, len = pg->sent[k].end - pg->sent[k].start;
            if (count_words(st->joined + start, len) >= (size_t)min_words)
                st->pool[st->n_pool++] = (pool_entry){i, start, len};
        }
    }
    qsort(st->pool, st->n_pool, sizeof *st->pool, pool_cmp);
    return CCE_OK;
}

/* The first pool index whose length is >= len. */
static size_t pool_lower(const cloze_state *st, size_t len) {
    size_t lo = 0, hi = st->n_pool;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->pool[mid].len < len)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* 1 if pool entry e may join the item of paragraph para: it comes from another paragraph, and
 * its text is unlike every sentence of para (the ending and the context) and unlike the
 * distractors already chosen (chosen [n_chosen] pool indices). */
static int acceptable(const cloze_state *st, size_t e, size_t para, const size_t *chosen,
                      int n_chosen) {
    const pool_entry *p = &st->pool[e];
    if (p->para == para) return 0;
    const char *txt = st->joined + p->start;
    const paragraph *pg = &st->paras[para];
    for (size_t k = 0; k < pg->n_sent; k++)
        if (pg->sent[k].end - pg->sent[k].start == p->len &&
            !memcmp(st->joined + pg->start + pg->sent[k].start, txt, p->len))
            return 0;
    for (int c = 0; c < n_chosen; c++) {
        const pool_entry *q = &st->pool[chosen[c]];
        if (chosen[c] == e || (q->len == p->len && !memcmp(st->joined + q->start, txt, p->len)))
            return 0;
    }
    return 1;
}

/* Draws `need` distractors for an ending of ending_len bytes of paragraph para into
 * chosen [need] (pool indices). */
static cce_status draw_distractors(const cloze_state *st, gsl_rng *rng, size_t para,
                                   size_t ending_len, int need, size_t *chosen) {
    int got = 0;
    double tol = fmax(5.0, 0.2 * (double)ending_len);
    for (;;) {
        size_t lo_len = (double)ending_len > tol ? (size_t)ceil((double)ending_len - tol) : 0;
        size_t lo = pool_lower(st, lo_len);
        size_t hi = pool_lower(st, (size_t)floor((double)ending_len + tol) + 1);
        int whole = (lo == 0 && hi == st->n_pool);
        if (hi > lo && !whole) {
            for (int attempt = 0; got < need && attempt < 20 * need; attempt++) {
                size_t e = lo + gsl_rng_uniform_int(rng, hi - lo);
                if (acceptable(st, e, para, chosen, got)) chosen[got++] = e;
            }
        } else if (whole) {
            /* The whole pool is in range: draw among the acceptable entries directly. */
            while (got < need) {
                size_t n_ok = 0;
                for (size_t e = 0; e < st->n_pool; e++)
                    n_ok += acceptable(st, e, para, chosen, got);
                if (n_ok == 0)
                    return cce_fail(CCE_ERR_RANGE,
                                    "the text has too few distinct sentences of at least the "
                                    "minimum words for %d distractors",
                                    need);
                size_t pick = gsl_rng_uniform_int(rng, n_ok);
                for (size_t e = 0; e < st->n_pool; e++)
                    if (acceptable(st, e, para, chosen, got) && pick-- == 0) {
                        chosen[got++] = e;
                        break;
                    }
            }
        }
        if (got == need) return CCE_OK;
        tol *= 2;
    }
}

static cce_status check_options(const cce_cloze_options *in, cce_cloze_options *o) {
    *o = in ? *in : (cce_cloze_options){0};
    if (!o->n_choices) o->n_choices = 4;
    if (!o->min_context) o->min_context = 2;
    if (!o->max_context) o->max_context = 4;
    if (!o->min_words) o->min_words = 3;
    if (o->n_choices < 2 || o->n_choices > CCE_TASK_MAX_CHOICES)
        return cce_fail(CCE_ERR_RANGE, "cloze choices = %d is outside [2, %d]", o->n_choices,
                        CCE_TASK_MAX_CHOICES);
    if (o->min_context < 1 || o->max_context < o->min_context)
        return cce_fail(CCE_ERR_RANGE,
                        "cloze context sentences %d-%d: need 1 <= min_context <= max_context",
                        o->min_context, o->max_context);
    if (o->min_words < 1)
        return cce_fail(CCE_ERR_RANGE, "cloze min_words = %d is below 1", o->min_words);
    return CCE_OK;
}

/* Context sentences of an eligible paragraph (0 when it is not eligible). */
static size_t context_sentences(const cloze_state *st, const paragraph *pg,
                                const cce_cloze_options *o) {
    if (pg->n_sent < (size_t)o->min_context + 1) return 0;
    size_t k = pg->n_sent - 1 < (size_t)o->max_context ? pg->n_sent - 1 : (size_t)o->max_context;
    const cce_span *e = &pg->sent[k];
    if (count_words(st->joined + pg->start + e->start, e->end - e->start) < (size_t)o->min_words)
        return 0;
    return k;
}

/* Adds the item of paragraph pi (k context sentences) to t. */
static cce_status add_item(const cloze_state *st, size_t pi, size_t k, const cce_cloze_options *o,
                           gsl_rng *rng, cce_task *t) {
    const paragraph *pg = &st->paras[pi];
    const char *base = st->joined + pg->start;
    size_t ctx_len = 0;
    for (size_t j = 0; j < k; j++) ctx_len += pg->sent[j].end - pg->sent[j].start + 1;
    char *context = malloc(ctx_len + 1);
    const cce_span *e = &pg->sent[k];
    size_t elen = e->end - e->start;
    char *strings[CCE_TASK_MAX_CHOICES] = {0};
    size_t chosen[CCE_TASK_MAX_CHOICES];
    cce_status s = context ? CCE_OK : cce_fail(CCE_ERR_NOMEM, "cloze item");
    if (!s) {
        size_t w = 0;
        for (size_t j = 0; j < k; j++) {
            if (j) context[w++] = ' ';
            memcpy(context + w, base + pg->sent[j].start, pg->sent[j].end - pg->sent[j].start);
            w += pg->sent[j].end - pg->sent[j].start;
        }
        context[w] = '\0';
    }
    int answer = (int)gsl_rng_uniform_int(rng, (unsigned long)o->n_choices);
    if (!s) s = draw_distractors(st, rng, pi, elen, o->n_choices - 1, chosen);
    for (int c = 0, d = 0; !s && c < o->n_choices; c++) {
        const char *src = c == answer ? base + e->start : st->joined + st->pool[chosen[d]].start;
        size_t len = c == answer ? elen : st->pool[chosen[d++]].len;
        strings[c] = strndup(src, len);
        if (!strings[c]) s = cce_fail(CCE_ERR_NOMEM, "cloze item");
    }
    if (!s) s = cce_task_add(t, context, (const char *const *)strings, o->n_choices, answer);
    for (int c = 0; c < o->n_choices; c++) free(strings[c]);
    free(context);
    return s;
}

cce_status cce_cloze_build(const char *text, size_t len, const cce_cloze_options *opts,
                           cce_task **out) {
    if (!out || (!text && len)) return cce_fail(CCE_ERR_ARG, "cce_cloze_build: NULL argument");
    *out = NULL;
    cce_cloze_options o;
    cce_status s = check_options(opts, &o);
    if (s) return s;
    cloze_state st = {0};
    size_t *eligible = NULL, *picked = NULL, n_eligible = 0;
    gsl_rng *rng = NULL;
    cce_task *t = NULL;
    if ((s = split_paragraphs(text, len, &st)) || (s = build_pool(&st, o.min_words))) goto done;
    eligible = malloc((st.n_paras ? st.n_paras : 1) * sizeof *eligible); /* [n_paras] */
    if (!eligible) {
        s = cce_fail(CCE_ERR_NOMEM, "%zu paragraphs", st.n_paras);
        goto done;
    }
    for (size_t i = 0; i < st.n_paras; i++)
        if (context_sentences(&st, &st.paras[i], &o)) eligible[n_eligible++] = i;
    if (n_eligible == 0 || o.n_items > n_eligible) {
        s = cce_fail(CCE_ERR_RANGE,
                     "the text has %zu eligible paragraphs of %zu (eligible: at least %d "
                     "sentences, an ending of at least %d words); %zu items asked for",
                     n_eligible, st.n_paras, o.min_context + 1, o.min_words,
                     o.n_items ? o.n_items : n_eligible);
        if (n_eligible == 0)
            s = cce_fail(CCE_ERR_RANGE,
                         "the text has no eligible paragraph among %zu (eligible: at least %d "
                         "sentences, an ending of at least %d words)",
                         st.n_paras, o.min_context + 1, o.min_words);
        goto done;
    }
    size_t n_items = o.n_items ? o.n_items : n_eligible;
    rng = gsl_rng_alloc(gsl_rng_mt19937);
    picked = malloc(n_items * sizeof *picked); /* [n_items] paragraph indices in text order */
    if (!rng || !picked) {
        s = cce_fail(CCE_ERR_NOMEM, "cloze of %zu items", n_items);
        goto done;
    }
    gsl_rng_set(rng, (unsigned long)o.seed);
    if (n_items < n_eligible)
        gsl_ran_choose(rng, picked, n_items, eligible, n_eligible, sizeof *picked);
    else
        memcpy(picked, eligible, n_items * sizeof *picked);
    char recipe[256];
    snprintf(recipe, sizeof recipe,
             "paragraph cloze: items=%zu choices=%d seed=%llu context=%d-%d sentences "
             "min_words=%d",
             n_items, o.n_choices, (unsigned long long)o.seed, o.min_context, o.max_context,
             o.min_words);
    if ((s = cce_task_new("cloze", "-", recipe, &t))) goto done;
    for (size_t i = 0; !s && i < n_items; i++)
        s = add_item(&st, picked[i], context_sentences(&st, &st.paras[picked[i]], &o), &o, rng, t);
done:
    gsl_rng_free(rng);
    free(picked);
    free(eligible);
    state_free(&st);
    if (s) {
        cce_task_free(t);
        return s;
    }
    *out = t;
    return CCE_OK;
}

cce_status cce_cloze_build_dataset(const char *name_or_path, const cce_cloze_options *o,
                                   cce_task **out) {
    if (!name_or_path || !out) return cce_fail(CCE_ERR_ARG, "cce_cloze_build_dataset: NULL");
    *out = NULL;
    char *path = NULL, *text = NULL, sha[65] = "";
    size_t len = 0;
    cce_status s = cce_dataset_resolve(name_or_path, &path, sha);
    if (!s) s = cce_text_load(path, &text, &len);
    cce_task *t = NULL;
    if (!s) s = cce_cloze_build(text, len, o, &t);
    if (s) cce_error_prefix("cloze of %s: ", name_or_path);
    free(text);
    free(path);
    if (s) return s;
    char *src = strdup(name_or_path);
    if (!src) {
        cce_task_free(t);
        return cce_fail(CCE_ERR_NOMEM, "cloze of %s", name_or_path);
    }
    free(t->source);
    t->source = src;
    memcpy(t->sha256, sha, sizeof sha);
    *out = t;
    return CCE_OK;
}
