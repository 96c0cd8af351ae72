/* cce strategies: list every compression strategy with its needs and parameters. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "strategy.h"

static const char *const CMD = "strategies";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce strategies [--load PLUGIN.so]... [NAME...]\n"
            "\n"
            "Lists the compression strategies (all, or the named ones): a summary, what each\n"
            "needs (calibration data, sequential statistics), and every parameter with its type,\n"
            "default, allowed range and help. A strategy is named as NAME or NAME:k=v,k=v\n"
            "(split at the first ':' only, so nm=2:4 survives).\n"
            "\n"
            "  --load PLUGIN.so  load an external strategy (a shared object exporting\n"
            "                    cce_strategy_entry) before listing\n"
            "  -h, --help        this text\n");
}

static void print_needs(const cce_strategy *s) {
    printf("  needs: ");
    if (!s->needs)
        printf("nothing (no calibration data)");
    else if (!(s->needs & (CCE_NEEDS_CALIBRATION | CCE_NEEDS_SEQUENTIAL)))
        printf("no calibration data");
    if (s->needs & CCE_NEEDS_CALIBRATION) printf("calibration data");
    if (s->needs & CCE_NEEDS_SEQUENTIAL)
        printf("%ssequential statistics", s->needs & CCE_NEEDS_CALIBRATION ? ", " : "");
    if (s->needs & CCE_NEEDS_RESIZE) printf("; resizes tensors and layers");
    printf("\n");
}

static void print_strategy(const cce_strategy *s) {
    printf("%s\n  %s\n", s->name, s->summary);
    print_needs(s);
    if (!s->params || !s->params[0].name) {
        printf("  parameters: none\n\n");
        return;
    }
    printf("  parameters:\n");
    printf("    %-12s %-7s %-10s %-28s %s\n", "NAME", "TYPE", "DEFAULT", "RANGE", "HELP");
    for (const cce_param *p = s->params; p->name; p++) {
        char range[256];
        cce_param_range_text(p, range, sizeof range);
        const char *def = p->def ? p->def : (p->flags & CCE_PARAM_REQUIRED ? "(required)" : "-");
        printf("    %-12s %-7s %-10s %-28s %s\n", p->name, cce_param_type_name(p->type), def, range,
               p->help);
    }
    printf("\n");
}

int cmd_strategies(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    int named = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--load")) {
            if (i + 1 >= argc) return cli_usage_error(CMD, "--load needs a shared object path");
            const cce_strategy *s;
            cce_status st = cce_strategy_load_external(argv[++i], &s);
            if (st) return cli_fail(CMD, st);
        } else if (argv[i][0] == '-') {
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        } else {
            named++;
        }
    }
    if (named) {
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--load")) {
                i++;
                continue;
            }
            const cce_strategy *s;
            cce_status st = cce_strategy_find(argv[i], &s);
            if (st) return cli_fail(CMD, st);
            print_strategy(s);
        }
        return 0;
    }
    size_t n = cce_strategy_count();
    for (size_t i = 0; i < n; i++) print_strategy(cce_strategy_at(i));
    return 0;
}
