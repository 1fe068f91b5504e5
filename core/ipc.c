/*
 * ipc.c - framed, typed messages between the roles over socketpairs.
 *
 * Runs in every role.  A frame is struct ipc_hdr followed by hdr.len payload
 * bytes; a frame flagged IPC_F_FD carries one descriptor, sent with
 * SCM_RIGHTS on the frame's first byte.  Payload fields are tagged with
 * their length so the readers can check every access: a peer that sends a
 * malformed frame is a bug in our own daemon, so it is fatal, never
 * undefined behaviour.  A closed channel calls the handler with IMSG_NONE.
 */
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

#define IPC_READ_CHUNK	65536
#define IPC_MAX_FDS	64		/* received but not yet consumed */

struct ipc_frame {
	TAILQ_ENTRY(ipc_frame)	 entry;
	uint8_t			*buf;
	size_t			 len;
	size_t			 off;		/* bytes already sent */
	int			 fd;		/* closed once sent */
};
TAILQ_HEAD(framelist, ipc_frame);

struct ipc_out {
	struct ipc	*ipc;
	uint8_t		*buf;
	size_t		 len;
	size_t		 cap;
};

struct ipc {
	int		 fd;
	char		*peer;
	ipc_handler	*handler;
	void		*arg;
	struct event	*ev_read;
	struct event	*ev_write;
	uint8_t		*rbuf;
	size_t		 rlen;
	size_t		 rcap;
	int		 fds[IPC_MAX_FDS];
	size_t		 nfds;
	struct framelist out;
	int		 dead;
};

/* Field tags: a reader that expects one type and finds another is a bug. */
#define T_U32	1
#define T_U64	2
#define T_STR	3
#define T_NULL	4
#define T_DATA	5

static void	ipc_on_read(evutil_socket_t, short, void *);
static void	ipc_on_write(evutil_socket_t, short, void *);

static const char *ipc_names[IMSG_MAX] = {
	[IMSG_NONE] = "NONE",
	[IMSG_LKA_RCPT] = "LKA_RCPT",
	[IMSG_LKA_RCPT_RESULT] = "LKA_RCPT_RESULT",
	[IMSG_LKA_FORWARD] = "LKA_FORWARD",
	[IMSG_LKA_FORWARD_RESULT] = "LKA_FORWARD_RESULT",
	[IMSG_LKA_UPDATE_TABLES] = "LKA_UPDATE_TABLES",
	[IMSG_TBL_QUERY] = "TBL_QUERY",
	[IMSG_TBL_ANSWER] = "TBL_ANSWER",
	[IMSG_TBL_UPDATE] = "TBL_UPDATE",
	[IMSG_AUTH] = "AUTH",
	[IMSG_AUTH_RESULT] = "AUTH_RESULT",
	[IMSG_AUTH_SYSTEM] = "AUTH_SYSTEM",
	[IMSG_AUTH_SYSTEM_RESULT] = "AUTH_SYSTEM_RESULT",
	[IMSG_AUTH_SENDERS] = "AUTH_SENDERS",
	[IMSG_LKA_HOSTNAME] = "LKA_HOSTNAME",
	[IMSG_LKA_HOSTNAME_RESULT] = "LKA_HOSTNAME_RESULT",
	[IMSG_QUEUE_CREATE] = "QUEUE_CREATE",
	[IMSG_QUEUE_CREATE_RESULT] = "QUEUE_CREATE_RESULT",
	[IMSG_QUEUE_COMMIT] = "QUEUE_COMMIT",
	[IMSG_QUEUE_ENVELOPES] = "QUEUE_ENVELOPES",
	[IMSG_QUEUE_COMMIT_RESULT] = "QUEUE_COMMIT_RESULT",
	[IMSG_QUEUE_ROLLBACK] = "QUEUE_ROLLBACK",
	[IMSG_MDA_DELIVER] = "MDA_DELIVER",
	[IMSG_MDA_RESULT] = "MDA_RESULT",
	[IMSG_MDA_WORK] = "MDA_WORK",
	[IMSG_CTL_SHUTDOWN] = "CTL_SHUTDOWN",
	[IMSG_CTL_LIST] = "CTL_LIST",
	[IMSG_CTL_LIST_DATA] = "CTL_LIST_DATA",
	[IMSG_CTL_LIST_END] = "CTL_LIST_END",
	[IMSG_CTL_UPDATE_TABLE] = "CTL_UPDATE_TABLE",
	[IMSG_CTL_UPDATE_RESULT] = "CTL_UPDATE_RESULT",
	[IMSG_FILTER_PROC] = "FILTER_PROC",
	[IMSG_FILTER_RESTART] = "FILTER_RESTART",
	[IMSG_FILTER_BEGIN] = "FILTER_BEGIN",
	[IMSG_FILTER_REPORT] = "FILTER_REPORT",
	[IMSG_FILTER_PHASE] = "FILTER_PHASE",
	[IMSG_FILTER_DATA] = "FILTER_DATA",
	[IMSG_FILTER_END] = "FILTER_END",
	[IMSG_FILTER_RESULT] = "FILTER_RESULT",
	[IMSG_MTA_ROUTE] = "MTA_ROUTE",
	[IMSG_MTA_ROUTE_RESULT] = "MTA_ROUTE_RESULT",
	[IMSG_MTA_DELIVER] = "MTA_DELIVER",
	[IMSG_MTA_RESULT] = "MTA_RESULT",
	[IMSG_DNS_PTR] = "DNS_PTR",
	[IMSG_DNS_PTR_RESULT] = "DNS_PTR_RESULT",
};

const char *
ipc_type_name(uint32_t type)
{
	if (type < IMSG_MAX && ipc_names[type])
		return ipc_names[type];
	return "UNKNOWN";
}

struct ipc *
ipc_new(int fd, const char *peer, ipc_handler *handler, void *arg)
{
	struct ipc	*ipc = xcalloc(1, sizeof(*ipc));
	int		 fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		fatal("ipc: fcntl");
	ipc->fd = fd;
	ipc->peer = xstrdup(peer);
	ipc->handler = handler;
	ipc->arg = arg;
	TAILQ_INIT(&ipc->out);
	if (env.evbase) {
		ipc->ev_read = event_new(env.evbase, fd, EV_READ | EV_PERSIST,
		    ipc_on_read, ipc);
		ipc->ev_write = event_new(env.evbase, fd, EV_WRITE,
		    ipc_on_write, ipc);
		if (ipc->ev_read == NULL || ipc->ev_write == NULL)
			fatalx("ipc: event_new");
		event_add(ipc->ev_read, NULL);
	}
	return ipc;
}

int
ipc_fd(struct ipc *ipc)
{
	return ipc->fd;
}

const char *
ipc_peer(struct ipc *ipc)
{
	return ipc->peer;
}

void
ipc_free(struct ipc *ipc)
{
	struct ipc_frame *f;
	size_t		 i;

	if (ipc == NULL)
		return;
	if (ipc->ev_read)
		event_free(ipc->ev_read);
	if (ipc->ev_write)
		event_free(ipc->ev_write);
	while ((f = TAILQ_FIRST(&ipc->out))) {
		TAILQ_REMOVE(&ipc->out, f, entry);
		if (f->fd != -1)
			close(f->fd);
		free(f->buf);
		free(f);
	}
	for (i = 0; i < ipc->nfds; i++)
		close(ipc->fds[i]);
	close(ipc->fd);
	free(ipc->rbuf);
	free(ipc->peer);
	free(ipc);
}

/* ----------------------------------------------------------- building */

static void
out_reserve(struct ipc_out *o, size_t n)
{
	if (n > IPC_MAX_MSG || o->len > IPC_MAX_MSG - n)
		fatalx("ipc: message to %s too large", o->ipc->peer);
	if (o->len + n <= o->cap)
		return;
	while (o->cap < o->len + n)
		o->cap = o->cap ? o->cap * 2 : 256;
	o->buf = xreallocarray(o->buf, 1, o->cap);
}

static void
out_bytes(struct ipc_out *o, const void *p, size_t n)
{
	out_reserve(o, n);
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

struct ipc_out *
ipc_begin(struct ipc *ipc, uint32_t type)
{
	struct ipc_out	*o = xcalloc(1, sizeof(*o));
	struct ipc_hdr	 hdr;

	o->ipc = ipc;
	memset(&hdr, 0, sizeof(hdr));
	hdr.type = type;
	hdr.pid = getpid();
	out_bytes(o, &hdr, sizeof(hdr));
	return o;
}

size_t
ipc_out_len(const struct ipc_out *o)
{
	return o->len;
}

void
ipc_put_u32(struct ipc_out *o, uint32_t v)
{
	uint8_t	 t = T_U32;

	out_bytes(o, &t, 1);
	out_bytes(o, &v, sizeof(v));
}

void
ipc_put_u64(struct ipc_out *o, uint64_t v)
{
	uint8_t	 t = T_U64;

	out_bytes(o, &t, 1);
	out_bytes(o, &v, sizeof(v));
}

static void
put_tagged(struct ipc_out *o, uint8_t t, const void *p, size_t n)
{
	uint32_t len = n;

	if (n > IPC_MAX_MSG)
		fatalx("ipc: field too large");
	out_bytes(o, &t, 1);
	out_bytes(o, &len, sizeof(len));
	out_bytes(o, p, n);
}

void
ipc_put_str(struct ipc_out *o, const char *s)
{
	uint8_t	 t = T_NULL;

	if (s == NULL) {
		out_bytes(o, &t, 1);
		return;
	}
	/* The NUL goes along so a reader can hand out the bytes in place. */
	put_tagged(o, T_STR, s, strlen(s) + 1);
}

void
ipc_put_data(struct ipc_out *o, const void *p, size_t n)
{
	put_tagged(o, T_DATA, p, n);
}

void
ipc_end(struct ipc_out *o, int fd)
{
	struct ipc	*ipc = o->ipc;
	struct ipc_frame *f;
	struct ipc_hdr	 hdr;

	memcpy(&hdr, o->buf, sizeof(hdr));
	hdr.len = o->len - sizeof(hdr);
	hdr.flags = fd != -1 ? IPC_F_FD : 0;
	memcpy(o->buf, &hdr, sizeof(hdr));
	if (ipc->dead) {
		if (fd != -1)
			close(fd);
		free(o->buf);
		free(o);
		return;
	}
	f = xcalloc(1, sizeof(*f));
	f->buf = o->buf;
	f->len = o->len;
	f->fd = fd;
	free(o);
	TAILQ_INSERT_TAIL(&ipc->out, f, entry);
	if (ipc->ev_write && !event_pending(ipc->ev_write, EV_WRITE, NULL))
		event_add(ipc->ev_write, NULL);
}

/* ------------------------------------------------------------ sending */

static int
send_frame(struct ipc *ipc, struct ipc_frame *f)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	ssize_t		 n;

	memset(&msg, 0, sizeof(msg));
	iov.iov_base = f->buf + f->off;
	iov.iov_len = f->len - f->off;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (f->off == 0 && f->fd != -1) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		msg.msg_control = cm.buf;
		msg.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_len = CMSG_LEN(sizeof(int));
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		memcpy(CMSG_DATA(c), &f->fd, sizeof(int));
	}
	n = sendmsg(ipc->fd, &msg, MSG_NOSIGNAL);
	if (n == -1)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	if (f->fd != -1) {
		close(f->fd);
		f->fd = -1;
	}
	f->off += n;
	return 1;
}

static void
ipc_on_write(evutil_socket_t fd, short ev, void *arg)
{
	struct ipc	*ipc = arg;
	struct ipc_frame *f;
	int		 r;

	while ((f = TAILQ_FIRST(&ipc->out))) {
		if ((r = send_frame(ipc, f)) == -1) {
			log_warn("ipc: send to %s", ipc->peer);
			return;		/* the read side reports the loss */
		}
		if (r == 0 || f->off < f->len)
			break;
		TAILQ_REMOVE(&ipc->out, f, entry);
		free(f->buf);
		free(f);
	}
	if (!TAILQ_EMPTY(&ipc->out))
		event_add(ipc->ev_write, NULL);
}

/* Writes every queued frame now, blocking: used on the way out. */
int
ipc_flush_sync(struct ipc *ipc)
{
	struct ipc_frame *f;
	int		 fl = fcntl(ipc->fd, F_GETFL);

	if (fl == -1 || fcntl(ipc->fd, F_SETFL, fl & ~O_NONBLOCK) == -1)
		return -1;
	while ((f = TAILQ_FIRST(&ipc->out))) {
		if (send_frame(ipc, f) == -1)
			break;
		if (f->off < f->len)
			continue;
		TAILQ_REMOVE(&ipc->out, f, entry);
		free(f->buf);
		free(f);
	}
	fcntl(ipc->fd, F_SETFL, fl);
	return TAILQ_EMPTY(&ipc->out) ? 0 : -1;
}

/* ---------------------------------------------------------- receiving */

int
ipc_decode(const uint8_t *buf, size_t len, struct ipc_hdr *hdr)
{
	if (len < sizeof(*hdr))
		return 0;
	memcpy(hdr, buf, sizeof(*hdr));
	if (hdr->len > IPC_MAX_MSG || hdr->type == IMSG_NONE ||
	    hdr->type >= IMSG_MAX || (hdr->flags & ~IPC_F_FD))
		return -1;
	if (len - sizeof(*hdr) < hdr->len)
		return 0;
	return 1;
}

static void
take_fds(struct ipc *ipc, struct msghdr *msg)
{
	struct cmsghdr	*c;

	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t	 i, n;
		int	 fd;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (ipc->nfds == IPC_MAX_FDS)
				fatalx("ipc: too many descriptors from %s",
				    ipc->peer);
			ipc->fds[ipc->nfds++] = fd;
		}
	}
}

static ssize_t
ipc_recv(struct ipc *ipc)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 8)];
	} cm;
	ssize_t		 n;

	if (ipc->rcap - ipc->rlen < IPC_READ_CHUNK) {
		ipc->rcap = ipc->rlen + IPC_READ_CHUNK;
		ipc->rbuf = xreallocarray(ipc->rbuf, 1, ipc->rcap);
	}
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = ipc->rbuf + ipc->rlen;
	iov.iov_len = ipc->rcap - ipc->rlen;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof(cm.buf);
	n = recvmsg(ipc->fd, &msg, MSG_CMSG_CLOEXEC);
	if (n > 0) {
		if (msg.msg_flags & MSG_CTRUNC)
			fatalx("ipc: descriptors from %s truncated", ipc->peer);
		take_fds(ipc, &msg);
		ipc->rlen += n;
	}
	return n;
}

static int
pop_fd(struct ipc *ipc)
{
	int	 fd;

	if (ipc->nfds == 0)
		fatalx("ipc: %s sent a frame without its descriptor", ipc->peer);
	fd = ipc->fds[0];
	memmove(ipc->fds, ipc->fds + 1, --ipc->nfds * sizeof(int));
	return fd;
}

static void
dispatch_frames(struct ipc *ipc)
{
	struct ipc_hdr	 hdr;
	struct ipc_msg	 m;
	size_t		 off = 0;
	int		 r;

	while ((r = ipc_decode(ipc->rbuf + off, ipc->rlen - off, &hdr)) == 1) {
		memset(&m, 0, sizeof(m));
		m.type = hdr.type;
		m.data = ipc->rbuf + off + sizeof(hdr);
		m.len = hdr.len;
		m.fd = (hdr.flags & IPC_F_FD) ? pop_fd(ipc) : -1;
		off += sizeof(hdr) + hdr.len;
		ipc->handler(ipc, &m, ipc->arg);
		if (ipc->dead)
			return;
	}
	if (r == -1)
		fatalx("ipc: malformed frame from %s", ipc->peer);
	memmove(ipc->rbuf, ipc->rbuf + off, ipc->rlen - off);
	ipc->rlen -= off;
	/* Give back memory after a burst of large frames. */
	if (ipc->rlen == 0 && ipc->rcap > 4 * IPC_READ_CHUNK) {
		free(ipc->rbuf);
		ipc->rbuf = NULL;
		ipc->rcap = 0;
	}
}

static void
ipc_on_read(evutil_socket_t fd, short ev, void *arg)
{
	struct ipc	*ipc = arg;
	struct ipc_msg	 m;
	ssize_t		 n;

	n = ipc_recv(ipc);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ipc->dead = 1;
		event_del(ipc->ev_read);
		memset(&m, 0, sizeof(m));
		m.type = IMSG_NONE;
		m.fd = -1;
		ipc->handler(ipc, &m, ipc->arg);
		return;
	}
	dispatch_frames(ipc);
}

/* ------------------------------------------------------------ readers */

static void
need(struct ipc_msg *m, size_t n, const char *what)
{
	if (m->len - m->off < n)
		fatalx("ipc: truncated %s in %s", what, ipc_type_name(m->type));
}

static uint8_t
get_tag(struct ipc_msg *m)
{
	need(m, 1, "tag");
	return m->data[m->off++];
}

static void
expect_tag(struct ipc_msg *m, uint8_t want, const char *what)
{
	uint8_t	 t = get_tag(m);

	if (t != want)
		fatalx("ipc: expected %s in %s, found tag %u", what,
		    ipc_type_name(m->type), t);
}

uint32_t
ipc_get_u32(struct ipc_msg *m)
{
	uint32_t v;

	expect_tag(m, T_U32, "u32");
	need(m, sizeof(v), "u32");
	memcpy(&v, m->data + m->off, sizeof(v));
	m->off += sizeof(v);
	return v;
}

uint64_t
ipc_get_u64(struct ipc_msg *m)
{
	uint64_t v;

	expect_tag(m, T_U64, "u64");
	need(m, sizeof(v), "u64");
	memcpy(&v, m->data + m->off, sizeof(v));
	m->off += sizeof(v);
	return v;
}

static const void *
get_tagged(struct ipc_msg *m, size_t *len)
{
	uint32_t n;
	const void *p;

	need(m, sizeof(n), "length");
	memcpy(&n, m->data + m->off, sizeof(n));
	m->off += sizeof(n);
	need(m, n, "field");
	p = m->data + m->off;
	m->off += n;
	*len = n;
	return p;
}

const char *
ipc_get_str(struct ipc_msg *m)
{
	const char *s;
	size_t	 n;
	uint8_t	 t = get_tag(m);

	if (t == T_NULL)
		return NULL;
	if (t != T_STR)
		fatalx("ipc: expected string in %s", ipc_type_name(m->type));
	s = get_tagged(m, &n);
	if (n == 0 || s[n - 1] != '\0' || memchr(s, '\0', n - 1))
		fatalx("ipc: bad string in %s", ipc_type_name(m->type));
	return s;
}

const void *
ipc_get_data(struct ipc_msg *m, size_t *len)
{
	expect_tag(m, T_DATA, "data");
	return get_tagged(m, len);
}

int
ipc_get_more(const struct ipc_msg *m)
{
	return m->off < m->len;
}

void
ipc_get_end(struct ipc_msg *m)
{
	if (m->off != m->len)
		fatalx("ipc: %zu trailing bytes in %s", m->len - m->off,
		    ipc_type_name(m->type));
}
