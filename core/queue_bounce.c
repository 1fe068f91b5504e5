/*
 * queue_bounce.c - bounces and other delivery status notifications, in the
 * queue role.  When an envelope fails for good (a permanent error, or its
 * ttl ran out), its sender gets an RFC 3464 notification (bounce.c writes
 * it): the lookup role expands the sender's address like any recipient,
 * then the notification is queued as a new message from <> and the failed
 * envelope is removed, in that order, so a crash in between repeats a
 * bounce rather than losing one.
 *
 * The sender's RFC 3461 parameters decide what is sent (dsn_wants()):
 * failures unless NOTIFY leaves FAILURE out, "delayed" notices once per
 * `bounce warn-interval` unless NOTIFY leaves DELAY out, and a success
 * notice only when NOTIFY has SUCCESS.  A success notice takes the
 * delivered envelope over like a bounce does, but first marks it on disk
 * (dsn_success), so a crash before the notice is queued sends the notice
 * at the next start instead of delivering the message twice.  A delay
 * notice leaves the envelope to the scheduler and holds only its message;
 * the count of notices sent (dsn_warned) is written with the envelope's
 * retry, before the notice is queued: a crash in between loses that one
 * notice, never repeats it.
 *
 * Nothing bounces to <>: a failing bounce is only logged.
 */
#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"

#define BOUNCE_RETRY		60	/* seconds before trying again */
#define BOUNCE_TRIES		60	/* then the bounce is given up */

enum bounce_kind {
	BK_FAILED,		/* owns the envelope: removed when done */
	BK_DELAYED,		/* holds the message only */
	BK_SUCCESS,		/* owns the envelope, like BK_FAILED */
};

struct bounce {
	struct bounce		*next;
	uint64_t		 id;		/* our request id for lookup */
	enum bounce_kind	 kind;
	struct envelope		 ev;		/* the envelope reported on */
	char			 diag[512];
	char			 action[16];	/* BK_SUCCESS: the Action */
	int			 expired;
	int			 tries;
	struct event		*timer;
};

static struct bounce	*bounces;
static uint64_t		 next_id;

static void	bounce_ask(struct bounce *);

static void
bounce_free(struct bounce *b)
{
	struct bounce	**p;

	for (p = &bounces; *p; p = &(*p)->next)
		if (*p == b) {
			*p = b->next;
			break;
		}
	if (b->timer)
		event_free(b->timer);
	free(b);
}

/*
 * The envelope reported on goes (or only our hold on its message); with
 * it, maybe, the message.
 */
static void
bounce_done(struct bounce *b)
{
	if (b->kind == BK_DELAYED)
		scheduler_release(b->ev.msgid);
	else
		scheduler_remove(&b->ev);
	bounce_free(b);
}

static const char *
kind_name(const struct bounce *b)
{
	return b->kind == BK_FAILED ? "failed" : b->kind == BK_DELAYED ?
	    "delayed" : b->action;
}

static void
on_retry(evutil_socket_t fd, short ev, void *arg)
{
	bounce_ask(arg);
}

static void
bounce_later(struct bounce *b, const char *why)
{
	struct timeval	 tv = { BOUNCE_RETRY, 0 };

	if (++b->tries >= BOUNCE_TRIES) {
		log_warnx("%016" PRIx64 " queue bounce to <%s> given up: %s",
		    b->ev.id, b->ev.sender, why);
		bounce_done(b);
		return;
	}
	log_warnx("%016" PRIx64 " queue bounce to <%s> delayed: %s",
	    b->ev.id, b->ev.sender, why);
	if (b->timer == NULL &&
	    (b->timer = evtimer_new(env.evbase, on_retry, b)) == NULL)
		fatalx("queue: evtimer_new");
	evtimer_add(b->timer, &tv);
}

/* The sender's address through the rules, as from a local session. */
static void
bounce_ask(struct bounce *b)
{
	struct sockaddr_storage	 ss;
	struct ipc_out		*o;

	memset(&ss, 0, sizeof(ss));
	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_LKA_RCPT);
	ipc_put_u64(o, b->id);
	ipc_put_u32(o, 1);			/* local */
	ipc_put_data(o, &ss, sizeof(ss));
	ipc_put_str(o, NULL);			/* tag */
	ipc_put_str(o, NULL);			/* helo */
	ipc_put_str(o, NULL);			/* auth */
	ipc_put_u32(o, 0);			/* tls */
	ipc_put_str(o, "");			/* from <> */
	ipc_put_str(o, b->ev.sender);
	ipc_put_str(o, NULL);			/* rdns */
	ipc_end(o, -1);
}

static struct bounce *
bounce_new(const struct envelope *ev, enum bounce_kind kind,
    const char *diag)
{
	struct bounce	*b;

	b = xcalloc(1, sizeof(*b));
	b->id = ++next_id;
	b->kind = kind;
	b->ev = *ev;
	msd_strlcpy(b->diag, diag ? diag : "", sizeof(b->diag));
	b->next = bounces;
	bounces = b;
	return b;
}

/*
 * Takes over a failed envelope (the scheduler keeps its message) and
 * bounces it, unless it came from <> or its NOTIFY leaves FAILURE out.
 */
void
bounce_start(const struct envelope *ev, const char *diag, int expired)
{
	struct bounce	*b;

	if (!dsn_wants(ev, DSN_NOTIFY_FAILURE)) {
		if (ev->sender[0] == '\0')
			log_warnx("%016" PRIx64 " queue failed envelope from <>"
			    " to=<%s> error=\"%s\": not bounced", ev->id,
			    ev->dest, diag);
		else
			log_info("%016" PRIx64 " queue failed envelope from"
			    " <%s> to=<%s> error=\"%s\": not bounced,"
			    " NOTIFY without FAILURE", ev->id, ev->sender,
			    ev->dest, diag);
		scheduler_remove(ev);
		return;
	}
	b = bounce_new(ev, BK_FAILED, diag);
	b->expired = expired;
	bounce_ask(b);
}

/*
 * Takes over a delivered envelope: a success notice when the sender asked
 * for one, then the envelope goes.  dsn_action is the Action field:
 * "delivered" here, "relayed" from a next hop that does not offer DSN.
 */
void
bounce_success(const struct envelope *ev, const char *dsn_action,
    const char *diag)
{
	struct bounce	*b;

	if (!dsn_wants(ev, DSN_NOTIFY_SUCCESS)) {
		scheduler_remove(ev);
		return;
	}
	b = bounce_new(ev, BK_SUCCESS, diag);
	msd_strlcpy(b->action, dsn_action, sizeof(b->action));
	if (strcmp(b->ev.dsn_success, b->action) != 0) {
		/* Delivered, whatever happens next: never deliver it again. */
		msd_strlcpy(b->ev.dsn_success, b->action,
		    sizeof(b->ev.dsn_success));
		msd_strlcpy(b->ev.errorline, b->diag, sizeof(b->ev.errorline));
		if (queue_envelope_update(&b->ev) == -1)
			log_warnx("queue: cannot mark envelope %016" PRIx64
			    " delivered", b->ev.id);
	}
	bounce_ask(b);
}

/* How many warn-intervals an envelope of that age has passed. */
static uint32_t
warn_due(time_t age)
{
	const struct config	*c = env.conf;
	uint32_t		 n = 0;
	size_t			 i;

	for (i = 0; c != NULL && i < c->nwarn_interval; i++)
		if (age >= (time_t)c->warn_interval[i])
			n++;
	return n;
}

/*
 * A temporary failure of an envelope that stays queued: when it has
 * waited past a warn-interval the sender was not told of yet, one
 * "delayed" notice (for all the intervals passed since the last one).
 */
void
bounce_delay(struct envelope *ev, const char *diag)
{
	struct bounce	*b;
	uint32_t	 due;

	if (!dsn_wants(ev, DSN_NOTIFY_DELAY))
		return;
	due = warn_due(time(NULL) - (time_t)ev->creation);
	if (due <= ev->dsn_warned)
		return;
	ev->dsn_warned = due;
	scheduler_hold(ev->msgid);
	b = bounce_new(ev, BK_DELAYED, diag);
	bounce_ask(b);
}

/*
 * The enhanced code of a reply ("550 5.1.1 ...") when its class is one of
 * classes; otherwise dflt.
 */
static void
status_from(const char *d, const char *classes, const char *dflt, char *buf,
    size_t len)
{
	int	 n = 0;

	if (strlen(d) > 4 && d[3] == ' ' && strchr(classes, d[4]) != NULL &&
	    sscanf(d + 4, "%*1[245].%*3[0-9].%*3[0-9]%n", &n) == 0 && n > 0 &&
	    (size_t)n < len) {
		memcpy(buf, d + 4, n);
		buf[n] = '\0';
		return;
	}
	msd_strlcpy(buf, dflt, len);
}

static void
dsn_status(const struct bounce *b, char *buf, size_t len)
{
	switch (b->kind) {
	case BK_DELAYED:
		status_from(b->diag, "4", "4.0.0", buf, len);
		break;
	case BK_SUCCESS:
		msd_strlcpy(buf, "2.0.0", len);
		break;
	default:
		if (b->expired)
			msd_strlcpy(buf, "4.4.7", len);
		else
			status_from(b->diag, "245", "5.0.0", buf, len);
		break;
	}
}

/*
 * RET=HDRS, RET=FULL; without RET a failure returns the whole message and
 * the other notices only its headers, as they are no call to resend it.
 */
static int
headers_only(const struct bounce *b)
{
	if (b->ev.dsn_ret != 0)
		return b->ev.dsn_ret == DSN_RET_HDRS;
	return b->kind != BK_FAILED;
}

/* "3 hours", "2 days": how long a delayed message has waited. */
static void
fmt_age(char *buf, size_t len, time_t age)
{
	static const struct {
		time_t		 secs;
		const char	*unit;
	} units[] = {
		{ 86400, "day" }, { 3600, "hour" }, { 60, "minute" },
		{ 1, "second" },
	};
	size_t	 i;
	long long n;

	for (i = 0; i < sizeof(units) / sizeof(units[0]) - 1; i++)
		if (age >= units[i].secs)
			break;
	n = (long long)(age / units[i].secs);
	snprintf(buf, len, "%lld %s%s", n, units[i].unit, n == 1 ? "" : "s");
}

/*
 * Writes the notification into a new message, committed later; 0, -1, or
 * QUEUE_UNREADABLE when the original is there but cannot be decoded.
 */
static int
bounce_write_msg(struct bounce *b, uint32_t *msgid)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 br;
	char			 status[16], diag[600], age[64], note[160];
	FILE			*fp;
	int			 fd, ofd, r;

	if (queue_message_create(msgid, &fd) == -1)
		return -1;
	if ((ofd = queue_message_fd_r(b->ev.msgid)) < 0 ||
	    (fp = fdopen(fd, "w")) == NULL) {
		if (ofd >= 0)
			close(ofd);
		close(fd);
		queue_message_delete(*msgid);
		return ofd == QUEUE_UNREADABLE ? QUEUE_UNREADABLE : -1;
	}
	memset(&bi, 0, sizeof(bi));
	bi.hostname = b->ev.hostname[0] ? b->ev.hostname : "localhost";
	bi.sender = b->ev.sender;
	bi.msgid = b->ev.msgid;
	bi.arrival = b->ev.creation;
	bi.src = b->ev.src;
	bi.helo = b->ev.helo;
	bi.envid = b->ev.dsn_envid[0] ? b->ev.dsn_envid : NULL;
	bi.headers_only = headers_only(b);
	if (b->kind == BK_DELAYED) {
		fmt_age(age, sizeof(age), time(NULL) - (time_t)b->ev.creation);
		snprintf(note, sizeof(note), "Your message has been waiting"
		    " in the queue for %s.", age);
		bi.note = note;
	}
	dsn_status(b, status, sizeof(status));
	snprintf(diag, sizeof(diag), "%s%s", b->expired ?
	    "delivery time expired; last error: " : "", b->diag);
	memset(&br, 0, sizeof(br));
	br.rcpt = b->ev.rcpt;
	br.dest = b->ev.dest;
	br.status = status;
	br.diag = diag;
	br.permanent = b->kind == BK_FAILED;
	br.action = b->kind == BK_SUCCESS ? b->action : NULL;
	br.orcpt = b->ev.dsn_orcpt[0] ? b->ev.dsn_orcpt : NULL;
	if (b->kind == BK_DELAYED)
		br.retry_until = b->ev.creation + b->ev.expire;
	r = bounce_write(fp, &bi, &br, 1, ofd, time(NULL));
	close(ofd);
	if (fclose(fp) == EOF)
		r = -1;
	if (r == -1) {
		queue_message_delete(*msgid);
		return -1;
	}
	return 0;
}

static void
bounce_envelope(const struct bounce *b, const struct xresult *x,
    uint32_t msgid, struct envelope *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->msgid = msgid;
	msd_strlcpy(ev->rcpt, b->ev.sender, sizeof(ev->rcpt));
	msd_strlcpy(ev->dest, x->dest, sizeof(ev->dest));
	msd_strlcpy(ev->user, x->user, sizeof(ev->user));
	ev->dlv = x->dlv;
	msd_strlcpy(ev->dlv_arg, x->dlv_arg, sizeof(ev->dlv_arg));
	msd_strlcpy(ev->action, x->action, sizeof(ev->action));
	msd_strlcpy(ev->hostname, b->ev.hostname, sizeof(ev->hostname));
	msd_strlcpy(ev->src, "local", sizeof(ev->src));
	ev->creation = time(NULL);
	ev->expire = queue_ttl(x->action);
}

/* The sender expanded: queue the notification for each delivery. */
static void
bounce_queue(struct bounce *b, struct xresult *xs, uint32_t n)
{
	struct envelope	*evs;
	uint32_t	 msgid, i;
	int		 r;

	if ((r = bounce_write_msg(b, &msgid)) == QUEUE_UNREADABLE) {
		/*
		 * Giving up would remove a message that a restart with the
		 * right queue key delivers: wait for the admin instead.
		 */
		b->tries = 0;
		return bounce_later(b, "the queued message cannot be decoded");
	}
	if (r == -1)
		return bounce_later(b, "cannot write the notification");
	evs = xcalloc(n, sizeof(*evs));
	for (i = 0; i < n; i++) {
		bounce_envelope(b, &xs[i], msgid, &evs[i]);
		if (queue_envelope_create(&evs[i]) == -1)
			break;
	}
	/* As for a message from smtp: envelopes, commit, flush. */
	if (i < n || queue_message_commit(msgid) == -1 ||
	    queue_flush() == -1) {
		while (i-- > 0)
			queue_envelope_delete(evs[i].id);
		queue_message_delete(msgid);
		free(evs);
		return bounce_later(b, "cannot queue the notification");
	}
	for (i = 0; i < n; i++) {
		log_info("%016" PRIx64 " queue bounce evpid=%016" PRIx64
		    " for=%016" PRIx64 " to=<%s> dest=<%s> action=%s",
		    b->ev.id, evs[i].id, b->ev.id, b->ev.sender, evs[i].dest,
		    kind_name(b));
		scheduler_add(&evs[i]);
	}
	free(evs);
	bounce_done(b);
}

/* IMSG_LKA_RCPT_RESULT from lookup for a bounce. */
void
bounce_lookup_result(struct ipc_msg *m)
{
	struct bounce	*b;
	struct xresult	*xs;
	uint64_t	 id = ipc_get_u64(m);
	uint32_t	 status = ipc_get_u32(m), n, i;
	const char	*text = ipc_get_str(m);

	n = ipc_get_u32(m);
	for (b = bounces; b; b = b->next)
		if (b->id == id)
			break;
	if (b == NULL)
		fatalx("queue: lookup answer for no bounce");
	if (status != LKA_OK) {
		ipc_get_end(m);
		if (status == LKA_TEMPFAIL)
			return bounce_later(b, text ? text : "lookup failed");
		log_warnx("%016" PRIx64 " queue bounce to <%s> impossible:"
		    " %s", b->ev.id, b->ev.sender, text ? text : "refused");
		return bounce_done(b);
	}
	xs = xcalloc(n ? n : 1, sizeof(*xs));
	for (i = 0; i < n; i++)
		if (xresult_get(m, &xs[i]) == -1)
			fatalx("queue: bad expansion from lookup");
	ipc_get_end(m);
	bounce_queue(b, xs, n);
	free(xs);
}
