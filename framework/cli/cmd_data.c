/* cce data: list, verify and provision the datasets of the manifest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"

static const char *const CMD = "data";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce data list\n"
            "       cce data verify [NAME...]\n"
            "       cce data path NAME\n"
            "\n"
            "The datasets of the manifest (models, tokenizers, texts) and where they come from.\n"
            "\n"
            "  list            every entry: name, kind, file and status (ok / missing /\n"
            "                  checksum mismatch) in the mirror or the cache; downloads nothing\n"
            "  verify [NAME]   provision and check the named entries (all by default): the\n"
            "                  mirror, else the cache, else a download of the canonical URL;\n"
            "                  exit status 1 if any fails\n"
            "  path NAME       provision NAME (a manifest name or a file) and print its path\n"
            "\n"
            "Environment: CCE_MANIFEST (default %s),\n"
            "CCE_MIRROR (read-only folder of models and texts), CCE_CACHE_DIR (derived files and\n"
            "downloads; default $XDG_CACHE_HOME/cce, else ~/.cache/cce).\n",
            cce_manifest_default_path());
}

static const char *state_name(cce_dataset_state st) {
    switch (st) {
    case CCE_DATASET_OK:
        return "ok";
    case CCE_DATASET_MISSING:
        return "missing";
    case CCE_DATASET_MISMATCH:
        return "checksum mismatch";
    }
    return "?";
}

static int run_list(int argc, char **argv) {
    if (argc > 2) return cli_usage_error(CMD, "list takes no arguments, got '%s'", argv[2]);
    cce_manifest *m;
    cce_status s = cce_manifest_load(NULL, &m);
    if (s != CCE_OK) return cli_fail(CMD, s);
    char *cache = NULL;
    if (cce_cache_dir("data", 0, &cache) != CCE_OK) cache = NULL;
    const char *mirror = cce_mirror_dir();
    printf("# manifest %s\n# mirror %s\n# cache %s\n", m->path,
           mirror ? mirror : "(CCE_MIRROR is not set)", cache ? cache : "(none)");
    free(cache);
    printf("%-18s %-10s %-18s %-42s %s\n", "NAME", "KIND", "STATUS", "FILE", "FOUND AT");
    for (size_t i = 0; i < m->n; i++) {
        const cce_dataset_entry *e = &m->entries[i];
        cce_dataset_state st;
        char *path = NULL;
        s = cce_dataset_locate(e, &st, &path, NULL);
        if (s != CCE_OK) {
            free(path);
            cce_manifest_free(m);
            return cli_fail(CMD, s);
        }
        printf("%-18s %-10s %-18s %-42s %s\n", e->name, e->kind, state_name(st), e->file,
               path ? path : "-");
        free(path);
    }
    cce_manifest_free(m);
    return 0;
}

static int run_verify(int argc, char **argv) {
    cce_manifest *m;
    cce_status s = cce_manifest_load(NULL, &m);
    if (s != CCE_OK) return cli_fail(CMD, s);
    size_t n = argc > 2 ? (size_t)(argc - 2) : m->n;
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = argc > 2 ? argv[2 + i] : m->entries[i].name;
        const cce_dataset_entry *e = cce_manifest_find(m, name);
        char *path = NULL;
        if (!e) {
            char *names = cce_manifest_names(m);
            s = cce_fail(CCE_ERR_NOT_FOUND, "no dataset '%s' in %s (known: %s)", name, m->path,
                         names ? names : "?");
            free(names);
        } else {
            s = cce_dataset_resolve_entry(e, &path);
        }
        if (s == CCE_OK) {
            printf("ok      %-18s %s\n", name, path);
        } else {
            printf("FAILED  %-18s %s\n", name, cce_strerror(s));
            fflush(stdout);
            cli_fail(CMD, s);
            failed++;
        }
        free(path);
    }
    cce_manifest_free(m);
    if (failed) fprintf(stderr, "cce data: %d of %zu datasets failed verification\n", failed, n);
    return failed ? 1 : 0;
}

static int run_path(int argc, char **argv) {
    if (argc != 3) return cli_usage_error(CMD, "path takes exactly one NAME");
    char *path;
    cce_status s = cce_dataset_resolve(argv[2], &path, NULL);
    if (s != CCE_OK) return cli_fail(CMD, s);
    printf("%s\n", path);
    free(path);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2) return cli_usage_error(CMD, "missing action: list, verify or path");
    for (int i = 2; i < argc; i++)
        if (argv[i][0] == '-') return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
    if (!strcmp(argv[1], "list")) return run_list(argc, argv);
    if (!strcmp(argv[1], "verify")) return run_verify(argc, argv);
    if (!strcmp(argv[1], "path")) return run_path(argc, argv);
    return cli_usage_error(CMD, "unknown action '%s' (list, verify or path)", argv[1]);
}
