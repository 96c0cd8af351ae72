/* Writing a figure's .tsv and .gp and rendering them with gnuplot (figure.h).
 *
 * gnuplot runs without a shell (fork + execv of the gnuplot found on PATH) in a private folder
 * "<dir>/.<base>.render.<pid>" beside the figure, with outbase = <base>, so that the files it
 * writes carry their final names (cairolatex's .tex names its graphics file); they are then
 * renamed into <dir> one by one and the folder removed. gnuplot's messages go to a log in that
 * folder; a failure quotes its end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "figure_internal.h"

#ifndef CCE_TEMPLATES_DIR
#ifdef CCE_DATASETS_DIR
#define CCE_TEMPLATES_DIR CCE_DATASETS_DIR "/../analysis/templates"
#else
#define CCE_TEMPLATES_DIR "analysis/templates"
#endif
#endif

#define STYLE_LOAD "load \"style.gp\""

static cce_status write_atomic(const char *path, const char *data, size_t len) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return cce_fail(CCE_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t k = write(fd, data + done, len - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int err = errno;
            close(fd);
            unlink(tmp);
            return cce_fail(CCE_ERR_IO, "%s: write failed: %s", tmp, strerror(err));
        }
        done += (size_t)k;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int err = errno;
        unlink(tmp);
        return cce_fail(CCE_ERR_IO, "%s: cannot complete the write: %s", tmp, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return cce_fail(CCE_ERR_IO, "%s: cannot rename into place: %s", path, strerror(err));
    }
    return CCE_OK;
}

static cce_status make_dirs(const char *dir) {
    char buf[4096];
    if (strlen(dir) >= sizeof buf) return cce_fail(CCE_ERR_ARG, "%s: path too long", dir);
    strcpy(buf, dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return cce_fail(CCE_ERR_IO, "%s: cannot create the folder: %s", buf,
                                strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return CCE_OK;
}

/* Reads a whole file (NUL-terminated, owned by the caller). */
static cce_status read_text(const char *path, char **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cce_fail(CCE_ERR_NOT_FOUND, "%s: cannot open: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    char chunk[4096];
    size_t k;
    while (m && (k = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, k, m);
    int bad = ferror(f);
    fclose(f);
    if (m) fclose(m);
    if (!m || bad) {
        free(text);
        return cce_fail(CCE_ERR_IO, "%s: cannot read", path);
    }
    *out = text;
    return CCE_OK;
}

static int find_gnuplot(char *buf, size_t cap) {
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        if (len > 0 && len + 9 < cap) {
            snprintf(buf, cap, "%.*s/gnuplot", (int)len, path);
            if (access(buf, X_OK) == 0) return 1;
        }
        path += len;
        if (*path == ':') path++;
    }
    return 0;
}

/* The end of gnuplot's log, for an error message. */
static void log_tail(const char *log, char *buf, size_t cap) {
    buf[0] = '\0';
    char *text = NULL;
    if (read_text(log, &text) != CCE_OK) return;
    size_t len = strlen(text);
    const char *start = len > cap - 1 ? text + len - (cap - 1) : text;
    snprintf(buf, cap, "%s", start);
    for (char *c = buf; *c; c++)
        if (*c == '\n') *c = ' ';
    free(text);
}

static cce_status run_gnuplot(const char *work, const char *expr, const char *script) {
    char prog[4200];
    if (!find_gnuplot(prog, sizeof prog))
        return cce_fail(CCE_ERR_NOT_FOUND, "gnuplot not found on PATH (install gnuplot)");
    char log[4200];
    snprintf(log, sizeof log, "%s/gnuplot.log", work);
    char *const argv[] = {"gnuplot", "-e", (char *)expr, (char *)script, NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return cce_fail(CCE_ERR_IO, "cannot start gnuplot: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (chdir(work) == 0) execv(prog, argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return cce_fail(CCE_ERR_IO, "waiting for gnuplot: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char tail[600];
        log_tail(log, tail, sizeof tail);
        return cce_fail(CCE_ERR_IO, "gnuplot failed on %s (%s %d): %s", script,
                        WIFEXITED(status) ? "exit status" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), tail);
    }
    return CCE_OK;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4400];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int valid_base(const char *s) {
    if (!*s || *s == '.' || strlen(s) > 200) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("_-.", *s)))
            return 0;
    return 1;
}

static const char *templates_dir(const cce_figure_options *o) {
    if (o && o->templates && *o->templates) return o->templates;
    const char *env = getenv("CCE_TEMPLATES_DIR");
    return env && *env ? env : CCE_TEMPLATES_DIR;
}

/* The .gp text: header, variables, then the template with style.gp inlined where it loads it. */
static cce_status gp_text(const char *name, const char *base, const char *vars, const char *caption,
                          const char *tdir, char **out) {
    char path[4200];
    char *tmpl = NULL, *style = NULL;
    snprintf(path, sizeof path, "%s/%s.gp", tdir, name);
    cce_status s = read_text(path, &tmpl);
    if (s) {
        char why[512];
        snprintf(why, sizeof why, "%s", cce_error_detail());
        return cce_fail(s, "no template '%s' (%s)", name, why);
    }
    snprintf(path, sizeof path, "%s/style.gp", tdir);
    s = read_text(path, &style);
    if (s) {
        free(tmpl);
        return s;
    }
    size_t len = 0;
    FILE *f = open_memstream(out, &len);
    if (!f) {
        free(tmpl);
        free(style);
        return cce_fail(CCE_ERR_NOMEM, "figure %s", name);
    }
    fprintf(f,
            "# Figure %s, written by cce from analysis/templates/%s.gp and style.gp.\n"
            "# Rerun: gnuplot %s.gp   (in this folder; writes %s.png and %s.pdf; add\n"
            "#        -e \"formats='png pdf tex'\" for %s_tex.tex + %s_tex.pdf, cairolatex)\n"
            "if (!exists(\"datafile\")) datafile = \"%s.tsv\"\n"
            "if (!exists(\"outbase\")) outbase = \"%s\"\n"
            "if (!exists(\"formats\")) formats = \"png pdf\"\n"
            "if (!exists(\"caption\")) caption = '",
            name, name, base, base, base, base, base, base, base);
    for (const char *c = caption ? caption : ""; *c; c++) {
        if (*c == '\'')
            fputs("''", f);
        else
            fputc((unsigned char)*c >= 0x20 && *c != 0x7f ? *c : ' ', f);
    }
    fputs("'\n# The series of the data (written by cce from the results file)\n", f);
    fputs(vars ? vars : "", f);
    fputc('\n', f);
    const char *at = strstr(tmpl, STYLE_LOAD);
    if (at) {
        fwrite(tmpl, 1, (size_t)(at - tmpl), f);
        fputs("# ---- style.gp (inlined) ----\n", f);
        fputs(style, f);
        fputs("# ---- end of style.gp ----\n", f);
        fputs(at + strlen(STYLE_LOAD), f);
    } else {
        fputs(tmpl, f);
    }
    fclose(f);
    free(tmpl);
    free(style);
    return CCE_OK;
}

static char *join(const char *dir, const char *base, const char *ext) {
    size_t n = strlen(dir) + strlen(base) + strlen(ext) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s%s", dir, base, ext);
    return p;
}

cce_status cce_figure_render(const char *name, const char *tsv, const char *vars,
                             const char *caption, const cce_figure_options *o,
                             cce_figure_files *files) {
    memset(files, 0, sizeof *files);
    cce_figure_options none = {0};
    if (!o) o = &none;
    const char *dir = o->out_dir && *o->out_dir ? o->out_dir : ".";
    const char *base = o->base && *o->base ? o->base : name;
    unsigned formats = o->formats ? o->formats : (CCE_FIG_PNG | CCE_FIG_PDF);
    if (!valid_base(base))
        return cce_fail(CCE_ERR_ARG,
                        "figure file name '%s': letters, digits, '_', '-' and '.' (not first) only",
                        base);
    if (strlen(dir) > 3800) return cce_fail(CCE_ERR_ARG, "%s: folder name too long", dir);
    char *gp = NULL;
    cce_status s = gp_text(name, base, vars, caption, templates_dir(o), &gp);
    if (!s) s = make_dirs(dir);
    char *tsv_path = join(dir, base, ".tsv"), *gp_path = join(dir, base, ".gp");
    if (!s && (!tsv_path || !gp_path)) s = cce_fail(CCE_ERR_NOMEM, "figure %s", name);
    if (!s) s = write_atomic(tsv_path, tsv, strlen(tsv));
    if (!s) {
        files->tsv = tsv_path;
        tsv_path = NULL;
        s = write_atomic(gp_path, gp, strlen(gp));
    }
    if (!s) {
        files->gp = gp_path;
        gp_path = NULL;
    }
    free(tsv_path);
    free(gp_path);
    free(gp);
    if (s) return s;

    /* render in a private folder */
    char work[4096];
    snprintf(work, sizeof work, "%s/.%s.render.%ld", dir, base, (long)getpid());
    remove_tree(work);
    if (mkdir(work, 0755) != 0)
        return cce_fail(CCE_ERR_IO, "%s: cannot create: %s", work, strerror(errno));
    char expr[1024], script[300];
    snprintf(expr, sizeof expr, "datafile='../%s.tsv'; formats='%s%s%s'", base,
             formats & CCE_FIG_PNG ? "png " : "", formats & CCE_FIG_PDF ? "pdf " : "",
             formats & CCE_FIG_TEX ? "tex" : "");
    snprintf(script, sizeof script, "../%s.gp", base);
    s = run_gnuplot(work, expr, script);
    static const struct {
        unsigned fmt;
        const char *ext;
    } outs[] = {{CCE_FIG_PNG, ".png"},
                {CCE_FIG_PDF, ".pdf"},
                {CCE_FIG_TEX, "_tex.pdf"},
                {CCE_FIG_TEX, "_tex.tex"}};
    for (size_t i = 0; !s && i < sizeof outs / sizeof outs[0]; i++) {
        if (!(formats & outs[i].fmt)) continue;
        char *from = join(work, base, outs[i].ext), *to = join(dir, base, outs[i].ext);
        struct stat st;
        if (!from || !to)
            s = cce_fail(CCE_ERR_NOMEM, "figure %s", name);
        else if (stat(from, &st) != 0 || st.st_size == 0)
            s = cce_fail(CCE_ERR_IO, "gnuplot wrote no %s for %s", outs[i].ext, script + 3);
        else if (rename(from, to) != 0)
            s = cce_fail(CCE_ERR_IO, "%s: cannot rename into place: %s", to, strerror(errno));
        else if (outs[i].fmt == CCE_FIG_PNG)
            files->png = to, to = NULL;
        else if (outs[i].fmt == CCE_FIG_PDF)
            files->pdf = to, to = NULL;
        else if (i == 3)
            files->tex = to, to = NULL;
        free(from);
        free(to);
    }
    remove_tree(work);
    if (s) {
        char why[1024];
        snprintf(why, sizeof why, "%s", cce_error_detail());
        return cce_fail(s, "%s (the figure's data and script are written: %s, %s)", why, files->tsv,
                        files->gp);
    }
    return CCE_OK;
}

cce_status cce_figure_make(const char *path, const char *name, const cce_figure_options *o,
                           cce_figure_files *files) {
    memset(files, 0, sizeof *files);
    char *tsv = NULL, *vars = NULL, *caption = NULL;
    cce_status s = cce_figure_data(path, name, o, &tsv, &vars, &caption);
    if (!s)
        s = cce_figure_render(name, tsv, vars, o && o->caption ? o->caption : caption, o, files);
    free(tsv);
    free(vars);
    free(caption);
    return s;
}
