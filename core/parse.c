/*
 * parse.c - smtpd.conf(5) reader: a hand-written lexer feeding a
 * recursive-descent parser with one function per directive.  This file
 * holds the lexer, macros, includes, tables, listeners and the global
 * directives; parse_rule.c reads action, match and filter, and
 * parse_legacy.c translates the pre-6.4 grammar into the same model.
 *
 * The first error stops the load: it is reported as exactly one line,
 * "file:line: message", and config_load() returns NULL, so a half-parsed
 * configuration never reaches the daemon.  Names may be used before they
 * are declared; they are resolved once the whole file is read.
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
#include <strings.h>
#include <unistd.h>

#include "parse.h"

#define CONF_MAX_FILE		(16 * 1024 * 1024)
#define CONF_MAX_TOKEN		8192	/* one word or quoted string */
#define CONF_MAX_INCLUDE	16	/* include nesting */
#define CONF_MAX_EXPAND		8	/* macro nesting */
#define CONF_DEFAULT_PORT	25
#define CONF_SMTPS_PORT		465
#define CONF_MAX_TAG		63	/* fits envelope.tag */
#define CONF_MAX_HOSTNAME	255	/* fits envelope.hostname */

/*
 * The file's words may be secrets (`queue encryption` key): wiped before
 * they are freed, so no role inherits them in free memory.
 */
static void
text_free(char *text)
{
	if (text != NULL) {
		explicit_bzero(text, strlen(text));
		free(text);
	}
}

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

/*
 * OpenSMTPD's keywords: unquoted, they are never names or values there,
 * so they are not here either ("action local mbox" must be quoted).
 */
static const char *const reserved[] = {
	"action", "admd", "alias", "any", "auth", "auth-optional", "backup",
	"bounce", "bypass", "ca", "cert", "chain", "chroot", "ciphers",
	"commit", "compression", "connect", "data", "dhe", "disconnect",
	"domain", "ehlo", "encryption", "expand-only", "fcrdns", "filter",
	"for", "forward-only", "from", "group", "helo", "helo-src", "host",
	"hostname", "hostnames", "include", "inet4", "inet6", "junk", "key",
	"limit", "listen", "lmtp", "local", "mail-from", "maildir",
	"mask-src", "masquerade", "match", "max-deferred",
	"max-message-size", "mbox", "mda", "mta", "mx", "no-dsn",
	"no-verify", "on", "phase", "pki", "port", "proc", "proc-exec",
	"protocols", "proxy-v2", "queue", "rcpt-to", "rdns",
	"received-auth", "regex", "reject", "relay", "rewrite", "senders",
	"smtp", "smtps", "socket", "src", "srs", "sub-addr-delim", "tag",
	"tls", "tls-require", "ttl", "user", "userbase", "verify", "virtual",
	"warn-interval", "wrapper",
};

static int	parse_statement(struct parser *);

/* ---------------------------------------------------------------- errors */

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

int
cf_err_at(struct parser *p, const char *file, int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vperr_at(p, file, line, fmt, ap);
	va_end(ap);
	return -1;
}

int
cf_err(struct parser *p, int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vperr_at(p, p->lx->name, line, fmt, ap);
	va_end(ap);
	return -1;
}

void
cf_warn(struct parser *p, int line, const char *fmt, ...)
{
	va_list	 ap;
	char	 msg[1024];

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	log_warnx("%s:%d: warning: %s", p->lx->name, line, msg);
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
int
cf_unexpected(struct parser *p, const struct token *got, const char *what)
{
	const struct token	*prev = &p->lx->cur;
	char			 gbuf[96], pbuf[96];

	if (prev->type != T_WORD && prev->type < T_LBRACE)
		return cf_err(p, got->line, "syntax error: expected %s, got %s",
		    what, tok_desc(got, gbuf, sizeof(gbuf)));
	return cf_err(p, got->line, "syntax error: expected %s after %s, got "
	    "%s", what, tok_desc(prev, pbuf, sizeof(pbuf)),
	    tok_desc(got, gbuf, sizeof(gbuf)));
}

int
cf_twice(struct parser *p, const char *opt)
{
	return cf_err(p, p->lx->cur.line, "option \"%s\" given twice", opt);
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
		cf_err(p, t->line, "unexpected '\"' inside a word");
		return;
	}
	if (n >= CONF_MAX_TOKEN) {
		cf_err(p, t->line, "word too long (more than %d bytes)",
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
			cf_err(p, t->line, "unterminated quoted string");
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
			cf_err(p, t->line, "unexpected character 0x%02x in "
			    "quoted string", c);
			return;
		}
		if (n + 1 >= sizeof(buf)) {
			cf_err(p, t->line, "quoted string too long (more than "
			    "%zu bytes)", sizeof(buf) - 1);
			return;
		}
		buf[n++] = c;
	}
	buf[n] = '\0';
	t->text = xstrdup(buf);
	explicit_bzero(buf, n);
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
		cf_err(p, t->line, "unexpected character 0x%02x", c);
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
		cf_err(p, line, "invalid macro reference \"%s\"", ref);
		return;
	}
	if ((value = macro_get(p, ref + 1)) == NULL) {
		cf_err(p, line, "undefined macro \"%s\"", ref + 1);
		return;
	}
	if (depth >= CONF_MAX_EXPAND) {
		cf_err(p, line, "macro \"%s\" nests too deeply (does it refer "
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
			text_free(t.text);
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
		text_free(t.text);
		return;
	}
	q_push(lx, &t);
}

/* The token n places ahead; valid until the next peek() or take(). */
const struct token *
cf_peek(struct parser *p, size_t n)
{
	struct lexer	*lx = p->lx;

	while (lx->qlen - lx->qhead <= n)
		lex_fill(p);
	return &lx->q[lx->qhead + n];
}

const struct token *
cf_take(struct parser *p)
{
	struct lexer	*lx = p->lx;

	cf_peek(p, 0);
	text_free(lx->cur.text);
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
		text_free(lx->q[i].text);
	free(lx->q);
	text_free(lx->cur.text);
	if (lx->owned != NULL)
		explicit_bzero(lx->owned, lx->len);
	free(lx->owned);
}


/* --------------------------------------------------------- parse helpers */

int
cf_is_kw(const struct token *t, const char *kw)
{
	return t->type == T_WORD && !t->quoted && strcmp(t->text, kw) == 0;
}

int
cf_is_eol(const struct token *t)
{
	return t->type == T_NL || t->type == T_EOF;
}

int
cf_in_list(const char *s, const char *const *list, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

int
cf_is_reserved(const char *s)
{
	return CF_IN_LIST(s, reserved);
}

int
cf_line(const struct parser *p)
{
	return p->lx->cur.line;
}

const char *
cf_last(const struct parser *p)
{
	return p->lx->cur.text ? p->lx->cur.text : "";
}

/*
 * A value where a word is required.  Unquoted keywords are refused as
 * OpenSMTPD refuses them, with the fix in the message.
 */
int
cf_word(struct parser *p, const char *what, char **out)
{
	const struct token	*t = cf_peek(p, 0);

	if (t->type != T_WORD)
		return cf_unexpected(p, t, what);
	if (!t->quoted && cf_is_reserved(t->text))
		return cf_err(p, t->line, "syntax error: expected %s, got the "
		    "reserved word %s (write \"%s\" to use it as a value)",
		    what, t->text, t->text);
	*out = xstrdup(cf_take(p)->text);
	return 0;
}

/* A name: a word, not empty, without the characters of <table> syntax. */
int
cf_name(struct parser *p, const char *what, char **out)
{
	if (cf_word(p, what, out) == -1)
		return -1;
	if (**out == '\0' || strpbrk(*out, "<>\n") != NULL) {
		cf_err(p, cf_line(p), "invalid %s \"%s\"", what, *out);
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

int
cf_eol(struct parser *p)
{
	const struct token	*t = cf_peek(p, 0);

	if (t->type == T_EOF)
		return 0;
	if (t->type != T_NL)
		return cf_unexpected(p, t, "end of line");
	cf_take(p);
	return 0;
}

int
cf_abspath(struct parser *p, const char *what, char **out)
{
	if (cf_word(p, what, out) == -1)
		return -1;
	if ((*out)[0] != '/') {
		cf_err(p, cf_line(p), "%s \"%s\" must be an absolute path "
		    "(starting with /)", what, *out);
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

/* A decimal count in [min, max]. */
int
cf_count(struct parser *p, const char *what, size_t min, size_t max,
    size_t *out)
{
	unsigned long long	 v;
	char			*s, *end;
	int			 rc = 0;

	if (cf_word(p, what, &s) == -1)
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (!isdigit((unsigned char)*s) || errno != 0 || *end != '\0' ||
	    v < min || v > max)
		rc = cf_err(p, cf_line(p), "invalid %s \"%s\": expected a "
		    "number from %zu to %zu", what, s, min, max);
	else
		*out = v;
	free(s);
	return rc;
}

/* n{s|m|h|d}, positive: the unit is required, as OpenSMTPD's. */
int
cf_duration(struct parser *p, const char *what, uint32_t *out)
{
	unsigned long long	 v, mult;
	char			*s, *end;
	int			 rc = 0;

	if (cf_word(p, what, &s) == -1)
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	switch (*end) {
	case 's': mult = 1; break;
	case 'm': mult = 60; break;
	case 'h': mult = 3600; break;
	case 'd': mult = 86400; break;
	default: mult = 0; break;
	}
	if (!isdigit((unsigned char)*s) || errno != 0 || mult == 0 ||
	    end[1] != '\0' || v == 0 || v > UINT32_MAX / mult)
		rc = cf_err(p, cf_line(p), "invalid %s \"%s\": expected a "
		    "positive number followed by s, m, h or d (e.g. 4d)",
		    what, s);
	else
		*out = v * mult;
	free(s);
	return rc;
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

int
cf_size(struct parser *p, size_t *out)
{
	char	*s;
	int	 rc = 0;

	if (cf_word(p, "a size", &s) == -1)
		return -1;
	if (scan_size(s, out) == -1)
		rc = cf_err(p, cf_line(p), "invalid size \"%s\": expected a "
		    "positive number of bytes, optionally scaled with K, M or "
		    "G", s);
	free(s);
	return rc;
}

/* An option taking one word, at most once. */
int
cf_string_opt(struct parser *p, const char *opt, const char *what,
    char **slot)
{
	if (*slot != NULL)
		return cf_twice(p, opt);
	return cf_word(p, what, slot);
}

char *
cf_here(const struct parser *p)
{
	return xstrdup(p->lx->name);
}

void
cf_ref(struct parser *p, enum ref_kind kind, const char *name, int line,
    void *slot)
{
	struct ref	*r;

	p->refs = xreallocarray(p->refs, p->nrefs + 1, sizeof(*p->refs));
	r = &p->refs[p->nrefs++];
	r->kind = kind;
	r->name = xstrdup(name);
	r->file = cf_here(p);
	r->line = line;
	r->slot = slot;
}

void
cf_legacy(struct parser *p, int line)
{
	size_t	 i;

	p->conf->legacy = 1;
	for (i = 0; i < p->nlegacy_files; i++)
		if (strcmp(p->legacy_files[i], p->lx->name) == 0)
			return;
	p->legacy_files = xreallocarray(p->legacy_files,
	    p->nlegacy_files + 1, sizeof(*p->legacy_files));
	p->legacy_files[p->nlegacy_files++] = xstrdup(p->lx->name);
	cf_warn(p, line, "this file uses the smtpd.conf grammar of OpenSMTPD "
	    "before 6.4; it is translated (see it with smtpd -n -v)");
}

/* ---------------------------------------------------------------- tables */

static struct table *
table_new(struct parser *p, char *name, int line)
{
	struct table	*t = xcalloc(1, sizeof(*t));

	t->name = name;
	t->type = xstrdup("static");
	t->kind = TABLE_LIST;
	t->file = cf_here(p);
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

	if (cf_word(p, "a table value", &key) == -1)
		return -1;
	line = cf_line(p);
	if (cf_peek(p, 0)->type == T_EQ) {
		cf_take(p);
		if (cf_word(p, "a value", &value) == -1) {
			free(key);
			return -1;
		}
	}
	if (t->nentries == 0)
		t->kind = value ? TABLE_MAP : TABLE_LIST;
	if ((t->kind == TABLE_MAP) != (value != NULL)) {
		free(key);
		free(value);
		return cf_err(p, line, "table \"%s\" mixes plain values and "
		    "key = value pairs", t->name);
	}
	if (table_has_key(t, key)) {
		cf_err(p, line, "table \"%s\": \"%s\" given twice", t->name,
		    key);
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

	cf_take(p);			/* '{' */
	for (;;) {
		tok = cf_peek(p, 0);
		if (tok->type == T_RBRACE)
			break;
		if (tok->type == T_NL || tok->type == T_COMMA)
			cf_take(p);
		else if (tok->type == T_WORD) {
			if (table_entry(p, t) == -1)
				return -1;
		} else
			return cf_unexpected(p, tok, "a table value or \"}\"");
	}
	cf_take(p);
	if (t->nentries == 0)
		return cf_err(p, cf_line(p), "table \"%s\" is empty", t->name);
	return 0;
}

/* [type:]config; a bare path is a file table, as OpenSMTPD reads it. */
static int
table_source(struct parser *p, struct table *t, char *src)
{
	char	*colon = strchr(src, ':');

	free(t->type);
	if (colon == NULL || src[0] == '/') {
		t->type = xstrdup("file");
		t->config = xstrdup(src);
	} else {
		t->type = xstrndup(src, colon - src);
		t->config = xstrdup(colon + 1);
	}
	if (t->type[0] == '\0')
		return cf_err(p, cf_line(p), "table \"%s\": missing backend "
		    "type before \":\" in \"%s\"", t->name, src);
	if ((strcmp(t->type, "file") == 0 || strcmp(t->type, "db") == 0) &&
	    t->config[0] != '/')
		return cf_err(p, cf_line(p), "table \"%s\": \"%s\" must be an "
		    "absolute path (starting with /)", t->name, t->config);
	return 0;
}

static int
parse_table(struct parser *p)
{
	const struct token	*tok;
	struct table		*t, *old;
	char			*name, *src;
	int			 line = cf_line(p), rc;

	if (cf_name(p, "a table name", &name) == -1)
		return -1;
	if ((old = config_table_find(p->conf, name)) != NULL && old->anon) {
		/* An inline { } got this name first: it can take another. */
		free(old->name);
		xasprintf(&old->name, "anon-%u", ++p->nanon);
		old = NULL;
	}
	if (old != NULL) {
		cf_err(p, line, "table \"%s\" is already defined at %s:%d",
		    name, old->file, old->line);
		free(name);
		return -1;
	}
	t = table_new(p, name, line);
	tok = cf_peek(p, 0);
	if (tok->type == T_LBRACE) {
		if (table_body(p, t) == -1)
			return -1;
		return cf_eol(p);
	}
	if (cf_word(p, "\"{\" or a [type:]path", &src) == -1)
		return -1;
	rc = table_source(p, t, src);
	free(src);
	return rc == -1 ? -1 : cf_eol(p);
}

/* <name>, resolved at the end of the file. */
int
cf_table_ref(struct parser *p, struct table **slot)
{
	const struct token	*t = cf_peek(p, 0);
	char			*name;
	int			 line = t->line;

	if (t->type != T_LT)
		return cf_unexpected(p, t, "\"<\"");
	cf_take(p);
	if (cf_name(p, "a table name", &name) == -1)
		return -1;
	if ((t = cf_peek(p, 0))->type != T_GT) {
		free(name);
		return cf_unexpected(p, t, "\">\"");
	}
	cf_take(p);
	cf_ref(p, REF_TABLE, name, line, slot);
	free(name);
	return 0;
}

/* A literal where a table may stand: a one-entry list nobody can name. */
struct table *
cf_table_literal(struct parser *p, const char *value, int line)
{
	struct table	*t;
	char		*name;

	xasprintf(&name, "<anon:%u>", ++p->nanon);
	t = table_new(p, name, line);
	t->anon = 1;
	table_push(t, xstrdup(value), NULL);
	return t;
}

/* { a, b } in a rule or option: a table with a name nobody declared. */
static int
table_inline(struct parser *p, struct table **slot)
{
	struct table	*t;
	char		*name = NULL;

	do {
		free(name);
		xasprintf(&name, "anon-%u", ++p->nanon);
	} while (config_table_find(p->conf, name) != NULL);
	t = table_new(p, name, cf_line(p));
	t->anon = 1;
	*slot = t;
	return table_body(p, t);
}

int
cf_table_arg(struct parser *p, const char *what, struct table **slot)
{
	char	*value;

	if (*slot != NULL)
		return cf_twice(p, cf_last(p));
	if (cf_peek(p, 0)->type == T_LT)
		return cf_table_ref(p, slot);
	if (cf_peek(p, 0)->type == T_LBRACE)
		return table_inline(p, slot);
	if (cf_word(p, what, &value) == -1)
		return -1;
	*slot = cf_table_literal(p, value, cf_line(p));
	free(value);
	return 0;
}

/* ------------------------------------------------------ global directives */

/* pki NAME cert F | key F | dhe none|legacy|auto (| certificate F, old) */
static struct pki *
pki_get(struct parser *p, char *name, int line)
{
	struct pki	*pk;

	if ((pk = config_pki_find(p->conf, name)) != NULL) {
		free(name);
		return pk;
	}
	pk = xcalloc(1, sizeof(*pk));
	pk->name = name;
	pk->file = cf_here(p);
	pk->line = line;
	TAILQ_INSERT_TAIL(&p->conf->pkis, pk, entry);
	return pk;
}

static int
pki_dhe(struct parser *p, struct pki *pk)
{
	char	*v;
	int	 rc = 0;

	if (cf_word(p, "none, legacy or auto", &v) == -1)
		return -1;
	if (strcmp(v, "none") == 0)
		pk->dhe = DHE_NONE;
	else if (strcmp(v, "legacy") == 0)
		pk->dhe = DHE_LEGACY;
	else if (strcmp(v, "auto") == 0)
		pk->dhe = DHE_AUTO;
	else
		rc = cf_err(p, cf_line(p), "invalid dhe \"%s\": expected none, "
		    "legacy or auto", v);
	free(v);
	return rc;
}

static int
parse_pki(struct parser *p)
{
	const struct token	*t;
	struct pki		*pk;
	char			*name, **slot;
	int			 line = cf_line(p);

	if (cf_name(p, "a pki name", &name) == -1)
		return -1;
	pk = pki_get(p, name, line);
	t = cf_peek(p, 0);
	if (cf_is_kw(t, "cert") || cf_is_kw(t, "key") ||
	    cf_is_kw(t, "certificate")) {
		if (cf_is_kw(t, "certificate"))
			cf_legacy(p, t->line);
		slot = cf_is_kw(t, "key") ? &pk->key : &pk->cert;
		cf_take(p);
		if (*slot != NULL)
			return cf_err(p, cf_line(p), "pki \"%s\": %s given "
			    "twice", pk->name, cf_last(p));
		if (cf_abspath(p, "the file", slot) == -1)
			return -1;
	} else if (cf_is_kw(t, "dhe")) {
		cf_take(p);
		if (pki_dhe(p, pk) == -1)
			return -1;
	} else if (cf_is_kw(t, "dhparams")) {
		/* Old: a parameter file; today the size is chosen. */
		cf_legacy(p, t->line);
		cf_take(p);
		if (cf_abspath(p, "the file", &name) == -1)
			return -1;
		free(name);
		pk->dhe = DHE_AUTO;
	} else
		return cf_unexpected(p, t, "\"cert\", \"key\" or \"dhe\"");
	return cf_eol(p);
}

static int
parse_ca(struct parser *p)
{
	const struct token	*t;
	struct ca		*ca;
	char			*name;
	int			 line = cf_line(p);

	if (cf_name(p, "a ca name", &name) == -1)
		return -1;
	if ((ca = config_ca_find(p->conf, name)) != NULL) {
		cf_err(p, line, "ca \"%s\" is already defined at %s:%d", name,
		    ca->file, ca->line);
		free(name);
		return -1;
	}
	ca = xcalloc(1, sizeof(*ca));
	ca->name = name;
	ca->file = cf_here(p);
	ca->line = line;
	TAILQ_INSERT_TAIL(&p->conf->cas, ca, entry);
	t = cf_peek(p, 0);
	if (cf_is_kw(t, "certificate"))
		cf_legacy(p, t->line);
	else if (!cf_is_kw(t, "cert"))
		return cf_unexpected(p, t, "\"cert\"");
	cf_take(p);
	if (cf_abspath(p, "the CA file", &ca->cert) == -1)
		return -1;
	return cf_eol(p);
}

/*
 * The smtpd-filters protocol version a filter process is told: "0.6" is
 * what OpenSMTPD 6.8 speaks (Debian's filters expect it), "0.7" what 7.4
 * and later speak.
 */
int
cf_filter_protocol(struct parser *p, char **out)
{
	char	*v;

	if (*out != NULL)
		return cf_twice(p, "protocol");
	if (cf_word(p, "a filter protocol version", &v) == -1)
		return -1;
	if (strcmp(v, "0.6") != 0 && strcmp(v, "0.7") != 0) {
		cf_err(p, cf_line(p), "filter protocol \"%s\": expected "
		    "\"0.6\" or \"0.7\"", v);
		free(v);
		return -1;
	}
	*out = v;
	return 0;
}

/*
 * user U, group G, chroot D after a proc or proc-exec command, and our
 * own protocol V and timeout D.
 */
int
cf_proc_params(struct parser *p, const struct proc_params *pp)
{
	const struct token	*t;
	int			 rc = 0;

	while (rc == 0 && !cf_is_eol(t = cf_peek(p, 0))) {
		if (cf_is_kw(t, "user")) {
			cf_take(p);
			rc = cf_string_opt(p, "user", "a user name", pp->user);
		} else if (cf_is_kw(t, "group")) {
			cf_take(p);
			rc = cf_string_opt(p, "group", "a group name",
			    pp->group);
		} else if (cf_is_kw(t, "chroot")) {
			cf_take(p);
			rc = cf_string_opt(p, "chroot", "a directory",
			    pp->chroot);
		} else if (cf_is_kw(t, "protocol")) {
			cf_take(p);
			rc = cf_filter_protocol(p, pp->protocol);
		} else if (cf_is_kw(t, "timeout")) {
			cf_take(p);
			rc = cf_duration(p, "filter timeout", pp->timeout);
		} else
			return cf_unexpected(p, t, "\"user\", \"group\", "
			    "\"chroot\", \"protocol\", \"timeout\" or end of line");
	}
	return rc;
}

static int
parse_proc(struct parser *p)
{
	struct proc	*pr;
	struct proc_params pp;
	char		*name;
	int		 line = cf_line(p);

	if (cf_name(p, "a proc name", &name) == -1)
		return -1;
	if ((pr = config_proc_find(p->conf, name)) != NULL) {
		cf_err(p, line, "proc \"%s\" is already defined at %s:%d",
		    name, pr->file, pr->line);
		free(name);
		return -1;
	}
	pr = xcalloc(1, sizeof(*pr));
	pr->name = name;
	pr->file = cf_here(p);
	pr->line = line;
	TAILQ_INSERT_TAIL(&p->conf->procs, pr, entry);
	if (cf_word(p, "a command", &pr->command) == -1)
		return -1;
	pp.user = &pr->user;
	pp.group = &pr->group;
	pp.chroot = &pr->chroot;
	pp.protocol = &pr->protocol;
	pp.timeout = &pr->timeout;
	if (cf_proc_params(p, &pp) == -1)
		return -1;
	return cf_eol(p);
}

/* mda wrapper NAME "command" */
static int
parse_mda(struct parser *p)
{
	const struct token	*t = cf_peek(p, 0);
	struct wrapper		*w;
	char			*name;
	int			 line;

	if (!cf_is_kw(t, "wrapper"))
		return cf_unexpected(p, t, "\"wrapper\"");
	cf_take(p);
	line = cf_line(p);
	if (cf_name(p, "a wrapper name", &name) == -1)
		return -1;
	if ((w = config_wrapper_find(p->conf, name)) != NULL) {
		cf_err(p, line, "mda wrapper \"%s\" is already defined at "
		    "%s:%d", name, w->file, w->line);
		free(name);
		return -1;
	}
	w = xcalloc(1, sizeof(*w));
	w->name = name;
	w->file = cf_here(p);
	w->line = line;
	TAILQ_INSERT_TAIL(&p->conf->wrappers, w, entry);
	if (cf_word(p, "a command", &w->command) == -1)
		return -1;
	return cf_eol(p);
}

/*
 * queue encryption [[key] KEY]: the key is OpenSMTPD's, 32 characters
 * used as they are; "stdin" or "-" read it at start, none asks for it.
 * Never echo a key in a message.
 */
static int
parse_queue_key(struct parser *p, int line)
{
	const struct token	*t;
	char			*key = NULL;

	p->conf->queue_encryption = 1;
	free(p->conf->queue_key_file);
	p->conf->queue_key_file = cf_here(p);
	p->conf->queue_key_line = line;
	if (p->conf->queue_key != NULL)
		explicit_bzero(p->conf->queue_key, strlen(p->conf->queue_key));
	free(p->conf->queue_key);
	p->conf->queue_key = NULL;
	if (cf_is_kw(cf_peek(p, 0), "key")) {
		cf_legacy(p, cf_peek(p, 0)->line);
		cf_take(p);
	}
	if (cf_is_eol((t = cf_peek(p, 0))))
		return 0;
	if (cf_word(p, "a key, \"stdin\" or \"-\"", &key) == -1)
		return -1;
	if (strcasecmp(key, "stdin") == 0 || strcmp(key, "-") == 0) {
		free(key);
		key = xstrdup("stdin");
	} else if (strcmp(key, QUEUE_KEY_HIDDEN) != 0 &&
	    strlen(key) != QCRYPT_KEY_LEN) {
		cf_err(p, t->line, "queue encryption key: expected %d "
		    "characters (as `openssl rand -hex 16` prints), got %zu",
		    QCRYPT_KEY_LEN, strlen(key));
		explicit_bzero(key, strlen(key));
		free(key);
		return -1;
	}
	p->conf->queue_key = key;
	return 0;
}

/* queue compression | encryption [[key] KEY] | ttl D */
static int
parse_queue(struct parser *p)
{
	const struct token	*t = cf_peek(p, 0);

	if (cf_is_kw(t, "compression")) {
		cf_take(p);
		p->conf->queue_compression = 1;
	} else if (cf_is_kw(t, "encryption")) {
		cf_take(p);
		if (parse_queue_key(p, t->line) == -1)
			return -1;
	} else if (cf_is_kw(t, "ttl")) {
		cf_take(p);
		if (cf_duration(p, "queue ttl", &p->conf->queue_ttl) == -1)
			return -1;
	} else
		return cf_unexpected(p, t, "\"compression\", \"encryption\" or "
		    "\"ttl\"");
	return cf_eol(p);
}

static int
smtp_limits(struct parser *p)
{
	static const char *const names[] = {
		"max-mails", "max-rcpt", "max-auth-failures",
	};
	size_t *const		 slots[] = {
		&p->conf->max_mails, &p->conf->max_rcpt,
		&p->conf->max_auth_failures,
	};
	const struct token	*t;
	size_t			 i, n = 0;

	for (;;) {
		t = cf_peek(p, 0);
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (cf_is_kw(t, names[i]))
				break;
		if (i == sizeof(names) / sizeof(names[0]))
			break;
		cf_take(p);
		if (cf_count(p, names[i], 1, UINT32_MAX, slots[i]) == -1)
			return -1;
		n++;
	}
	if (n == 0)
		return cf_unexpected(p, t, "\"max-mails\", \"max-rcpt\" or"
		    " \"max-auth-failures\"");
	return 0;
}

static int
smtp_delim(struct parser *p)
{
	char	*v;
	int	 rc = 0;

	if (cf_word(p, "a character", &v) == -1)
		return -1;
	if (strlen(v) != 1 || !isprint((unsigned char)v[0]) || v[0] == '@')
		rc = cf_err(p, cf_line(p), "invalid sub-addr-delim \"%s\": "
		    "expected one printable character other than @", v);
	else
		p->conf->subaddr_delim = v[0];
	free(v);
	return rc;
}

static int
parse_smtp(struct parser *p)
{
	const struct token	*t = cf_peek(p, 0);
	int			 rc;

	if (cf_is_kw(t, "max-message-size")) {
		cf_take(p);
		rc = cf_size(p, &p->conf->max_message_size);
	} else if (cf_is_kw(t, "limit")) {
		cf_take(p);
		rc = smtp_limits(p);
	} else if (cf_is_kw(t, "ciphers")) {
		cf_take(p);
		rc = cf_string_opt(p, "ciphers", "a cipher list",
		    &p->conf->smtp_ciphers);
	} else if (cf_is_kw(t, "sub-addr-delim")) {
		cf_take(p);
		rc = smtp_delim(p);
	} else if (cf_is_kw(t, "filter-protocol")) {
		cf_take(p);
		rc = cf_filter_protocol(p, &p->conf->filter_protocol);
	} else if (cf_is_kw(t, "filter-timeout")) {
		cf_take(p);
		rc = cf_duration(p, "filter-timeout",
		    &p->conf->filter_timeout);
	} else if (cf_is_kw(t, "pam-service")) {
		cf_take(p);
		rc = cf_string_opt(p, "pam-service", "a PAM service name",
		    &p->conf->pam_service);
	} else
		return cf_unexpected(p, t, "\"max-message-size\", \"limit\", "
		    "\"ciphers\", \"sub-addr-delim\", \"filter-protocol\", "
		    "\"filter-timeout\" or \"pam-service\"");
	return rc == -1 ? -1 : cf_eol(p);
}

/* srs key S | srs key backup S | srs ttl D */
static int
parse_srs(struct parser *p)
{
	const struct token	*t = cf_peek(p, 0);
	char			**slot;

	if (cf_is_kw(t, "key")) {
		cf_take(p);
		slot = &p->conf->srs_key;
		if (cf_is_kw(cf_peek(p, 0), "backup")) {
			cf_take(p);
			slot = &p->conf->srs_key_backup;
		}
		if (cf_string_opt(p, "srs key", "a secret", slot) == -1)
			return -1;
	} else if (cf_is_kw(t, "ttl")) {
		cf_take(p);
		if (cf_duration(p, "srs ttl", &p->conf->srs_ttl) == -1)
			return -1;
		/* The SRS timestamp counts whole days, as OpenSMTPD's. */
		if (p->conf->srs_ttl < 86400)
			return cf_err(p, cf_line(p), "srs ttl is too short: "
			    "expected at least 1d (the SRS timestamp counts "
			    "days)");
	} else
		return cf_unexpected(p, t, "\"key\" or \"ttl\"");
	return cf_eol(p);
}

/* bounce warn-interval D [, D ...] (at most 4) */
int
cf_warn_intervals(struct parser *p)
{
	struct config	*c = p->conf;

	c->nwarn_interval = 0;
	for (;;) {
		if (c->nwarn_interval == MAX_WARN_INTERVALS)
			return cf_err(p, cf_line(p), "at most %d warn-interval "
			    "delays", MAX_WARN_INTERVALS);
		if (cf_duration(p, "delay",
		    &c->warn_interval[c->nwarn_interval]) == -1)
			return -1;
		c->nwarn_interval++;
		if (cf_peek(p, 0)->type != T_COMMA)
			return 0;
		cf_take(p);
	}
}

static int
parse_bounce(struct parser *p)
{
	const struct token	*t = cf_peek(p, 0);

	if (!cf_is_kw(t, "warn-interval"))
		return cf_unexpected(p, t, "\"warn-interval\"");
	cf_take(p);
	if (cf_warn_intervals(p) == -1)
		return -1;
	return cf_eol(p);
}

static int
parse_mta(struct parser *p)
{
	const struct token	*t = cf_peek(p, 0);

	if (!cf_is_kw(t, "max-deferred"))
		return cf_unexpected(p, t, "\"max-deferred\"");
	cf_take(p);
	if (cf_count(p, "max-deferred", 1, UINT32_MAX,
	    &p->conf->max_deferred) == -1)
		return -1;
	return cf_eol(p);
}

static int
parse_admd(struct parser *p)
{
	free(p->conf->admd);
	p->conf->admd = NULL;
	if (cf_word(p, "an authserv-id", &p->conf->admd) == -1)
		return -1;
	return cf_eol(p);
}

static int
parse_module_path(struct parser *p)
{
	free(p->conf->module_path);
	p->conf->module_path = NULL;
	if (cf_abspath(p, "module-path", &p->conf->module_path) == -1)
		return -1;
	return cf_eol(p);
}

/* Old grammar: max-message-size at top level. */
static int
parse_legacy_max_size(struct parser *p)
{
	cf_legacy(p, cf_line(p));
	if (cf_size(p, &p->conf->max_message_size) == -1)
		return -1;
	return cf_eol(p);
}

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

static int
family_ok(int af, int family)
{
	return (af == AF_INET && (family & LISTEN_INET4)) ||
	    (af == AF_INET6 && (family & LISTEN_INET6));
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

/*
 * A domain name, as OpenSMTPD allows: resolved once, at load.  Only names
 * with a dot are tried, so a mistyped interface never becomes a DNS query.
 */
static int
host_addrs(const char *name, int family, struct addrvec *v)
{
	struct addrinfo	 hints, *res, *ai;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = family == LISTEN_INET4 ? AF_INET :
	    family == LISTEN_INET6 ? AF_INET6 : AF_UNSPEC;
	if (getaddrinfo(name, NULL, &hints, &res) != 0)
		return 0;
	for (ai = res; ai != NULL; ai = ai->ai_next)
		if (family_ok(ai->ai_family, family))
			addr_push(v, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(res);
	return 1;
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
		return cf_err(p, line, "listen on \"%s\": getifaddrs: %s",
		    where, strerror(errno));
	else if (!found && strchr(where, '.') != NULL)
		found = host_addrs(where, family, v);
	if (!found)
		return cf_err(p, line, "listen on \"%s\": not an IP address, "
		    "an interface, \"localhost\" or a host name (interface "
		    "groups such as egress do not exist on this system)", where);
	if (v->n == 0)
		return cf_err(p, line, "listen on \"%s\": no %s address",
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


/* Old `secure`: STARTTLS and SMTPS, each on its default port. */
#define LO_LEGACY_SECURE	0x80000000U

/* One listener per address, refusing an address and port seen before. */
static int
listen_add(struct parser *p, struct listen_conf *lc)
{
	struct addrvec		 v = { NULL, 0 };
	struct listener		*l;
	size_t			 i;
	int			 port = lc->port;

	if (port == 0)
		port = (lc->flags & LO_SMTPS) ? CONF_SMTPS_PORT :
		    CONF_DEFAULT_PORT;
	if (listen_resolve(p, lc->on, lc->family ? lc->family :
	    LISTEN_INET4 | LISTEN_INET6, lc->line, &v) == -1) {
		free(v.ss);
		return -1;
	}
	for (i = 0; i < v.n; i++) {
		ss_set_port(&v.ss[i], port);
		TAILQ_FOREACH(l, &p->conf->listeners, entry)
			if (ss_same(&l->ss, &v.ss[i]))
				break;
		if (l != NULL) {
			cf_err(p, lc->line, "listen on \"%s\": %s port %d is "
			    "already declared at %s:%d", lc->on,
			    ss_to_text(&v.ss[i]), port, l->lc->file,
			    l->lc->line);
			free(v.ss);
			return -1;
		}
		l = xcalloc(1, sizeof(*l));
		l->lc = lc;
		l->ss = v.ss[i];
		l->sslen = ss_len(&l->ss);
		l->fd = -1;
		TAILQ_INSERT_TAIL(&p->conf->listeners, l, entry);
	}
	free(v.ss);
	return 0;
}

/* A number (1-65535) or a service name from services(5). */
static int
listen_port(struct parser *p, struct listen_conf *lc)
{
	struct servent	*se;
	char		*s, *end;
	long		 v;
	int		 rc = 0;

	if (lc->port)
		return cf_twice(p, "port");
	if (cf_word(p, "a port", &s) == -1)
		return -1;
	if (isdigit((unsigned char)*s)) {
		errno = 0;
		v = strtol(s, &end, 10);
		if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
			rc = cf_err(p, cf_line(p), "invalid port \"%s\": "
			    "expected a number from 1 to 65535", s);
		else
			lc->port = v;
	} else if ((se = getservbyname(s, "tcp")) != NULL)
		lc->port = ntohs(se->s_port);
	else
		rc = cf_err(p, cf_line(p), "unknown port \"%s\"", s);
	free(s);
	return rc;
}

/* tag T / hostname H: a word, bounded by the envelope field it fills. */
static int
listen_string(struct parser *p, const char *opt, const char *what,
    char **slot, size_t max)
{
	if (cf_string_opt(p, opt, what, slot) == -1)
		return -1;
	if (**slot == '\0' || strlen(*slot) > max)
		return cf_err(p, cf_line(p), "invalid %s \"%s\" (1 to %zu "
		    "bytes)", opt, *slot, max);
	return 0;
}

static int
listen_tls(struct parser *p, struct listen_conf *lc, const char *opt)
{
	const uint32_t	 all = LO_TLS | LO_TLS_REQUIRE | LO_SMTPS |
	    LO_LEGACY_SECURE;

	if (lc->flags & all)
		return cf_err(p, cf_line(p), "\"%s\": tls, tls-require, smtps "
		    "(and secure) are mutually exclusive", opt);
	if (strcmp(opt, "smtps") == 0)
		lc->flags |= LO_SMTPS;
	else if (strcmp(opt, "secure") == 0)
		lc->flags |= LO_LEGACY_SECURE;
	else if (strcmp(opt, "tls") == 0)
		lc->flags |= LO_TLS;
	else {
		lc->flags |= LO_TLS | LO_TLS_REQUIRE;
		if (cf_is_kw(cf_peek(p, 0), "verify")) {
			cf_take(p);
			lc->flags |= LO_TLS_VERIFY;
		}
	}
	return 0;
}

static int
listen_auth(struct parser *p, struct listen_conf *lc, const char *opt)
{
	if (lc->flags & (LO_AUTH | LO_AUTH_OPTIONAL))
		return cf_err(p, cf_line(p), "\"%s\": auth and auth-optional "
		    "are mutually exclusive, and each may be given once", opt);
	lc->flags |= strcmp(opt, "auth") == 0 ? LO_AUTH : LO_AUTH_OPTIONAL;
	if (cf_peek(p, 0)->type == T_LT)
		return cf_table_ref(p, &lc->auth);
	return 0;
}

static int
listen_pki(struct parser *p, struct listen_conf *lc)
{
	char	*name;

	if (lc->npki == LISTEN_MAX_PKI)
		return cf_err(p, cf_line(p), "at most %d pki per listener",
		    LISTEN_MAX_PKI);
	if (cf_name(p, "a pki name", &name) == -1)
		return -1;
	cf_ref(p, REF_PKI, name, cf_line(p), NULL);
	lc->pki[lc->npki++] = name;
	return 0;
}

/* Both may be given: hostname is the name for addresses hostnames lacks. */
static int
listen_hostnames(struct parser *p, struct listen_conf *lc, const char *opt)
{
	if (strcmp(opt, "hostname") == 0)
		return listen_string(p, opt, "a host name", &lc->hostname,
		    CONF_MAX_HOSTNAME);
	if (lc->hostnames != NULL)
		return cf_twice(p, opt);
	return cf_table_ref(p, &lc->hostnames);
}

static int
listen_flag(struct parser *p, struct listen_conf *lc, uint32_t flag,
    const char *opt)
{
	if (lc->flags & flag)
		return cf_twice(p, opt);
	lc->flags |= flag;
	return 0;
}

/* filter NAME, or filter { a, b }: an anonymous chain. */
static int
listen_filter(struct parser *p, struct listen_conf *lc)
{
	struct filter	*f;
	char		*name;

	if (lc->filter != NULL)
		return cf_twice(p, "filter");
	if (cf_peek(p, 0)->type != T_LBRACE) {
		if (cf_name(p, "a filter name", &lc->filter) == -1)
			return -1;
		cf_ref(p, REF_FILTER, lc->filter, cf_line(p), NULL);
		return 0;
	}
	f = xcalloc(1, sizeof(*f));
	xasprintf(&f->name, "<anon-chain:%u>", ++p->nanon);
	f->type = F_CHAIN;
	f->anon = 1;
	f->file = cf_here(p);
	f->line = cf_line(p);
	TAILQ_INSERT_TAIL(&p->conf->filters, f, entry);
	lc->filter = xstrdup(f->name);
	cf_take(p);
	for (;;) {
		if (cf_name(p, "a filter name", &name) == -1)
			return -1;
		cf_ref(p, REF_FILTER, name, cf_line(p), NULL);
		f->chain = xreallocarray(f->chain, f->nchain + 1,
		    sizeof(*f->chain));
		f->chain[f->nchain++] = name;
		if (cf_peek(p, 0)->type == T_RBRACE)
			break;
		if (cf_peek(p, 0)->type != T_COMMA)
			return cf_unexpected(p, cf_peek(p, 0), "\",\" or \"}\"");
		cf_take(p);
	}
	cf_take(p);
	return 0;
}

static int
listen_senders(struct parser *p, struct listen_conf *lc)
{
	if (lc->senders != NULL)
		return cf_twice(p, "senders");
	if (cf_table_ref(p, &lc->senders) == -1)
		return -1;
	if (cf_is_kw(cf_peek(p, 0), "masquerade")) {
		cf_take(p);
		lc->flags |= LO_MASQUERADE;
	}
	return 0;
}

static int
listen_family(struct parser *p, struct listen_conf *lc, int family)
{
	if (lc->family)
		return cf_err(p, cf_line(p), "address family given twice");
	lc->family = family;
	return 0;
}

/* Options of `listen on socket`: the ones that make sense there. */
static int
listen_socket_option(struct parser *p, struct listen_conf *lc,
    const char *opt)
{
	if (strcmp(opt, "filter") == 0)
		return listen_filter(p, lc);
	if (strcmp(opt, "mask-src") == 0)
		return listen_flag(p, lc, LO_MASK_SRC, opt);
	if (strcmp(opt, "no-dsn") == 0)
		return listen_flag(p, lc, LO_NO_DSN, opt);
	if (strcmp(opt, "tag") == 0)
		return listen_string(p, opt, "a tag", &lc->tag, CONF_MAX_TAG);
	return cf_err(p, cf_line(p), "listen on socket: unknown option \"%s\" "
	    "(expected filter, mask-src, no-dsn or tag)", opt);
}

static int
listen_option(struct parser *p, struct listen_conf *lc, const char *opt,
    int legacy)
{
	if (strcmp(opt, "port") == 0)
		return listen_port(p, lc);
	if (strcmp(opt, "inet4") == 0)
		return listen_family(p, lc, LISTEN_INET4);
	if (strcmp(opt, "inet6") == 0)
		return listen_family(p, lc, LISTEN_INET6);
	if (strcmp(opt, "tls") == 0 || strcmp(opt, "tls-require") == 0 ||
	    strcmp(opt, "smtps") == 0 || (legacy && strcmp(opt, "secure") == 0))
		return listen_tls(p, lc, opt);
	if (strcmp(opt, "pki") == 0 || (legacy && strcmp(opt,
	    "certificate") == 0))
		return listen_pki(p, lc);
	if (strcmp(opt, "ca") == 0)
		return lc->ca ? cf_twice(p, opt) :
		    cf_name(p, "a ca name", &lc->ca) == -1 ? -1 :
		    (cf_ref(p, REF_CA, lc->ca, cf_line(p), NULL), 0);
	if (strcmp(opt, "auth") == 0 || strcmp(opt, "auth-optional") == 0)
		return listen_auth(p, lc, opt);
	if (strcmp(opt, "hostname") == 0 || strcmp(opt, "hostnames") == 0)
		return listen_hostnames(p, lc, opt);
	if (strcmp(opt, "mask-src") == 0 || (legacy && strcmp(opt,
	    "mask-source") == 0))
		return listen_flag(p, lc, LO_MASK_SRC, opt);
	if (strcmp(opt, "proxy-v2") == 0)
		return listen_flag(p, lc, LO_PROXY_V2, opt);
	if (strcmp(opt, "received-auth") == 0)
		return listen_flag(p, lc, LO_RECEIVED_AUTH, opt);
	if (strcmp(opt, "senders") == 0)
		return listen_senders(p, lc);
	if (strcmp(opt, "ciphers") == 0)
		return cf_string_opt(p, opt, "a cipher list", &lc->ciphers);
	if (strcmp(opt, "protocols") == 0)
		return cf_string_opt(p, opt, "a protocol list",
		    &lc->protocols);
	if (strcmp(opt, "filter") == 0 || strcmp(opt, "mask-src") == 0 ||
	    strcmp(opt, "no-dsn") == 0 || strcmp(opt, "tag") == 0)
		return listen_socket_option(p, lc, opt);
	return cf_err(p, cf_line(p), "unknown listen option \"%s\"", opt);
}

/* Old-grammar spellings, accepted only through cf_legacy(). */
static int
is_legacy_listen_option(const char *opt)
{
	return strcmp(opt, "secure") == 0 || strcmp(opt, "mask-source") == 0 ||
	    strcmp(opt, "certificate") == 0;
}

int
cf_listen_options(struct parser *p, struct listen_conf *lc, int legacy)
{
	const struct token	*t;
	char			*opt;
	int			 rc = 0;

	(void)legacy;
	while (rc == 0 && !cf_is_eol(t = cf_peek(p, 0))) {
		if (t->type != T_WORD || t->quoted)
			return cf_unexpected(p, t, "a listen option or end of "
			    "line");
		opt = xstrdup(cf_take(p)->text);
		if (is_legacy_listen_option(opt))
			cf_legacy(p, cf_line(p));
		if (lc->socket)
			rc = listen_socket_option(p, lc, opt);
		else
			rc = listen_option(p, lc, opt, 1);
		free(opt);
	}
	return rc;
}

static struct listen_conf *
listen_conf_dup(const struct listen_conf *lc)
{
	struct listen_conf	*d = xcalloc(1, sizeof(*d));
	size_t			 i;

	*d = *lc;
#define DUP(f)	d->f = lc->f ? xstrdup(lc->f) : NULL
	DUP(on); DUP(tag); DUP(hostname); DUP(ca); DUP(filter);
	DUP(ciphers); DUP(protocols); DUP(file);
#undef DUP
	for (i = 0; i < lc->npki; i++)
		d->pki[i] = xstrdup(lc->pki[i]);
	return d;
}

/* Resolves the addresses of a directive already in conf->listen_confs. */
int
cf_listen_finish(struct parser *p, struct listen_conf *lc)
{
	struct listen_conf	*smtps;

	if (lc->flags & LO_LEGACY_SECURE) {
		if (lc->port != 0) {
			cf_err(p, lc->line, "listen on \"%s\": \"secure\" "
			    "with a port has no equivalent: use tls or smtps",
			    lc->on);
			return -1;
		}
		lc->flags &= ~LO_LEGACY_SECURE;
		smtps = listen_conf_dup(lc);
		lc->flags |= LO_TLS;
		smtps->flags |= LO_SMTPS;
		TAILQ_INSERT_AFTER(&p->conf->listen_confs, lc, smtps, entry);
		if (listen_add(p, lc) == -1)
			return -1;
		return listen_add(p, smtps);
	}
	return listen_add(p, lc);
}

static int
parse_listen(struct parser *p)
{
	const struct token	*t;
	struct listen_conf	*lc;

	if (!cf_is_kw(t = cf_peek(p, 0), "on"))
		return cf_unexpected(p, t, "\"on\"");
	cf_take(p);
	lc = xcalloc(1, sizeof(*lc));
	lc->file = cf_here(p);
	lc->line = cf_line(p);
	if (cf_is_kw(cf_peek(p, 0), "socket")) {
		cf_take(p);
		lc->socket = 1;
		if (p->conf->socket_listener != NULL) {
			cf_err(p, lc->line, "listen on socket is already "
			    "declared at %s:%d", p->conf->socket_listener->file,
			    p->conf->socket_listener->line);
			free(lc->file);
			free(lc);
			return -1;
		}
		p->conf->socket_listener = lc;
		if (cf_listen_options(p, lc, 0) == -1)
			return -1;
		return cf_eol(p);
	}
	TAILQ_INSERT_TAIL(&p->conf->listen_confs, lc, entry);
	if (cf_word(p, "an interface, an address, a host name or \"socket\"",
	    &lc->on) == -1 || cf_listen_options(p, lc, 0) == -1 ||
	    cf_listen_finish(p, lc) == -1)
		return -1;
	return cf_eol(p);
}

/* ------------------------------------------------------ include, macros */

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
	int	 line = cf_line(p), rc;

	if (cf_word(p, "a file name", &name) == -1)
		return -1;
	if (cf_eol(p) == -1) {
		free(name);
		return -1;
	}
	path = include_path(p->lx->name, name);
	free(name);
	if (p->depth >= CONF_MAX_INCLUDE)
		rc = cf_err(p, line, "include \"%s\": nested too deeply (more "
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

	name = xstrdup(cf_take(p)->text);
	cf_take(p);			/* '=' */
	if (!macro_name_valid(name))
		cf_err(p, cf_line(p), "invalid macro name \"%s\"", name);
	else if (cf_is_reserved(name))
		cf_err(p, cf_line(p), "macro name \"%s\" is a reserved word",
		    name);
	else if (cf_word(p, "a macro value", &value) == 0) {
		macro_set(p, name, value, 0);
		free(value);
		rc = cf_eol(p);
	}
	free(name);
	return rc;
}

/* ------------------------------------------------------------ statements */

static int
parse_accept(struct parser *p)
{
	return parse_legacy_accept(p, 0);
}

static int
parse_reject(struct parser *p)
{
	return parse_legacy_accept(p, 1);
}

static const struct directive {
	const char	*name;
	int		(*parse)(struct parser *);
} directives[] = {
	{ "action",		parse_action },
	{ "admd",		parse_admd },
	{ "bounce",		parse_bounce },
	{ "ca",			parse_ca },
	{ "filter",		parse_filter },
	{ "include",		parse_include },
	{ "listen",		parse_listen },
	{ "match",		parse_match },
	{ "mda",		parse_mda },
	{ "module-path",	parse_module_path },
	{ "mta",		parse_mta },
	{ "pki",		parse_pki },
	{ "proc",		parse_proc },
	{ "queue",		parse_queue },
	{ "smtp",		parse_smtp },
	{ "srs",		parse_srs },
	{ "table",		parse_table },
	/* the grammar before OpenSMTPD 6.4, translated */
	{ "accept",		parse_accept },
	{ "reject",		parse_reject },
	{ "expire",		parse_legacy_expire },
	{ "limit",		parse_legacy_limit },
	{ "bounce-warn",	parse_legacy_bounce_warn },
	{ "max-message-size",	parse_legacy_max_size },
};

static int
parse_statement(struct parser *p)
{
	const struct token	*t;
	size_t			 i;

	if (cf_peek(p, 0)->type == T_NL) {
		cf_take(p);
		return 0;
	}
	if (cf_peek(p, 1)->type == T_EQ && cf_peek(p, 0)->type == T_WORD)
		return parse_macro(p);
	t = cf_peek(p, 0);
	if (t->type != T_WORD)
		return cf_unexpected(p, t, "a directive");
	for (i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
		if (cf_is_kw(t, directives[i].name)) {
			cf_take(p);
			return directives[i].parse(p);
		}
	}
	return cf_err(p, t->line, "unknown directive \"%s\"", t->text);
}

/* ----------------------------------------------------------------- files */

/* realloc, but the old copy of the file (maybe a key) is wiped. */
static char *
grow_wiped(char *old, size_t len, size_t cap)
{
	char	*buf = xmalloc(cap);

	if (old != NULL) {
		memcpy(buf, old, len);
		explicit_bzero(old, len);
		free(old);
	}
	return buf;
}

/* Regular files only: a device or FIFO could block the load forever. */
static int
slurp(const char *path, char **bufp, size_t *lenp)
{
	struct stat	 st;
	char		*buf = NULL;
	size_t		 len = 0, cap = 0;
	ssize_t		 n;
	int		 fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK |
	    O_NOCTTY)) == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		goto fail;
	if (!S_ISREG(st.st_mode)) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		goto fail;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CONF_MAX_FILE) {
				errno = EFBIG;
				goto fail;
			}
			buf = grow_wiped(buf, len, cap ? cap * 2 : 4096);
			cap = cap ? cap * 2 : 4096;
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

static const char *
slurp_error(int e)
{
	return e == EINVAL ? "not a regular file" : strerror(e);
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
			return cf_err(p, inc_line, "cannot read include file "
			    "\"%s\": %s", path, slurp_error(errno));
		log_warnx("%s: %s", path, slurp_error(errno));
		p->failed = 1;
		return -1;
	}
	lx.buf = lx.owned;
	lx.name = path;
	lx.line = 1;
	lx.cur.type = T_NL;
	lx.prev = p->lx;
	p->lx = &lx;
	while (cf_peek(p, 0)->type != T_EOF)
		if ((rc = parse_statement(p)) == -1)
			break;
	p->lx = lx.prev;
	lexer_free(&lx);
	return rc;
}

/* ------------------------------------------------------------ resolution */

static const char *const ref_names[] = {
	[REF_TABLE] = "table", [REF_ACTION] = "action", [REF_PKI] = "pki",
	[REF_CA] = "ca", [REF_FILTER] = "filter", [REF_PROC] = "proc",
	[REF_WRAPPER] = "mda wrapper",
};

static int
resolve_one(struct parser *p, const struct ref *r)
{
	const struct config	*c = p->conf;
	void			*found = NULL;

	switch (r->kind) {
	case REF_TABLE:
		found = *(struct table **)r->slot =
		    config_table_find(c, r->name);
		break;
	case REF_ACTION:
		found = *(struct action **)r->slot =
		    config_action_find(c, r->name);
		break;
	case REF_PKI:
		found = config_pki_find(c, r->name);
		break;
	case REF_CA:
		found = config_ca_find(c, r->name);
		break;
	case REF_FILTER:
		found = config_filter_find(c, r->name);
		break;
	case REF_PROC:
		found = config_proc_find(c, r->name);
		break;
	case REF_WRAPPER:
		found = config_wrapper_find(c, r->name);
		break;
	}
	if (found == NULL)
		return cf_err_at(p, r->file, r->line, "undefined %s \"%s\"",
		    ref_names[r->kind], r->name);
	return 0;
}

static int
resolve_refs(struct parser *p)
{
	size_t	 i;

	for (i = 0; i < p->nrefs; i++)
		if (resolve_one(p, &p->refs[i]) == -1)
			return -1;
	return 0;
}

int
cf_resolve_from(struct parser *p, size_t mark)
{
	size_t	 i;
	int	 rc = 0;

	for (i = mark; i < p->nrefs; i++) {
		if (rc == 0 && resolve_one(p, &p->refs[i]) == -1)
			rc = -1;
		free(p->refs[i].name);
		free(p->refs[i].file);
	}
	p->nrefs = mark;
	return rc;
}

/* A pki needs both halves before anything can use it. */
static int
check_pkis(struct parser *p)
{
	const struct pki	*pk;

	TAILQ_FOREACH(pk, &p->conf->pkis, entry) {
		if (pk->cert == NULL)
			return cf_err_at(p, pk->file, pk->line, "pki \"%s\" "
			    "has no certificate (pki \"%s\" cert FILE)",
			    pk->name, pk->name);
		if (pk->key == NULL)
			return cf_err_at(p, pk->file, pk->line, "pki \"%s\" "
			    "has no key (pki \"%s\" key FILE)", pk->name,
			    pk->name);
	}
	return 0;
}

/* ------------------------------------------------------------ public API */

static void
parser_free(struct parser *p)
{
	size_t	 i;

	for (i = 0; i < p->nmacros; i++) {
		free(p->macros[i].name);
		text_free(p->macros[i].value);
	}
	free(p->macros);
	for (i = 0; i < p->nrefs; i++) {
		free(p->refs[i].name);
		free(p->refs[i].file);
	}
	free(p->refs);
	for (i = 0; i < p->nlegacy_files; i++)
		free(p->legacy_files[i]);
	free(p->legacy_files);
	free(p->legacy_local);
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
		rc = check_pkis(&p);
	if (rc == 0)
		cf_legacy_finish(&p);
	if (rc == 0)
		rc = cf_check_rules(&p);
	parser_free(&p);
	if (rc == -1) {
		config_free(p.conf);
		return NULL;
	}
	return p.conf;
}
