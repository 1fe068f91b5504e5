/*
 * smtp.c - the smtp role: runs as the unprivileged user, chrooted, accepts
 * connections on the listening sockets the parent bound and hands each to
 * smtp_session.c.  It never touches the spool: message descriptors come
 * from the queue role.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"

/* Descriptors kept in reserve so accept() failing on EMFILE can recover. */
static struct event	*accept_pause;

static void	smtp_accept(evutil_socket_t, short, void *);

static void
smtp_resume_accept(evutil_socket_t fd, short ev, void *arg)
{
	struct listener *l;

	TAILQ_FOREACH(l, &env.conf->listeners, entry)
		if (l->ev)
			event_add((struct event *)l->ev, NULL);
}

static void
smtp_accept(evutil_socket_t fd, short ev, void *arg)
{
	struct listener	*l = arg;
	int		 s;

	for (;;) {
		s = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (s == -1) {
			if (errno == EMFILE || errno == ENFILE) {
				struct timeval tv = { 1, 0 };
				struct listener *x;

				log_warn("smtp: accept");
				TAILQ_FOREACH(x, &env.conf->listeners, entry)
					if (x->ev)
						event_del((struct event *)x->ev);
				evtimer_add(accept_pause, &tv);
			}
			return;
		}
		smtp_session_accept(s, l);
	}
}

void
smtp_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	enum smtpd_role from = (enum smtpd_role)(intptr_t)arg;

	if (m->type == IMSG_NONE)
		fatalx("smtp: lost the %s process", role_name(from));
	if (from == ROLE_PARENT)
		fatalx("smtp: unexpected %s from parent",
		    ipc_type_name(m->type));
	if (m->type >= IMSG_MTA_ROUTE && m->type <= IMSG_MTA_RESULT)
		mta_imsg(m, from);
	else
		smtp_session_imsg(m, from);
}

void
smtp_main(void)
{
	struct listener	*l;

	TAILQ_FOREACH(l, &env.conf->listeners, entry) {
		if (l->fd == -1)
			continue;	/* skipped at bind time */
		evutil_make_socket_nonblocking(l->fd);
		l->ev = event_new(env.evbase, l->fd, EV_READ | EV_PERSIST,
		    smtp_accept, l);
		event_add((struct event *)l->ev, NULL);
	}
	accept_pause = evtimer_new(env.evbase, smtp_resume_accept, NULL);
}
