/*
 * mda_lmtp.c - the `lmtp` delivery method (RFC 2033).
 *
 * deliver() runs in a delivery worker, as the delivery user, once per
 * recipient.  It connects to the destination of the action ("host:port",
 * "[address]:port", "host" for port 24, or the absolute path of a UNIX
 * socket), hands the message over for that one recipient and maps the
 * server's reply to the result: 2xx done, 4xx temporary, 5xx permanent.
 * Whatever keeps us from reading a well-formed reply (no connection, a
 * timeout, EOF, garbage) is temporary, so the message stays queued.
 *
 * One recipient per session keeps each envelope's result exact; the reply
 * LMTP gives per recipient after DATA is then simply the one reply.
 *
 * Uses only sdk/modsmtpd.h and libc.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "modsmtpd.h"

/* The build force-includes config.h; out of tree there is none. */
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

#define LM_PORT			"24"
#define LM_CONNECT_TIMEOUT	30		/* seconds, per address */
#define LM_CMD_TIMEOUT		120		/* the reply to a command */
#define LM_DATA_TIMEOUT		300		/* the reply after the message;
						   also each wait to send */
#define LM_QUIT_TIMEOUT		10		/* see lm_quit() */
#define LM_LINE_MAX		2048		/* one reply line, with CRLF */
#define LM_REPLY_LINES		128		/* lines in one reply */
#define LM_REPLY_MAX		512		/* reply text kept */
#define LM_CMD_MAX		1024		/* one command line */
#define LM_BUFSIZE		(64 * 1024)	/* send buffer, message reads */

#define LM_STR2(x)		#x
#define LM_STR(x)		LM_STR2(x)

struct lmtp {
	const struct msd_host	*host;
	msd_result		*res;
	const char		*dest;		/* as written: for messages */
	const char		*step;		/* NULL before the session */
	const char		*helo;
	const char		*sender;
	const char		*rcpt;
	int			 sock;
	int			 broken;	/* out of step: no QUIT */
	long long		 deadline;	/* of the reply being read */
	int			 wait_secs;	/* its timeout, for messages */
	int			 code;		/* of the last reply */
	char			 reply[LM_REPLY_MAX];	/* "NNN text..." */
	char			 in[LM_LINE_MAX];	/* read, not parsed */
	size_t			 inlen;
	char			 out[LM_BUFSIZE];	/* to send */
	size_t			 outlen;
	char			 chunk[LM_BUFSIZE];	/* of the message */
};

/* ------------------------------------------------------------ errors */

/*
 * Records the reason for the log and the bounce: "lmtp DEST STEP: TEXT"
 * during the session, "lmtp DEST: TEXT" before it.  Returns r.
 */
static int
lm_error(struct lmtp *lm, int r, const char *text)
{
	char	 buf[LM_REPLY_MAX + 256];
	int	 n;

	if (lm->step != NULL)
		n = snprintf(buf, sizeof(buf), "lmtp %s %s: %s", lm->dest,
		    lm->step, text);
	else
		n = snprintf(buf, sizeof(buf), "lmtp %s: %s", lm->dest, text);
	if (n < 0)
		buf[0] = '\0';
	lm->host->result_error(lm->res, buf);
	return r;
}

/* The connection can no longer be trusted to be in step: no QUIT. */
static int
lm_broken(struct lmtp *lm, const char *text)
{
	lm->broken = 1;
	return lm_error(lm, MSD_TEMPFAIL, text);
}

/* "what: strerror(errno)", temporary. */
static int
lm_syserr(struct lmtp *lm, const char *what)
{
	char	 buf[256];

	if (snprintf(buf, sizeof(buf), "%s: %s", what, strerror(errno)) < 0)
		buf[0] = '\0';
	return lm_broken(lm, buf);
}

/* ------------------------------------------------------------ the socket */

static long long
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events until deadline: 1 ready, 0 timed out, -1 error. */
static int
lm_wait(struct lmtp *lm, short events, long long deadline)
{
	struct pollfd	 pfd;
	long long	 left;
	int		 n;

	for (;;) {
		if ((left = deadline - now_ms()) <= 0)
			return 0;
		pfd.fd = lm->sock;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n == -1 && errno == EINTR)
			continue;
		if (n != 0)
			return n > 0 ? 1 : -1;
	}
}

/*
 * Connects lm->sock to one address; -1 with errno when that fails.  The
 * socket is non-blocking so that the connect and every later wait have a
 * timeout.
 */
static int
lm_connect_addr(struct lmtp *lm, int family, const struct sockaddr *sa,
    socklen_t salen)
{
	socklen_t	 len = sizeof(int);
	int		 err = 0, r, saved;

	lm->sock = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (lm->sock == -1)
		return -1;
	if (connect(lm->sock, sa, salen) == 0)
		return 0;
	if (errno == EINPROGRESS) {
		r = lm_wait(lm, POLLOUT,
		    now_ms() + LM_CONNECT_TIMEOUT * 1000LL);
		if (r == 0)
			errno = ETIMEDOUT;
		else if (r == 1 && getsockopt(lm->sock, SOL_SOCKET, SO_ERROR,
		    &err, &len) == 0) {
			if (err == 0)
				return 0;
			errno = err;
		}
	}
	saved = errno;
	close(lm->sock);
	lm->sock = -1;
	errno = saved;
	return -1;
}

/*
 * Splits "host:port", "[address]:port" ("[IPv6:address]" too) or "host"
 * (port 24).  An address with colons needs the brackets: "::1:24" could be
 * read either way.
 */
static int
lm_split(const char *dest, char *host, size_t hostsz, char *port,
    size_t portsz)
{
	const char	*h = dest, *p, *end;
	size_t		 hlen;

	if (dest[0] == '[') {
		if ((end = strchr(dest, ']')) == NULL)
			return -1;
		h = dest + 1;
		hlen = end - h;
		/* The address literal of RFC 5321, as mail.lmtp takes it. */
		if (hlen > 5 && strncasecmp(h, "IPv6:", 5) == 0) {
			h += 5;
			hlen -= 5;
		}
		p = end + 1;
		if (*p == ':')
			p++;
		else if (*p == '\0')
			p = LM_PORT;
		else
			return -1;
	} else if ((end = strchr(dest, ':')) != NULL) {
		if (strchr(end + 1, ':') != NULL)
			return -1;
		hlen = end - dest;
		p = end + 1;
	} else {
		hlen = strlen(dest);
		p = LM_PORT;
	}
	if (hlen == 0 || hlen >= hostsz || *p == '\0' || strlen(p) >= portsz)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, p, strlen(p) + 1);
	return 0;
}

/* Tries each address of the name in turn; the last error is reported. */
static int
lm_connect_inet(struct lmtp *lm)
{
	struct addrinfo	 hints, *res0, *ai;
	char		 host[NI_MAXHOST], port[NI_MAXSERV], buf[256];
	int		 e, saved;

	if (lm_split(lm->dest, host, sizeof(host), port, sizeof(port)) == -1)
		return lm_error(lm, MSD_TEMPFAIL, "bad destination: want "
		    "host:port, [address]:port, host or /path/of/socket");
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* No AI_ADDRCONFIG: it hides localhost on a host with only lo. */
	if ((e = getaddrinfo(host, port, &hints, &res0)) != 0) {
		if (snprintf(buf, sizeof(buf), "resolve: %s", e == EAI_SYSTEM ?
		    strerror(errno) : gai_strerror(e)) < 0)
			buf[0] = '\0';
		return lm_error(lm, MSD_TEMPFAIL, buf);
	}
	errno = EADDRNOTAVAIL;
	for (ai = res0; ai != NULL; ai = ai->ai_next)
		if (lm_connect_addr(lm, ai->ai_family, ai->ai_addr,
		    ai->ai_addrlen) == 0)
			break;
	saved = errno;
	freeaddrinfo(res0);
	errno = saved;
	if (lm->sock == -1)
		return lm_syserr(lm, "connect");
	return MSD_OK;
}

static int
lm_connect_unix(struct lmtp *lm)
{
	struct sockaddr_un	 sa_un;
	size_t			 len = strlen(lm->dest);

	memset(&sa_un, 0, sizeof(sa_un));
	sa_un.sun_family = AF_UNIX;
	if (len >= sizeof(sa_un.sun_path))
		return lm_error(lm, MSD_TEMPFAIL, "socket path too long");
	memcpy(sa_un.sun_path, lm->dest, len + 1);
	if (lm_connect_addr(lm, AF_UNIX, (struct sockaddr *)&sa_un,
	    sizeof(sa_un)) == -1)
		return lm_syserr(lm, "connect");
	return MSD_OK;
}

/* ------------------------------------------------------------ writing */

static int
lm_flush(struct lmtp *lm)
{
	size_t	 off = 0;
	ssize_t	 n;
	int	 r;

	while (off < lm->outlen) {
		/* MSG_NOSIGNAL: a server that went away is an EPIPE here. */
		n = send(lm->sock, lm->out + off, lm->outlen - off,
		    MSG_NOSIGNAL);
		if (n >= 0) {
			off += n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return lm_syserr(lm, "send");
		r = lm_wait(lm, POLLOUT, now_ms() + LM_DATA_TIMEOUT * 1000LL);
		if (r == 0)
			return lm_broken(lm, "send: the server took nothing "
			    "for " LM_STR(LM_DATA_TIMEOUT) " s");
		if (r == -1)
			return lm_syserr(lm, "poll");
	}
	lm->outlen = 0;
	return MSD_OK;
}

/* Buffers len bytes, sending whenever the buffer is full. */
static int
lm_put(struct lmtp *lm, const char *p, size_t len)
{
	size_t	 n;
	int	 r;

	while (len > 0) {
		if (lm->outlen == sizeof(lm->out) &&
		    (r = lm_flush(lm)) != MSD_OK)
			return r;
		n = sizeof(lm->out) - lm->outlen;
		if (n > len)
			n = len;
		memcpy(lm->out + lm->outlen, p, n);
		lm->outlen += n;
		p += n;
		len -= n;
	}
	return MSD_OK;
}

/*
 * LF lines to CRLF, a leading "." doubled (RFC 5321 4.5.2); *bol tells
 * whether p starts a line, across calls.
 */
static int
lm_stuff(struct lmtp *lm, const char *p, size_t len, int *bol)
{
	const char	*nl;
	int		 r;

	while (len > 0) {
		if (*bol && p[0] == '.' && (r = lm_put(lm, ".", 1)) != MSD_OK)
			return r;
		if ((nl = memchr(p, '\n', len)) == NULL) {
			*bol = 0;
			return lm_put(lm, p, len);
		}
		if ((r = lm_put(lm, p, nl - p)) != MSD_OK ||
		    (r = lm_put(lm, "\r\n", 2)) != MSD_OK)
			return r;
		*bol = 1;
		len -= nl + 1 - p;
		p = nl + 1;
	}
	return MSD_OK;
}

/* The message from fd's offset to EOF, then the end-of-data line. */
static int
lm_message(struct lmtp *lm, int fd)
{
	ssize_t	 n;
	int	 bol = 1, r;

	for (;;) {
		if ((n = read(fd, lm->chunk, sizeof(lm->chunk))) == -1) {
			if (errno == EINTR)
				continue;
			/* Never the final dot: closing drops the partial. */
			return lm_syserr(lm, "cannot read the message");
		}
		if (n == 0)
			break;
		if ((r = lm_stuff(lm, lm->chunk, n, &bol)) != MSD_OK)
			return r;
	}
	if (!bol && (r = lm_put(lm, "\r\n", 2)) != MSD_OK)
		return r;
	if ((r = lm_put(lm, ".\r\n", 3)) != MSD_OK)
		return r;
	return lm_flush(lm);
}

/* ------------------------------------------------------------ reading */

/*
 * One reply line without its CRLF into line (LM_LINE_MAX bytes), control
 * characters made '?' since the text ends up in the log.
 */
static int
lm_getline(struct lmtp *lm, char *line)
{
	char	 buf[64];
	char	*nl;
	size_t	 n, i;
	ssize_t	 got;
	int	 r;

	while ((nl = memchr(lm->in, '\n', lm->inlen)) == NULL) {
		if (lm->inlen == sizeof(lm->in))
			return lm_broken(lm, "reply line too long");
		if ((r = lm_wait(lm, POLLIN, lm->deadline)) == 0) {
			if (snprintf(buf, sizeof(buf), "no reply within %d s",
			    lm->wait_secs) < 0)
				buf[0] = '\0';
			return lm_broken(lm, buf);
		}
		if (r == -1)
			return lm_syserr(lm, "poll");
		got = recv(lm->sock, lm->in + lm->inlen,
		    sizeof(lm->in) - lm->inlen, 0);
		if (got == -1 && (errno == EINTR || errno == EAGAIN ||
		    errno == EWOULDBLOCK))
			continue;
		if (got == -1)
			return lm_syserr(lm, "recv");
		if (got == 0)
			return lm_broken(lm, "connection closed by the server");
		lm->inlen += got;
	}
	n = nl - lm->in;
	if (n > 0 && lm->in[n - 1] == '\r')
		n--;
	for (i = 0; i < n; i++) {
		unsigned char c = lm->in[i];

		line[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	line[n] = '\0';
	n = nl + 1 - lm->in;
	lm->inlen -= n;
	memmove(lm->in, nl + 1, lm->inlen);
	return MSD_OK;
}

/* The code of "NNN", "NNN text" or "NNN-text", else -1. */
static int
reply_code(const char *line)
{
	if (line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '9' || line[2] < '0' || line[2] > '9')
		return -1;
	if (line[3] != '\0' && line[3] != ' ' && line[3] != '-')
		return -1;
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + line[2] - '0';
}

/* Appends " text" to the reply kept; the excess is cut. */
static void
reply_append(struct lmtp *lm, size_t *len, const char *text)
{
	size_t	 room = sizeof(lm->reply) - *len;
	int	 n;

	if (text[0] == '\0' || room <= 1)
		return;
	if ((n = snprintf(lm->reply + *len, room, " %s", text)) < 0)
		return;
	*len += (size_t)n < room ? (size_t)n : room - 1;
}

/*
 * Reads one reply, "NNN-" lines continuing it, within secs.  Its code goes
 * to lm->code and "NNN text text..." to lm->reply.
 */
static int
lm_reply(struct lmtp *lm, int secs)
{
	char	 line[LM_LINE_MAX];
	size_t	 len = 0;
	int	 i, r, code;

	lm->deadline = now_ms() + secs * 1000LL;
	lm->wait_secs = secs;
	for (i = 0; i < LM_REPLY_LINES; i++) {
		if ((r = lm_getline(lm, line)) != MSD_OK)
			return r;
		code = reply_code(line);
		if (code == -1 || (i > 0 && code != lm->code)) {
			/* Cut to what the log keeps anyway. */
			if (snprintf(lm->reply, sizeof(lm->reply),
			    "malformed reply: %s", line) < 0)
				lm->reply[0] = '\0';
			return lm_broken(lm, lm->reply);
		}
		if (i == 0) {
			lm->code = code;
			len = (size_t)snprintf(lm->reply, sizeof(lm->reply),
			    "%d", code);
		}
		reply_append(lm, &len, line[3] != '\0' ? line + 4 : "");
		if (line[3] != '-')
			return MSD_OK;
	}
	return lm_broken(lm, "reply has too many lines");
}

/* The last reply against the class expected: 5xx is permanent. */
static int
lm_expect(struct lmtp *lm, int want)
{
	int	 kind = lm->code / 100;

	if (kind == want)
		return MSD_OK;
	return lm_error(lm, kind == 5 ? MSD_PERMFAIL : MSD_TEMPFAIL,
	    lm->reply);
}

/* ------------------------------------------------------------ session */

static int
lm_command(struct lmtp *lm, const char *step, const char *line, int want)
{
	int	 r;

	lm->step = step;
	if ((r = lm_put(lm, line, strlen(line))) != MSD_OK ||
	    (r = lm_put(lm, "\r\n", 2)) != MSD_OK ||
	    (r = lm_flush(lm)) != MSD_OK ||
	    (r = lm_reply(lm, LM_CMD_TIMEOUT)) != MSD_OK)
		return r;
	return lm_expect(lm, want);
}

/* "<pre><arg>>" into buf; a too long line is permanent. */
static int
lm_line(struct lmtp *lm, char *buf, size_t size, const char *pre,
    const char *arg)
{
	int	 n;

	n = snprintf(buf, size, "%s<%s>", pre, arg);
	if (n < 0 || (size_t)n >= size)
		return lm_error(lm, MSD_PERMFAIL, "address too long");
	return MSD_OK;
}

static int
lm_session(struct lmtp *lm, int fd)
{
	char	 line[LM_CMD_MAX];
	int	 r;

	lm->step = "greeting";
	if ((r = lm_reply(lm, LM_CMD_TIMEOUT)) != MSD_OK ||
	    (r = lm_expect(lm, 2)) != MSD_OK)
		return r;
	if (snprintf(line, sizeof(line), "LHLO %s", lm->helo) >=
	    (int)sizeof(line))
		return lm_error(lm, MSD_TEMPFAIL, "host name too long");
	if ((r = lm_command(lm, "LHLO", line, 2)) != MSD_OK)
		return r;
	if ((r = lm_line(lm, line, sizeof(line), "MAIL FROM:",
	    lm->sender)) != MSD_OK ||
	    (r = lm_command(lm, "MAIL FROM", line, 2)) != MSD_OK)
		return r;
	if ((r = lm_line(lm, line, sizeof(line), "RCPT TO:",
	    lm->rcpt)) != MSD_OK ||
	    (r = lm_command(lm, "RCPT TO", line, 2)) != MSD_OK)
		return r;
	if ((r = lm_command(lm, "DATA", "DATA", 3)) != MSD_OK ||
	    (r = lm_message(lm, fd)) != MSD_OK)
		return r;
	lm->step = "end of DATA";
	if ((r = lm_reply(lm, LM_DATA_TIMEOUT)) != MSD_OK)
		return r;
	return lm_expect(lm, 2);
}

/*
 * Ends a session that is in step.  The result is already known, so the
 * wait for the 221 is short: it only lets the server log a clean end,
 * and the worker has other deliveries to make.
 */
static void
lm_quit(struct lmtp *lm)
{
	char	 buf[512];

	if (send(lm->sock, "QUIT\r\n", 6, MSG_NOSIGNAL) != 6)
		return;
	if (lm_wait(lm, POLLIN, now_ms() + LM_QUIT_TIMEOUT * 1000LL) == 1)
		(void)recv(lm->sock, buf, sizeof(buf), 0);
}

/* 0 when s holds a control character: it would end the command line. */
static int
clean(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* The envelope fields the session uses, checked before connecting. */
static int
lm_args(struct lmtp *lm, const msd_envelope *ev)
{
	const struct msd_host	*host = lm->host;

	lm->dest = host->env_get(ev, MSD_ENV_MDA_ARG);
	if (lm->dest == NULL || lm->dest[0] == '\0') {
		host->result_error(lm->res, "lmtp: no destination");
		return MSD_TEMPFAIL;
	}
	lm->helo = host->env_get(ev, MSD_ENV_HOSTNAME);
	if (lm->helo == NULL || lm->helo[0] == '\0')
		lm->helo = "localhost";
	lm->sender = host->env_get(ev, MSD_ENV_SENDER);
	if (lm->sender == NULL)
		lm->sender = "";
	/* Computed by the host: empty means it does not know lmtp. */
	lm->rcpt = host->env_get(ev, MSD_ENV_MDA_RCPT);
	if (lm->rcpt == NULL || lm->rcpt[0] == '\0')
		return lm_error(lm, MSD_TEMPFAIL, "no recipient address");
	if (!clean(lm->helo))
		return lm_error(lm, MSD_TEMPFAIL, "bad host name");
	if (!clean(lm->sender) || !clean(lm->rcpt))
		return lm_error(lm, MSD_PERMFAIL, "control character in "
		    "an address");
	return MSD_OK;
}

static int
lm_deliver(const struct msd_host *host, int fd, const msd_envelope *ev,
    msd_result *res)
{
	struct lmtp	*lm;
	int		 r;

	/* Heap: the buffers are too big for a worker's stack frame. */
	if ((lm = calloc(1, sizeof(*lm))) == NULL) {
		host->result_error(res, "lmtp: out of memory");
		return MSD_TEMPFAIL;
	}
	lm->host = host;
	lm->res = res;
	lm->sock = -1;
	r = lm_args(lm, ev);
	if (r == MSD_OK)
		r = lm->dest[0] == '/' ? lm_connect_unix(lm) :
		    lm_connect_inet(lm);
	if (r == MSD_OK)
		r = lm_session(lm, fd);
	if (lm->sock != -1) {
		if (!lm->broken)
			lm_quit(lm);
		close(lm->sock);
	}
	free(lm);
	return r;
}

static const struct msd_mda_ops lmtp_ops = {
	.size = MSD_MDA_OPS_SIZE,
	.deliver = lm_deliver,
};

static const struct msd_module lmtp_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD,
	.kind = MSD_KIND_MDA,
	.name = "lmtp",
	.version = PACKAGE_VERSION,
	.ops = &lmtp_ops,
	.description = "deliver to an LMTP server (RFC 2033), one recipient "
	    "per session",
};

MSD_MODULE(lmtp)
{
	return &lmtp_module;
}
