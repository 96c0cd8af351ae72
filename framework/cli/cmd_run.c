/* cce run: runs a Lua experiment script in the sandboxed engine (lua/cce_lua.h, lua/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cce_lua.h"
#include "cli.h"

static const char *const CMD = "run";

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce run [--unsafe] [--redo] [--traceback] SCRIPT.lua [ARGS...]\n"
            "\n"
            "Runs a Lua 5.4 experiment script: `local cce = require \"cce\"` loads models and\n"
            "data, compresses, evaluates and records runs (lua/README.md is the reference).\n"
            "ARGS are the script's: its `...`, the global `arg` (arg[0] = SCRIPT) and cce.args.\n"
            "Options go before the script name; everything after it belongs to the script.\n"
            "\n"
            "The script runs in a sandbox: the base library (without dofile and loadfile; load\n"
            "takes text chunks only), string, table, math, utf8 and cce; require resolves only\n"
            "\"cce\" and its prelude modules (cce.experiment, ...). Scripts must be source text:\n"
            "a precompiled (bytecode) file is refused.\n"
            "\n"
            "options:\n"
            "  --unsafe       also give the script io and os, restricted to reading files\n"
            "                 (io.open/io.lines/io.read/io.input, read modes only; io.write to\n"
            "                 standard output), the clock and the environment (os.clock, os.time,\n"
            "                 os.date, os.difftime, os.getenv)\n"
            "  --redo         cce.options.redo = true: experiments re-run runs already recorded\n"
            "                 in their results file instead of skipping them\n"
            "  --traceback    add a Lua traceback to error messages\n"
            "  --             end of options (for a script whose name starts with '-')\n"
            "  -h, --help     this help\n"
            "\n"
            "A Lua error stops the script with \"cce run: SCRIPT:LINE: cause\" on standard error.\n"
            "Progress bars of long evaluations appear on a terminal only.\n"
            "Exit status: 0 success, 1 the script failed (or could not be read), 2 usage error.\n");
}

int cmd_run(int argc, char **argv) {
    cce_lua_options o = {.progress = cli_progress, .progress_end = cli_progress_end};
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (!strcmp(argv[i], "--unsafe"))
            o.unsafe = 1;
        else if (!strcmp(argv[i], "--redo"))
            o.redo = 1;
        else if (!strcmp(argv[i], "--traceback"))
            o.traceback = 1;
        else
            return cli_usage_error(CMD, "unknown option '%s' (options go before SCRIPT.lua)",
                                   argv[i]);
    }
    if (i >= argc) return cli_usage_error(CMD, "SCRIPT.lua is missing");
    const char *script = argv[i];
    lua_State *L = NULL;
    cce_status s = cce_lua_new(&o, &L);
    if (s) return cli_fail(CMD, s);
    char *message = NULL;
    s = cce_lua_run_file(L, script, argc - i - 1, argv + i + 1, &message);
    cli_progress_end();
    fflush(stdout);
    if (s) fprintf(stderr, "cce run: %s\n", message ? message : cce_strerror(s));
    free(message);
    cce_lua_close(L);
    return s ? 1 : 0;
}
