/*
 * migration_watch.logs._fastscan: the chunk path of the JSON log classifier, in C.
 *
 * Scanner(...).scan(buf, start, end, samples) walks the complete lines of buf[start:end]
 * and classifies each one exactly as Classifier.classify_line does (the Python per-line
 * path defines the semantics), as long as the line is "plain": one JSON object that is
 * certainly valid for msgspec, with plain (unescaped) top-level keys, a level/status that
 * is a plain string, an integer or null, shorter than max_line_bytes, not blank.  At the
 * first line that is not plain it stops and returns its offset: the caller classifies that
 * line in Python and calls scan() again after it.  So the C code never has to be right
 * about an unusual line; it only has to be sure that a line it counts is plain.
 *
 * Returns (stop, lines, error, legacy_reference, new_reference, legacy_error, fallback,
 * samples) where samples is None or a 5-tuple (one per class, in that order) of lists of
 * (start, end) offsets of the last `samples` lines of that class (end excludes the
 * newline).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_DEPTH 64
#define MAX_LIST 64
#define N_CLASSES 5

/* roles of a top-level key (bit mask) */
#define ROLE_LEVEL 1
#define ROLE_STATUS 2
#define ROLE_SEARCH 4

/* kinds of a level/status value */
#define V_ABSENT 0
#define V_NULL 1
#define V_STR 2
#define V_INT 3

/* flags, as in classify.py */
#define F_ERROR 1
#define F_LEGACY 2
#define F_NEW 4
#define F_LEGACY_ERROR 8
#define F_FALLBACK 16

typedef struct {
    const unsigned char *p;
    Py_ssize_t n;
} lit_t;

typedef struct {
    Py_ssize_t s, e; /* value span in the line, s < 0 when absent */
} span_t;

/* Patterns that share their length and their first and last bytes up to ASCII case (the
 * defaults are case variants) are tested together: one candidate mask per group. */
typedef struct {
    unsigned char first, last; /* | 0x20 */
    Py_ssize_t len;
    int members[MAX_LIST];
    int n_members;
} group_t;

typedef struct {
    lit_t pats[MAX_LIST];
    int n;
    group_t groups[MAX_LIST];
    int n_groups;
} patset_t;

typedef struct {
    PyObject_HEAD
    PyObject *owner; /* tuple holding the bytes objects the lit_t point into */
    lit_t legacy, new_;
    patset_t exclude, fallback;
    int fallback_needs_legacy;
    lit_t keys[MAX_LIST]; /* distinct top-level keys of interest */
    int roles[MAX_LIST];
    int search_slot[MAX_LIST]; /* index into the searched spans, -1 when not searched */
    int n_keys;
    int n_search; /* number of searched keys; 0 with whole_line */
    int whole_line;
    int search_null[MAX_LIST]; /* searched slot is also level/status: absent reads "null" */
    lit_t level_strs[MAX_LIST];
    int n_level_strs;
    long long level_ints[MAX_LIST];
    int n_level_ints;
    long long status_min; /* -1: no status test */
    Py_ssize_t max_line;
    Py_ssize_t pad; /* readable bytes needed after a line: the SIMD loops read ahead */
    unsigned char key_first[256]; /* first bytes of the keys of interest */
    unsigned char *null_text;     /* "null" followed by pad zero bytes */
} Scanner;

static unsigned char IDENT[256];
#ifdef __SSE2__
static __m128i V_QUOTE, V_BACKSLASH, V_SPACE;
#endif
static unsigned char WS[256]; /* JSON whitespace inside a line */
/* 0: plain string byte; 1: quote; 2: backslash; 3: control (< 0x20); 4: non-ASCII */
static unsigned char STRCLASS[256];

static void init_tables(void) {
#ifdef __SSE2__
    V_QUOTE = _mm_set1_epi8('"');
    V_BACKSLASH = _mm_set1_epi8('\\');
    V_SPACE = _mm_set1_epi8(0x20);
#endif
    for (int c = 0; c < 256; c++) {
        IDENT[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   c == '_';
        WS[c] = c == ' ' || c == '\t' || c == '\r';
        STRCLASS[c] = c < 0x20 ? 3 : c == '"' ? 1 : c == '\\' ? 2 : c >= 0x80 ? 4 : 0;
    }
}

static int is_hex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hexval(unsigned char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* ------------------------------------------------------------------ JSON validation */

/* One strict UTF-8 sequence starting at i (p[i] >= 0x80); index after it or -1. */
static Py_ssize_t utf8_seq(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) {
    unsigned char c = p[i];
    unsigned char lo = 0x80, hi = 0xBF;
    int more;
    if (c >= 0xC2 && c <= 0xDF) {
        more = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        more = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        more = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    if (i + more >= n) return -1;
    if (p[i + 1] < lo || p[i + 1] > hi) return -1;
    for (int k = 2; k <= more; k++) {
        if (p[i + k] < 0x80 || p[i + k] > 0xBF) return -1;
    }
    return i + more + 1;
}

static int read_u4(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, int *out) {
    if (i + 4 > n) return 0;
    int v = 0;
    for (int k = 0; k < 4; k++) {
        if (!is_hex(p[i + k])) return 0;
        v = v * 16 + hexval(p[i + k]);
    }
    *out = v;
    return 1;
}

/* A string starting at the quote p[i]; index after the closing quote or -1. *escaped is
 * set when it holds a backslash. */
static inline __attribute__((always_inline)) Py_ssize_t
parse_string(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, int *escaped) {
    i++;
    *escaped = 0;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes at a time up to a quote, a backslash, a control or non-ASCII byte. The
         * line is followed by readable bytes (see Scanner_scan) and ends at a control
         * byte (its newline, CR or the zero padding), so this stops by the line's end. */
        for (;;) {
            __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, V_QUOTE),
                                                  _mm_cmpeq_epi8(x, V_BACKSLASH)),
                                     _mm_cmplt_epi8(x, V_SPACE)); /* signed: >= 0x80 too */
            unsigned mask = (unsigned)_mm_movemask_epi8(m);
            if (mask) {
                i += __builtin_ctz(mask);
                break;
            }
            i += 16;
        }
#else
        while (i < n && STRCLASS[p[i]] == 0) i++;
#endif
        if (i >= n) return -1;
        switch (STRCLASS[p[i]]) {
        case 1:
            return i + 1;
        case 2: {
            *escaped = 1;
            if (i + 1 >= n) return -1;
            unsigned char e = p[i + 1];
            if (e == 'u') {
                int v;
                if (!read_u4(p, i + 2, n, &v)) return -1;
                i += 6;
                if (v >= 0xD800 && v <= 0xDBFF) { /* must be followed by a low surrogate */
                    int w;
                    if (i + 1 < n && p[i] == '\\' && p[i + 1] == 'u' &&
                        read_u4(p, i + 2, n, &w) && w >= 0xDC00 && w <= 0xDFFF) {
                        i += 6;
                    } else {
                        return -1;
                    }
                } else if (v >= 0xDC00 && v <= 0xDFFF) {
                    return -1;
                }
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                i += 2;
            } else {
                return -1;
            }
            break;
        }
        case 4:
            i = utf8_seq(p, i, n);
            if (i < 0) return -1;
            break;
        default: /* control character */
            return -1;
        }
    }
}

/* A number at p[i]; index after it or -1. Only numbers msgspec surely reads the same are
 * accepted (at most 18 integer digits, exponents below 100). *integer is set when it has
 * neither fraction nor exponent, and *value then holds it. */
static Py_ssize_t parse_number(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, int *integer,
                               long long *value) {
    int neg = 0;
    long long v = 0;
    if (p[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= n) return -1;
    Py_ssize_t d0 = i;
    if (p[i] == '0') {
        i++;
    } else if (p[i] >= '1' && p[i] <= '9') {
        Py_ssize_t lim = n - d0 > 19 ? d0 + 19 : n;
        while (i < lim && (unsigned)(p[i] - '0') < 10) {
            v = v * 10 + (p[i] - '0');
            i++;
        }
        if (i - d0 > 18) return -1;
    } else {
        return -1;
    }
    *integer = 1;
    if (i < n && p[i] == '.') {
        *integer = 0;
        i++;
        Py_ssize_t f0 = i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        if (i == f0) return -1;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        *integer = 0;
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        Py_ssize_t e0 = i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        if (i == e0 || i - e0 > 2) return -1;
    }
    if (*integer && neg && v == 0) return -1; /* -0: let Python decide */
    *value = neg ? -v : v;
    return i;
}

/* The byte after a line (p[n]) is its newline or padding, never whitespace: see
 * Scanner_scan (a trailing CR stays in the line, as JSON whitespace). */
static inline Py_ssize_t skip_ws(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) {
    (void)n;
    while (WS[p[i]]) i++;
    return i;
}

static Py_ssize_t parse_value(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, int depth);

static Py_ssize_t parse_container(const unsigned char *p, Py_ssize_t i, Py_ssize_t n,
                                  int depth) {
    unsigned char close = p[i] == '{' ? '}' : ']';
    int object = close == '}';
    if (depth >= MAX_DEPTH) return -1;
    i = skip_ws(p, i + 1, n);
    if (i < n && p[i] == close) return i + 1;
    for (;;) {
        if (i >= n) return -1;
        if (object) {
            int escaped;
            if (p[i] != '"') return -1;
            i = parse_string(p, i, n, &escaped);
            if (i < 0) return -1;
            i = skip_ws(p, i, n);
            if (i >= n || p[i] != ':') return -1;
            i = skip_ws(p, i + 1, n);
        }
        i = parse_value(p, i, n, depth + 1);
        if (i < 0) return -1;
        i = skip_ws(p, i, n);
        if (i >= n) return -1;
        if (p[i] == close) return i + 1;
        if (p[i] != ',') return -1;
        i = skip_ws(p, i + 1, n);
        if (i < n && p[i] == close) return -1; /* trailing comma */
    }
}

static Py_ssize_t parse_literal(const unsigned char *p, Py_ssize_t i, Py_ssize_t n,
                                const char *word, Py_ssize_t len) {
    if (i + len > n || memcmp(p + i, word, (size_t)len) != 0) return -1;
    return i + len;
}

static Py_ssize_t parse_value(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, int depth) {
    if (i >= n) return -1;
    switch (p[i]) {
    case '{':
    case '[':
        return parse_container(p, i, n, depth);
    case '"': {
        int escaped;
        return parse_string(p, i, n, &escaped);
    }
    case 't':
        return parse_literal(p, i, n, "true", 4);
    case 'f':
        return parse_literal(p, i, n, "false", 5);
    case 'n':
        return parse_literal(p, i, n, "null", 4);
    default:
        if (p[i] == '-' || (p[i] >= '0' && p[i] <= '9')) {
            int integer;
            long long v;
            return parse_number(p, i, n, &integer, &v);
        }
        return -1;
    }
}

/* ------------------------------------------------------------------ matching */

/* The first occurrence of lit in hay[0:n], or NULL (the paths without SSE2). */
static const unsigned char *find(const unsigned char *hay, Py_ssize_t n, const lit_t *lit) {
    if (lit->n > n) return NULL;
    return memmem(hay, (size_t)n, lit->p, (size_t)lit->n);
}

/* classify.py's _escape_ends_at on the text t[0:...], i being relative to t. */
static int odd_backslashes(const unsigned char *t, Py_ssize_t k) {
    int count = 0;
    while (k >= 0 && t[k] == '\\') {
        count++;
        k--;
    }
    return count % 2 == 1;
}

static int escape_ends_at(const unsigned char *t, Py_ssize_t i) {
    unsigned char c = t[i - 1];
    if (is_hex(c) && i >= 6 && t[i - 5] == 'u' && is_hex(t[i - 4]) && is_hex(t[i - 3]) &&
        is_hex(t[i - 2]) && odd_backslashes(t, i - 6)) { /* \uXXXX first: \u00eb is not \b */
        int code = (hexval(t[i - 4]) << 12) | (hexval(t[i - 3]) << 8) | (hexval(t[i - 2]) << 4) |
                   hexval(t[i - 1]);
        return !(code < 128 && IDENT[code]);
    }
    return (c == 'n' || c == 'r' || c == 't' || c == 'b' || c == 'f') && odd_backslashes(t, i - 2);
}

/* classify.py's _has_word: word occurs in t[0:n] as a whole identifier. */
static int has_word(const unsigned char *t, Py_ssize_t n, const lit_t *word) {
    Py_ssize_t from = 0;
    for (;;) {
        const unsigned char *hit = find(t + from, n - from, word);
        if (hit == NULL) return 0;
        Py_ssize_t i = hit - t, j = i + word->n;
        if ((j >= n || !IDENT[t[j]]) && (i == 0 || !IDENT[t[i - 1]] || escape_ends_at(t, i)))
            return 1;
        from = i + 1;
    }
}

/* Whether the occurrence of word at t[i] (already matched) is a whole identifier. */
static inline int word_at(const unsigned char *t, Py_ssize_t n, Py_ssize_t i, const lit_t *word) {
    Py_ssize_t j = i + word->n;
    return (j >= n || !IDENT[t[j]]) && (i == 0 || !IDENT[t[i - 1]] || escape_ends_at(t, i));
}

static inline int match_at(const unsigned char *t, Py_ssize_t n, Py_ssize_t i, const lit_t *w) {
    return memcmp(t + i + 1, w->p + 1, (size_t)(w->n - 2)) == 0 && word_at(t, n, i, w);
}

#ifdef __SSE2__
/* Bits of the positions i..i+15 that are <= last. */
static inline unsigned valid_bits(Py_ssize_t i, Py_ssize_t last) {
    Py_ssize_t k = last - i + 1;
    return k >= 16 ? 0xFFFFu : k <= 0 ? 0u : (1u << k) - 1u;
}

/* Positions i..i+15 of t where w's first and last bytes are (t is padded, see Scanner_scan). */
static inline unsigned cand_mask(const unsigned char *t, Py_ssize_t i, const lit_t *w, __m128i vf,
                                 __m128i vl) {
    __m128i a = _mm_loadu_si128((const __m128i *)(t + i));
    __m128i b = _mm_loadu_si128((const __m128i *)(t + i + w->n - 1));
    return (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(a, vf), _mm_cmpeq_epi8(b, vl)));
}

/* Candidates of w at t[base..base+15] in mask: whether one is a whole-word match. */
static inline int check_mask(const unsigned char *t, Py_ssize_t n, Py_ssize_t base,
                             unsigned mask, const lit_t *w) {
    while (mask) {
        if (match_at(t, n, base + __builtin_ctz(mask), w)) return 1;
        mask &= mask - 1;
    }
    return 0;
}
#endif

/* has_word for the legacy and the new column in one pass over t[0:n] (t padded). */
static void has_words(const Scanner *self, const unsigned char *t, Py_ssize_t n, int *legacy,
                      int *new_) {
    const lit_t *a = &self->legacy, *b = &self->new_;
#ifdef __SSE2__
    if (a->n > 1 && b->n > 1) {
        const __m128i af = _mm_set1_epi8((char)a->p[0]), al = _mm_set1_epi8((char)a->p[a->n - 1]);
        const __m128i bf = _mm_set1_epi8((char)b->p[0]), bl = _mm_set1_epi8((char)b->p[b->n - 1]);
        Py_ssize_t alast = n - a->n, blast = n - b->n;
        Py_ssize_t last = alast > blast ? alast : blast, full = alast < blast ? alast : blast;
        Py_ssize_t i = 0;
        for (; i + 15 <= full && !(*legacy && *new_); i += 16) { /* every position valid */
            if (!*legacy) *legacy = check_mask(t, n, i, cand_mask(t, i, a, af, al), a);
            if (!*new_) *new_ = check_mask(t, n, i, cand_mask(t, i, b, bf, bl), b);
        }
        for (; i <= last && !(*legacy && *new_); i += 16) {
            if (!*legacy)
                *legacy = check_mask(t, n, i, cand_mask(t, i, a, af, al) & valid_bits(i, alast), a);
            if (!*new_)
                *new_ = check_mask(t, n, i, cand_mask(t, i, b, bf, bl) & valid_bits(i, blast), b);
        }
        return;
    }
#endif
    if (!*legacy) *legacy = has_word(t, n, a);
    if (!*new_) *new_ = has_word(t, n, b);
}

static void patset_group(patset_t *set) {
    set->n_groups = 0;
    for (int k = 0; k < set->n; k++) {
        const lit_t *w = &set->pats[k];
        unsigned char first = w->p[0] | 0x20, last = w->p[w->n - 1] | 0x20;
        int g = 0;
        while (g < set->n_groups && !(set->groups[g].first == first &&
                                       set->groups[g].last == last && set->groups[g].len == w->n))
            g++;
        if (g == set->n_groups) {
            set->groups[g].first = first;
            set->groups[g].last = last;
            set->groups[g].len = w->n;
            set->groups[g].n_members = 0;
            set->n_groups++;
        }
        set->groups[g].members[set->groups[g].n_members++] = k;
    }
}

/* Whether one of the set's patterns occurs in t[0:n] (t padded): one pass for all of them,
 * 16 positions at a time tested for each group's first and last bytes (case folded), the
 * candidates then compared exactly. */
static int any_pattern(const unsigned char *t, Py_ssize_t n, const patset_t *set) {
#ifdef __SSE2__
    Py_ssize_t last = -1, full = n;
    int simd = set->n > 0;
    for (int k = 0; k < set->n; k++) {
        Py_ssize_t lk = n - set->pats[k].n;
        if (lk > last) last = lk;
        if (lk < full) full = lk;
        if (set->pats[k].n < 2) simd = 0;
    }
    if (simd) {
        __m128i first[MAX_LIST], lastb[MAX_LIST];
        const __m128i fold = _mm_set1_epi8(0x20);
        int ng = set->n_groups;
        for (int g = 0; g < ng; g++) {
            first[g] = _mm_set1_epi8((char)set->groups[g].first);
            lastb[g] = _mm_set1_epi8((char)set->groups[g].last);
        }
        for (Py_ssize_t i = 0; i <= last; i += 16) {
            __m128i a = _mm_or_si128(_mm_loadu_si128((const __m128i *)(t + i)), fold);
            for (int g = 0; g < ng; g++) {
                const group_t *grp = &set->groups[g];
                __m128i b = _mm_or_si128(
                    _mm_loadu_si128((const __m128i *)(t + i + grp->len - 1)), fold);
                unsigned mask = (unsigned)_mm_movemask_epi8(
                    _mm_and_si128(_mm_cmpeq_epi8(a, first[g]), _mm_cmpeq_epi8(b, lastb[g])));
                if (i + 15 > full) mask &= valid_bits(i, n - grp->len);
                while (mask) {
                    Py_ssize_t at = i + __builtin_ctz(mask);
                    for (int k = 0; k < grp->n_members; k++) {
                        const lit_t *w = &set->pats[grp->members[k]];
                        if (memcmp(t + at, w->p, (size_t)w->n) == 0) return 1;
                    }
                    mask &= mask - 1;
                }
            }
        }
        return 0;
    }
#endif
    for (int k = 0; k < set->n; k++) {
        if (find(t, n, &set->pats[k]) != NULL) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ one line */

#define V_FLOAT 4

typedef struct {
    int kind;
    Py_ssize_t s, e; /* string content, or the number's text */
    long long value;
} val_t;

/* A top-level value of interest at p[i] into *val: a string without escapes, null, an
 * integer, or (allow_float) any other number; index after it, or -1 for anything else
 * (booleans, objects, arrays, escapes: Python decides). */
static Py_ssize_t read_scalar(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, int allow_float,
                              val_t *val) {
    if (i >= n) return -1;
    if (p[i] == '"') {
        int escaped;
        Py_ssize_t end = parse_string(p, i, n, &escaped);
        if (end < 0 || escaped) return -1;
        val->kind = V_STR;
        val->s = i + 1;
        val->e = end - 1;
        return end;
    }
    if (p[i] == 'n') {
        val->kind = V_NULL;
        return parse_literal(p, i, n, "null", 4);
    }
    if (p[i] == '-' || (p[i] >= '0' && p[i] <= '9')) {
        int integer;
        Py_ssize_t end = parse_number(p, i, n, &integer, &val->value);
        if (end < 0 || !(integer || allow_float)) return -1;
        val->kind = integer ? V_INT : V_FLOAT;
        val->s = i;
        val->e = end;
        return end;
    }
    return -1;
}

/* Parses the value of the key at keys[slot] starting at p[i]; index after it or -1. */
typedef Py_ssize_t (*visit_fn)(void *ctx, int slot, const unsigned char *p, Py_ssize_t i,
                               Py_ssize_t n);

/* Walks the line p[0:n] (padded, see Scanner_scan) as one JSON object, handing the values
 * of keys[0:n_keys] (first bytes in key_first) to visit. 0 when the line is plain, -1 when
 * not: not one valid object, or a top-level key with escapes (it may spell one of ours). */
static int walk_object(const unsigned char *p, Py_ssize_t n, const lit_t *keys, int n_keys,
                       const unsigned char *key_first, visit_fn visit, void *ctx) {
    Py_ssize_t i = skip_ws(p, 0, n);
    if (i >= n || p[i] != '{') return -1;
    i = skip_ws(p, i + 1, n);
    if (i < n && p[i] == '}') return skip_ws(p, i + 1, n) == n ? 0 : -1;
    for (;;) {
        int escaped;
        if (i >= n || p[i] != '"') return -1;
        Py_ssize_t ks = i + 1;
        i = parse_string(p, i, n, &escaped);
        if (i < 0) return -1;
        Py_ssize_t klen = i - 1 - ks;
        int slot = -1;
        if (escaped) {
            if (n_keys) return -1;
        } else if (klen > 0 && key_first[p[ks]]) {
            for (int k = 0; k < n_keys; k++) {
                if (keys[k].n == klen && memcmp(keys[k].p, p + ks, (size_t)klen) == 0) {
                    slot = k;
                    break;
                }
            }
        }
        i = skip_ws(p, i, n);
        if (i >= n || p[i] != ':') return -1;
        i = skip_ws(p, i + 1, n);
        if (slot >= 0) {
            i = visit(ctx, slot, p, i, n);
        } else if (i < n && p[i] == '"') {
            i = parse_string(p, i, n, &escaped);
        } else {
            i = parse_value(p, i, n, 1);
        }
        if (i < 0) return -1;
        i = skip_ws(p, i, n);
        if (i >= n) return -1;
        if (p[i] == '}') return skip_ws(p, i + 1, n) == n ? 0 : -1;
        if (p[i] != ',') return -1;
        i = skip_ws(p, i + 1, n);
    }
}

static int level_is_error(const Scanner *self, const unsigned char *p, const val_t *v) {
    if (v->kind == V_STR) {
        Py_ssize_t len = v->e - v->s;
        for (int k = 0; k < self->n_level_strs; k++) {
            if (self->level_strs[k].n == len &&
                memcmp(self->level_strs[k].p, p + v->s, (size_t)len) == 0)
                return 1;
        }
    } else if (v->kind == V_INT) {
        for (int k = 0; k < self->n_level_ints; k++) {
            if (self->level_ints[k] == v->value) return 1;
        }
    }
    return 0;
}

static int status_is_error(const Scanner *self, const unsigned char *p, const val_t *v) {
    if (self->status_min < 0) return 0;
    if (v->kind == V_INT) return v->value >= self->status_min && v->value <= 599;
    if (v->kind == V_STR) { /* str(code): three digits, the first not 0 (codes >= 100) */
        if (v->e - v->s != 3) return 0;
        const unsigned char *d = p + v->s;
        if (d[0] < '1' || d[0] > '9' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9')
            return 0;
        long long code = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
        return code >= self->status_min && code <= 599;
    }
    return 0;
}

typedef struct {
    const Scanner *self;
    val_t level, status;
    span_t spans[MAX_LIST];
} line_values_t;

static Py_ssize_t visit_classified(void *ctx, int slot, const unsigned char *p, Py_ssize_t i,
                                   Py_ssize_t n) {
    line_values_t *lv = ctx;
    int roles = lv->self->roles[slot];
    Py_ssize_t end;
    if (roles & (ROLE_LEVEL | ROLE_STATUS)) {
        val_t v = {V_ABSENT, 0, 0, 0};
        end = read_scalar(p, i, n, 0, &v);
        if (roles & ROLE_LEVEL) lv->level = v;
        if (roles & ROLE_STATUS) lv->status = v;
    } else {
        end = parse_value(p, i, n, 1);
    }
    if (end >= 0 && (roles & ROLE_SEARCH)) { /* duplicate keys: the last wins, as in msgspec */
        span_t *span = &lv->spans[lv->self->search_slot[slot]];
        span->s = i;
        span->e = end;
    }
    return end;
}

/* Flags of the line p[0:n] (no newline; a trailing CR is whitespace), or -1 when it is not
 * plain. */
static int classify(const Scanner *self, const unsigned char *p, Py_ssize_t n) {
    line_values_t lv; /* not zeroed as a whole: only the n_search spans are used */
    lv.self = self;
    lv.level.kind = lv.status.kind = V_ABSENT;
    for (int k = 0; k < self->n_search; k++) lv.spans[k].s = -1;
    if (walk_object(p, n, self->keys, self->n_keys, self->key_first, visit_classified, &lv) < 0)
        return -1;
    const val_t *level = &lv.level, *status = &lv.status;
    const span_t *spans = lv.spans;

    int flags = 0;
    if (level_is_error(self, p, level) || status_is_error(self, p, status)) flags = F_ERROR;

    const unsigned char *tp[MAX_LIST + 1];
    Py_ssize_t tn[MAX_LIST + 1];
    int nt = 0;
    if (self->whole_line) {
        tp[0] = p;
        tn[0] = n;
        nt = 1;
    } else {
        for (int k = 0; k < self->n_search; k++) {
            if (spans[k].s >= 0) {
                tp[nt] = p + spans[k].s;
                tn[nt] = spans[k].e - spans[k].s;
                nt++;
            } else if (self->search_null[k]) {
                tp[nt] = self->null_text; /* zero-padded: the SIMD loops read ahead */
                tn[nt] = 4;
                nt++;
            }
        }
    }
    int legacy = 0, new_ = 0;
    for (int k = 0; k < nt && !(legacy && new_); k++) has_words(self, tp[k], tn[k], &legacy, &new_);
    if (legacy && !any_pattern(p, n, &self->exclude)) {
        flags |= F_LEGACY;
        if (flags & F_ERROR) flags |= F_LEGACY_ERROR;
    }
    if (new_) flags |= F_NEW;
    if (self->fallback.n && ((flags & F_LEGACY) || !self->fallback_needs_legacy)) {
        for (int k = 0; k < nt; k++) {
            if (any_pattern(tp[k], tn[k], &self->fallback)) {
                flags |= F_FALLBACK;
                break;
            }
        }
    }
    return flags;
}

/* ------------------------------------------------------------------ the type */

static int take_lit(PyObject *owner_list, PyObject *obj, lit_t *out, const char *what) {
    if (!PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes", what);
        return -1;
    }
    if (PyList_Append(owner_list, obj) < 0) return -1;
    out->p = (const unsigned char *)PyBytes_AS_STRING(obj);
    out->n = PyBytes_GET_SIZE(obj);
    return 0;
}

static int take_lits(PyObject *owner_list, PyObject *seq, lit_t *out, int *count,
                     const char *what, int allow_empty) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_LIST) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "too many %s (at most %d)", what, MAX_LIST);
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        if (take_lit(owner_list, PySequence_Fast_GET_ITEM(fast, k), &out[k], what) < 0) {
            Py_DECREF(fast);
            return -1;
        }
        if (out[k].n == 0 && !allow_empty) {
            Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError, "empty %s", what);
            return -1;
        }
    }
    *count = (int)n;
    Py_DECREF(fast);
    return 0;
}

static int add_key(Scanner *self, PyObject *owner_list, PyObject *key, int role) {
    lit_t lit;
    if (take_lit(owner_list, key, &lit, "key") < 0) return -1;
    for (int k = 0; k < self->n_keys; k++) {
        if (self->keys[k].n == lit.n && memcmp(self->keys[k].p, lit.p, (size_t)lit.n) == 0) {
            self->roles[k] |= role;
            return k;
        }
    }
    if (self->n_keys >= MAX_LIST) {
        PyErr_SetString(PyExc_ValueError, "too many keys");
        return -1;
    }
    self->key_first[lit.p[0]] = 1;
    self->keys[self->n_keys] = lit;
    self->roles[self->n_keys] = role;
    self->search_slot[self->n_keys] = -1;
    return self->n_keys++;
}

static int Scanner_init(Scanner *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"legacy",     "new",        "exclude",    "fallback",
                             "fallback_requires_legacy", "level_key",  "status_key",
                             "search_keys", "level_strings", "level_ints", "status_min",
                             "max_line_bytes", NULL};
    PyObject *legacy, *new_, *exclude, *fallback, *level_key, *status_key, *search_keys;
    PyObject *level_strs, *level_ints;
    int needs_legacy;
    long long status_min;
    Py_ssize_t max_line;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "SSOOpOOOOOLn", kwlist, &legacy, &new_,
                                     &exclude, &fallback, &needs_legacy, &level_key,
                                     &status_key, &search_keys, &level_strs, &level_ints,
                                     &status_min, &max_line))
        return -1;
    PyObject *owner = PyList_New(0);
    if (owner == NULL) return -1;
    Py_XSETREF(self->owner, owner);
    self->n_keys = self->n_search = 0;
    memset(self->key_first, 0, sizeof self->key_first);
    if (take_lit(owner, legacy, &self->legacy, "legacy") < 0 ||
        take_lit(owner, new_, &self->new_, "new") < 0 ||
        take_lits(owner, exclude, self->exclude.pats, &self->exclude.n, "exclude patterns", 0) < 0 ||
        take_lits(owner, fallback, self->fallback.pats, &self->fallback.n, "fallback patterns",
                  0) < 0 ||
        take_lits(owner, level_strs, self->level_strs, &self->n_level_strs, "level strings", 1) <
            0)
        return -1;
    if (self->legacy.n == 0 || self->new_.n == 0) {
        PyErr_SetString(PyExc_ValueError, "empty column name");
        return -1;
    }
    self->fallback_needs_legacy = needs_legacy;
    patset_group(&self->exclude);
    patset_group(&self->fallback);
    if (level_key != Py_None && add_key(self, owner, level_key, ROLE_LEVEL) < 0) return -1;
    if (status_key != Py_None && add_key(self, owner, status_key, ROLE_STATUS) < 0) return -1;
    if (search_keys == Py_None) {
        self->whole_line = 1;
    } else {
        self->whole_line = 0;
        PyObject *fast = PySequence_Fast(search_keys, "search_keys must be a sequence");
        if (fast == NULL) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
        for (Py_ssize_t k = 0; k < n; k++) {
            int slot = add_key(self, owner, PySequence_Fast_GET_ITEM(fast, k), ROLE_SEARCH);
            if (slot < 0) {
                Py_DECREF(fast);
                return -1;
            }
            if (self->search_slot[slot] < 0) {
                self->search_null[self->n_search] =
                    (self->roles[slot] & (ROLE_LEVEL | ROLE_STATUS)) != 0;
                self->search_slot[slot] = self->n_search++;
            }
        }
        Py_DECREF(fast);
    }
    PyObject *fast = PySequence_Fast(level_ints, "level_ints must be a sequence");
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_LIST) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "too many level integers");
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, k));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        self->level_ints[k] = v;
    }
    self->n_level_ints = (int)n;
    Py_DECREF(fast);
    self->status_min = status_min;
    self->max_line = max_line;
    Py_ssize_t longest = self->legacy.n > self->new_.n ? self->legacy.n : self->new_.n;
    for (int k = 0; k < self->exclude.n; k++)
        if (self->exclude.pats[k].n > longest) longest = self->exclude.pats[k].n;
    for (int k = 0; k < self->fallback.n; k++)
        if (self->fallback.pats[k].n > longest) longest = self->fallback.pats[k].n;
    self->pad = longest + 48;
    PyMem_Free(self->null_text);
    self->null_text = PyMem_Calloc(1, (size_t)(4 + self->pad));
    if (self->null_text == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->null_text, "null", 4);
    return 0;
}

static void Scanner_dealloc(Scanner *self) {
    Py_XDECREF(self->owner);
    PyMem_Free(self->null_text);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

typedef struct {
    Py_ssize_t s, e;
} pair_t;

/* A reusable buffer for lines near the end of the input (raw allocator: no GIL needed). */
typedef struct {
    unsigned char *p;
    Py_ssize_t size;
} scratch_t;

/* buf[pos:pos+len] with `pad` readable bytes after it, for the SIMD loops that read ahead:
 * the line in place when the input goes on that far, else a zero-padded copy in scratch.
 * NULL when out of memory. */
static const unsigned char *padded_line(scratch_t *scratch, const unsigned char *buf,
                                        Py_ssize_t buf_len, Py_ssize_t pos, Py_ssize_t len,
                                        Py_ssize_t pad) {
    if (buf_len - (pos + len) >= pad) return buf + pos;
    if (scratch->size < len + pad) {
        PyMem_RawFree(scratch->p);
        scratch->size = len + pad;
        scratch->p = PyMem_RawMalloc((size_t)scratch->size);
        if (scratch->p == NULL) {
            scratch->size = 0;
            return NULL;
        }
    }
    memcpy(scratch->p, buf + pos, (size_t)len);
    memset(scratch->p + len, 0, (size_t)pad);
    return scratch->p;
}

static PyObject *Scanner_scan(Scanner *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end;
    int keep;
    if (!PyArg_ParseTuple(args, "y*nni", &view, &start, &end, &keep)) return NULL;
    if (start < 0 || end > view.len || start > end || keep < 0 || keep > (1 << 20)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad range or sample count");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    long long counts[N_CLASSES] = {0, 0, 0, 0, 0};
    long long lines = 0;
    pair_t *ring = NULL;
    long long seen[N_CLASSES] = {0, 0, 0, 0, 0};
    if (keep > 0) {
        ring = PyMem_Malloc(sizeof(pair_t) * (size_t)keep * N_CLASSES);
        if (ring == NULL) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
    }
    Py_ssize_t pos = start;
    scratch_t scratch = {NULL, 0};
    int no_memory = 0;
    Py_BEGIN_ALLOW_THREADS
    while (pos < end) {
        const unsigned char *nl = memchr(buf + pos, '\n', (size_t)(end - pos));
        if (nl == NULL) break;
        Py_ssize_t e = nl - buf;
        if (e - pos > self->max_line) break;
        /* The line keeps its CR: classify_line strips one, msgspec reads any other as
         * whitespace, and a CR can neither be part of a word nor of a pattern. */
        const unsigned char *line = padded_line(&scratch, buf, view.len, pos, e - pos, self->pad);
        if (line == NULL) {
            no_memory = 1;
            break;
        }
        int flags = classify(self, line, e - pos);
        if (flags < 0) break;
        lines++;
        if (flags) {
            for (int c = 0; c < N_CLASSES; c++) {
                if (flags & (1 << c)) {
                    counts[c]++;
                    if (keep) {
                        pair_t *slot = &ring[c * keep + seen[c] % keep];
                        slot->s = pos;
                        slot->e = e;
                    }
                    seen[c]++;
                }
            }
        }
        pos = e + 1;
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(scratch.p);
    PyBuffer_Release(&view);
    if (no_memory) {
        PyMem_Free(ring);
        return PyErr_NoMemory();
    }

    PyObject *samples = Py_None;
    Py_INCREF(samples);
    if (keep > 0) {
        Py_DECREF(samples);
        samples = PyTuple_New(N_CLASSES);
        for (int c = 0; samples != NULL && c < N_CLASSES; c++) {
            long long have = seen[c] < keep ? seen[c] : keep;
            PyObject *list = PyList_New((Py_ssize_t)have);
            if (list == NULL) {
                Py_CLEAR(samples);
                break;
            }
            for (long long k = 0; k < have; k++) {
                pair_t *slot = &ring[c * keep + (seen[c] - have + k) % keep];
                PyObject *item = Py_BuildValue("(nn)", slot->s, slot->e);
                if (item == NULL) {
                    Py_DECREF(list);
                    Py_CLEAR(samples);
                    break;
                }
                PyList_SET_ITEM(list, (Py_ssize_t)k, item);
            }
            if (samples != NULL) PyTuple_SET_ITEM(samples, c, list);
        }
    }
    PyMem_Free(ring);
    if (samples == NULL) return NULL;
    return Py_BuildValue("(nLLLLLLN)", pos, lines, counts[0], counts[1], counts[2], counts[3],
                         counts[4], samples);
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)Scanner_scan, METH_VARARGS,
     "scan(buf, start, end, samples) -> (stop, lines, error, legacy_reference, "
     "new_reference, legacy_error, fallback, samples)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "migration_watch.logs._fastscan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Classifier of plain JSON log lines (see the module docstring).",
    .tp_methods = Scanner_methods,
    .tp_init = (initproc)Scanner_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ one field per line */

#define FIELD_PAD 64

static PyObject *UNDECIDED; /* "read this line in Python" */

static Py_ssize_t visit_field(void *ctx, int slot, const unsigned char *p, Py_ssize_t i,
                              Py_ssize_t n) {
    (void)slot;
    return read_scalar(p, i, n, 1, (val_t *)ctx); /* duplicate keys: the last wins */
}

static PyObject *value_object(const unsigned char *p, const val_t *v) {
    switch (v->kind) {
    case V_STR:
        return PyUnicode_DecodeUTF8((const char *)p + v->s, v->e - v->s, "strict");
    case V_INT:
        return PyLong_FromLongLong(v->value);
    case V_FLOAT: {
        char text[64];
        Py_ssize_t len = v->e - v->s;
        if (len >= (Py_ssize_t)sizeof text) {
            Py_INCREF(UNDECIDED);
            return UNDECIDED;
        }
        memcpy(text, p + v->s, (size_t)len);
        text[len] = 0;
        double d = PyOS_string_to_double(text, NULL, NULL);
        if (d == -1.0 && PyErr_Occurred()) return NULL;
        return PyFloat_FromDouble(d);
    }
    default:
        Py_RETURN_NONE;
    }
}

/* field_values(buf, start, end, key, max_line_bytes) -> list: the value of `key` on each
 * complete line of buf[start:end] (as msgspec decodes it), UNDECIDED where Python must. */
static PyObject *field_values(PyObject *module, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end, max_line;
    const char *key_p;
    Py_ssize_t key_n;
    if (!PyArg_ParseTuple(args, "y*nny#n", &view, &start, &end, &key_p, &key_n, &max_line))
        return NULL;
    if (start < 0 || end > view.len || start > end || key_n == 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad range or empty key");
        return NULL;
    }
    lit_t key = {(const unsigned char *)key_p, key_n};
    const unsigned char *buf = view.buf;
    unsigned char key_first[256] = {0};
    key_first[key.p[0]] = 1;
    PyObject *out = PyList_New(0);
    scratch_t scratch = {NULL, 0};
    Py_ssize_t pos = start;
    while (out != NULL && pos < end) {
        const unsigned char *nl = memchr(buf + pos, '\n', (size_t)(end - pos));
        if (nl == NULL) break;
        Py_ssize_t e = nl - buf, len = e - pos;
        const unsigned char *line = NULL;
        val_t v = {V_ABSENT, 0, 0, 0};
        int rc = -1;
        if (len <= max_line) {
            line = padded_line(&scratch, buf, view.len, pos, len, FIELD_PAD);
            if (line == NULL) {
                Py_CLEAR(out);
                PyErr_NoMemory();
                break;
            }
            rc = walk_object(line, len, &key, 1, key_first, visit_field, &v);
        }
        PyObject *item;
        if (rc < 0) {
            item = UNDECIDED;
            Py_INCREF(item);
        } else {
            item = value_object(line, &v);
        }
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(item);
        pos = e + 1;
    }
    PyMem_RawFree(scratch.p);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef module_methods[] = {
    {"field_values", field_values, METH_VARARGS,
     "field_values(buf, start, end, key, max_line_bytes) -> list of the key's value per line "
     "(UNDECIDED: read that line in Python)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "migration_watch.logs._fastscan",
    .m_doc = "The chunk path of the JSON log classifier (see classify.py).",
    .m_methods = module_methods,
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastscan(void) {
    init_tables();
    if (PyType_Ready(&ScannerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    UNDECIDED = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (UNDECIDED == NULL || PyModule_AddObjectRef(m, "UNDECIDED", UNDECIDED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddIntConstant(m, "MAX_LIST", MAX_LIST) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
