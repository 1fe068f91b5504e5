/*
 * filter_addheader.c - an in-process filter module, built out of tree.
 *
 *	filter "tag" module addheader "X-Tagged: yes" [refuse PREFIX]
 *
 * puts the header line in front of every message of the sessions it
 * filters, and with `refuse PREFIX` answers 550 to RCPT TO addresses
 * that start with PREFIX.  The refusal is given from a timer rather than
 * from inside the request, as a filter that asks a remote service would
 * answer: in-process filters answer asynchronously, whenever they know.
 *
 * It uses nothing but the installed modsmtpd.h (pkg-config modsmtpd) and
 * libc; see smtpd-module(3) for the ABI.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Filters came with ABI 1.4: declare 1.4, load into every later host. */
#define MSD_ABI_TARGET_MINOR	4
#include <modsmtpd.h>

#define AH_MAX		998		/* an RFC 5322 line */

/* A session inside a message: its header went out already. */
struct msg {
	struct msg	*next;
	uint64_t	 sid;
};

/* A refusal on its way. */
struct later {
	struct later	*next;
	struct ah	*ah;
	msd_timer	*timer;
	uint64_t	 sid;
	uint64_t	 token;
};

struct ah {
	const struct msd_host	*host;
	msd_filter		*self;
	char			 header[AH_MAX + 1];
	char			*refuse;	/* NULL: refuse nothing */
	struct msg		*msgs;
	struct later		*later;
};

static int
ah_open(const struct msd_host *host, msd_filter *self, const char *name,
    uint32_t argc, const char *const *argv, void **inst, msd_result *err)
{
	struct ah	*ah;
	uint64_t	 phases;

	(void)name;
	if ((argc != 1 && argc != 3) || (argc == 3 &&
	    strcmp(argv[1], "refuse") != 0)) {
		host->result_error(err, "usage: module addheader \"Name: "
		    "value\" [refuse PREFIX]");
		return MSD_PERMFAIL;
	}
	/* Data lines are dot-stuffed: no leading "." keeps this one simple. */
	if (strchr(argv[0], ':') == NULL || argv[0][0] == '.' ||
	    strlen(argv[0]) > AH_MAX || strpbrk(argv[0], "\r\n") != NULL) {
		host->result_error(err, "the header must be one \"Name: value\""
		    " line");
		return MSD_PERMFAIL;
	}
	if ((ah = calloc(1, sizeof(*ah))) == NULL) {
		host->result_error(err, "out of memory");
		return MSD_TEMPFAIL;
	}
	ah->host = host;
	ah->self = self;
	snprintf(ah->header, sizeof(ah->header), "%s", argv[0]);
	if (argc == 3 && (ah->refuse = strdup(argv[2])) == NULL) {
		free(ah);
		host->result_error(err, "out of memory");
		return MSD_TEMPFAIL;
	}
	phases = 1ULL << MSD_FP_DATA_LINE;
	if (ah->refuse != NULL)
		phases |= 1ULL << MSD_FP_RCPT_TO;
	/* No report events: session_end tells us a session is gone. */
	host->filter_register(self, 0, phases);
	*inst = ah;
	return MSD_OK;
}

static void
ah_close(void *inst)
{
	struct ah	*ah = inst;
	struct msg	*m;
	struct later	*l;

	while ((m = ah->msgs) != NULL) {
		ah->msgs = m->next;
		free(m);
	}
	while ((l = ah->later) != NULL) {
		ah->later = l->next;
		ah->host->timer_del(l->timer);
		free(l);
	}
	free(ah->refuse);
	free(ah);
}

static void
refuse_now(void *arg)
{
	struct later	*l = arg, **p;
	struct ah	*ah = l->ah;

	for (p = &ah->later; *p != NULL; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			break;
		}
	/* The host ignores it if the session went away meanwhile. */
	ah->host->filter_result(ah->self, l->sid, l->token, MSD_FV_REJECT,
	    "550 5.7.1 Recipient refused by the addheader filter");
	free(l);
}

static void
ah_request(void *inst, uint64_t sid, uint64_t token, uint32_t phase,
    const char *param)
{
	struct ah	*ah = inst;
	struct later	*l;

	if (phase != MSD_FP_RCPT_TO || ah->refuse == NULL ||
	    strncmp(param, ah->refuse, strlen(ah->refuse)) != 0 ||
	    (l = calloc(1, sizeof(*l))) == NULL) {
		ah->host->filter_result(ah->self, sid, token, MSD_FV_PROCEED,
		    NULL);
		return;
	}
	l->ah = ah;
	l->sid = sid;
	l->token = token;
	if ((l->timer = ah->host->timer_add(10, refuse_now, l)) == NULL) {
		free(l);
		ah->host->filter_result(ah->self, sid, token, MSD_FV_REJECT,
		    "451 4.3.0 Temporary failure in the addheader filter");
		return;
	}
	l->next = ah->later;
	ah->later = l;
}

/* Forgets sid's message; 1 if it was in one. */
static int
msg_end(struct ah *ah, uint64_t sid)
{
	struct msg	**p, *m;

	for (p = &ah->msgs; (m = *p) != NULL; p = &m->next)
		if (m->sid == sid) {
			*p = m->next;
			free(m);
			return 1;
		}
	return 0;
}

static void
ah_data_line(void *inst, uint64_t sid, uint64_t token, const char *line,
    size_t len)
{
	struct ah	*ah = inst;
	struct msg	*m;

	if (len == 1 && line[0] == '.') {
		msg_end(ah, sid);
	} else {
		for (m = ah->msgs; m != NULL && m->sid != sid; m = m->next)
			;
		if (m == NULL && (m = calloc(1, sizeof(*m))) != NULL) {
			m->sid = sid;
			m->next = ah->msgs;
			ah->msgs = m;
			ah->host->filter_dataline(ah->self, sid, token,
			    ah->header, strlen(ah->header));
		}
	}
	ah->host->filter_dataline(ah->self, sid, token, line, len);
}

static void
ah_session_end(void *inst, uint64_t sid)
{
	msg_end(inst, sid);
}

static const struct msd_filter_ops ah_ops = {
	.size = MSD_FILTER_OPS_SIZE,
	.open = ah_open,
	.close = ah_close,
	.request = ah_request,
	.data_line = ah_data_line,
	.session_end = ah_session_end,
};

static const struct msd_module ah_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD,
	.kind = MSD_KIND_FILTER,
	.name = "addheader",
	.version = "1.0",
	.ops = &ah_ops,
	.description = "puts a header line in front of each message",
};

MSD_MODULE(addheader)
{
	(void)host_major;
	(void)host_minor;
	return &ah_module;
}
