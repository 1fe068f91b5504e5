/*
 * mta.c - the relay's routes and queues, in the smtp role.
 *
 * The scheduler hands over messages to relay (IMSG_MTA_DELIVER: the
 * envelopes of one message for one route, with the message's descriptor).
 * Each becomes a task on the route of its action and domain.  A route asks
 * the lookup role once where it leads (MX hosts or the smarthost, already
 * resolved) and keeps the answer a few minutes; its sessions take tasks
 * one after the other, so many messages to one destination share a few
 * connections, and a connection with nothing left waits a moment for more
 * before it says QUIT.  Every envelope gets exactly one IMSG_MTA_RESULT.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"
#include "mta.h"

#define MTA_HASH		256
#define MTA_MAX_CONN		8	/* sessions per route */
#define MTA_ROUTE_TTL		300	/* seconds a route answer is kept */
#define MTA_SWEEP		60	/* s between sweeps of unused routes */

static struct mta_route	*routes[MTA_HASH];
static uint64_t		 route_reqid;
static struct event	*sweep_timer;

static void	route_kick(struct mta_route *);

static uint32_t
route_hash(const char *action, const char *domain)
{
	uint32_t	 h = 5381;

	for (; *action; action++)
		h = h * 33 + (unsigned char)*action;
	for (; *domain; domain++)
		h = h * 33 + (unsigned char)*domain;
	return h % MTA_HASH;
}

static void
route_free(struct mta_route *r)
{
	if (r->auth != NULL)
		explicit_bzero(r->auth, strlen(r->auth));
	free(r->auth);
	free(r->hosts);
	free(r->srcs);
	free(r);
}

/*
 * A route nobody used since its answer expired goes: a server relaying
 * to many domains must not keep one per domain it ever wrote to.
 */
static void
route_sweep(evutil_socket_t fd, short ev, void *arg)
{
	struct mta_route	**p, *r;
	struct timeval		 tv = { MTA_SWEEP, 0 };
	time_t			 now = time(NULL);
	size_t			 h;

	(void)fd;
	(void)ev;
	(void)arg;
	for (h = 0; h < MTA_HASH; h++)
		for (p = &routes[h]; (r = *p) != NULL;) {
			if (r->ntasks == 0 && r->nconn == 0 && r->reqid == 0 &&
			    r->expires + MTA_SWEEP < now) {
				*p = r->next;
				route_free(r);
			} else
				p = &r->next;
		}
	evtimer_add(sweep_timer, &tv);
}

/* A smarthost route serves every domain; an MX route one domain. */
static struct mta_route *
route_get(const struct action *a, const char *domain)
{
	struct mta_route	*r;
	uint32_t		 h;

	if (a->host != NULL)
		domain = "";
	h = route_hash(a->name, domain);
	for (r = routes[h]; r; r = r->next)
		if (strcmp(r->action, a->name) == 0 &&
		    strcmp(r->domain, domain) == 0)
			return r;
	if (sweep_timer == NULL) {
		if ((sweep_timer = evtimer_new(env.evbase, route_sweep,
		    NULL)) == NULL)
			fatalx("mta: evtimer_new");
		route_sweep(-1, 0, NULL);
	}
	r = xcalloc(1, sizeof(*r));
	msd_strlcpy(r->action, a->name, sizeof(r->action));
	msd_strlcpy(r->domain, domain, sizeof(r->domain));
	r->a = a;
	TAILQ_INIT(&r->tasks);
	TAILQ_INIT(&r->idle);
	r->next = routes[h];
	routes[h] = r;
	return r;
}

static void
send_result(uint64_t evpid, int status, const char *text)
{
	struct ipc_out	*o;

	o = ipc_begin(env.peer[ROLE_QUEUE], IMSG_MTA_RESULT);
	ipc_put_u64(o, evpid);
	ipc_put_u32(o, status);
	ipc_put_str(o, text);
	ipc_end(o, -1);
}

void
mta_rcpt_result(struct mta_task *t, struct mta_rcpt *rc, int status,
    const char *text, const char *relay)
{
	char	 delay[64];

	if (rc->done)
		return;
	rc->done = 1;
	log_info("%016" PRIx64 " mta delivery evpid=%016" PRIx64 " from=<%s>"
	    " to=<%s> rcpt=<%s> source=\"%s\" relay=\"%s\" delay=%s"
	    " result=\"%s\" stat=\"%s\"", rc->evpid, rc->evpid, t->sender,
	    rc->to, rc->rcpt, t->src[0] ? t->src : "-", relay ? relay : "-",
	    duration_text(time(NULL) - rc->creation, delay, sizeof(delay)),
	    status == DELIVERY_PERMFAIL ? "PermFail" :
	    status == DELIVERY_TEMPFAIL || status == DELIVERY_DEFERRED ?
	    "TempFail" : "Ok", text);
	send_result(rc->evpid, status, text);
}

static void
task_free(struct mta_task *t)
{
	if (t->fd != -1)
		close(t->fd);
	free(t->rcpts);
	free(t);
}

void
mta_task_fail(struct mta_task *t, int status, const char *text,
    const char *relay)
{
	size_t	 i;

	for (i = 0; i < t->nrcpt; i++)
		mta_rcpt_result(t, &t->rcpts[i], status, text, relay);
	task_free(t);
}

/* Whatever got no answer is tried again later. */
void
mta_task_done(struct mta_task *t)
{
	mta_task_fail(t, DELIVERY_TEMPFAIL,
	    "relay session ended before this recipient was done", NULL);
}

/* Every waiting task of the route gets the same answer. */
static void
route_fail(struct mta_route *r, int status, const char *text)
{
	struct mta_task	*t;

	while ((t = TAILQ_FIRST(&r->tasks))) {
		TAILQ_REMOVE(&r->tasks, t, entry);
		r->ntasks--;
		mta_task_fail(t, status, text, NULL);
	}
}

struct mta_task *
mta_next_task(struct mta_route *r)
{
	struct mta_task	*t;

	if ((t = TAILQ_FIRST(&r->tasks)) != NULL) {
		TAILQ_REMOVE(&r->tasks, t, entry);
		r->ntasks--;
	}
	return t;
}

void
mta_session_ready(struct mta_route *r)
{
	if (r->nstarting > 0)
		r->nstarting--;
}

void
mta_session_idle(struct mta_route *r, struct mta_session *s)
{
	if (!s->is_idle) {
		TAILQ_INSERT_TAIL(&r->idle, s, idle_entry);
		s->is_idle = 1;
	}
	route_kick(r);
}

void
mta_session_closed(struct mta_route *r, struct mta_session *s,
    int was_ready, int failed, const char *error)
{
	if (s->is_idle) {
		TAILQ_REMOVE(&r->idle, s, idle_entry);
		s->is_idle = 0;
	}
	r->nconn--;
	if (!was_ready)
		mta_session_ready(r);
	if (!failed) {
		route_kick(r);
		return;
	}
	/*
	 * No host would take mail.  With no other session left, what waits
	 * goes back to the scheduler, and the route is looked up anew next
	 * time (the MX set may have changed).
	 */
	r->expires = 0;
	if (r->nconn == 0)
		route_fail(r, DELIVERY_DEFERRED, error);
}

static void
route_ask(struct mta_route *r)
{
	struct ipc_out	*o;

	r->reqid = ++route_reqid;
	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_MTA_ROUTE);
	ipc_put_u64(o, r->reqid);
	ipc_put_str(o, r->action);
	ipc_put_str(o, r->domain[0] ? r->domain : "");
	ipc_end(o, -1);
}

/* Idle sessions first, then new ones up to the route's limit. */
static void
route_kick(struct mta_route *r)
{
	struct mta_session	*s;
	size_t			 want;

	if (r->ntasks == 0)
		return;
	if (r->expires <= time(NULL) && r->nconn == 0) {
		if (r->reqid == 0)
			route_ask(r);
		return;
	}
	while (r->ntasks > 0 && (s = TAILQ_FIRST(&r->idle)) != NULL) {
		TAILQ_REMOVE(&r->idle, s, idle_entry);
		s->is_idle = 0;
		mta_session_wake(s);
	}
	if (r->nhosts == 0)
		return;
	want = r->ntasks > r->nstarting ? r->ntasks - r->nstarting : 0;
	while (want-- > 0 && r->nconn < MTA_MAX_CONN) {
		r->nconn++;
		r->nstarting++;
		mta_session_start(r);
	}
}

/* A host that failed a moment ago stays last in the new answer too. */
static time_t
host_down_until(const struct mta_route *r, const struct sockaddr_storage *ss)
{
	size_t	 i;

	for (i = 0; i < r->nhosts; i++)
		if (memcmp(&r->hosts[i].ss, ss, sizeof(*ss)) == 0)
			return r->hosts[i].down_until;
	return 0;
}

static void
route_read_hosts(struct mta_route *r, struct ipc_msg *m, uint32_t n)
{
	struct mta_host	*hosts;
	const char	*name, *helo;
	const void	*ss;
	size_t		 len;
	uint32_t	 i;

	hosts = n ? xcalloc(n, sizeof(*hosts)) : NULL;
	for (i = 0; i < n; i++) {
		hosts[i].pref = ipc_get_u32(m);
		name = ipc_get_str(m);
		ss = ipc_get_data(m, &len);
		helo = ipc_get_str(m);
		if (name == NULL || len != sizeof(hosts[i].ss))
			fatalx("mta: bad host in route answer");
		msd_strlcpy(hosts[i].name, name, sizeof(hosts[i].name));
		memcpy(&hosts[i].ss, ss, len);
		msd_strlcpy(hosts[i].helo, helo ? helo : "",
		    sizeof(hosts[i].helo));
		hosts[i].down_until = host_down_until(r, &hosts[i].ss);
	}
	free(r->hosts);
	r->hosts = hosts;
	r->nhosts = n;
}

static void
route_read_srcs(struct mta_route *r, struct ipc_msg *m)
{
	uint32_t	 n = ipc_get_u32(m), i;
	const char	*helo;
	const void	*ss;
	size_t		 len;

	if (n > 1024)
		fatalx("mta: bad route answer");
	free(r->srcs);
	r->srcs = n ? xcalloc(n, sizeof(*r->srcs)) : NULL;
	r->nsrc = n;
	for (i = 0; i < n; i++) {
		ss = ipc_get_data(m, &len);
		helo = ipc_get_str(m);
		if (len != sizeof(r->srcs[i].ss))
			fatalx("mta: bad source in route answer");
		memcpy(&r->srcs[i].ss, ss, len);
		msd_strlcpy(r->srcs[i].helo, helo ? helo : "",
		    sizeof(r->srcs[i].helo));
	}
}

static void
route_answer(struct ipc_msg *m)
{
	struct mta_route	*r = NULL;
	uint64_t		 reqid = ipc_get_u64(m);
	uint32_t		 status = ipc_get_u32(m), n;
	const char		*text = ipc_get_str(m), *auth;
	uint32_t		 scheme = ipc_get_u32(m);
	size_t			 h;

	auth = ipc_get_str(m);
	n = ipc_get_u32(m);
	for (h = 0; h < MTA_HASH && r == NULL; h++)
		for (r = routes[h]; r; r = r->next)
			if (r->reqid == reqid)
				break;
	if (r == NULL || scheme > RELAY_LMTP || n > 1024)
		fatalx("mta: bad route answer");
	r->reqid = 0;
	if (r->auth != NULL)
		explicit_bzero(r->auth, strlen(r->auth));
	free(r->auth);
	r->auth = auth ? xstrdup(auth) : NULL;
	r->scheme = scheme;
	route_read_hosts(r, m, n);
	route_read_srcs(r, m);
	ipc_get_end(m);
	if (status != LKA_OK) {
		r->expires = 0;
		log_info("mta: route %s%s%s: %s", r->action,
		    r->domain[0] ? " to " : "", r->domain, text ? text : "");
		route_fail(r, status == LKA_REJECT ? DELIVERY_PERMFAIL :
		    DELIVERY_TEMPFAIL, text ? text : "no route");
		return;
	}
	r->expires = time(NULL) + MTA_ROUTE_TTL;
	route_kick(r);
}

/* The first envelope names the action and the domain for all of them. */
static void
deliver(struct ipc_msg *m)
{
	struct mta_task		*t = xcalloc(1, sizeof(*t));
	const struct action	*a = NULL;
	struct envelope		 ev;
	const char		*json, *dom;
	uint32_t		 n = ipc_get_u32(m), i;
	struct mta_route	*r;

	if (n == 0 || n > 100000 || m->fd == -1)
		fatalx("mta: bad delivery request");
	t->fd = m->fd;
	t->nrcpt = n;
	t->rcpts = xcalloc(n, sizeof(*t->rcpts));
	for (i = 0; i < n; i++) {
		if ((json = ipc_get_str(m)) == NULL ||
		    envelope_load_json(&ev, json, strlen(json)) == -1)
			fatalx("mta: bad envelope in a delivery request");
		if (i == 0) {
			if ((a = config_action(env.conf, ev.action)) == NULL ||
			    a->method != A_RELAY)
				fatalx("mta: %s is not a relay action",
				    ev.action);
			t->msgid = ev.msgid;
			msd_strlcpy(t->sender, a->mail_from ? a->mail_from :
			    ev.sender, sizeof(t->sender));
			t->ret = ev.dsn_ret;
			msd_strlcpy(t->envid, ev.dsn_envid, sizeof(t->envid));
		}
		t->rcpts[i].evpid = ev.id;
		msd_strlcpy(t->rcpts[i].to, ev.dest, sizeof(t->rcpts[i].to));
		msd_strlcpy(t->rcpts[i].rcpt, ev.rcpt,
		    sizeof(t->rcpts[i].rcpt));
		t->rcpts[i].notify = ev.dsn_notify;
		msd_strlcpy(t->rcpts[i].orcpt, ev.dsn_orcpt,
		    sizeof(t->rcpts[i].orcpt));
		t->rcpts[i].creation = ev.creation;
	}
	ipc_get_end(m);
	dom = strrchr(t->rcpts[0].to, '@');
	r = route_get(a, dom ? dom + 1 : "");
	t->route = r;
	TAILQ_INSERT_TAIL(&r->tasks, t, entry);
	r->ntasks++;
	route_kick(r);
}

void
mta_imsg(struct ipc_msg *m, enum smtpd_role from)
{
	if (from == ROLE_QUEUE && m->type == IMSG_MTA_DELIVER)
		deliver(m);
	else if (from == ROLE_LOOKUP && m->type == IMSG_MTA_ROUTE_RESULT)
		route_answer(m);
	else
		fatalx("mta: unexpected %s from %s", ipc_type_name(m->type),
		    role_name(from));
}
