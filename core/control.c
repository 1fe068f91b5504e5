/*
 * control.c - the control role: serves the control socket that smtpctl
 * will use.  The parent binds the socket; this role runs unprivileged and
 * checks each caller's credentials.  For now it answers only "status".
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

	if (env.privileged)
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

static void
ctl_on_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer	*in = bufferevent_get_input(bev);
	char		*line;
	size_t		 len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF))) {
		if (strcmp(line, "status") == 0)
			evbuffer_add_printf(bufferevent_get_output(bev),
			    "MTA running\n");
		else
			evbuffer_add_printf(bufferevent_get_output(bev),
			    "command not supported\n");
		free(line);
	}
	if (evbuffer_get_length(in) > 1024)
		bufferevent_free(bev);
}

static void
ctl_on_event(struct bufferevent *bev, short what, void *arg)
{
	bufferevent_free(bev);
}

static void
ctl_accept(evutil_socket_t fd, short ev, void *arg)
{
	struct bufferevent *bev;
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
	bufferevent_setcb(bev, ctl_on_read, NULL, ctl_on_event, NULL);
	bufferevent_enable(bev, EV_READ);
}

void
control_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	enum smtpd_role from = (enum smtpd_role)(intptr_t)arg;

	if (m->type == IMSG_NONE)
		fatalx("control: lost the %s process", role_name(from));
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
