/*
 * scheduler.c - decides when each envelope is delivered (queue role).
 *
 * New envelopes are tried at once; a temporary failure is retried with a
 * growing delay until the envelope's ttl runs out.  At most
 * SCHED_MAX_INFLIGHT deliveries run at a time so a burst cannot fork the
 * machine to death.  A message is removed from the spool when its last
 * envelope is done.
 *
 * A relay route whose hosts all refused (DELIVERY_DEFERRED) keeps up to
 * `mta max-deferred` of its waiting envelopes on a hold list; the first
 * delivery that succeeds on that route again makes them ready at once
 * instead of at their next retry.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"

#define SCHED_MAX_INFLIGHT	32
#define SCHED_MAX_RELAY		1000	/* envelopes with the smtp role */
#define SCHED_RELAY_BATCH	100	/* recipients in one transaction */
#define SCHED_HASH		4096
#define HOLD_HASH		256
#define HOLD_KEY_MAX		(128 + 256 + 2)	/* action, domain */
/*
 * OpenSMTPD's schedule: try n comes BASE * n^2 seconds after the message
 * arrived (relay 6m40s, 26m40s, 1h, 1h46m, ...; local 10s, 40s, 90s, ...).
 */
#define BACKOFF_RELAY		400
#define BACKOFF_LOCAL		10
#define SPOOL_RETRY		30	/* s, when the spool would not open */

struct sched_hold;

struct sched_ev {
	TAILQ_ENTRY(sched_ev)	 entry;		/* ready or waiting list */
	struct sched_ev		*hnext;		/* in-flight hash chain */
	int			 relay;		/* goes to the smtp role */
	struct sched_hold	*hold;		/* waiting, held for a route */
	TAILQ_ENTRY(sched_ev)	 hold_entry;
	struct envelope		 ev;
};
TAILQ_HEAD(sched_list, sched_ev);

/* The envelopes a down route keeps for when it works again. */
struct sched_hold {
	struct sched_hold	*next;		/* hash chain */
	char			 key[HOLD_KEY_MAX];
	TAILQ_HEAD(, sched_ev)	 evs;
	size_t			 n;
};

struct msgref {
	struct msgref	*next;
	uint32_t	 msgid;
	uint32_t	 count;			/* live envelopes */
};

static struct sched_list ready = TAILQ_HEAD_INITIALIZER(ready);
static struct sched_list ready_relay = TAILQ_HEAD_INITIALIZER(ready_relay);
static struct sched_list waiting = TAILQ_HEAD_INITIALIZER(waiting);
static struct sched_ev	*inflight[SCHED_HASH];
static struct msgref	*msgrefs[SCHED_HASH];
static struct sched_hold *holds[HOLD_HASH];
static size_t		 nholds;	/* routes holding envelopes */
static size_t		 ninflight, ninflight_relay;
static struct event	*timer;
static struct event	*kick;

static void	schedule(void);

static struct msgref *
msgref_get(uint32_t msgid, int create)
{
	struct msgref	*r;

	for (r = msgrefs[msgid % SCHED_HASH]; r; r = r->next)
		if (r->msgid == msgid)
			return r;
	if (!create)
		return NULL;
	r = xcalloc(1, sizeof(*r));
	r->msgid = msgid;
	r->next = msgrefs[msgid % SCHED_HASH];
	msgrefs[msgid % SCHED_HASH] = r;
	return r;
}

/* Drops one envelope's hold on its message; deletes it with the last. */
static void
msgref_release(uint32_t msgid)
{
	struct msgref	**p, *r;

	for (p = &msgrefs[msgid % SCHED_HASH]; (r = *p); p = &r->next)
		if (r->msgid == msgid)
			break;
	if (r == NULL)
		fatalx("scheduler: unknown message %08" PRIx32, msgid);
	if (--r->count)
		return;
	*p = r->next;
	free(r);
	if (queue_message_delete(msgid) == -1)
		log_warnx("queue: cannot remove message %08" PRIx32, msgid);
}

void
scheduler_hold(uint32_t msgid)
{
	msgref_get(msgid, 1)->count++;
}

void
scheduler_release(uint32_t msgid)
{
	msgref_release(msgid);
}

static void
kick_soon(void)
{
	event_active(kick, EV_TIMEOUT, 0);
}

static int
is_relay(const struct envelope *ev)
{
	const struct action *a = config_action(env.conf, ev->action);

	return a != NULL && a->method == A_RELAY;
}

/*
 * Into the ready list, or the waiting list by nexttry.  Retries mostly
 * go last, so the scan starts from the end.
 */
static void
sched_insert(struct sched_ev *s)
{
	struct sched_ev	*w;

	if (s->ev.nexttry <= time(NULL)) {
		TAILQ_INSERT_TAIL(s->relay ? &ready_relay : &ready, s, entry);
		kick_soon();
		return;
	}
	TAILQ_FOREACH_REVERSE(w, &waiting, sched_list, entry)
		if (w->ev.nexttry <= s->ev.nexttry)
			break;
	if (w)
		TAILQ_INSERT_AFTER(&waiting, w, s, entry);
	else
		TAILQ_INSERT_HEAD(&waiting, s, entry);
	kick_soon();
}

void
scheduler_add(struct envelope *ev)
{
	struct sched_ev	*s = xcalloc(1, sizeof(*s));

	s->ev = *ev;
	s->relay = is_relay(ev);
	msgref_get(ev->msgid, 1)->count++;
	sched_insert(s);
}

static void
inflight_add(struct sched_ev *s)
{
	s->hnext = inflight[s->ev.id % SCHED_HASH];
	inflight[s->ev.id % SCHED_HASH] = s;
	if (s->relay)
		ninflight_relay++;
	else
		ninflight++;
}

/* A relay route: the action, and the domain unless a smarthost serves all. */
static void
route_key(const struct envelope *ev, char *buf, size_t len)
{
	const struct action	*a = config_action(env.conf, ev->action);
	const char		*dom = strrchr(ev->dest, '@');

	snprintf(buf, len, "%s\n%s", ev->action,
	    a != NULL && a->host != NULL ? "" : dom ? dom + 1 : "");
	lowercase(buf);
}

/* ------------------------------------------------------ max-deferred */

static uint32_t
hold_hash(const char *key)
{
	uint32_t	 h = 5381;

	for (; *key; key++)
		h = h * 33 + (unsigned char)*key;
	return h % HOLD_HASH;
}

static struct sched_hold *
hold_find(const char *key, int create)
{
	struct sched_hold	*hd;
	uint32_t		 i = hold_hash(key);

	for (hd = holds[i]; hd; hd = hd->next)
		if (strcmp(hd->key, key) == 0)
			return hd;
	if (!create)
		return NULL;
	hd = xcalloc(1, sizeof(*hd));
	msd_strlcpy(hd->key, key, sizeof(hd->key));
	TAILQ_INIT(&hd->evs);
	hd->next = holds[i];
	holds[i] = hd;
	nholds++;
	return hd;
}

static void
hold_drop(struct sched_ev *s)
{
	struct sched_hold	*hd = s->hold, **p;

	if (hd == NULL)
		return;
	TAILQ_REMOVE(&hd->evs, s, hold_entry);
	s->hold = NULL;
	if (--hd->n > 0)
		return;
	for (p = &holds[hold_hash(hd->key)]; *p != hd; p = &(*p)->next)
		;
	*p = hd->next;
	free(hd);
	nholds--;
}

/* A waiting envelope of a route that is down, while there is room. */
static void
hold_add(struct sched_ev *s)
{
	struct sched_hold	*hd;
	char			 key[HOLD_KEY_MAX];

	if (s->ev.nexttry <= time(NULL))
		return;			/* ready anyway */
	route_key(&s->ev, key, sizeof(key));
	hd = hold_find(key, 1);
	if (hd->n >= env.conf->max_deferred)
		return;
	TAILQ_INSERT_TAIL(&hd->evs, s, hold_entry);
	s->hold = hd;
	hd->n++;
}

/* The route delivered: what it held is tried now. */
static void
hold_release(const struct envelope *ev)
{
	struct sched_hold	*hd;
	struct sched_ev		*s;
	char			 key[HOLD_KEY_MAX];
	size_t			 n, i;

	if (nholds == 0)
		return;		/* the common case: no route was down */
	route_key(ev, key, sizeof(key));
	if ((hd = hold_find(key, 0)) == NULL)
		return;
	/* The last hold_drop frees hd. */
	for (n = hd->n, i = 0; i < n; i++) {
		s = TAILQ_FIRST(&hd->evs);
		hold_drop(s);
		TAILQ_REMOVE(&waiting, s, entry);
		TAILQ_INSERT_TAIL(&ready_relay, s, entry);
	}
	log_info("queue: relay %s delivers again: %zu deferred envelope%s "
	    "released", ev->action, n, n == 1 ? "" : "s");
	kick_soon();
}

static void
dispatch_relay(struct sched_ev *s, int fd)
{
	struct sched_ev	*batch[SCHED_RELAY_BATCH], *n, *next;
	struct ipc_out	*o;
	size_t		 nb = 0, i;
	char		*json, key[HOLD_KEY_MAX], nkey[HOLD_KEY_MAX];

	/*
	 * Same message, same route: one transaction for the smtp role.  A
	 * message's envelopes are queued one after the other: look along
	 * that run only, never through the whole ready list per message.
	 */
	batch[nb++] = s;
	route_key(&s->ev, key, sizeof(key));
	for (n = TAILQ_FIRST(&ready_relay); n && nb < SCHED_RELAY_BATCH &&
	    n->ev.msgid == s->ev.msgid; n = next) {
		next = TAILQ_NEXT(n, entry);
		route_key(&n->ev, nkey, sizeof(nkey));
		if (strcmp(key, nkey) == 0) {
			TAILQ_REMOVE(&ready_relay, n, entry);
			batch[nb++] = n;
		}
	}
	o = ipc_begin(env.peer[ROLE_SMTP], IMSG_MTA_DELIVER);
	ipc_put_u32(o, nb);
	for (i = 0; i < nb; i++) {
		batch[i]->ev.lasttry = time(NULL);
		json = envelope_dump(&batch[i]->ev);
		ipc_put_str(o, json);
		free(json);
		inflight_add(batch[i]);
	}
	ipc_end(o, fd);
}

static void
dispatch(struct sched_ev *s)
{
	struct ipc_out	*o;
	char		*json;
	int		 fd;

	if ((fd = queue_message_fd_r(s->ev.msgid)) < 0) {
		/* Retried: a transient spool error must not lose mail. */
		s->ev.retry++;
		s->ev.nexttry = time(NULL) + SPOOL_RETRY;
		msd_strlcpy(s->ev.errorline, fd == QUEUE_UNREADABLE ?
		    "the queued message cannot be decoded (see the log)" :
		    "cannot open the queued message", sizeof(s->ev.errorline));
		log_warnx("queue: %016" PRIx64 ": cannot open message %08"
		    PRIx32 ", retrying", s->ev.id, s->ev.msgid);
		msgref_get(s->ev.msgid, 1)->count--;
		scheduler_add(&s->ev);
		free(s);
		return;
	}
	if (s->relay) {
		dispatch_relay(s, fd);
		return;
	}
	s->ev.lasttry = time(NULL);
	json = envelope_dump(&s->ev);
	o = ipc_begin(env.peer[ROLE_PARENT], IMSG_MDA_DELIVER);
	ipc_put_u64(o, s->ev.id);
	ipc_put_str(o, json);
	ipc_end(o, fd);
	free(json);
	inflight_add(s);
}

static void
schedule(void)
{
	struct sched_ev	*s;
	time_t		 now = time(NULL);

	while ((s = TAILQ_FIRST(&waiting)) && s->ev.nexttry <= now) {
		TAILQ_REMOVE(&waiting, s, entry);
		hold_drop(s);
		TAILQ_INSERT_TAIL(s->relay ? &ready_relay : &ready, s, entry);
	}
	while (ninflight < SCHED_MAX_INFLIGHT && (s = TAILQ_FIRST(&ready))) {
		TAILQ_REMOVE(&ready, s, entry);
		dispatch(s);
	}
	while (ninflight_relay < SCHED_MAX_RELAY &&
	    (s = TAILQ_FIRST(&ready_relay))) {
		TAILQ_REMOVE(&ready_relay, s, entry);
		dispatch(s);
	}
	if ((s = TAILQ_FIRST(&waiting))) {
		struct timeval tv = { s->ev.nexttry - now, 0 };

		evtimer_add(timer, &tv);
	}
}

static void
on_timer(evutil_socket_t fd, short ev, void *arg)
{
	schedule();
}

static struct sched_ev *
inflight_take(uint64_t evpid)
{
	struct sched_ev	**p, *s;

	for (p = &inflight[evpid % SCHED_HASH]; (s = *p); p = &s->hnext)
		if (s->ev.id == evpid) {
			*p = s->hnext;
			if (s->relay)
				ninflight_relay--;
			else
				ninflight--;
			return s;
		}
	fatalx("scheduler: result for unknown envelope %016" PRIx64, evpid);
}

/* The first point of the schedule, from try `retry` on, still ahead. */
static time_t
retry_next(const struct sched_ev *s, time_t now)
{
	time_t		 base = s->relay ? BACKOFF_RELAY : BACKOFF_LOCAL, t;
	uint64_t	 n = s->ev.retry ? s->ev.retry : 1;

	while ((t = s->ev.creation + (time_t)(base * n * n)) <= now)
		n++;
	return t;
}

/* An envelope is finished: off the disk, and its hold on the message. */
void
scheduler_remove(const struct envelope *ev)
{
	if (queue_envelope_delete(ev->id) == -1)
		log_warnx("queue: cannot remove envelope %016" PRIx64,
		    ev->id);
	msgref_release(ev->msgid);
}

static void
envelope_done(struct sched_ev *s)
{
	scheduler_remove(&s->ev);
	free(s);
}

/* The bouncer keeps the envelope (and its message) until it is done. */
static void
envelope_bounce(struct sched_ev *s, const char *text, int expired)
{
	bounce_start(&s->ev, text, expired);
	free(s);
}

static void
envelope_retry(struct sched_ev *s, const char *text, int deferred)
{
	time_t	 now = time(NULL);

	msd_strlcpy(s->ev.errorline, text, sizeof(s->ev.errorline));
	if (now >= s->ev.creation + (time_t)s->ev.expire) {
		log_warnx("%016" PRIx64 " queue expired evpid=%016" PRIx64
		    " from=<%s> to=<%s> error=\"%s\"", s->ev.id, s->ev.id,
		    s->ev.sender, s->ev.dest, text);
		envelope_bounce(s, text, 1);
		return;
	}
	s->ev.retry++;
	s->ev.nexttry = retry_next(s, now);
	/* The last try is at the ttl, so the bounce is not a backoff late. */
	if (s->ev.nexttry > s->ev.creation + (time_t)s->ev.expire)
		s->ev.nexttry = s->ev.creation + (time_t)s->ev.expire;
	bounce_delay(&s->ev, text);	/* may count a notice in ev */
	if (queue_envelope_update(&s->ev) == -1)
		log_warnx("queue: cannot update envelope %016" PRIx64,
		    s->ev.id);
	sched_insert(s);
	if (deferred)
		hold_add(s);
}

void
scheduler_result(uint64_t evpid, int status, const char *text)
{
	struct sched_ev	*s = inflight_take(evpid);

	if (s->relay && (status == DELIVERY_OK || status == DELIVERY_RELAYED ||
	    status == DELIVERY_DSN_PASSED))
		hold_release(&s->ev);
	switch (status) {
	case DELIVERY_OK:
	case DELIVERY_RELAYED:
		if (!dsn_wants(&s->ev, DSN_NOTIFY_SUCCESS)) {
			envelope_done(s);
			break;
		}
		bounce_success(&s->ev, status == DELIVERY_OK ? "delivered" :
		    "relayed", text);
		free(s);
		break;
	case DELIVERY_DSN_PASSED:
		/* The next hop took NOTIFY: success notices are its to send. */
		envelope_done(s);
		break;
	case DELIVERY_PERMFAIL:
		log_warnx("%016" PRIx64 " queue permanent failure evpid=%016"
		    PRIx64 " from=<%s> to=<%s> error=\"%s\"",
		    s->ev.id, s->ev.id, s->ev.sender, s->ev.dest, text);
		envelope_bounce(s, text, 0);
		break;
	default:
		envelope_retry(s, text, s->relay && status == DELIVERY_DEFERRED);
		break;
	}
	kick_soon();
}

/*
 * "evpid TAB creation TAB state TAB retries TAB nexttry TAB sender TAB
 * dest TAB rcpt TAB last error": what mailq prints.  Tabs and newlines
 * in the error become blanks.
 */
static void
list_one(struct ipc_out **o, uint64_t reqid, const struct envelope *ev,
    const char *state)
{
	char	 line[SMTPD_MAXADDR * 3 + 1024], *p;

	snprintf(line, sizeof(line), "%016" PRIx64 "\t%lld\t%s\t%u\t%lld\t"
	    "%s\t%s\t%s\t%s", ev->id, (long long)ev->creation, state,
	    ev->retry, (long long)ev->nexttry, ev->sender, ev->dest, ev->rcpt,
	    ev->errorline);
	for (p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (*o != NULL && ipc_out_len(*o) > IPC_CHUNK) {
		ipc_end(*o, -1);
		*o = NULL;
	}
	if (*o == NULL) {
		*o = ipc_begin(env.peer[ROLE_CONTROL], IMSG_CTL_LIST_DATA);
		ipc_put_u64(*o, reqid);
	}
	ipc_put_str(*o, line);
}

void
scheduler_list(uint64_t reqid)
{
	struct ipc_out	*o = NULL;
	struct sched_ev	*s;
	size_t		 i;

	for (i = 0; i < SCHED_HASH; i++)
		for (s = inflight[i]; s; s = s->hnext)
			list_one(&o, reqid, &s->ev, "delivering");
	TAILQ_FOREACH(s, &ready, entry)
		list_one(&o, reqid, &s->ev, "ready");
	TAILQ_FOREACH(s, &ready_relay, entry)
		list_one(&o, reqid, &s->ev, "ready");
	TAILQ_FOREACH(s, &waiting, entry)
		list_one(&o, reqid, &s->ev, "waiting");
	if (o != NULL)
		ipc_end(o, -1);
	o = ipc_begin(env.peer[ROLE_CONTROL], IMSG_CTL_LIST_END);
	ipc_put_u64(o, reqid);
	ipc_end(o, -1);
}

static void
on_kick(evutil_socket_t fd, short ev, void *arg)
{
	schedule();
}

void
scheduler_init(void)
{
	timer = evtimer_new(env.evbase, on_timer, NULL);
	kick = event_new(env.evbase, -1, 0, on_kick, NULL);
	if (timer == NULL || kick == NULL)
		fatalx("scheduler: event_new");
}
