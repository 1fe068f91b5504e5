/*
 * config_print.c - writes the configuration model back as smtpd.conf text
 * in the current grammar, whichever grammar the file was written in.
 *
 * The output is canonical: one fixed order of sections and options, every
 * string quoted, only values that differ from the defaults.  Two files
 * that load to the same model therefore print the same text, and the text
 * loads back to that model, so `smtpd -n -v` can show an administrator
 * what an old-style file means and the tests can compare models as text.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "smtpd.h"

/*
 * Sections are separated by one blank line, but only between sections
 * that printed something; a section learns it is the first to speak
 * through this state rather than by buffering its output.
 */
struct printer {
	FILE	*fp;
	int	 any;		/* an earlier section printed a line */
	int	 cur;		/* the current section printed a line */
};

static const char *const cond_words[C_NKINDS] = {
	[C_FROM_ANY]		= "from any",
	[C_FROM_LOCAL]		= "from local",
	[C_FROM_SOCKET]		= "from socket",
	[C_FROM_SRC]		= "from src",
	[C_FROM_AUTH]		= "from auth",
	[C_FROM_RDNS]		= "from rdns",
	[C_FROM_MAIL_FROM]	= "from mail-from",
	[C_FOR_ANY]		= "for any",
	[C_FOR_LOCAL]		= "for local",
	[C_FOR_DOMAIN]		= "for domain",
	[C_FOR_RCPT_TO]		= "for rcpt-to",
	[C_AUTH]		= "auth",
	[C_HELO]		= "helo",
	[C_MAIL_FROM]		= "mail-from",
	[C_RCPT_TO]		= "rcpt-to",
	[C_TAG]			= "tag",
	[C_TLS]			= "tls",
};

static const char *const phase_words[FP_NPHASES] = {
	[FP_CONNECT]	= "connect",
	[FP_HELO]	= "helo",
	[FP_EHLO]	= "ehlo",
	[FP_MAIL_FROM]	= "mail-from",
	[FP_RCPT_TO]	= "rcpt-to",
	[FP_DATA]	= "data",
	[FP_COMMIT]	= "commit",
};

static const char *const fcond_words[FC_NKINDS] = {
	[FC_FCRDNS]	= "fcrdns",
	[FC_RDNS]	= "rdns",
	[FC_SRC]	= "src",
	[FC_HELO]	= "helo",
	[FC_AUTH]	= "auth",
	[FC_MAIL_FROM]	= "mail-from",
	[FC_RCPT_TO]	= "rcpt-to",
};

/* Starts a line, with the blank line that separates it from the last
 * section when it is the first line of its own. */
static FILE *
line(struct printer *p)
{
	if (!p->cur && p->any)
		fputc('\n', p->fp);
	p->cur = 1;
	return p->fp;
}

static void
section_end(struct printer *p)
{
	if (p->cur)
		p->any = 1;
	p->cur = 0;
}

/* The text of s with the two characters the lexer treats specially
 * inside quotes escaped, so any value survives a reload unchanged. */
static void
put_escaped(FILE *fp, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', fp);
		fputc(*s, fp);
	}
}

static void
put_str(FILE *fp, const char *s)
{
	fputc('"', fp);
	put_escaped(fp, s);
	fputc('"', fp);
}

/* A keyword followed by a quoted value, when the value is set. */
static void
put_opt(FILE *fp, const char *kw, const char *value)
{
	if (value == NULL)
		return;
	fprintf(fp, " %s ", kw);
	put_str(fp, value);
}

/* Durations in the largest unit that divides them exactly, as written
 * by people ("4h" rather than "14400s"). */
static void
put_duration(FILE *fp, uint32_t secs)
{
	static const struct {
		uint32_t	 len;
		char		 unit;
	} units[] = { { 86400, 'd' }, { 3600, 'h' }, { 60, 'm' } };
	size_t	 i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (secs != 0 && secs % units[i].len == 0) {
			fprintf(fp, "%u%c", secs / units[i].len, units[i].unit);
			return;
		}
	fprintf(fp, "%us", secs);
}

/* A literal in a rule made an anonymous one-value list: it goes back
 * into the rule as that literal, and has no `table` line of its own. */
static int
table_is_inline(const struct table *t)
{
	return t->anon && t->kind == TABLE_LIST && t->nentries == 1;
}

static void
put_table_arg(FILE *fp, const struct table *t)
{
	if (table_is_inline(t))
		put_str(fp, t->entries[0].key);
	else
		fprintf(fp, "<%s>", t->name);
}

static void
put_table_opt(FILE *fp, const char *kw, const struct table *t)
{
	if (t == NULL)
		return;
	fprintf(fp, " %s ", kw);
	put_table_arg(fp, t);
}

/* ---------------------------------------------------------- globals */

static void
print_module_path(struct printer *p, const struct config *conf)
{
	if (conf->module_path == NULL)
		return;
	fputs("module-path ", line(p));
	put_str(p->fp, conf->module_path);
	fputc('\n', p->fp);
}

static void
print_smtp(struct printer *p, const struct config *conf)
{
	char	 delim[2];

	if (conf->max_message_size != DEFAULT_MAX_MSGSIZE)
		fprintf(line(p), "smtp max-message-size %zu\n",
		    conf->max_message_size);
	if (conf->max_mails != DEFAULT_MAX_MAILS)
		fprintf(line(p), "smtp limit max-mails %zu\n", conf->max_mails);
	if (conf->max_auth_failures != DEFAULT_MAX_AUTH_FAILURES)
		fprintf(line(p), "smtp limit max-auth-failures %zu\n",
		    conf->max_auth_failures);
	if (conf->max_rcpt != DEFAULT_MAX_RCPT)
		fprintf(line(p), "smtp limit max-rcpt %zu\n", conf->max_rcpt);
	if (conf->filter_protocol != NULL) {
		fputs("smtp filter-protocol ", line(p));
		put_str(p->fp, conf->filter_protocol);
		fputc('\n', p->fp);
	}
	if (conf->filter_timeout != DEFAULT_FILTER_TIMEOUT) {
		fputs("smtp filter-timeout ", line(p));
		put_duration(p->fp, conf->filter_timeout);
		fputc('\n', p->fp);
	}
	if (conf->subaddr_delim != DEFAULT_SUBADDR_DELIM) {
		delim[0] = conf->subaddr_delim;
		delim[1] = '\0';
		fputs("smtp sub-addr-delim ", line(p));
		put_str(p->fp, delim);
		fputc('\n', p->fp);
	}
	if (conf->smtp_ciphers != NULL) {
		fputs("smtp ciphers ", line(p));
		put_str(p->fp, conf->smtp_ciphers);
		fputc('\n', p->fp);
	}
	if (conf->pam_service != NULL) {
		fputs("smtp pam-service ", line(p));
		put_str(p->fp, conf->pam_service);
		fputc('\n', p->fp);
	}
}

static void
print_queue(struct printer *p, const struct config *conf)
{
	if (conf->queue_compression)
		fputs("queue compression\n", line(p));
	if (conf->queue_encryption) {
		fputs("queue encryption", line(p));
		/* Key material never leaves the daemon, not even here. */
		if (conf->queue_key != NULL) {
			fputc(' ', p->fp);
			put_str(p->fp, strcmp(conf->queue_key, "stdin") == 0 ?
			    "stdin" : QUEUE_KEY_HIDDEN);
		}
		fputc('\n', p->fp);
	}
	if (conf->queue_ttl != DEFAULT_EXPIRE) {
		fputs("queue ttl ", line(p));
		put_duration(p->fp, conf->queue_ttl);
		fputc('\n', p->fp);
	}
}

/* The default is one warning after 4h; an empty list means the same. */
static int
warn_is_default(const struct config *conf)
{
	return conf->nwarn_interval == 0 || (conf->nwarn_interval == 1 &&
	    conf->warn_interval[0] == DEFAULT_WARN_INTERVAL);
}

static void
print_bounce_mta(struct printer *p, const struct config *conf)
{
	size_t	 i, n;

	if (!warn_is_default(conf)) {
		fputs("bounce warn-interval ", line(p));
		n = conf->nwarn_interval;
		if (n > MAX_WARN_INTERVALS)
			n = MAX_WARN_INTERVALS;
		for (i = 0; i < n; i++) {
			if (i > 0)
				fputs(", ", p->fp);
			put_duration(p->fp, conf->warn_interval[i]);
		}
		fputc('\n', p->fp);
	}
	if (conf->max_deferred != DEFAULT_MAX_DEFERRED)
		fprintf(line(p), "mta max-deferred %zu\n", conf->max_deferred);
}

static void
print_srs(struct printer *p, const struct config *conf)
{
	if (conf->srs_key != NULL) {
		fputs("srs key ", line(p));
		put_str(p->fp, conf->srs_key);
		fputc('\n', p->fp);
	}
	if (conf->srs_key_backup != NULL) {
		fputs("srs key backup ", line(p));
		put_str(p->fp, conf->srs_key_backup);
		fputc('\n', p->fp);
	}
	if (conf->srs_ttl != DEFAULT_SRS_TTL) {
		fputs("srs ttl ", line(p));
		put_duration(p->fp, conf->srs_ttl);
		fputc('\n', p->fp);
	}
}

static void
print_globals(struct printer *p, const struct config *conf)
{
	if (conf->admd != NULL) {
		fputs("admd ", line(p));
		put_str(p->fp, conf->admd);
		fputc('\n', p->fp);
	}
	print_smtp(p, conf);
	print_queue(p, conf);
	print_bounce_mta(p, conf);
	print_srs(p, conf);
}

static void
print_wrappers(struct printer *p, const struct config *conf)
{
	const struct wrapper	*w;

	TAILQ_FOREACH(w, &conf->wrappers, entry) {
		fputs("mda wrapper ", line(p));
		put_str(p->fp, w->name);
		fputc(' ', p->fp);
		put_str(p->fp, w->command);
		fputc('\n', p->fp);
	}
}

/* ------------------------------------------------------ pki and ca */

static void
print_pki_line(struct printer *p, const char *dir, const char *name,
    const char *kw, const char *value)
{
	fprintf(line(p), "%s ", dir);
	put_str(p->fp, name);
	fprintf(p->fp, " %s ", kw);
	put_str(p->fp, value);
	fputc('\n', p->fp);
}

static void
print_pkis(struct printer *p, const struct config *conf)
{
	const struct pki	*k;
	const struct ca		*c;

	TAILQ_FOREACH(k, &conf->pkis, entry) {
		if (k->cert != NULL)
			print_pki_line(p, "pki", k->name, "cert", k->cert);
		if (k->key != NULL)
			print_pki_line(p, "pki", k->name, "key", k->key);
		if (k->dhe != DHE_NONE) {
			/* A keyword, not a string: printed bare. */
			fputs("pki ", line(p));
			put_str(p->fp, k->name);
			fprintf(p->fp, " dhe %s\n",
			    k->dhe == DHE_LEGACY ? "legacy" : "auto");
		}
	}
	TAILQ_FOREACH(c, &conf->cas, entry)
		if (c->cert != NULL)
			print_pki_line(p, "ca", c->name, "cert", c->cert);
}

/* ----------------------------------------------------------- tables */

static void
print_static_table(FILE *fp, const struct table *t)
{
	size_t	 i;

	fputs(" {", fp);
	for (i = 0; i < t->nentries; i++) {
		fputs(i == 0 ? " " : ", ", fp);
		put_str(fp, t->entries[i].key);
		if (t->kind == TABLE_MAP && t->entries[i].value != NULL) {
			fputs(" = ", fp);
			put_str(fp, t->entries[i].value);
		}
	}
	fputs(" }", fp);
}

static void
print_tables(struct printer *p, const struct config *conf)
{
	const struct table	*t;
	FILE			*fp;

	TAILQ_FOREACH(t, &conf->tables, entry) {
		if (table_is_inline(t))
			continue;
		fp = line(p);
		fputs("table ", fp);
		put_str(fp, t->name);
		if (t->config == NULL)
			print_static_table(fp, t);
		else {
			fputs(" \"", fp);
			put_escaped(fp, t->type != NULL ? t->type : "file");
			fputc(':', fp);
			put_escaped(fp, t->config);
			fputc('"', fp);
		}
		fputc('\n', fp);
	}
}

/* ---------------------------------------------------- procs, filters */

static void
print_exec_opts(FILE *fp, const char *user, const char *group,
    const char *chroot, const char *protocol, uint32_t timeout)
{
	put_opt(fp, "user", user);
	put_opt(fp, "group", group);
	put_opt(fp, "chroot", chroot);
	put_opt(fp, "protocol", protocol);
	if (timeout != 0) {
		fputs(" timeout ", fp);
		put_duration(fp, timeout);
	}
}

static void
print_procs(struct printer *p, const struct config *conf)
{
	const struct proc	*pr;

	TAILQ_FOREACH(pr, &conf->procs, entry) {
		fputs("proc ", line(p));
		put_str(p->fp, pr->name);
		fputc(' ', p->fp);
		put_str(p->fp, pr->command);
		print_exec_opts(p->fp, pr->user, pr->group, pr->chroot,
		    pr->protocol, pr->timeout);
		fputc('\n', p->fp);
	}
}

static void
print_chain(FILE *fp, const struct filter *f)
{
	size_t	 i;

	fputs("{", fp);
	for (i = 0; i < f->nchain; i++) {
		fputs(i == 0 ? " " : ", ", fp);
		put_str(fp, f->chain[i]);
	}
	fputs(" }", fp);
}

static void
print_decision(FILE *fp, const struct filter *f)
{
	const char	*msg = f->message != NULL ? f->message : "";

	switch (f->decision) {
	case FD_BYPASS:
		fputs(" bypass", fp);
		break;
	case FD_JUNK:
		fputs(" junk", fp);
		break;
	case FD_DISCONNECT:
		put_opt(fp, "disconnect", msg);
		break;
	case FD_REJECT:
		put_opt(fp, "reject", msg);
		break;
	case FD_REWRITE:
		put_opt(fp, "rewrite", msg);
		break;
	case FD_REPORT:
		put_opt(fp, "report", msg);
		break;
	}
}

static void
print_builtin(FILE *fp, const struct filter *f)
{
	const struct filter_cond	*c;
	size_t				 i;

	fprintf(fp, " phase %s match",
	    f->phase < FP_NPHASES ? phase_words[f->phase] : "?");
	for (i = 0; i < f->nconds; i++) {
		c = &f->conds[i];
		fprintf(fp, " %s%s%s", c->neg ? "!" : "",
		    c->kind < FC_NKINDS ? fcond_words[c->kind] : "?",
		    c->regex ? " regex" : "");
		if (c->table != NULL) {
			fputc(' ', fp);
			put_table_arg(fp, c->table);
		}
	}
	print_decision(fp, f);
}

static void
print_filter(FILE *fp, const struct filter *f)
{
	size_t	 i;

	fputs("filter ", fp);
	put_str(fp, f->name);
	switch (f->type) {
	case F_BUILTIN:
		print_builtin(fp, f);
		break;
	case F_PROC:
		put_opt(fp, "proc", f->proc);
		break;
	case F_PROC_EXEC:
		put_opt(fp, "proc-exec", f->command);
		print_exec_opts(fp, f->user, f->group, f->chroot,
		    f->protocol, f->timeout);
		break;
	case F_CHAIN:
		fputs(" chain ", fp);
		print_chain(fp, f);
		break;
	case F_MODULE:
		put_opt(fp, "module", f->module);
		for (i = 0; i < f->nargs; i++) {
			fputc(' ', fp);
			put_str(fp, f->args[i]);
		}
		break;
	}
	fputc('\n', fp);
}

static void
print_filters(struct printer *p, const struct config *conf)
{
	const struct filter	*f;

	print_procs(p, conf);
	TAILQ_FOREACH(f, &conf->filters, entry)
		if (!f->anon)
			print_filter(line(p), f);
}

/* -------------------------------------------------------- listeners */

static const struct filter *
filter_by_name(const struct config *conf, const char *name)
{
	const struct filter	*f;

	TAILQ_FOREACH(f, &conf->filters, entry)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void
print_listen_tls(FILE *fp, const struct listen_conf *lc)
{
	if (lc->flags & LO_TLS_REQUIRE)
		fputs(" tls-require", fp);
	else if (lc->flags & LO_TLS)
		fputs(" tls", fp);
	else if (lc->flags & LO_SMTPS)
		fputs(" smtps", fp);
	if ((lc->flags & LO_TLS_VERIFY) &&
	    (lc->flags & (LO_TLS_REQUIRE | LO_SMTPS)))
		fputs(" verify", fp);
}

static void
print_listen_auth(FILE *fp, const struct listen_conf *lc)
{
	if (lc->flags & LO_AUTH)
		fputs(" auth", fp);
	else if (lc->flags & LO_AUTH_OPTIONAL)
		fputs(" auth-optional", fp);
	else
		return;
	if (lc->auth != NULL) {
		fputc(' ', fp);
		put_table_arg(fp, lc->auth);
	}
}

static void
print_listen_filter(FILE *fp, const struct config *conf,
    const struct listen_conf *lc)
{
	const struct filter	*f;

	if (lc->filter == NULL)
		return;
	f = filter_by_name(conf, lc->filter);
	if (f != NULL && f->anon && f->type == F_CHAIN) {
		fputs(" filter ", fp);
		print_chain(fp, f);
	} else
		put_opt(fp, "filter", lc->filter);
}

static void
print_listen_flags(FILE *fp, const struct listen_conf *lc)
{
	static const struct {
		uint32_t	 flag;
		const char	*word;
	} words[] = {
		{ LO_MASK_SRC,		"mask-src" },
		{ LO_NO_DSN,		"no-dsn" },
		{ LO_PROXY_V2,		"proxy-v2" },
		{ LO_RECEIVED_AUTH,	"received-auth" },
	};
	size_t	 i;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (lc->flags & words[i].flag)
			fprintf(fp, " %s", words[i].word);
}

/* The options of one listener; `listen on socket` only ever has a few
 * of them set, so both forms share this one order. */
static void
print_listen_opts(FILE *fp, const struct config *conf,
    const struct listen_conf *lc)
{
	size_t	 i;

	if (lc->family == LISTEN_INET4)
		fputs(" inet4", fp);
	else if (lc->family == LISTEN_INET6)
		fputs(" inet6", fp);
	if (lc->port != 0)
		fprintf(fp, " port %d", lc->port);
	print_listen_tls(fp, lc);
	for (i = 0; i < lc->npki && i < LISTEN_MAX_PKI; i++)
		put_opt(fp, "pki", lc->pki[i]);
	put_opt(fp, "ca", lc->ca);
	print_listen_auth(fp, lc);
	put_opt(fp, "tag", lc->tag);
	put_opt(fp, "hostname", lc->hostname);
	put_table_opt(fp, "hostnames", lc->hostnames);
	print_listen_flags(fp, lc);
	if (lc->senders != NULL) {
		put_table_opt(fp, "senders", lc->senders);
		if (lc->flags & LO_MASQUERADE)
			fputs(" masquerade", fp);
	}
	print_listen_filter(fp, conf, lc);
	put_opt(fp, "ciphers", lc->ciphers);
	put_opt(fp, "protocols", lc->protocols);
}

static void
print_listeners(struct printer *p, const struct config *conf)
{
	const struct listen_conf	*lc;

	if (conf->socket_listener != NULL) {
		fputs("listen on socket", line(p));
		print_listen_opts(p->fp, conf, conf->socket_listener);
		fputc('\n', p->fp);
	}
	TAILQ_FOREACH(lc, &conf->listen_confs, entry) {
		if (lc->socket)
			continue;
		fputs("listen on ", line(p));
		put_str(p->fp, lc->on != NULL ? lc->on : "");
		print_listen_opts(p->fp, conf, lc);
		fputc('\n', p->fp);
	}
}

/* ---------------------------------------------------------- actions */

static void
print_method(FILE *fp, const struct action *a)
{
	switch (a->method) {
	case A_MBOX:
		fputs(" mbox", fp);
		break;
	case A_MAILDIR:
		fputs(" maildir", fp);
		if (a->path != NULL) {
			fputc(' ', fp);
			put_str(fp, a->path);
		}
		if (a->junk)
			fputs(" junk", fp);
		break;
	case A_LMTP:
		put_opt(fp, "lmtp", a->lmtp_dest != NULL ? a->lmtp_dest : "");
		if (a->lmtp_rcpt_to)
			fputs(" rcpt-to", fp);
		break;
	case A_MDA:
		put_opt(fp, "mda", a->mda_cmd != NULL ? a->mda_cmd : "");
		break;
	case A_RELAY:
		fputs(" relay", fp);
		break;
	case A_EXPAND_ONLY:
		fputs(" expand-only", fp);
		break;
	case A_FORWARD_ONLY:
		fputs(" forward-only", fp);
		break;
	case A_NMETHODS:
		break;
	}
}

static void
print_local_opts(FILE *fp, const struct action *a)
{
	put_table_opt(fp, "alias", a->alias);
	put_table_opt(fp, "virtual", a->virtual);
	put_table_opt(fp, "userbase", a->userbase);
	put_opt(fp, "user", a->user);
	put_opt(fp, "wrapper", a->wrapper);
}

static void
print_relay_opts(FILE *fp, const struct action *a)
{
	if (a->backup) {
		fputs(" backup", fp);
		put_opt(fp, "mx", a->backup_mx);
	}
	put_opt(fp, "helo", a->helo);
	put_table_opt(fp, "helo-src", a->helo_src);
	put_table_opt(fp, "domain", a->domain);
	put_opt(fp, "host", a->host);
	if (a->tls == RELAY_TLS_VERIFY)
		fputs(" tls", fp);
	else if (a->tls == RELAY_TLS_NO_VERIFY)
		fputs(" tls no-verify", fp);
	put_table_opt(fp, "auth", a->auth);
	put_opt(fp, "mail-from", a->mail_from);
	put_table_opt(fp, "src", a->src);
	put_opt(fp, "pki", a->pki);
	put_opt(fp, "ca", a->ca);
	if (a->srs)
		fputs(" srs", fp);
	put_opt(fp, "protocols", a->protocols);
	put_opt(fp, "ciphers", a->ciphers);
}

static void
print_actions(struct printer *p, const struct config *conf)
{
	const struct action	*a;
	FILE			*fp;

	TAILQ_FOREACH(a, &conf->actions, entry) {
		fp = line(p);
		fputs("action ", fp);
		put_str(fp, a->name);
		print_method(fp, a);
		/* Each group is empty for the other kind of method. */
		print_local_opts(fp, a);
		print_relay_opts(fp, a);
		if (a->ttl != 0) {
			fputs(" ttl ", fp);
			put_duration(fp, a->ttl);
		}
		fputc('\n', fp);
	}
}

/* ------------------------------------------------------------ rules */

static void
print_cond(FILE *fp, const struct cond *c)
{
	fprintf(fp, " %s%s%s", c->neg ? "!" : "",
	    c->kind < C_NKINDS ? cond_words[c->kind] : "?",
	    c->regex ? " regex" : "");
	if (c->table != NULL) {
		fputc(' ', fp);
		put_table_arg(fp, c->table);
	}
}

static void
print_rules(struct printer *p, const struct config *conf)
{
	const struct rule	*r;
	FILE			*fp;
	int			 s;

	TAILQ_FOREACH(r, &conf->rules, entry) {
		fp = line(p);
		fputs("match", fp);
		for (s = 0; s < SLOT_NSLOTS; s++)
			if (r->set[s])
				print_cond(fp, &r->conds[s]);
		if (r->reject || r->action == NULL)
			fputs(" reject\n", fp);
		else {
			put_opt(fp, "action", r->action->name);
			fputc('\n', fp);
		}
	}
}

void
config_print(FILE *fp, const struct config *conf)
{
	static void (*const sections[])(struct printer *,
	    const struct config *) = {
		print_module_path,
		print_globals,
		print_wrappers,
		print_pkis,
		print_tables,
		print_filters,
		print_listeners,
		print_actions,
		print_rules,
	};
	struct printer	 p = { fp, 0, 0 };
	size_t		 i;

	fputs("# equivalent configuration in the current smtpd.conf grammar\n",
	    fp);
	for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		sections[i](&p, conf);
		section_end(&p);
	}
}
