/*
 * mta_session.c - the relay's SMTP (and LMTP) client, in the smtp role.
 *
 * A session connects to the route's hosts in order (best MX first) until
 * one greets it and takes EHLO, STARTTLS and AUTH as the action asks; any
 * failure before that moves on to the next address.  Then it runs one
 * transaction per task: MAIL, RCPT for each recipient, DATA, the message
 * with dot-stuffing and CRLF line ends, and reports each recipient's
 * answer.  With PIPELINING the MAIL, RCPT and DATA commands go out in one
 * write (RFC 2920).  A failed recipient is reported alone; the others go
 * on.
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
#include "mta.h"

#define MTA_CONNECT_TIMEOUT	30	/* seconds */
#define MTA_REPLY_TIMEOUT	300	/* RFC 5321 4.5.3.2 */
#define MTA_IDLE_TIMEOUT	5	/* a connection waits this long for more */
#define MTA_REPLY_MAX		4096	/* one reply line */
#define MTA_BODY_CHUNK		16384
#define MTA_BODY_HIGH		(256 * 1024)	/* output buffered at most */
#define MTA_MAX_MSGS		100	/* messages per connection */
#define MTA_HOST_DOWN		60	/* s a failed host is tried last */

enum mstate {
	MS_CONNECT, MS_BANNER, MS_EHLO, MS_HELO, MS_STARTTLS, MS_HANDSHAKE,
	MS_AUTH, MS_TX, MS_BODY, MS_DOT, MS_RSET, MS_IDLE, MS_QUIT,
};

struct mta_sess_state {
	struct mta_session	*s;
	struct mta_route	*r;
	uint64_t		 id;
	struct bufferevent	*bev;
	struct smtp_tls		*tls;
	struct event		*timer;		/* idle */
	enum mstate		 state;
	size_t			 host;		/* index in r->hosts */
	size_t			*order;		/* r->hosts to try, in turn */
	size_t			 next;		/* in order */
	const struct mta_src	*src;		/* bound to, or NULL */
	char			 local[64];	/* our address, for logs */
	int			 ready;		/* has taken mail */
	int			 skip_tls;	/* STARTTLS failed here: not again */
	char			 relay[320];	/* "name [address]" for logs */
	char			 error[512];	/* last failure, for results */
	/* EHLO capabilities */
	int			 esmtp, x_starttls, x_pipelining, x_dsn;
	int			 x_auth_plain, x_auth_login;
	/* the reply being read */
	char			 line[MTA_REPLY_MAX];
	/* the current transaction */
	struct mta_task		*task;
	size_t			 nsent, nreplied;	/* MAIL, RCPTs, DATA */
	size_t			 naccepted;
	int			 tx_error;	/* MAIL failed: no DATA */
	int			 tx_status;
	char			 tx_text[512];
	size_t			 lmtp_next;	/* recipient the next reply is for */
	off_t			 off;		/* in the message file */
	int			 bol;		/* at the start of a line */
	size_t			 nmsgs;
	int			 busy;		/* inside sess_read */
	int			 dead;		/* closed while busy */
};

static uint32_t	next_id;

static unsigned
ss_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void	sess_read(struct bufferevent *, void *);
static void	sess_write(struct bufferevent *, void *);
static void	sess_event(struct bufferevent *, short, void *);
static void	sess_connect(struct mta_sess_state *);
static void	sess_next_task(struct mta_sess_state *);
static void	tx_send_next(struct mta_sess_state *);

static int
route_lmtp(const struct mta_sess_state *st)
{
	return st->r->scheme == RELAY_LMTP;
}

/* TLS is a must: smtp+tls, smtps, or `tls` on the action. */
static int
tls_required(const struct mta_sess_state *st)
{
	return st->r->scheme == RELAY_SMTP_TLS ||
	    st->r->scheme == RELAY_SMTPS || st->r->a->tls != RELAY_TLS_DEFAULT;
}

/* smtpd.conf(5): smarthost certificates are verified unless no-verify. */
static int
tls_verify(const struct mta_sess_state *st)
{
	if (st->r->a->tls == RELAY_TLS_NO_VERIFY)
		return 0;
	return st->r->scheme == RELAY_SMTP_TLS ||
	    st->r->scheme == RELAY_SMTPS || st->r->a->tls == RELAY_TLS_VERIFY;
}

static void
sess_printf(struct mta_sess_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sess_printf(struct mta_sess_state *st, const char *fmt, ...)
{
	va_list	 ap;
	char	 buf[SMTPD_MAXLINESIZE + 256];
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf) - 2)
		fatalx("mta: command line too long");
	if (log_verbose && strncmp(buf, "AUTH", 4) != 0)
		log_debug("%016" PRIx64 " mta >>> %s", st->id, buf);
	memcpy(buf + n, "\r\n", 2);
	if (evbuffer_add(bufferevent_get_output(st->bev), buf, n + 2) == -1)
		fatalx("mta: evbuffer_add");
}

/* --------------------------------------------------------- teardown */

/* Freed at once, or when sess_read is done with it. */
static void
sess_free(struct mta_sess_state *st)
{
	if (st->busy) {
		st->dead = 1;
		return;
	}
	if (st->bev != NULL)
		bufferevent_free(st->bev);
	if (st->timer != NULL)
		event_free(st->timer);
	free(st->order);
	free(st->s);
	free(st);
}

/* The task in hand (if any) is answered with status for what is left. */
static void
task_abort(struct mta_sess_state *st, int status, const char *text)
{
	if (st->task == NULL)
		return;
	mta_task_fail(st->task, status, text, st->relay);
	st->task = NULL;
}

static void
sess_close(struct mta_sess_state *st, int failed, const char *why)
{
	log_info("%016" PRIx64 " mta disconnected reason=\"%s\" messages=%zu",
	    st->id, why, st->nmsgs);
	task_abort(st, DELIVERY_TEMPFAIL, st->error[0] ? st->error : why);
	mta_session_closed(st->r, st->s, st->ready, failed,
	    st->error[0] ? st->error : why);
	sess_free(st);
}

/* This address would not do; the next one may. */
static void
host_failed(struct mta_sess_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
host_failed(struct mta_sess_state *st, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(st->error, sizeof(st->error), fmt, ap);
	va_end(ap);
	log_info("%016" PRIx64 " mta error relay=\"%s\" reason=\"%s\"",
	    st->id, st->relay, st->error);
	if (st->ready) {
		/* Mid-transaction: the task is retried later, elsewhere. */
		sess_close(st, 0, st->error);
		return;
	}
	if (st->bev != NULL) {
		bufferevent_free(st->bev);
		st->bev = NULL;
		st->tls = NULL;
	}
	st->r->hosts[st->host].down_until = time(NULL) + MTA_HOST_DOWN;
	if (st->next >= st->r->nhosts) {
		sess_close(st, 1, st->error);
		return;
	}
	st->host = st->order[st->next++];
	st->skip_tls = 0;
	sess_connect(st);
}

/*
 * Every address of the route, best first, but those that failed a
 * moment ago (in this session or another) after the others: a dead MX
 * costs one connect timeout, not one per session.
 */
static void
sess_order_hosts(struct mta_sess_state *st)
{
	const struct mta_route	*r = st->r;
	time_t			 now = time(NULL);
	size_t			 i, n = 0;
	int			 pass;

	st->order = xcalloc(r->nhosts, sizeof(*st->order));
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < r->nhosts; i++)
			if ((r->hosts[i].down_until > now) == (pass == 1))
				st->order[n++] = i;
	st->host = st->order[0];
	st->next = 1;
}

/* The name we greet with: helo-src for our address, helo, our name. */
static const char *
sess_helo(const struct mta_sess_state *st)
{
	if (st->src != NULL && st->src->helo[0])
		return st->src->helo;
	if (st->src == NULL && st->r->hosts[st->host].helo[0])
		return st->r->hosts[st->host].helo;
	return st->r->a->helo ? st->r->a->helo : env.conf->hostname;
}

/* ----------------------------------------------------------- connect */

static void
sess_bev_setup(struct mta_sess_state *st)
{
	struct timeval	 tv = { MTA_REPLY_TIMEOUT, 0 };

	bufferevent_setcb(st->bev, sess_read, sess_write, sess_event, st);
	bufferevent_setwatermark(st->bev, EV_WRITE, MTA_BODY_CHUNK, 0);
	bufferevent_set_timeouts(st->bev, &tv, &tv);
	bufferevent_enable(st->bev, EV_READ | EV_WRITE);
}

/*
 * `src <t>`: the route's next source address of the host's family.  0
 * when the kernel may choose (no src), -1 when none fits.
 */
static int
sess_pick_src(struct mta_sess_state *st, int family)
{
	struct mta_route	*r = st->r;
	size_t			 i, k;

	st->src = NULL;
	if (r->nsrc == 0)
		return 0;
	for (i = 0; i < r->nsrc; i++) {
		k = (r->src_next + i) % r->nsrc;
		if (r->srcs[k].ss.ss_family == family) {
			r->src_next = k + 1;
			st->src = &r->srcs[k];
			return 0;
		}
	}
	return -1;
}

/* Binds fd to the chosen source; the port comes at connect (no EADDRINUSE). */
static int
sess_bind(struct mta_sess_state *st, int fd)
{
	const struct sockaddr_storage	*ss = &st->src->ss;
	int				 one = 1;

#ifdef IP_BIND_ADDRESS_NO_PORT
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#else
	(void)one;
#endif
	return bind(fd, (const struct sockaddr *)ss, ss_len(ss));
}

static void
sess_connect(struct mta_sess_state *st)
{
	const struct mta_host	*h = &st->r->hosts[st->host];
	struct timeval		 tv = { MTA_CONNECT_TIMEOUT, 0 };
	int			 fd, one = 1;

	snprintf(st->relay, sizeof(st->relay), "%s [%s]", h->name,
	    ss_to_text(&h->ss));
	st->state = MS_CONNECT;
	st->local[0] = '\0';
	st->esmtp = st->x_starttls = st->x_pipelining = st->x_dsn = 0;
	st->x_auth_plain = st->x_auth_login = 0;
	if (sess_pick_src(st, h->ss.ss_family) == -1) {
		host_failed(st, "no %s source address in table %s",
		    h->ss.ss_family == AF_INET6 ? "IPv6" : "IPv4",
		    st->r->a->src->name);
		return;
	}
	log_info("%016" PRIx64 " mta connecting address=%s://%s%s%s:%u host=%s"
	    "%s%s", st->id, relay_scheme_name(st->r->scheme),
	    h->ss.ss_family == AF_INET6 ? "[" : "", ss_to_text(&h->ss),
	    h->ss.ss_family == AF_INET6 ? "]" : "", ss_port(&h->ss), h->name,
	    st->src ? " source=" : "", st->src ? ss_to_text(&st->src->ss) : "");
	if ((fd = socket(h->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1) {
		host_failed(st, "socket: %s", strerror(errno));
		return;
	}
	if (st->src != NULL && sess_bind(st, fd) == -1) {
		host_failed(st, "cannot use source address %s: %s",
		    ss_to_text(&st->src->ss), strerror(errno));
		close(fd);
		return;
	}
	/* Pipelined commands and replies are small: no Nagle stalls. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((st->bev = bufferevent_socket_new(env.evbase, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL)
		fatalx("mta: bufferevent_socket_new");
	sess_bev_setup(st);
	bufferevent_set_timeouts(st->bev, &tv, &tv);
	if (bufferevent_socket_connect(st->bev, (struct sockaddr *)&h->ss,
	    ss_len(&h->ss)) == -1)
		host_failed(st, "connect: %s", strerror(errno));
}

/* ------------------------------------------------------------ TLS */

static void
sess_tls_ready(void *arg)
{
	struct mta_sess_state	*st = arg;
	char			 text[256];

	smtp_tls_text(st->tls, text, sizeof(text));
	log_info("%016" PRIx64 " mta tls ciphers=%s", st->id, text);
	if (st->state == MS_HANDSHAKE) {
		/* RFC 3207: forget what was said before TLS; EHLO again. */
		st->state = MS_EHLO;
		st->esmtp = st->x_starttls = st->x_pipelining = st->x_dsn = 0;
		st->x_auth_plain = st->x_auth_login = 0;
		sess_printf(st, "%s %s", route_lmtp(st) ? "LHLO" : "EHLO",
		    sess_helo(st));
	} else
		st->state = MS_BANNER;		/* smtps: now the banner */
}

static void
sess_start_tls(struct mta_sess_state *st)
{
	struct bufferevent	*bev;
	const char		*name = st->r->hosts[st->host].name;

	/* Nothing the server sent before TLS may be read as after it. */
	evbuffer_drain(bufferevent_get_input(st->bev),
	    evbuffer_get_length(bufferevent_get_input(st->bev)));
	bev = smtp_tls_wrap_client(st->bev, st->r->a, tls_verify(st), name,
	    sess_tls_ready, st, &st->tls);
	if (bev == NULL) {
		host_failed(st, "cannot start TLS");
		return;
	}
	st->bev = bev;
	sess_bev_setup(st);
}

/* ------------------------------------------------------- handshake */

static void
ehlo_capability(struct mta_sess_state *st, const char *text)
{
	char	 word[64];
	size_t	 i;

	for (i = 0; text[i] && !isspace((unsigned char)text[i]) &&
	    i < sizeof(word) - 1; i++)
		word[i] = toupper((unsigned char)text[i]);
	word[i] = '\0';
	if (strcmp(word, "STARTTLS") == 0)
		st->x_starttls = 1;
	else if (strcmp(word, "PIPELINING") == 0)
		st->x_pipelining = 1;
	else if (strcmp(word, "DSN") == 0)
		st->x_dsn = 1;
	else if (strcmp(word, "AUTH") == 0) {
		const char *p = text + i;
		char	 mech[32];
		int	 n;

		while (sscanf(p, " %31s%n", mech, &n) == 1) {
			if (strcasecmp(mech, "PLAIN") == 0)
				st->x_auth_plain = 1;
			else if (strcasecmp(mech, "LOGIN") == 0)
				st->x_auth_login = 1;
			p += n;
		}
	}
}

static void
sess_auth(struct mta_sess_state *st)
{
	const char	*pw, *auth = st->r->auth;
	char		 raw[1024], b64[1400];
	size_t		 ulen, plen;
	int		 n;

	if ((pw = strchr(auth, ':')) == NULL)
		fatalx("mta: credentials without a colon");
	ulen = pw - auth;
	plen = strlen(++pw);
	if (ulen + plen + 2 > sizeof(raw)) {
		host_failed(st, "credentials too long");
		return;
	}
	/* PLAIN: authzid (empty) NUL authcid NUL password. */
	raw[0] = '\0';
	memcpy(raw + 1, auth, ulen);
	raw[1 + ulen] = '\0';
	memcpy(raw + 2 + ulen, pw, plen);
	n = base64_encode(raw, ulen + plen + 2, b64, sizeof(b64));
	explicit_bzero(raw, sizeof(raw));
	if (n < 0)
		fatalx("mta: base64_encode");
	st->state = MS_AUTH;
	sess_printf(st, "AUTH PLAIN %s", b64);
	explicit_bzero(b64, sizeof(b64));
}

/* Greeted (and authenticated): the route may count on this session. */
static void
sess_ready(struct mta_sess_state *st)
{
	if (!st->ready) {
		st->ready = 1;
		st->r->hosts[st->host].down_until = 0;
		mta_session_ready(st->r);
	}
	sess_next_task(st);
}

/* After EHLO (and TLS): on to AUTH or to mail. */
static void
sess_greeted(struct mta_sess_state *st)
{
	if (st->tls == NULL && st->x_starttls && !st->skip_tls &&
	    st->r->scheme != RELAY_SMTP_NOTLS) {
		st->state = MS_STARTTLS;
		sess_printf(st, "STARTTLS");
		return;
	}
	if (st->tls == NULL && tls_required(st)) {
		host_failed(st, "TLS is required but %s does not offer "
		    "STARTTLS", st->relay);
		return;
	}
	if (st->r->auth != NULL) {
		if (st->tls == NULL) {
			host_failed(st, "no AUTH over a connection without TLS");
			return;
		}
		if (!st->x_auth_plain) {
			host_failed(st, "%s offers no AUTH PLAIN", st->relay);
			return;
		}
		sess_auth(st);
		return;
	}
	sess_ready(st);
}

static int
reply_class(int code)
{
	return code / 100;
}

static void
on_handshake_reply(struct mta_sess_state *st, int code, const char *text)
{
	switch (st->state) {
	case MS_BANNER:
		if (reply_class(code) != 2) {
			host_failed(st, "banner: %s", text);
			return;
		}
		st->state = MS_EHLO;
		sess_printf(st, "%s %s", route_lmtp(st) ? "LHLO" : "EHLO",
		    sess_helo(st));
		return;
	case MS_EHLO:
		if (reply_class(code) == 2) {
			st->esmtp = 1;
			sess_greeted(st);
		} else if (route_lmtp(st) || tls_required(st) ||
		    st->r->auth != NULL)
			host_failed(st, "EHLO: %s", text);
		else {
			st->state = MS_HELO;
			sess_printf(st, "HELO %s", sess_helo(st));
		}
		return;
	case MS_HELO:
		if (reply_class(code) != 2)
			host_failed(st, "HELO: %s", text);
		else
			sess_greeted(st);
		return;
	case MS_STARTTLS:
		if (code == 220) {
			st->state = MS_HANDSHAKE;
			sess_start_tls(st);
		} else if (tls_required(st))
			host_failed(st, "STARTTLS: %s", text);
		else {
			st->skip_tls = 1;
			sess_greeted(st);
		}
		return;
	case MS_AUTH:
		if (code != 235) {
			host_failed(st, "authentication failed: %s", text);
			return;
		}
		log_info("%016" PRIx64 " mta authenticated relay=\"%s\"",
		    st->id, st->relay);
		sess_ready(st);
		return;
	default:
		fatalx("mta: handshake reply in state %d", st->state);
	}
}

/* ------------------------------------------------------ transaction */

static int
status_of(int code)
{
	return reply_class(code) == 2 ? DELIVERY_OK :
	    reply_class(code) == 5 ? DELIVERY_PERMFAIL : DELIVERY_TEMPFAIL;
}

/*
 * A recipient the next hop took: RFC 3461 says who sends its success
 * notice, the next hop when it got our NOTIFY, we ("relayed") otherwise.
 */
static int
accepted_status(const struct mta_sess_state *st, const struct mta_rcpt *rc,
    int code)
{
	if (reply_class(code) != 2)
		return status_of(code);
	return st->x_dsn && rc->notify ? DELIVERY_DSN_PASSED :
	    DELIVERY_RELAYED;
}

static void
send_mail(struct mta_sess_state *st)
{
	struct mta_task	*t = st->task;
	char		 params[256] = "", envid[320], srs[SRS_ADDR_MAX];

	if (st->x_dsn && t->ret)
		snprintf(params, sizeof(params), " RET=%s",
		    t->ret == DSN_RET_HDRS ? "HDRS" : "FULL");
	if (st->x_dsn && t->envid[0] &&
	    xtext_encode(t->envid, envid, sizeof(envid)) != -1) {
		msd_strlcat(params, " ENVID=", sizeof(params));
		msd_strlcat(params, envid, sizeof(params));
	}
	/* The task keeps the real sender for our logs and bounces. */
	sess_printf(st, "MAIL FROM:<%s>%s", srs_mail_from(st->r->a, t->sender,
	    t->rcpts[0].rcpt, t->rcpts[0].to, srs, sizeof(srs)), params);
}

static void
send_rcpt(struct mta_sess_state *st, const struct mta_rcpt *rc)
{
	char	 params[SMTPD_MAXADDR * 3 + 64] = "", orcpt[SMTPD_MAXADDR * 3];

	if (st->x_dsn && rc->notify) {
		if (rc->notify & DSN_NOTIFY_NEVER)
			msd_strlcpy(params, " NOTIFY=NEVER", sizeof(params));
		else
			snprintf(params, sizeof(params), " NOTIFY=%s%s%s",
			    rc->notify & DSN_NOTIFY_SUCCESS ? "SUCCESS," : "",
			    rc->notify & DSN_NOTIFY_FAILURE ? "FAILURE," : "",
			    rc->notify & DSN_NOTIFY_DELAY ? "DELAY," : "");
		params[strlen(params) - 1] = params[strlen(params) - 1] ==
		    ',' ? '\0' : params[strlen(params) - 1];
	}
	if (st->x_dsn && rc->orcpt[0] &&
	    dsn_orcpt_encode(rc->orcpt, orcpt, sizeof(orcpt)) != -1) {
		msd_strlcat(params, " ORCPT=", sizeof(params));
		msd_strlcat(params, orcpt, sizeof(params));
	}
	sess_printf(st, "RCPT TO:<%s>%s", rc->to, params);
}

/* Commands of a transaction: 0 MAIL, 1..n RCPT, n+1 DATA. */
static void
send_cmd(struct mta_sess_state *st, size_t i)
{
	if (i == 0)
		send_mail(st);
	else if (i <= st->task->nrcpt)
		send_rcpt(st, &st->task->rcpts[i - 1]);
	else
		sess_printf(st, "DATA");
	st->nsent++;
}

static void
tx_begin(struct mta_sess_state *st, struct mta_task *t)
{
	size_t	 i, n = t->nrcpt + 2;

	st->task = t;
	msd_strlcpy(t->src, st->local, sizeof(t->src));
	st->nsent = st->nreplied = st->naccepted = 0;
	st->tx_error = 0;
	st->lmtp_next = 0;
	st->off = 0;
	st->bol = 1;
	for (i = 0; i < t->nrcpt; i++)
		t->rcpts[i].accepted = 0;
	st->state = MS_TX;
	if (st->x_pipelining)
		for (i = 0; i < n; i++)
			send_cmd(st, i);
	else
		send_cmd(st, 0);
}

static void
sess_rset(struct mta_sess_state *st)
{
	st->state = MS_RSET;
	sess_printf(st, "RSET");
}

/* Without PIPELINING: the next command once the last was answered. */
static void
tx_send_next(struct mta_sess_state *st)
{
	size_t	 n = st->task->nrcpt + 2;

	if (st->nsent > st->nreplied || st->nsent >= n)
		return;
	if (st->tx_error || (st->nsent == n - 1 && st->naccepted == 0)) {
		sess_rset(st);
		return;
	}
	send_cmd(st, st->nsent);
}

static void
body_fill(struct mta_sess_state *st)
{
	struct evbuffer	*out = bufferevent_get_output(st->bev);
	char		 buf[MTA_BODY_CHUNK], *p, *nl, *end;
	ssize_t		 n;

	while (evbuffer_get_length(out) < MTA_BODY_HIGH) {
		n = pread(st->task->fd, buf, sizeof(buf), st->off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(st->error, sizeof(st->error), "cannot read "
			    "the queued message: %s", strerror(errno));
			sess_close(st, 0, st->error);
			return;
		}
		if (n == 0) {
			if (!st->bol)
				evbuffer_add(out, "\r\n", 2);
			evbuffer_add(out, ".\r\n", 3);
			st->state = MS_DOT;
			return;
		}
		st->off += n;
		/* The spool keeps LF line ends: CRLF and dot-stuff here. */
		for (p = buf, end = buf + n; p < end; p = nl + 1) {
			if (st->bol && *p == '.')
				evbuffer_add(out, ".", 1);
			if ((nl = memchr(p, '\n', end - p)) == NULL) {
				evbuffer_add(out, p, end - p);
				st->bol = 0;
				break;
			}
			evbuffer_add(out, p, nl - p);
			evbuffer_add(out, "\r\n", 2);
			st->bol = 1;
		}
	}
}

static void
on_tx_reply(struct mta_sess_state *st, int code, const char *text)
{
	struct mta_task	*t = st->task;
	size_t		 i = st->nreplied++;
	struct mta_rcpt	*rc;

	if (i == 0 && reply_class(code) != 2) {
		/* MAIL refused: every recipient gets this answer. */
		st->tx_error = 1;
		st->tx_status = status_of(code);
		msd_strlcpy(st->tx_text, text, sizeof(st->tx_text));
		for (i = 0; i < t->nrcpt; i++)
			mta_rcpt_result(t, &t->rcpts[i], st->tx_status, text,
			    st->relay);
	} else if (i >= 1 && i <= t->nrcpt) {
		rc = &t->rcpts[i - 1];
		if (reply_class(code) == 2 && !st->tx_error) {
			rc->accepted = 1;
			st->naccepted++;
		} else if (!st->tx_error)
			mta_rcpt_result(t, rc, status_of(code), text,
			    st->relay);
	} else if (i == t->nrcpt + 1) {
		if (code == 354 && st->naccepted > 0 && !st->tx_error) {
			st->state = MS_BODY;
			body_fill(st);
			return;
		}
		if (code == 354) {
			/* Nothing to send after all: an empty message. */
			sess_printf(st, ".");
			st->state = MS_DOT;
			st->naccepted = 0;
			return;
		}
		for (i = 0; i < t->nrcpt; i++)
			if (t->rcpts[i].accepted)
				mta_rcpt_result(t, &t->rcpts[i],
				    status_of(code), text, st->relay);
		sess_rset(st);
		return;
	}
	if (st->nreplied == st->nsent && st->nsent < t->nrcpt + 2)
		tx_send_next(st);
}

/* The reply to the final dot; LMTP gives one per accepted recipient. */
static void
on_dot_reply(struct mta_sess_state *st, int code, const char *text)
{
	struct mta_task	*t = st->task;
	size_t		 i;

	if (route_lmtp(st)) {
		for (i = st->lmtp_next; i < t->nrcpt; i++)
			if (t->rcpts[i].accepted)
				break;
		if (i < t->nrcpt) {
			mta_rcpt_result(t, &t->rcpts[i],
			    accepted_status(st, &t->rcpts[i], code), text,
			    st->relay);
			st->lmtp_next = i + 1;
		}
		for (i = st->lmtp_next; i < t->nrcpt; i++)
			if (t->rcpts[i].accepted)
				return;		/* more replies to come */
	} else
		for (i = 0; i < t->nrcpt; i++)
			if (t->rcpts[i].accepted)
				mta_rcpt_result(t, &t->rcpts[i],
				    accepted_status(st, &t->rcpts[i], code),
				    text, st->relay);
	if (reply_class(code) == 2)
		st->nmsgs++;
	mta_task_done(t);
	st->task = NULL;
	sess_next_task(st);
}

static void
on_idle_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct mta_sess_state	*st = arg;

	st->state = MS_QUIT;
	if (st->s->is_idle) {
		TAILQ_REMOVE(&st->r->idle, st->s, idle_entry);
		st->s->is_idle = 0;
	}
	sess_printf(st, "QUIT");
}

static void
sess_next_task(struct mta_sess_state *st)
{
	struct mta_task	*t;
	struct timeval	 tv = { MTA_IDLE_TIMEOUT, 0 };

	if (st->nmsgs < MTA_MAX_MSGS && (t = mta_next_task(st->r)) != NULL) {
		tx_begin(st, t);
		return;
	}
	if (st->nmsgs >= MTA_MAX_MSGS) {
		on_idle_timeout(-1, 0, st);
		return;
	}
	st->state = MS_IDLE;
	evtimer_add(st->timer, &tv);
	mta_session_idle(st->r, st->s);
}

void
mta_session_wake(struct mta_session *s)
{
	evtimer_del(s->st->timer);
	sess_next_task(s->st);
}

/* ------------------------------------------------------------ replies */

/* st->error ends the session, or only this host's turn before mail. */
static void
sess_fail(struct mta_sess_state *st)
{
	if (st->ready)
		sess_close(st, 0, st->error);
	else
		host_failed(st, "%s", st->error);
}

static void
on_reply(struct mta_sess_state *st, int code, const char *text)
{
	switch (st->state) {
	case MS_BANNER:
	case MS_EHLO:
	case MS_HELO:
	case MS_STARTTLS:
	case MS_AUTH:
		on_handshake_reply(st, code, text);
		break;
	case MS_TX:
		on_tx_reply(st, code, text);
		break;
	case MS_DOT:
		if (st->naccepted == 0) {
			mta_task_done(st->task);
			st->task = NULL;
			sess_next_task(st);
		} else
			on_dot_reply(st, code, text);
		break;
	case MS_RSET:
		mta_task_done(st->task);
		st->task = NULL;
		sess_next_task(st);
		break;
	case MS_QUIT:
		sess_close(st, 0, "quit");
		break;
	default:
		/* Unasked: a server closing on us (421) or talking nonsense. */
		snprintf(st->error, sizeof(st->error), "unexpected reply: %s",
		    text);
		sess_close(st, 0, st->error);
		break;
	}
}

/*
 * One reply line: "ddd-text" continues, "ddd text" or "ddd" ends.  The
 * capabilities of EHLO are read off each line; the last line is the text
 * reported for the reply.
 */
static void
on_line(struct mta_sess_state *st, const char *line, size_t len)
{
	int	 code;

	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) ||
	    (len > 3 && line[3] != ' ' && line[3] != '-') ||
	    line[0] < '2' || line[0] > '5') {
		snprintf(st->error, sizeof(st->error), "bad reply from %s: "
		    "\"%.100s\"", st->relay, line);
		sess_fail(st);
		return;
	}
	if (st->state == MS_EHLO && line[0] == '2' && len > 4)
		ehlo_capability(st, line + 4);
	if (len > 3 && line[3] == '-')
		return;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	on_reply(st, code, line);
}

static void
sess_read(struct bufferevent *bev, void *arg)
{
	struct mta_sess_state	*st = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line;
	size_t			 len;

	/*
	 * Pipelined replies arrive together.  A reply may close the session
	 * or move it to another connection: stop reading this one then.
	 */
	st->busy = 1;
	while (!st->dead && st->bev == bev &&
	    (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF))) {
		if (len >= MTA_REPLY_MAX) {
			line[MTA_REPLY_MAX - 1] = '\0';
			len = MTA_REPLY_MAX - 1;
		}
		if (log_verbose)
			log_debug("%016" PRIx64 " mta <<< %s", st->id, line);
		on_line(st, line, len);
		free(line);
	}
	if (!st->dead && st->bev == bev &&
	    evbuffer_get_length(in) > MTA_REPLY_MAX) {
		snprintf(st->error, sizeof(st->error), "reply line too long "
		    "from %s", st->relay);
		sess_fail(st);
	}
	st->busy = 0;
	if (st->dead)
		sess_free(st);
}

static void
sess_write(struct bufferevent *bev, void *arg)
{
	struct mta_sess_state	*st = arg;

	if (st->state == MS_BODY)
		body_fill(st);
}

/* OpenSMTPD's delivery lines name our end of the connection. */
static void
sess_local_addr(struct mta_sess_state *st)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len = sizeof(ss);

	if (getsockname(bufferevent_getfd(st->bev), (struct sockaddr *)&ss,
	    &len) == 0)
		msd_strlcpy(st->local, ss_to_text(&ss), sizeof(st->local));
}

static void
sess_event(struct bufferevent *bev, short what, void *arg)
{
	struct mta_sess_state	*st = arg;
	const char		*e;

	if (what & BEV_EVENT_CONNECTED) {
		sess_local_addr(st);
		log_info("%016" PRIx64 " mta connected relay=\"%s\"", st->id,
		    st->relay);
		sess_bev_setup(st);
		if (st->r->scheme == RELAY_SMTPS) {
			st->state = MS_HANDSHAKE;
			sess_start_tls(st);
			/* sess_tls_ready moves on to the banner. */
		} else
			st->state = MS_BANNER;
		return;
	}
	if (st->tls != NULL && (e = smtp_tls_error(st->tls)) != NULL) {
		/* Opportunistic TLS that fails: this host again, in clear. */
		if (st->state == MS_HANDSHAKE && !tls_required(st) &&
		    !st->ready) {
			log_info("%016" PRIx64 " mta tls failed relay=\"%s\" "
			    "reason=\"%s\", retrying without TLS", st->id,
			    st->relay, e);
			bufferevent_free(st->bev);
			st->bev = NULL;
			st->tls = NULL;
			st->skip_tls = 1;
			sess_connect(st);
			return;
		}
		host_failed(st, "TLS: %s", e);
		return;
	}
	if (st->state == MS_QUIT) {
		sess_close(st, 0, "quit");
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		host_failed(st, "%s", st->state == MS_CONNECT ?
		    "connection timed out" : "timeout waiting for a reply");
	else if (what & BEV_EVENT_EOF)
		host_failed(st, "connection closed by %s", st->relay);
	else
		host_failed(st, "%s: %s", st->state == MS_CONNECT ?
		    "connect" : "connection",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

void
mta_session_start(struct mta_route *r)
{
	struct mta_sess_state	*st = xcalloc(1, sizeof(*st));

	st->s = xcalloc(1, sizeof(*st->s));
	st->s->route = r;
	st->s->st = st;
	st->r = r;
	st->id = ((uint64_t)msd_random() << 32) | ++next_id;
	if ((st->timer = evtimer_new(env.evbase, on_idle_timeout, st)) ==
	    NULL)
		fatalx("mta: evtimer_new");
	sess_order_hosts(st);
	sess_connect(st);
}
