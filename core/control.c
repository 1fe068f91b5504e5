/*
 * control.c - the control role: serves the control socket that smtpctl
 * will use.  The parent binds the socket; this role runs unprivileged and
 * checks each caller's credentials.  It answers "status", and "show
 * queue" (mailq) and "update table NAME" (smtpctl) to root and to the
 * user the daemon runs as.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "smtpd.h"

int		 control_fd = -1;
static char	 control_path[PATH_MAX];

/* Bound by the parent, before privileges are dropped. */
int
control_socket_bind(void)
{
	struct sockaddr_un sun;
	mode_t		 old;
	int		 fd;

	/*
	 * root's daemon on the system spool answers where smtpctl looks
	 * first; one started on a spool of its own (a test, a second
	 * instance) keeps its socket there so the two never collide.
	 */
	if (env.privileged && strcmp(env.spool, SPOOLDIR) == 0)
		msd_strlcpy(control_path, "/run/smtpd.sock",
		    sizeof(control_path));
	else if ((size_t)snprintf(control_path, sizeof(control_path),
	    "%s/smtpd.sock", env.spool) >= sizeof(control_path))
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (msd_strlcpy(sun.sun_path, control_path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		log_warnx("control socket path %s too long", control_path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	unlink(control_path);
	old = umask(0111);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    listen(fd, 16) == -1) {
		log_warn("control socket %s", control_path);
		umask(old);
		close(fd);
		return -1;
	}
	umask(old);
	control_fd = fd;
	return 0;
}

/* One client; the queue's answers find it by id. */
struct ctl_conn {
	struct ctl_conn		*next;
	uint64_t		 id;
	uid_t			 uid;
	struct bufferevent	*bev;
	int			 listing;	/* waiting for the queue */
	int			 closing;	/* free once the list ends */
};

static struct ctl_conn	*conns;
static uint64_t		 next_conn_id;

static void
conn_free(struct ctl_conn *c)
{
	struct ctl_conn	**p;

	if (c->listing) {
		/* The queue still answers; drop the answer then. */
		c->closing = 1;
		if (c->bev) {
			bufferevent_free(c->bev);
			c->bev = NULL;
		}
		return;
	}
	for (p = &conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	if (c->bev)
		bufferevent_free(c->bev);
	free(c);
}

static void
ctl_show_queue(struct ctl_conn *c)
{
	struct ipc_out	*o;

	if (c->uid != 0 && c->uid != getuid()) {
		evbuffer_add_printf(bufferevent_get_output(c->bev),
		    "permission denied\n");
		return;
	}
	if (c->listing)
		return;
	c->listing = 1;
	o = ipc_begin(env.peer[ROLE_QUEUE], IMSG_CTL_LIST);
	ipc_put_u64(o, c->id);
	ipc_end(o, -1);
}

/* Root and the daemon's user may: the answer comes from the parent. */
static void
ctl_update_table(struct ctl_conn *c, const char *name)
{
	struct ipc_out	*o;

	if (c->uid != 0 && c->uid != getuid()) {
		evbuffer_add_printf(bufferevent_get_output(c->bev),
		    "permission denied\n");
		return;
	}
	o = ipc_begin(env.peer[ROLE_PARENT], IMSG_CTL_UPDATE_TABLE);
	ipc_put_u64(o, c->id);
	ipc_put_str(o, name);
	ipc_end(o, -1);
}

static void
ctl_update_answer(struct ipc_msg *m)
{
	struct ctl_conn	*c;
	uint64_t	 id = ipc_get_u64(m);
	const char	*answer = ipc_get_str(m);

	ipc_get_end(m);
	for (c = conns; c; c = c->next)
		if (c->id == id && c->bev != NULL)
			evbuffer_add_printf(bufferevent_get_output(c->bev),
			    "%s\n", answer ? answer : "failed");
}

static void
ctl_on_read(struct bufferevent *bev, void *arg)
{
	struct ctl_conn	*c = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	char		*line;
	size_t		 len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF))) {
		if (strcmp(line, "status") == 0)
			evbuffer_add_printf(bufferevent_get_output(bev),
			    "MTA running\n");
		else if (strcmp(line, "show queue") == 0)
			ctl_show_queue(c);
		else if (strncmp(line, "update table ", 13) == 0 &&
		    line[13] != '\0')
			ctl_update_table(c, line + 13);
		else
			evbuffer_add_printf(bufferevent_get_output(bev),
			    "command not supported\n");
		free(line);
	}
	if (evbuffer_get_length(in) > 1024)
		conn_free(c);
}

static void
ctl_on_event(struct bufferevent *bev, short what, void *arg)
{
	conn_free(arg);
}

/* Answers from the queue: lines, then the end ("." alone, as SMTP). */
static void
ctl_list_answer(struct ipc_msg *m)
{
	struct ctl_conn	*c;
	uint64_t	 id = ipc_get_u64(m);
	const char	*line;

	for (c = conns; c; c = c->next)
		if (c->id == id)
			break;
	if (c == NULL || !c->listing)
		fatalx("control: queue list for no client");
	if (m->type == IMSG_CTL_LIST_DATA) {
		while (ipc_get_more(m))
			if ((line = ipc_get_str(m)) != NULL && c->bev)
				evbuffer_add_printf(bufferevent_get_output(
				    c->bev), "%s\n", line);
		return;
	}
	ipc_get_end(m);
	c->listing = 0;
	if (c->closing)
		conn_free(c);
	else
		evbuffer_add_printf(bufferevent_get_output(c->bev), ".\n");
}

static void
ctl_accept(evutil_socket_t fd, short ev, void *arg)
{
	struct bufferevent *bev;
	struct ctl_conn	*c;
	struct ucred	 cred;
	socklen_t	 len = sizeof(cred);
	int		 s;

	if ((s = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) == -1)
		return;
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		close(s);
		return;
	}
	log_debug("control: connection from uid %u", (unsigned)cred.uid);
	bev = bufferevent_socket_new(env.evbase, s, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(s);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->id = ++next_conn_id;
	c->uid = cred.uid;
	c->bev = bev;
	c->next = conns;
	conns = c;
	bufferevent_setcb(bev, ctl_on_read, NULL, ctl_on_event, c);
	bufferevent_enable(bev, EV_READ);
}

void
control_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	enum smtpd_role from = (enum smtpd_role)(intptr_t)arg;

	if (m->type == IMSG_NONE)
		fatalx("control: lost the %s process", role_name(from));
	if (from == ROLE_PARENT && m->type == IMSG_CTL_UPDATE_RESULT) {
		ctl_update_answer(m);
		return;
	}
	if (from == ROLE_QUEUE && (m->type == IMSG_CTL_LIST_DATA ||
	    m->type == IMSG_CTL_LIST_END)) {
		ctl_list_answer(m);
		return;
	}
	fatalx("control: unexpected %s from %s", ipc_type_name(m->type),
	    role_name(from));
}

void
control_main(void)
{
	struct event	*ev;

	if (control_fd == -1)
		return;
	ev = event_new(env.evbase, control_fd, EV_READ | EV_PERSIST,
	    ctl_accept, NULL);
	if (ev == NULL)
		fatalx("control: event_new");
	event_add(ev, NULL);
}
