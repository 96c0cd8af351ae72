/* cce import: a checkpoint of another format -> a cce-model HDF5 file. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "import.h"
#include "model.h"

static const char *const CMD = "import";

/* Bytes of the *.safetensors files in dir (what an hf import reads). */
static double safetensors_bytes(const char *dir) {
    double total = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        char path[4096];
        struct stat sb;
        if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors") &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path &&
            stat(path, &sb) == 0)
            total += (double)sb.st_size;
    }
    if (d) closedir(d);
    return total;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f) {
    fprintf(
        f, "usage: cce import llama2c MODEL.bin TOKENIZER.bin -o OUT.h5 [--compress-level N]\n"
           "       cce import hf DIR -o OUT.h5 [--tokenizer TOKENIZER.bin] [--compress-level N]\n"
           "\n"
           "llama2c: imports a llama2.c v0 checkpoint and its tokenizer.bin into a cce-model HDF5\n"
           "file. q/k rows are converted to the rotate-half RoPE order; the tokenizer is stored\n"
           "inside the file.\n"
           "hf: imports a Hugging Face folder: config.json (Llama, Mistral, Qwen2; q/k/v biases\n"
           "and attention_bias / mlp_bias biases included) and model.safetensors or its shards\n"
           "(model.safetensors.index.json); F16/BF16 weights are upcast to float32. Per-layer\n"
           "widths and removed layers recorded by cce export (cce_layer_shapes,\n"
           "cce_removed_layers) are restored. The tokenizer comes from DIR/tokenizer.json and\n"
           "tokenizer_config.json: BPE, either with byte fallback and SentencePiece-style spaces\n"
           "(Llama 2, Mistral) or ByteLevel (GPT-2, Llama 3, Qwen2: GPT-2's, Llama 3's or Qwen2's\n"
           "pre-tokenizer pattern), with its added and special tokens; a tokenizer with fewer\n"
           "tokens than config.json's vocab_size (a padded embedding) gets padding ids that\n"
           "never occur in text. Unigram, WordPiece and other pre-tokenizer patterns are refused\n"
           "with an error.\n"
           "--tokenizer gives a llama2.c tokenizer.bin instead; without either the model has no\n"
           "tokenizer.\n"
           "The output is written to a temporary name and renamed into place, so an existing\n"
           "OUT.h5 survives a failed import.\n"
           "\n"
           "options:\n"
           "  -o, --output PATH       the .h5 file to write (required)\n"
           "  --compress-level N      0 (default): contiguous, uncompressed, fastest to load;\n"
           "                          1-9: chunked by row blocks, shuffle + deflate\n"
           "  --tokenizer PATH        hf: a llama2.c tokenizer.bin (instead of tokenizer.json)\n"
           "  -h, --help              show this text\n");
}

int cmd_import(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *positional[3], *output = NULL, *tokenizer = NULL;
    int n_pos = 0;
    long level = 0;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if ((v = cli_option_value(argc, argv, &i, "--output", &missing)) ||
            (v = cli_option_value(argc, argv, &i, "-o", &missing))) {
            output = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--tokenizer", &missing))) {
            tokenizer = v;
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
    if (n_pos == 0) return cli_usage_error(CMD, "missing the source format (llama2c, hf)");
    int hf = !strcmp(positional[0], "hf");
    if (!hf && strcmp(positional[0], "llama2c") != 0)
        return cli_usage_error(CMD, "unknown source format '%s' (known: llama2c, hf)",
                               positional[0]);
    if (!hf && n_pos < 3) return cli_usage_error(CMD, "llama2c needs MODEL.bin and TOKENIZER.bin");
    if (hf && n_pos != 2) return cli_usage_error(CMD, "hf needs exactly one folder DIR");
    if (!hf && tokenizer) return cli_usage_error(CMD, "--tokenizer is for the hf source");
    if (!output) return cli_usage_error(CMD, "missing -o OUT.h5");

    cce_model *m;
    double t0 = now_s();
    cce_status s = hf ? cce_import_hf(positional[1], tokenizer, &m)
                      : cce_import_llama2c(positional[1], positional[2], &m);
    double read_s = now_s() - t0;
    if (!s && hf) {
        double bytes = safetensors_bytes(positional[1]);
        printf("read %.1f MB of safetensors (%s) in %.3f s: %.2f GB/s\n", bytes / 1e6,
               cce_model_source(m), read_s, read_s > 0 ? bytes / read_s / 1e9 : 0.0);
    }
    if (s) return cli_fail(CMD, s);
    cce_save_options opts = {.deflate_level = (int)level};
    s = cce_model_save(m, output, &opts);
    if (s) {
        cce_model_free(m);
        return cli_fail(CMD, s);
    }
    const cce_config *c = cce_model_config(m);
    printf("wrote %s: dim %d, hidden %d, %d layers, %d heads, %d kv heads, vocab %d, seq_len %d, "
           "%s, %lld parameters%s\n",
           output, (int)c->dim, (int)c->hidden_dim, (int)c->n_layers, (int)c->n_heads,
           (int)c->n_kv_heads, (int)c->vocab_size, (int)c->seq_len,
           c->tied_embeddings ? "tied" : "untied", (long long)cce_model_total_params(m),
           cce_model_tokenizer(m) ? "" : ", no tokenizer");
    cce_model_free(m);
    return 0;
}
