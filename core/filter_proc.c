/*
 * filter_proc.c - a filter program spoken to over the smtpd-filters
 * protocol (lookup role).  The parent starts the program and hands over
 * its stdin/stdout socket (filter_exec.c); here we send the config lines,
 * read its registrations, then write report and filter lines and read
 * filter-result and filter-dataline answers, which go to the chains
 * (filter.c).
 *
 * Everything the program writes is untrusted: a line longer than
 * FILTER_LINE_MAX, a line we cannot parse, a registration of something
 * that does not exist, or a closed socket is a failure of the program.
 * It is logged once with the reason, the sessions it served fail
 * temporarily (filter_impl_failed), and the parent is asked to restart it.
 * Answers for sessions or tokens that are not waiting for one (a session
 * that timed out or went away meanwhile) are well-formed and ignored.
 */
#include <sys/time.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "smtpd.h"
#include "filter.h"

/* What OpenSMTPD releases say they are, by protocol minor version. */
#define FPROC_VERSION_06	"6.8.0p2"	/* Debian bookworm */
#define FPROC_VERSION_07	"7.6.0"		/* first with config|protocol */

enum fproc_state {
	FPROC_DOWN,		/* no program, or a broken one */
	FPROC_REGISTER,		/* config sent, reading register lines */
	FPROC_READY,
};

struct fproc {
	TAILQ_ENTRY(fproc)	 entry;
	char			*name;
	char			 version[8];	/* "0.6", "0.7" */
	int			 minor;
	uint32_t		 timeout;
	struct bufferevent	*bev;
	enum fproc_state	 state;
	uint32_t		 events;	/* 1 << filter_event */
	uint32_t		 phases;	/* 1 << fphase */
};
static TAILQ_HEAD(, fproc) fprocs = TAILQ_HEAD_INITIALIZER(fprocs);

static const char *const event_names[FE_NEVENTS] = {
	"link-connect", "link-greeting", "link-identify", "link-tls",
	"link-auth", "link-disconnect", "tx-reset", "tx-begin", "tx-mail",
	"tx-rcpt", "tx-envelope", "tx-data", "tx-commit", "tx-rollback",
	"protocol-client", "protocol-server", "filter-report",
	"filter-response", "timeout",
};

static const char *const phase_names[FPH_NPHASES] = {
	"connect", "helo", "ehlo", "starttls", "auth", "mail-from", "rcpt-to",
	"data", "data-line", "rset", "quit", "noop", "help", "wiz", "commit",
};

const char *
filter_event_name(enum filter_event e)
{
	return e < FE_NEVENTS ? event_names[e] : "?";
}

const char *
filter_phase_name(enum fphase p)
{
	return p < FPH_NPHASES ? phase_names[p] : "?";
}

static int
name_index(const char *const *names, size_t n, const char *s)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

/* ------------------------------------------------------------ failure */

static void
fproc_down(struct fproc *p)
{
	if (p->bev != NULL) {
		bufferevent_free(p->bev);
		p->bev = NULL;
	}
	p->state = FPROC_DOWN;
	p->events = 0;
	p->phases = 0;
}

static void	fproc_fail(struct fproc *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/* Logged once; the parent restarts the program. */
static void
fproc_fail(struct fproc *p, const char *fmt, ...)
{
	struct ipc_out	*o;
	char		 why[256];
	va_list		 ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (p->state == FPROC_DOWN)
		return;
	log_warnx("filter %s: %s; its sessions get a temporary failure, the"
	    " program is restarted", p->name, why);
	fproc_down(p);
	o = ipc_begin(env.peer[ROLE_PARENT], IMSG_FILTER_RESTART);
	ipc_put_str(o, p->name);
	ipc_end(o, -1);
	filter_impl_failed(p);
}

/* --------------------------------------------------------- registering */

/* register|report|smtp-in|EVENT, register|filter|smtp-in|PHASE, ready */
static int
fproc_register(struct fproc *p, char *line)
{
	char	*kind, *subsys, *what;
	int	 i;

	if (strncmp(line, "register|", 9) != 0)
		return -1;
	line += 9;
	if (strcmp(line, "ready") == 0) {
		p->state = FPROC_READY;
		log_debug("filter %s: registered (events %#x, phases %#x)",
		    p->name, p->events, p->phases);
		filter_impl_ready(p);
		return 0;
	}
	kind = strsep(&line, "|");
	subsys = strsep(&line, "|");
	what = line;
	if (subsys == NULL || what == NULL)
		return -1;
	if (strcmp(kind, "report") == 0) {
		if (strcmp(what, "*") == 0)
			i = -2;
		else if ((i = name_index(event_names, FE_NEVENTS, what)) == -1)
			return -1;
		/* smtp-out reports are for relay sessions: none here yet. */
		if (strcmp(subsys, "smtp-in") == 0)
			p->events |= i == -2 ? ~0U : 1U << i;
		else if (strcmp(subsys, "smtp-out") != 0)
			return -1;
		return 0;
	}
	if (strcmp(kind, "filter") == 0 && strcmp(subsys, "smtp-in") == 0 &&
	    (i = name_index(phase_names, FPH_NPHASES, what)) != -1) {
		p->phases |= 1U << i;
		return 0;
	}
	return -1;
}

/* ------------------------------------------------------------ answers */

static int
parse_id(const char *s, uint64_t *out)
{
	char	*end;

	if (strlen(s) != 16 || strspn(s, "0123456789abcdef") != 16)
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 16);
	return errno == 0 && *end == '\0' ? 0 : -1;
}

static const struct {
	const char		*name;
	enum filter_verdict	 verdict;
	int			 param;		/* 1: required */
} decisions[] = {
	{ "proceed",	FV_PROCEED,	0 },
	{ "junk",	FV_JUNK,	0 },
	{ "reject",	FV_REJECT,	1 },
	{ "disconnect",	FV_DISCONNECT,	1 },
	{ "rewrite",	FV_REWRITE,	1 },
	/* OpenSMTPD 7.6's report decision: the command proceeds. */
	{ "report",	FV_PROCEED,	1 },
};

/* filter-result|SID|TOKEN|DECISION[|PARAM] */
static int
fproc_result(struct fproc *p, char *rest)
{
	char		*sid, *tok, *dec;
	uint64_t	 s, t;
	size_t		 i;

	sid = strsep(&rest, "|");
	tok = strsep(&rest, "|");
	dec = strsep(&rest, "|");
	if (tok == NULL || dec == NULL || parse_id(sid, &s) == -1 ||
	    parse_id(tok, &t) == -1)
		return -1;
	for (i = 0; i < sizeof(decisions) / sizeof(decisions[0]); i++)
		if (strcmp(dec, decisions[i].name) == 0)
			break;
	if (i == sizeof(decisions) / sizeof(decisions[0]) ||
	    (decisions[i].param && rest == NULL))
		return -1;
	filter_verdict(p, s, t, decisions[i].verdict, dec, rest);
	return 0;
}

/* filter-dataline|SID|TOKEN|LINE, where LINE may hold '|' */
static int
fproc_dataline(struct fproc *p, char *rest, size_t len)
{
	char		*end = rest + len;
	char		*sid, *tok;
	uint64_t	 s, t;

	sid = strsep(&rest, "|");
	tok = strsep(&rest, "|");
	if (tok == NULL || rest == NULL || parse_id(sid, &s) == -1 ||
	    parse_id(tok, &t) == -1)
		return -1;
	filter_line_out(p, s, t, rest, (size_t)(end - rest));
	return 0;
}

static int
fproc_line(struct fproc *p, char *line, size_t len)
{
	/* A message may hold NUL bytes; nothing else may. */
	if (p->state == FPROC_READY &&
	    strncmp(line, "filter-dataline|", 16) == 0)
		return fproc_dataline(p, line + 16, len - 16);
	if (memchr(line, '\0', len) != NULL)
		return -1;
	if (p->state == FPROC_REGISTER)
		return fproc_register(p, line);
	if (strncmp(line, "filter-result|", 14) == 0)
		return fproc_result(p, line + 14);
	/*
	 * Unsolicited reports crash OpenSMTPD (its parser is broken); no
	 * filter we know sends them.  Keep them out of the way.
	 */
	if (strncmp(line, "report|", 7) == 0) {
		log_debug("filter %s: ignoring %s", p->name, line);
		return 0;
	}
	return -1;
}

static void
fproc_read(struct bufferevent *bev, void *arg)
{
	struct fproc	*p = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	struct evbuffer_ptr nl;
	char		*line;
	size_t		 len;

	while (p->bev == bev) {
		nl = evbuffer_search_eol(in, NULL, &len, EVBUFFER_EOL_LF);
		if (nl.pos == -1) {
			if (evbuffer_get_length(in) > FILTER_LINE_MAX)
				fproc_fail(p, "wrote a line longer than %d"
				    " bytes", FILTER_LINE_MAX);
			return;
		}
		if ((size_t)nl.pos > FILTER_LINE_MAX) {
			fproc_fail(p, "wrote a line longer than %d bytes",
			    FILTER_LINE_MAX);
			return;
		}
		line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
		if (line == NULL)
			fatalx("filter: evbuffer_readln");
		if (fproc_line(p, line, len) == -1)
			fproc_fail(p, "%s line \"%.80s\"",
			    p->state == FPROC_REGISTER ? "bad registration" :
			    "malformed", line);
		free(line);
	}
}

static void
fproc_event(struct bufferevent *bev, short what, void *arg)
{
	struct fproc	*p = arg;

	if (what & BEV_EVENT_EOF)
		fproc_fail(p, "closed its end of the protocol (exited?)");
	else
		fproc_fail(p, "i/o error: %s", strerror(errno));
}

/* ------------------------------------------------------------ writing */

static void
fproc_printf(struct fproc *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
fproc_printf(struct fproc *p, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(bufferevent_get_output(p->bev), fmt, ap) < 0)
		fatalx("filter: evbuffer_add_vprintf");
	va_end(ap);
}

/* What OpenSMTPD 6.8 sends, or 7.6 with protocol 0.7. */
static void
fproc_hello(struct fproc *p)
{
	const char *admd = env.conf->admd ? env.conf->admd :
	    env.conf->hostname;

	fproc_printf(p, "config|smtpd-version|%s\n", p->minor >= 7 ?
	    FPROC_VERSION_07 : FPROC_VERSION_06);
	if (p->minor >= 7)
		fproc_printf(p, "config|protocol|%s\n", p->version);
	fproc_printf(p, "config|smtp-session-timeout|%d\n",
	    SMTPD_SESSION_TIMEOUT);
	fproc_printf(p, "config|subsystem|smtp-in\n");
	fproc_printf(p, "config|admd|%s\n", admd);
	fproc_printf(p, "config|ready\n");
}

static int
fp_ready(void *impl)
{
	return ((struct fproc *)impl)->state == FPROC_READY;
}

static int
fp_wants_event(void *impl, enum filter_event e)
{
	struct fproc *p = impl;

	return p->state == FPROC_READY && (p->events & (1U << e));
}

static int
fp_wants_phase(void *impl, enum fphase ph)
{
	struct fproc *p = impl;

	return p->state == FPROC_READY && (p->phases & (1U << ph));
}

static uint32_t
fp_timeout(void *impl)
{
	return ((struct fproc *)impl)->timeout;
}

static void
fp_report(void *impl, const struct timeval *tv, uint64_t sid,
    enum filter_event e, const char *const *f, size_t n)
{
	struct fproc	*p = impl;
	size_t		 i;

	if (!fp_wants_event(p, e))
		return;
	fproc_printf(p, "report|%s|%lld.%06ld|smtp-in|%s|%016" PRIx64,
	    p->version, (long long)tv->tv_sec, (long)tv->tv_usec,
	    event_names[e], sid);
	for (i = 0; i < n; i++) {
		/* 0.6 and before: link-auth is username|result. */
		size_t	 j = e == FE_LINK_AUTH && n == 2 && p->minor < 7 ?
		    1 - i : i;

		fproc_printf(p, "|%s", f[j]);
	}
	fproc_printf(p, "\n");
}

static void
fp_request(void *impl, const struct timeval *tv, uint64_t sid,
    uint64_t token, enum fphase ph, const char *param)
{
	struct fproc	*p = impl;

	fproc_printf(p, "filter|%s|%lld.%06ld|smtp-in|%s|%016" PRIx64 "|%016"
	    PRIx64 "|%s\n", p->version, (long long)tv->tv_sec,
	    (long)tv->tv_usec, phase_names[ph], sid, token, param);
}

static void
fp_line(void *impl, const struct timeval *tv, uint64_t sid, uint64_t token,
    const char *line, size_t len)
{
	struct fproc	*p = impl;

	struct evbuffer	*out = bufferevent_get_output(p->bev);

	fproc_printf(p, "filter|%s|%lld.%06ld|smtp-in|data-line|%016" PRIx64
	    "|%016" PRIx64 "|", p->version, (long long)tv->tv_sec,
	    (long)tv->tv_usec, sid, token);
	evbuffer_add(out, line, len);
	evbuffer_add(out, "\n", 1);
}

const struct filter_ops filter_proc_ops = {
	fp_ready, fp_wants_event, fp_wants_phase, fp_timeout,
	fp_report, fp_request, fp_line, NULL,
};

/* ------------------------------------------------------------- the API */

void *
filter_proc_find(const char *name)
{
	struct fproc	*p;

	TAILQ_FOREACH(p, &fprocs, entry)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

void *
filter_proc_new(const char *name, const char *protocol, uint32_t timeout)
{
	struct fproc	*p;

	if ((p = filter_proc_find(name)) != NULL)
		return p;
	p = xcalloc(1, sizeof(*p));
	p->name = xstrdup(name);
	msd_strlcpy(p->version, protocol, sizeof(p->version));
	p->minor = atoi(strchr(p->version, '.') + 1);
	p->timeout = timeout;
	TAILQ_INSERT_TAIL(&fprocs, p, entry);
	return p;
}

void
filter_proc_attach(const char *name, int fd)
{
	struct fproc	*p = filter_proc_find(name);

	if (p == NULL) {
		log_warnx("filter: no filter %s here", name);
		close(fd);
		return;
	}
	fproc_down(p);
	evutil_make_socket_nonblocking(fd);
	p->bev = bufferevent_socket_new(env.evbase, fd, BEV_OPT_CLOSE_ON_FREE);
	if (p->bev == NULL)
		fatalx("filter: bufferevent_socket_new");
	bufferevent_setcb(p->bev, fproc_read, NULL, fproc_event, p);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
	p->state = FPROC_REGISTER;
	fproc_hello(p);
}
