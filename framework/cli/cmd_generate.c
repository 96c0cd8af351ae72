/* cce generate: text from a prompt (greedy, temperature, top-p), printed as it is produced. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "generate.h"
#include "model.h"

static const char *const CMD = "generate";

#define DEFAULT_N     256
#define DEFAULT_TEMP  1.0
#define DEFAULT_TOP_P 0.9
#define DEFAULT_SEED  42

static void usage(FILE *f) {
    fprintf(f,
            "usage: cce generate MODEL.h5 [-p PROMPT] [-n N] [-t TEMP] [--top-p P] [--seed S]\n"
            "                    [--quiet]\n"
            "\n"
            "Encodes PROMPT with BOS, runs it through the model, then samples up to N tokens\n"
            "with the KV cache and prints the prompt followed by the continuation on stdout.\n"
            "Generation stops early at BOS/EOS or at the model's seq_len.\n"
            "\n"
            "options:\n"
            "  -p, --prompt PROMPT  the prompt text (default: empty)\n"
            "  -n, --steps N        tokens to generate, in [0, 1000000] (default %d)\n"
            "  -t, --temperature T  0 = greedy (argmax); higher = more random (default %.1f)\n"
            "  --top-p P            nucleus sampling: sample from the smallest set of tokens\n"
            "                       whose probability exceeds P; 0 or 1 turns it off\n"
            "                       (default %.1f)\n"
            "  --seed S             seed of the random stream (default %d, so runs repeat)\n"
            "  -q, --quiet          do not print the speed on stderr\n"
            "  -h, --help           this help\n"
            "\n"
            "Exit status: 0 success, 1 failure, 2 usage.\n",
            DEFAULT_N, DEFAULT_TEMP, DEFAULT_TOP_P, DEFAULT_SEED);
}

/* Prints a piece, skipping lone control bytes (byte-fallback tokens such as <0x07>) that would
 * garble a terminal; whitespace and UTF-8 bytes pass. */
typedef struct printer {
    FILE *out;
    size_t bytes; /* written so far */
} printer;

static void print_piece(void *user, const char *piece, size_t len) {
    printer *p = user;
    if (len == 1) {
        unsigned char b = (unsigned char)piece[0];
        if (b < 0x80 && !isprint(b) && !isspace(b)) return;
    }
    p->bytes += fwrite(piece, 1, len, p->out);
    fflush(p->out);
}

typedef struct gen_args {
    const char *model, *prompt;
    long n;
    double temperature, top_p;
    uint64_t seed;
    int quiet;
} gen_args;

/* Returns 0, or the usage-error exit code. */
static int parse_args(int argc, char **argv, gen_args *a) {
    *a = (gen_args){.prompt = "",
                    .n = DEFAULT_N,
                    .temperature = DEFAULT_TEMP,
                    .top_p = DEFAULT_TOP_P,
                    .seed = DEFAULT_SEED};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) {
            a->quiet = 1;
            continue;
        }
        int is_value_opt = !strcmp(o, "-p") || !strcmp(o, "--prompt") || !strcmp(o, "-n") ||
                           !strcmp(o, "--steps") || !strcmp(o, "-t") ||
                           !strcmp(o, "--temperature") || !strcmp(o, "--top-p") ||
                           !strcmp(o, "--seed");
        if (is_value_opt) {
            if (i + 1 >= argc) return cli_usage_error(CMD, "%s needs a value", o);
            const char *v = argv[++i];
            int rc = 0;
            if (!strcmp(o, "-p") || !strcmp(o, "--prompt"))
                a->prompt = v;
            else if (!strcmp(o, "-n") || !strcmp(o, "--steps"))
                rc = cli_parse_long(CMD, o, v, 0, 1000000, &a->n);
            else if (!strcmp(o, "-t") || !strcmp(o, "--temperature"))
                rc = cli_parse_double(CMD, o, v, 0.0, 1e6, &a->temperature);
            else if (!strcmp(o, "--top-p"))
                rc = cli_parse_double(CMD, o, v, 0.0, 1.0, &a->top_p);
            else {
                long seed;
                rc = cli_parse_long(CMD, o, v, 0, 0x7fffffffffffffffL, &seed);
                a->seed = (uint64_t)seed;
            }
            if (rc) return rc;
            continue;
        }
        if (o[0] == '-' && o[1] != '\0') return cli_usage_error(CMD, "unknown option '%s'", o);
        if (a->model) return cli_usage_error(CMD, "unexpected argument '%s'", o);
        a->model = o;
    }
    if (!a->model) return cli_usage_error(CMD, "no model given");
    return 0;
}

int cmd_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    cce_model *m;
    cce_status s = cce_model_open(a.model, &m);
    if (s) return cli_fail(CMD, s);
    cce_generate_stats st;
    printer p = {stdout, 0};
    s = cce_generate_with_stats(m, a.prompt, (int)a.n, (float)a.temperature, (float)a.top_p, a.seed,
                                print_piece, &p, &st);
    cce_model_free(m);
    if (!s || p.bytes) printf("\n");
    fflush(stdout);
    if (s) return cli_fail(CMD, s);
    if (!a.quiet)
        fprintf(stderr,
                "prompt %d tokens (%.1f tok/s), generated %d tokens in %.3f s: %.1f tok/s\n",
                st.n_prompt, st.prefill_seconds > 0 ? st.n_prompt / st.prefill_seconds : 0.0,
                st.n_generated, st.decode_seconds,
                st.decode_seconds > 0 ? st.n_generated / st.decode_seconds : 0.0);
    return 0;
}
