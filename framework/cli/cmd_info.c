/* cce info: a model file's config, tensors and parameters per layer. Opens the model lazily and
 * reads shapes only, so it is instant on models of any size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "tokenizer.h"

static const char *const CMD = "info";

static void usage(FILE *f) {
    fprintf(f, "usage: cce info MODEL.h5\n"
               "\n"
               "Prints the model's config, its tokenizer, every tensor with its shape, its\n"
               "parameters and bytes as stored (a low-rank encoding counts its two factors) and\n"
               "its encoding, the biases (if any), the parameters of each layer (biases\n"
               "included), and totals. Reads shapes only: no weights are loaded.\n"
               "\n"
               "options:\n"
               "  -h, --help              show this text\n");
}

static void print_shape(int ndim, const int64_t *shape) {
    char buf[96];
    size_t n = (size_t)snprintf(buf, sizeof buf, "[");
    for (int k = 0; k < ndim && n < sizeof buf; k++)
        n +=
            (size_t)snprintf(buf + n, sizeof buf - n, "%s%lld", k ? ", " : "", (long long)shape[k]);
    if (n < sizeof buf) snprintf(buf + n, sizeof buf - n, "]");
    printf("%-16s", buf);
}

static double mib(int64_t params) {
    return (double)params * 4.0 / (1024.0 * 1024.0);
}

int cmd_info(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        if (path) return cli_usage_error(CMD, "unexpected argument '%s'", argv[i]);
        path = argv[i];
    }
    if (!path) return cli_usage_error(CMD, "missing MODEL.h5");

    cce_model *m;
    cce_status s = cce_model_open(path, &m);
    if (s) return cli_fail(CMD, s);
    const cce_config *c = cce_model_config(m);
    printf("file:            %s\n", path);
    printf("source:          %s\n", *cce_model_source(m) ? cce_model_source(m) : "(unknown)");
    printf("arch:            llama\n");
    printf("dim:             %d\n", (int)c->dim);
    printf("hidden_dim:      %d\n", (int)c->hidden_dim);
    printf("n_layers:        %d\n", (int)c->n_layers);
    printf("n_heads:         %d\n", (int)c->n_heads);
    printf("n_kv_heads:      %d\n", (int)c->n_kv_heads);
    printf("head_dim:        %d\n", (int)c->head_dim);
    printf("vocab_size:      %d\n", (int)c->vocab_size);
    printf("seq_len:         %d\n", (int)c->seq_len);
    printf("rope_theta:      %g\n", (double)c->rope_theta);
    printf("norm_eps:        %g\n", (double)c->norm_eps);
    printf("tied_embeddings: %d\n", (int)c->tied_embeddings);
    const cce_tokenizer *tok = cce_model_tokenizer(m);
    if (tok)
        printf("tokenizer:       %d pieces, bos %d, eos %d\n", (int)cce_tokenizer_vocab_size(tok),
               (int)cce_tokenizer_bos(tok), (int)cce_tokenizer_eos(tok));
    else
        printf("tokenizer:       (none)\n");

    size_t n = cce_model_tensor_count(m);
    printf("\ntensors: %zu\n", n);
    printf("  %-44s %-16s %12s %14s  %s\n", "name", "shape", "params", "bytes", "encoding");
    int64_t embed = 0, head = 0, norm = 0;
    /* [n_layers] parameters that low-rank encodings save in each layer (dense size - factors) */
    int64_t *lowrank_saved = calloc((size_t)c->n_layers + 1, sizeof *lowrank_saved);
    int64_t lowrank_saved_all = 0;
    if (!lowrank_saved) {
        cce_model_free(m);
        return cli_fail(CMD, cce_fail(CCE_ERR_NOMEM, "info: %s: %d layers", path, c->n_layers));
    }
    for (size_t i = 0; i < n; i++) {
        int ndim;
        int64_t shape[4], numel = 1;
        const char *name = cce_model_tensor_name_at(m, i);
        cce_model_tensor_shape_at(m, i, &ndim, shape);
        for (int k = 0; k < ndim; k++) numel *= shape[k];
        printf("  %-44s ", name);
        print_shape(ndim, shape);
        char enc[96];
        if ((s = cce_model_tensor_encoding_text(m, i, enc, sizeof enc))) {
            free(lowrank_saved);
            cce_model_free(m);
            return cli_fail(CMD, s);
        }
        /* stored parameters: a low-rank pair counts its factors a [rows, r] and b [r, cols] */
        long long rank = 0;
        int64_t stored = numel;
        if (ndim == 2 && sscanf(enc, "lowrank rank %lld", &rank) == 1 && rank > 0) {
            stored = (int64_t)rank * (shape[0] + shape[1]);
            int layer = -1;
            if (sscanf(name, "layers.%d.", &layer) == 1 && layer >= 0 && layer < c->n_layers)
                lowrank_saved[layer] += numel - stored;
            lowrank_saved_all += numel - stored;
        }
        printf(" %12lld %14lld  %s\n", (long long)stored, (long long)stored * 4, enc);
        if (!strcmp(name, "embed_tokens.weight")) embed = numel;
        if (!strcmp(name, "lm_head.weight")) head = numel;
        if (!strcmp(name, "norm.weight")) norm = numel;
    }

    int64_t biases = 0;
    size_t n_bias = cce_model_bias_count(m);
    if (n_bias > 0) {
        printf("\nbiases: %zu\n", n_bias);
        printf("  %-44s %-16s %12s %14s\n", "name", "shape", "params", "bytes");
        for (int l = 0; l < c->n_layers; l++)
            for (int b = 0; b < CCE_LB_COUNT; b++) {
                if (!cce_model_has_layer_bias(m, l, (cce_layer_bias)b)) continue;
                char name[96];
                cce_layer_bias_name(l, (cce_layer_bias)b, name, sizeof name);
                int64_t shape[1] = {cce_layer_bias_rows(cce_model_config(m), cce_model_layer(m, l),
                                                        (cce_layer_bias)b)};
                printf("  %-44s ", name);
                print_shape(1, shape);
                printf(" %12lld %14lld\n", (long long)shape[0], (long long)shape[0] * 4);
                biases += shape[0];
            }
    }

    printf("\nlayers:\n");
    printf("  %5s %10s %7s %8s %7s %12s\n", "layer", "hidden_dim", "heads", "kv_heads", "removed",
           "params");
    int64_t blocks = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        int64_t p = cce_model_layer_params(m, l) - lowrank_saved[l];
        blocks += p;
        printf("  %5d %10d %7d %8d %7d %12lld\n", l, (int)ls->hidden_dim, (int)ls->n_heads,
               (int)ls->n_kv_heads, (int)ls->removed, (long long)p);
    }
    int64_t total = cce_model_total_params(m) - lowrank_saved_all;
    free(lowrank_saved);
    printf("\ntotals:\n");
    printf("  embedding:   %12lld\n", (long long)embed);
    printf("  blocks:      %12lld\n", (long long)blocks);
    printf("  final norm:  %12lld\n", (long long)norm);
    printf("  lm_head:     %12lld%s\n", (long long)head, c->tied_embeddings ? " (tied)" : "");
    if (n_bias > 0) printf("  biases:      %12lld (in blocks)\n", (long long)biases);
    printf("  total:       %12lld parameters, %.2f MiB as float32\n", (long long)total, mib(total));
    cce_model_free(m);
    return 0;
}
