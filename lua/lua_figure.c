/* Figures for experiments (lua/README.md, "Experiments"): cce._figure{template=, data=, out=,
 * caption=} -> {tsv=, gp=, png=, pdf=}, which exp:figure (lua/cce/experiment.lua) calls with the
 * figure data it builds from the results file.
 *
 * template names analysis/templates/<template>.gp (letters, digits and '_'). out is the figure's
 * path without an extension; its file name may hold letters, digits, '_', '-' and '.' only (not
 * first), and its folder is created if missing. Written: <out>.tsv (the data, verbatim), <out>.gp
 * (a header setting datafile, outbase and caption, then the template: re-runnable and editable,
 * `gnuplot <name>.gp` in its folder), and <out>.png, <out>.pdf rendered by running gnuplot (found
 * on PATH, started without a shell) in out's folder. Every file goes through a temporary name and
 * a rename.
 *
 * The sandbox stays closed: a script chooses only the data (read by gnuplot as data) and the
 * caption, which is written as a gnuplot single-quoted string with quotes doubled and control
 * characters replaced by spaces, so no text of the script is ever run by gnuplot; and nothing but
 * the four files of the figure is written. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cce_lua.h"
#include "lua_experiment.h"

#ifndef CCE_TEMPLATES_DIR
#error "CCE_TEMPLATES_DIR must be defined (the analysis/templates folder)"
#endif

#define TEXT_GUARD_META "cce.figure_guard"

/* Writes len bytes to path through a temporary name beside it (fsync, rename). */
static cce_status write_file_atomic(const char *path, const char *data, size_t len) {
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

/* mkdir -p of the folder part of dir (dir itself included). */
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

/* The gnuplot program found on PATH into buf; 0 if none. */
static int find_gnuplot(char *buf, size_t cap) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
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

/* Runs gnuplot on script (a file name in dir) with `-e expr`, in dir. */
static cce_status run_gnuplot(const char *dir, const char *expr, const char *script) {
    char prog[4200];
    if (!find_gnuplot(prog, sizeof prog))
        return cce_fail(CCE_ERR_NOT_FOUND,
                        "gnuplot not found on PATH (install gnuplot-nox); the figure's data and "
                        "script are in %s",
                        dir);
    char *const argv[] = {"gnuplot", "-e", (char *)expr, (char *)script, NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return cce_fail(CCE_ERR_IO, "cannot start gnuplot: %s", strerror(errno));
    if (pid == 0) {
        if (chdir(dir) == 0) execv(prog, argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return cce_fail(CCE_ERR_IO, "waiting for gnuplot: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cce_fail(CCE_ERR_IO, "gnuplot failed on %s/%s (%s %d)", dir, script,
                        WIFEXITED(status) ? "exit status" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return CCE_OK;
}

static int valid_name(const char *s, const char *extra) {
    if (!*s || *s == '.') return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr(extra, *s)))
            return 0;
    return 1;
}

/* Pushes the .gp text: header + template. */
static void push_gp_text(lua_State *L, const char *tname, const char *base, const char *caption,
                         const char *template_text, size_t template_len) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L,
                    "# Figure %s, written by cce from analysis/templates/%s.gp.\n"
                    "# Rerun: gnuplot %s.gp   (in this folder; writes %s.png and %s.pdf)\n"
                    "if (!exists(\"datafile\")) datafile = \"%s.tsv\"\n"
                    "if (!exists(\"outbase\")) outbase = \"%s\"\n"
                    "if (!exists(\"caption\")) caption = '",
                    base, tname, base, base, base, base, base);
    luaL_addvalue(&b);
    for (const char *c = caption; *c; c++) {
        if (*c == '\'')
            luaL_addstring(&b, "''");
        else if ((unsigned char)*c >= 0x20 && *c != 0x7f)
            luaL_addchar(&b, *c);
        else
            luaL_addchar(&b, ' ');
    }
    luaL_addstring(&b, "'\n\n");
    luaL_addlstring(&b, template_text, template_len);
    luaL_pushresult(&b);
}

/* A malloc'd buffer freed by __gc if a Lua call raises while it is held. */
typedef struct text_guard {
    char *p;
} text_guard;

static int text_guard_gc(lua_State *L) {
    text_guard *g = lua_touserdata(L, 1);
    free(g->p);
    g->p = NULL;
    return 0;
}

/* Reads the template file into a Lua string (pushed). */
static void push_template(lua_State *L, const char *tname) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.gp", CCE_TEMPLATES_DIR, tname);
    text_guard *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->p = NULL;
    luaL_setmetatable(L, TEXT_GUARD_META);
    FILE *f = fopen(path, "rb");
    if (!f)
        cce_lua_raise(L, "cce._figure: no template '%s' (%s: %s)", tname, path, strerror(errno));
    char chunk[4096];
    size_t k, len = 0;
    int err = 0;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
        char *bigger = realloc(g->p, len + k);
        if (!bigger) {
            err = ENOMEM;
            break;
        }
        g->p = bigger;
        memcpy(bigger + len, chunk, k);
        len += k;
    }
    if (ferror(f)) err = errno ? errno : EIO;
    fclose(f);
    if (err) cce_lua_raise(L, "cce._figure: cannot read %s: %s", path, strerror(err));
    lua_pushlstring(L, g->p ? g->p : "", len);
    free(g->p);
    g->p = NULL;
    lua_remove(L, -2);
}

/* cce._figure{template=, data=, out=, caption=} -> {tsv=, gp=, png=, pdf=}. */
static int l_figure(lua_State *L) {
    static const char *const fields[] = {"template", "data", "out", "caption", NULL};
    static const char *const FN = "cce._figure";
    luaL_checktype(L, 1, LUA_TTABLE);
    cce_lua_check_fields(L, 1, 1, FN, fields);
    const char *tname = NULL, *out = NULL, *caption = "";
    size_t data_len = 0;
    if (!cce_lua_field_string(L, 1, 1, FN, "template", &tname) ||
        !cce_lua_field_string(L, 1, 1, FN, "out", &out))
        return cce_lua_raise(L, "%s: template and out are required", FN);
    cce_lua_field_string(L, 1, 1, FN, "caption", &caption);
    lua_getfield(L, 1, "data");
    if (lua_type(L, -1) != LUA_TSTRING)
        return cce_lua_raise(L, "%s: data: the figure's TSV text expected, got %s", FN,
                             luaL_typename(L, -1));
    const char *data = lua_tolstring(L, -1, &data_len);
    if (!valid_name(tname, "_"))
        return cce_lua_raise(L, "%s: template '%s': letters, digits and '_' only", FN, tname);
    /* out = DIR/BASE */
    const char *slash = strrchr(out, '/');
    const char *base = slash ? slash + 1 : out;
    if (!valid_name(base, "_-.") || strlen(out) > 4000)
        return cce_lua_raise(L,
                             "%s: out = '%s': the figure's file name may hold letters, digits, "
                             "'_', '-' and '.' only",
                             FN, out);
    if (slash)
        lua_pushlstring(L, out, slash == out ? 1 : (size_t)(slash - out));
    else
        lua_pushliteral(L, ".");
    const char *dir = lua_tostring(L, -1);
    push_template(L, tname);
    size_t tlen;
    const char *ttext = lua_tolstring(L, -1, &tlen);
    push_gp_text(L, tname, base, caption, ttext, tlen);
    size_t gp_len;
    const char *gp = lua_tolstring(L, -1, &gp_len);
    lua_pushfstring(L, "%s.tsv", out);
    lua_pushfstring(L, "%s.gp", out);
    lua_pushfstring(L, "%s.png", out);
    lua_pushfstring(L, "%s.pdf", out);
    const char *tsv_path = lua_tostring(L, -4), *gp_path = lua_tostring(L, -3);
    const char *png_path = lua_tostring(L, -2), *pdf_path = lua_tostring(L, -1);
    /* gnuplot renders to temporary names that are renamed into place */
    lua_pushfstring(L, "%s.tmp.%d", base, (int)getpid());
    const char *tmp_base = lua_tostring(L, -1);
    lua_pushfstring(L, "outbase='%s'", tmp_base);
    const char *expr = lua_tostring(L, -1);
    lua_pushfstring(L, "%s/%s.png", dir, tmp_base);
    lua_pushfstring(L, "%s/%s.pdf", dir, tmp_base);
    const char *tmp_png = lua_tostring(L, -2), *tmp_pdf = lua_tostring(L, -1);
    lua_pushfstring(L, "%s.gp", base);
    const char *gp_name = lua_tostring(L, -1);

    cce_status s = make_dirs(dir);
    if (!s) s = write_file_atomic(tsv_path, data, data_len);
    if (!s) s = write_file_atomic(gp_path, gp, gp_len);
    if (!s) s = run_gnuplot(dir, expr, gp_name);
    if (!s && rename(tmp_png, png_path) != 0)
        s = cce_fail(CCE_ERR_IO, "%s: cannot rename into place: %s", png_path, strerror(errno));
    if (!s && rename(tmp_pdf, pdf_path) != 0)
        s = cce_fail(CCE_ERR_IO, "%s: cannot rename into place: %s", pdf_path, strerror(errno));
    if (s) {
        unlink(tmp_png);
        unlink(tmp_pdf);
        return cce_lua_error(L, s, "figure %s", out);
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, tsv_path);
    lua_setfield(L, -2, "tsv");
    lua_pushstring(L, gp_path);
    lua_setfield(L, -2, "gp");
    lua_pushstring(L, png_path);
    lua_setfield(L, -2, "png");
    lua_pushstring(L, pdf_path);
    lua_setfield(L, -2, "pdf");
    return 1;
}

void cce_lua_open_figure(lua_State *L) {
    if (luaL_newmetatable(L, TEXT_GUARD_META)) {
        lua_pushcfunction(L, text_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_figure);
    lua_setfield(L, -2, "_figure");
}
