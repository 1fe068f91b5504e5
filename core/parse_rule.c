/*
 * parse_rule.c - the smtpd.conf directives that say what happens to mail:
 * `action` (delivery methods and their options), `match` (the rules) and
 * `filter` (builtin, proc, proc-exec and chains).  Checks that need the
 * whole file (a relay option on a local action, a chain of chains) run
 * once every name is resolved.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

/* ---------------------------------------------------------------- action */

static const char *const method_names[A_NMETHODS] = {
	[A_MBOX] = "mbox", [A_MAILDIR] = "maildir", [A_LMTP] = "lmtp",
	[A_MDA] = "mda", [A_RELAY] = "relay", [A_EXPAND_ONLY] = "expand-only",
	[A_FORWARD_ONLY] = "forward-only",
};

struct action *
cf_action_new(struct parser *p, char *name, int line)
{
	struct action	*a = xcalloc(1, sizeof(*a));

	a->name = name;
	a->file = cf_here(p);
	a->line = line;
	TAILQ_INSERT_TAIL(&p->conf->actions, a, entry);
	return a;
}

/* A word that is a value here, not the next option. */
static int
is_value(const struct token *t)
{
	return t->type == T_WORD && (t->quoted || !cf_is_reserved(t->text));
}

/*
 * What the lmtp method can connect to: "/socket", "host", "host:port",
 * "[addr]:port".  A bare IPv6 address is ambiguous with a port.
 */
static int
lmtp_dest_ok(const char *d)
{
	const char	*colon, *end;
	char		*e;
	long		 port;

	if (d[0] == '/')
		return strlen(d) < sizeof(((struct sockaddr_un *)0)->sun_path);
	if (d[0] == '[') {
		if ((end = strchr(d, ']')) == NULL || end == d + 1)
			return 0;
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] != '\0' && colon == NULL)
			return 0;
	} else {
		colon = strchr(d, ':');
		if (d[0] == '\0' || colon == d ||
		    (colon && strchr(colon + 1, ':')))
			return 0;
	}
	if (strpbrk(d, " \t") != NULL)
		return 0;
	if (colon == NULL)
		return 1;
	errno = 0;
	port = strtol(colon + 1, &e, 10);
	return colon[1] != '\0' && *e == '\0' && errno == 0 && port > 0 &&
	    port < 65536;
}

/*
 * The arguments of a local method.  stop: a bare word that ends the
 * arguments although it is not reserved (the old grammar's "expire").
 */
int
cf_method_args(struct parser *p, struct action *a, const char *stop)
{
	const struct token	*t = cf_peek(p, 0);

	switch (a->method) {
	case A_MAILDIR:
		if (is_value(t) && (stop == NULL || !cf_is_kw(t, stop)) &&
		    cf_word(p, "a maildir path", &a->path) == -1)
			return -1;
		if (cf_is_kw(cf_peek(p, 0), "junk")) {
			cf_take(p);
			a->junk = 1;
		}
		return 0;
	case A_LMTP:
		if (cf_word(p, "host:port or /socket", &a->lmtp_dest) == -1)
			return -1;
		if (!lmtp_dest_ok(a->lmtp_dest))
			return cf_err(p, cf_line(p), "action \"%s\": bad lmtp"
			    " destination \"%s\" (expected host, host:port,"
			    " [address]:port or an absolute socket path)",
			    a->name, a->lmtp_dest);
		if (cf_is_kw(cf_peek(p, 0), "rcpt-to")) {
			cf_take(p);
			a->lmtp_rcpt_to = 1;
		}
		return 0;
	case A_MDA:
		return cf_word(p, "a command", &a->mda_cmd);
	default:
		return 0;
	}
}

static int
flag_opt(struct parser *p, int *slot, const char *opt)
{
	if (*slot)
		return cf_twice(p, opt);
	*slot = 1;
	return 0;
}

static int
ref_opt(struct parser *p, enum ref_kind kind, const char *what, char **slot)
{
	if (*slot != NULL)
		return cf_twice(p, cf_last(p));
	if (cf_name(p, what, slot) == -1)
		return -1;
	cf_ref(p, kind, *slot, cf_line(p), NULL);
	return 0;
}

static int
relay_backup(struct parser *p, struct action *a)
{
	if (flag_opt(p, &a->backup, "backup") == -1)
		return -1;
	if (!cf_is_kw(cf_peek(p, 0), "mx"))
		return 0;
	cf_take(p);
	return cf_word(p, "a mail exchanger name", &a->backup_mx);
}

static int
relay_tls(struct parser *p, struct action *a)
{
	if (a->tls != RELAY_TLS_DEFAULT)
		return cf_twice(p, "tls");
	a->tls = RELAY_TLS_VERIFY;
	if (cf_is_kw(cf_peek(p, 0), "no-verify")) {
		cf_take(p);
		a->tls = RELAY_TLS_NO_VERIFY;
	}
	return 0;
}

/* Options of local delivery methods. */
static int
local_option(struct parser *p, struct action *a, const char *opt)
{
	if (strcmp(opt, "alias") == 0)
		return a->alias ? cf_twice(p, opt) :
		    cf_table_ref(p, &a->alias);
	if (strcmp(opt, "virtual") == 0)
		return a->virtual ? cf_twice(p, opt) :
		    cf_table_ref(p, &a->virtual);
	if (strcmp(opt, "userbase") == 0)
		return a->userbase ? cf_twice(p, opt) :
		    cf_table_ref(p, &a->userbase);
	if (strcmp(opt, "user") == 0)
		return cf_string_opt(p, opt, "a user name", &a->user);
	if (strcmp(opt, "wrapper") == 0)
		return ref_opt(p, REF_WRAPPER, "a wrapper name", &a->wrapper);
	return 1;
}

static int
relay_option(struct parser *p, struct action *a, const char *opt)
{
	if (strcmp(opt, "backup") == 0)
		return relay_backup(p, a);
	if (strcmp(opt, "helo") == 0)
		return cf_string_opt(p, opt, "a host name", &a->helo);
	if (strcmp(opt, "helo-src") == 0)
		return cf_table_arg(p, "a <table>", &a->helo_src);
	if (strcmp(opt, "domain") == 0)
		return a->domain ? cf_twice(p, opt) :
		    cf_table_ref(p, &a->domain);
	if (strcmp(opt, "host") == 0)
		return cf_string_opt(p, opt, "a relay URL", &a->host);
	if (strcmp(opt, "tls") == 0)
		return relay_tls(p, a);
	if (strcmp(opt, "auth") == 0)
		return a->auth ? cf_twice(p, opt) : cf_table_ref(p, &a->auth);
	if (strcmp(opt, "mail-from") == 0)
		return cf_string_opt(p, opt, "an address", &a->mail_from);
	if (strcmp(opt, "src") == 0)
		return cf_table_arg(p, "an address or a <table>", &a->src);
	if (strcmp(opt, "pki") == 0)
		return ref_opt(p, REF_PKI, "a pki name", &a->pki);
	if (strcmp(opt, "ca") == 0)
		return ref_opt(p, REF_CA, "a ca name", &a->ca);
	if (strcmp(opt, "srs") == 0)
		return flag_opt(p, &a->srs, opt);
	if (strcmp(opt, "protocols") == 0)
		return cf_string_opt(p, opt, "a protocol list", &a->protocols);
	if (strcmp(opt, "ciphers") == 0)
		return cf_string_opt(p, opt, "a cipher list", &a->ciphers);
	return 1;
}

static const char *const local_opts[] = {
	"alias", "virtual", "userbase", "user", "wrapper",
};
static const char *const relay_opts[] = {
	"backup", "helo", "helo-src", "domain", "host", "tls", "auth",
	"mail-from", "src", "pki", "ca", "srs", "protocols", "ciphers",
};

/*
 * One option after the method; *handled is 0 when opt is not an action
 * option at all (the legacy reader has its own words after an action).
 */
int
cf_action_option(struct parser *p, struct action *a, const char *opt,
    int *handled)
{
	int	 relay = a->method == A_RELAY;

	*handled = 1;
	if (strcmp(opt, "ttl") == 0) {
		if (a->ttl != 0)
			return cf_twice(p, opt);
		return cf_duration(p, "ttl", &a->ttl);
	}
	if (CF_IN_LIST(opt, local_opts)) {
		if (relay)
			return cf_err(p, cf_line(p), "action \"%s\": option "
			    "\"%s\" is for local delivery, not relay",
			    a->name, opt);
		return local_option(p, a, opt);
	}
	if (CF_IN_LIST(opt, relay_opts)) {
		if (!relay)
			return cf_err(p, cf_line(p), "action \"%s\": option "
			    "\"%s\" is for relay, not %s", a->name, opt,
			    method_names[a->method]);
		return relay_option(p, a, opt);
	}
	*handled = 0;
	return 0;
}

/* scheme://[label@]host[:port], read as the relay will read it. */
static int
check_relay_url(struct parser *p, const struct action *a)
{
	struct relay_url	 url;
	const char		*u = a->host;

	switch (relay_url_parse(u, &url)) {
	case RELAY_URL_OK:
		break;
	case RELAY_URL_SCHEME:
		return cf_err_at(p, a->file, a->line, "action \"%s\": "
		    "unknown scheme in relay URL \"%s\" (expected "
		    "smtp, smtp+tls, smtp+notls, smtps or lmtp)", a->name, u);
	case RELAY_URL_HOST:
		return cf_err_at(p, a->file, a->line, "action \"%s\": relay "
		    "URL \"%s\" has no host", a->name, u);
	case RELAY_URL_PORT:
		return cf_err_at(p, a->file, a->line, "action \"%s\": relay "
		    "URL \"%s\": invalid port", a->name, u);
	case RELAY_URL_LMTP_PORT:
		return cf_err_at(p, a->file, a->line, "action \"%s\": relay "
		    "URL \"%s\": lmtp needs a port", a->name, u);
	case RELAY_URL_LABEL:
		return cf_err_at(p, a->file, a->line, "action \"%s\": relay "
		    "URL \"%s\": label too long", a->name, u);
	}
	if (url.scheme == RELAY_SMTP_NOTLS && a->tls)
		return cf_err_at(p, a->file, a->line, "action \"%s\": tls "
		    "cannot be required with smtp+notls://", a->name);
	return 0;
}

int
cf_action_check(struct parser *p, struct action *a)
{
	if (a->user != NULL && a->method == A_MBOX)
		return cf_err_at(p, a->file, a->line, "action \"%s\": option "
		    "\"user\" cannot be used with mbox", a->name);
	if (a->alias != NULL && a->virtual != NULL)
		return cf_err_at(p, a->file, a->line, "action \"%s\": alias "
		    "and virtual are mutually exclusive", a->name);
	if (a->auth != NULL && a->host == NULL)
		return cf_err_at(p, a->file, a->line, "action \"%s\": auth "
		    "needs host", a->name);
	if (a->backup && (a->host != NULL || a->domain != NULL))
		return cf_err_at(p, a->file, a->line, "action \"%s\": backup "
		    "cannot be combined with host or domain", a->name);
	if (a->host != NULL && a->domain != NULL)
		return cf_err_at(p, a->file, a->line, "action \"%s\": host and "
		    "domain are mutually exclusive", a->name);
	if (a->host != NULL)
		return check_relay_url(p, a);
	return 0;
}

static int
action_options(struct parser *p, struct action *a)
{
	const struct token	*t;
	char			*opt;
	int			 handled, rc = 0;

	while (rc == 0 && !cf_is_eol(t = cf_peek(p, 0))) {
		if (t->type != T_WORD || t->quoted)
			return cf_unexpected(p, t, "an action option or end of "
			    "line");
		opt = xstrdup(cf_take(p)->text);
		rc = cf_action_option(p, a, opt, &handled);
		if (rc == 0 && !handled)
			rc = cf_err(p, cf_line(p), "unknown action option "
			    "\"%s\"", opt);
		free(opt);
	}
	return rc;
}

int
parse_action(struct parser *p)
{
	struct action		*a, *old;
	const struct token	*t;
	char			*name;
	int			 line = cf_line(p), m;

	if (cf_name(p, "an action name", &name) == -1)
		return -1;
	if ((old = config_action_find(p->conf, name)) != NULL) {
		cf_err(p, line, "action \"%s\" is already defined at %s:%d",
		    name, old->file, old->line);
		free(name);
		return -1;
	}
	a = cf_action_new(p, name, line);
	t = cf_peek(p, 0);
	for (m = 0; m < A_NMETHODS; m++)
		if (cf_is_kw(t, method_names[m]))
			break;
	if (m == A_NMETHODS)
		return cf_unexpected(p, t, "a delivery method (mbox, maildir, "
		    "lmtp, mda, relay, expand-only or forward-only)");
	cf_take(p);
	a->method = m;
	if (cf_method_args(p, a, NULL) == -1 || action_options(p, a) == -1)
		return -1;
	return cf_eol(p);
}

/* ----------------------------------------------------------------- match */

static const struct cond_word {
	const char	*word;
	enum cond_kind	 kind;
	int		 arg;		/* 0 none, 1 required, 2 optional */
} from_words[] = {
	{ "any", C_FROM_ANY, 0 },
	{ "local", C_FROM_LOCAL, 0 },
	{ "socket", C_FROM_SOCKET, 0 },
	{ "src", C_FROM_SRC, 1 },
	{ "auth", C_FROM_AUTH, 2 },
	{ "rdns", C_FROM_RDNS, 2 },
	{ "mail-from", C_FROM_MAIL_FROM, 1 },
}, for_words[] = {
	{ "any", C_FOR_ANY, 0 },
	{ "local", C_FOR_LOCAL, 0 },
	{ "domain", C_FOR_DOMAIN, 1 },
	{ "rcpt-to", C_FOR_RCPT_TO, 1 },
}, option_words[] = {
	{ "auth", C_AUTH, 2 },
	{ "helo", C_HELO, 1 },
	{ "mail-from", C_MAIL_FROM, 1 },
	{ "rcpt-to", C_RCPT_TO, 1 },
	{ "tag", C_TAG, 1 },
	{ "tls", C_TLS, 0 },
};

static const enum cond_slot option_slots[] = {
	SLOT_AUTH, SLOT_HELO, SLOT_MAIL_FROM, SLOT_RCPT_TO, SLOT_TAG, SLOT_TLS,
};

/* Does an optional argument follow? */
static int
arg_follows(struct parser *p)
{
	const struct token	*t = cf_peek(p, 0);

	return t->type == T_LT || is_value(t) || cf_is_kw(t, "regex");
}

/* [regex] <table> | literal */
static int
cond_arg(struct parser *p, struct cond *c, int arg)
{
	if (arg == 0 || (arg == 2 && !arg_follows(p)))
		return 0;
	if (cf_is_kw(cf_peek(p, 0), "regex")) {
		cf_take(p);
		c->regex = 1;
	}
	return cf_table_arg(p, "a value or a <table>", &c->table);
}

static int
cond_from_words(struct parser *p, struct cond *c, const struct cond_word *w,
    size_t n, const char *what)
{
	const struct token	*t = cf_peek(p, 0);
	size_t			 i;

	for (i = 0; i < n; i++)
		if (cf_is_kw(t, w[i].word))
			break;
	if (i == n)
		return cf_unexpected(p, t, what);
	cf_take(p);
	c->kind = w[i].kind;
	return cond_arg(p, c, w[i].arg);
}

static int
rule_cond(struct parser *p, struct rule *r, const char *kw, int neg)
{
	struct cond	*c;
	size_t		 i, n = sizeof(option_words) / sizeof(*option_words);
	int		 slot;

	if (strcmp(kw, "from") == 0)
		slot = SLOT_FROM;
	else if (strcmp(kw, "for") == 0)
		slot = SLOT_FOR;
	else {
		for (i = 0; i < n; i++)
			if (strcmp(kw, option_words[i].word) == 0)
				break;
		if (i == n)
			return cf_err(p, cf_line(p), "unknown match option "
			    "\"%s\"", kw);
		slot = option_slots[i];
	}
	if (r->set[slot] == 2)
		return cf_err(p, cf_line(p), "match option \"%s\" given twice",
		    kw);
	c = &r->conds[slot];
	memset(c, 0, sizeof(*c));
	c->neg = neg;
	r->set[slot] = 2;
	if (slot == SLOT_FROM)
		return cond_from_words(p, c, from_words, 7, "\"any\", "
		    "\"local\", \"socket\", \"src\", \"auth\", \"rdns\" or "
		    "\"mail-from\"");
	if (slot == SLOT_FOR)
		return cond_from_words(p, c, for_words, 4, "\"any\", "
		    "\"local\", \"domain\" or \"rcpt-to\"");
	c->kind = option_words[i].kind;
	return cond_arg(p, c, option_words[i].arg);
}

/* The end of a rule: action NAME or reject. */
static int
rule_decision(struct parser *p, struct rule *r, int neg)
{
	char	*name;

	if (neg)
		return cf_err(p, cf_line(p), "\"!\" cannot negate \"%s\"",
		    cf_peek(p, 0)->text);
	if (cf_is_kw(cf_take(p), "reject")) {
		r->reject = 1;
		return cf_eol(p);
	}
	if (cf_name(p, "an action name", &name) == -1)
		return -1;
	cf_ref(p, REF_ACTION, name, cf_line(p), &r->action);
	free(name);
	return cf_eol(p);
}

/* An omitted "from" means "from local", an omitted "for" "for local". */
struct rule *
cf_rule_new(struct parser *p, int line)
{
	struct rule	*r = xcalloc(1, sizeof(*r));

	r->conds[SLOT_FROM].kind = C_FROM_LOCAL;
	r->conds[SLOT_FOR].kind = C_FOR_LOCAL;
	r->set[SLOT_FROM] = r->set[SLOT_FOR] = 1;
	r->file = cf_here(p);
	r->line = line;
	TAILQ_INSERT_TAIL(&p->conf->rules, r, entry);
	return r;
}

int
parse_match(struct parser *p)
{
	struct rule		*r = cf_rule_new(p, cf_line(p));
	const struct token	*t;
	int			 neg;
	char			*kw;

	for (;;) {
		neg = 0;
		if (cf_peek(p, 0)->type == T_BANG) {
			cf_take(p);
			neg = 1;
		}
		t = cf_peek(p, 0);
		if (cf_is_kw(t, "action") || cf_is_kw(t, "reject"))
			return rule_decision(p, r, neg);
		if (t->type != T_WORD || t->quoted)
			return cf_unexpected(p, t, "a match option, \"action\" "
			    "or \"reject\"");
		kw = xstrdup(cf_take(p)->text);
		if (rule_cond(p, r, kw, neg) == -1) {
			free(kw);
			return -1;
		}
		free(kw);
	}
}

/* ---------------------------------------------------------------- filter */

static const char *const phase_names[FP_NPHASES] = {
	[FP_CONNECT] = "connect", [FP_HELO] = "helo", [FP_EHLO] = "ehlo",
	[FP_MAIL_FROM] = "mail-from", [FP_RCPT_TO] = "rcpt-to",
	[FP_DATA] = "data", [FP_COMMIT] = "commit",
};

static const struct fcond_word {
	const char		*word;
	enum filter_cond_kind	 kind;
	int			 arg;	/* 0 none, 1 required, 2 optional */
	enum filter_phase	 from;	/* first phase with this data */
} fcond_words[] = {
	{ "fcrdns", FC_FCRDNS, 0, FP_CONNECT },
	{ "rdns", FC_RDNS, 2, FP_CONNECT },
	{ "src", FC_SRC, 1, FP_CONNECT },
	{ "helo", FC_HELO, 1, FP_HELO },
	{ "auth", FC_AUTH, 2, FP_MAIL_FROM },
	{ "mail-from", FC_MAIL_FROM, 1, FP_MAIL_FROM },
	{ "rcpt-to", FC_RCPT_TO, 1, FP_RCPT_TO },
};

static struct filter *
filter_new(struct parser *p, char *name, int line)
{
	struct filter	*f = xcalloc(1, sizeof(*f));

	f->name = name;
	f->file = cf_here(p);
	f->line = line;
	TAILQ_INSERT_TAIL(&p->conf->filters, f, entry);
	return f;
}

static int
phase_allows(enum filter_phase phase, enum filter_phase from)
{
	/* ehlo sits beside helo: both have the helo name. */
	if (from == FP_HELO)
		return phase != FP_CONNECT;
	/* A transaction has many recipients: only its own phase has one. */
	if (from == FP_RCPT_TO)
		return phase == FP_RCPT_TO;
	return phase >= from;
}

static int
filter_cond(struct parser *p, struct filter *f, int neg)
{
	const struct token	*t = cf_peek(p, 0);
	struct filter_cond	*c;
	size_t			 i, n = sizeof(fcond_words) / sizeof(*fcond_words);
	size_t			 mark;
	struct cond		 tmp;

	for (i = 0; i < n; i++)
		if (cf_is_kw(t, fcond_words[i].word))
			break;
	if (i == n)
		return cf_unexpected(p, t, "a filter condition (fcrdns, rdns, "
		    "src, helo, auth, mail-from or rcpt-to)");
	cf_take(p);
	if (!phase_allows(f->phase, fcond_words[i].from))
		return cf_err(p, cf_line(p), "filter \"%s\": \"%s\" is not "
		    "known %sat phase %s", f->name, fcond_words[i].word,
		    f->phase < fcond_words[i].from ? "yet " : "",
		    phase_names[f->phase]);
	/* tmp lives on the stack: resolve its table name now. */
	memset(&tmp, 0, sizeof(tmp));
	mark = p->nrefs;
	if (cond_arg(p, &tmp, fcond_words[i].arg) == -1 ||
	    cf_resolve_from(p, mark) == -1)
		return -1;
	f->conds = xreallocarray(f->conds, f->nconds + 1, sizeof(*f->conds));
	c = &f->conds[f->nconds++];
	c->kind = fcond_words[i].kind;
	c->neg = neg;
	c->regex = tmp.regex;
	c->table = tmp.table;
	return 0;
}

/* "4xx ..." or "5xx ...": what the client will read. */
static int
smtp_reply_valid(const char *s)
{
	return (s[0] == '4' || s[0] == '5') && isdigit((unsigned char)s[1]) &&
	    isdigit((unsigned char)s[2]) && (s[3] == ' ' || s[3] == '\0');
}

static int
filter_decision(struct parser *p, struct filter *f)
{
	const struct token	*t = cf_peek(p, 0);

	if (cf_is_kw(t, "bypass"))
		f->decision = FD_BYPASS;
	else if (cf_is_kw(t, "junk"))
		f->decision = FD_JUNK;
	else if (cf_is_kw(t, "disconnect"))
		f->decision = FD_DISCONNECT;
	else if (cf_is_kw(t, "reject"))
		f->decision = FD_REJECT;
	else if (cf_is_kw(t, "rewrite"))
		f->decision = FD_REWRITE;
	else if (cf_is_kw(t, "report"))
		f->decision = FD_REPORT;
	else
		return cf_unexpected(p, t, "a condition or a decision (bypass, "
		    "junk, disconnect, reject, rewrite or report)");
	cf_take(p);
	if (f->decision == FD_JUNK && f->phase == FP_COMMIT)
		return cf_err(p, cf_line(p), "filter \"%s\": junk cannot be "
		    "decided at phase commit", f->name);
	/* Only these phases have an argument to rewrite. */
	if (f->decision == FD_REWRITE && f->phase != FP_HELO &&
	    f->phase != FP_EHLO && f->phase != FP_MAIL_FROM &&
	    f->phase != FP_RCPT_TO)
		return cf_err(p, cf_line(p), "filter \"%s\": rewrite needs a "
		    "phase with an argument (helo, ehlo, mail-from or rcpt-to),"
		    " not %s", f->name, phase_names[f->phase]);
	if (f->decision == FD_BYPASS || f->decision == FD_JUNK)
		return 0;
	if (cf_word(p, f->decision == FD_REWRITE ? "a value" :
	    f->decision == FD_REPORT ? "a report text" : "a message",
	    &f->message) == -1)
		return -1;
	if (strpbrk(f->message, "\r\n") != NULL)
		return cf_err(p, cf_line(p), "filter \"%s\": \"%s\" may not "
		    "hold a line break", f->name, f->message);
	if ((f->decision == FD_REJECT || f->decision == FD_DISCONNECT) &&
	    !smtp_reply_valid(f->message))
		return cf_err(p, cf_line(p), "filter \"%s\": message \"%s\" "
		    "must start with a 4xx or 5xx code", f->name, f->message);
	return 0;
}

static int
filter_builtin(struct parser *p, struct filter *f)
{
	const struct token	*t = cf_peek(p, 0);
	int			 i, neg;

	f->type = F_BUILTIN;
	for (i = 0; i < FP_NPHASES; i++)
		if (cf_is_kw(t, phase_names[i]))
			break;
	if (i == FP_NPHASES)
		return cf_unexpected(p, t, "a phase (connect, helo, ehlo, "
		    "mail-from, rcpt-to, data or commit)");
	cf_take(p);
	f->phase = i;
	if (!cf_is_kw(t = cf_peek(p, 0), "match"))
		return cf_unexpected(p, t, "\"match\"");
	cf_take(p);
	do {
		neg = 0;
		if (cf_peek(p, 0)->type == T_BANG) {
			cf_take(p);
			neg = 1;
		}
		if (filter_cond(p, f, neg) == -1)
			return -1;
		t = cf_peek(p, 0);
	} while (t->type == T_BANG || (t->type == T_WORD && !t->quoted &&
	    (strcmp(t->text, "fcrdns") == 0 || strcmp(t->text, "rdns") == 0 ||
	    strcmp(t->text, "src") == 0 || strcmp(t->text, "helo") == 0 ||
	    strcmp(t->text, "auth") == 0 || strcmp(t->text, "mail-from") == 0 ||
	    strcmp(t->text, "rcpt-to") == 0)));
	return filter_decision(p, f);
}

/* module NAME [ARG ...]: the arguments are the module's to read. */
static int
filter_module(struct parser *p, struct filter *f)
{
	const struct token	*t;

	f->type = F_MODULE;
	if (cf_name(p, "a module name", &f->module) == -1)
		return -1;
	while (!cf_is_eol(t = cf_peek(p, 0))) {
		if (t->type != T_WORD)
			return cf_unexpected(p, t, "a module argument (quote "
			    "arguments holding <, >, !, =, \",\" or braces)");
		f->args = xreallocarray(f->args, f->nargs + 1,
		    sizeof(*f->args));
		f->args[f->nargs++] = xstrdup(cf_take(p)->text);
	}
	return 0;
}

static int
filter_chain(struct parser *p, struct filter *f)
{
	const struct token	*t = cf_peek(p, 0);
	char			*name;

	f->type = F_CHAIN;
	if (t->type != T_LBRACE)
		return cf_unexpected(p, t, "\"{\"");
	cf_take(p);
	for (;;) {
		while (cf_peek(p, 0)->type == T_NL)
			cf_take(p);
		if (cf_name(p, "a filter name", &name) == -1)
			return -1;
		cf_ref(p, REF_FILTER, name, cf_line(p), NULL);
		f->chain = xreallocarray(f->chain, f->nchain + 1,
		    sizeof(*f->chain));
		f->chain[f->nchain++] = name;
		while (cf_peek(p, 0)->type == T_NL)
			cf_take(p);
		t = cf_peek(p, 0);
		if (t->type == T_RBRACE)
			break;
		if (t->type != T_COMMA)
			return cf_unexpected(p, t, "\",\" or \"}\"");
		cf_take(p);
	}
	cf_take(p);
	return 0;
}

int
parse_filter(struct parser *p)
{
	struct filter		*f;
	const struct token	*t;
	char			*name;
	int			 line = cf_line(p), rc;

	if (cf_name(p, "a filter name", &name) == -1)
		return -1;
	if ((f = config_filter_find(p->conf, name)) != NULL) {
		cf_err(p, line, "filter \"%s\" is already defined at %s:%d",
		    name, f->file, f->line);
		free(name);
		return -1;
	}
	f = filter_new(p, name, line);
	t = cf_peek(p, 0);
	if (cf_is_kw(t, "phase")) {
		cf_take(p);
		rc = filter_builtin(p, f);
	} else if (cf_is_kw(t, "proc")) {
		cf_take(p);
		f->type = F_PROC;
		rc = ref_opt(p, REF_PROC, "a proc name", &f->proc);
	} else if (cf_is_kw(t, "proc-exec")) {
		cf_take(p);
		f->type = F_PROC_EXEC;
		rc = cf_word(p, "a command", &f->command);
		if (rc == 0) {
			struct proc_params pp = { &f->user, &f->group,
			    &f->chroot, &f->protocol, &f->timeout };

			rc = cf_proc_params(p, &pp);
		}
	} else if (cf_is_kw(t, "chain")) {
		cf_take(p);
		rc = filter_chain(p, f);
	} else if (cf_is_kw(t, "module")) {
		cf_take(p);
		rc = filter_module(p, f);
	} else
		return cf_unexpected(p, t, "\"phase\", \"proc\", \"proc-exec\", "
		    "\"chain\" or \"module\"");
	return rc == -1 ? -1 : cf_eol(p);
}

/* ------------------------------------------------- whole-file checks */

/* A literal that can never match is a typo: refuse it at load. */
static int
check_literal(struct parser *p, const struct rule *r, const struct cond *c)
{
	const struct table	*t = c->table;
	regex_t			 re;
	size_t			 i;
	int			 rc;

	if (t == NULL || t->kind != TABLE_LIST || strcmp(t->type, "static"))
		return 0;
	for (i = 0; i < t->nentries; i++) {
		if (c->regex) {
			rc = regcomp(&re, t->entries[i].key,
			    REG_EXTENDED | REG_NOSUB);
			if (rc == 0) {
				regfree(&re);
				continue;
			}
			return cf_err_at(p, r->file, r->line, "invalid regular "
			    "expression \"%s\"", t->entries[i].key);
		}
		if (c->kind != C_FROM_SRC ||
		    table_check_entry(K_NETADDR, t->entries[i].key))
			;
		else if (t->anon)
			return cf_err_at(p, r->file, r->line, "from src "
			    "\"%s\": not an IP address or CIDR network",
			    t->entries[i].key);
		else
			return cf_err_at(p, t->file, t->line, "table \"%s\": "
			    "\"%s\" is not an IP address or CIDR network, as "
			    "\"from src\" at %s:%d requires", t->name,
			    t->entries[i].key, r->file, r->line);
		if (c->kind == C_TAG && strlen(t->entries[i].key) > 63)
			return cf_err_at(p, r->file, r->line, "tag \"%s\" is "
			    "longer than 63 bytes", t->entries[i].key);
	}
	return 0;
}

static int
check_chain(struct parser *p, const struct filter *f)
{
	const struct filter	*m;
	size_t			 i;

	for (i = 0; i < f->nchain; i++) {
		m = config_filter_find(p->conf, f->chain[i]);
		if (m != NULL && m->type == F_CHAIN)
			return cf_err_at(p, f->file, f->line, "filter chain "
			    "\"%s\": \"%s\" is a chain itself; chains cannot "
			    "contain chains", f->name, m->name);
	}
	return 0;
}

int
cf_check_rules(struct parser *p)
{
	struct action		*a;
	const struct rule	*r;
	const struct filter	*f;
	int			 i;

	TAILQ_FOREACH(a, &p->conf->actions, entry) {
		if (cf_action_check(p, a) == -1)
			return -1;
		if (a->srs && p->conf->srs_key == NULL)
			return cf_err_at(p, a->file, a->line, "action \"%s\": "
			    "srs needs an srs key (srs key SECRET)", a->name);
	}
	TAILQ_FOREACH(r, &p->conf->rules, entry)
		for (i = 0; i < SLOT_NSLOTS; i++)
			if (r->set[i] && check_literal(p, r, &r->conds[i]) == -1)
				return -1;
	TAILQ_FOREACH(f, &p->conf->filters, entry)
		if (f->type == F_CHAIN && check_chain(p, f) == -1)
			return -1;
	return 0;
}
