/*
 * queue_backend.c - the host side of the queue module (queue role only).
 * Every call into the module goes through here: envelopes are serialised
 * to JSON on the way in and validated on the way out, and a module error
 * is logged once with what was being done.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

static struct module		*qmod;
static struct msd_queue_ops	 qops;
static void			*qinst;

int
queue_backend_init(const char *name)
{
	const struct msd_queue_ops *ops;

	if ((qmod = module_load(MSD_KIND_QUEUE, name)) == NULL)
		return -1;
	/* The loader refused modules that lack a mandatory operation. */
	ops = module_ops(qmod, sizeof(qops));
	memcpy(&qops, ops, sizeof(qops));
	if (qmod->desc.init && qmod->desc.init(qmod->host) != MSD_OK) {
		log_warnx("queue: module %s failed to initialise", qmod->path);
		return -1;
	}
	if (qops.open(qmod->host, env.spool, NULL, &qinst) != MSD_OK) {
		log_warnx("queue: cannot open spool %s", env.spool);
		return -1;
	}
	return 0;
}

int
queue_message_create(uint32_t *msgid, int *fd)
{
	*fd = -1;
	return qops.message_create(qinst, msgid, fd) == MSD_OK ? 0 : -1;
}

int
queue_message_commit(uint32_t msgid)
{
	return qops.message_commit(qinst, msgid) == MSD_OK ? 0 : -1;
}

int
queue_message_delete(uint32_t msgid)
{
	return qops.message_delete(qinst, msgid) == MSD_OK ? 0 : -1;
}

int
queue_message_fd_r(uint32_t msgid)
{
	return qops.message_fd_r(qinst, msgid);
}

int
queue_envelope_create(struct envelope *ev)
{
	char	*json = envelope_dump(ev);
	int	 r;

	r = qops.envelope_create(qinst, ev->msgid, json, strlen(json), &ev->id);
	free(json);
	return r == MSD_OK ? 0 : -1;
}

int
queue_envelope_delete(uint64_t evpid)
{
	return qops.envelope_delete(qinst, evpid) == MSD_OK ? 0 : -1;
}

int
queue_envelope_update(const struct envelope *ev)
{
	char	*json = envelope_dump(ev);
	int	 r;

	r = qops.envelope_update(qinst, ev->id, json, strlen(json));
	free(json);
	return r == MSD_OK ? 0 : -1;
}

/* Without flush the module made every commit durable already. */
int
queue_flush(void)
{
	if (qops.flush == NULL)
		return 0;
	return qops.flush(qinst) == MSD_OK ? 0 : -1;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Messages with no committed envelope were never acknowledged: remove. */
static void
remove_orphans(uint32_t *ids, size_t n)
{
	void		*cookie = NULL;
	uint32_t	 msgid;

	if (n > 0)
		qsort(ids, n, sizeof(*ids), cmp_u32);
	while (qops.message_walk(qinst, &cookie, &msgid) == MSD_OK) {
		if (n > 0 && bsearch(&msgid, ids, n, sizeof(*ids), cmp_u32))
			continue;
		log_info("queue: removing uncommitted message %08" PRIx32,
		    msgid);
		qops.message_delete(qinst, msgid);
	}
}

int
queue_load(void (*cb)(struct envelope *))
{
	struct msd_result res;
	struct envelope	 ev;
	void		*cookie = NULL;
	uint64_t	 evpid;
	uint32_t	*ids = NULL;
	size_t		 n = 0;
	int		 r;

	memset(&res, 0, sizeof(res));
	while ((r = qops.envelope_walk(qinst, &cookie, &evpid, &res)) ==
	    MSD_OK) {
		/* Even a corrupt envelope keeps its message. */
		ids = xreallocarray(ids, n + 1, sizeof(*ids));
		ids[n++] = evpid >> 32;
		if (envelope_load_json(&ev, res.value, res.len) == -1) {
			log_warnx("queue: envelope %016" PRIx64 " is corrupt,"
			    " left in place", evpid);
			result_reset(&res);
			continue;
		}
		ev.id = evpid;
		ev.msgid = evpid >> 32;
		cb(&ev);
		result_reset(&res);
	}
	result_reset(&res);
	if (r != MSD_NOTFOUND) {
		free(ids);
		return -1;
	}
	remove_orphans(ids, n);
	free(ids);
	return 0;
}
