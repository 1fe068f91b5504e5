/*
 * smtp_session.c - one inbound ESMTP session (smtp role, unprivileged,
 * chrooted).
 *
 * Commands are read one line at a time and handled in order; a command that
 * needs another role (RCPT -> lookup, end of DATA -> queue) suspends input
 * until the answer comes back, so pipelined commands are answered in order.
 * The queue is asked for the message file when the first recipient is
 * accepted, without suspending anything, so DATA rarely waits.  The message
 * is written into that descriptor; the client gets 250 only after the queue
 * says the message and its envelopes are on disk.  Replies follow
 * OpenSMTPD's wording, except that PIPELINING is offered.
 *
 * TLS (STARTTLS on `tls` listeners, from the first byte on `smtps` ones)
 * swaps the session's bufferevent for a filter over the socket's that
 * smtp_tls.c runs libtls in; the rest of this file reads and writes clear
 * text either way.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "smtpd.h"
#include "smtp_filter.h"

enum smtp_state {
	S_CONNECTED,		/* before HELO/EHLO */
	S_HELO,			/* identified, no transaction */
	S_MAIL,			/* MAIL FROM accepted */
	S_RCPT,			/* at least one recipient */
	S_DATA,			/* reading the message */
	S_QUIT,			/* closing after the output drains */
};

/* What the session waits for while input is suspended. */
enum smtp_wait {
	W_NONE,
	W_LOOKUP,		/* RCPT verdict */
	W_CREATE,		/* message descriptor for DATA */
	W_COMMIT,		/* end of DATA made durable */
	W_FILTER,		/* a filter verdict (smtp_filter.c) */
	W_FDATA,		/* the filtered message back from the chain */
	W_MAILID,		/* filtered MAIL: a msgid for tx-begin */
	W_AUTH,			/* credentials checked, or the 535 delay */
	W_SENDERS,		/* MAIL FROM against `senders <t>` */
	W_DNS,			/* the client's name, before the banner */
	W_HOSTNAME,		/* the server name from `hostnames <t>` */
};

/* Where an AUTH exchange stands: the next line is a response. */
enum smtp_auth_step {
	AUTH_NONE,
	AUTH_PLAIN,		/* 334 sent: the PLAIN response */
	AUTH_LOGIN_USER,	/* 334 Username: */
	AUTH_LOGIN_PASS,	/* 334 Password: */
};

/* Which reply brings which filter report (smtp_freply). */
enum smtp_freply { FR_NONE, FR_HELO, FR_MAIL, FR_RCPT, FR_DATA };

#define DATA_TOO_BIG	0x01
#define DATA_LOOP	0x02
#define DATA_IOERR	0x04

/* One delivery: a recipient as given and one target of its expansion. */
struct smtp_rcpt {
	char	*addr;		/* RCPT TO, shared by its deliveries */
	char	*action;
	char	*dest;
	char	*user;
	char	*dlv_arg;
	uint32_t dlv;
	uint32_t notify;	/* the RCPT's DSN NOTIFY, 0: not given */
	char	*orcpt;		/* ... and ORCPT, NULL: not given */
};

struct smtp_session {
	uint64_t		 id;
	struct smtp_session	*hnext;		/* id hash chain */
	struct bufferevent	*bev;
	const struct listener	*listener;
	struct sockaddr_storage	 ss;		/* the client (as proxied) */
	struct sockaddr_storage	 self;		/* the address it reached */
	int			 proxying;	/* PROXY header not read yet */
	char			 servername[256];	/* from `hostnames` */
	int			 local;		/* on the submission socket */
	char			 src[INET6_ADDRSTRLEN];
	char			 helo[256];
	char			 rdns[256];	/* the client's name, or "" */
	int			 fcrdns;	/* rdns resolves back to it */
	int			 esmtp;
	enum smtp_state		 state;
	enum smtp_wait		 wait;
	int			 closing;	/* freed when the wait ends */
	int			 close_logged;	/* "disconnected" already said */
	struct smtp_tls		*tls;		/* NULL until TLS starts */
	int			 secure;	/* TLS handshake done */
	int			 verified;	/* ... and a verified client cert */
	struct event		*timeout;
	size_t			 nmails;
	/* AUTH */
	enum smtp_auth_step	 auth_step;
	char			 auth_user[SMTPD_MAXADDR];	/* tried or done */
	int			 authenticated;
	size_t			 auth_failures;
	struct event		*auth_delay;
	/* current transaction */
	char			 sender[SMTPD_MAXADDR];
	struct smtp_rcpt	*rcpts;
	size_t			 nrcpt;		/* deliveries */
	size_t			 nrcptcmd;	/* accepted RCPT commands */
	size_t			 rcptcap;
	char			 pending_rcpt[SMTPD_MAXADDR];
	/* RFC 3461: MAIL's RET and ENVID, the pending RCPT's NOTIFY, ORCPT */
	uint32_t		 dsn_ret;
	char			 dsn_envid[DSN_ENVID_MAX + 1];
	uint32_t		 pending_notify;
	char			*pending_orcpt;
	uint32_t		 msgid;
	int			 msgfd;		/* created, DATA not yet begun */
	int			 creating;	/* QUEUE_CREATE outstanding */
	int			 create_stale;	/* ... for a reset transaction */
	int			 create_error;	/* the queue could not */
	FILE			*ofile;
	size_t			 datalen;
	int			 dataflags;
	int			 data_errno;	/* why writing failed */
	int			 in_headers;
	int			 nreceived;
	/* senders <t> masquerade: a From: header being gathered */
	int			 masquerade;
	char			*mqhdr;
	size_t			 mqlen;
	/* proc filters; all zero when the listener has none */
	int			 filtered;
	int			 fjunk;		/* the session is junk */
	int			 ftxjunk;	/* ... or this message */
	int			 ffailed;	/* a filter broke: 421 */
	char			*fcmd;		/* command awaiting its verdict */
	enum fphase		 fphase;
	enum smtp_freply	 freply;
	char			 faddr[SMTPD_MAXADDR];
	struct evbuffer		*fdata;		/* lines for the chain */
	size_t			 fdatalen;
};

#define SESSION_HASH	4096
static struct smtp_session *sessions[SESSION_HASH];
static uint64_t		 next_session_id;
static size_t		 nsessions;

static void	smtp_process_input(struct smtp_session *);
static int	smtp_session_secure(const struct smtp_session *);
static int	auth_offered(const struct smtp_session *);
static void	mail_senders(struct smtp_session *);
static void	mail_accept(struct smtp_session *);
static void	auth_user_safe(const struct smtp_session *, char *, size_t);
static void	smtp_free(struct smtp_session *, const char *reason);
static void	smtp_freply(struct smtp_session *, const char *, size_t);
static void	smtp_freport_tx(struct smtp_session *, enum filter_event);
static int	smtp_fcommand(struct smtp_session *, const char *line,
		    const char *cmd, const char *arg);
static int	smtp_fdata_begin(struct smtp_session *, const char *);
static void	message_create(struct smtp_session *);
static void	smtp_dispatch(struct smtp_session *, char *, char *);
static void	smtp_filter_answer(struct smtp_session *, struct ipc_msg *);
static void	smtp_named(struct smtp_session *);
static void	smtp_fdata_line(struct smtp_session *, const char *, size_t);
static void	cmd_starttls(struct smtp_session *, char *);

/* ------------------------------------------------------------ helpers */

/* The session runs over TLS, handshake done. */
static int
smtp_session_secure(const struct smtp_session *s)
{
	return s->secure;
}

static struct smtp_session *
session_find(uint64_t id)
{
	struct smtp_session *s;

	for (s = sessions[id % SESSION_HASH]; s; s = s->hnext)
		if (s->id == id)
			return s;
	return NULL;
}

static void
session_unlink(struct smtp_session *s)
{
	struct smtp_session **p;

	for (p = &sessions[s->id % SESSION_HASH]; *p; p = &(*p)->hnext)
		if (*p == s) {
			*p = s->hnext;
			return;
		}
}

static const char *
smtp_name(struct smtp_session *s)
{
	if (s->servername[0] != '\0')
		return s->servername;
	if (s->listener->lc->hostname)
		return s->listener->lc->hostname;
	return env.conf->hostname;
}

static void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	char	 buf[1024];
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("smtp_reply: format");
	if ((size_t)n > sizeof(buf) - 3)
		n = sizeof(buf) - 3;
	log_debug("%016" PRIx64 " smtp >>> %.*s", s->id, n, buf);
	if (s->filtered)
		smtp_freply(s, buf, n);
	buf[n++] = '\r';
	buf[n++] = '\n';
	bufferevent_write(s->bev, buf, n);
}

static void
smtp_touch(struct smtp_session *s)
{
	struct timeval tv = { SMTPD_SESSION_TIMEOUT, 0 };

	evtimer_add(s->timeout, &tv);
}

/* The queue removes a message that will not be committed. */
static void
message_rollback(uint32_t msgid)
{
	struct ipc_out *o = ipc_begin(env.peer[ROLE_QUEUE], IMSG_QUEUE_ROLLBACK);

	ipc_put_u32(o, msgid);
	ipc_end(o, -1);
}

static void
smtp_tx_reset(struct smtp_session *s)
{
	size_t	 i;

	if (s->filtered && s->msgid) {
		smtp_freport_tx(s, FE_TX_ROLLBACK);
		smtp_freport_tx(s, FE_TX_RESET);
	}
	s->ftxjunk = 0;
	if (s->ofile) {
		fclose(s->ofile);
		s->ofile = NULL;
	}
	if (s->msgfd != -1) {
		close(s->msgfd);
		s->msgfd = -1;
	}
	if (s->creating)
		s->create_stale = 1;
	s->create_error = 0;
	if (s->msgid) {
		message_rollback(s->msgid);
		s->msgid = 0;
	}
	for (i = 0; i < s->nrcpt; i++) {
		free(s->rcpts[i].addr);
		free(s->rcpts[i].action);
		free(s->rcpts[i].dest);
		free(s->rcpts[i].user);
		free(s->rcpts[i].dlv_arg);
		free(s->rcpts[i].orcpt);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpt = 0;
	s->nrcptcmd = 0;
	s->rcptcap = 0;
	s->sender[0] = '\0';
	s->dsn_ret = 0;
	s->dsn_envid[0] = '\0';
	s->pending_notify = 0;
	free(s->pending_orcpt);
	s->pending_orcpt = NULL;
	s->datalen = 0;
	s->dataflags = 0;
	s->nreceived = 0;
	free(s->mqhdr);
	s->mqhdr = NULL;
	s->mqlen = 0;
	if (s->state > S_HELO && s->state != S_QUIT)
		s->state = S_HELO;
}

/* Replies written out, and under TLS the ciphertext too. */
static int
smtp_output_drained(struct smtp_session *s)
{
	return evbuffer_get_length(bufferevent_get_output(s->bev)) == 0 &&
	    (s->tls == NULL || smtp_tls_unsent(s->tls) == 0);
}

/* Closes once the replies already queued have been written. */
static void
smtp_quit(struct smtp_session *s)
{
	if (s->state != S_QUIT && s->tls != NULL)
		smtp_tls_close(s->tls);
	s->state = S_QUIT;
	if (smtp_output_drained(s))
		smtp_free(s, "quit");
	else
		bufferevent_disable(s->bev, EV_READ);
}

/* ------------------------------------------------------- address parsing */

/*
 * Parses "<local@domain> [params]" from MAIL FROM:/RCPT TO: arguments.
 * A leading source route is dropped and a bare local part gets our name,
 * as OpenSMTPD does.  Returns -1 on syntax error; *params points past '>'.
 */
static int
parse_path(struct smtp_session *s, char *arg, char *out, size_t outlen,
    int allow_empty, char **params)
{
	char	*p, *end, *at;

	while (*arg == ' ')
		arg++;
	if (*arg != '<')
		return -1;
	if ((end = strchr(arg, '>')) == NULL)
		return -1;
	*end = '\0';
	*params = end + 1;
	p = arg + 1;
	if (*p == '@') {			/* @a,@b:user@dom */
		if ((p = strchr(p, ':')) == NULL)
			return -1;
		p++;
	}
	if (*p == '\0') {
		if (!allow_empty)
			return -1;
		out[0] = '\0';
		return 0;
	}
	for (at = p; *at; at++)
		if ((unsigned char)*at <= ' ' || *at == '<' || *at == '>' ||
		    *at == '\\' || *at == '"' || *at == ',' || *at == ';')
			return -1;
	if ((at = strrchr(p, '@')) == NULL) {
		if ((size_t)snprintf(out, outlen, "%s@%s", p, smtp_name(s)) >=
		    outlen)
			return -1;
	} else {
		if (at == p || at[1] == '\0')
			return -1;
		if (msd_strlcpy(out, p, outlen) >= outlen)
			return -1;
	}
	/* Domains are case-insensitive; keep the local part as given. */
	lowercase(strrchr(out, '@') + 1);
	return 0;
}

static char *
next_param(char **p)
{
	char	*tok;

	while (**p == ' ')
		(*p)++;
	if (**p == '\0')
		return NULL;
	tok = *p;
	while (**p && **p != ' ')
		(*p)++;
	if (**p)
		*(*p)++ = '\0';
	return tok;
}

/* ------------------------------------------------------------ commands */

/* RFC 3461 after EHLO, unless the listener says `no-dsn`. */
static int
dsn_offered(const struct smtp_session *s)
{
	return s->esmtp && !(s->listener->lc->flags & LO_NO_DSN);
}

/* RFC 5321 4.1.1.11: a parameter we do not know or do not offer. */
static void
param_unsupported(struct smtp_session *s, const char *p)
{
	smtp_reply(s, "555 5.5.4 Invalid command arguments: Unsupported"
	    " option %.100s", p);
}

/* A parameter a DSN parser did not take: bad (r == -1) or unknown. */
static void
param_refuse(struct smtp_session *s, const char *p, int r, const char *err)
{
	if (r == -1)
		smtp_reply(s, "501 5.5.4 Invalid command arguments: %s", err);
	else
		param_unsupported(s, p);
}

/* A DSN parameter of MAIL: 1 taken, 0 not one, -1 bad (err says why). */
static int
mail_dsn_param(struct smtp_session *s, const char *p, char *err,
    size_t errlen)
{
	if (!dsn_offered(s))
		return 0;
	if (strncasecmp(p, "RET=", 4) == 0) {
		if (s->dsn_ret != 0) {
			snprintf(err, errlen, "RET given twice");
			return -1;
		}
		return dsn_parse_ret(p + 4, &s->dsn_ret, err, errlen) == 0 ?
		    1 : -1;
	}
	if (strncasecmp(p, "ENVID=", 6) == 0) {
		if (s->dsn_envid[0] != '\0') {
			snprintf(err, errlen, "ENVID given twice");
			return -1;
		}
		return dsn_parse_envid(p + 6, s->dsn_envid,
		    sizeof(s->dsn_envid), err, errlen) == 0 ? 1 : -1;
	}
	return 0;
}

/* A DSN parameter of RCPT, as mail_dsn_param(). */
static int
rcpt_dsn_param(struct smtp_session *s, const char *p, char *err,
    size_t errlen)
{
	char	 orcpt[sizeof(((struct envelope *)NULL)->dsn_orcpt)];

	if (!dsn_offered(s))
		return 0;
	if (strncasecmp(p, "NOTIFY=", 7) == 0) {
		if (s->pending_notify != 0) {
			snprintf(err, errlen, "NOTIFY given twice");
			return -1;
		}
		return dsn_parse_notify(p + 7, &s->pending_notify, err,
		    errlen) == 0 ? 1 : -1;
	}
	if (strncasecmp(p, "ORCPT=", 6) == 0) {
		if (s->pending_orcpt != NULL) {
			snprintf(err, errlen, "ORCPT given twice");
			return -1;
		}
		if (dsn_parse_orcpt(p + 6, orcpt, sizeof(orcpt), err,
		    errlen) == -1)
			return -1;
		s->pending_orcpt = xstrdup(orcpt);
		return 1;
	}
	return 0;
}

/* RCPT's parameters for the pending recipient; -1 after the reply. */
static int
rcpt_params(struct smtp_session *s, char *params)
{
	char	*p, err[200];
	int	 r;

	s->pending_notify = 0;
	free(s->pending_orcpt);
	s->pending_orcpt = NULL;
	while ((p = next_param(&params))) {
		if ((r = rcpt_dsn_param(s, p, err, sizeof(err))) == 1)
			continue;
		param_refuse(s, p, r, err);
		return -1;
	}
	return 0;
}

static void
cmd_helo(struct smtp_session *s, char *arg, int esmtp)
{
	if (s->state != S_CONNECTED) {
		smtp_reply(s, "503 5.5.1 Invalid command: Already identified");
		return;
	}
	while (*arg == ' ')
		arg++;
	if (*arg == '\0' || strchr(arg, ' ') ||
	    msd_strlcpy(s->helo, arg, sizeof(s->helo)) >= sizeof(s->helo)) {
		smtp_reply(s, "501 5.5.4 Syntax: %s hostname",
		    esmtp ? "EHLO" : "HELO");
		s->helo[0] = '\0';
		return;
	}
	s->esmtp = esmtp;
	s->state = S_HELO;
	if (!esmtp) {
		smtp_reply(s, "250 %s Hello %s [%s], pleased to meet you",
		    smtp_name(s), s->helo, s->src);
		return;
	}
	smtp_reply(s, "250-%s Hello %s [%s], pleased to meet you",
	    smtp_name(s), s->helo, s->src);
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_reply(s, "250-SIZE %zu", env.conf->max_message_size);
	if (dsn_offered(s))
		smtp_reply(s, "250-DSN");
	smtp_reply(s, "250-PIPELINING");
	if ((s->listener->lc->flags & LO_TLS) && s->tls == NULL)
		smtp_reply(s, "250-STARTTLS");
	if (auth_offered(s))
		smtp_reply(s, "250-AUTH PLAIN LOGIN");
	smtp_reply(s, "250 HELP");
}

static int
mail_params(struct smtp_session *s, char *params)
{
	char	*p, err[200];
	int	 r;

	s->dsn_ret = 0;
	s->dsn_envid[0] = '\0';
	while ((p = next_param(&params))) {
		if (strncasecmp(p, "AUTH=", 5) == 0)
			continue;
		if (strncasecmp(p, "SIZE=", 5) == 0) {
			char	*end;
			unsigned long long sz = strtoull(p + 5, &end, 10);

			if (*end == '\0' && sz > env.conf->max_message_size) {
				smtp_reply(s, "552 5.3.4 Message too big for"
				    " system: Transaction failed, message too big");
				return -1;
			}
			continue;
		}
		if (strcasecmp(p, "BODY=7BIT") == 0 ||
		    strcasecmp(p, "BODY=8BITMIME") == 0)
			continue;
		if ((r = mail_dsn_param(s, p, err, sizeof(err))) == 1)
			continue;
		param_refuse(s, p, r, err);
		return -1;
	}
	return 0;
}

static void
cmd_mail(struct smtp_session *s, char *arg)
{
	char	*params;

	if (s->state != S_HELO) {
		smtp_reply(s, "503 5.5.1 Invalid command: Command not allowed"
		    " at this point.");
		return;
	}
	if ((s->listener->lc->flags & LO_TLS_REQUIRE) && !s->secure) {
		smtp_reply(s, "530 5.5.1 Invalid command: Must issue a STARTTLS"
		    " command first");
		return;
	}
	if ((s->listener->lc->flags & LO_AUTH) && !s->authenticated) {
		smtp_reply(s, "530 5.7.0 Must issue an AUTH command first");
		return;
	}
	if (s->nmails >= env.conf->max_mails) {
		smtp_reply(s, "452 4.5.3 Too many recipients: Too many"
		    " messages sent");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0 ||
	    parse_path(s, arg + 5, s->sender, sizeof(s->sender), 1,
	    &params) == -1) {
		s->sender[0] = '\0';
		smtp_reply(s, "553 5.1.0 Sender address syntax error");
		return;
	}
	if (mail_params(s, params) == -1) {
		s->sender[0] = '\0';
		s->dsn_ret = 0;
		s->dsn_envid[0] = '\0';
		return;
	}
	if (s->listener->lc->senders != NULL && s->authenticated) {
		mail_senders(s);
		return;
	}
	mail_accept(s);
}

/* The user may send as whom `senders <t>` lists; the answer resumes. */
static void
mail_senders(struct smtp_session *s)
{
	struct ipc_out	*o;

	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_AUTH_SENDERS);
	ipc_put_u64(o, s->id);
	ipc_put_str(o, s->listener->lc->senders->name);
	ipc_put_str(o, s->auth_user);
	ipc_put_str(o, s->sender);
	ipc_end(o, -1);
	s->wait = W_SENDERS;
}

static void
senders_result(struct smtp_session *s, struct ipc_msg *m)
{
	uint32_t	 status = ipc_get_u32(m);

	ipc_get_end(m);
	if (status == LKA_OK) {
		mail_accept(s);
		return;
	}
	if (status == LKA_REJECT) {
		log_info("%016" PRIx64 " smtp sender <%s> refused for user"
		    " %s", s->id, s->sender, s->auth_user);
		smtp_reply(s, "550 5.7.1 Sender rejected: <%.200s> is not"
		    " yours", s->sender);
	} else
		smtp_reply(s, "451 4.3.0 Temporary failure: the senders"
		    " table did not answer");
	s->sender[0] = '\0';
}

static void
mail_accept(struct smtp_session *s)
{
	s->state = S_MAIL;
	/* Filters learn the msgid at tx-begin, with this 250. */
	if (s->filtered && !s->msgid) {
		message_create(s);
		s->wait = W_MAILID;
		return;
	}
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
cmd_rcpt(struct smtp_session *s, char *arg)
{
	struct ipc_out	*o;
	char		*params;

	if (s->state != S_MAIL && s->state != S_RCPT) {
		smtp_reply(s, "503 5.5.1 Invalid command: Command not allowed"
		    " at this point.");
		return;
	}
	if (s->nrcptcmd >= env.conf->max_rcpt) {
		smtp_reply(s, "451 4.5.3 Too many recipients: Too many"
		    " recipients");
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0 ||
	    parse_path(s, arg + 3, s->pending_rcpt, sizeof(s->pending_rcpt),
	    0, &params) == -1) {
		smtp_reply(s, "501 5.1.3 Recipient address syntax error");
		return;
	}
	if (rcpt_params(s, params) == -1)
		return;
	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_LKA_RCPT);
	ipc_put_u64(o, s->id);
	ipc_put_u32(o, s->local);
	ipc_put_data(o, &s->ss, sizeof(s->ss));
	ipc_put_str(o, s->listener->lc->tag);
	ipc_put_str(o, s->helo[0] ? s->helo : NULL);
	ipc_put_str(o, s->authenticated ? s->auth_user : NULL);
	ipc_put_u32(o, s->secure);
	ipc_put_str(o, s->sender);
	ipc_put_str(o, s->pending_rcpt);
	ipc_put_str(o, s->fcrdns ? s->rdns : NULL);
	ipc_end(o, -1);
	s->wait = W_LOOKUP;
}

/*
 * The message file is asked for as soon as a first recipient is accepted,
 * so the queue creates it while the client sends its next command and
 * DATA is usually answered at once.
 */
static void
message_create(struct smtp_session *s)
{
	struct ipc_out	*o;

	if (s->creating || s->msgid)
		return;
	o = ipc_begin(env.peer[ROLE_QUEUE], IMSG_QUEUE_CREATE);
	ipc_put_u64(o, s->id);
	ipc_end(o, -1);
	s->creating = 1;
}

/* One delivery of the pending recipient, with its DSN parameters. */
static void
rcpt_add(struct smtp_session *s, const char *addr, const struct xresult *x)
{
	struct smtp_rcpt *r;
	size_t		 i;

	for (i = 0; i < s->nrcpt; i++) {
		r = &s->rcpts[i];
		if (r->dlv == x->dlv && strcmp(r->action, x->action) == 0 &&
		    strcmp(r->dest, x->dest) == 0 &&
		    strcmp(r->user, x->user) == 0 &&
		    strcmp(r->dlv_arg, x->dlv_arg) == 0)
			return;		/* two recipients, one mailbox:
					   the first one's DSN parameters */
	}
	if (s->nrcpt == s->rcptcap) {
		s->rcptcap = s->rcptcap ? s->rcptcap * 2 : 4;
		s->rcpts = xreallocarray(s->rcpts, s->rcptcap,
		    sizeof(*s->rcpts));
	}
	r = &s->rcpts[s->nrcpt++];
	r->addr = xstrdup(addr);
	r->action = xstrdup(x->action);
	r->dest = xstrdup(x->dest);
	r->user = xstrdup(x->user);
	r->dlv_arg = xstrdup(x->dlv_arg);
	r->dlv = x->dlv;
	r->notify = s->pending_notify;
	r->orcpt = s->pending_orcpt ? xstrdup(s->pending_orcpt) : NULL;
}

static void
rcpt_result(struct smtp_session *s, struct ipc_msg *m)
{
	uint32_t	 status = ipc_get_u32(m);
	const char	*text = ipc_get_str(m);
	uint32_t	 i, n = ipc_get_u32(m);
	struct xresult	 x;

	if (status == LKA_OK && n == 0)
		fatalx("smtp: recipient accepted without deliveries");
	for (i = 0; status == LKA_OK && i < n; i++) {
		if (xresult_get(m, &x) == -1)
			fatalx("smtp: bad expansion from lookup");
		rcpt_add(s, s->pending_rcpt, &x);
	}
	ipc_get_end(m);
	if (status != LKA_OK) {
		if (text == NULL)
			text = status == LKA_TEMPFAIL ?
			    "451 4.0.0 Temporary failure" :
			    "550 Invalid recipient";
		log_info("%016" PRIx64 " smtp failed-command command=\"RCPT"
		    " TO:<%s>\" result=\"%s\"", s->id, s->pending_rcpt, text);
		smtp_reply(s, "%s", text);
		return;
	}
	s->nrcptcmd++;
	s->state = S_RCPT;
	message_create(s);
	smtp_reply(s, "250 2.1.5 Destination address valid: Recipient ok");
}

static void	data_begin(struct smtp_session *);
static void	create_failed(struct smtp_session *);

static void
cmd_data(struct smtp_session *s, char *arg)
{
	if (*arg) {
		smtp_reply(s, "500 5.5.4 Invalid command arguments: command"
		    " does not accept arguments.");
		return;
	}
	if (s->state != S_RCPT) {
		if (s->state == S_MAIL)
			smtp_reply(s, "503 5.5.4 Invalid command arguments:"
			    " No recipient specified");
		else
			smtp_reply(s, "503 5.5.1 Invalid command: Command not"
			    " allowed at this point.");
		return;
	}
	if (s->msgfd != -1) {
		data_begin(s);
		return;
	}
	if (s->create_error) {
		create_failed(s);
		return;
	}
	message_create(s);
	s->wait = W_CREATE;
}

/*
 * " (TLSv1.3:cipher:bits:NO)", and with received-auth " auth=yes
 * user=alice" (or " auth=no"), as OpenSMTPD writes them.
 */
static void
received_tls(const struct smtp_session *s, char *buf, size_t len)
{
	char	 text[256], user[SMTPD_MAXADDR];

	smtp_tls_text(s->tls, text, sizeof(text));
	snprintf(buf, len, " (%s:%s)", text, s->verified ? "YES" : "NO");
	if (!(s->listener->lc->flags & LO_RECEIVED_AUTH))
		return;
	if (!s->authenticated) {
		msd_strlcat(buf, " auth=no", len);
		return;
	}
	auth_user_safe(s, user, sizeof(user));
	msd_strlcat(buf, " auth=yes user=", len);
	msd_strlcat(buf, user, len);
}

/*
 * Our Received header, LF line ends; filters see it first.  OpenSMTPD's
 * shape: "with ESMTPSA id 0a1b2c3d (TLSv1.3:cipher:256:NO)".
 */
static void
received_text(struct smtp_session *s, char *buf, size_t len)
{
	char		 date[64], tls[512], from[700];
	time_t		 now = time(NULL);
	struct tm	 tm;
	int		 n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	tls[0] = from[0] = '\0';
	if (s->secure)
		received_tls(s, tls, sizeof(tls));
	/* mask-src: the client's name and address stay out */
	if (!(s->listener->lc->flags & LO_MASK_SRC))
		snprintf(from, sizeof(from), "from %s (%s [%s])\n\t",
		    s->helo, s->rdns[0] ? s->rdns : "<unknown>", s->src);
	n = snprintf(buf, len, "Received: %s"
	    "by %s (OpenSMTPD) with %sSMTP%s%s id %08" PRIx32 "%s%s%s%s;"
	    "\n\t%s\n", from, smtp_name(s), s->esmtp ? "E" : "",
	    s->secure ? "S" : "", s->authenticated ? "A" : "", s->msgid, tls,
	    s->nrcpt == 1 ? "\n\tfor <" : "",
	    s->nrcpt == 1 ? s->rcpts[0].addr : "", s->nrcpt == 1 ? ">" : "",
	    date);
	if (n < 0 || (size_t)n >= len)
		fatalx("smtp: Received header too long");
}

static void
write_received(struct smtp_session *s)
{
	char	 buf[2048];

	received_text(s, buf, sizeof(buf));
	if (s->filtered)
		smtp_fdata_begin(s, buf);
	else
		fputs(buf, s->ofile);
}

static void
create_failed(struct smtp_session *s)
{
	smtp_reply(s, "421 4.0.0 Temporary Error");
	smtp_tx_reset(s);
	smtp_quit(s);
}

/* DATA: the message file is there; write our header and say 354. */
static void
data_begin(struct smtp_session *s)
{
	if ((s->ofile = fdopen(s->msgfd, "w")) == NULL) {
		create_failed(s);
		return;
	}
	s->msgfd = -1;
	write_received(s);
	s->state = S_DATA;
	s->datalen = 0;
	s->dataflags = 0;
	s->in_headers = 1;
	s->nreceived = 0;
	s->masquerade = (s->listener->lc->flags & LO_MASQUERADE) &&
	    s->authenticated && s->sender[0] != '\0';
	smtp_reply(s, "354 Enter mail, end with \".\" on a line by itself");
}

/*
 * The queue's answer may come while the session waits for something else,
 * after the transaction was reset, or after the client left.
 */
static void
create_result(struct smtp_session *s, struct ipc_msg *m)
{
	uint32_t	 status = ipc_get_u32(m);
	uint32_t	 msgid = ipc_get_u32(m);
	int		 fd = m->fd;

	ipc_get_end(m);
	m->fd = -1;
	s->creating = 0;
	if (status != 0 && fd != -1) {
		close(fd);
		fd = -1;
	}
	if (s->create_stale || s->closing) {
		s->create_stale = 0;
		/* A closing session waits for nothing any more. */
		if (s->closing && (s->wait == W_CREATE || s->wait == W_MAILID))
			s->wait = W_NONE;
		if (fd != -1) {
			close(fd);
			message_rollback(msgid);
		}
		/* A newer transaction may need its own. */
		if (!s->closing && s->state == S_RCPT)
			message_create(s);
		return;
	}
	if (fd == -1) {
		/* Told at DATA: a pending RCPT answer must come first. */
		s->create_error = 1;
		if (s->wait == W_CREATE || s->wait == W_MAILID) {
			s->wait = W_NONE;
			create_failed(s);
		}
		return;
	}
	s->msgid = msgid;
	s->msgfd = fd;
	if (s->wait == W_CREATE) {
		s->wait = W_NONE;
		data_begin(s);
	} else if (s->wait == W_MAILID) {
		s->wait = W_NONE;
		smtp_reply(s, "250 2.0.0 Ok");
	}
}

/* One line into the message file, LF-terminated. */
static void
data_write(struct smtp_session *s, const char *line, size_t len)
{
	if (s->dataflags)
		return;
	if (fwrite(line, 1, len, s->ofile) != len ||
	    putc('\n', s->ofile) == EOF) {
		s->dataflags |= DATA_IOERR;
		s->data_errno = errno;
	}
}

/* A gathered From: header goes out, rewritten when it can be. */
static void
masquerade_flush(struct smtp_session *s)
{
	char	*out;
	size_t	 outlen;

	if (s->mqhdr == NULL)
		return;
	if ((out = masquerade_from(s->mqhdr, s->mqlen, s->sender,
	    &outlen)) != NULL) {
		log_debug("%016" PRIx64 " smtp masquerade msgid=%08" PRIx32
		    " from=<%s>", s->id, s->msgid, s->sender);
		data_write(s, out, outlen);
		free(out);
	} else
		data_write(s, s->mqhdr, s->mqlen);
	free(s->mqhdr);
	s->mqhdr = NULL;
	s->mqlen = 0;
}

/*
 * A header line of a masqueraded message: a From: header is held with
 * its folded lines until the next header shows where it ends.  1 when
 * the line was taken.  A header too long to hold goes out unchanged.
 */
static int
masquerade_line(struct smtp_session *s, const char *line, size_t len)
{
	int	 folded = len > 0 && (line[0] == ' ' || line[0] == '\t');

	if (folded && s->mqhdr != NULL) {
		if (s->mqlen + 1 + len > SMTPD_MAXLINESIZE) {
			data_write(s, s->mqhdr, s->mqlen);
			free(s->mqhdr);
			s->mqhdr = NULL;
			s->mqlen = 0;
			return 0;
		}
		s->mqhdr = xreallocarray(s->mqhdr, s->mqlen + 1 + len + 1, 1);
		s->mqhdr[s->mqlen++] = '\n';
		memcpy(s->mqhdr + s->mqlen, line, len);
		s->mqlen += len;
		return 1;
	}
	masquerade_flush(s);
	if (folded || !masquerade_is_from(line, len))
		return 0;
	s->mqhdr = xstrndup(line, len);
	s->mqlen = len;
	return 1;
}

static void
data_line(struct smtp_session *s, char *line, size_t len)
{
	if (line[0] == '.') {
		line++;
		len--;
	}
	s->datalen += len + 1;
	if (s->datalen > env.conf->max_message_size)
		s->dataflags |= DATA_TOO_BIG;
	if (s->in_headers) {
		if (s->masquerade && masquerade_line(s, line, len))
			return;
		if (len == 0)
			s->in_headers = 0;
		else if (strncasecmp(line, "Received:", 9) == 0 &&
		    ++s->nreceived >= MAX_RECEIVED)
			s->dataflags |= DATA_LOOP;
	}
	data_write(s, line, len);
}

static char *
envelope_json(struct smtp_session *s, const struct smtp_rcpt *r)
{
	struct envelope	 ev;

	memset(&ev, 0, sizeof(ev));
	ev.msgid = s->msgid;
	msd_strlcpy(ev.sender, s->sender, sizeof(ev.sender));
	msd_strlcpy(ev.rcpt, r->addr, sizeof(ev.rcpt));
	msd_strlcpy(ev.dest, r->dest, sizeof(ev.dest));
	msd_strlcpy(ev.user, r->user, sizeof(ev.user));
	ev.dlv = r->dlv;
	msd_strlcpy(ev.dlv_arg, r->dlv_arg, sizeof(ev.dlv_arg));
	msd_strlcpy(ev.helo, s->helo, sizeof(ev.helo));
	msd_strlcpy(ev.hostname, smtp_name(s), sizeof(ev.hostname));
	msd_strlcpy(ev.src, s->src, sizeof(ev.src));
	if (s->listener->lc->tag)
		msd_strlcpy(ev.tag, s->listener->lc->tag, sizeof(ev.tag));
	msd_strlcpy(ev.action, r->action, sizeof(ev.action));
	ev.creation = time(NULL);
	ev.expire = DEFAULT_EXPIRE;	/* the queue applies the ttl */
	ev.dsn_notify = r->notify;
	ev.dsn_ret = s->dsn_ret;
	msd_strlcpy(ev.dsn_envid, s->dsn_envid, sizeof(ev.dsn_envid));
	if (r->orcpt != NULL)
		msd_strlcpy(ev.dsn_orcpt, r->orcpt, sizeof(ev.dsn_orcpt));
	return envelope_dump(&ev);
}

static void
data_end(struct smtp_session *s)
{
	struct ipc_out	*o;
	size_t		 i;
	int		 err;

	masquerade_flush(s);		/* a message of headers alone */
	errno = 0;
	err = fflush(s->ofile) == EOF || ferror(s->ofile);
	if (fclose(s->ofile) == EOF)
		err = 1;
	s->ofile = NULL;
	if (err && !(s->dataflags & DATA_IOERR)) {
		s->dataflags |= DATA_IOERR;
		s->data_errno = errno;
	}
	if (s->dataflags) {
		const char *reply;

		if (s->dataflags & DATA_IOERR)
			reply = "421 4.0.0 Temporary failure";
		else if (s->dataflags & DATA_LOOP)
			reply = "500 5.4.6 Routing loop detected: Loop detected";
		else
			reply = "554 5.3.4 Message too big for system: "
			    "Transaction failed, message too big";
		log_info("%016" PRIx64 " smtp failed-command command=\"DATA\""
		    " msgid=%08" PRIx32 " result=\"%s\"%s%s", s->id, s->msgid,
		    reply, s->dataflags & DATA_IOERR ? " error=" : "",
		    s->dataflags & DATA_IOERR ? strerror(s->data_errno) : "");
		smtp_reply(s, "%s", reply);
		i = s->dataflags & DATA_IOERR;
		smtp_tx_reset(s);
		if (i)
			smtp_quit(s);
		return;
	}
	/*
	 * A header, then the envelopes in frames of bounded size: a thousand
	 * recipients with long addresses would not fit in one frame.
	 */
	o = ipc_begin(env.peer[ROLE_QUEUE], IMSG_QUEUE_COMMIT);
	ipc_put_u64(o, s->id);
	ipc_put_u32(o, s->msgid);
	ipc_put_u32(o, s->nrcpt);
	ipc_end(o, -1);
	for (i = 0; i < s->nrcpt; ) {
		o = ipc_begin(env.peer[ROLE_QUEUE], IMSG_QUEUE_ENVELOPES);
		ipc_put_u64(o, s->id);
		do {
			char *json = envelope_json(s, &s->rcpts[i++]);

			ipc_put_str(o, json);
			free(json);
		} while (i < s->nrcpt && ipc_out_len(o) < IPC_CHUNK);
		ipc_end(o, -1);
	}
	s->wait = W_COMMIT;
}

static void
commit_result(struct smtp_session *s, struct ipc_msg *m)
{
	uint32_t	 status = ipc_get_u32(m);

	ipc_get_end(m);
	if (status != 0) {
		smtp_reply(s, "421 4.0.0 Temporary failure");
		smtp_tx_reset(s);	/* the queue already dropped it */
		smtp_quit(s);
		return;
	}
	log_info("%016" PRIx64 " smtp message msgid=%08" PRIx32 " size=%zu"
	    " nrcpt=%zu proto=%s", s->id, s->msgid, s->datalen, s->nrcpt,
	    s->esmtp ? "ESMTP" : "SMTP");
	smtp_reply(s, "250 2.0.0 %08" PRIx32 " Message accepted for delivery",
	    s->msgid);
	if (s->filtered) {
		smtp_freport_tx(s, FE_TX_COMMIT);
		smtp_freport_tx(s, FE_TX_RESET);
	}
	s->msgid = 0;		/* committed: no rollback */
	s->nmails++;
	smtp_tx_reset(s);
}

/* -------------------------------------------------------------- AUTH */

#define AUTH_RESP_MAX	1024		/* a decoded AUTH response */
#define AUTH_IP_SLOTS	256		/* client addresses remembered */
#define AUTH_IP_MAX	10		/* failures before AUTH is refused */
#define AUTH_IP_WINDOW	(15 * 60)	/* ... within this many seconds */

/* Failures per client address, across sessions; a small lossy table. */
static struct {
	struct sockaddr_storage	 ss;
	time_t			 since;
	unsigned int		 count;
} auth_ips[AUTH_IP_SLOTS];

static unsigned int
auth_ip_slot(const struct sockaddr_storage *ss)
{
	const char	*t = ss_to_text(ss);
	unsigned int	 h = 5381;

	while (*t)
		h = h * 33 + (unsigned char)*t++;
	return h % AUTH_IP_SLOTS;
}

/* The client's recent failures; count 1 more when fail is set. */
static unsigned int
auth_ip_failures(const struct smtp_session *s, int fail)
{
	unsigned int	 i = auth_ip_slot(&s->ss);
	time_t		 now = time(NULL);

	if (memcmp(&auth_ips[i].ss, &s->ss, sizeof(s->ss)) != 0 ||
	    now - auth_ips[i].since > AUTH_IP_WINDOW) {
		if (!fail)
			return 0;
		auth_ips[i].ss = s->ss;
		auth_ips[i].since = now;
		auth_ips[i].count = 0;
	}
	if (fail)
		auth_ips[i].count++;
	return auth_ips[i].count;
}

/* AUTH is offered on auth listeners, once the session is in TLS. */
static int
auth_offered(const struct smtp_session *s)
{
	return (s->listener->lc->flags & (LO_AUTH | LO_AUTH_OPTIONAL)) &&
	    smtp_session_secure(s) && !s->authenticated;
}

static void
auth_send(struct smtp_session *s, const char *user, const char *pass)
{
	const struct table *t = s->listener->lc->auth;
	struct ipc_out	*o;

	msd_strlcpy(s->auth_user, user, sizeof(s->auth_user));
	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_AUTH);
	ipc_put_u64(o, s->id);
	ipc_put_str(o, t != NULL ? t->name : NULL);
	ipc_put_str(o, user);
	ipc_put_str(o, pass);
	ipc_end(o, -1);
	s->wait = W_AUTH;
}

/* Decodes one base64 response into buf; -1 (and the 501) when bad. */
static int
auth_decode(struct smtp_session *s, const char *b64, unsigned char *buf,
    size_t len)
{
	int	 n;

	if ((n = base64_decode(b64, buf, len)) == -1) {
		s->auth_step = AUTH_NONE;
		smtp_reply(s, "501 5.5.2 Syntax error: Syntax error");
	}
	return n;
}

/* "[authzid] NUL user NUL password"; the authzid is ignored. */
static void
auth_plain(struct smtp_session *s, const char *b64)
{
	unsigned char	 buf[AUTH_RESP_MAX];
	const char	*user, *pass;
	size_t		 ulen;
	int		 n;

	if ((n = auth_decode(s, b64, buf, sizeof(buf))) == -1)
		return;
	user = memchr(buf, '\0', n);
	if (user == NULL || (size_t)(++user - (char *)buf) >= (size_t)n ||
	    (ulen = strnlen(user, n - (user - (char *)buf))) == 0 ||
	    user + ulen >= (char *)buf + n) {
		explicit_bzero(buf, sizeof(buf));
		smtp_reply(s, "501 5.5.2 Syntax error: Syntax error");
		return;
	}
	pass = user + ulen + 1;
	if (memchr(pass, '\0', (char *)buf + n - pass) != NULL ||
	    ulen >= sizeof(s->auth_user)) {
		explicit_bzero(buf, sizeof(buf));
		smtp_reply(s, "501 5.5.2 Syntax error: Syntax error");
		return;
	}
	auth_send(s, user, pass);
	explicit_bzero(buf, sizeof(buf));
}

/* A response line after a 334: "*" cancels (RFC 4954). */
static void
auth_continue(struct smtp_session *s, char *line)
{
	unsigned char	 buf[AUTH_RESP_MAX];
	enum smtp_auth_step step = s->auth_step;

	s->auth_step = AUTH_NONE;
	if (strcmp(line, "*") == 0) {
		smtp_reply(s, "501 5.0.0 Authentication aborted");
		return;
	}
	switch (step) {
	case AUTH_PLAIN:
		auth_plain(s, line);
		break;
	case AUTH_LOGIN_USER:
		if (auth_decode(s, line, buf, sizeof(buf)) == -1)
			break;
		if (buf[0] == '\0' || strlen((char *)buf) >=
		    sizeof(s->auth_user)) {
			smtp_reply(s, "501 5.5.2 Syntax error: Syntax error");
			break;
		}
		msd_strlcpy(s->auth_user, (char *)buf, sizeof(s->auth_user));
		s->auth_step = AUTH_LOGIN_PASS;
		smtp_reply(s, "334 UGFzc3dvcmQ6");
		break;
	case AUTH_LOGIN_PASS:
		if (auth_decode(s, line, buf, sizeof(buf)) == -1)
			break;
		auth_send(s, s->auth_user, (char *)buf);
		break;
	case AUTH_NONE:
		break;
	}
	explicit_bzero(buf, sizeof(buf));
	explicit_bzero(line, strlen(line));
}

static void
cmd_auth(struct smtp_session *s, char *arg)
{
	char	*mech = arg, *initial;

	if (s->authenticated) {
		smtp_reply(s, "503 5.5.1 Invalid command: Already"
		    " authenticated");
		return;
	}
	if (!auth_offered(s) || s->state == S_CONNECTED) {
		smtp_reply(s, "503 5.5.1 Invalid command: Command not"
		    " supported");
		return;
	}
	if (s->state != S_HELO) {
		smtp_reply(s, "503 5.5.1 Invalid command: Command not allowed"
		    " at this point.");
		return;
	}
	if (auth_ip_failures(s, 0) >= AUTH_IP_MAX) {
		log_info("%016" PRIx64 " smtp authentication refused: %u"
		    " recent failures from %s", s->id, AUTH_IP_MAX, s->src);
		smtp_reply(s, "421 4.7.0 Too many authentication failures,"
		    " try again later");
		smtp_quit(s);
		return;
	}
	if ((initial = strchr(arg, ' ')) != NULL)
		*initial++ = '\0';
	if (strcasecmp(mech, "PLAIN") == 0) {
		if (initial != NULL && strcmp(initial, "=") != 0)
			auth_plain(s, initial);
		else {
			s->auth_step = AUTH_PLAIN;
			smtp_reply(s, "334 ");
		}
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		s->auth_step = AUTH_LOGIN_USER;
		if (initial != NULL)
			auth_continue(s, initial);
		else
			smtp_reply(s, "334 VXNlcm5hbWU6");
	} else
		smtp_reply(s, "504 5.7.4 Security features not supported:"
		    " AUTH method \"%.50s\" not supported", mech);
}

/*
 * The user name as logs and filters get it: it is the client's, so
 * nothing in it may split a log line or a filter protocol field.
 */
static void
auth_user_safe(const struct smtp_session *s, char *user, size_t len)
{
	size_t	 i;

	msd_strlcpy(user, s->auth_user, len);
	for (i = 0; user[i]; i++)
		if ((unsigned char)user[i] < 0x20 || user[i] == 0x7f ||
		    user[i] == ' ' || user[i] == '|')
			user[i] = '?';
}

static void
auth_report(struct smtp_session *s, uint32_t status)
{
	const char	*result = status == LKA_OK ? "ok" :
			    status == LKA_REJECT ? "permfail" : "tempfail";
	char		 user[SMTPD_MAXADDR];

	auth_user_safe(s, user, sizeof(user));
	log_info("%016" PRIx64 " smtp authentication user=%s result=%s",
	    s->id, user, result);
	if (s->filtered)
		smtp_filter_report(s->id, FE_LINK_AUTH, 2, status == LKA_OK ?
		    "pass" : status == LKA_REJECT ? "fail" : "error", user);
}

/* The 535 comes after a delay, longer with each failure of the client. */
static void
auth_on_delay(evutil_socket_t fd, short ev, void *arg)
{
	struct smtp_session	*s = arg;

	(void)fd;
	(void)ev;
	s->wait = W_NONE;
	if (++s->auth_failures >= env.conf->max_auth_failures) {
		smtp_reply(s, "421 4.7.0 Too many authentication failures");
		smtp_quit(s);
		return;
	}
	smtp_reply(s, "535 5.7.8 Authentication failed");
	smtp_process_input(s);
}

static void
auth_result(struct smtp_session *s, struct ipc_msg *m)
{
	uint32_t	 status = ipc_get_u32(m);
	struct timeval	 tv;
	unsigned int	 fails;

	ipc_get_end(m);
	auth_report(s, status);
	if (status == LKA_OK) {
		s->authenticated = 1;
		smtp_reply(s, "235 2.0.0 Authentication succeeded");
		return;
	}
	if (status == LKA_TEMPFAIL) {
		smtp_reply(s, "421 4.7.0 Temporary failure");
		smtp_quit(s);
		return;
	}
	fails = auth_ip_failures(s, 1);
	tv.tv_sec = fails > 5 ? 5 : fails - 1;
	tv.tv_usec = msd_random() % 1000000;
	s->wait = W_AUTH;
	evtimer_add(s->auth_delay, &tv);
}

static void
cmd_help(struct smtp_session *s)
{
	smtp_reply(s, "214-2.0.0 This is " SMTPD_NAME);
	smtp_reply(s, "214-2.0.0 To report bugs in the implementation, "
	    "please contact the postmaster");
	smtp_reply(s, "214-2.0.0 For local information send email to "
	    "Postmaster at your site.");
	smtp_reply(s, "214 2.0.0 End of HELP info");
}

static int
no_args(struct smtp_session *s, const char *arg)
{
	if (*arg == '\0')
		return 1;
	smtp_reply(s, "500 5.5.4 Invalid command arguments: command does not"
	    " accept arguments.");
	return 0;
}

/*
 * The line as logs and filters see it: an AUTH initial response is a
 * credential, shown as "********" (continuation lines never show).
 */
static char *
masked_line(const char *line)
{
	const char	*sp;
	char		*out;

	if (strncasecmp(line, "AUTH ", 5) != 0 ||
	    (sp = strchr(line + 5, ' ')) == NULL)
		return xstrdup(line);
	xasprintf(&out, "%.*s ********", (int)(sp - line), line);
	return out;
}

static void
smtp_command(struct smtp_session *s, char *line)
{
	char	*arg, *full = NULL;

	/* the masked copy only where it is read: debug logs and filters */
	if (log_verbose || s->filtered) {
		full = masked_line(line);
		log_debug("%016" PRIx64 " smtp <<< %s", s->id, full);
	}
	if (!s->filtered) {
		free(full);
		full = NULL;
	}
	for (arg = line; *arg && *arg != ' '; arg++)
		;
	if (*arg)
		*arg++ = '\0';
	if (full != NULL && smtp_fcommand(s, full, line, arg)) {
		free(full);
		return;		/* runs when the filters have answered */
	}
	free(full);
	smtp_dispatch(s, line, arg);
}

static void
smtp_dispatch(struct smtp_session *s, char *line, char *arg)
{
	if (!strcasecmp(line, "HELO") || !strcasecmp(line, "EHLO"))
		cmd_helo(s, arg, line[0] == 'E' || line[0] == 'e');
	else if (!strcasecmp(line, "MAIL"))
		cmd_mail(s, arg);
	else if (!strcasecmp(line, "RCPT"))
		cmd_rcpt(s, arg);
	else if (!strcasecmp(line, "DATA"))
		cmd_data(s, arg);
	else if (!strcasecmp(line, "STARTTLS"))
		cmd_starttls(s, arg);
	else if (!strcasecmp(line, "AUTH"))
		cmd_auth(s, arg);
	else if (!strcasecmp(line, "RSET")) {
		if (no_args(s, arg)) {
			smtp_tx_reset(s);
			smtp_reply(s, "250 2.0.0 Reset state");
		}
	} else if (!strcasecmp(line, "NOOP"))
		smtp_reply(s, "250 2.0.0 Ok");
	else if (!strcasecmp(line, "HELP"))
		cmd_help(s);
	else if (!strcasecmp(line, "QUIT")) {
		if (no_args(s, arg)) {
			smtp_reply(s, "221 2.0.0 Bye");
			smtp_quit(s);
		}
	} else
		smtp_reply(s, "500 5.5.1 Invalid command: Command unrecognized");
}

/* ---------------------------------------------------------------- I/O */

/*
 * Like OpenSMTPD: any line of SMTPD_MAXLINESIZE or more is "Line too long",
 * a shorter command of SMTPD_MAXCMDSIZE or more "Command line too long";
 * both disconnect, since resynchronising would be guesswork.
 */
static void
line_too_long(struct smtp_session *s, const char *what)
{
	smtp_reply(s, "500 5.0.0 %s too long", what);
	smtp_tx_reset(s);
	smtp_quit(s);
}

static void
smtp_process_input(struct smtp_session *s)
{
	struct evbuffer	*in;
	char		*line;
	size_t		 len;

	while (s->wait == W_NONE && s->state != S_QUIT) {
		/* STARTTLS changes the bufferevent under this loop. */
		in = bufferevent_get_input(s->bev);
		if (s->ffailed) {
			smtp_reply(s, "421 4.3.0 Temporary failure: a mail"
			    " filter is not available");
			smtp_tx_reset(s);
			smtp_quit(s);
			return;
		}
		line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
		if (line == NULL) {
			if (s->fdata != NULL)
				smtp_filter_data(s->id, s->fdata);
			if (evbuffer_get_length(in) >= SMTPD_MAXLINESIZE)
				line_too_long(s, "Line");
			return;
		}
		if (len >= SMTPD_MAXLINESIZE || (s->state != S_DATA &&
		    len >= SMTPD_MAXCMDSIZE)) {
			free(line);
			line_too_long(s, len >= SMTPD_MAXLINESIZE ? "Line" :
			    "Command line");
			return;
		}
		if (s->state == S_DATA) {
			if (s->filtered)
				smtp_fdata_line(s, line, len);
			else if (len == 1 && line[0] == '.')
				data_end(s);
			else
				data_line(s, line, len);
		} else if (memchr(line, '\0', len))
			smtp_reply(s, "500 5.5.1 Invalid command: Command"
			    " unrecognized");
		else if (s->auth_step != AUTH_NONE)
			auth_continue(s, line);
		else
			smtp_command(s, line);
		free(line);
	}
}

static void	proxy_input(struct smtp_session *);
static void	proxy_failed(struct smtp_session *, const char *);

static void
smtp_on_read(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->proxying) {
		proxy_input(s);
		return;
	}
	smtp_touch(s);
	smtp_process_input(s);
}

static void
smtp_on_write(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == S_QUIT && smtp_output_drained(s))
		smtp_free(s, "quit");
}

/*
 * A TLS session that failed, or a client that left before the handshake
 * was done: one line with the client and libtls' reason.  When the
 * handshake failed, the alert libtls wrote goes out before the socket is
 * closed (the session has no transaction and waits for no other role
 * then); a session that fails later is closed at once.
 */
static void
smtp_tls_failed(struct smtp_session *s, const char *e)
{
	char		 reason[512];

	snprintf(reason, sizeof(reason), "tls-error address=%s error=\"%s\"",
	    s->src, e);
	if (s->secure || smtp_tls_error(s->tls) == NULL ||
	    smtp_tls_unsent(s->tls) == 0) {
		smtp_free(s, reason);
		return;
	}
	log_info("%016" PRIx64 " smtp disconnected reason=%s", s->id, reason);
	s->close_logged = 1;
	s->state = S_QUIT;
	bufferevent_disable(s->bev, EV_READ);
	smtp_touch(s);
}

static void
smtp_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	const char	*e;

	if (s->state == S_QUIT && s->close_logged) {
		/* The socket went while the alert was being flushed. */
		smtp_free(s, "io-error");
		return;
	}
	if (s->proxying) {
		proxy_failed(s, (what & BEV_EVENT_EOF) ? "connection closed"
		    " before the header" : "socket error before the header");
		return;
	}
	if (s->tls != NULL && (!s->secure || smtp_tls_error(s->tls))) {
		if ((e = smtp_tls_error(s->tls)) == NULL)
			e = (what & BEV_EVENT_EOF) ? "connection closed during"
			    " the handshake" : "socket error during the"
			    " handshake";
		smtp_tls_failed(s, e);
		return;
	}
	smtp_free(s, (what & BEV_EVENT_EOF) ? "disconnected" : "io-error");
}

static void
smtp_on_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->proxying) {
		proxy_failed(s, "no header in time");
		return;
	}
	if (s->wait != W_NONE) {
		smtp_touch(s);		/* another role is working on it */
		return;
	}
	/* A client that does not read, or no TLS to say it in. */
	if (s->state == S_QUIT) {
		smtp_free(s, "timeout");
		return;
	}
	if (s->tls != NULL && !s->secure) {
		smtp_tls_failed(s, "handshake timed out");
		return;
	}
	if (s->filtered)
		smtp_filter_report(s->id, FE_TIMEOUT, 0);
	smtp_reply(s, "421 4.4.2 Timeout");
	smtp_tx_reset(s);
	smtp_quit(s);
}

static void
smtp_free(struct smtp_session *s, const char *reason)
{
	if (!s->closing) {
		if (!s->close_logged)
			log_info("%016" PRIx64 " smtp disconnected reason=%s",
			    s->id, reason);
		s->closing = 1;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		evtimer_del(s->timeout);
		if (evtimer_pending(s->auth_delay, NULL)) {
			evtimer_del(s->auth_delay);
			s->wait = W_NONE;	/* no role owes an answer */
		}
	}
	/* An answer from another role is still due: free when it comes. */
	if (s->wait != W_NONE || s->creating)
		return;
	smtp_tx_reset(s);
	if (s->filtered) {
		smtp_filter_report(s->id, FE_LINK_DISCONNECT, 0);
		smtp_filter_end(s->id);
		if (s->fdata != NULL)
			evbuffer_free(s->fdata);
		free(s->fcmd);
	}
	session_unlink(s);
	bufferevent_free(s->bev);
	event_free(s->timeout);
	event_free(s->auth_delay);
	explicit_bzero(s->auth_user, sizeof(s->auth_user));
	free(s);
	nsessions--;
}

static void
smtp_bev_setup(struct smtp_session *s)
{
	bufferevent_setcb(s->bev, smtp_on_read, smtp_on_write, smtp_on_event,
	    s);
	/* Bounds what a client can push while a command waits for an answer. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, 2 * SMTPD_MAXLINESIZE);
	bufferevent_enable(s->bev, EV_READ);
}

static void
smtp_banner(struct smtp_session *s)
{
	smtp_reply(s, "220 %s " SMTPD_BANNER_NAME, smtp_name(s));
	if (s->filtered)
		smtp_filter_report(s->id, FE_LINK_GREETING, 1, smtp_name(s));
}

/*
 * Once connected (SMTPS: once in TLS): the banner, which on a filtered
 * listener waits for the connect phase of the filters.
 */
static void
smtp_start(struct smtp_session *s)
{
	const struct listen_conf *lc = s->listener->lc;

	if (lc->filter == NULL) {
		smtp_banner(s);
		return;
	}
	s->filtered = 1;
	s->fphase = FPH_CONNECT;
	s->wait = W_FILTER;
	smtp_filter_begin(s->id, lc->filter, &s->self, &s->ss,
	    s->local ? smtp_name(s) : s->rdns[0] ? s->rdns : NULL,
	    s->local || s->fcrdns);
}

static void
rdns_ask(struct smtp_session *s)
{
	struct ipc_out	*o;

	if (s->local) {
		smtp_named(s);
		return;
	}
	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_DNS_PTR);
	ipc_put_u64(o, s->id);
	ipc_put_data(o, &s->ss, sizeof(s->ss));
	ipc_end(o, -1);
	s->wait = W_DNS;
}

static void
rdns_result(struct smtp_session *s, struct ipc_msg *m)
{
	const char	*name = ipc_get_str(m);

	s->fcrdns = ipc_get_u32(m) != 0;
	ipc_get_end(m);
	if (name != NULL)
		msd_strlcpy(s->rdns, name, sizeof(s->rdns));
	log_info("%016" PRIx64 " smtp resolved address=%s host=%s fcrdns=%s",
	    s->id, s->src, s->rdns[0] ? s->rdns : "<unknown>",
	    s->fcrdns ? "pass" : "fail");
	smtp_named(s);
}

/* From smtp_tls.c, inside the filter: must not free the session. */
static void
smtp_tls_ready(void *arg)
{
	struct smtp_session *s = arg;
	char		 text[256];
	int		 cert = smtp_tls_peer_cert(s->tls);

	s->secure = 1;
	s->verified = cert && (s->listener->lc->flags & LO_TLS_VERIFY);
	smtp_tls_text(s->tls, text, sizeof(text));
	log_info("%016" PRIx64 " smtp tls ciphers=%s", s->id, text);
	if (cert)
		log_info("%016" PRIx64 " smtp cert-check result=\"%s\""
		    " fingerprint=\"%s\"", s->id, s->verified ? "verified" :
		    "unchecked", smtp_tls_peer_hash(s->tls));
	smtp_touch(s);
	if ((s->listener->lc->flags & LO_SMTPS) && !s->filtered)
		smtp_start(s);
	if (s->filtered)
		smtp_filter_report(s->id, FE_LINK_TLS, 1, text);
}

/*
 * RFC 3207.  What the client sent after STARTTLS in the same packets came
 * in clear text, before TLS: it is dropped, never read as if it had come
 * over TLS (the CVE-2011-0411 injection).  A client that pipelines past
 * STARTTLS breaks RFC 2920 anyway; it sees its commands go unanswered.
 */
static void
cmd_starttls(struct smtp_session *s, char *arg)
{
	struct evbuffer		*in = bufferevent_get_input(s->bev);
	struct bufferevent	*bev;
	size_t			 n;

	if (s->state != S_HELO) {
		smtp_reply(s, "503 5.5.1 Invalid command: Command not allowed"
		    " at this point.");
		return;
	}
	if (!(s->listener->lc->flags & LO_TLS)) {
		smtp_reply(s, "503 5.5.1 Invalid command: Command not"
		    " supported");
		return;
	}
	if (s->tls != NULL) {
		smtp_reply(s, "503 5.5.1 Invalid command: Channel already"
		    " secured");
		return;
	}
	if (*arg) {
		smtp_reply(s, "501 5.5.4 Invalid command arguments: No"
		    " parameters allowed");
		return;
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	if ((n = evbuffer_get_length(in)) > 0) {
		log_info("%016" PRIx64 " smtp starttls address=%s discarded=%zu"
		    " reason=\"bytes pipelined after STARTTLS\"", s->id, s->src,
		    n);
		evbuffer_drain(in, n);
	}
	/* The client must say EHLO again, over TLS. */
	smtp_tx_reset(s);
	s->helo[0] = '\0';
	s->esmtp = 0;
	s->state = S_CONNECTED;
	bev = smtp_tls_wrap(s->bev, s->listener->lc, smtp_tls_ready, s,
	    &s->tls);
	if (bev == NULL) {
		smtp_quit(s);
		return;
	}
	s->bev = bev;
	smtp_bev_setup(s);
}

/*
 * SMTPS: TLS from the first byte, the banner waits for the handshake;
 * otherwise the banner (or the filters' connect phase).
 */
static void
smtp_greet(struct smtp_session *s)
{
	const struct listen_conf *lc = s->listener->lc;
	struct bufferevent	*raw = s->bev, *bev;

	if (!(lc->flags & LO_SMTPS)) {
		smtp_start(s);
		return;
	}
	if ((bev = smtp_tls_wrap(raw, lc, smtp_tls_ready, s, &s->tls)) ==
	    NULL) {
		smtp_free(s, "tls-error");
		return;
	}
	s->bev = bev;
	smtp_bev_setup(s);
	/* The ClientHello may have come in with the PROXY header. */
	if (evbuffer_get_length(bufferevent_get_input(raw)) > 0)
		bufferevent_trigger(raw, EV_READ, BEV_TRIG_IGNORE_WATERMARKS |
		    BEV_TRIG_DEFER_CALLBACKS);
}

/* The client is known: log it, then find our name for it. */
static void
smtp_connected(struct smtp_session *s)
{
	smtp_touch(s);
	log_info("%016" PRIx64 " smtp connected address=%s host=<unknown>",
	    s->id, s->src);
	rdns_ask(s);
}

/* The client's name is known: now ours, from `hostnames`, if asked. */
static void
smtp_named(struct smtp_session *s)
{
	const struct listen_conf *lc = s->listener->lc;
	struct ipc_out		*o;

	if (lc->hostnames == NULL || (s->self.ss_family != AF_INET &&
	    s->self.ss_family != AF_INET6)) {
		smtp_greet(s);
		return;
	}
	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_LKA_HOSTNAME);
	ipc_put_u64(o, s->id);
	ipc_put_str(o, lc->hostnames->name);
	ipc_put_str(o, ss_to_text(&s->self));
	ipc_end(o, -1);
	s->wait = W_HOSTNAME;
}

static void
hostname_result(struct smtp_session *s, struct ipc_msg *m)
{
	uint32_t	 status = ipc_get_u32(m);
	const char	*name = ipc_get_str(m);

	ipc_get_end(m);
	if (status == LKA_OK && name != NULL)
		msd_strlcpy(s->servername, name, sizeof(s->servername));
	else if (status == LKA_TEMPFAIL)
		log_warnx("%016" PRIx64 " smtp table %s did not answer for %s:"
		    " using the default server name", s->id,
		    s->listener->lc->hostnames->name, ss_to_text(&s->self));
	smtp_greet(s);
}

/*
 * `proxy-v2`: the first bytes are HAProxy's PROXY v2 header; the session
 * takes the client and local addresses it names.  A bad or missing
 * header ends the session with one line, as a TLS failure does.
 */
static void
proxy_failed(struct smtp_session *s, const char *why)
{
	char	 reason[256];

	snprintf(reason, sizeof(reason), "proxy-error address=%s"
	    " error=\"%s\"", s->src, why);
	smtp_free(s, reason);
}

static void
proxy_input(struct smtp_session *s)
{
	struct evbuffer		*in = bufferevent_get_input(s->bev);
	struct proxy_info	 pi;
	char			 err[128], src[INET6_ADDRSTRLEN + 8];
	size_t			 len = evbuffer_get_length(in);
	int			 n;

	if (len == 0)
		return;
	if (len > PROXY_HDR_MAX)
		len = PROXY_HDR_MAX;
	n = proxy_v2_parse(evbuffer_pullup(in, len), len, &pi, err,
	    sizeof(err));
	if (n == 0)
		return;
	if (n < 0) {
		proxy_failed(s, err);
		return;
	}
	evbuffer_drain(in, n);
	s->proxying = 0;
	if (pi.local) {
		log_info("%016" PRIx64 " smtp proxy-v2 address=%s command=LOCAL",
		    s->id, s->src);
	} else {
		s->ss = pi.src;
		s->self = pi.dst;
		msd_strlcpy(src, ss_to_text(&s->ss), sizeof(src));
		log_info("%016" PRIx64 " smtp proxy-v2 address=%s source=%s"
		    " destination=%s", s->id, s->src, src, ss_to_text(&s->self));
		msd_strlcpy(s->src, src, sizeof(s->src));
	}
	smtp_connected(s);
}

void
smtp_session_accept(int fd, const struct listener *l)
{
	struct smtp_session	*s;
	struct sockaddr_storage	 ss;
	struct bufferevent	*raw;
	socklen_t		 sslen = sizeof(ss);
	struct timeval		 tv = { PROXY_TIMEOUT, 0 };
	int			 one = 1;

	if (getpeername(fd, (struct sockaddr *)&ss, &sslen) == -1) {
		close(fd);
		return;
	}
	/* Replies are small; Nagle would stall pipelined exchanges. */
	if (ss.ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	if ((raw = bufferevent_socket_new(env.evbase, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL)
		fatalx("smtp: bufferevent_socket_new");
	s = xcalloc(1, sizeof(*s));
	s->bev = raw;
	s->id = ((uint64_t)msd_random() << 32) | ++next_session_id;
	s->listener = l;
	s->ss = ss;
	sslen = sizeof(s->self);
	if (getsockname(fd, (struct sockaddr *)&s->self, &sslen) == -1)
		s->self.ss_family = AF_UNSPEC;
	s->local = ss.ss_family == AF_UNIX;
	s->msgfd = -1;
	msd_strlcpy(s->src, ss_to_text(&ss), sizeof(s->src));
	s->timeout = evtimer_new(env.evbase, smtp_on_timeout, s);
	s->auth_delay = evtimer_new(env.evbase, auth_on_delay, s);
	if (s->timeout == NULL || s->auth_delay == NULL)
		fatalx("smtp: evtimer_new");
	s->hnext = sessions[s->id % SESSION_HASH];
	sessions[s->id % SESSION_HASH] = s;
	nsessions++;
	smtp_bev_setup(s);
	if (l->lc->flags & LO_PROXY_V2) {
		/* No more than this to send the header, however slowly. */
		s->proxying = 1;
		evtimer_add(s->timeout, &tv);
		return;
	}
	smtp_connected(s);
}

/* Answers from lookup and queue, keyed by session id. */
void
smtp_session_imsg(struct ipc_msg *m, enum smtpd_role from)
{
	struct smtp_session *s;
	enum smtp_wait	 was;
	uint64_t	 id = ipc_get_u64(m);

	if (m->type == IMSG_FILTER_RESULT || m->type == IMSG_FILTER_DATA) {
		/* The session may be gone: the chain answers regardless. */
		if ((s = session_find(id)) != NULL)
			smtp_filter_answer(s, m);
		return;
	}
	if ((s = session_find(id)) == NULL)
		fatalx("smtp: %s answer for unknown session %016" PRIx64,
		    ipc_type_name(m->type), id);
	if (m->type == IMSG_QUEUE_CREATE_RESULT) {
		if (!s->creating)
			fatalx("smtp: unexpected create answer");
		create_result(s, m);
		if (s->closing)
			smtp_free(s, "closed");
		else if (s->state != S_QUIT)
			smtp_process_input(s);
		return;
	}
	was = s->wait;
	s->wait = W_NONE;
	if (s->closing) {
		/* The client is gone. */
		if (m->type == IMSG_QUEUE_COMMIT_RESULT)
			s->msgid = 0;	/* committed, or already dropped */
		smtp_free(s, "closed");
		return;
	}
	switch (m->type) {
	case IMSG_DNS_PTR_RESULT:
		if (was != W_DNS)
			fatalx("smtp: unexpected DNS answer");
		rdns_result(s, m);
		break;
	case IMSG_LKA_RCPT_RESULT:
		if (was != W_LOOKUP)
			fatalx("smtp: unexpected lookup answer");
		rcpt_result(s, m);
		break;
	case IMSG_LKA_HOSTNAME_RESULT:
		if (was != W_HOSTNAME)
			fatalx("smtp: unexpected hostname answer");
		hostname_result(s, m);
		break;
	case IMSG_AUTH_RESULT:
		if (was == W_SENDERS)
			senders_result(s, m);
		else if (was == W_AUTH)
			auth_result(s, m);
		else
			fatalx("smtp: unexpected auth answer");
		break;
	case IMSG_QUEUE_COMMIT_RESULT:
		if (was != W_COMMIT)
			fatalx("smtp: unexpected commit answer");
		commit_result(s, m);
		break;
	default:
		fatalx("smtp: unexpected %s", ipc_type_name(m->type));
	}
	if (s->state != S_QUIT) {
		smtp_process_input(s);
	}
}

/* ------------------------------------------------------------ filters */

/*
 * A listener with `filter NAME`: every command of a phase the filters
 * know waits for the chain's verdict (W_FILTER) before it runs, and the
 * message goes through the chain's data-line filters before it is
 * written to the queue (W_FDATA at the end of DATA), then through the
 * commit phase.  Reports follow the replies, as OpenSMTPD sends them.
 */

static void
smtp_freport_tx(struct smtp_session *s, enum filter_event e)
{
	char	 msgid[16], size[24];

	snprintf(msgid, sizeof(msgid), "%08" PRIx32, s->msgid);
	if (e == FE_TX_COMMIT) {
		snprintf(size, sizeof(size), "%zu", s->datalen);
		smtp_filter_report(s->id, e, 2, msgid, size);
	} else
		smtp_filter_report(s->id, e, 1, msgid);
}

/* Reports a reply brings: link-identify before it, tx-* after it. */
static void
smtp_freply(struct smtp_session *s, const char *buf, size_t n)
{
	enum smtp_freply what = s->freply;
	char		 line[1024], msgid[16];
	const char	*result = buf[0] == '2' || buf[0] == '3' ? "ok" :
			    buf[0] == '4' ? "tempfail" : "permfail";

	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, buf, n);
	line[n] = '\0';
	s->freply = FR_NONE;
	if (what == FR_HELO && buf[0] == '2')
		smtp_filter_report(s->id, FE_LINK_IDENTIFY, 2,
		    s->esmtp ? "EHLO" : "HELO", s->helo);
	smtp_filter_report(s->id, FE_PROTOCOL_SERVER, 1, line);
	snprintf(msgid, sizeof(msgid), "%08" PRIx32, s->msgid);
	switch (what) {
	case FR_MAIL:
		if (buf[0] == '2')
			smtp_filter_report(s->id, FE_TX_BEGIN, 1, msgid);
		smtp_filter_report(s->id, FE_TX_MAIL, 3, msgid, result,
		    s->faddr);
		break;
	case FR_RCPT:
		smtp_filter_report(s->id, FE_TX_RCPT, 3, msgid, result,
		    s->faddr);
		break;
	case FR_DATA:
		smtp_filter_report(s->id, FE_TX_DATA, 2, msgid, result);
		break;
	default:
		break;
	}
}

/* Which reports the command's reply brings. */
static void
smtp_fprepare(struct smtp_session *s, const char *cmd, const char *arg)
{
	s->freply = FR_NONE;
	if (!strcasecmp(cmd, "HELO") || !strcasecmp(cmd, "EHLO"))
		s->freply = FR_HELO;
	else if (!strcasecmp(cmd, "DATA"))
		s->freply = FR_DATA;
	else if (!strcasecmp(cmd, "MAIL") || !strcasecmp(cmd, "RCPT")) {
		s->freply = cmd[0] == 'M' || cmd[0] == 'm' ? FR_MAIL : FR_RCPT;
		if (smtp_filter_addr(arg, s->freply == FR_MAIL ? "FROM:" :
		    "TO:", s->faddr, sizeof(s->faddr), NULL) == -1)
			s->faddr[0] = '\0';
	}
}

/* The phase a command asks the filters about, -1 for none; *param. */
static int
smtp_fphase(struct smtp_session *s, const char *cmd, const char *arg,
    const char **param)
{
	*param = "";
	if (!strcasecmp(cmd, "HELO") || !strcasecmp(cmd, "EHLO")) {
		while (*arg == ' ')
			arg++;
		*param = arg;
		if (s->state != S_CONNECTED || *arg == '\0')
			return -1;
		return cmd[0] == 'H' || cmd[0] == 'h' ? FPH_HELO : FPH_EHLO;
	}
	if (!strcasecmp(cmd, "MAIL")) {
		*param = s->faddr;
		return s->state == S_HELO && s->freply == FR_MAIL &&
		    smtp_filter_addr(arg, "FROM:", s->faddr,
		    sizeof(s->faddr), NULL) == 0 ? FPH_MAIL_FROM : -1;
	}
	if (!strcasecmp(cmd, "RCPT")) {
		*param = s->faddr;
		return (s->state == S_MAIL || s->state == S_RCPT) &&
		    smtp_filter_addr(arg, "TO:", s->faddr, sizeof(s->faddr),
		    NULL) == 0 ? FPH_RCPT_TO : -1;
	}
	if (!strcasecmp(cmd, "DATA"))
		return s->state == S_RCPT && *arg == '\0' ? FPH_DATA : -1;
	if (!strcasecmp(cmd, "STARTTLS"))
		return s->state == S_HELO && *arg == '\0' && s->tls == NULL &&
		    (s->listener->lc->flags & LO_TLS) ? FPH_STARTTLS : -1;
	if (!strcasecmp(cmd, "AUTH")) {
		/* the mechanism only: filters get no credentials */
		snprintf(s->faddr, sizeof(s->faddr), "%.*s%s",
		    (int)strcspn(arg, " "), arg, strchr(arg, ' ') ?
		    " ********" : "");
		*param = s->faddr;
		return s->state == S_HELO && auth_offered(s) ? FPH_AUTH : -1;
	}
	if (!strcasecmp(cmd, "RSET"))
		return FPH_RSET;
	if (!strcasecmp(cmd, "QUIT"))
		return FPH_QUIT;
	if (!strcasecmp(cmd, "NOOP"))
		return FPH_NOOP;
	return -1;
}

/* 1: the command waits for the filters' verdict; 0: it runs now. */
static int
smtp_fcommand(struct smtp_session *s, const char *line, const char *cmd,
    const char *arg)
{
	const char	*param;
	int		 ph;

	smtp_filter_report(s->id, FE_PROTOCOL_CLIENT, 1, line);
	smtp_fprepare(s, cmd, arg);
	if ((ph = smtp_fphase(s, cmd, arg, &param)) == -1)
		return 0;
	s->fcmd = xstrdup(line);
	s->fphase = ph;
	s->wait = W_FILTER;
	smtp_filter_phase(s->id, ph, param);
	return 1;
}

/* The command, with the argument a filter rewrote when rewrite is set. */
static void
smtp_frun(struct smtp_session *s, char *line, const char *rewrite)
{
	char		 buf[SMTPD_MAXCMDSIZE + SMTPD_MAXADDR];
	const char	*after, *prefix;
	char		*arg;
	size_t		 n;

	for (arg = line; *arg && *arg != ' '; arg++)
		;
	if (*arg)
		*arg++ = '\0';
	if (rewrite != NULL && (s->fphase == FPH_HELO ||
	    s->fphase == FPH_EHLO)) {
		msd_strlcpy(buf, rewrite, sizeof(buf));
		arg = buf;
	} else if (rewrite != NULL && (s->fphase == FPH_MAIL_FROM ||
	    s->fphase == FPH_RCPT_TO)) {
		prefix = s->fphase == FPH_MAIL_FROM ? "FROM:" : "TO:";
		if (smtp_filter_addr(arg, prefix, s->faddr, sizeof(s->faddr),
		    &after) == -1)
			after = "";
		/* The new address, with or without its angle brackets. */
		n = strlen(rewrite);
		if (n >= 2 && rewrite[0] == '<' && rewrite[n - 1] == '>') {
			rewrite++;
			n -= 2;
		}
		snprintf(buf, sizeof(buf), "%s<%.*s>%s", prefix, (int)n,
		    rewrite, after);
		arg = buf;
	}
	smtp_fprepare(s, line, arg);
	smtp_dispatch(s, line, arg);
}


static void
smtp_fclose(struct smtp_session *s, const char *text)
{
	smtp_reply(s, "%s", text);
	smtp_tx_reset(s);
	smtp_quit(s);
}

static void
smtp_fverdict(struct smtp_session *s, enum filter_verdict v,
    const char *text)
{
	char	*line = s->fcmd;

	s->fcmd = NULL;
	if (text == NULL)
		text = "421 4.3.0 Temporary failure";
	if (v == FV_JUNK) {
		if (s->fphase >= FPH_MAIL_FROM && s->fphase <= FPH_COMMIT &&
		    s->fphase != FPH_RSET && s->fphase != FPH_QUIT &&
		    s->fphase != FPH_NOOP)
			s->ftxjunk = 1;
		else
			s->fjunk = 1;
	}
	switch (v) {
	case FV_PROCEED:
	case FV_JUNK:
	case FV_REWRITE:
		if (s->fphase == FPH_CONNECT)
			smtp_banner(s);
		else if (s->fphase == FPH_COMMIT)
			data_end(s);
		else
			smtp_frun(s, line, v == FV_REWRITE ? text : NULL);
		break;
	case FV_REJECT:
	case FV_TEMPFAIL:
		if (s->fphase == FPH_CONNECT) {
			smtp_fclose(s, text);
			break;
		}
		smtp_reply(s, "%s", text);
		if (s->fphase == FPH_COMMIT)
			smtp_tx_reset(s);
		break;
	case FV_DISCONNECT:
	case FV_FAIL:
		smtp_fclose(s, text);
		break;
	}
	free(line);
}

/* Client lines of a filtered message go to the chain, dot-stuffed. */
static int
smtp_fdata_begin(struct smtp_session *s, const char *received)
{
	if (s->fdata == NULL && (s->fdata = evbuffer_new()) == NULL)
		fatalx("smtp: evbuffer_new");
	s->fdatalen = 0;
	if (s->fjunk || s->ftxjunk)
		evbuffer_add(s->fdata, "X-Spam: Yes\n", 12);
	evbuffer_add(s->fdata, received, strlen(received));
	return 0;
}

static void
smtp_fdata_line(struct smtp_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '.') {
		smtp_filter_report(s->id, FE_PROTOCOL_CLIENT, 1, ".");
		evbuffer_add(s->fdata, ".\n", 2);
		smtp_filter_data(s->id, s->fdata);
		s->wait = W_FDATA;
		return;
	}
	/* What the chain would get beyond the limit is refused anyway. */
	s->fdatalen += len + 1;
	if (s->fdatalen > env.conf->max_message_size) {
		s->dataflags |= DATA_TOO_BIG;
		return;
	}
	evbuffer_add(s->fdata, line, len);
	evbuffer_add(s->fdata, "\n", 1);
	if (evbuffer_get_length(s->fdata) >= IPC_CHUNK)
		smtp_filter_data(s->id, s->fdata);
}

/* The whole message is back: the commit phase, or the size error. */
static void
smtp_fdata_done(struct smtp_session *s)
{
	s->wait = W_NONE;
	if (s->closing) {
		smtp_free(s, "closed");
		return;
	}
	if (s->dataflags) {
		data_end(s);
		return;
	}
	s->fphase = FPH_COMMIT;
	s->wait = W_FILTER;
	smtp_filter_phase(s->id, FPH_COMMIT, "");
}

/* Lines out of the chain: written to the queue file as they come. */
static void
smtp_fdata_back(struct smtp_session *s, struct ipc_msg *m)
{
	const char	*p, *nl;
	size_t		 len, n;

	p = ipc_get_data(m, &len);
	ipc_get_end(m);
	for (; len > 0; p = nl + 1, len -= n + 1) {
		if ((nl = memchr(p, '\n', len)) == NULL)
			fatalx("smtp: filtered data without a line end");
		n = nl - p;
		if (n == 1 && p[0] == '.') {
			if (s->wait == W_FDATA)
				smtp_fdata_done(s);
			return;
		}
		if (s->state == S_DATA && s->ofile != NULL && !s->closing)
			data_line(s, (char *)p, n);
	}
}

static void
smtp_filter_answer(struct smtp_session *s, struct ipc_msg *m)
{
	enum filter_verdict v;
	const char	*text;

	if (m->type == IMSG_FILTER_DATA) {
		smtp_fdata_back(s, m);
		goto resume;
	}
	v = ipc_get_u32(m);
	text = ipc_get_str(m);
	ipc_get_end(m);
	if (s->closing) {
		if (s->wait == W_FILTER || s->wait == W_FDATA) {
			s->wait = W_NONE;
			smtp_free(s, "closed");
		}
		return;
	}
	if (s->wait == W_FILTER) {
		s->wait = W_NONE;
		smtp_fverdict(s, v, text);
	} else if (s->wait == W_FDATA && (v == FV_TEMPFAIL || v == FV_FAIL)) {
		s->wait = W_NONE;
		smtp_reply(s, "%s", text ? text : "451 4.3.0 Temporary failure");
		smtp_tx_reset(s);
		if (v == FV_FAIL)
			smtp_quit(s);
	} else if (v == FV_FAIL)
		s->ffailed = 1;		/* told when the session reads again */
	else
		return;
resume:
	if (!s->closing && s->state != S_QUIT)
		smtp_process_input(s);
}
