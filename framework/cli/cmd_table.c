/* cce table: a summary or per-layer table of a results file (framework/table_render.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "table_render.h"

static const char *const CMD = "table";

static void usage(FILE *f) {
    fprintf(f, "usage: cce table RESULTS.h5 [--kind summary|layers] [--format latex|markdown|tsv]\n"
               "                 [--runs FILTER] [-o OUT]\n"
               "\n"
               "Writes a table of the runs of a results file:\n"
               "  summary (default)  one row per run: strategy, target, compression, bits per\n"
               "                     weight, perplexity ± stderr, Δppl to dense, KL, top-1 and\n"
               "                     the multiple-choice accuracies the runs hold\n"
               "  layers             one row per run and layer: params, compression, bits per\n"
               "                     weight, sparsity, relative Frobenius error\n"
               "Formats: latex (booktabs; the best value per column in bold, among the\n"
               "compressed runs), markdown (default; best in bold), tsv (commented header, full\n"
               "precision).\n"
               "\n"
               "  --runs FILTER   the runs (see cce plot --help), e.g. 'strategy=wanda|rtn'\n"
               "  -o, --output    write to OUT (through a temporary name) instead of stdout\n"
               "  -h, --help      this text\n");
}

int cmd_table(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *file = NULL, *kind = "summary", *fmt = "markdown", *runs = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if ((v = cli_option_value(argc, argv, &i, "--kind", &missing)))
            kind = v;
        else if ((v = cli_option_value(argc, argv, &i, "--format", &missing)))
            fmt = v;
        else if ((v = cli_option_value(argc, argv, &i, "--runs", &missing)))
            runs = v;
        else if ((v = cli_option_value(argc, argv, &i, "--output", &missing)) ||
                 (v = cli_option_value(argc, argv, &i, "-o", &missing)))
            out = v;
        else if (missing)
            return cli_usage_error(CMD, "%s needs a value", argv[i]);
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        else if (file)
            return cli_usage_error(CMD, "one results file only (got '%s' and '%s')", file, argv[i]);
        else
            file = argv[i];
    }
    if (!file) return cli_usage_error(CMD, "missing the results file");
    cce_table_kind k;
    cce_table_format f;
    if (!cce_table_kind_parse(kind, &k))
        return cli_usage_error(CMD, "--kind: summary or layers, got '%s'", kind);
    if (!cce_table_format_parse(fmt, &f))
        return cli_usage_error(CMD, "--format: latex, markdown or tsv, got '%s'", fmt);
    if (!out) {
        cce_status s = cce_table_render(file, k, runs, f, stdout);
        return s ? cli_fail(CMD, s) : 0;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    FILE *o = fopen(tmp, "w");
    if (!o)
        return cli_fail(CMD, cce_fail(CCE_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno)));
    cce_status s = cce_table_render(file, k, runs, f, o);
    if (fflush(o) != 0 || fsync(fileno(o)) != 0) {
        if (!s) s = cce_fail(CCE_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    }
    fclose(o);
    if (!s && rename(tmp, out) != 0)
        s = cce_fail(CCE_ERR_IO, "%s: cannot rename into place: %s", out, strerror(errno));
    if (s) {
        unlink(tmp);
        return cli_fail(CMD, s);
    }
    return 0;
}
