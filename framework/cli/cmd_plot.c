/* cce plot: a figure from a results file (framework/figure.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "figure.h"

static const char *const CMD = "plot";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce plot RESULTS.h5 --figure NAME [--runs FILTER] [--out DIR] [--name BASE]\n"
            "                [--format png,pdf,tex] [--layers L,L,..] [--domain D] [--site S]\n"
            "                [--caption TEXT]\n"
            "\n"
            "Draws a figure from the runs of a results file: writes DIR/BASE.tsv (the data,\n"
            "with a commented header) and DIR/BASE.gp (a gnuplot script: `gnuplot BASE.gp` in\n"
            "DIR draws it again), then runs gnuplot for DIR/BASE.png and DIR/BASE.pdf (3.5 in\n"
            "wide: one column of a two-column paper); tex adds BASE_tex.tex + BASE_tex.pdf\n"
            "(cairolatex). When gnuplot is missing or fails, the .tsv and .gp are still written.\n"
            "\n"
            "Figures:\n"
            "  ppl_vs_ratio         perplexity (± stderr) against byte ratio, per strategy\n"
            "  kl_vs_ratio          KL to the dense model against byte ratio, per strategy\n"
            "  ppl_vs_bits          perplexity against bits per weight, Pareto front marked\n"
            "  layer_ratio          achieved compression per layer, bars per run\n"
            "  sensitivity_heatmap  Δppl of runs compressing one layer: layer x target\n"
            "  act_hist             activation histograms, dense vs compressed, per layer\n"
            "  act_stats            cosine, rel. L2, kurtosis shift per layer, per domain\n"
            "  weight_dist          weight distribution per layer before and after\n"
            "  cce_layer_ratio      fraction removed per layer: achieved, planned (cce); per run\n"
            "  cce_ev               explained-variance curves of C_a and C_y per layer (one run)\n"
            "  cce_budget           rho_l against R_l, BI_l and u_l per layer (one cce run)\n"
            "  (cce_ev and cce_budget draw the first selected run holding the cce tables:\n"
            "  choose one with --runs id=r000002)\n"
            "\n"
            "  --figure NAME      the figure (required)\n"
            "  --runs FILTER      the runs to draw, terms separated by ',' that must all hold:\n"
            "                     NAME=V1|V2 (attribute: id, strategy, experiment, model, ...;\n"
            "                     or a strategy parameter such as ratio or bits; wildcards * ?\n"
            "                     allowed), NAME!=V, or a bare strategy name. E.g.\n"
            "                     --runs 'strategy=wanda|magnitude,ratio=0.5'\n"
            "                     The dense run is used as the reference even when left out.\n"
            "  --out DIR          folder of the files (default .)\n"
            "  --name BASE        file name without extension (default: the figure's name)\n"
            "  --format LIST      png, pdf, tex, comma-separated (default png,pdf)\n"
            "  --layers LIST      act_hist, weight_dist: layers (default first, middle, last)\n"
            "  --domain D         act_hist: the domain (default the first); act_stats: only D\n"
            "  --site S           act_hist, act_stats: block_out (default) or ffn_act\n"
            "  --caption TEXT     the caption line (default: model, dataset and protocol)\n"
            "  -h, --help         this text\n");
}

static int parse_formats(const char *text, unsigned *out) {
    *out = 0;
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == 3 && !strncmp(p, "png", 3))
            *out |= CCE_FIG_PNG;
        else if (n == 3 && !strncmp(p, "pdf", 3))
            *out |= CCE_FIG_PDF;
        else if (n == 3 && !strncmp(p, "tex", 3))
            *out |= CCE_FIG_TEX;
        else if (n)
            return cli_usage_error(CMD, "--format: png, pdf or tex expected, got '%.*s'", (int)n,
                                   p);
        p += n;
        if (*p) p++;
    }
    if (!*out) return cli_usage_error(CMD, "--format: at least one of png, pdf, tex");
    return 0;
}

int cmd_plot(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *file = NULL, *figure = NULL;
    cce_figure_options o = {0};
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if ((v = cli_option_value(argc, argv, &i, "--figure", &missing)))
            figure = v;
        else if ((v = cli_option_value(argc, argv, &i, "--runs", &missing)))
            o.runs = v;
        else if ((v = cli_option_value(argc, argv, &i, "--out", &missing)))
            o.out_dir = v;
        else if ((v = cli_option_value(argc, argv, &i, "--name", &missing)))
            o.base = v;
        else if ((v = cli_option_value(argc, argv, &i, "--format", &missing))) {
            int rc = parse_formats(v, &o.formats);
            if (rc) return rc;
        } else if ((v = cli_option_value(argc, argv, &i, "--layers", &missing)))
            o.layers = v;
        else if ((v = cli_option_value(argc, argv, &i, "--domain", &missing)))
            o.domain = v;
        else if ((v = cli_option_value(argc, argv, &i, "--site", &missing)))
            o.site = v;
        else if ((v = cli_option_value(argc, argv, &i, "--caption", &missing)))
            o.caption = v;
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
    if (!figure) return cli_usage_error(CMD, "missing --figure NAME");
    if (!cce_figure_known(figure)) {
        fprintf(stderr, "cce plot: unknown figure '%s'; figures:", figure);
        for (const char *const *k = cce_figure_kinds(); *k; k++) fprintf(stderr, " %s", *k);
        fprintf(stderr, "\nTry 'cce plot --help'.\n");
        return 2;
    }
    cce_figure_files files;
    cce_status s = cce_figure_make(file, figure, &o, &files);
    const char *const paths[] = {files.tsv, files.gp, files.png, files.pdf, files.tex};
    for (size_t i = 0; i < 5; i++)
        if (paths[i]) printf("%s\n", paths[i]);
    cce_figure_files_clear(&files);
    if (s) return cli_fail(CMD, s);
    return 0;
}
