/* cce info: a model file's config, tensors and parameters per layer. Opens the model lazily and
 * reads shapes only, so it is instant on models of any size. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "tokenizer.h"

static const char *const CMD = "info";

static void usage(FILE *f) {
    fprintf(f, "usage: cce info MODEL.h5\n"
               "\n"
               "Prints the model's config, its tokenizer, every tensor with its shape, parameter\n"
               "count, float32 bytes and stored encoding, the parameters of each layer, and "
               "totals. Reads shapes\n"
               "only: no weights are loaded.\n"
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
            cce_model_free(m);
            return cli_fail(CMD, s);
        }
        printf(" %12lld %14lld  %s\n", (long long)numel, (long long)numel * 4, enc);
        if (!strcmp(name, "embed_tokens.weight")) embed = numel;
        if (!strcmp(name, "lm_head.weight")) head = numel;
        if (!strcmp(name, "norm.weight")) norm = numel;
    }

    printf("\nlayers:\n");
    printf("  %5s %10s %7s %8s %7s %12s\n", "layer", "hidden_dim", "heads", "kv_heads", "removed",
           "params");
    int64_t blocks = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const cce_layer_shape *ls = cce_model_layer(m, l);
        int64_t p = cce_model_layer_params(m, l);
        blocks += p;
        printf("  %5d %10d %7d %8d %7d %12lld\n", l, (int)ls->hidden_dim, (int)ls->n_heads,
               (int)ls->n_kv_heads, (int)ls->removed, (long long)p);
    }
    int64_t total = cce_model_total_params(m);
    printf("\ntotals:\n");
    printf("  embedding:   %12lld\n", (long long)embed);
    printf("  blocks:      %12lld\n", (long long)blocks);
    printf("  final norm:  %12lld\n", (long long)norm);
    printf("  lm_head:     %12lld%s\n", (long long)head, c->tied_embeddings ? " (tied)" : "");
    printf("  total:       %12lld parameters, %.2f MiB as float32\n", (long long)total, mib(total));
    cce_model_free(m);
    return 0;
}
