/* cce bench-cce: the time of each stage of the cce strategy on a synthetic model of a real shape
 * (strategies/cce_bench.c): the whole compress driver with low rank, then with head pruning. */
#include <stdio.h>
#include <string.h>

#include "../../strategies/cce_internal.h"
#include "cli.h"
#include "kernels.h"
#include "synth.h"

static const char *const CMD = "bench-cce";

static void usage(FILE *f) {
    fprintf(f, "usage: cce bench-cce [--model PRESET] [--layers N] [--windows N] [--len N]\n"
               "                     [--ratio R] [--threads N] [--seed S]\n"
               "\n"
               "Runs the cce strategy (cce:ratio=R with low rank, then the same with\n"
               "prune_heads=true) through the compress driver on a synthetic model (random\n"
               "weights) with WINDOWS x LEN random calibration tokens, and prints the seconds of\n"
               "stage 0 (dense and sequential statistics), 1 (eigen-redundancy, greedy removal\n"
               "order), 2 (budget), 3 (shrinking, folding), 4 (whitened low rank), the rest and\n"
               "the total.\n"
               "\n"
               "options:\n"
               "  --model PRESET  synthetic shape: tiny, stories260K, stories15M, stories110M\n"
               "                  (default stories110M)\n"
               "  --layers N      use only the first N layers of the shape (default all)\n"
               "  --windows N     calibration windows (default 64)\n"
               "  --len N         tokens per window (default 256)\n"
               "  --ratio R       global target in [0, 0.9] (default 0.2)\n"
               "  --threads N     OpenMP / OpenBLAS threads (default OpenMP's)\n"
               "  --seed S        of the model and the tokens (default 1)\n"
               "  -h, --help      this help\n"
               "\n"
               "Exit status: 0 success, 1 failure, 2 usage.\n");
}

int cmd_bench_cce(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    cce_bench_cce_options o;
    cce_bench_cce_options_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--model") && strcmp(a, "--layers") && strcmp(a, "--windows") &&
            strcmp(a, "--len") && strcmp(a, "--ratio") && strcmp(a, "--threads") &&
            strcmp(a, "--seed"))
            return cli_usage_error(CMD, "unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error(CMD, "%s needs a value", a);
        const char *v = argv[++i];
        long n = 0;
        if (!strcmp(a, "--model")) {
            cce_synth_options so;
            if (cce_synth_preset(v, &so) != CCE_OK)
                return cli_usage_error(CMD, "--model: %s", cce_error_detail());
            o.preset = v;
        } else if (!strcmp(a, "--ratio")) {
            if (cli_parse_double(CMD, a, v, 0, 0.9, &o.ratio)) return 2;
        } else {
            long lo = !strcmp(a, "--len") ? 2 : !strcmp(a, "--seed") ? 0 : 1;
            long hi = !strcmp(a, "--threads") ? 256 : 1L << 20;
            if (!strcmp(a, "--seed")) hi = 1L << 62;
            if (cli_parse_long(CMD, a, v, lo, hi, &n)) return 2;
            if (!strcmp(a, "--layers")) o.layers = (int)n;
            if (!strcmp(a, "--windows")) o.windows = (int)n;
            if (!strcmp(a, "--len")) o.len = (int)n;
            if (!strcmp(a, "--threads")) o.threads = (int)n;
            if (!strcmp(a, "--seed")) o.seed = (uint64_t)n;
        }
    }
    printf("cce bench-cce: OpenBLAS core %s\n", cce_blas_corename());
    fflush(stdout);
    cce_bench_cce_row rows[2];
    int n_rows;
    cce_status s = cce_bench_cce_run(&o, rows, &n_rows);
    if (s) return cli_fail(CMD, s);
    cce_bench_cce_print(stdout, &o, rows, n_rows);
    return 0;
}
