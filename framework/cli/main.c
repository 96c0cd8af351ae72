/* cce: the CCE Lab command-line program. Dispatches to one function per subcommand. */
#include <stdarg.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "store.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"import", cmd_import, "import a checkpoint (llama2c, hf) into a cce-model HDF5 file"},
    {"export", cmd_export, "export a model as a Hugging Face folder or a llama2.c checkpoint"},
    {"synth", cmd_synth, "write a deterministic random Llama model of any shape"},
    {"info", cmd_info, "print a model's config, tensors and parameters per layer"},
    {"generate", cmd_generate, "generate text from a prompt"},
    {"eval", cmd_eval, "perplexity, accuracy and (with --ref) KL against a base model"},
    {"bench", cmd_bench, "measure evaluation and generation speed against machine bounds"},
    {"data", cmd_data, "list, verify and provision the datasets of the manifest"},
    {"strategies", cmd_strategies, "list compression strategies and their parameters"},
    {"compress", cmd_compress, "compress a model with strategies in sequence; writes the variant"},
    {"bench-strategies", cmd_bench_strategies, "measure the speed of the compression strategies"},
    {"bench-stats", cmd_bench_stats, "measure the cost of recording statistics"},
    {"bench-import", cmd_bench_import, "measure cce import hf speed against memcpy and disk"},
    {"bench-cce", cmd_bench_cce, "time each stage of the cce strategy on a synthetic model"},
    {"run", cmd_run, "run a Lua experiment script (lua/README.md)"},
    {"results", cmd_results, "list the runs of a results file, or export its tables"},
    {"plot", cmd_plot, "draw a figure (gnuplot: .tsv, .gp, PNG, PDF) from a results file"},
    {"table", cmd_table, "a summary or per-layer table (LaTeX, Markdown, TSV) from a results file"},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce COMMAND [ARGS...]\n\nCCE Lab %s: LLM compression experiments.\n\n"
            "commands:\n",
            CCE_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\nRun 'cce COMMAND --help' for a command's options.\n"
            "Environment: CCE_MIRROR (folder of models and texts), CCE_CACHE_DIR (derived files;\n"
            "default $XDG_CACHE_HOME/cce).\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("cce %s\n", CCE_VERSION);
        return 0;
    }
    cli_select_blas_kernels(argc, argv);
    /* Compression copies every tensor of a layer per block job and frees the copies after it;
     * glibc hands blocks this large back to the kernel, which then zeroes fresh pages for the
     * next job (a quarter of magnitude pruning's time, measured with perf on cce
     * bench-strategies). Keeping freed memory in the process for reuse avoids that. */
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    cce_hdf5_init();
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cce: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
