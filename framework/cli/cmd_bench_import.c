/* cce bench-import: the speed of cce import hf (safetensors -> float32 model -> default store)
 * against memcpy and disk-write references on this machine (bench_import.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bench_import.h"
#include "cli.h"
#include "safetensors.h"
#include "synth.h"

static const char *const CMD = "bench-import";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce bench-import [--model PRESET] [--dtype f32|f16|bf16] [--reps N]\n"
            "                        [--dir DIR] [--quick]\n"
            "\n"
            "Synthesises a model of a preset's shape, exports it as safetensors into a temporary\n"
            "folder, then times cce_import_hf (memory-mapped read, upcast to float32) and saving\n"
            "the result to the default store (contiguous, uncompressed, fsynced), best of N runs.\n"
            "Prints MB read, seconds, GB/s of safetensors input and GB/s of float32 written,\n"
            "with references measured on the same sizes: memcpy into fresh pages (the first\n"
            "touch a newly allocated model pays), memcpy into touched memory, and write + fsync\n"
            "of a file in the same folder. The model has no tokenizer (weights only). The\n"
            "temporary folder is removed afterwards.\n"
            "\n"
            "options:\n"
            "  --model PRESET        tiny, stories260K, stories15M or stories110M (default\n"
            "                        stories110M)\n"
            "  --dtype f32|f16|bf16  the checkpoint's dtype (default f16)\n"
            "  --reps N              runs, best taken, in [1, 100] (default 3)\n"
            "  --dir DIR             where the temporary folder goes (default $TMPDIR or /tmp)\n"
            "  --quick               1 run of the stories15M shape (a smoke test)\n"
            "  -h, --help            this help\n"
            "Exit status: 0 success, 1 failure, 2 usage.\n");
}

int cmd_bench_import(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    cce_bench_import_options o = {.preset = "stories110M", .dtype = CCE_ST_F16, .reps = 3};
    long reps = 3;
    int quick = 0;
    const char *dtype = "f16";
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if ((v = cli_option_value(argc, argv, &i, "--model", &missing))) {
            o.preset = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--dtype", &missing))) {
            dtype = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--dir", &missing))) {
            o.dir = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--reps", &missing))) {
            if (cli_parse_long(CMD, "--reps", v, 1, 100, &reps)) return 2;
        } else if (missing) {
            return cli_usage_error(CMD, "%s needs a value", argv[i]);
        } else {
            return cli_usage_error(CMD, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!strcasecmp(dtype, "f32"))
        o.dtype = CCE_ST_F32;
    else if (!strcasecmp(dtype, "bf16"))
        o.dtype = CCE_ST_BF16;
    else if (strcasecmp(dtype, "f16") != 0)
        return cli_usage_error(CMD, "--dtype must be f32, f16 or bf16, not '%s'", dtype);
    int known = 0;
    for (const char *const *p = cce_synth_preset_names(); *p; p++) known |= !strcmp(*p, o.preset);
    if (!known)
        return cli_usage_error(CMD,
                               "--model: unknown preset '%s' (known: tiny, stories260K, "
                               "stories15M, stories110M)",
                               o.preset);
    o.reps = (int)reps;
    if (quick) {
        o.preset = "stories15M";
        o.reps = 1;
    }
    cce_bench_import_result r;
    cce_status s = cce_bench_import(&o, &r);
    if (s) return cli_fail(CMD, s);
    printf("import hf: %s shape, %.1fM parameters, %s safetensors, best of %d run%s\n", o.preset,
           (double)r.params / 1e6, cce_st_dtype_name((cce_st_dtype)o.dtype), o.reps,
           o.reps == 1 ? "" : "s");
    printf("  read %.1f MB of safetensors, wrote %.1f MB of float32 (%.1f MB .h5)\n",
           r.input_bytes / 1e6, r.output_bytes / 1e6, r.file_bytes / 1e6);
    printf("  import (cce_import_hf)  %7.3f s  %6.2f GB/s input  %6.2f GB/s float32 written\n",
           r.import_seconds, r.input_gbs, r.output_gbs);
    printf("  save (default store)    %7.3f s\n", r.save_seconds);
    printf("  import + save           %7.3f s  %6.2f GB/s input  %6.2f GB/s float32 written\n",
           r.total_seconds, r.input_bytes / r.total_seconds / 1e9, r.total_gbs);
    printf("references (same %.1f MB):\n", r.output_bytes / 1e6);
    printf("  memcpy into fresh pages %7.3f s  %6.2f GB/s\n", r.output_bytes / r.memcpy_gbs / 1e9,
           r.memcpy_gbs);
    printf("  memcpy into warm memory %7.3f s  %6.2f GB/s\n",
           r.output_bytes / r.memcpy_warm_gbs / 1e9, r.memcpy_warm_gbs);
    printf("  write + fsync           %7.3f s  %6.2f GB/s\n", r.output_bytes / r.disk_gbs / 1e9,
           r.disk_gbs);
    return 0;
}
