/*
 * parse.c - smtpd.conf(5) reader: a hand-written lexer feeding a
 * recursive-descent parser with one function per directive, so the grammar
 * can grow a directive (or an option) at a time.
 *
 * The first error stops the load: it is reported as exactly one line,
 * "file:line: message", and config_load() returns NULL, so a half-parsed
 * configuration never reaches the daemon.  Names used before they are
 * declared (actions, tables) are resolved once the whole file is read.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

#define CONF_MAX_FILE		(16 * 1024 * 1024)
#define CONF_MAX_TOKEN		8192	/* one word or quoted string */
#define CONF_MAX_INCLUDE	16	/* include nesting */
#define CONF_MAX_EXPAND		8	/* macro nesting */
#define CONF_DEFAULT_PORT	25
#define CONF_MAX_TAG		63	/* fits envelope.tag */
#define CONF_MAX_HOSTNAME	255	/* fits envelope.hostname */

enum tok_type {
	T_ERR,			/* after an error: stops every rule */
	T_EOF,
	T_NL,
	T_WORD,			/* bare word or quoted string */
	T_LBRACE,
	T_RBRACE,
	T_LT,
	T_GT,
	T_BANG,
	T_EQ,
	T_COMMA,
};

struct token {
	enum tok_type	 type;
	char		*text;		/* T_WORD only */
	int		 quoted;	/* quoted words are never keywords */
	int		 line;
};

/* One file being read, or one macro value being re-read. */
struct lexer {
	struct lexer	*prev;		/* the including file */
	const char	*name;		/* for messages */
	const char	*buf;
	char		*owned;		/* file contents */
	size_t		 len;
	size_t		 pos;
	int		 line;
	int		 is_macro;	/* newlines are blanks, line is fixed */
	struct token	*q;		/* lookahead */
	size_t		 qhead;
	size_t		 qlen;
	size_t		 qcap;
	struct token	 cur;		/* last consumed, for messages */
};

struct macrodef {
	char	*name;
	char	*value;
	int	 cmdline;		/* -D wins over the file */
};

/* A name used before the end of the file; exactly one slot is set. */
struct ref {
	char		 *name;
	char		 *file;
	int		  line;
	struct table	**table;
	struct action	**action;
};

struct parser {
	struct config	*conf;
	struct lexer	*lx;		/* innermost file */
	int		 depth;		/* include nesting */
	int		 failed;
	unsigned int	 nanon;		/* anonymous tables made so far */
	struct macrodef	*macros;
	size_t		 nmacros;
	struct ref	*refs;
	size_t		 nrefs;
};

/* Macro names may not shadow words the grammar gives a meaning. */
static const char *const reserved[] = {
	"action", "any", "domain", "for", "from", "hostname", "include",
	"inet4", "inet6", "junk", "limit", "listen", "local", "maildir",
	"match", "on", "port", "reject", "smtp", "socket", "src", "table",
	"tag", "user",
};

static int	parse_statement(struct parser *);

/* ---------------------------------------------------------------- errors */

static int perr_at(struct parser *, const char *, int, const char *, ...)
    __attribute__((format(printf, 4, 5)));
static int perr(struct parser *, int, const char *, ...)
    __attribute__((format(printf, 3, 4)));

static int
vperr_at(struct parser *p, const char *file, int line, const char *fmt,
    va_list ap)
{
	char	 msg[1024];

	/* Later errors are mostly echoes of the first one. */
	if (p->failed)
		return -1;
	p->failed = 1;
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	log_warnx("%s:%d: %s", file, line, msg);
	return -1;
}

static int
perr_at(struct parser *p, const char *file, int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vperr_at(p, file, line, fmt, ap);
	va_end(ap);
	return -1;
}

static int
perr(struct parser *p, int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vperr_at(p, p->lx->name, line, fmt, ap);
	va_end(ap);
	return -1;
}

static const char *
tok_desc(const struct token *t, char *buf, size_t len)
{
	static const char punct[] = "{}<>!=,";

	switch (t->type) {
	case T_ERR:
		return "an invalid token";
	case T_EOF:
		return "end of file";
	case T_NL:
		return "end of line";
	case T_WORD:
		if (strlen(t->text) > 64)
			snprintf(buf, len, "\"%.64s...\"", t->text);
		else
			snprintf(buf, len, "\"%s\"", t->text);
		return buf;
	default:
		snprintf(buf, len, "\"%c\"", punct[t->type - T_LBRACE]);
		return buf;
	}
}

/* "syntax error: expected WHAT [after PREVIOUS], got GOT" */
static int
unexpected(struct parser *p, const struct token *got, const char *what)
{
	const struct token	*prev = &p->lx->cur;
	char			 gbuf[96], pbuf[96];

	if (prev->type != T_WORD && prev->type < T_LBRACE)
		return perr(p, got->line, "syntax error: expected %s, got %s",
		    what, tok_desc(got, gbuf, sizeof(gbuf)));
	return perr(p, got->line, "syntax error: expected %s after %s, got %s",
	    what, tok_desc(prev, pbuf, sizeof(pbuf)),
	    tok_desc(got, gbuf, sizeof(gbuf)));
}

/* ----------------------------------------------------------------- lexer */

static int
lx_peekc(const struct lexer *lx, size_t off)
{
	if (off >= lx->len - lx->pos)
		return EOF;
	return (unsigned char)lx->buf[lx->pos + off];
}

/* Length of a backslash-newline at the cursor, 0 if there is none. */
static size_t
continuation(const struct lexer *lx)
{
	if (lx_peekc(lx, 0) != '\\')
		return 0;
	if (lx_peekc(lx, 1) == '\n')
		return 2;
	if (lx_peekc(lx, 1) == '\r' && lx_peekc(lx, 2) == '\n')
		return 3;
	return 0;
}

static void
lx_newline(struct lexer *lx)
{
	if (!lx->is_macro)
		lx->line++;
}

/* A comment runs to the end of the line, continuations included. */
static void
skip_comment(struct lexer *lx)
{
	size_t	 n;
	int	 c;

	while ((c = lx_peekc(lx, 0)) != EOF && c != '\n') {
		if ((n = continuation(lx)) > 0) {
			lx->pos += n;
			lx_newline(lx);
		} else
			lx->pos++;
	}
}

static void
skip_blanks(struct lexer *lx)
{
	size_t	 n;
	int	 c;

	for (;;) {
		c = lx_peekc(lx, 0);
		if (c == ' ' || c == '\t' || c == '\r' ||
		    (c == '\n' && lx->is_macro))
			lx->pos++;
		else if ((n = continuation(lx)) > 0) {
			lx->pos += n;
			lx_newline(lx);
		} else if (c == '#')
			skip_comment(lx);
		else
			return;
	}
}

static int
is_word_char(int c)
{
	if (c == EOF || c <= ' ' || c == 0x7f)
		return 0;
	return strchr("{}<>!=,#\"", c) == NULL;
}

static enum tok_type
punct_type(int c)
{
	switch (c) {
	case '{':	return T_LBRACE;
	case '}':	return T_RBRACE;
	case '<':	return T_LT;
	case '>':	return T_GT;
	case '!':	return T_BANG;
	case '=':	return T_EQ;
	case ',':	return T_COMMA;
	default:	return T_ERR;
	}
}

static void
lex_word(struct parser *p, struct lexer *lx, struct token *t)
{
	size_t	 start = lx->pos, n;

	while (is_word_char(lx_peekc(lx, 0)) && continuation(lx) == 0)
		lx->pos++;
	n = lx->pos - start;
	if (lx_peekc(lx, 0) == '"') {
		perr(p, t->line, "unexpected '\"' inside a word");
		return;
	}
	if (n >= CONF_MAX_TOKEN) {
		perr(p, t->line, "word too long (more than %d bytes)",
		    CONF_MAX_TOKEN - 1);
		return;
	}
	t->text = xmalloc(n + 1);
	memcpy(t->text, lx->buf + start, n);
	t->text[n] = '\0';
	t->type = T_WORD;
}

/*
 * Inside quotes a backslash escapes '"' and '\' and joins lines; any other
 * backslash is kept, so regular expressions survive unchanged.
 */
static void
lex_quoted(struct parser *p, struct lexer *lx, struct token *t)
{
	char	 buf[CONF_MAX_TOKEN];
	size_t	 n = 0, cont;
	int	 c;

	for (;;) {
		c = lx_peekc(lx, 0);
		if (c == EOF || c == '\n') {
			perr(p, t->line, "unterminated quoted string");
			return;
		}
		if ((cont = continuation(lx)) > 0) {
			lx->pos += cont;
			lx_newline(lx);
			continue;
		}
		lx->pos++;
		if (c == '"')
			break;
		if (c == '\\' && (lx_peekc(lx, 0) == '"' ||
		    lx_peekc(lx, 0) == '\\'))
			c = lx->buf[lx->pos++];
		else if ((c < ' ' && c != '\t') || c == 0x7f) {
			perr(p, t->line, "unexpected character 0x%02x in "
			    "quoted string", c);
			return;
		}
		if (n + 1 >= sizeof(buf)) {
			perr(p, t->line, "quoted string too long (more than "
			    "%zu bytes)", sizeof(buf) - 1);
			return;
		}
		buf[n++] = c;
	}
	buf[n] = '\0';
	t->text = xstrdup(buf);
	t->quoted = 1;
	t->type = T_WORD;
}

/* One token as written, before macro expansion; T_ERR after an error. */
static void
lex_raw(struct parser *p, struct lexer *lx, struct token *t)
{
	int	 c;

	memset(t, 0, sizeof(*t));
	t->type = T_ERR;
	skip_blanks(lx);
	t->line = lx->line;
	c = lx_peekc(lx, 0);
	if (c == EOF) {
		t->type = T_EOF;
		return;
	}
	if (c == '\n') {
		lx->pos++;
		lx_newline(lx);
		t->type = T_NL;
		return;
	}
	if (c == '"') {
		lx->pos++;
		lex_quoted(p, lx, t);
		return;
	}
	if ((t->type = punct_type(c)) != T_ERR) {
		lx->pos++;
		return;
	}
	if (!is_word_char(c)) {
		perr(p, t->line, "unexpected character 0x%02x", c);
		return;
	}
	lex_word(p, lx, t);
}

static void
q_push(struct lexer *lx, const struct token *t)
{
	if (lx->qlen == lx->qcap) {
		lx->qcap = lx->qcap ? lx->qcap * 2 : 8;
		lx->q = xreallocarray(lx->q, lx->qcap, sizeof(*lx->q));
	}
	lx->q[lx->qlen++] = *t;
}

static const char *
macro_get(const struct parser *p, const char *name)
{
	size_t	 i;

	for (i = 0; i < p->nmacros; i++)
		if (strcmp(p->macros[i].name, name) == 0)
			return p->macros[i].value;
	return NULL;
}

static int
macro_name_valid(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return 0;
	return 1;
}

static int
is_macro_ref(const struct token *t)
{
	return t->type == T_WORD && !t->quoted && t->text[0] == '$';
}

/*
 * $name outside quotes is replaced by the tokens of its value, so one
 * macro may carry several words ("port 587 tag SUBMIT").
 */
static void
expand_macro(struct parser *p, const char *ref, int line, int depth)
{
	struct lexer	 sub;
	struct token	 t;
	const char	*value;

	if (!macro_name_valid(ref + 1)) {
		perr(p, line, "invalid macro reference \"%s\"", ref);
		return;
	}
	if ((value = macro_get(p, ref + 1)) == NULL) {
		perr(p, line, "undefined macro \"%s\"", ref + 1);
		return;
	}
	if (depth >= CONF_MAX_EXPAND) {
		perr(p, line, "macro \"%s\" nests too deeply (does it refer "
		    "to itself?)", ref + 1);
		return;
	}
	memset(&sub, 0, sizeof(sub));
	sub.buf = value;
	sub.len = strlen(value);
	sub.line = line;
	sub.is_macro = 1;
	while (!p->failed) {
		lex_raw(p, &sub, &t);
		if (t.type == T_EOF || t.type == T_ERR)
			break;
		if (is_macro_ref(&t)) {
			expand_macro(p, t.text, line, depth + 1);
			free(t.text);
		} else
			q_push(p->lx, &t);
	}
}

/* Appends at least zero tokens; after an error, always a T_ERR. */
static void
lex_fill(struct parser *p)
{
	struct lexer	*lx = p->lx;
	struct token	 t;

	if (p->failed) {
		memset(&t, 0, sizeof(t));
		t.type = T_ERR;
		t.line = lx->line;
		q_push(lx, &t);
		return;
	}
	lex_raw(p, lx, &t);
	if (is_macro_ref(&t)) {
		expand_macro(p, t.text, t.line, 0);
		free(t.text);
		return;
	}
	q_push(lx, &t);
}

/* The token n places ahead; valid until the next peek() or take(). */
static const struct token *
peek(struct parser *p, size_t n)
{
	struct lexer	*lx = p->lx;

	while (lx->qlen - lx->qhead <= n)
		lex_fill(p);
	return &lx->q[lx->qhead + n];
}

static const struct token *
take(struct parser *p)
{
	struct lexer	*lx = p->lx;

	peek(p, 0);
	free(lx->cur.text);
	lx->cur = lx->q[lx->qhead++];
	if (lx->qhead == lx->qlen)
		lx->qhead = lx->qlen = 0;
	return &lx->cur;
}

static void
lexer_free(struct lexer *lx)
{
	size_t	 i;

	for (i = lx->qhead; i < lx->qlen; i++)
		free(lx->q[i].text);
	free(lx->q);
	free(lx->cur.text);
	free(lx->owned);
}

/* --------------------------------------------------------- parse helpers */

static int
is_kw(const struct token *t, const char *kw)
{
	return t->type == T_WORD && !t->quoted && strcmp(t->text, kw) == 0;
}

static int
is_eol(const struct token *t)
{
	return t->type == T_NL || t->type == T_EOF;
}

static int
in_list(const char *s, const char *const *list, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

#define IN_LIST(s, a)	in_list((s), (a), sizeof(a) / sizeof((a)[0]))

/* A value where a word (quoted or not) is required. */
static int
want_word(struct parser *p, const char *what, char **out)
{
	const struct token	*t = peek(p, 0);

	if (t->type != T_WORD)
		return unexpected(p, t, what);
	*out = xstrdup(take(p)->text);
	return 0;
}

static int
want_eol(struct parser *p)
{
	const struct token	*t = peek(p, 0);

	if (t->type == T_EOF)
		return 0;
	if (t->type != T_NL)
		return unexpected(p, t, "end of line");
	take(p);
	return 0;
}

/* Known to OpenSMTPD but not implemented here yet: say so, not "unknown". */
static int
not_yet(struct parser *p, const char *what, const char *name)
{
	return perr(p, p->lx->cur.line, "%s \"%s\" is not available yet",
	    what, name);
}

static int
option_twice(struct parser *p, const char *opt)
{
	return perr(p, p->lx->cur.line, "option \"%s\" given twice", opt);
}

static char *
here_file(const struct parser *p)
{
	return xstrdup(p->lx->name);
}

static void
ref_add(struct parser *p, const char *name, int line, struct table **table,
    struct action **action)
{
	struct ref	*r;

	p->refs = xreallocarray(p->refs, p->nrefs + 1, sizeof(*p->refs));
	r = &p->refs[p->nrefs++];
	r->name = xstrdup(name);
	r->file = here_file(p);
	r->line = line;
	r->table = table;
	r->action = action;
}

/* Decimal count, 1 .. UINT32_MAX. */
static int
scan_count(const char *s, size_t *out)
{
	unsigned long long	 v;
	char			*end;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > UINT32_MAX)
		return -1;
	*out = v;
	return 0;
}

static int
scale_of(int c, uint64_t *scale)
{
	const char	*units = "BKMGTPE";
	const char	*u;

	*scale = 1;
	if (c == '\0')
		return 0;
	if ((u = strchr(units, toupper(c))) == NULL)
		return -1;
	*scale = (uint64_t)1 << (10 * (u - units));
	return 0;
}

/* scan_scaled(3) style: "35M", "1.5G", "1024"; positive and finite. */
static int
scan_size(const char *s, size_t *out)
{
	uint64_t	 whole = 0, frac = 0, fracdiv = 1, scale, v;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -1;
		whole = whole * 10 + (*s - '0');
	}
	if (*s == '.') {
		if (!isdigit((unsigned char)*++s))
			return -1;
		for (; isdigit((unsigned char)*s); s++) {
			if (fracdiv == 1000)
				return -1;	/* more precision than bytes */
			frac = frac * 10 + (*s - '0');
			fracdiv *= 10;
		}
	}
	if (scale_of(*s, &scale) == -1 || (*s != '\0' && s[1] != '\0'))
		return -1;
	if (scale == 1 && frac != 0)
		return -1;
	if (whole > UINT64_MAX / scale)
		return -1;
	v = whole * scale;
	/* Split so frac * scale cannot overflow. */
	frac = scale / fracdiv * frac + scale % fracdiv * frac / fracdiv;
	if (v > UINT64_MAX - frac || v + frac == 0 || v + frac > SIZE_MAX)
		return -1;
	*out = v + frac;
	return 0;
}

/* ---------------------------------------------------------------- tables */

static struct table *
table_find(const struct config *conf, const char *name)
{
	struct table	*t;

	TAILQ_FOREACH(t, &conf->tables, entry)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

static struct table *
table_new(struct parser *p, char *name, int line)
{
	struct table	*t = xcalloc(1, sizeof(*t));

	t->name = name;
	t->kind = TABLE_LIST;
	t->file = here_file(p);
	t->line = line;
	TAILQ_INSERT_TAIL(&p->conf->tables, t, entry);
	return t;
}

static void
table_push(struct table *t, char *key, char *value)
{
	t->entries = xreallocarray(t->entries, t->nentries + 1,
	    sizeof(*t->entries));
	t->entries[t->nentries].key = key;
	t->entries[t->nentries].value = value;
	t->nentries++;
}

static int
table_has_key(const struct table *t, const char *key)
{
	size_t	 i;

	for (i = 0; i < t->nentries; i++)
		if (strcmp(t->entries[i].key, key) == 0)
			return 1;
	return 0;
}

/* One entry, "value" or "key = value"; the first one fixes the kind. */
static int
table_entry(struct parser *p, struct table *t)
{
	char	*key, *value = NULL;
	int	 line;

	key = xstrdup(take(p)->text);
	line = p->lx->cur.line;
	if (peek(p, 0)->type == T_EQ) {
		take(p);
		if (want_word(p, "a value", &value) == -1) {
			free(key);
			return -1;
		}
	}
	if (t->nentries == 0)
		t->kind = value ? TABLE_MAP : TABLE_LIST;
	if ((t->kind == TABLE_MAP) != (value != NULL)) {
		free(key);
		free(value);
		return perr(p, line, "table \"%s\" mixes plain values and "
		    "key = value pairs", t->name);
	}
	if (value != NULL && table_has_key(t, key)) {
		perr(p, line, "table \"%s\": key \"%s\" given twice",
		    t->name, key);
		free(key);
		free(value);
		return -1;
	}
	table_push(t, key, value);
	return 0;
}

/* { a, b } or { k = v, ... }; commas and newlines separate entries. */
static int
table_body(struct parser *p, struct table *t)
{
	const struct token	*tok;

	take(p);			/* '{' */
	for (;;) {
		tok = peek(p, 0);
		if (tok->type == T_RBRACE)
			break;
		if (tok->type == T_NL || tok->type == T_COMMA)
			take(p);
		else if (tok->type == T_WORD) {
			if (table_entry(p, t) == -1)
				return -1;
		} else
			return unexpected(p, tok, "a table value or \"}\"");
	}
	take(p);
	if (t->nentries == 0)
		return perr(p, p->lx->cur.line, "table \"%s\" is empty",
		    t->name);
	return 0;
}

static int
parse_table(struct parser *p)
{
	const struct token	*tok;
	struct table		*t, *old;
	char			*name;
	int			 line = p->lx->cur.line;

	if (want_word(p, "a table name", &name) == -1)
		return -1;
	if (*name == '\0' || strpbrk(name, "<> \t") != NULL) {
		perr(p, line, "invalid table name \"%s\"", name);
		free(name);
		return -1;
	}
	if ((old = table_find(p->conf, name)) != NULL) {
		perr(p, line, "table \"%s\" is already defined at %s:%d",
		    name, old->file, old->line);
		free(name);
		return -1;
	}
	t = table_new(p, name, line);
	tok = peek(p, 0);
	if (tok->type == T_WORD)
		return perr(p, tok->line, "table \"%s\": only inline tables "
		    "({ ... }) are available yet, not \"%s\"", name,
		    tok->text);
	if (tok->type != T_LBRACE)
		return unexpected(p, tok, "\"{\"");
	if (table_body(p, t) == -1)
		return -1;
	return want_eol(p);
}

/* <name>, resolved at the end of the file. */
static int
parse_table_ref(struct parser *p, struct table **slot)
{
	const struct token	*t = peek(p, 0);
	char			*name;
	int			 line = t->line;

	if (t->type != T_LT)
		return unexpected(p, t, "\"<\"");
	take(p);
	if (want_word(p, "a table name", &name) == -1)
		return -1;
	if ((t = peek(p, 0))->type != T_GT) {
		free(name);
		return unexpected(p, t, "\">\"");
	}
	take(p);
	ref_add(p, name, line, slot, NULL);
	free(name);
	return 0;
}

/* A literal where a table may stand: a one-entry list nobody can name. */
static struct table *
table_anon(struct parser *p, char *value, int line)
{
	struct table	*t;
	char		*name;

	xasprintf(&name, "<anon:%u>", ++p->nanon);
	t = table_new(p, name, line);
	table_push(t, value, NULL);
	return t;
}

/* ------------------------------------------------------------- listeners */

struct listen_opts {
	int	 port;			/* 0: default */
	int	 family;		/* LISTEN_INET4 | LISTEN_INET6 */
	char	*tag;
	char	*hostname;
};

struct addrvec {
	struct sockaddr_storage	*ss;
	size_t			 n;
};

static void
addr_push(struct addrvec *v, const struct sockaddr *sa, size_t len)
{
	v->ss = xreallocarray(v->ss, v->n + 1, sizeof(*v->ss));
	memset(&v->ss[v->n], 0, sizeof(v->ss[v->n]));
	memcpy(&v->ss[v->n], sa, len);
	v->n++;
}

static socklen_t
ss_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6);
}

static int
family_ok(int af, int family)
{
	return (af == AF_INET && (family & LISTEN_INET4)) ||
	    (af == AF_INET6 && (family & LISTEN_INET6));
}

/* 1 if s is an IPv4 or IPv6 literal (v6 may carry %scope), else 0. */
static int
addr_literal(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 1];
	char			*scope;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return 1;
	}
	if (msd_strlcpy(buf, s, sizeof(buf)) >= sizeof(buf))
		return 0;
	if ((scope = strchr(buf, '%')) != NULL)
		*scope++ = '\0';
	if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
		return 0;
	if (scope != NULL && (sin6->sin6_scope_id = if_nametoindex(scope)) == 0)
		return 0;
	sin6->sin6_family = AF_INET6;
	return 1;
}

/* The inet/inet6 addresses of one interface; found: the name exists. */
static int
iface_addrs(const char *name, int family, struct addrvec *v, int *found)
{
	struct ifaddrs	*ifap, *ifa;
	int		 af;

	if (getifaddrs(&ifap) == -1)
		return -1;
	for (ifa = ifap; ifa != NULL; ifa = ifa->ifa_next) {
		if (strcmp(ifa->ifa_name, name) != 0)
			continue;
		*found = 1;
		if (ifa->ifa_addr == NULL)
			continue;
		af = ifa->ifa_addr->sa_family;
		if (af == AF_INET && family_ok(af, family))
			addr_push(v, ifa->ifa_addr, sizeof(struct sockaddr_in));
		else if (af == AF_INET6 && family_ok(af, family))
			addr_push(v, ifa->ifa_addr,
			    sizeof(struct sockaddr_in6));
	}
	freeifaddrs(ifap);
	return 0;
}

static const char *
family_name(int family)
{
	if (family == LISTEN_INET4)
		return "inet4";
	if (family == LISTEN_INET6)
		return "inet6";
	return "IP";
}

/* localhost, an address literal or an interface name. */
static int
listen_resolve(struct parser *p, const char *where, int family, int line,
    struct addrvec *v)
{
	struct sockaddr_storage	 ss;
	int			 found = 0;

	if (strcmp(where, "localhost") == 0) {
		found = 1;
		if (addr_literal("127.0.0.1", &ss) && family_ok(AF_INET, family))
			addr_push(v, (struct sockaddr *)&ss, ss_len(&ss));
		if (addr_literal("::1", &ss) && family_ok(AF_INET6, family))
			addr_push(v, (struct sockaddr *)&ss, ss_len(&ss));
	} else if (addr_literal(where, &ss)) {
		found = 1;
		if (family_ok(ss.ss_family, family))
			addr_push(v, (struct sockaddr *)&ss, ss_len(&ss));
	} else if (iface_addrs(where, family, v, &found) == -1)
		return perr(p, line, "listen on \"%s\": getifaddrs: %s",
		    where, strerror(errno));
	if (!found)
		return perr(p, line, "listen on \"%s\": not an IP address, "
		    "an interface or \"localhost\"", where);
	if (v->n == 0)
		return perr(p, line, "listen on \"%s\": no %s address",
		    where, family_name(family));
	return 0;
}

static int
ss_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	const struct sockaddr_in	*a4, *b4;
	const struct sockaddr_in6	*a6, *b6;

	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		a4 = (const struct sockaddr_in *)a;
		b4 = (const struct sockaddr_in *)b;
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	}
	a6 = (const struct sockaddr_in6 *)a;
	b6 = (const struct sockaddr_in6 *)b;
	return a6->sin6_port == b6->sin6_port &&
	    a6->sin6_scope_id == b6->sin6_scope_id &&
	    memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) == 0;
}

static void
ss_set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* One listener per address, refusing an address and port seen before. */
static int
listen_add(struct parser *p, const char *where, const struct listen_opts *o,
    int line)
{
	struct addrvec		 v = { NULL, 0 };
	struct listener		*l;
	size_t			 i;
	int			 port = o->port ? o->port : CONF_DEFAULT_PORT;

	if (listen_resolve(p, where, o->family, line, &v) == -1) {
		free(v.ss);
		return -1;
	}
	for (i = 0; i < v.n; i++) {
		ss_set_port(&v.ss[i], port);
		TAILQ_FOREACH(l, &p->conf->listeners, entry)
			if (ss_same(&l->ss, &v.ss[i]))
				break;
		if (l != NULL) {
			perr(p, line, "listen on \"%s\": %s port %d is "
			    "already declared at %s:%d", where,
			    ss_to_text(&v.ss[i]), port, l->file, l->line);
			free(v.ss);
			return -1;
		}
		l = xcalloc(1, sizeof(*l));
		l->ss = v.ss[i];
		l->sslen = ss_len(&l->ss);
		l->tag = o->tag ? xstrdup(o->tag) : NULL;
		l->hostname = o->hostname ? xstrdup(o->hostname) : NULL;
		l->fd = -1;
		l->file = here_file(p);
		l->line = line;
		TAILQ_INSERT_TAIL(&p->conf->listeners, l, entry);
	}
	free(v.ss);
	return 0;
}

/* A number (1-65535) or a service name from services(5). */
static int
listen_port(struct parser *p, struct listen_opts *o)
{
	struct servent	*se;
	char		*s, *end;
	long		 v;
	int		 rc = 0;

	if (o->port)
		return option_twice(p, "port");
	if (want_word(p, "a port", &s) == -1)
		return -1;
	if (isdigit((unsigned char)*s)) {
		errno = 0;
		v = strtol(s, &end, 10);
		if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
			rc = perr(p, p->lx->cur.line, "invalid port \"%s\": "
			    "expected a number from 1 to 65535", s);
		else
			o->port = v;
	} else if ((se = getservbyname(s, "tcp")) != NULL)
		o->port = ntohs(se->s_port);
	else
		rc = perr(p, p->lx->cur.line, "unknown port \"%s\"", s);
	free(s);
	return rc;
}

/* tag T / hostname H: a word, bounded by the envelope field it fills. */
static int
listen_string(struct parser *p, const char *opt, const char *what,
    char **slot, size_t max)
{
	if (*slot != NULL)
		return option_twice(p, opt);
	if (want_word(p, what, slot) == -1)
		return -1;
	if (**slot == '\0' || strlen(*slot) > max)
		return perr(p, p->lx->cur.line, "invalid %s \"%s\" (1 to %zu "
		    "bytes)", opt, *slot, max);
	return 0;
}

static int
listen_family(struct parser *p, struct listen_opts *o, int family)
{
	if (o->family)
		return perr(p, p->lx->cur.line, "address family given twice");
	o->family = family;
	return 0;
}

static int
listen_options(struct parser *p, struct listen_opts *o)
{
	static const char *const later[] = {
		"auth", "auth-optional", "ca", "ciphers", "filter",
		"hostnames", "mask-src", "no-dsn", "pki", "protocols",
		"proxy-v2", "received-auth", "senders", "smtps", "tls",
		"tls-require",
	};
	const struct token	*t;
	char			*opt;
	int			 rc = 0;

	while (rc == 0 && !is_eol(t = peek(p, 0))) {
		if (t->type != T_WORD || t->quoted)
			return unexpected(p, t, "a listen option or end of line");
		opt = xstrdup(take(p)->text);
		if (strcmp(opt, "port") == 0)
			rc = listen_port(p, o);
		else if (strcmp(opt, "tag") == 0)
			rc = listen_string(p, opt, "a tag", &o->tag,
			    CONF_MAX_TAG);
		else if (strcmp(opt, "hostname") == 0)
			rc = listen_string(p, opt, "a hostname",
			    &o->hostname, CONF_MAX_HOSTNAME);
		else if (strcmp(opt, "inet4") == 0)
			rc = listen_family(p, o, LISTEN_INET4);
		else if (strcmp(opt, "inet6") == 0)
			rc = listen_family(p, o, LISTEN_INET6);
		else if (IN_LIST(opt, later))
			rc = not_yet(p, "listen option", opt);
		else
			rc = perr(p, p->lx->cur.line, "unknown listen option "
			    "\"%s\"", opt);
		free(opt);
	}
	return rc;
}

static int
parse_listen(struct parser *p)
{
	struct listen_opts	 o;
	const struct token	*t;
	char			*where = NULL;
	int			 line = p->lx->cur.line, rc = -1;

	memset(&o, 0, sizeof(o));
	if (!is_kw(t = peek(p, 0), "on"))
		return unexpected(p, t, "\"on\"");
	take(p);
	if (is_kw(peek(p, 0), "socket"))
		return not_yet(p, "listen on", "socket");
	if (want_word(p, "an address, an interface or \"localhost\"",
	    &where) == -1)
		return -1;
	if (listen_options(p, &o) == 0) {
		if (o.family == 0)
			o.family = LISTEN_INET4 | LISTEN_INET6;
		if (listen_add(p, where, &o, line) == 0)
			rc = want_eol(p);
	}
	free(where);
	free(o.tag);
	free(o.hostname);
	return rc;
}

/* --------------------------------------------------------------- actions */

static struct action *
action_find(const struct config *conf, const char *name)
{
	struct action	*a;

	TAILQ_FOREACH(a, &conf->actions, entry)
		if (strcmp(a->name, name) == 0)
			return a;
	return NULL;
}

static const char *const action_later_options[] = {
	"alias", "ttl", "userbase", "virtual", "wrapper",
};

/* maildir [PATH] [junk] [user U]; an unquoted option word is no path. */
static int
parse_maildir(struct parser *p, struct action *a)
{
	const struct token	*t;
	char			*opt;
	int			 rc = 0;

	a->method = A_MAILDIR;
	t = peek(p, 0);
	if (t->type == T_WORD && (t->quoted || (strcmp(t->text, "junk") &&
	    strcmp(t->text, "user") && !IN_LIST(t->text,
	    action_later_options))))
		a->path = xstrdup(take(p)->text);
	while (rc == 0 && !is_eol(t = peek(p, 0))) {
		if (t->type != T_WORD || t->quoted)
			return unexpected(p, t, "an action option or end of "
			    "line");
		opt = xstrdup(take(p)->text);
		if (strcmp(opt, "junk") == 0) {
			if (a->junk)
				rc = option_twice(p, opt);
			a->junk = 1;
		} else if (strcmp(opt, "user") == 0) {
			if (a->user != NULL)
				rc = option_twice(p, opt);
			else
				rc = want_word(p, "a user name", &a->user);
		} else if (IN_LIST(opt, action_later_options))
			rc = not_yet(p, "action option", opt);
		else
			rc = perr(p, p->lx->cur.line, "unknown action option "
			    "\"%s\"", opt);
		free(opt);
	}
	return rc;
}

static int
parse_action(struct parser *p)
{
	static const char *const later[] = {
		"expand-only", "forward-only", "lmtp", "mbox", "mda", "relay",
	};
	struct action		*a, *old;
	const struct token	*t;
	char			*name;
	int			 line = p->lx->cur.line;

	if (want_word(p, "an action name", &name) == -1)
		return -1;
	if ((old = action_find(p->conf, name)) != NULL) {
		perr(p, line, "action \"%s\" is already defined at %s:%d",
		    name, old->file, old->line);
		free(name);
		return -1;
	}
	a = xcalloc(1, sizeof(*a));
	a->name = name;
	a->file = here_file(p);
	a->line = line;
	TAILQ_INSERT_TAIL(&p->conf->actions, a, entry);

	t = peek(p, 0);
	if (is_kw(t, "maildir")) {
		take(p);
		if (parse_maildir(p, a) == -1)
			return -1;
		return want_eol(p);
	}
	if (t->type == T_WORD && IN_LIST(t->text, later))
		return perr(p, t->line, "action method \"%s\" is not "
		    "available yet (only maildir is)", t->text);
	if (t->type == T_WORD)
		return perr(p, t->line, "unknown action method \"%s\"",
		    t->text);
	return unexpected(p, t, "a delivery method");
}

/* ----------------------------------------------------------------- rules */

static int
parse_src(struct parser *p, struct rule *r)
{
	const struct token	*t = peek(p, 0);
	char			*value;

	r->from = FROM_SRC;
	if (t->type == T_LT)
		return parse_table_ref(p, &r->from_table);
	if (is_kw(t, "regex")) {
		take(p);
		return not_yet(p, "match option", "from src regex");
	}
	if (want_word(p, "an address, a network or a <table>", &value) == -1)
		return -1;
	r->from_table = table_anon(p, value, p->lx->cur.line);
	return 0;
}

static int
parse_from(struct parser *p, struct rule *r, int neg)
{
	static const char *const later[] = { "auth", "mail-from", "rdns" };
	const struct token	*t = peek(p, 0);

	r->from_neg = neg;
	if (is_kw(t, "any"))
		r->from = FROM_ANY;
	else if (is_kw(t, "local"))
		r->from = FROM_LOCAL;
	else if (is_kw(t, "socket"))
		r->from = FROM_SOCKET;
	else if (is_kw(t, "src")) {
		take(p);
		return parse_src(p, r);
	} else if (t->type == T_WORD && !t->quoted &&
	    IN_LIST(t->text, later)) {
		take(p);
		return perr(p, p->lx->cur.line, "match option \"from %s\" is "
		    "not available yet", p->lx->cur.text);
	} else
		return unexpected(p, t,
		    "\"any\", \"local\", \"socket\" or \"src\"");
	take(p);
	return 0;
}

static int
parse_for(struct parser *p, struct rule *r, int neg)
{
	const struct token	*t = peek(p, 0);

	r->for_neg = neg;
	if (is_kw(t, "any"))
		r->for_ = FOR_ANY;
	else if (is_kw(t, "local"))
		r->for_ = FOR_LOCAL;
	else if (is_kw(t, "domain")) {
		take(p);
		r->for_ = FOR_DOMAIN;
		t = peek(p, 0);
		if (t->type == T_LT)
			return parse_table_ref(p, &r->for_table);
		if (is_kw(t, "regex")) {
			take(p);
			return not_yet(p, "match option", "for domain regex");
		}
		return want_word(p, "a domain or a <table>", &r->for_domain);
	} else if (is_kw(t, "rcpt-to")) {
		take(p);
		return not_yet(p, "match option", "for rcpt-to");
	} else
		return unexpected(p, t, "\"any\", \"local\" or \"domain\"");
	take(p);
	return 0;
}

/* The end of a rule: action NAME or reject. */
static int
parse_decision(struct parser *p, struct rule *r, int neg)
{
	char	*name;

	if (neg)
		return perr(p, p->lx->cur.line, "\"!\" cannot negate \"%s\"",
		    peek(p, 0)->text);
	if (is_kw(take(p), "reject")) {
		r->reject = 1;
		return want_eol(p);
	}
	if (want_word(p, "an action name", &name) == -1)
		return -1;
	ref_add(p, name, p->lx->cur.line, NULL, &r->action);
	free(name);
	return want_eol(p);
}

static int
parse_tag(struct parser *p, struct rule *r, int neg)
{
	r->tag_neg = neg;
	return want_word(p, "a tag", &r->tag);
}

/* The conditions a rule may hold, each at most once, each negatable. */
static const struct condition {
	const char	*name;
	int		(*parse)(struct parser *, struct rule *, int neg);
} conditions[] = {
	{ "from",	parse_from },
	{ "for",	parse_for },
	{ "tag",	parse_tag },
};

/* One [!]condition; *done once the decision has been read. */
static int
parse_condition(struct parser *p, struct rule *r, unsigned *seen, int *done)
{
	static const char *const later[] = {
		"auth", "helo", "mail-from", "rcpt-to", "tls",
	};
	const struct token	*t;
	const char		*kw;
	size_t			 i;
	int			 neg = 0;

	if (peek(p, 0)->type == T_BANG) {
		take(p);
		neg = 1;
	}
	t = peek(p, 0);
	if (is_kw(t, "action") || is_kw(t, "reject")) {
		*done = 1;
		return parse_decision(p, r, neg);
	}
	if (t->type != T_WORD || t->quoted)
		return unexpected(p, t, "a match option, \"action\" or "
		    "\"reject\"");
	kw = take(p)->text;
	for (i = 0; i < sizeof(conditions) / sizeof(conditions[0]); i++) {
		if (strcmp(kw, conditions[i].name) != 0)
			continue;
		if (*seen & (1U << i))
			return option_twice(p, kw);
		*seen |= 1U << i;
		return conditions[i].parse(p, r, neg);
	}
	if (IN_LIST(kw, later))
		return not_yet(p, "match option", kw);
	return perr(p, p->lx->cur.line, "unknown match option \"%s\"", kw);
}

/* An omitted "from" means "from local", an omitted "for" "for local". */
static int
parse_match(struct parser *p)
{
	struct rule	*r = xcalloc(1, sizeof(*r));
	unsigned	 seen = 0;
	int		 done = 0;

	r->from = FROM_LOCAL;
	r->for_ = FOR_LOCAL;
	r->file = here_file(p);
	r->line = p->lx->cur.line;
	TAILQ_INSERT_TAIL(&p->conf->rules, r, entry);
	while (!done) {
		if (is_eol(peek(p, 0)))
			return unexpected(p, peek(p, 0),
			    "\"action\" or \"reject\"");
		if (parse_condition(p, r, &seen, &done) == -1)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------ other directives */

static int
parse_limits(struct parser *p)
{
	const struct token	*t;
	size_t			*slot, n = 0;
	char			*s;

	while (is_kw(t = peek(p, 0), "max-mails") || is_kw(t, "max-rcpt")) {
		slot = is_kw(t, "max-mails") ? &p->conf->max_mails :
		    &p->conf->max_rcpt;
		take(p);
		if (want_word(p, "a count", &s) == -1)
			return -1;
		if (scan_count(s, slot) == -1) {
			perr(p, p->lx->cur.line, "invalid count \"%s\": "
			    "expected a positive integer", s);
			free(s);
			return -1;
		}
		free(s);
		n++;
	}
	if (n == 0)
		return unexpected(p, t, "\"max-mails\" or \"max-rcpt\"");
	return 0;
}

static int
parse_smtp(struct parser *p)
{
	const struct token	*t = peek(p, 0);
	char			*s;
	int			 rc;

	if (is_kw(t, "max-message-size")) {
		take(p);
		if (want_word(p, "a size", &s) == -1)
			return -1;
		rc = scan_size(s, &p->conf->max_message_size);
		if (rc == -1)
			perr(p, p->lx->cur.line, "invalid size \"%s\": expected "
			    "a positive number of bytes, optionally scaled "
			    "with K, M or G", s);
		free(s);
		if (rc == -1)
			return -1;
	} else if (is_kw(t, "limit")) {
		take(p);
		if (parse_limits(p) == -1)
			return -1;
	} else if (is_kw(t, "ciphers") || is_kw(t, "sub-addr-delim")) {
		take(p);
		return not_yet(p, "smtp option", p->lx->cur.text);
	} else if (t->type == T_WORD)
		return perr(p, t->line, "unknown smtp option \"%s\"", t->text);
	else
		return unexpected(p, t, "\"max-message-size\" or \"limit\"");
	return want_eol(p);
}

static int
parse_module_path(struct parser *p)
{
	char	*dir;

	if (want_word(p, "a directory", &dir) == -1)
		return -1;
	free(p->conf->module_path);
	p->conf->module_path = dir;
	return want_eol(p);
}

static int	parse_file(struct parser *, const char *, int);

/* Relative includes are taken from the including file's directory. */
static char *
include_path(const char *parent, const char *name)
{
	const char	*slash = strrchr(parent, '/');
	char		*path;

	if (name[0] == '/' || slash == NULL)
		return xstrdup(name);
	xasprintf(&path, "%.*s/%s", (int)(slash - parent), parent, name);
	return path;
}

static int
parse_include(struct parser *p)
{
	char	*name, *path;
	int	 line = p->lx->cur.line, rc;

	if (want_word(p, "a file name", &name) == -1)
		return -1;
	if (want_eol(p) == -1) {
		free(name);
		return -1;
	}
	path = include_path(p->lx->name, name);
	free(name);
	if (p->depth >= CONF_MAX_INCLUDE)
		rc = perr(p, line, "include \"%s\": nested too deeply (more "
		    "than %d levels)", path, CONF_MAX_INCLUDE);
	else {
		p->depth++;
		rc = parse_file(p, path, line);
		p->depth--;
	}
	free(path);
	return rc;
}

static void
macro_set(struct parser *p, const char *name, const char *value, int cmdline)
{
	size_t	 i;

	for (i = 0; i < p->nmacros; i++) {
		if (strcmp(p->macros[i].name, name) != 0)
			continue;
		if (p->macros[i].cmdline && !cmdline)
			return;
		free(p->macros[i].value);
		p->macros[i].value = xstrdup(value);
		p->macros[i].cmdline = cmdline;
		return;
	}
	p->macros = xreallocarray(p->macros, p->nmacros + 1,
	    sizeof(*p->macros));
	p->macros[p->nmacros].name = xstrdup(name);
	p->macros[p->nmacros].value = xstrdup(value);
	p->macros[p->nmacros].cmdline = cmdline;
	p->nmacros++;
}

/* name = value; a -D definition of the same name wins. */
static int
parse_macro(struct parser *p)
{
	char	*name, *value;
	int	 rc = -1;

	name = xstrdup(take(p)->text);
	take(p);			/* '=' */
	if (!macro_name_valid(name))
		perr(p, p->lx->cur.line, "invalid macro name \"%s\"", name);
	else if (IN_LIST(name, reserved))
		perr(p, p->lx->cur.line, "macro name \"%s\" is a reserved "
		    "word", name);
	else if (want_word(p, "a macro value", &value) == 0) {
		macro_set(p, name, value, 0);
		free(value);
		rc = want_eol(p);
	}
	free(name);
	return rc;
}

static const struct directive {
	const char	*name;
	int		(*parse)(struct parser *);
} directives[] = {
	{ "action",		parse_action },
	{ "include",		parse_include },
	{ "listen",		parse_listen },
	{ "match",		parse_match },
	{ "module-path",	parse_module_path },
	{ "smtp",		parse_smtp },
	{ "table",		parse_table },
};

static int
parse_statement(struct parser *p)
{
	static const char *const later[] = {
		"admd", "bounce", "ca", "filter", "mda", "mta", "pki", "proc",
		"queue", "srs",
	};
	const struct token	*t;
	size_t			 i;

	if (peek(p, 0)->type == T_NL) {
		take(p);
		return 0;
	}
	if (peek(p, 1)->type == T_EQ && peek(p, 0)->type == T_WORD)
		return parse_macro(p);
	t = peek(p, 0);
	if (t->type != T_WORD)
		return unexpected(p, t, "a directive");
	for (i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
		if (is_kw(t, directives[i].name)) {
			take(p);
			return directives[i].parse(p);
		}
	}
	if (!t->quoted && IN_LIST(t->text, later))
		return perr(p, t->line, "directive \"%s\" is not available "
		    "yet", t->text);
	return perr(p, t->line, "unknown directive \"%s\"", t->text);
}

/* ----------------------------------------------------------------- files */

static int
slurp(const char *path, char **bufp, size_t *lenp)
{
	struct stat	 st;
	char		*buf = NULL;
	size_t		 len = 0, cap = 0;
	ssize_t		 n;
	int		 fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		goto fail;
	if (S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		goto fail;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CONF_MAX_FILE) {
				errno = EFBIG;
				goto fail;
			}
			cap = cap ? cap * 2 : 4096;
			buf = xreallocarray(buf, cap, 1);
		}
		if ((n = read(fd, buf + len, cap - len)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (n == 0)
			break;
		len += n;
	}
	close(fd);
	*bufp = buf;
	*lenp = len;
	return 0;
fail:
	saved = errno;
	close(fd);
	free(buf);
	errno = saved;
	return -1;
}

/* inc_line: the line of the include directive, 0 for the main file. */
static int
parse_file(struct parser *p, const char *path, int inc_line)
{
	struct lexer	 lx;
	int		 rc = 0;

	memset(&lx, 0, sizeof(lx));
	if (slurp(path, &lx.owned, &lx.len) == -1) {
		if (p->lx != NULL)
			return perr(p, inc_line, "cannot read include file "
			    "\"%s\": %s", path, strerror(errno));
		log_warnx("%s: %s", path, strerror(errno));
		p->failed = 1;
		return -1;
	}
	lx.buf = lx.owned;
	lx.name = path;
	lx.line = 1;
	lx.cur.type = T_NL;
	lx.prev = p->lx;
	p->lx = &lx;
	while (peek(p, 0)->type != T_EOF)
		if ((rc = parse_statement(p)) == -1)
			break;
	p->lx = lx.prev;
	lexer_free(&lx);
	return rc;
}

/* ------------------------------------------------------------ resolution */

static int
resolve_refs(struct parser *p)
{
	struct ref	*r;
	size_t		 i;

	for (i = 0; i < p->nrefs; i++) {
		r = &p->refs[i];
		if (r->action != NULL &&
		    (*r->action = action_find(p->conf, r->name)) == NULL)
			return perr_at(p, r->file, r->line,
			    "unknown action \"%s\"", r->name);
		if (r->table != NULL &&
		    (*r->table = table_find(p->conf, r->name)) == NULL)
			return perr_at(p, r->file, r->line,
			    "unknown table \"%s\"", r->name);
	}
	return 0;
}

/* A typo in an address list would silently never match: refuse it. */
static int
check_src_tables(struct parser *p)
{
	const struct rule	*r;
	const struct table	*t;
	size_t			 i;

	TAILQ_FOREACH(r, &p->conf->rules, entry) {
		if (r->from != FROM_SRC)
			continue;
		t = r->from_table;
		for (i = 0; i < t->nentries; i++) {
			if (ruleset_netaddr_valid(t->entries[i].key))
				continue;
			if (t->name[0] == '<')
				return perr_at(p, r->file, r->line, "from src "
				    "\"%s\": not an IP address or CIDR network",
				    t->entries[i].key);
			return perr_at(p, t->file, t->line, "table \"%s\": "
			    "\"%s\" is not an IP address or CIDR network, as "
			    "\"from src\" at %s:%d requires", t->name,
			    t->entries[i].key, r->file, r->line);
		}
	}
	return 0;
}

/* ------------------------------------------------------------ public API */

/* gethostname(), lowercased; the daemon may replace it afterwards. */
static char *
local_hostname(void)
{
	char	 buf[HOST_NAME_MAX + 1];

	if (gethostname(buf, sizeof(buf)) == -1 || buf[0] == '\0')
		return xstrdup("localhost");
	buf[sizeof(buf) - 1] = '\0';
	lowercase(buf);
	return xstrdup(buf);
}

static struct config *
config_new(void)
{
	struct config	*conf = xcalloc(1, sizeof(*conf));

	conf->hostname = local_hostname();
	conf->max_message_size = DEFAULT_MAX_MSGSIZE;
	conf->max_rcpt = DEFAULT_MAX_RCPT;
	conf->max_mails = DEFAULT_MAX_MAILS;
	TAILQ_INIT(&conf->tables);
	TAILQ_INIT(&conf->listeners);
	TAILQ_INIT(&conf->actions);
	TAILQ_INIT(&conf->rules);
	return conf;
}

static void
parser_free(struct parser *p)
{
	size_t	 i;

	for (i = 0; i < p->nmacros; i++) {
		free(p->macros[i].name);
		free(p->macros[i].value);
	}
	free(p->macros);
	for (i = 0; i < p->nrefs; i++) {
		free(p->refs[i].name);
		free(p->refs[i].file);
	}
	free(p->refs);
}

struct config *
config_load(const char *path, const struct macro *macros, size_t nmacros)
{
	struct parser	 p;
	size_t		 i;
	int		 rc;

	memset(&p, 0, sizeof(p));
	p.conf = config_new();
	for (i = 0; i < nmacros; i++)
		macro_set(&p, macros[i].name, macros[i].value, 1);
	rc = parse_file(&p, path, 0);
	if (rc == 0)
		rc = resolve_refs(&p);
	if (rc == 0)
		rc = check_src_tables(&p);
	parser_free(&p);
	if (rc == -1) {
		config_free(p.conf);
		return NULL;
	}
	return p.conf;
}

static void
tables_free(struct tablelist *tl)
{
	struct table	*t;
	size_t		 i;

	while ((t = TAILQ_FIRST(tl)) != NULL) {
		TAILQ_REMOVE(tl, t, entry);
		for (i = 0; i < t->nentries; i++) {
			free(t->entries[i].key);
			free(t->entries[i].value);
		}
		free(t->entries);
		free(t->name);
		free(t->file);
		free(t);
	}
}

static void
listeners_free(struct listenerlist *ll)
{
	struct listener	*l;

	while ((l = TAILQ_FIRST(ll)) != NULL) {
		TAILQ_REMOVE(ll, l, entry);
		free(l->tag);
		free(l->hostname);
		free(l->file);
		free(l);
	}
}

static void
actions_free(struct actionlist *al)
{
	struct action	*a;

	while ((a = TAILQ_FIRST(al)) != NULL) {
		TAILQ_REMOVE(al, a, entry);
		free(a->name);
		free(a->path);
		free(a->user);
		free(a->file);
		free(a);
	}
}

static void
rules_free(struct rulelist *rl)
{
	struct rule	*r;

	while ((r = TAILQ_FIRST(rl)) != NULL) {
		TAILQ_REMOVE(rl, r, entry);
		free(r->for_domain);
		free(r->tag);
		free(r->file);
		free(r);
	}
}

void
config_free(struct config *conf)
{
	if (conf == NULL)
		return;
	rules_free(&conf->rules);
	actions_free(&conf->actions);
	listeners_free(&conf->listeners);
	tables_free(&conf->tables);
	free(conf->hostname);
	free(conf->module_path);
	free(conf);
}

struct table *
config_table(struct config *conf, const char *name)
{
	return table_find(conf, name);
}

struct action *
config_action(struct config *conf, const char *name)
{
	return action_find(conf, name);
}
