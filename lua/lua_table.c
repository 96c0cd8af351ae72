/* Paper tables from Lua: `cce table` (framework/table_render.h) and tables a script computes.
 *
 *   cce.render_table(results_path [, {kind =, format =, runs =, out =}]) -> text
 *     exactly what `cce table RESULTS --kind KIND --format FORMAT --runs FILTER` prints: kind
 *     "summary" (default) or "layers", format "latex" (default), "markdown" or "tsv", runs a run
 *     filter (figure.h). With out, the text is also written to that file.
 *   cce.write_table{columns =, rows = [, format =, note =, out =]} -> text
 *     a table of the script's own rows (aggregates over seeds, bootstrap intervals): columns an
 *     array of header texts, rows an array of arrays of cells, one per column. A cell is a
 *     string, a number (printed with %.4g), or {text =, bold = true, dagger = true}. format
 *     "latex" (default: booktabs, the first column left-aligned, the others right-aligned),
 *     "markdown" or "tsv" (a "# " note line, then the header row and the cells' plain text).
 *     In LaTeX the texts are escaped and ± † Δ ρ α ε × ≤ ≥ become math symbols; note (optional)
 *     is printed under the table (a "% " comment in LaTeX, a paragraph in Markdown).
 *
 * out: a path whose file name holds letters, digits, '_', '-' and '.' only (not first), in an
 * existing folder; written through a temporary name, fsynced and renamed into place, so the
 * sandbox stays closed (only such table files can be written). Errors: an unknown field or
 * value, a row with another number of cells than columns, a cell of another type, the results
 * file's errors (no runs, a filter matching none), an I/O error naming the file. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cce_lua.h"
#include "table_render.h"

/* Raises unless out's file name is made of letters, digits, '_', '-' and '.' (not first). */
static void check_out(lua_State *L, const char *fn, const char *out) {
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    if (!*base || *base == '.' ||
        strspn(base, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
            strlen(base))
        cce_lua_raise(L,
                      "%s: out = '%s': the file name may hold letters, digits, '_', '-' and '.' "
                      "only (not first)",
                      fn, out);
}

/* Writes len bytes of text to path through a temporary name; CCE_OK or an I/O error. */
static cce_status write_file(const char *path, const char *text, size_t len) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return cce_fail(CCE_ERR_NOMEM, "%s: no memory for the temporary name", path);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        cce_status s = cce_fail(CCE_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    cce_status s = CCE_OK;
    if (fwrite(text, 1, len, f) != len || fflush(f) != 0 || fsync(fileno(f)) != 0)
        s = cce_fail(CCE_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && !s)
        s = cce_fail(CCE_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path) != 0)
        s = cce_fail(CCE_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (s) unlink(tmp);
    free(tmp);
    return s;
}

/* Pushes the text of buf (len bytes) and, when out is given, writes it there. */
static int finish(lua_State *L, const char *fn, char *buf, size_t len, const char *out) {
    lua_pushlstring(L, buf ? buf : "", buf ? len : 0);
    free(buf);
    if (out) {
        cce_status s = write_file(out, lua_tostring(L, -1), len);
        if (s) return cce_lua_error(L, s, "%s", fn);
    }
    return 1;
}

/* cce.render_table(path [, opts]) -> text */
static int l_render_table(lua_State *L) {
    static const char *const FN = "cce.render_table";
    static const char *const fields[] = {"kind", "format", "runs", "out", NULL};
    const char *path = luaL_checkstring(L, 1);
    const char *kind = "summary", *format = "latex", *runs = NULL, *out = NULL;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        cce_lua_check_fields(L, 2, 2, FN, fields);
        cce_lua_field_string(L, 2, 2, FN, "kind", &kind);
        cce_lua_field_string(L, 2, 2, FN, "format", &format);
        cce_lua_field_string(L, 2, 2, FN, "runs", &runs);
        cce_lua_field_string(L, 2, 2, FN, "out", &out);
    }
    cce_table_kind k;
    cce_table_format f;
    if (!cce_table_kind_parse(kind, &k))
        return cce_lua_raise(L, "%s: kind = '%s': summary or layers", FN, kind);
    if (!cce_table_format_parse(format, &f))
        return cce_lua_raise(L, "%s: format = '%s': latex, markdown or tsv", FN, format);
    if (out) check_out(L, FN, out);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) return cce_lua_raise(L, "%s: no memory for the table", FN);
    cce_status s = cce_table_render(path, k, runs, f, mem);
    fclose(mem);
    if (s) {
        free(buf);
        return cce_lua_error(L, s, "%s", FN);
    }
    return finish(L, FN, buf, len, out);
}

/* ---- cce.write_table ------------------------------------------------------------------------ */

typedef enum { FMT_LATEX, FMT_MARKDOWN, FMT_TSV } table_fmt;

static void put_tsv(FILE *f, const char *s) {
    for (; *s; s++) fputc(*s == '\t' || *s == '\n' ? ' ' : *s, f);
}

/* Pushes the text of the cell at idx; *bold, *dagger from a table cell. Raises for another type
 * (the stream is left to the caller, who owns it: the raise happens before writing). */
static void cell_text(lua_State *L, int idx, const char *fn, int r, int c, int *bold, int *dagger) {
    *bold = *dagger = 0;
    int t = lua_type(L, idx);
    if (t == LUA_TTABLE) {
        lua_getfield(L, idx, "bold");
        *bold = lua_toboolean(L, -1);
        lua_getfield(L, idx, "dagger");
        *dagger = lua_toboolean(L, -1);
        lua_pop(L, 2);
        lua_getfield(L, idx, "text");
        idx = lua_gettop(L);
        t = lua_type(L, idx);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            cce_lua_raise(L, "%s: rows[%d][%d]: field 'text': string or number expected, got %s",
                          fn, r, c, lua_typename(L, t));
    }
    if (t == LUA_TNUMBER) {
        if (lua_isinteger(L, idx))
            lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
        else {
            char buf[64];
            snprintf(buf, sizeof buf, "%.4g", (double)lua_tonumber(L, idx));
            lua_pushstring(L, buf);
        }
    } else if (t == LUA_TSTRING) {
        lua_pushvalue(L, idx);
    } else {
        cce_lua_raise(L,
                      "%s: rows[%d][%d]: a string, a number or {text =, bold =, dagger =} "
                      "expected, got %s",
                      fn, r, c, lua_typename(L, t));
    }
}

/* Checks the columns and rows and collects every cell's text into a Lua array on the stack top:
 * texts[(r - 1) * ncols + c], with the flags in a parallel array (bit 1 bold, bit 2 dagger). */
static void collect(lua_State *L, const char *fn, int cols, int rows, int ncols, int nrows) {
    lua_createtable(L, ncols * (nrows + 1), 0); /* texts */
    lua_createtable(L, ncols * (nrows + 1), 0); /* flags */
    int texts = lua_gettop(L) - 1, flags = texts + 1;
    for (int c = 1; c <= ncols; c++) {
        lua_geti(L, cols, c);
        if (lua_type(L, -1) != LUA_TSTRING)
            cce_lua_raise(L, "%s: columns[%d]: a header text expected, got %s", fn, c,
                          luaL_typename(L, -1));
        lua_seti(L, texts, c);
        lua_pushinteger(L, 0);
        lua_seti(L, flags, c);
    }
    for (int r = 1; r <= nrows; r++) {
        lua_geti(L, rows, r);
        int row = lua_gettop(L);
        if (!lua_istable(L, row))
            cce_lua_raise(L, "%s: rows[%d]: an array of cells expected, got %s", fn, r,
                          luaL_typename(L, row));
        if ((int)luaL_len(L, row) != ncols)
            cce_lua_raise(L, "%s: rows[%d] has %d cells, the table %d columns", fn, r,
                          (int)luaL_len(L, row), ncols);
        for (int c = 1; c <= ncols; c++) {
            lua_geti(L, row, c);
            int bold, dagger;
            int top = lua_gettop(L);
            cell_text(L, top, fn, r, c, &bold, &dagger);
            lua_seti(L, texts, r * ncols + c);
            lua_pushinteger(L, bold | (dagger << 1));
            lua_seti(L, flags, r * ncols + c);
            lua_settop(L, row);
        }
        lua_pop(L, 1);
    }
}

/* cce.write_table{columns =, rows =, format =, note =, out =} -> text */
static int l_write_table(lua_State *L) {
    static const char *const FN = "cce.write_table";
    static const char *const fields[] = {"columns", "rows", "format", "note", "out", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    cce_lua_check_fields(L, 1, 1, FN, fields);
    const char *format = "latex", *note = NULL, *out = NULL;
    cce_lua_field_string(L, 1, 1, FN, "format", &format);
    cce_lua_field_string(L, 1, 1, FN, "note", &note);
    cce_lua_field_string(L, 1, 1, FN, "out", &out);
    table_fmt fmt;
    if (!strcmp(format, "latex"))
        fmt = FMT_LATEX;
    else if (!strcmp(format, "markdown"))
        fmt = FMT_MARKDOWN;
    else if (!strcmp(format, "tsv"))
        fmt = FMT_TSV;
    else
        return cce_lua_raise(L, "%s: format = '%s': latex, markdown or tsv", FN, format);
    if (out) check_out(L, FN, out);
    lua_getfield(L, 1, "columns");
    int cols = lua_gettop(L);
    if (!lua_istable(L, cols) || luaL_len(L, cols) < 1)
        return cce_lua_raise(L, "%s: columns: a non-empty array of header texts expected", FN);
    int ncols = (int)luaL_len(L, cols);
    lua_getfield(L, 1, "rows");
    int rows = lua_gettop(L);
    if (!lua_istable(L, rows)) return cce_lua_raise(L, "%s: rows: an array of rows expected", FN);
    int nrows = (int)luaL_len(L, rows);
    collect(L, FN, cols, rows, ncols, nrows); /* pushes texts, flags */
    int texts = lua_gettop(L) - 1, flags = texts + 1;

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return cce_lua_raise(L, "%s: no memory for the table", FN);
    if (fmt == FMT_LATEX) {
        fputs("% needs \\usepackage{booktabs}\n\\begin{tabular}{l", f);
        for (int c = 2; c <= ncols; c++) fputc('r', f);
        fputs("}\n\\toprule\n", f);
    } else if (fmt == FMT_TSV && note) {
        fputs("# ", f);
        put_tsv(f, note);
        fputc('\n', f);
    }
    for (int r = 0; r <= nrows; r++) {
        if (fmt == FMT_MARKDOWN) fputc('|', f);
        for (int c = 1; c <= ncols; c++) {
            lua_geti(L, texts, r * ncols + c);
            lua_geti(L, flags, r * ncols + c);
            const char *s = lua_tostring(L, -2);
            int fl = (int)lua_tointeger(L, -1);
            int bold = fl & 1, dagger = fl & 2;
            if (fmt == FMT_LATEX) {
                if (c > 1) fputs(" & ", f);
                if (bold) fputs("\\textbf{", f);
                cce_table_put_latex(f, s, 1);
                if (bold) fputc('}', f);
                if (dagger) fputs("$^\\dagger$", f);
            } else if (fmt == FMT_MARKDOWN) {
                fputc(' ', f);
                if (bold) fputs("**", f);
                cce_table_put_markdown(f, s, 1);
                if (bold) fputs("**", f);
                if (dagger) fputs("†", f);
                fputs(" |", f);
            } else {
                if (c > 1) fputc('\t', f);
                put_tsv(f, s);
                if (dagger) fputs("†", f);
            }
            lua_pop(L, 2);
        }
        if (fmt == FMT_LATEX)
            fputs(r == 0 ? " \\\\\n\\midrule\n" : " \\\\\n", f);
        else
            fputc('\n', f);
        if (r == 0 && fmt == FMT_MARKDOWN) {
            fputs("|:---|", f);
            for (int c = 2; c <= ncols; c++) fputs("---:|", f);
            fputc('\n', f);
        }
    }
    if (fmt == FMT_LATEX) {
        fputs("\\bottomrule\n\\end{tabular}\n", f);
        if (note) {
            fputs("% ", f);
            cce_table_put_latex(f, note, 1);
            fputc('\n', f);
        }
    } else if (fmt == FMT_MARKDOWN && note) {
        fputc('\n', f);
        cce_table_put_markdown(f, note, 1);
        fputc('\n', f);
    }
    fclose(f);
    return finish(L, FN, buf, len, out);
}

void cce_lua_open_table(lua_State *L) {
    lua_pushcfunction(L, l_render_table);
    lua_setfield(L, -2, "render_table");
    lua_pushcfunction(L, l_write_table);
    lua_setfield(L, -2, "write_table");
}
