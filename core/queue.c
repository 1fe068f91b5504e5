/*
 * queue.c - the queue role: sole writer of the spool (through the queue
 * module), runs the scheduler.  Runs as _smtpq.
 *
 * Commits are grouped: every commit request read in one turn of the event
 * loop is staged, then one flush makes the whole round durable, and only
 * then does each session get its answer.  A client never hears 250 for a
 * message that is not on disk, and concurrent sessions share the fsyncs of
 * the spool directories.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"

struct commit {
	TAILQ_ENTRY(commit)	 entry;
	uint64_t		 reqid;
	uint32_t		 msgid;
	struct envelope		*evs;
	size_t			 nevs;
};
TAILQ_HEAD(commitlist, commit);

static struct commitlist commit_round = TAILQ_HEAD_INITIALIZER(commit_round);
static struct event	*flush_ev;

static void
reply_status(uint32_t type, uint64_t reqid, uint32_t status)
{
	struct ipc_out *o = ipc_begin(env.peer[ROLE_SMTP], type);

	ipc_put_u64(o, reqid);
	ipc_put_u32(o, status);
	ipc_end(o, -1);
}

static void
queue_create(struct ipc_msg *m)
{
	struct ipc_out	*o;
	uint64_t	 reqid = ipc_get_u64(m);
	uint32_t	 msgid = 0;
	int		 fd;

	ipc_get_end(m);
	if (queue_message_create(&msgid, &fd) == -1) {
		log_warnx("queue: cannot create a message, answering 421");
		fd = -1;
	}
	o = ipc_begin(env.peer[ROLE_SMTP], IMSG_QUEUE_CREATE_RESULT);
	ipc_put_u64(o, reqid);
	ipc_put_u32(o, fd == -1);
	ipc_put_u32(o, msgid);
	ipc_end(o, fd);
}

/* Undoes a staged or committed message whose round failed. */
static void
commit_drop(struct commit *c)
{
	size_t	 i;

	for (i = 0; i < c->nevs; i++)
		if (c->evs[i].id)
			queue_envelope_delete(c->evs[i].id);
	queue_message_delete(c->msgid);
}

static void
commit_free(struct commit *c)
{
	free(c->evs);
	free(c);
}

/* Envelopes stage on disk as they come; the commit follows the last. */
static void
commit_finish(struct commit *c)
{
	size_t	 i;

	for (i = 0; i < c->nevs; i++)
		if (queue_envelope_create(&c->evs[i]) == -1)
			goto fail;
	if (queue_message_commit(c->msgid) == -1)
		goto fail;
	TAILQ_INSERT_TAIL(&commit_round, c, entry);
	/* Runs after the other frames already read in this turn. */
	event_active(flush_ev, EV_TIMEOUT, 0);
	return;
fail:
	log_warnx("queue: cannot commit message %08" PRIx32 ", answering 421",
	    c->msgid);
	commit_drop(c);
	reply_status(IMSG_QUEUE_COMMIT_RESULT, c->reqid, 1);
	commit_free(c);
}

/*
 * The smtp role writes a commit's frames back to back, so one commit is
 * assembled at a time: the header, then envelope frames until all came.
 */
static struct commit	*incoming;
static size_t		 incoming_want;

static void
queue_commit(struct ipc_msg *m)
{
	struct commit	*c;
	uint32_t	 n;

	if (incoming)
		fatalx("queue: commit while another is incomplete");
	c = xcalloc(1, sizeof(*c));
	c->reqid = ipc_get_u64(m);
	c->msgid = ipc_get_u32(m);
	n = ipc_get_u32(m);
	ipc_get_end(m);
	if (n == 0 || n > 1000000)
		fatalx("queue: commit with %u envelopes", n);
	c->evs = xcalloc(n, sizeof(*c->evs));
	incoming = c;
	incoming_want = n;
}

/* The action's `ttl`, else `queue ttl`; the default when neither is set. */
uint32_t
queue_ttl(const char *action)
{
	const struct action	*a;

	if (env.conf == NULL)
		return DEFAULT_EXPIRE;
	if ((a = config_action(env.conf, action)) != NULL && a->ttl != 0)
		return a->ttl;
	return env.conf->queue_ttl ? env.conf->queue_ttl : DEFAULT_EXPIRE;
}

static void
queue_envelopes(struct ipc_msg *m)
{
	struct commit	*c = incoming;
	uint64_t	 reqid = ipc_get_u64(m);

	if (c == NULL || reqid != c->reqid)
		fatalx("queue: envelopes without their commit");
	while (ipc_get_more(m)) {
		const char *json = ipc_get_str(m);
		struct envelope *ev;

		if (c->nevs == incoming_want)
			fatalx("queue: more envelopes than announced");
		ev = &c->evs[c->nevs++];
		if (json == NULL ||
		    envelope_load_json(ev, json, strlen(json)) == -1)
			fatalx("queue: bad envelope from smtp");
		ev->msgid = c->msgid;
		ev->id = 0;
		/* The queue's configuration decides how long mail may wait. */
		ev->expire = queue_ttl(ev->action);
	}
	if (c->nevs < incoming_want)
		return;
	incoming = NULL;
	commit_finish(c);
}

static void
queue_flush_round(evutil_socket_t fd, short ev, void *arg)
{
	struct commit	*c;
	size_t		 i;
	int		 ok;

	if (TAILQ_EMPTY(&commit_round))
		return;
	ok = queue_flush() == 0;
	if (!ok)
		log_warnx("queue: flush failed, answering 421 to this commit_round");
	while ((c = TAILQ_FIRST(&commit_round))) {
		TAILQ_REMOVE(&commit_round, c, entry);
		if (ok) {
			reply_status(IMSG_QUEUE_COMMIT_RESULT, c->reqid, 0);
			for (i = 0; i < c->nevs; i++) {
				/* OpenSMTPD's line, under the session's id. */
				log_info("%016" PRIx64 " smtp envelope evpid=%016"
				    PRIx64 " from=<%s> to=<%s>", c->reqid,
				    c->evs[i].id, c->evs[i].sender,
				    c->evs[i].dest);
				scheduler_add(&c->evs[i]);
			}
		} else {
			commit_drop(c);
			reply_status(IMSG_QUEUE_COMMIT_RESULT, c->reqid, 1);
		}
		commit_free(c);
	}
}

static void
queue_rollback(struct ipc_msg *m)
{
	uint32_t msgid = ipc_get_u32(m);

	ipc_get_end(m);
	queue_message_delete(msgid);
}

static void
queue_mda_result(struct ipc_msg *m)
{
	uint64_t	 evpid = ipc_get_u64(m);
	uint32_t	 status = ipc_get_u32(m);
	const char	*text = ipc_get_str(m);

	ipc_get_end(m);
	scheduler_result(evpid, status, text ? text : "");
}

void
queue_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	enum smtpd_role from = (enum smtpd_role)(intptr_t)arg;

	if (m->type == IMSG_NONE) {
		/*
		 * The parent is shutting the daemon down: stay until it says
		 * so, to record the results of the last deliveries.
		 */
		if (from == ROLE_PARENT)
			fatalx("queue: lost the parent process");
		log_debug("queue: lost the %s process", role_name(from));
		return;
	}
	switch (from) {
	case ROLE_SMTP:
		if (m->type == IMSG_QUEUE_CREATE)
			queue_create(m);
		else if (m->type == IMSG_QUEUE_COMMIT)
			queue_commit(m);
		else if (m->type == IMSG_QUEUE_ENVELOPES)
			queue_envelopes(m);
		else if (m->type == IMSG_QUEUE_ROLLBACK)
			queue_rollback(m);
		else if (m->type == IMSG_MTA_RESULT)
			queue_mda_result(m);
		else
			break;
		return;
	case ROLE_CONTROL:
		if (m->type != IMSG_CTL_LIST)
			break;
		{
			uint64_t reqid = ipc_get_u64(m);

			ipc_get_end(m);
			scheduler_list(reqid);
		}
		return;
	case ROLE_LOOKUP:
		if (m->type != IMSG_LKA_RCPT_RESULT)
			break;
		bounce_lookup_result(m);
		return;
	case ROLE_PARENT:
		if (m->type == IMSG_MDA_RESULT)
			queue_mda_result(m);
		else if (m->type == IMSG_CTL_SHUTDOWN) {
			/* Every result before this frame is on disk now. */
			log_debug("queue: shutting down");
			exit(0);
		} else
			break;
		return;
	default:
		break;
	}
	fatalx("queue: unexpected %s from %s", ipc_type_name(m->type),
	    role_name(from));
}

/* A restart is often the admin's fix for what made deliveries fail: try
 * everything again now rather than after each envelope's backoff. */
static void
load_one(struct envelope *ev)
{
	/* Delivered before the stop: only its success notice is left. */
	if (ev->dsn_success[0] != '\0') {
		scheduler_hold(ev->msgid);
		bounce_success(ev, ev->dsn_success, ev->errorline);
		return;
	}
	ev->nexttry = 0;
	scheduler_add(ev);
}

void
queue_main(void)
{
	if ((flush_ev = event_new(env.evbase, -1, 0, queue_flush_round,
	    NULL)) == NULL)
		fatalx("queue: event_new");
	if (queue_backend_init("fs") == -1)
		fatalx("queue: cannot start the queue backend");
	scheduler_init();
	if (queue_load(load_one) == -1)
		fatalx("queue: cannot load the spool");
}
