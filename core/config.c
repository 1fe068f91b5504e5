/*
 * config.c - the configuration model's life cycle: a new model with the
 * documented defaults, lookups by name, freeing, and the list of features
 * a file uses that this build cannot run yet.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parse.h"

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

struct config *
config_new(void)
{
	struct config	*conf = xcalloc(1, sizeof(*conf));

	conf->hostname = local_hostname();
	conf->max_message_size = DEFAULT_MAX_MSGSIZE;
	conf->max_rcpt = DEFAULT_MAX_RCPT;
	conf->max_mails = DEFAULT_MAX_MAILS;
	conf->max_auth_failures = DEFAULT_MAX_AUTH_FAILURES;
	conf->subaddr_delim = DEFAULT_SUBADDR_DELIM;
	conf->filter_timeout = DEFAULT_FILTER_TIMEOUT;
	conf->queue_ttl = DEFAULT_EXPIRE;
	conf->warn_interval[0] = DEFAULT_WARN_INTERVAL;
	conf->nwarn_interval = 1;
	conf->max_deferred = DEFAULT_MAX_DEFERRED;
	conf->srs_ttl = DEFAULT_SRS_TTL;
	TAILQ_INIT(&conf->tables);
	TAILQ_INIT(&conf->pkis);
	TAILQ_INIT(&conf->cas);
	TAILQ_INIT(&conf->listen_confs);
	TAILQ_INIT(&conf->listeners);
	TAILQ_INIT(&conf->actions);
	TAILQ_INIT(&conf->rules);
	TAILQ_INIT(&conf->filters);
	TAILQ_INIT(&conf->procs);
	TAILQ_INIT(&conf->wrappers);
	return conf;
}

/* ---------------------------------------------------------------- lookup */

#define FIND(head, type, conf, name) do {				\
	struct type *x_;						\
	TAILQ_FOREACH(x_, &(conf)->head, entry)				\
		if (strcmp(x_->name, (name)) == 0)			\
			return x_;					\
	return NULL;							\
} while (0)

struct table *
config_table_find(const struct config *conf, const char *name)
{
	FIND(tables, table, conf, name);
}

struct action *
config_action_find(const struct config *conf, const char *name)
{
	FIND(actions, action, conf, name);
}

struct pki *
config_pki_find(const struct config *conf, const char *name)
{
	FIND(pkis, pki, conf, name);
}

struct ca *
config_ca_find(const struct config *conf, const char *name)
{
	FIND(cas, ca, conf, name);
}

struct filter *
config_filter_find(const struct config *conf, const char *name)
{
	FIND(filters, filter, conf, name);
}

struct proc *
config_proc_find(const struct config *conf, const char *name)
{
	FIND(procs, proc, conf, name);
}

struct wrapper *
config_wrapper_find(const struct config *conf, const char *name)
{
	FIND(wrappers, wrapper, conf, name);
}

struct table *
config_table(struct config *conf, const char *name)
{
	return config_table_find(conf, name);
}

struct action *
config_action(struct config *conf, const char *name)
{
	return config_action_find(conf, name);
}

static int
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Same delivery, whatever the name: lets legacy rules share an action. */
int
action_equal(const struct action *a, const struct action *b)
{
	return a->method == b->method && str_eq(a->path, b->path) &&
	    a->junk == b->junk && str_eq(a->lmtp_dest, b->lmtp_dest) &&
	    a->lmtp_rcpt_to == b->lmtp_rcpt_to &&
	    str_eq(a->mda_cmd, b->mda_cmd) && a->alias == b->alias &&
	    a->virtual == b->virtual && a->userbase == b->userbase &&
	    str_eq(a->user, b->user) && str_eq(a->wrapper, b->wrapper) &&
	    a->backup == b->backup && str_eq(a->backup_mx, b->backup_mx) &&
	    str_eq(a->helo, b->helo) && a->helo_src == b->helo_src &&
	    a->domain == b->domain && str_eq(a->host, b->host) &&
	    a->tls == b->tls && a->auth == b->auth &&
	    str_eq(a->mail_from, b->mail_from) && a->src == b->src &&
	    str_eq(a->pki, b->pki) && str_eq(a->ca, b->ca) &&
	    a->srs == b->srs && str_eq(a->protocols, b->protocols) &&
	    str_eq(a->ciphers, b->ciphers) && a->ttl == b->ttl;
}

/* ------------------------------------------------------------------ free */

static void
table_free(struct table *t)
{
	size_t	 i;

	table_close(t);
	for (i = 0; i < t->nentries; i++) {
		free(t->entries[i].key);
		free(t->entries[i].value);
	}
	free(t->entries);
	free(t->name);
	free(t->type);
	free(t->config);
	free(t->file);
	free(t);
}

static void
listen_conf_free(struct listen_conf *lc)
{
	size_t	 i;

	if (lc == NULL)
		return;
	free(lc->on);
	free(lc->tag);
	free(lc->hostname);
	for (i = 0; i < lc->npki; i++)
		free(lc->pki[i]);
	free(lc->ca);
	free(lc->filter);
	free(lc->ciphers);
	free(lc->protocols);
	free(lc->file);
	free(lc);
}

void
action_free(struct action *a)
{
	free(a->name);
	free(a->path);
	free(a->lmtp_dest);
	free(a->mda_cmd);
	free(a->user);
	free(a->wrapper);
	free(a->backup_mx);
	free(a->helo);
	free(a->host);
	free(a->mail_from);
	free(a->pki);
	free(a->ca);
	free(a->protocols);
	free(a->ciphers);
	free(a->file);
	free(a);
}

static void
filter_free(struct filter *f)
{
	size_t	 i;

	free(f->name);
	free(f->conds);
	free(f->message);
	free(f->proc);
	free(f->command);
	free(f->user);
	free(f->group);
	free(f->chroot);
	free(f->protocol);
	for (i = 0; i < f->nchain; i++)
		free(f->chain[i]);
	free(f->chain);
	free(f->module);
	for (i = 0; i < f->nargs; i++)
		free(f->args[i]);
	free(f->args);
	free(f->file);
	free(f);
}

static void
misc_free(struct config *conf)
{
	struct pki	*pk;
	struct ca	*ca;
	struct proc	*pr;
	struct wrapper	*w;

	while ((pk = TAILQ_FIRST(&conf->pkis)) != NULL) {
		TAILQ_REMOVE(&conf->pkis, pk, entry);
		free(pk->name);
		free(pk->cert);
		free(pk->key);
		free(pk->file);
		free(pk);
	}
	while ((ca = TAILQ_FIRST(&conf->cas)) != NULL) {
		TAILQ_REMOVE(&conf->cas, ca, entry);
		free(ca->name);
		free(ca->cert);
		free(ca->file);
		free(ca);
	}
	while ((pr = TAILQ_FIRST(&conf->procs)) != NULL) {
		TAILQ_REMOVE(&conf->procs, pr, entry);
		free(pr->name);
		free(pr->command);
		free(pr->user);
		free(pr->group);
		free(pr->chroot);
		free(pr->protocol);
		free(pr->file);
		free(pr);
	}
	while ((w = TAILQ_FIRST(&conf->wrappers)) != NULL) {
		TAILQ_REMOVE(&conf->wrappers, w, entry);
		free(w->name);
		free(w->command);
		free(w->file);
		free(w);
	}
}

void
config_free(struct config *conf)
{
	struct table		*t;
	struct listen_conf	*lc;
	struct listener		*l;
	struct action		*a;
	struct rule		*r;
	struct filter		*f;

	if (conf == NULL)
		return;
	while ((r = TAILQ_FIRST(&conf->rules)) != NULL) {
		TAILQ_REMOVE(&conf->rules, r, entry);
		free(r->file);
		free(r);
	}
	while ((a = TAILQ_FIRST(&conf->actions)) != NULL) {
		TAILQ_REMOVE(&conf->actions, a, entry);
		action_free(a);
	}
	while ((f = TAILQ_FIRST(&conf->filters)) != NULL) {
		TAILQ_REMOVE(&conf->filters, f, entry);
		filter_free(f);
	}
	while ((l = TAILQ_FIRST(&conf->listeners)) != NULL) {
		TAILQ_REMOVE(&conf->listeners, l, entry);
		free(l);
	}
	while ((lc = TAILQ_FIRST(&conf->listen_confs)) != NULL) {
		TAILQ_REMOVE(&conf->listen_confs, lc, entry);
		listen_conf_free(lc);
	}
	listen_conf_free(conf->socket_listener);
	while ((t = TAILQ_FIRST(&conf->tables)) != NULL) {
		TAILQ_REMOVE(&conf->tables, t, entry);
		table_free(t);
	}
	misc_free(conf);
	free(conf->hostname);
	free(conf->module_path);
	free(conf->admd);
	free(conf->smtp_ciphers);
	free(conf->filter_protocol);
	free(conf->pam_service);
	if (conf->queue_key != NULL)
		explicit_bzero(conf->queue_key, strlen(conf->queue_key));
	free(conf->queue_key);
	free(conf->queue_key_file);
	free(conf->srs_key);
	free(conf->srs_key_backup);
	free(conf);
}
