/*
 * filter_module.c - in-process filters (lookup role): the second
 * implementation of struct filter_ops (filter.h), beside filter_proc.c.
 * An instance is one `filter NAME module MODULE [ARG ...]` of the
 * configuration, or one builtin `filter NAME phase ... match ...`, which
 * is an instance of the module "builtin" with the filter's words as its
 * arguments.  Its events and phases are those of the smtpd-filters
 * protocol, as calls (struct msd_filter_ops); it answers through the host
 * services behind module_filter_services().
 *
 * A module is trusted code in the daemon's process, but its mistakes must
 * not cost more than its sessions: an answer the protocol would call
 * malformed makes the instance fail (421 for its sessions, as a broken
 * filter program), which it leaves by registering again.  The failure
 * is handled from the event loop, never inside a call into the module,
 * so the chain code never sees its sessions vanish under it.
 *
 * The parent opens and closes every instance once to check the
 * configuration (filter_module_check), so that an unknown module or a
 * bad argument is an error with file and line before anything starts.
 */
#include <sys/time.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"
#include "filter.h"

#define BUILTIN_MODULE		"builtin"
#define REPLY_BROKEN		"421 4.3.0 Temporary failure: a mail filter" \
				" is not available"

/* The host's handle of an instance: what the module gets as self. */
struct msd_filter {
	TAILQ_ENTRY(msd_filter)	 entry;
	char			*name;		/* the filter's */
	struct module		*mod;
	const struct msd_filter_ops *ops;
	void			*inst;
	int			 opened;
	int			 dead;		/* could not start */
	int			 ready;		/* registered */
	int			 failing;	/* failed, not yet handled */
	uint64_t		 events;	/* 1 << filter_event */
	uint64_t		 phases;	/* 1 << fphase */
	uint32_t		 timeout;
	struct event		*failev;
};
static TAILQ_HEAD(, msd_filter) fmods = TAILQ_HEAD_INITIALIZER(fmods);

/* ---------------------------------------------------------- arguments */

static void
args_add(char ***v, size_t *n, const char *s)
{
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = xstrdup(s);
}

/* A table as the builtin module reads it: "<name>". */
static void
args_table(char ***v, size_t *n, const struct table *t)
{
	char	*s;

	xasprintf(&s, "<%s>", t->name);
	args_add(v, n, s);
	free(s);
}

static const char *const phase_words[FP_NPHASES] = {
	"connect", "helo", "ehlo", "mail-from", "rcpt-to", "data", "commit",
};
static const char *const cond_words[FC_NKINDS] = {
	"fcrdns", "rdns", "src", "helo", "auth", "mail-from", "rcpt-to",
};
static const char *const decision_words[] = {
	[FD_BYPASS] = "bypass", [FD_DISCONNECT] = "disconnect",
	[FD_JUNK] = "junk", [FD_REJECT] = "reject",
	[FD_REWRITE] = "rewrite", [FD_REPORT] = "report",
};

/*
 * The builtin filter's definition in the words of smtpd.conf, which is
 * what the builtin module reads: phase P match [!] COND [regex] [<t>] ...
 * DECISION [TEXT].
 */
static void
builtin_args(const struct filter *f, char ***v, size_t *n)
{
	const struct filter_cond	*c;
	size_t				 i;

	args_add(v, n, "phase");
	args_add(v, n, phase_words[f->phase]);
	args_add(v, n, "match");
	for (i = 0; i < f->nconds; i++) {
		c = &f->conds[i];
		if (c->neg)
			args_add(v, n, "!");
		args_add(v, n, cond_words[c->kind]);
		if (c->regex)
			args_add(v, n, "regex");
		if (c->table != NULL)
			args_table(v, n, c->table);
	}
	args_add(v, n, decision_words[f->decision]);
	if (f->message != NULL)
		args_add(v, n, f->message);
}

static void
args_free(char **v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ------------------------------------------------------------ opening */

static const char *
module_name(const struct filter *f)
{
	return f->type == F_BUILTIN ? BUILTIN_MODULE : f->module;
}

/* Loads the module and opens the instance; -1 with why set. */
static int
fmod_open(struct msd_filter *p, const struct filter *f, char *why,
    size_t len)
{
	struct msd_result	 res;
	char			**argv = NULL;
	size_t			 argc = 0, i;
	int			 rc;

	if ((p->mod = module_load(MSD_KIND_FILTER, module_name(f))) == NULL) {
		snprintf(why, len, "no usable filter module \"%s\" (see the"
		    " module lines above)", module_name(f));
		return -1;
	}
	if (p->mod->desc.init != NULL && p->mod->init_pid != getpid()) {
		if (p->mod->desc.init(p->mod->host) != MSD_OK) {
			snprintf(why, len, "filter module \"%s\" failed to"
			    " start (see the log)", module_name(f));
			return -1;
		}
		p->mod->init_pid = getpid();
	}
	if ((p->ops = module_ops(p->mod, sizeof(*p->ops))) == NULL) {
		snprintf(why, len, "module \"%s\" is not a filter module",
		    module_name(f));
		return -1;
	}
	if (f->type == F_BUILTIN)
		builtin_args(f, &argv, &argc);
	else
		for (i = 0; i < f->nargs; i++)
			args_add(&argv, &argc, f->args[i]);
	memset(&res, 0, sizeof(res));
	rc = p->ops->open(p->mod->host, p, f->name, (uint32_t)argc,
	    (const char *const *)argv, &p->inst, &res);
	args_free(argv, argc);
	if (rc != MSD_OK) {
		snprintf(why, len, "module \"%s\": %s", module_name(f),
		    res.failed ? res.error : "open failed");
		result_reset(&res);
		return -1;
	}
	result_reset(&res);
	p->opened = 1;
	return 0;
}

static void
fmod_close(struct msd_filter *p)
{
	if (p->opened && p->ops->close != NULL)
		p->ops->close(p->inst);
	p->opened = 0;
	p->inst = NULL;
}

/*
 * Parent, configuration check: every module filter loads and accepts its
 * arguments.  -1 after logging "file:line: filter NAME: why".
 */
int
filter_module_check(struct config *conf)
{
	const struct filter	*f;
	struct msd_filter	 p;
	char			 why[512];
	int			 rc = 0;

	TAILQ_FOREACH(f, &conf->filters, entry) {
		if (f->type != F_BUILTIN && f->type != F_MODULE)
			continue;
		memset(&p, 0, sizeof(p));
		if (fmod_open(&p, f, why, sizeof(why)) == -1) {
			log_warnx("%s:%d: filter \"%s\": %s", f->file, f->line,
			    f->name, why);
			rc = -1;
		}
		fmod_close(&p);
	}
	return rc;
}

/* -------------------------------------------------------- failures */

static void
fmod_failed(evutil_socket_t fd, short ev, void *arg)
{
	struct msd_filter	*p = arg;

	if (!p->failing)
		return;
	p->failing = 0;
	filter_impl_failed(p);
}

static void	fmod_fail(struct msd_filter *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/*
 * Logged once; until it registers again the instance takes no session.
 * Requests that reach it meanwhile wait for the 421 that fmod_failed()
 * gives every session it serves.
 */
static void
fmod_fail(struct msd_filter *p, const char *fmt, ...)
{
	char	 why[256];
	va_list	 ap;

	if (p->failing || !p->ready)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warnx("filter %s: %s; its sessions get a temporary failure until"
	    " it registers again", p->name, why);
	p->ready = 0;
	p->failing = 1;
	event_active(p->failev, EV_TIMEOUT, 0);
}

/* ------------------------------------------------------ host services */

static void
svc_register(msd_filter *p, uint64_t events, uint64_t phases)
{
	uint64_t	 eall = (1ULL << FE_NEVENTS) - 1;
	uint64_t	 pall = (1ULL << FPH_NPHASES) - 1;

	if (p->dead)
		return;
	if ((events & ~eall) || (phases & ~pall))
		log_warnx("filter %s: registered unknown events %#" PRIx64
		    " or phases %#" PRIx64 ", ignored", p->name,
		    events & ~eall, phases & ~pall);
	p->events = events & eall;
	p->phases = phases & pall;
	if (p->ready)
		return;
	p->ready = 1;
	p->failing = 0;
	log_debug("filter %s: registered (events %#" PRIx64 ", phases %#"
	    PRIx64 ")", p->name, p->events, p->phases);
	filter_impl_ready(p);
}

static const struct {
	enum filter_verdict	 v;
	const char		*decision;
	int			 param;		/* required */
} verdicts[] = {
	[MSD_FV_PROCEED] = { FV_PROCEED, "proceed", 0 },
	[MSD_FV_JUNK] = { FV_JUNK, "junk", 0 },
	[MSD_FV_REJECT] = { FV_REJECT, "reject", 1 },
	[MSD_FV_DISCONNECT] = { FV_DISCONNECT, "disconnect", 1 },
	[MSD_FV_REWRITE] = { FV_REWRITE, "rewrite", 1 },
	[MSD_FV_REPORT] = { FV_PROCEED, "report", 1 },
	[MSD_FV_BYPASS] = { FV_PROCEED, "bypass", 0 },
};

static void
svc_result(msd_filter *p, uint64_t sid, uint64_t token, uint32_t verdict,
    const char *param)
{
	if (!p->ready)
		return;		/* failed meanwhile: its sessions know */
	if (verdict >= sizeof(verdicts) / sizeof(verdicts[0])) {
		fmod_fail(p, "answered with an unknown verdict %u",
		    (unsigned)verdict);
		return;
	}
	if (verdicts[verdict].param && param == NULL) {
		fmod_fail(p, "answered %s without its parameter",
		    verdicts[verdict].decision);
		return;
	}
	if (param != NULL && (strlen(param) > FILTER_LINE_MAX ||
	    strpbrk(param, "\r\n") != NULL)) {
		fmod_fail(p, "answered %s with a parameter holding a line"
		    " break or too long", verdicts[verdict].decision);
		return;
	}
	filter_verdict(p, sid, token, verdicts[verdict].v,
	    verdicts[verdict].decision, verdicts[verdict].param ? param : NULL);
}

static void
svc_dataline(msd_filter *p, uint64_t sid, uint64_t token, const char *line,
    size_t len)
{
	if (!p->ready)
		return;
	/* A newline would end the line early, "\n.\n" the message. */
	if (len > FILTER_LINE_MAX || memchr(line, '\n', len) != NULL) {
		fmod_fail(p, "emitted a data line holding a newline or longer"
		    " than %d bytes", FILTER_LINE_MAX);
		return;
	}
	filter_line_out(p, sid, token, line, len);
}

static void
svc_fail(msd_filter *p, const char *reason)
{
	fmod_fail(p, "failed: %s", reason);
}

static const struct module_filter_services services = {
	svc_register, svc_result, svc_dataline, svc_fail,
};

/* ------------------------------------------------------- filter_ops */

static int
fm_ready(void *impl)
{
	struct msd_filter	*p = impl;

	return p->ready || p->dead;
}

static int
fm_wants_event(void *impl, enum filter_event e)
{
	struct msd_filter	*p = impl;

	return p->ready && p->ops->report != NULL && (p->events & (1ULL << e));
}

static int
fm_wants_phase(void *impl, enum fphase ph)
{
	struct msd_filter	*p = impl;

	if (p->dead)
		return ph == FPH_CONNECT;
	return (p->ready || p->failing) && (p->phases & (1ULL << ph));
}

static uint32_t
fm_timeout(void *impl)
{
	return ((struct msd_filter *)impl)->timeout;
}

static void
fm_report(void *impl, const struct timeval *tv, uint64_t sid,
    enum filter_event e, const char *const *f, size_t n)
{
	struct msd_filter	*p = impl;

	if (fm_wants_event(p, e))
		p->ops->report(p->inst, sid, e, (uint32_t)n, f);
}

static void
fm_request(void *impl, const struct timeval *tv, uint64_t sid,
    uint64_t token, enum fphase ph, const char *param)
{
	struct msd_filter	*p = impl;

	if (p->dead)
		filter_verdict(p, sid, token, FV_DISCONNECT, "disconnect",
		    REPLY_BROKEN);
	else if (p->failing)
		return;		/* the 421 is on its way */
	else if (p->ops->request == NULL)
		filter_verdict(p, sid, token, FV_PROCEED, "proceed", NULL);
	else
		p->ops->request(p->inst, sid, token, ph, param);
}

static void
fm_line(void *impl, const struct timeval *tv, uint64_t sid, uint64_t token,
    const char *line, size_t len)
{
	struct msd_filter	*p = impl;

	if (p->failing)
		return;
	if (p->ops->data_line == NULL)
		filter_line_out(p, sid, token, line, len);
	else
		p->ops->data_line(p->inst, sid, token, line, len);
}

static void
fm_end(void *impl, uint64_t sid)
{
	struct msd_filter	*p = impl;

	if (p->opened && p->ops->session_end != NULL)
		p->ops->session_end(p->inst, sid);
}

const struct filter_ops filter_module_ops = {
	fm_ready, fm_wants_event, fm_wants_phase, fm_timeout,
	fm_report, fm_request, fm_line, fm_end,
};

/* ------------------------------------------------------------- the API */

static struct msd_filter *
fmod_new(const struct filter *f)
{
	struct msd_filter	*p = xcalloc(1, sizeof(*p));
	char			 why[512];

	p->name = xstrdup(f->name);
	p->timeout = f->timeout ? f->timeout : env.conf->filter_timeout;
	if ((p->failev = event_new(env.evbase, -1, 0, fmod_failed, p)) ==
	    NULL)
		fatalx("filter: event_new");
	TAILQ_INSERT_TAIL(&fmods, p, entry);
	/* Checked in the parent already: this is a module gone bad since. */
	if (fmod_open(p, f, why, sizeof(why)) == -1) {
		log_warnx("%s:%d: filter \"%s\": %s; its sessions get 421",
		    f->file, f->line, f->name, why);
		fmod_close(p);
		p->dead = 1;
	}
	return p;
}

void *
filter_module_get(const struct filter *f)
{
	struct msd_filter	*p;

	TAILQ_FOREACH(p, &fmods, entry)
		if (strcmp(p->name, f->name) == 0)
			return p;
	return fmod_new(f);
}

void
filter_module_init(void)
{
	const struct filter	*f;

	module_filter_services(&services);
	TAILQ_FOREACH(f, &env.conf->filters, entry)
		if (f->type == F_BUILTIN || f->type == F_MODULE)
			filter_module_get(f);
}
