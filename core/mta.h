/*
 * mta.h - between the relay's routes and queues (mta.c) and its SMTP
 * client sessions (mta_session.c), both in the smtp role.
 */
#ifndef MTA_H
#define MTA_H

#include <sys/queue.h>
#include <sys/socket.h>

/* One recipient of a task: an envelope the queue handed over. */
struct mta_rcpt {
	uint64_t	 evpid;
	char		 to[SMTPD_MAXADDR];		/* envelope dest */
	char		 rcpt[SMTPD_MAXADDR];		/* as received */
	uint32_t	 notify;			/* DSN_NOTIFY_* */
	char		 orcpt[SMTPD_MAXADDR + 16];
	int64_t		 creation;
	int		 accepted;	/* RCPT got 2xx in this transaction */
	int		 done;		/* result sent to the queue */
};

/* One message to one route: a transaction with one or more RCPTs. */
struct mta_task {
	TAILQ_ENTRY(mta_task)	 entry;
	struct mta_route	*route;
	uint32_t		 msgid;
	int			 fd;		/* the spooled message */
	char			 sender[SMTPD_MAXADDR];
	char			 src[64];	/* our address, for the log */
	uint32_t		 ret;		/* DSN_RET_* */
	char			 envid[101];
	struct mta_rcpt		*rcpts;
	size_t			 nrcpt;
};
TAILQ_HEAD(mta_tasklist, mta_task);

struct mta_host {
	uint32_t		 pref;
	char			 name[256];
	struct sockaddr_storage	 ss;
	char			 helo[256];	/* helo-src name, or "" */
	time_t			 down_until;	/* failed: others first */
};

/* A local address to connect from (`src`) and its helo-src name. */
struct mta_src {
	struct sockaddr_storage	 ss;
	char			 helo[256];
};

/* An SMTP client connection; its protocol state is mta_session.c's. */
struct mta_session {
	TAILQ_ENTRY(mta_session) idle_entry;
	int			 is_idle;	/* on its route's idle list */
	struct mta_route	*route;
	struct mta_sess_state	*st;
};
TAILQ_HEAD(mta_sessionlist, mta_session);

/* Where messages of one action to one domain (or smarthost) go. */
struct mta_route {
	struct mta_route	*next;		/* hash chain */
	char			 action[128];
	char			 domain[256];	/* "" for a smarthost */
	const struct action	*a;
	struct mta_tasklist	 tasks;		/* waiting for a session */
	size_t			 ntasks;
	struct mta_sessionlist	 idle;		/* connected, nothing to do */
	size_t			 nconn;		/* sessions, idle ones too */
	size_t			 nstarting;	/* not yet ready for mail */
	/* what the lookup role said, valid until expires */
	uint64_t		 reqid;		/* a route request is out */
	time_t			 expires;
	enum relay_scheme	 scheme;
	char			*auth;		/* "user:password" or NULL */
	struct mta_host		*hosts;
	size_t			 nhosts;
	struct mta_src		*srcs;		/* none: the kernel picks */
	size_t			 nsrc;
	size_t			 src_next;	/* round-robin */
};

/* mta.c, for the sessions */
struct mta_task *mta_next_task(struct mta_route *);
void	mta_rcpt_result(struct mta_task *, struct mta_rcpt *, int status,
	    const char *text, const char *relay);
/* Every recipient not answered yet gets status; then the task goes. */
void	mta_task_fail(struct mta_task *, int status, const char *text,
	    const char *relay);
void	mta_task_done(struct mta_task *);
void	mta_session_ready(struct mta_route *);
void	mta_session_idle(struct mta_route *, struct mta_session *);
void	mta_session_closed(struct mta_route *, struct mta_session *,
	    int was_ready, int failed, const char *error);

/* mta_session.c */
void	mta_session_start(struct mta_route *);
void	mta_session_wake(struct mta_session *);

#endif /* MTA_H */
