/*
 * parse_legacy.c - the smtpd.conf grammar of OpenSMTPD before 6.4
 * (`accept ... deliver to ...`, `relay via`, `expire`, `limit session`),
 * translated into the current model as it is read: each accept rule
 * becomes a `match` and, unless an identical one exists, an action named
 * "legacy-N".  The first old-style line of each file gets one warning;
 * `smtpd -n -v` prints the translation.
 */
#include <stdlib.h>
#include <string.h>

#include "parse.h"

/* Old relay URL schemes and what they mean today. */
static const struct {
	const char	*old;
	const char	*now;
} schemes[] = {
	{ "tls+auth://", "smtp+tls://" },
	{ "tls://", "smtp+tls://" },
	{ "smtps+auth://", "smtps://" },
	{ "ssl+auth://", "smtps://" },
	{ "ssl://", "smtps://" },
	{ "secure+auth://", "smtp+tls://" },
	{ "secure://", "smtp+tls://" },
};

static char *
translate_url(const char *url)
{
	char	*out;
	size_t	 i, n;

	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		n = strlen(schemes[i].old);
		if (strncmp(url, schemes[i].old, n) == 0) {
			xasprintf(&out, "%s%s", schemes[i].now, url + n);
			return out;
		}
	}
	return xstrdup(url);
}

/* [!] after a keyword, as the old grammar placed it. */
static int
bang(struct parser *p)
{
	if (cf_peek(p, 0)->type != T_BANG)
		return 0;
	cf_take(p);
	return 1;
}

static int
set_cond(struct parser *p, struct rule *r, int slot, enum cond_kind kind,
    int neg, int arg)
{
	struct cond	*c = &r->conds[slot];

	if (r->set[slot] == 2)
		return cf_err(p, cf_line(p), "\"%s\" given twice", cf_last(p));
	r->set[slot] = 2;
	memset(c, 0, sizeof(*c));
	c->kind = kind;
	c->neg = neg;
	if (!arg)
		return 0;
	return cf_table_arg(p, "a value or a <table>", &c->table);
}

static int
legacy_from(struct parser *p, struct rule *r)
{
	const struct token	*t;
	int			 neg = bang(p);

	t = cf_peek(p, 0);
	if (cf_is_kw(t, "any") || cf_is_kw(t, "local")) {
		cf_take(p);
		return set_cond(p, r, SLOT_FROM, strcmp(cf_last(p), "any") == 0 ?
		    C_FROM_ANY : C_FROM_LOCAL, neg, 0);
	}
	if (cf_is_kw(t, "source") || cf_is_kw(t, "src")) {
		cf_take(p);
		return set_cond(p, r, SLOT_FROM, C_FROM_SRC, neg, 1);
	}
	if (t->type == T_LT)
		return set_cond(p, r, SLOT_FROM, C_FROM_SRC, neg, 1);
	return cf_unexpected(p, t, "\"any\", \"local\" or \"source <table>\"");
}

static int
legacy_for(struct parser *p, struct rule *r)
{
	const struct token	*t;
	int			 neg = bang(p);

	t = cf_peek(p, 0);
	if (cf_is_kw(t, "any") || cf_is_kw(t, "local")) {
		cf_take(p);
		return set_cond(p, r, SLOT_FOR, strcmp(cf_last(p), "any") == 0 ?
		    C_FOR_ANY : C_FOR_LOCAL, neg, 0);
	}
	if (cf_is_kw(t, "domain")) {
		cf_take(p);
		return set_cond(p, r, SLOT_FOR, C_FOR_DOMAIN, neg, 1);
	}
	return cf_unexpected(p, t, "\"any\", \"local\" or \"domain\"");
}

/* deliver to mbox | maildir [path] | lmtp DEST [rcpt-to] | mda CMD */
static int
legacy_deliver(struct parser *p, struct action *a)
{
	const struct token	*t;

	if (!cf_is_kw(t = cf_peek(p, 0), "to"))
		return cf_unexpected(p, t, "\"to\"");
	cf_take(p);
	t = cf_peek(p, 0);
	if (cf_is_kw(t, "mbox"))
		a->method = A_MBOX;
	else if (cf_is_kw(t, "maildir"))
		a->method = A_MAILDIR;
	else if (cf_is_kw(t, "lmtp"))
		a->method = A_LMTP;
	else if (cf_is_kw(t, "mda"))
		a->method = A_MDA;
	else
		return cf_unexpected(p, t, "\"mbox\", \"maildir\", \"lmtp\" or "
		    "\"mda\"");
	cf_take(p);
	return cf_method_args(p, a, "expire");
}

/* backup [MX]: the old grammar named the mail exchanger directly. */
static int
legacy_backup(struct parser *p, struct action *a)
{
	static const char *const words[] = {
		"via", "tls", "auth", "as", "source", "hostname", "hostnames",
		"helo", "pki", "ca", "expire",
	};
	const struct token	*t;

	if (a->backup)
		return cf_twice(p, "backup");
	a->backup = 1;
	t = cf_peek(p, 0);
	if (t->type != T_WORD || (!t->quoted && CF_IN_LIST(t->text, words)))
		return 0;
	return cf_word(p, "a mail exchanger name", &a->backup_mx);
}

/* relay [backup [mx]] [via URL] [tls [verify]] [auth <t>] [as A] ... */
static int
legacy_relay_option(struct parser *p, struct action *a, const char *opt)
{
	char	*url;
	int	 handled;

	if (strcmp(opt, "via") == 0) {
		if (a->host != NULL)
			return cf_twice(p, opt);
		if (cf_word(p, "a relay URL", &url) == -1)
			return -1;
		a->host = translate_url(url);
		free(url);
		return 0;
	}
	if (strcmp(opt, "tls") == 0) {
		/* Old tls did not verify; "tls verify" did. */
		if (a->tls)
			return cf_twice(p, opt);
		a->tls = RELAY_TLS_NO_VERIFY;
		if (cf_is_kw(cf_peek(p, 0), "verify")) {
			cf_take(p);
			a->tls = RELAY_TLS_VERIFY;
		}
		return 0;
	}
	if (strcmp(opt, "as") == 0)
		return cf_string_opt(p, opt, "an address", &a->mail_from);
	if (strcmp(opt, "source") == 0)
		return cf_action_option(p, a, "src", &handled);
	if (strcmp(opt, "hostname") == 0)
		return cf_string_opt(p, opt, "a host name", &a->helo);
	if (strcmp(opt, "hostnames") == 0 || strcmp(opt, "helo") == 0)
		return cf_action_option(p, a, "helo-src", &handled);
	if (strcmp(opt, "backup") == 0)
		return legacy_backup(p, a);
	if (strcmp(opt, "auth") == 0 ||
	    strcmp(opt, "pki") == 0 || strcmp(opt, "ca") == 0)
		return cf_action_option(p, a, opt, &handled);
	return 1;
}

/* The action's name: an identical earlier one, else the next legacy-N. */
static void
legacy_action_name(struct parser *p, struct action *a)
{
	struct action	*o;

	TAILQ_FOREACH(o, &p->conf->actions, entry) {
		if (o == a || strncmp(o->name, "legacy-", 7) != 0)
			continue;
		if (action_equal(o, a)) {
			free(a->name);
			a->name = xstrdup(o->name);
			return;
		}
	}
	do {
		free(a->name);
		xasprintf(&a->name, "legacy-%u", ++p->nlegacy_actions);
	} while (config_action_find(p->conf, a->name) != a);
}

/* Options that sat between the destination and the action. */
struct pending {
	struct table	*alias, *virtual, *userbase;
	int		 forward_only;
};

static int
legacy_action(struct parser *p, struct rule *r, struct pending *pd,
    const char *method, size_t mark)
{
	struct action		*a, *o;
	const struct token	*t;
	char			*opt;
	int			 rc = 0;

	a = cf_action_new(p, xstrdup("legacy-?"), r->line);
	if (strcmp(method, "deliver") == 0)
		rc = legacy_deliver(p, a);
	else if (strcmp(method, "relay") == 0)
		a->method = A_RELAY;
	else
		a->method = A_FORWARD_ONLY;
	while (rc == 0 && !cf_is_eol(t = cf_peek(p, 0))) {
		if (t->type != T_WORD || t->quoted)
			return cf_unexpected(p, t, "an option or end of line");
		opt = xstrdup(cf_take(p)->text);
		if (strcmp(opt, "expire") == 0)
			rc = a->ttl ? cf_twice(p, opt) :
			    cf_duration(p, "expire", &a->ttl);
		else if (a->method != A_RELAY && strcmp(opt, "as") == 0)
			rc = cf_string_opt(p, "as", "a user name", &a->user);
		else if (a->method != A_RELAY)
			rc = cf_err(p, cf_line(p), "unknown option \"%s\"", opt);
		else if ((rc = legacy_relay_option(p, a, opt)) == 1)
			rc = cf_err(p, cf_line(p), "unknown relay option "
			    "\"%s\"", opt);
		free(opt);
	}
	/*
	 * The old grammar declared tables before use: resolve this rule's
	 * names now, so identical actions compare equal and can be shared.
	 */
	if (rc == -1 || cf_resolve_from(p, mark) == -1)
		return -1;
	a->alias = pd->alias;
	a->virtual = pd->virtual;
	a->userbase = pd->userbase;
	legacy_action_name(p, a);
	if ((o = config_action_find(p->conf, a->name)) != a) {
		TAILQ_REMOVE(&p->conf->actions, a, entry);
		action_free(a);
		a = o;
	}
	r->action = a;
	return cf_eol(p);
}

static void
remember_local(struct parser *p, struct rule *r)
{
	if (r->conds[SLOT_FROM].kind != C_FROM_LOCAL ||
	    r->conds[SLOT_FROM].neg)
		return;
	p->legacy_local = xreallocarray(p->legacy_local,
	    p->nlegacy_local + 1, sizeof(*p->legacy_local));
	p->legacy_local[p->nlegacy_local++] = r;
}

/*
 * Before 6.4, a client that authenticated counted as local, so `accept
 * from local ... relay` let it relay.  Today that is `from auth`: when a
 * listener offers AUTH, each such rule gets a twin right after it.
 */
void
cf_legacy_finish(struct parser *p)
{
	const struct listen_conf	*lc;
	struct rule			*r, *twin;
	size_t				 i;

	TAILQ_FOREACH(lc, &p->conf->listen_confs, entry)
		if (lc->flags & (LO_AUTH | LO_AUTH_OPTIONAL))
			break;
	for (i = 0; lc != NULL && i < p->nlegacy_local; i++) {
		r = p->legacy_local[i];
		twin = xcalloc(1, sizeof(*twin));
		*twin = *r;
		twin->file = xstrdup(r->file);
		memset(&twin->conds[SLOT_FROM], 0, sizeof(twin->conds[0]));
		twin->conds[SLOT_FROM].kind = C_FROM_AUTH;
		TAILQ_INSERT_AFTER(&p->conf->rules, r, twin, entry);
	}
}

int
parse_legacy_accept(struct parser *p, int reject)
{
	struct rule		*r = cf_rule_new(p, cf_line(p));
	struct pending		 pd;
	const struct token	*t;
	char			*kw;
	size_t			 mark;
	int			 rc = 0, neg;

	cf_legacy(p, r->line);
	memset(&pd, 0, sizeof(pd));
	mark = p->nrefs;
	r->reject = reject;
	while (rc == 0) {
		t = cf_peek(p, 0);
		if (cf_is_eol(t)) {
			if (!reject)
				return cf_unexpected(p, t, "\"deliver to\", "
				    "\"relay\" or \"forward-only\"");
			if (cf_resolve_from(p, mark) == -1)
				return -1;
			return cf_eol(p);
		}
		if (t->type != T_WORD || t->quoted)
			return cf_unexpected(p, t, "a rule option");
		kw = xstrdup(cf_take(p)->text);
		if (!reject && (strcmp(kw, "deliver") == 0 ||
		    strcmp(kw, "relay") == 0 ||
		    strcmp(kw, "forward-only") == 0)) {
			rc = legacy_action(p, r, &pd, kw, mark);
			free(kw);
			if (rc == 0)
				remember_local(p, r);
			return rc;
		}
		if (strcmp(kw, "from") == 0)
			rc = legacy_from(p, r);
		else if (strcmp(kw, "for") == 0)
			rc = legacy_for(p, r);
		else if (strcmp(kw, "tagged") == 0) {
			neg = bang(p);
			rc = set_cond(p, r, SLOT_TAG, C_TAG, neg, 1);
		} else if (strcmp(kw, "sender") == 0) {
			neg = bang(p);
			rc = set_cond(p, r, SLOT_MAIL_FROM, C_MAIL_FROM, neg, 1);
		} else if (strcmp(kw, "recipient") == 0) {
			neg = bang(p);
			rc = set_cond(p, r, SLOT_RCPT_TO, C_RCPT_TO, neg, 1);
		} else if (!reject && strcmp(kw, "alias") == 0)
			rc = cf_table_ref(p, &pd.alias);
		else if (!reject && strcmp(kw, "virtual") == 0)
			rc = cf_table_ref(p, &pd.virtual);
		else if (!reject && strcmp(kw, "userbase") == 0)
			rc = cf_table_ref(p, &pd.userbase);
		else
			rc = cf_err(p, cf_line(p), "unknown %s option \"%s\"",
			    reject ? "reject" : "accept", kw);
		free(kw);
	}
	return rc;
}

int
parse_legacy_expire(struct parser *p)
{
	cf_legacy(p, cf_line(p));
	if (cf_duration(p, "expire", &p->conf->queue_ttl) == -1)
		return -1;
	return cf_eol(p);
}

int
parse_legacy_bounce_warn(struct parser *p)
{
	cf_legacy(p, cf_line(p));
	if (cf_warn_intervals(p) == -1)
		return -1;
	return cf_eol(p);
}

/* limit session max-rcpt N | max-mails N; limit mta/scheduler: tuning. */
int
parse_legacy_limit(struct parser *p)
{
	const struct token	*t = cf_peek(p, 0);
	int			 session;
	size_t			 v, *slot;
	char			*opt;

	cf_legacy(p, cf_line(p));
	if (!cf_is_kw(t, "session") && !cf_is_kw(t, "mta") &&
	    !cf_is_kw(t, "scheduler"))
		return cf_unexpected(p, t, "\"session\", \"mta\" or "
		    "\"scheduler\"");
	session = cf_is_kw(t, "session");
	cf_take(p);
	while (!cf_is_eol(cf_peek(p, 0))) {
		if (cf_word(p, "a limit name", &opt) == -1)
			return -1;
		slot = NULL;
		if (session && strcmp(opt, "max-rcpt") == 0)
			slot = &p->conf->max_rcpt;
		else if (session && strcmp(opt, "max-mails") == 0)
			slot = &p->conf->max_mails;
		if (cf_count(p, opt, 1, UINT32_MAX, slot ? slot : &v) == -1) {
			free(opt);
			return -1;
		}
		if (slot == NULL)
			cf_warn(p, cf_line(p), "limit %s: \"%s\" has no "
			    "equivalent here and is ignored", session ?
			    "session" : "mta/scheduler", opt);
		free(opt);
	}
	return cf_eol(p);
}
