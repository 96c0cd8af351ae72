/* cce synth: a deterministic random Llama model of a preset or custom shape. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "synth.h"
#include "tokenizer.h"

static const char *const CMD = "synth";

static void usage(FILE *f) {
    fprintf(
        f, "usage: cce synth PRESET|custom -o OUT.h5 [options]\n"
           "\n"
           "Writes a random Llama model (gaussian weights with std 1/sqrt(fan_in), norms of ones,\n"
           "a byte-level tokenizer). The same seed and shape give a bit-identical model.\n"
           "\n"
           "presets (dim/hidden/layers/heads/kv heads/vocab/seq_len):\n"
           "  tiny          32/64/2/4/2/300/64\n"
           "  stories260K   64/172/5/8/4/512/512\n"
           "  stories15M    288/768/6/6/6/32000/256\n"
           "  stories110M   768/2048/12/12/12/32000/1024\n"
           "  custom        no defaults: give --dim --hidden --layers --heads --vocab --seq-len\n"
           "                (--kv-heads defaults to --heads)\n"
           "\n"
           "options (shape options override the preset's fields; head_dim = dim / heads):\n"
           "  -o, --output PATH       the .h5 file to write (required)\n"
           "  --seed S                random seed, 0..2^64-1 (default 0)\n"
           "  --dim N                 residual width\n"
           "  --hidden N              FFN width\n"
           "  --layers N              number of blocks\n"
           "  --heads N               query heads (must divide dim)\n"
           "  --kv-heads N            key/value heads (must divide heads)\n"
           "  --vocab N               vocabulary size (at least 259 for the byte tokenizer)\n"
           "  --seq-len N             maximum context\n"
           "  --init-std X            std of every weight matrix instead of 1/sqrt(fan_in)\n"
           "  --untied                a separate random lm_head instead of the tied embedding\n"
           "  --zero-classifier       an untied lm_head of zeros: every logit is 0\n"
           "  --bias                  give every layer random q/k/v/o/gate/up/down biases\n"
           "  --bias-std X            their std (default 0.1; implies --bias)\n"
           "  --tokenizer FILE        a llama2.c tokenizer.bin of exactly --vocab pieces instead\n"
           "                          of the byte-level one (e.g. the Llama 2 tokenizer with\n"
           "                          stories15M/stories110M, to run a real shape on real text)\n"
           "  --compress-level N      0 (default): uncompressed; 1-9: shuffle + deflate\n"
           "  -h, --help              show this text\n");
}

static int parse_seed(const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = text ? strtoull(text, &end, 10) : 0;
    if (!text || !*text || *end || errno || text[0] == '-')
        return cli_usage_error(CMD, "--seed needs a whole number in [0, 2^64-1], got '%s'",
                               text ? text : "");
    *out = (uint64_t)v;
    return 0;
}

/* Shape options, in the order of the fields they set; -1 = not given. */
enum { O_DIM, O_HIDDEN, O_LAYERS, O_HEADS, O_KV, O_VOCAB, O_SEQ, O_COUNT };
static const char *const shape_opts[O_COUNT] = {"--dim",      "--hidden", "--layers", "--heads",
                                                "--kv-heads", "--vocab",  "--seq-len"};
static const long shape_max[O_COUNT] = {1 << 20, 1 << 20, 1024, 1 << 20, 1 << 20, 1 << 22, 1 << 20};

int cmd_synth(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *preset = NULL, *output = NULL, *tokenizer = NULL;
    long shape[O_COUNT], level = 0;
    double init_std = 0, bias_std = 0;
    int untied = 0, zero_classifier = 0, biases = 0, rc;
    uint64_t seed = 0;
    for (int k = 0; k < O_COUNT; k++) shape[k] = -1;
    for (int i = 1; i < argc; i++) {
        int missing = 0, matched = 0;
        const char *v;
        for (int k = 0; k < O_COUNT && !matched && !missing; k++) {
            if ((v = cli_option_value(argc, argv, &i, shape_opts[k], &missing))) {
                if ((rc = cli_parse_long(CMD, shape_opts[k], v, 1, shape_max[k], &shape[k])))
                    return rc;
                matched = 1;
            }
        }
        if (matched) continue;
        if (missing) return cli_usage_error(CMD, "%s needs a value", argv[i]);
        if ((v = cli_option_value(argc, argv, &i, "--output", &missing)) ||
            (v = cli_option_value(argc, argv, &i, "-o", &missing))) {
            output = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--tokenizer", &missing))) {
            tokenizer = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--seed", &missing))) {
            if ((rc = parse_seed(v, &seed))) return rc;
        } else if ((v = cli_option_value(argc, argv, &i, "--init-std", &missing))) {
            if ((rc = cli_parse_double(CMD, "--init-std", v, 0.0, 1e3, &init_std))) return rc;
        } else if ((v = cli_option_value(argc, argv, &i, "--bias-std", &missing))) {
            if ((rc = cli_parse_double(CMD, "--bias-std", v, 0.0, 1e3, &bias_std))) return rc;
            biases = 1;
        } else if ((v = cli_option_value(argc, argv, &i, "--compress-level", &missing))) {
            if ((rc = cli_parse_long(CMD, "--compress-level", v, 0, 9, &level))) return rc;
        } else if (missing) {
            return cli_usage_error(CMD, "%s needs a value", argv[i]);
        } else if (!strcmp(argv[i], "--untied")) {
            untied = 1;
        } else if (!strcmp(argv[i], "--zero-classifier")) {
            zero_classifier = 1;
        } else if (!strcmp(argv[i], "--bias")) {
            biases = 1;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        } else if (!preset) {
            preset = argv[i];
        } else {
            return cli_usage_error(CMD, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!preset) return cli_usage_error(CMD, "missing PRESET (tiny, stories260K, ...) or custom");
    if (!output) return cli_usage_error(CMD, "missing -o OUT.h5");

    cce_synth_options o;
    if (!strcmp(preset, "custom")) {
        for (int k = 0; k < O_COUNT; k++)
            if (k != O_KV && shape[k] < 0)
                return cli_usage_error(CMD, "custom needs %s", shape_opts[k]);
        memset(&o, 0, sizeof o);
        o.cfg.rope_theta = 10000.0f;
        o.cfg.norm_eps = 1e-5f;
        o.cfg.tied_embeddings = 1;
        if (shape[O_KV] < 0) shape[O_KV] = shape[O_HEADS];
    } else if (cce_synth_preset(preset, &o) != CCE_OK) {
        return cli_usage_error(CMD, "%s", cce_error_detail());
    }
    cce_config *c = &o.cfg;
    int32_t *fields[O_COUNT] = {&c->dim,        &c->hidden_dim, &c->n_layers, &c->n_heads,
                                &c->n_kv_heads, &c->vocab_size, &c->seq_len};
    for (int k = 0; k < O_COUNT; k++)
        if (shape[k] > 0) *fields[k] = (int32_t)shape[k];
    if (c->dim % c->n_heads != 0)
        return cli_usage_error(CMD, "dim = %d is not a multiple of heads = %d", (int)c->dim,
                               (int)c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    if (untied) c->tied_embeddings = 0;
    o.seed = seed;
    o.init_std = (float)init_std;
    o.zero_classifier = zero_classifier;
    o.biases = biases;
    o.bias_std = (float)bias_std;
    if (cce_config_validate(c, "model shape") != CCE_OK)
        return cli_usage_error(CMD, "%s", cce_error_detail());
    if (c->vocab_size < 259)
        return cli_usage_error(CMD, "vocab = %d is below 259 (the byte tokenizer's size)",
                               (int)c->vocab_size);

    cce_model *m;
    cce_status s = cce_synth_model(&o, &m);
    if (s) return cli_fail(CMD, s);
    if (tokenizer) {
        cce_tokenizer *tok;
        if ((s = cce_tokenizer_load_llama2c(tokenizer, c->vocab_size, &tok))) {
            cce_model_free(m);
            return cli_fail(CMD, s);
        }
        cce_model_set_tokenizer(m, tok);
    }
    char source[96];
    snprintf(source, sizeof source, "synth:%s:seed=%llu", preset, (unsigned long long)seed);
    cce_model_set_source(m, source);
    cce_save_options opts = {.deflate_level = (int)level};
    if ((s = cce_model_save(m, output, &opts))) {
        cce_model_free(m);
        return cli_fail(CMD, s);
    }
    printf("wrote %s: %s seed %llu, dim %d, hidden %d, %d layers, %d heads, %d kv heads, "
           "vocab %d, seq_len %d, %s%s, %lld parameters\n",
           output, preset, (unsigned long long)seed, (int)c->dim, (int)c->hidden_dim,
           (int)c->n_layers, (int)c->n_heads, (int)c->n_kv_heads, (int)c->vocab_size,
           (int)c->seq_len,
           zero_classifier ? "zero classifier" : (c->tied_embeddings ? "tied" : "untied"),
           biases ? ", biases" : "", (long long)cce_model_total_params(m));
    cce_model_free(m);
    return 0;
}
