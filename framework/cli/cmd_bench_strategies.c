/* cce bench-strategies: speed of the compression strategies on a synthetic model of a real shape
 * (framework/bench_strategies.h): GB/s of RTN and magnitude over every block weight on one thread
 * and on all threads, seconds per layer of Wanda, GPTQ, SparseGPT and whitened low rank. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_strategies.h"
#include "cli.h"
#include "kernels.h"
#include "synth.h"

static const char *const CMD = "bench-strategies";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce bench-strategies [--model PRESET] [--threads N] [--reps N] [--layers N]\n"
            "                            [--tokens N] [--only LIST] [--quick]\n"
            "\n"
            "Measures the compression strategies on a synthetic model (random weights) of a\n"
            "real shape: RTN and magnitude pruning process every block weight (one block job\n"
            "per layer, as cce compress runs them) and their speed is printed in GB/s of fp32\n"
            "weights, on one thread and on all threads; Wanda, GPTQ, SparseGPT and whitened low\n"
            "rank are timed per layer (the seven linear tensors of a block) with synthetic\n"
            "calibration statistics (correlated inputs with outlier channels).\n"
            "\n"
            "options:\n"
            "  --model PRESET  synthetic shape: tiny, stories260K, stories15M, stories110M\n"
            "                  (default stories110M)\n"
            "  --threads N     'all threads', in [1, 256] (default: OpenMP's)\n"
            "  --reps N        passes of RTN and magnitude, best taken (default 3)\n"
            "  --layers N      layers timed per solving strategy, mean taken (default 2)\n"
            "  --tokens N      nominal calibration tokens of the statistics (default 4096)\n"
            "  --only LIST     comma-separated strategy names (rtn, magnitude, wanda, gptq,\n"
            "                  sparsegpt, lowrank); default all\n"
            "  --quick         1 pass and 1 layer (a smoke test, not a measurement)\n"
            "  -h, --help      this help\n"
            "\n"
            "Like every cce command, it selects OpenBLAS's kernels for this CPU when OpenBLAS\n"
            "would fall back to generic ones and OPENBLAS_CORETYPE is unset.\n"
            "Exit status: 0 success, 1 failure, 2 usage.\n");
}

int cmd_bench_strategies(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    cce_bench_strategies_options o;
    cce_bench_strategies_options_init(&o);
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) {
            quick = 1;
            continue;
        }
        if (strcmp(a, "--model") && strcmp(a, "--threads") && strcmp(a, "--reps") &&
            strcmp(a, "--layers") && strcmp(a, "--tokens") && strcmp(a, "--only"))
            return cli_usage_error(CMD, "unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error(CMD, "%s needs a value", a);
        const char *v = argv[++i];
        long n = 0;
        if (!strcmp(a, "--model")) {
            cce_synth_options so;
            if (cce_synth_preset(v, &so) != CCE_OK)
                return cli_usage_error(CMD, "--model: %s", cce_error_detail());
            o.preset = v;
        } else if (!strcmp(a, "--only")) {
            o.only = v;
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_long(CMD, a, v, 1, 256, &n)) return 2;
            o.threads = (int)n;
        } else if (!strcmp(a, "--reps")) {
            if (cli_parse_long(CMD, a, v, 1, 1000, &n)) return 2;
            o.reps = (int)n;
        } else if (!strcmp(a, "--layers")) {
            if (cli_parse_long(CMD, a, v, 1, 1000, &n)) return 2;
            o.layers = (int)n;
        } else {
            if (cli_parse_long(CMD, a, v, 1, 1L << 40, &n)) return 2;
            o.calib_tokens = n;
        }
    }
    if (quick) o.reps = o.layers = 1;
    if (o.threads) omp_set_num_threads(o.threads);
    printf("cce bench-strategies%s: OpenBLAS core %s\n", quick ? " --quick" : "",
           cce_blas_corename());
    cce_bench_strategies_result r;
    cce_status s = cce_bench_strategies_run(&o, &r);
    if (s) return cli_fail(CMD, s);
    cce_bench_strategies_print(stdout, &r, &o);
    cce_bench_strategies_result_clear(&r);
    return 0;
}
