/* Figures for experiments (lua/README.md, "Experiments"), drawn by framework/figure.h:
 *
 *   cce.plot(results_path, name [, {out=, runs=, formats=, caption=, layers=, domain=, site=}])
 *       -> {tsv=, gp=, png=, pdf=, tex=}
 *     the figure `name` (cce plot --figure NAME) of the runs of a results file. out is the
 *     figure's path without an extension (default: "<folder of the results file>/<name>");
 *     runs the run filter (figure.h, cce plot --help); formats "png,pdf" (default), "pdf",
 *     "png,pdf,tex", ... or an array of them; layers "0,2,4" or an array of layer numbers.
 *     exp:figure (lua/cce/experiment.lua) calls it with the experiment's file and name.
 *   cce._figure{template=, data=, out=, caption= [, vars=]} -> {tsv=, gp=, png=, pdf=}
 *     a figure from data a script made itself: TSV text for analysis/templates/<template>.gp,
 *     with the template's variables in vars ({nblocks = 3, logy = 1, blocks = {"dense",
 *     "wanda"}}: names [A-Za-z_][A-Za-z0-9_]*, values finite numbers, words of
 *     [A-Za-z0-9_+.-] or arrays of such words).
 *
 * out's file name may hold letters, digits, '_', '-' and '.' only (not first); its folder is
 * created if missing. When only the rendering fails (gnuplot missing or failing), the error says
 * so and names the .tsv and .gp, which are written.
 *
 * The sandbox stays closed: a script chooses only the data (read by gnuplot as data), the run
 * filter, the caption (written as a gnuplot single-quoted string, quotes doubled, control
 * characters replaced) and variables restricted as above, so no text of the script is run by
 * gnuplot; nothing but the figure's files is written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cce_lua.h"
#include "figure.h"
#include "lua_experiment.h"

static void push_files(lua_State *L, const cce_figure_files *f) {
    lua_createtable(L, 0, 5);
    const char *const names[] = {"tsv", "gp", "png", "pdf", "tex"};
    const char *const paths[] = {f->tsv, f->gp, f->png, f->pdf, f->tex};
    for (int i = 0; i < 5; i++) {
        if (!paths[i]) continue;
        lua_pushstring(L, paths[i]);
        lua_setfield(L, -2, names[i]);
    }
}

/* Splits out = DIR/BASE into o (strings pushed on the stack, so they stay alive). */
static void split_out(lua_State *L, const char *fn, const char *out, cce_figure_options *o) {
    const char *slash = strrchr(out, '/');
    if (slash)
        lua_pushlstring(L, out, slash == out ? 1 : (size_t)(slash - out));
    else
        lua_pushliteral(L, ".");
    o->out_dir = lua_tostring(L, -1);
    lua_pushstring(L, slash ? slash + 1 : out);
    o->base = lua_tostring(L, -1);
    if (!*o->base || *o->base == '.' ||
        strspn(o->base, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_-.") != strlen(o->base))
        cce_lua_raise(L,
                      "%s: out = '%s': the figure's file name may hold letters, digits, '_', '-' "
                      "and '.' only (not first)",
                      fn, out);
}

static int word_ok(const char *s) {
    if (!*s) return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+.-") ==
           strlen(s);
}

/* A string field or an array of strings / integers joined with ','; pushed. 0 if nil. */
static int list_field(lua_State *L, int idx, const char *fn, const char *key, const char **out) {
    lua_getfield(L, idx, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
        *out = lua_tostring(L, -1);
        return 1;
    }
    if (!lua_istable(L, -1))
        return cce_lua_raise(L, "%s: field '%s': a string or an array expected, got %s", fn, key,
                             luaL_typename(L, -1));
    luaL_Buffer b;
    int t = lua_gettop(L);
    luaL_buffinit(L, &b);
    lua_Integer n = luaL_len(L, t);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, t, i);
        if (!lua_isstring(L, -1))
            return cce_lua_raise(L, "%s: field '%s'[%d]: a string or number expected", fn, key,
                                 (int)i);
        const char *s = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (i > 1) luaL_addchar(&b, ',');
        luaL_addstring(&b, s);
    }
    luaL_pushresult(&b);
    lua_remove(L, t);
    *out = lua_tostring(L, -1);
    return 1;
}

static unsigned parse_formats(lua_State *L, const char *fn, const char *text) {
    unsigned f = 0;
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == 3 && !strncmp(p, "png", 3))
            f |= CCE_FIG_PNG;
        else if (n == 3 && !strncmp(p, "pdf", 3))
            f |= CCE_FIG_PDF;
        else if (n == 3 && !strncmp(p, "tex", 3))
            f |= CCE_FIG_TEX;
        else if (n)
            cce_lua_raise(L, "%s: formats: png, pdf or tex expected, got '%.*s'", fn, (int)n, p);
        p += n;
        if (*p) p++;
    }
    if (!f) cce_lua_raise(L, "%s: formats: at least one of png, pdf, tex", fn);
    return f;
}

/* cce.plot(results_path, name [, opts]) */
static int l_plot(lua_State *L) {
    static const char *const FN = "cce.plot";
    static const char *const fields[] = {"out",    "runs",   "formats", "caption",
                                         "layers", "domain", "site",    NULL};
    const char *path = luaL_checkstring(L, 1), *name = luaL_checkstring(L, 2);
    cce_figure_options o = {0};
    const char *out = NULL, *formats = NULL;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        cce_lua_check_fields(L, 3, 3, FN, fields);
        cce_lua_field_string(L, 3, 3, FN, "out", &out);
        cce_lua_field_string(L, 3, 3, FN, "runs", &o.runs);
        cce_lua_field_string(L, 3, 3, FN, "caption", &o.caption);
        cce_lua_field_string(L, 3, 3, FN, "domain", &o.domain);
        cce_lua_field_string(L, 3, 3, FN, "site", &o.site);
        list_field(L, 3, FN, "formats", &formats);
        list_field(L, 3, FN, "layers", &o.layers);
    }
    if (!cce_figure_known(name)) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (const char *const *k = cce_figure_kinds(); *k; k++) {
            if (k != cce_figure_kinds()) luaL_addstring(&b, ", ");
            luaL_addstring(&b, *k);
        }
        luaL_pushresult(&b);
        return cce_lua_raise(L, "%s: unknown figure '%s' (figures: %s)", FN, name,
                             lua_tostring(L, -1));
    }
    if (formats) o.formats = parse_formats(L, FN, formats);
    if (!out) {
        const char *slash = strrchr(path, '/');
        if (slash)
            lua_pushfstring(L, "%s/%s", lua_pushlstring(L, path, (size_t)(slash - path)), name);
        else
            lua_pushstring(L, name);
        out = lua_tostring(L, -1);
    }
    split_out(L, FN, out, &o);
    cce_figure_files files;
    cce_status s = cce_figure_make(path, name, &o, &files);
    if (s) {
        cce_figure_files_clear(&files);
        return cce_lua_error(L, s, "%s(%s)", FN, name);
    }
    push_files(L, &files);
    cce_figure_files_clear(&files);
    return 1;
}

/* The vars table of cce._figure as gnuplot assignments (pushed). */
static const char *vars_text(lua_State *L, int idx, const char *fn) {
    luaL_Buffer b;
    if (lua_isnil(L, idx)) {
        lua_pushliteral(L, "");
        return lua_tostring(L, -1);
    }
    if (!lua_istable(L, idx))
        cce_lua_raise(L, "%s: vars: a table expected, got %s", fn, luaL_typename(L, idx));
    lua_newtable(L); /* collected lines, sorted for a deterministic script */
    int acc = lua_gettop(L);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!k || !(((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || *k == '_')) ||
            strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
                strlen(k) ||
            strlen(k) > 64)
            cce_lua_raise(L, "%s: vars: names [A-Za-z_][A-Za-z0-9_]* expected", fn);
        int val = lua_gettop(L); /* the buffer may push a placeholder */
        luaL_buffinit(L, &b);
        luaL_addstring(&b, k);
        luaL_addstring(&b, " = ");
        if (lua_type(L, val) == LUA_TNUMBER) {
            double v = lua_tonumber(L, val);
            if (!isfinite(v)) cce_lua_raise(L, "%s: vars.%s: a finite number expected", fn, k);
            char num[64];
            snprintf(num, sizeof num, "%.17g", v);
            luaL_addstring(&b, num);
        } else if (lua_type(L, val) == LUA_TSTRING) {
            const char *v = lua_tostring(L, val);
            if (!word_ok(v))
                cce_lua_raise(L, "%s: vars.%s: words of letters, digits and _+.- expected", fn, k);
            luaL_addchar(&b, '"');
            luaL_addstring(&b, v);
            luaL_addchar(&b, '"');
        } else if (lua_istable(L, val)) {
            luaL_addchar(&b, '"');
            lua_Integer m = luaL_len(L, val);
            for (lua_Integer i = 1; i <= m; i++) {
                lua_geti(L, val, i);
                const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
                if (!v || !word_ok(v))
                    cce_lua_raise(L, "%s: vars.%s[%d]: words of letters, digits and _+.- expected",
                                  fn, k, (int)i);
                lua_pop(L, 1); /* v stays alive in the array */
                if (i > 1) luaL_addchar(&b, ' ');
                luaL_addstring(&b, v);
            }
            luaL_addchar(&b, '"');
        } else {
            cce_lua_raise(L, "%s: vars.%s: a number, a word or an array of words expected", fn, k);
        }
        luaL_addchar(&b, '\n');
        luaL_pushresult(&b);
        lua_rawseti(L, acc, ++n);
        lua_pop(L, 1);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, acc);
    lua_call(L, 1, 0);
    lua_getfield(L, -1, "concat");
    lua_pushvalue(L, acc);
    lua_call(L, 1, 1);
    lua_remove(L, -2);
    lua_remove(L, acc);
    return lua_tostring(L, -1);
}

/* cce._figure{template=, data=, out=, caption=, vars=} -> {tsv=, gp=, png=, pdf=}. */
static int l_figure(lua_State *L) {
    static const char *const fields[] = {"template", "data", "out", "caption", "vars", NULL};
    static const char *const FN = "cce._figure";
    luaL_checktype(L, 1, LUA_TTABLE);
    cce_lua_check_fields(L, 1, 1, FN, fields);
    const char *tname = NULL, *out = NULL, *caption = "";
    if (!cce_lua_field_string(L, 1, 1, FN, "template", &tname) ||
        !cce_lua_field_string(L, 1, 1, FN, "out", &out))
        return cce_lua_raise(L, "%s: template and out are required", FN);
    cce_lua_field_string(L, 1, 1, FN, "caption", &caption);
    lua_getfield(L, 1, "data");
    if (lua_type(L, -1) != LUA_TSTRING)
        return cce_lua_raise(L, "%s: data: the figure's TSV text expected, got %s", FN,
                             luaL_typename(L, -1));
    const char *data = lua_tostring(L, -1);
    if (!word_ok(tname) || strchr(tname, '.') || strchr(tname, '+') || strchr(tname, '-'))
        return cce_lua_raise(L, "%s: template '%s': letters, digits and '_' only", FN, tname);
    lua_getfield(L, 1, "vars");
    const char *vars = vars_text(L, lua_gettop(L), FN);
    cce_figure_options o = {0};
    split_out(L, FN, out, &o);
    cce_figure_files files;
    cce_status s = cce_figure_render(tname, data, vars, caption, &o, &files);
    if (s) {
        cce_figure_files_clear(&files);
        return cce_lua_error(L, s, "figure %s", out);
    }
    push_files(L, &files);
    cce_figure_files_clear(&files);
    return 1;
}

void cce_lua_open_figure(lua_State *L) {
    lua_pushcfunction(L, l_figure);
    lua_setfield(L, -2, "_figure");
    lua_pushcfunction(L, l_plot);
    lua_setfield(L, -2, "plot");
}
