/* cce export: a cce-model HDF5 file -> a Hugging Face folder or a llama2.c checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "import.h"
#include "model.h"
#include "safetensors.h"

static const char *const CMD = "export";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce export MODEL.h5 --format hf -o DIR [--dtype f32|f16|bf16]\n"
            "                  [--shard-size BYTES]\n"
            "       cce export MODEL.h5 --format llama2c -o MODEL.bin [--tokenizer-output PATH]\n"
            "\n"
            "hf: writes DIR/config.json, DIR/model.safetensors (or shards of at most --shard-size\n"
            "bytes with model.safetensors.index.json) and, when the model has a tokenizer,\n"
            "DIR/tokenizer.json + tokenizer_config.json (BPE, merges derived from the piece\n"
            "scores) and DIR/tokenizer.bin in llama2.c format; cce import hf DIR reads the folder\n"
            "back. The architecture is LlamaForCausalLM (attention_bias / mlp_bias true when the\n"
            "model has such biases; the rest of the set is written as zeros), or Qwen2ForCausalLM\n"
            "when the only biases are on q/k/v. Structurally compressed models are written with\n"
            "each layer's own tensor shapes and removed layers left out (the others renumbered);\n"
            "config.json keeps the original uniform widths and records the per-layer widths and\n"
            "removed layers (cce_layer_shapes, cce_removed_layers, cce_note). Stock transformers\n"
            "cannot load per-layer widths; cce import hf restores them.\n"
            "llama2c: writes a llama2.c v0 checkpoint (uniform layers, no biases, rope_theta\n"
            "10000, norm_eps 1e-5) and its tokenizer.bin (default: tokenizer.bin beside\n"
            "MODEL.bin).\n"
            "Compressed tensors are written dense. Every file is written to a temporary name and\n"
            "renamed.\n"
            "\n"
            "options:\n"
            "  --format hf|llama2c       the output format (required)\n"
            "  -o, --output PATH         the folder (hf) or .bin file (llama2c) to write\n"
            "  --dtype f32|f16|bf16      hf: the safetensors dtype (default f32)\n"
            "  --shard-size BYTES        hf: shard the weights (default: one file)\n"
            "  --tokenizer-output PATH   llama2c: where to write tokenizer.bin\n"
            "  -h, --help                show this text\n");
}

/* "dir/model.bin" -> "dir/tokenizer.bin" (malloc'd). */
static char *tokenizer_beside(const char *model_bin) {
    const char *slash = strrchr(model_bin, '/');
    size_t dir_len = slash ? (size_t)(slash - model_bin + 1) : 0;
    char *p = malloc(dir_len + 16);
    if (p) snprintf(p, dir_len + 16, "%.*stokenizer.bin", (int)dir_len, model_bin);
    return p;
}

int cmd_export(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *input = NULL, *output = NULL, *format = NULL, *dtype = "f32", *tok_out = NULL;
    long shard = 0;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if ((v = cli_option_value(argc, argv, &i, "--output", &missing)) ||
            (v = cli_option_value(argc, argv, &i, "-o", &missing))) {
            output = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--format", &missing))) {
            format = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--dtype", &missing))) {
            dtype = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--tokenizer-output", &missing))) {
            tok_out = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--shard-size", &missing))) {
            int rc = cli_parse_long(CMD, "--shard-size", v, 1, 1L << 62, &shard);
            if (rc) return rc;
        } else if (missing) {
            return cli_usage_error(CMD, "%s needs a value", argv[i]);
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        } else if (!input) {
            input = argv[i];
        } else {
            return cli_usage_error(CMD, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!input) return cli_usage_error(CMD, "missing MODEL.h5");
    if (!format) return cli_usage_error(CMD, "missing --format (hf, llama2c)");
    if (!output) return cli_usage_error(CMD, "missing -o");
    int hf = !strcmp(format, "hf");
    if (!hf && strcmp(format, "llama2c") != 0)
        return cli_usage_error(CMD, "unknown --format '%s' (known: hf, llama2c)", format);
    cce_export_hf_options o = {.dtype = CCE_ST_F32, .shard_bytes = (uint64_t)shard};
    if (!strcasecmp(dtype, "f16"))
        o.dtype = CCE_ST_F16;
    else if (!strcasecmp(dtype, "bf16"))
        o.dtype = CCE_ST_BF16;
    else if (strcasecmp(dtype, "f32") != 0)
        return cli_usage_error(CMD, "--dtype must be f32, f16 or bf16, not '%s'", dtype);
    if (!hf && (shard || strcasecmp(dtype, "f32") != 0))
        return cli_usage_error(CMD, "--dtype and --shard-size are for --format hf");
    if (hf && tok_out) return cli_usage_error(CMD, "--tokenizer-output is for --format llama2c");

    cce_model *m;
    cce_status s = cce_model_open(input, &m);
    if (s) return cli_fail(CMD, s);
    char *tok_path = NULL;
    if (hf) {
        s = cce_export_hf(m, output, &o);
    } else {
        if (cce_model_tokenizer(m) && !tok_out && !(tok_out = tok_path = tokenizer_beside(output)))
            s = cce_fail(CCE_ERR_NOMEM, "tokenizer path");
        if (!s) s = cce_export_llama2c(m, output, cce_model_tokenizer(m) ? tok_out : NULL);
    }
    if (s) {
        free(tok_path);
        cce_model_free(m);
        return cli_fail(CMD, s);
    }
    if (hf)
        printf("wrote %s: config.json, %s safetensors%s\n", output, cce_st_dtype_name(o.dtype),
               cce_model_tokenizer(m) ? ", tokenizer.json, tokenizer_config.json, tokenizer.bin"
                                      : "");
    else
        printf("wrote %s%s%s\n", output, cce_model_tokenizer(m) ? " and " : "",
               cce_model_tokenizer(m) ? tok_out : "");
    free(tok_path);
    cce_model_free(m);
    return 0;
}
