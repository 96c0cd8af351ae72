/* cce import: a checkpoint of another format -> a cce-model HDF5 file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "import.h"
#include "model.h"

static const char *const CMD = "import";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce import llama2c MODEL.bin TOKENIZER.bin -o OUT.h5 [--compress-level N]\n"
            "\n"
            "Imports a llama2.c v0 checkpoint and its tokenizer.bin into a cce-model HDF5 file.\n"
            "q/k rows are converted to the rotate-half RoPE order; the tokenizer is stored inside\n"
            "the file. The output is written to a temporary name and renamed into place, so an\n"
            "existing OUT.h5 survives a failed import.\n"
            "\n"
            "options:\n"
            "  -o, --output PATH       the .h5 file to write (required)\n"
            "  --compress-level N      0 (default): contiguous, uncompressed, fastest to load;\n"
            "                          1-9: chunked by row blocks, shuffle + deflate\n"
            "  -h, --help              show this text\n");
}

int cmd_import(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *positional[3], *output = NULL;
    int n_pos = 0;
    long level = 0;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if ((v = cli_option_value(argc, argv, &i, "--output", &missing)) ||
            (v = cli_option_value(argc, argv, &i, "-o", &missing))) {
            output = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--compress-level", &missing))) {
            int rc = cli_parse_long(CMD, "--compress-level", v, 0, 9, &level);
            if (rc) return rc;
        } else if (missing) {
            return cli_usage_error(CMD, "%s needs a value", argv[i]);
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        } else if (n_pos < 3) {
            positional[n_pos++] = argv[i];
        } else {
            return cli_usage_error(CMD, "unexpected argument '%s'", argv[i]);
        }
    }
    if (n_pos == 0) return cli_usage_error(CMD, "missing the source format (llama2c)");
    if (strcmp(positional[0], "llama2c") != 0)
        return cli_usage_error(CMD, "unknown source format '%s' (known: llama2c)", positional[0]);
    if (n_pos < 3) return cli_usage_error(CMD, "llama2c needs MODEL.bin and TOKENIZER.bin");
    if (!output) return cli_usage_error(CMD, "missing -o OUT.h5");

    cce_model *m;
    cce_status s = cce_import_llama2c(positional[1], positional[2], &m);
    if (s) return cli_fail(CMD, s);
    cce_save_options opts = {.deflate_level = (int)level};
    s = cce_model_save(m, output, &opts);
    if (s) {
        cce_model_free(m);
        return cli_fail(CMD, s);
    }
    const cce_config *c = cce_model_config(m);
    printf("wrote %s: dim %d, hidden %d, %d layers, %d heads, %d kv heads, vocab %d, seq_len %d, "
           "%s, %lld parameters\n",
           output, (int)c->dim, (int)c->hidden_dim, (int)c->n_layers, (int)c->n_heads,
           (int)c->n_kv_heads, (int)c->vocab_size, (int)c->seq_len,
           c->tied_embeddings ? "tied" : "untied", (long long)cce_model_total_params(m));
    cce_model_free(m);
    return 0;
}
