/*
 * filter.c - filter chains in the lookup role: what the smtp role asks
 * about a session (IMSG_FILTER_*) goes through the listener's chain here.
 *
 * A chain is a list of filter instances, each an implementation behind
 * struct filter_ops (filter.h) with its own token.  Reports go to every
 * distinct implementation of the chain that registered the event.  A
 * phase request visits the instances in order, skipping those that did
 * not register the phase, until one answers something other than proceed
 * or the chain ends; the verdict goes back to the session.  Data lines go
 * through the instances that registered data-line, the output of one
 * being the input of the next; what comes out of the last goes back to
 * the smtp role, which writes it to the queue.
 *
 * Failures never stop the daemon: a session whose chain is not ready yet
 * (a program starting or restarting) waits for it, within the filter
 * timeout; a request not answered within the instance's timeout gets a
 * temporary failure (451); an implementation that breaks fails every
 * session it was serving with 421 4.3.0 (filter_impl_failed).
 */
#include <sys/time.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "smtpd.h"
#include "filter.h"

#define FILTER_HASH		4096
#define REPLY_FAILED		"421 4.3.0 Temporary failure: a mail filter" \
				" is not available"
#define REPLY_TIMEOUT		"451 4.3.0 Temporary failure: a mail filter" \
				" did not answer in time"

struct finst {
	const struct filter_ops	*ops;
	void			*impl;
	uint64_t		 token;
	char			*name;		/* for filter-report */
	int			 builtin;	/* in-process: "builtin" */
};

struct fchain {
	TAILQ_ENTRY(fchain)	 entry;
	char			*name;
	struct finst		*v;
	size_t			 n;
	void			**impls;	/* distinct, for reports */
	const struct filter_ops	**iops;
	size_t			 nimpls;
};
static TAILQ_HEAD(, fchain) chains = TAILQ_HEAD_INITIALIZER(chains);

#define LINK_RDNS	0
#define LINK_FCRDNS	1
#define LINK_SRC	2
#define LINK_DEST	3
#define LINK_CONNECT	4		/* the connect phase's "rdns|src" */
#define LINK_N		5

struct fsess {
	uint64_t		 id;
	struct fsess		*hnext;
	struct fchain		*chain;
	int			 started;	/* link-connect sent */
	TAILQ_ENTRY(fsess)	 wentry;	/* waiting for the chain */
	char			*link[LINK_N];
	int			 phase;		/* pending request or -1 */
	size_t			 idx;		/* ... at this instance */
	char			*param;		/* ... and its parameter */
	int			 in_data;	/* a message is streaming */
	struct evbuffer		*out;		/* lines for the smtp role */
	int			 dirty;
	TAILQ_ENTRY(fsess)	 dentry;
	struct event		*timer;
};
static struct fsess	*fsessions[FILTER_HASH];
static TAILQ_HEAD(, fsess) waiting = TAILQ_HEAD_INITIALIZER(waiting);
static TAILQ_HEAD(, fsess) dirty = TAILQ_HEAD_INITIALIZER(dirty);
static struct event	*flush_ev;

static void	session_free(struct fsess *);

/* ------------------------------------------------------------- chains */

static const char *
conf_protocol(const char *p)
{
	if (p != NULL)
		return p;
	return env.conf->filter_protocol ? env.conf->filter_protocol :
	    DEFAULT_FILTER_PROTOCOL;
}

static uint32_t
conf_timeout(uint32_t t)
{
	return t ? t : env.conf->filter_timeout;
}

static const struct filter *
conf_filter(const char *name)
{
	const struct filter	*f;

	TAILQ_FOREACH(f, &env.conf->filters, entry)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void *
filter_impl(const struct filter *f, const struct filter_ops **ops)
{
	*ops = &filter_proc_ops;
	if (f->type == F_PROC_EXEC)
		return filter_proc_find(f->name);
	if (f->type == F_PROC)
		return filter_proc_find(f->proc);
	*ops = &filter_module_ops;
	if (f->type == F_BUILTIN || f->type == F_MODULE)
		return filter_module_get(f);
	return NULL;
}

static void
chain_add(struct fchain *c, const struct filter *f)
{
	const struct filter_ops	*ops;
	struct finst		*in;
	void			*impl = filter_impl(f, &ops);
	size_t			 i;

	if (impl == NULL)
		fatalx("filter: %s is not a filter that runs", f->name);
	c->v = xreallocarray(c->v, c->n + 1, sizeof(*c->v));
	in = &c->v[c->n++];
	in->ops = ops;
	in->impl = impl;
	in->token = ((uint64_t)msd_random() << 32) | msd_random();
	in->name = xstrdup(f->type == F_PROC ? f->proc : f->name);
	in->builtin = ops == &filter_module_ops;
	for (i = 0; i < c->nimpls; i++)
		if (c->impls[i] == impl)
			return;
	c->impls = xreallocarray(c->impls, c->nimpls + 1, sizeof(*c->impls));
	c->iops = xreallocarray(c->iops, c->nimpls + 1, sizeof(*c->iops));
	c->impls[c->nimpls] = impl;
	c->iops[c->nimpls++] = in->ops;
}

static struct fchain *
chain_get(const char *name)
{
	struct fchain		*c;
	const struct filter	*f, *m;
	size_t			 i;

	TAILQ_FOREACH(c, &chains, entry)
		if (strcmp(c->name, name) == 0)
			return c;
	if ((f = conf_filter(name)) == NULL)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->name = xstrdup(name);
	if (f->type == F_CHAIN) {
		for (i = 0; i < f->nchain; i++)
			if ((m = conf_filter(f->chain[i])) != NULL)
				chain_add(c, m);
	} else
		chain_add(c, f);
	TAILQ_INSERT_TAIL(&chains, c, entry);
	return c;
}

static int
chain_ready(const struct fchain *c)
{
	size_t	 i;

	for (i = 0; i < c->nimpls; i++)
		if (!c->iops[i]->ready(c->impls[i]))
			return 0;
	return 1;
}

static int
chain_has(const struct fchain *c, const void *impl)
{
	size_t	 i;

	for (i = 0; i < c->nimpls; i++)
		if (c->impls[i] == impl)
			return 1;
	return 0;
}

static void
chain_report(const struct fchain *c, uint64_t sid, enum filter_event e,
    const char *const *f, size_t n)
{
	struct timeval	 tv;
	size_t		 i;

	gettimeofday(&tv, NULL);
	for (i = 0; i < c->nimpls; i++)
		if (c->iops[i]->wants_event(c->impls[i], e))
			c->iops[i]->report(c->impls[i], &tv, sid, e, f, n);
}

/* ----------------------------------------------------------- sessions */

static struct fsess *
session_find(uint64_t id)
{
	struct fsess	*s;

	for (s = fsessions[id % FILTER_HASH]; s; s = s->hnext)
		if (s->id == id)
			return s;
	return NULL;
}

static void
send_result(struct fsess *s, enum filter_verdict v, const char *text)
{
	struct ipc_out	*o = ipc_begin(env.peer[ROLE_SMTP], IMSG_FILTER_RESULT);

	ipc_put_u64(o, s->id);
	ipc_put_u32(o, v);
	ipc_put_str(o, text);
	ipc_end(o, -1);
}

static void
session_flush(struct fsess *s)
{
	struct ipc_out	*o;
	size_t		 len = evbuffer_get_length(s->out);

	if (s->dirty) {
		TAILQ_REMOVE(&dirty, s, dentry);
		s->dirty = 0;
	}
	if (len == 0)
		return;
	o = ipc_begin(env.peer[ROLE_SMTP], IMSG_FILTER_DATA);
	ipc_put_u64(o, s->id);
	ipc_put_data(o, evbuffer_pullup(s->out, -1), len);
	ipc_end(o, -1);
	evbuffer_drain(s->out, len);
}

static void
flush_all(evutil_socket_t fd, short ev, void *arg)
{
	struct fsess	*s;

	while ((s = TAILQ_FIRST(&dirty)) != NULL)
		session_flush(s);
}

static void
timer_start(struct fsess *s, uint32_t secs)
{
	struct timeval	 tv = { secs, 0 };

	evtimer_add(s->timer, &tv);
}

/* The next instance that registered the pending phase, or the verdict. */
static void
session_advance(struct fsess *s)
{
	struct finst	*in;
	struct timeval	 tv;

	for (; s->idx < s->chain->n; s->idx++) {
		in = &s->chain->v[s->idx];
		if (!in->ops->wants_phase(in->impl, s->phase))
			continue;
		gettimeofday(&tv, NULL);
		/* Last: the answer may come from inside the call. */
		timer_start(s, in->ops->timeout(in->impl));
		in->ops->request(in->impl, &tv, s->id, in->token, s->phase,
		    s->param);
		return;
	}
	s->phase = -1;
	evtimer_del(s->timer);
	send_result(s, FV_PROCEED, NULL);
}

static void
session_settle(struct fsess *s)
{
	s->phase = -1;
	free(s->param);
	s->param = NULL;
}

static void
session_request(struct fsess *s, int phase, const char *param)
{
	if (s->phase != -1)
		fatalx("filter: session %016" PRIx64 " asked twice", s->id);
	s->phase = phase;
	s->idx = 0;
	free(s->param);
	s->param = xstrdup(param);
	session_advance(s);
}

static void
session_start(struct fsess *s)
{
	const char	*f[4];

	s->started = 1;
	f[0] = s->link[LINK_RDNS];
	f[1] = s->link[LINK_FCRDNS];
	f[2] = s->link[LINK_SRC];
	f[3] = s->link[LINK_DEST];
	chain_report(s->chain, s->id, FE_LINK_CONNECT, f, 4);
	session_request(s, FPH_CONNECT, s->link[LINK_CONNECT]);
}

/* Data line number i of the chain onwards; out of the chain: to smtp. */
static void
route_line(struct fsess *s, size_t i, const char *line, size_t len)
{
	struct finst	*in;
	struct timeval	 tv;

	for (; i < s->chain->n; i++) {
		in = &s->chain->v[i];
		if (!in->ops->wants_phase(in->impl, FPH_DATA_LINE))
			continue;
		gettimeofday(&tv, NULL);
		in->ops->line(in->impl, &tv, s->id, in->token, line, len);
		return;
	}
	evbuffer_add(s->out, line, len);
	evbuffer_add(s->out, "\n", 1);
	if (len == 1 && line[0] == '.') {
		s->in_data = 0;
		evtimer_del(s->timer);
		session_flush(s);
	} else if (evbuffer_get_length(s->out) >= IPC_CHUNK)
		session_flush(s);
	else if (!s->dirty) {
		s->dirty = 1;
		TAILQ_INSERT_TAIL(&dirty, s, dentry);
		event_active(flush_ev, EV_TIMEOUT, 0);
	}
}

/* The longest timeout of the instances a message goes through. */
static uint32_t
data_timeout(const struct fsess *s)
{
	uint32_t	 t = env.conf->filter_timeout, x;
	size_t		 i;

	for (i = 0; i < s->chain->n; i++)
		if ((x = s->chain->v[i].ops->timeout(s->chain->v[i].impl)) > t)
			t = x;
	return t;
}

static void
session_data(struct fsess *s, const char *buf, size_t len)
{
	const char	*nl;
	size_t		 n;

	s->in_data = 1;
	while (len > 0) {
		if ((nl = memchr(buf, '\n', len)) == NULL)
			fatalx("filter: data without a line end from smtp");
		n = nl - buf;
		if (n == 1 && buf[0] == '.')
			timer_start(s, data_timeout(s));
		route_line(s, 0, buf, n);
		buf += n + 1;
		len -= n + 1;
	}
}

/* link-disconnect for the implementations still there, then forget. */
static void
session_drop(struct fsess *s)
{
	if (s->started)
		chain_report(s->chain, s->id, FE_LINK_DISCONNECT, NULL, 0);
	session_free(s);
}

static void
session_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct fsess	*s = arg;

	if (!s->started) {
		log_warnx("filter: session %016" PRIx64 ": filter chain %s"
		    " not ready in time", s->id, s->chain->name);
		send_result(s, FV_FAIL, REPLY_FAILED);
		session_free(s);
		return;
	}
	log_warnx("filter: session %016" PRIx64 ": no answer from a filter"
	    " of chain %s within its timeout (%s)", s->id, s->chain->name,
	    s->phase != -1 ? filter_phase_name(s->phase) : "data-line");
	session_settle(s);
	if (s->in_data) {
		s->in_data = 0;
		evbuffer_drain(s->out, evbuffer_get_length(s->out));
		if (s->dirty) {
			TAILQ_REMOVE(&dirty, s, dentry);
			s->dirty = 0;
		}
	}
	send_result(s, FV_TEMPFAIL, REPLY_TIMEOUT);
}

static void
session_new(struct ipc_msg *m)
{
	struct fsess	*s = xcalloc(1, sizeof(*s));
	const char	*name;
	size_t		 i;

	s->id = ipc_get_u64(m);
	name = ipc_get_str(m);
	for (i = 0; i < LINK_N; i++) {
		const char *v = ipc_get_str(m);

		s->link[i] = xstrdup(v ? v : "");
	}
	ipc_get_end(m);
	if (name == NULL || (s->chain = chain_get(name)) == NULL)
		fatalx("filter: no filter chain %s", name ? name : "(null)");
	if (session_find(s->id) != NULL)
		fatalx("filter: session %016" PRIx64 " exists", s->id);
	s->phase = -1;
	if ((s->out = evbuffer_new()) == NULL ||
	    (s->timer = evtimer_new(env.evbase, session_timeout, s)) == NULL)
		fatalx("filter: out of memory");
	s->hnext = fsessions[s->id % FILTER_HASH];
	fsessions[s->id % FILTER_HASH] = s;
	if (chain_ready(s->chain)) {
		session_start(s);
		return;
	}
	log_debug("filter: session %016" PRIx64 " waits for chain %s", s->id,
	    s->chain->name);
	TAILQ_INSERT_TAIL(&waiting, s, wentry);
	timer_start(s, env.conf->filter_timeout);
}

static void
session_free(struct fsess *s)
{
	struct fsess	**p;
	size_t		 i;

	for (p = &fsessions[s->id % FILTER_HASH]; *p; p = &(*p)->hnext)
		if (*p == s) {
			*p = s->hnext;
			break;
		}
	if (!s->started)
		TAILQ_REMOVE(&waiting, s, wentry);
	if (s->dirty)
		TAILQ_REMOVE(&dirty, s, dentry);
	if (s->started)
		for (i = 0; i < s->chain->nimpls; i++)
			if (s->chain->iops[i]->end != NULL)
				s->chain->iops[i]->end(s->chain->impls[i],
				    s->id);
	for (i = 0; i < LINK_N; i++)
		free(s->link[i]);
	free(s->param);
	evbuffer_free(s->out);
	event_free(s->timer);
	free(s);
}

/* ----------------------------------------- answers from implementations */

static struct fsess *
session_of(void *impl, uint64_t sid, uint64_t token, size_t *idx)
{
	struct fsess	*s = session_find(sid);
	size_t		 i;

	if (s == NULL || !s->started)
		return NULL;
	for (i = 0; i < s->chain->n; i++)
		if (s->chain->v[i].impl == impl &&
		    s->chain->v[i].token == token) {
			*idx = i;
			return s;
		}
	return NULL;
}

/* A reply a filter chose: "4xx ..." or "5xx ...", else a server error. */
static const char *
checked_reply(const char *text)
{
	if (text != NULL && (text[0] == '4' || text[0] == '5') &&
	    text[1] >= '0' && text[1] <= '9' && text[2] >= '0' &&
	    text[2] <= '9' && (text[3] == ' ' || text[3] == '\0') &&
	    strpbrk(text, "\r\n") == NULL)
		return text;
	return "421 Internal server error";
}

static void
report_response(struct fsess *s, const char *decision, const char *param)
{
	const char	*f[3];

	/* OpenSMTPD's names for two phases in this event. */
	f[0] = s->phase == FPH_CONNECT ? "connected" :
	    s->phase == FPH_STARTTLS ? "tls" : filter_phase_name(s->phase);
	f[1] = decision;
	f[2] = param;
	chain_report(s->chain, s->id, FE_FILTER_RESPONSE, f, param ? 3 : 2);
}

/* filter-report: what a filter's report decision says, to the chain. */
static void
filter_report(struct fsess *s, size_t idx, const char *text)
{
	const char	*f[3];

	f[0] = s->chain->v[idx].builtin ? "builtin" : "proc";
	f[1] = s->chain->v[idx].name;
	f[2] = text != NULL ? text : "";
	log_info("%016" PRIx64 " filter-report %s %s: %s", s->id, f[0], f[1],
	    f[2]);
	chain_report(s->chain, s->id, FE_FILTER_REPORT, f, 3);
}

void
filter_verdict(void *impl, uint64_t sid, uint64_t token,
    enum filter_verdict v, const char *decision, const char *param)
{
	struct fsess	*s;
	const char	*text;
	size_t		 idx;

	if ((s = session_of(impl, sid, token, &idx)) == NULL ||
	    s->phase == -1 || idx != s->idx) {
		log_debug("filter: late or unexpected answer for session"
		    " %016" PRIx64 ", ignored", sid);
		return;
	}
	/* bypass: the command runs, the rest of the chain is skipped. */
	if (v == FV_PROCEED && strcmp(decision, "bypass") == 0) {
		report_response(s, "proceed", NULL);
		evtimer_del(s->timer);
		send_result(s, FV_PROCEED, NULL);
		session_settle(s);
		return;
	}
	report_response(s, decision, param);
	if (v == FV_PROCEED) {
		if (strcmp(decision, "report") == 0)
			filter_report(s, idx, param);
		s->idx++;
		session_advance(s);
		return;
	}
	evtimer_del(s->timer);
	text = param;
	if (v == FV_REJECT || v == FV_DISCONNECT) {
		text = checked_reply(param);
		if (strncmp(text, "421", 3) == 0)
			v = FV_DISCONNECT;
	}
	send_result(s, v, text);
	session_settle(s);
}

void
filter_line_out(void *impl, uint64_t sid, uint64_t token, const char *line,
    size_t len)
{
	struct fsess	*s;
	size_t		 idx;

	if ((s = session_of(impl, sid, token, &idx)) == NULL || !s->in_data) {
		log_debug("filter: late data line for session %016" PRIx64
		    ", ignored", sid);
		return;
	}
	route_line(s, idx + 1, line, len);
}

void
filter_impl_failed(void *impl)
{
	struct fsess	*s, *next;
	size_t		 i;

	for (i = 0; i < FILTER_HASH; i++)
		for (s = fsessions[i]; s; s = next) {
			next = s->hnext;
			if (!s->started || !chain_has(s->chain, impl))
				continue;
			send_result(s, FV_FAIL, REPLY_FAILED);
			session_drop(s);
		}
}

void
filter_impl_ready(void *impl)
{
	struct fsess	*s, *next;

	for (s = TAILQ_FIRST(&waiting); s; s = next) {
		next = TAILQ_NEXT(s, wentry);
		if (!chain_ready(s->chain))
			continue;
		TAILQ_REMOVE(&waiting, s, wentry);
		evtimer_del(s->timer);
		session_start(s);
	}
}

/* ---------------------------------------------------------- the role */

static void
report_imsg(struct ipc_msg *m)
{
	struct fsess	*s = session_find(ipc_get_u64(m));
	uint32_t	 e = ipc_get_u32(m), n = ipc_get_u32(m), i;
	const char	*f[8];

	if (e >= FE_NEVENTS || n > sizeof(f) / sizeof(f[0]))
		fatalx("filter: bad report from smtp");
	for (i = 0; i < n; i++)
		if ((f[i] = ipc_get_str(m)) == NULL)
			f[i] = "";
	ipc_get_end(m);
	if (s != NULL && s->started)
		chain_report(s->chain, s->id, e, f, n);
}

static void
phase_imsg(struct ipc_msg *m)
{
	struct fsess	*s = session_find(ipc_get_u64(m));
	uint32_t	 ph = ipc_get_u32(m);
	const char	*param = ipc_get_str(m);

	ipc_get_end(m);
	if (ph >= FPH_NPHASES || ph == FPH_DATA_LINE)
		fatalx("filter: bad phase from smtp");
	/* A session this side failed already: smtp has its answer. */
	if (s == NULL || !s->started)
		return;
	session_request(s, ph, param ? param : "");
}

static void
data_imsg(struct ipc_msg *m)
{
	struct fsess	*s = session_find(ipc_get_u64(m));
	const void	*data;
	size_t		 len;

	data = ipc_get_data(m, &len);
	ipc_get_end(m);
	if (s != NULL && s->started)
		session_data(s, data, len);
}

void
filter_imsg(struct ipc_msg *m, enum smtpd_role from)
{
	struct fsess	*s;

	if (from == ROLE_PARENT && m->type == IMSG_FILTER_PROC) {
		const char *name = ipc_get_str(m);

		ipc_get_end(m);
		if (m->fd == -1 || name == NULL)
			fatalx("filter: FILTER_PROC without a descriptor");
		filter_proc_attach(name, m->fd);
		m->fd = -1;
		return;
	}
	if (from != ROLE_SMTP)
		fatalx("filter: %s from %s", ipc_type_name(m->type),
		    role_name(from));
	switch (m->type) {
	case IMSG_FILTER_BEGIN:
		session_new(m);
		break;
	case IMSG_FILTER_REPORT:
		report_imsg(m);
		break;
	case IMSG_FILTER_PHASE:
		phase_imsg(m);
		break;
	case IMSG_FILTER_DATA:
		data_imsg(m);
		break;
	case IMSG_FILTER_END:
		s = session_find(ipc_get_u64(m));
		ipc_get_end(m);
		if (s != NULL)
			session_free(s);
		break;
	default:
		fatalx("filter: unexpected %s", ipc_type_name(m->type));
	}
}

/* Every program the parent starts has its protocol state here. */
void
filter_init(void)
{
	const struct proc	*pr;
	const struct filter	*f;

	TAILQ_FOREACH(pr, &env.conf->procs, entry)
		filter_proc_new(pr->name, conf_protocol(pr->protocol),
		    conf_timeout(pr->timeout));
	TAILQ_FOREACH(f, &env.conf->filters, entry)
		if (f->type == F_PROC_EXEC)
			filter_proc_new(f->name, conf_protocol(f->protocol),
			    conf_timeout(f->timeout));
	flush_ev = event_new(env.evbase, -1, 0, flush_all, NULL);
	if (flush_ev == NULL)
		fatalx("filter: event_new");
	filter_module_init();
}
