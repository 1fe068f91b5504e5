/*
 * table_async.c - tables whose backend may block (modules that declare
 * MSD_MF_MAY_BLOCK: sqlite, proc, ...) are served, in the lookup role, by
 * a worker process of their own, so that a backend slow for seconds only
 * delays the recipients that need that table.
 *
 * The lookup role asks and goes on.  Its callers stay simple, synchronous
 * walks (the rule set, alias expansion): each runs against a cache of
 * answers (struct table_cache).  A query the cache cannot answer is sent
 * to the worker and fails the walk for now; the caller sees
 * table_cache_blocked(), undoes the step and runs it again, from the
 * start, once every answer is in.  A walk is deterministic, so the rerun
 * reaches the same queries and finds them answered.
 *
 * A worker answers in order, one query at a time.  One that dies, or takes
 * longer than TABLE_TIMEOUT, is killed: its queries fail (a 4xx for the
 * client) and a new worker starts after a pause that doubles up to a
 * minute.  Lookups meanwhile fail at once.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"

#define WORKER_SLACK		5	/* s: a module's own timeout goes first */
#define RESTART_MIN		1	/* s before a new worker ... */
#define RESTART_MAX		60	/* ... doubling up to this */
#define VALUE_MAX		(64 * 1024)

/* One answer, or the question while it is out. */
struct tc_entry {
	struct tc_entry		*next;
	const struct table	*table;
	enum tq_op		 op;
	enum table_service	 service;
	char			*key;
	int			 done;
	int			 r;		/* 1, 0, -1 */
	char			*value;		/* TQ_LOOKUP, TQ_FETCH; r == 1 */
};

struct table_cache {
	struct tc_entry		*entries;
	int			 refs;		/* the owner + queries out */
	int			 pending;	/* queries out */
	int			 blocked;	/* a query had to go out */
	int			 owner_gone;
	void			(*resume)(void *);
	void			*arg;
};

struct tquery {
	TAILQ_ENTRY(tquery)	 entry;
	uint64_t		 id;
	struct table_cache	*cache;
	struct tc_entry		*ce;
};
TAILQ_HEAD(tqueries, tquery);

struct table_worker {
	LIST_ENTRY(table_worker) entry;
	struct table		*table;
	struct ipc		*ipc;		/* NULL while down */
	pid_t			 pid;
	struct tqueries		 queries;	/* sent, answered in order */
	struct event		*timeout;	/* for the first query */
	struct event		*restart;
	int			 backoff;
	time_t			 started;
};

static LIST_HEAD(, table_worker) workers = LIST_HEAD_INITIALIZER(workers);
static struct table_cache	*current;	/* the walk in progress */
static uint64_t			 next_query;

static void	worker_start(struct table_worker *);

/* ------------------------------------------------------------- caches */

struct table_cache *
table_cache_new(void (*resume)(void *), void *arg)
{
	struct table_cache	*c = xcalloc(1, sizeof(*c));

	c->refs = 1;
	c->resume = resume;
	c->arg = arg;
	return c;
}

static void
cache_unref(struct table_cache *c)
{
	struct tc_entry	*e, *next;

	if (--c->refs > 0)
		return;
	for (e = c->entries; e; e = next) {
		next = e->next;
		free(e->key);
		free(e->value);
		free(e);
	}
	free(c);
}

/* The owner is done with it; answers still out are dropped on arrival. */
void
table_cache_free(struct table_cache *c)
{
	if (c == NULL)
		return;
	if (current == c)
		current = NULL;
	c->owner_gone = 1;
	cache_unref(c);
}

/* Lookups until the next call answer from (and fill) c. */
void
table_cache_use(struct table_cache *c)
{
	current = c;
	if (c != NULL)
		c->blocked = 0;
}

/* The walk since table_cache_use() had to send a query out. */
int
table_cache_blocked(const struct table_cache *c)
{
	return c != NULL && c->blocked;
}

/*
 * One table_lookup() answered from c: TABLE_BLOCKED when the answer is
 * not in yet (c's resume callback runs once it is), else 1, 0 or -1.
 */
int
table_cache_lookup(struct table_cache *c, struct table *t,
    enum table_service s, const char *key, char *value, size_t len)
{
	int	 r;

	table_cache_use(c);
	r = table_lookup(t, s, key, value, len);
	table_cache_use(NULL);
	return table_cache_blocked(c) ? TABLE_BLOCKED : r;
}

int
table_cache_fetch(struct table_cache *c, struct table *t,
    enum table_service s, unsigned nth, char *value, size_t len)
{
	int	 r;

	table_cache_use(c);
	r = table_fetch(t, s, nth, value, len);
	table_cache_use(NULL);
	return table_cache_blocked(c) ? TABLE_BLOCKED : r;
}

/* Queries of c still out; its resume callback runs when none is. */
int
table_cache_pending(const struct table_cache *c)
{
	return c != NULL ? c->pending : 0;
}

static struct tc_entry *
cache_find(struct table_cache *c, const struct table *t, enum tq_op op,
    enum table_service s, const char *key)
{
	struct tc_entry	*e;

	for (e = c->entries; e; e = e->next)
		if (e->table == t && e->op == op && e->service == s &&
		    strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static struct tc_entry *
cache_add(struct table_cache *c, const struct table *t, enum tq_op op,
    enum table_service s, const char *key)
{
	struct tc_entry	*e = xcalloc(1, sizeof(*e));

	e->table = t;
	e->op = op;
	e->service = s;
	e->key = xstrdup(key);
	e->next = c->entries;
	c->entries = e;
	return e;
}

/* A cached answer as table_match()/table_lookup() give it. */
static int
cache_answer(const struct table *t, const struct tc_entry *e, char *value,
    size_t len)
{
	if (e->op == TQ_MATCH || e->r != 1)
		return e->r;
	if (msd_strlcpy(value, e->value ? e->value : "", len) >= len) {
		log_warnx("table %s: %s value for \"%s\" too long", t->name,
		    table_service_name(e->service), e->key);
		return -1;
	}
	return 1;
}

/* ------------------------------------------------ modules: table_match */

/*
 * msd_host.table_match for filter modules, which answer asynchronously
 * anyway: a table with a worker makes them wait for its answer instead
 * of failing the request.  Each question has a cache of its own, so the
 * answer is there when the walk of one query runs again.
 */
struct tmatch {
	struct table_cache	*cache;
	struct table		*table;
	enum table_service	 service;
	char			*key;
	void			(*done)(void *, int);
	void			*arg;
};

static int
tmatch_run(struct tmatch *m)
{
	int	 r;

	table_cache_use(m->cache);
	r = table_match(m->table, m->service, m->key);
	table_cache_use(NULL);
	return table_cache_blocked(m->cache) ? TABLE_BLOCKED : r;
}

static int
tmatch_result(int r)
{
	return r == 1 ? MSD_OK : r == 0 ? MSD_NOTFOUND : MSD_TEMPFAIL;
}

static void
tmatch_free(struct tmatch *m)
{
	table_cache_free(m->cache);
	free(m->key);
	free(m);
}

static void
tmatch_resume(void *arg)
{
	struct tmatch	*m = arg;
	void		(*done)(void *, int) = m->done;
	void		*darg = m->arg;
	int		 r;

	if ((r = tmatch_run(m)) == TABLE_BLOCKED)
		return;		/* asked again: resumed once more */
	tmatch_free(m);
	done(darg, tmatch_result(r));
}

int
table_match_module(const char *name, uint32_t service, const char *key,
    void (*done)(void *, int), void *arg)
{
	struct tmatch	*m;
	struct table	*t;
	int		 r;

	if (name == NULL || key == NULL || env.conf == NULL ||
	    (t = config_table(env.conf, name)) == NULL) {
		log_warnx("module: table_match: no table \"%s\"",
		    name ? name : "(null)");
		return MSD_TEMPFAIL;
	}
	if (service == 0 || service > K_REGEX || (service & (service - 1))) {
		log_warnx("module: table_match: bad service %#x for table %s",
		    (unsigned)service, name);
		return MSD_TEMPFAIL;
	}
	m = xcalloc(1, sizeof(*m));
	m->table = t;
	m->service = service;
	m->key = xstrdup(key);
	m->done = done;
	m->arg = arg;
	m->cache = table_cache_new(tmatch_resume, m);
	if ((r = tmatch_run(m)) == TABLE_BLOCKED && done != NULL)
		return MSD_PENDING;
	tmatch_free(m);
	return tmatch_result(r == TABLE_BLOCKED ? -1 : r);
}

/* ------------------------------------------------------ lookup side */

static void
query_send(struct table_worker *w, struct table_cache *c, struct tc_entry *e)
{
	struct tquery	*q = xcalloc(1, sizeof(*q));
	struct ipc_out	*o;
	struct timeval	 tv = { TABLE_TIMEOUT + WORKER_SLACK, 0 };

	q->id = ++next_query;
	q->cache = c;
	q->ce = e;
	c->refs++;
	c->pending++;
	if (TAILQ_EMPTY(&w->queries))
		evtimer_add(w->timeout, &tv);
	TAILQ_INSERT_TAIL(&w->queries, q, entry);
	o = ipc_begin(w->ipc, IMSG_TBL_QUERY);
	ipc_put_u64(o, q->id);
	ipc_put_u32(o, e->op);
	ipc_put_u32(o, e->service);
	ipc_put_str(o, e->key);
	ipc_end(o, -1);
}

/*
 * table_match()/table_lookup() for a table with a worker; the key is
 * already lowercased.  -1 with the cache marked blocked when the answer
 * is not in yet.
 */
int
table_async_query(struct table_worker *w, enum tq_op op, enum table_service s,
    const char *key, char *value, size_t len)
{
	struct table_cache	*c = current;
	struct tc_entry		*e;

	if (c == NULL) {
		log_warnx("table %s: queried outside a request; answered as"
		    " a failure", w->table->name);
		return -1;
	}
	if ((e = cache_find(c, w->table, op, s, key)) != NULL) {
		if (e->done)
			return cache_answer(w->table, e, value, len);
		c->blocked = 1;
		return -1;
	}
	e = cache_add(c, w->table, op, s, key);
	if (w->ipc == NULL) {
		/* down: the answer is a failure, for this whole walk */
		e->done = 1;
		e->r = -1;
		return -1;
	}
	query_send(w, c, e);
	c->blocked = 1;
	return -1;
}

/* Fills the entry and resumes the owner once it has every answer. */
static void
query_done(struct tquery *q, int r, const char *value)
{
	struct table_cache	*c = q->cache;
	struct tc_entry		*e = q->ce;

	e->done = 1;
	e->r = r;
	if (r == 1 && value != NULL)
		e->value = xstrdup(value);
	free(q);
	c->pending--;
	if (c->pending == 0 && !c->owner_gone) {
		c->refs--;	/* the owner still holds one */
		c->resume(c->arg);
		return;
	}
	cache_unref(c);
}

static void
worker_fail_all(struct table_worker *w)
{
	struct tquery	*q;

	while ((q = TAILQ_FIRST(&w->queries)) != NULL) {
		TAILQ_REMOVE(&w->queries, q, entry);
		query_done(q, -1, NULL);
	}
}

static void
worker_answer(struct table_worker *w, struct ipc_msg *m)
{
	struct tquery	*q = TAILQ_FIRST(&w->queries);
	struct timeval	 tv = { TABLE_TIMEOUT + WORKER_SLACK, 0 };
	uint64_t	 id;
	uint32_t	 r;
	const char	*value;

	id = ipc_get_u64(m);
	r = ipc_get_u32(m);
	value = ipc_get_str(m);
	ipc_get_end(m);
	if (q == NULL || q->id != id || r > 2)
		fatalx("lookup: table %s: answer %" PRIu64 " out of order",
		    w->table->name, id);
	TAILQ_REMOVE(&w->queries, q, entry);
	evtimer_del(w->timeout);
	if (!TAILQ_EMPTY(&w->queries))
		evtimer_add(w->timeout, &tv);
	query_done(q, (int)r - 1, value);
}

/* The worker is gone (died or killed): fail its queries, start anew. */
static void
worker_lost(struct table_worker *w, const char *why)
{
	struct timeval	 tv;
	int		 status;

	/* a worker that lived a while earns a quick restart again */
	if (w->started != 0 && time(NULL) - w->started > RESTART_MAX)
		w->backoff = RESTART_MIN;
	log_warnx("table %s: %s; its lookups fail until it is restarted"
	    " in %ds", w->table->name, why, w->backoff);
	if (w->pid > 0) {
		kill(w->pid, SIGKILL);
		while (waitpid(w->pid, &status, 0) == -1 && errno == EINTR)
			;
		w->pid = -1;
	}
	ipc_free(w->ipc);
	w->ipc = NULL;
	evtimer_del(w->timeout);
	worker_fail_all(w);
	tv.tv_sec = w->backoff;
	tv.tv_usec = 0;
	evtimer_add(w->restart, &tv);
	w->backoff = w->backoff * 2 > RESTART_MAX ? RESTART_MAX :
	    w->backoff * 2;
}

static void
worker_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	struct table_worker	*w = arg;

	(void)ipc;
	if (m->type == IMSG_NONE) {
		worker_lost(w, "the worker process exited");
		return;
	}
	if (m->type == IMSG_TBL_ANSWER) {
		worker_answer(w, m);
		return;
	}
	fatalx("lookup: unexpected %s from table %s",
	    ipc_type_name(m->type), w->table->name);
}

static void
worker_on_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct table_worker	*w = arg;
	char			 why[128];

	(void)fd;
	(void)ev;
	snprintf(why, sizeof(why), "no answer within %ds, worker killed",
	    TABLE_TIMEOUT + WORKER_SLACK);
	worker_lost(w, why);
}

static void
worker_on_restart(evutil_socket_t fd, short ev, void *arg)
{
	struct table_worker	*w = arg;

	(void)fd;
	(void)ev;
	worker_start(w);
}

/* -------------------------------------------------------- worker side */

static struct table	*wtable;

static void
serve_query(struct ipc *ipc, struct ipc_msg *m)
{
	static char	 value[VALUE_MAX];
	struct ipc_out	*o;
	uint64_t	 id = ipc_get_u64(m);
	uint32_t	 op = ipc_get_u32(m);
	uint32_t	 s = ipc_get_u32(m);
	const char	*key = ipc_get_str(m);
	int		 r;

	ipc_get_end(m);
	if (key == NULL || s == 0 || s > K_REGEX || (s & (s - 1)) != 0)
		fatalx("table %s: malformed query", wtable->name);
	if (op == TQ_LOOKUP)
		r = table_lookup(wtable, s, key, value, sizeof(value));
	else if (op == TQ_FETCH)
		r = table_fetch(wtable, s, 0, value, sizeof(value));
	else
		r = table_match(wtable, s, key);
	o = ipc_begin(ipc, IMSG_TBL_ANSWER);
	ipc_put_u64(o, id);
	ipc_put_u32(o, r + 1);
	ipc_put_str(o, op != TQ_MATCH && r == 1 ? value : NULL);
	ipc_end(o, -1);
}

static void
serve_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	(void)arg;
	switch (m->type) {
	case IMSG_NONE:
		_exit(0);	/* the lookup role is gone */
	case IMSG_TBL_QUERY:
		serve_query(ipc, m);
		break;
	case IMSG_TBL_UPDATE:
		ipc_get_end(m);
		if (table_update_table(wtable) == 0)
			log_info("table %s: updated", wtable->name);
		break;
	default:
		fatalx("table %s: unexpected %s", wtable->name,
		    ipc_type_name(m->type));
	}
}

/*
 * The forked worker: it keeps nothing of the lookup role but its table
 * (the channels to the other roles are closed so that they still see the
 * lookup role go when it does), opens the backend afresh and serves.
 */
static void __attribute__((noreturn))
worker_main(struct table_worker *w, int fd)
{
	struct table_worker	*o;
	char			 name[16];
	int			 r;

	for (r = 0; r < ROLE_MAX; r++)
		if (env.peer[r] != NULL)
			close(ipc_fd(env.peer[r]));
	LIST_FOREACH(o, &workers, entry)
		if (o->ipc != NULL)
			close(ipc_fd(o->ipc));
	/* the old event base is the lookup role's: never touched again */
	if ((env.evbase = event_base_new()) == NULL)
		fatalx("table %s: event_base_new", w->table->name);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	snprintf(name, sizeof(name), "table %s", w->table->name);
	prctl(PR_SET_NAME, name, 0, 0, 0);
	signal(SIGCHLD, SIG_DFL);
	wtable = w->table;
	table_detach_worker(wtable);
	if (table_reopen_one(wtable) == -1)
		_exit(1);
	ipc_new(fd, "lookup", serve_imsg, NULL);
	event_base_dispatch(env.evbase);
	_exit(0);
}

static void
worker_start(struct table_worker *w)
{
	int	 sp[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("table %s: socketpair", w->table->name);
		worker_lost(w, "no worker could start");
		return;
	}
	switch (w->pid = fork()) {
	case -1:
		log_warn("table %s: fork", w->table->name);
		close(sp[0]);
		close(sp[1]);
		worker_lost(w, "no worker could start");
		return;
	case 0:
		close(sp[0]);
		worker_main(w, sp[1]);
	default:
		break;
	}
	close(sp[1]);
	w->started = time(NULL);
	w->ipc = ipc_new(sp[0], w->table->name, worker_imsg, w);
	log_debug("table %s: worker %ld started", w->table->name,
	    (long)w->pid);
}

/* ------------------------------------------------------------- the API */

/* In the lookup role: a worker for t, which then answers through it. */
struct table_worker *
table_async_spawn(struct table *t)
{
	struct table_worker	*w = xcalloc(1, sizeof(*w));

	w->table = t;
	w->pid = -1;
	w->backoff = RESTART_MIN;
	TAILQ_INIT(&w->queries);
	w->timeout = evtimer_new(env.evbase, worker_on_timeout, w);
	w->restart = evtimer_new(env.evbase, worker_on_restart, w);
	if (w->timeout == NULL || w->restart == NULL)
		fatalx("lookup: evtimer_new");
	LIST_INSERT_HEAD(&workers, w, entry);
	worker_start(w);
	return w;
}

/* SIGHUP: the worker reloads between two queries. */
void
table_async_update(struct table_worker *w)
{
	struct ipc_out	*o;

	if (w->ipc == NULL)
		return;		/* a new worker opens the new contents */
	o = ipc_begin(w->ipc, IMSG_TBL_UPDATE);
	ipc_end(o, -1);
}
