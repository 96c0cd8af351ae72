/* GPT-2's byte-to-unicode alphabet and the pre-tokenizer patterns of ByteLevel tokenizers,
 * hand-coded (the project has no regex library):
 *   gpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   llama3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   qwen2  the same with \p{N} instead of \p{N}{1,3}
 * Each is matched as a backtracking engine (Oniguruma, which Hugging Face tokenizers use) does:
 * the first alternative that matches at a position wins, quantifiers greedy. Every character is
 * a letter, a number, whitespace or "other", so some alternative always matches and the words
 * tile the text. Bytes that are not valid UTF-8 count as one "other" character each.
 *
 * Character classes, for codepoints >= 128 (ASCII is classified directly):
 *   - whitespace: glibc's C.UTF-8 iswspace_l, plus U+0085, U+00A0, U+2007 and U+202F, which
 *     Unicode's White_Space (the regex's \s) has and glibc leaves out as no-break spaces;
 *   - letters (\p{L}): iswalpha_l in C.UTF-8, minus the "combining" class (glibc counts the
 *     Other_Alphabetic marks, e.g. Devanagari vowel signs U+093E, as alpha; Unicode puts them in
 *     M), minus the numbers below (glibc counts non-ASCII decimal digits Nd, e.g. U+0660 and the
 *     fullwidth digits U+FF10.., and letter numbers Nl, e.g. U+2160 Roman numerals, as alpha),
 *     minus the circled and squared Latin letters U+24B6..U+24E9, U+1F130..U+1F149,
 *     U+1F150..U+1F169, U+1F170..U+1F189 (So in Unicode, alpha in glibc);
 *   - numbers (\p{N} = Nd + Nl + No): glibc has no class for them (iswdigit is ASCII only, No
 *     such as U+00B2 and U+00BD is punct), so they come from the table below: the N ranges of
 *     Unicode 14.0, the version glibc 2.36's C.UTF-8 is built from.
 * With glibc 2.36 these classes equal Unicode 14.0's \p{L}, \p{N} and White_Space on every
 * codepoint (checked against Python's unicodedata 14.0 when this file was written). Letters
 * added by later Unicode versions follow the C library; numbers added after 14.0 count as
 * "other". Case-insensitive contractions match ASCII case and U+017F (long s) for s, as Unicode
 * case folding does. */
#define _GNU_SOURCE
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <wctype.h>

#include "tokenizer_internal.h"

/* ---- the byte-level alphabet ---------------------------------------------------------------- */

/* Bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves; the other 68 bytes, in order,
 * for U+0100, U+0101, ... (GPT-2's bytes_to_unicode). */
static int printable_byte(unsigned b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t bytelevel_char(unsigned char b) {
    if (printable_byte(b)) return b;
    uint32_t n = 0; /* rank of b among the non-printable bytes */
    for (unsigned k = 0; k < b; k++) n += !printable_byte(k);
    return 256 + n;
}

int bytelevel_byte(uint32_t cp) {
    if (cp < 256) return printable_byte(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    for (unsigned b = 0; b < 256; b++)
        if (!printable_byte(b) && n-- == 0) return (int)b;
    return -1;
}

/* ---- character classes ---------------------------------------------------------------------- */

/* \p{N} of Unicode 14.0 above ASCII, sorted [first, last] ranges. */
static const uint32_t numbers[][2] = {
    {0xB2, 0xB3},       {0xB9, 0xB9},       {0xBC, 0xBE},       {0x660, 0x669},
    {0x6F0, 0x6F9},     {0x7C0, 0x7C9},     {0x966, 0x96F},     {0x9E6, 0x9EF},
    {0x9F4, 0x9F9},     {0xA66, 0xA6F},     {0xAE6, 0xAEF},     {0xB66, 0xB6F},
    {0xB72, 0xB77},     {0xBE6, 0xBF2},     {0xC66, 0xC6F},     {0xC78, 0xC7E},
    {0xCE6, 0xCEF},     {0xD58, 0xD5E},     {0xD66, 0xD78},     {0xDE6, 0xDEF},
    {0xE50, 0xE59},     {0xED0, 0xED9},     {0xF20, 0xF33},     {0x1040, 0x1049},
    {0x1090, 0x1099},   {0x1369, 0x137C},   {0x16EE, 0x16F0},   {0x17E0, 0x17E9},
    {0x17F0, 0x17F9},   {0x1810, 0x1819},   {0x1946, 0x194F},   {0x19D0, 0x19DA},
    {0x1A80, 0x1A89},   {0x1A90, 0x1A99},   {0x1B50, 0x1B59},   {0x1BB0, 0x1BB9},
    {0x1C40, 0x1C49},   {0x1C50, 0x1C59},   {0x2070, 0x2070},   {0x2074, 0x2079},
    {0x2080, 0x2089},   {0x2150, 0x2182},   {0x2185, 0x2189},   {0x2460, 0x249B},
    {0x24EA, 0x24FF},   {0x2776, 0x2793},   {0x2CFD, 0x2CFD},   {0x3007, 0x3007},
    {0x3021, 0x3029},   {0x3038, 0x303A},   {0x3192, 0x3195},   {0x3220, 0x3229},
    {0x3248, 0x324F},   {0x3251, 0x325F},   {0x3280, 0x3289},   {0x32B1, 0x32BF},
    {0xA620, 0xA629},   {0xA6E6, 0xA6EF},   {0xA830, 0xA835},   {0xA8D0, 0xA8D9},
    {0xA900, 0xA909},   {0xA9D0, 0xA9D9},   {0xA9F0, 0xA9F9},   {0xAA50, 0xAA59},
    {0xABF0, 0xABF9},   {0xFF10, 0xFF19},   {0x10107, 0x10133}, {0x10140, 0x10178},
    {0x1018A, 0x1018B}, {0x102E1, 0x102FB}, {0x10320, 0x10323}, {0x10341, 0x10341},
    {0x1034A, 0x1034A}, {0x103D1, 0x103D5}, {0x104A0, 0x104A9}, {0x10858, 0x1085F},
    {0x10879, 0x1087F}, {0x108A7, 0x108AF}, {0x108FB, 0x108FF}, {0x10916, 0x1091B},
    {0x109BC, 0x109BD}, {0x109C0, 0x109CF}, {0x109D2, 0x109FF}, {0x10A40, 0x10A48},
    {0x10A7D, 0x10A7E}, {0x10A9D, 0x10A9F}, {0x10AEB, 0x10AEF}, {0x10B58, 0x10B5F},
    {0x10B78, 0x10B7F}, {0x10BA9, 0x10BAF}, {0x10CFA, 0x10CFF}, {0x10D30, 0x10D39},
    {0x10E60, 0x10E7E}, {0x10F1D, 0x10F26}, {0x10F51, 0x10F54}, {0x10FC5, 0x10FCB},
    {0x11052, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F}, {0x111D0, 0x111D9},
    {0x111E1, 0x111F4}, {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9},
    {0x11650, 0x11659}, {0x116C0, 0x116C9}, {0x11730, 0x1173B}, {0x118E0, 0x118F2},
    {0x11950, 0x11959}, {0x11C50, 0x11C6C}, {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9},
    {0x11FC0, 0x11FD4}, {0x12400, 0x1246E}, {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9},
    {0x16B50, 0x16B59}, {0x16B5B, 0x16B61}, {0x16E80, 0x16E96}, {0x1D2E0, 0x1D2F3},
    {0x1D360, 0x1D378}, {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9},
    {0x1E8C7, 0x1E8CF}, {0x1E950, 0x1E959}, {0x1EC71, 0x1ECAB}, {0x1ECAD, 0x1ECAF},
    {0x1ECB1, 0x1ECB4}, {0x1ED01, 0x1ED2D}, {0x1ED2F, 0x1ED3D}, {0x1F100, 0x1F10C},
    {0x1FBF0, 0x1FBF9},
};

static const uint32_t not_letters[][2] = {
    {0x24B6, 0x24E9}, {0x1F130, 0x1F149}, {0x1F150, 0x1F169}, {0x1F170, 0x1F189}};

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static locale_t utf8_locale;
static wctype_t combining_class;
static pthread_once_t locale_once = PTHREAD_ONCE_INIT;

static void open_locale(void) {
    static const char *const names[] = {"C.UTF-8", "C.utf8", "en_US.UTF-8"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !utf8_locale; i++)
        utf8_locale = newlocale(LC_CTYPE_MASK, names[i], (locale_t)0);
    if (utf8_locale) combining_class = wctype_l("combining", utf8_locale);
}

cce_status pretok_init(void) {
    pthread_once(&locale_once, open_locale);
    if (!utf8_locale)
        return cce_fail(CCE_ERR_STATE,
                        "ByteLevel tokenizer: the C library has no C.UTF-8 locale, needed to "
                        "classify non-ASCII letters, numbers and spaces");
    return CCE_OK;
}

int pretok_is_number(uint32_t cp) {
    if (cp < 128) return cp >= '0' && cp <= '9';
    return in_ranges(numbers, sizeof numbers / sizeof numbers[0], cp);
}

int pretok_is_letter(uint32_t cp) {
    if (cp < 128) return (cp | 32) >= 'a' && (cp | 32) <= 'z';
    if (!utf8_locale || cp > 0x10FFFF || !iswalpha_l((wint_t)cp, utf8_locale)) return 0;
    if (combining_class && iswctype_l((wint_t)cp, combining_class, utf8_locale)) return 0;
    return !pretok_is_number(cp) &&
           !in_ranges(not_letters, sizeof not_letters / sizeof not_letters[0], cp);
}

int pretok_is_space(uint32_t cp) {
    if (cp < 128) return cp == ' ' || (cp >= '\t' && cp <= '\r');
    if (cp == 0x85 || cp == 0xA0 || cp == 0x2007 || cp == 0x202F) return 1;
    return utf8_locale && cp <= 0x10FFFF && iswspace_l((wint_t)cp, utf8_locale);
}

uint32_t pretok_decode(const unsigned char *s, size_t len, size_t *n) {
    unsigned c = s[0];
    *n = 1;
    if (c < 0x80) return c;
    size_t k = c >= 0xC2 && c <= 0xDF   ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (k == 0 || k > len) return 0xFFFD;
    uint32_t cp = c & (0x7F >> k);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0xFFFD;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0xFFFD;
    *n = k;
    return cp;
}

/* ---- the patterns --------------------------------------------------------------------------- */

enum { CL_LETTER, CL_NUMBER, CL_SPACE, CL_OTHER, CL_END };

typedef struct cursor {
    const unsigned char *s;
    size_t len;
} cursor;

/* The class of the character at pos (CL_END at the end), its length in *n and codepoint in *cp. */
static int class_at(const cursor *c, size_t pos, size_t *n, uint32_t *cp) {
    if (pos >= c->len) {
        *n = 0;
        *cp = 0;
        return CL_END;
    }
    *cp = pretok_decode(c->s + pos, c->len - pos, n);
    if (*n == 1 && *cp == 0xFFFD) return CL_OTHER; /* an invalid byte */
    return pretok_is_letter(*cp)   ? CL_LETTER
           : pretok_is_number(*cp) ? CL_NUMBER
           : pretok_is_space(*cp)  ? CL_SPACE
                                   : CL_OTHER;
}

/* The end of the run of characters of class cl starting at pos (pos if none), at most max
 * characters. */
static size_t run(const cursor *c, size_t pos, int cl, size_t max) {
    size_t n;
    uint32_t cp;
    for (size_t k = 0; k < max && class_at(c, pos, &n, &cp) == cl; k++) pos += n;
    return pos;
}

static int is_crlf(uint32_t cp) {
    return cp == '\r' || cp == '\n';
}

/* 'ASCII letter' equal to want (lower case), case-insensitively if fold. */
static int letter_is(const cursor *c, size_t pos, char want, int fold, size_t *n) {
    if (pos >= c->len) return 0;
    unsigned char b = c->s[pos];
    *n = 1;
    if (b == (unsigned char)want || (fold && (b | 32) == (unsigned char)want && b >= 'A')) return 1;
    if (fold && want == 's' && pos + 1 < c->len && b == 0xC5 && c->s[pos + 1] == 0xBF) {
        *n = 2; /* U+017F folds to s */
        return 1;
    }
    return 0;
}

/* 's|'t|'re|'ve|'m|'ll|'d at pos: the end of the match, or 0. */
static size_t contraction(const cursor *c, size_t pos, int fold) {
    if (c->s[pos] != '\'') return 0;
    static const char *const tails[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        size_t p = pos + 1, n;
        const char *t = tails[i];
        while (*t && letter_is(c, p, *t, fold, &n)) p += n, t++;
        if (!*t) return p;
    }
    return 0;
}

/* \s+(?!\S)|\s+ at pos (a whitespace character): the whole run if it ends the text or is a single
 * character, else the run minus its last character. */
static size_t space_run(const cursor *c, size_t pos) {
    size_t end = pos, last = pos, n;
    uint32_t cp;
    while (class_at(c, end, &n, &cp) == CL_SPACE) last = end, end += n;
    if (end >= c->len || last == pos) return end;
    return last;
}

static size_t next_gpt2(const cursor *c, size_t pos) {
    size_t e = contraction(c, pos, 0), n, n2;
    if (e) return e;
    uint32_t cp, cp2;
    int cl = class_at(c, pos, &n, &cp);
    /* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' */
    size_t p = pos;
    int cl2 = cl;
    if (cp == ' ') {
        cl2 = class_at(c, pos + n, &n2, &cp2);
        if (cl2 != CL_SPACE && cl2 != CL_END) p = pos + n;
    }
    if (cl2 != CL_SPACE && cl2 != CL_END) return run(c, p, cl2, SIZE_MAX);
    return space_run(c, pos);
}

static size_t next_llama3(const cursor *c, size_t pos, size_t max_digits) {
    size_t e = contraction(c, pos, 1), n, n2;
    if (e) return e;
    uint32_t cp, cp2;
    int cl = class_at(c, pos, &n, &cp);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (cl == CL_LETTER) return run(c, pos, CL_LETTER, SIZE_MAX);
    if (cl != CL_NUMBER && !is_crlf(cp) && class_at(c, pos + n, &n2, &cp2) == CL_LETTER)
        return run(c, pos + n, CL_LETTER, SIZE_MAX);
    /* \p{N}{1,3} */
    if (cl == CL_NUMBER) return run(c, pos, CL_NUMBER, max_digits);
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    size_t p = pos;
    if (cp == ' ' && class_at(c, pos + n, &n2, &cp2) == CL_OTHER) p = pos + n;
    if (class_at(c, p, &n2, &cp2) == CL_OTHER) {
        p = run(c, p, CL_OTHER, SIZE_MAX);
        while (p < c->len && is_crlf(c->s[p])) p++;
        return p;
    }
    /* \s*[\r\n]+: up to the last CR/LF of the whitespace run */
    size_t end = pos, after_crlf = 0;
    while (class_at(c, end, &n2, &cp2) == CL_SPACE) {
        end += n2;
        if (is_crlf(cp2)) after_crlf = end;
    }
    if (after_crlf) return after_crlf;
    return space_run(c, pos);
}

size_t pretok_next(cce_pretokenizer p, const char *text, size_t len, size_t pos) {
    cursor c = {(const unsigned char *)text, len};
    switch (p) {
    case CCE_PRETOK_GPT2:
        return next_gpt2(&c, pos);
    case CCE_PRETOK_LLAMA3:
        return next_llama3(&c, pos, 3);
    case CCE_PRETOK_QWEN2:
        return next_llama3(&c, pos, 1);
    default:
        return len;
    }
}

static const char *const regexes[CCE_PRETOK_COUNT] = {
    NULL,
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
static const char *const names[CCE_PRETOK_COUNT] = {"none", "gpt2", "llama3", "qwen2"};

const char *pretok_regex(cce_pretokenizer p) {
    return p >= 0 && p < CCE_PRETOK_COUNT ? regexes[p] : NULL;
}

const char *pretok_name(cce_pretokenizer p) {
    return p >= 0 && p < CCE_PRETOK_COUNT ? names[p] : NULL;
}
