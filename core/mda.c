/*
 * mda.c - local delivery, run by the parent (root when privileged).
 *
 * For each envelope the queue hands over (with the message descriptor),
 * the parent resolves the action and the user and passes the work to a
 * delivery worker (mda_worker.c) that runs as that user; the result goes
 * back to the queue.  Workers are kept per user and method, up to
 * WORKERS_PER_USER of them so one busy mailbox still gets parallel
 * deliveries, and closed after WORKER_IDLE seconds without work.  A worker
 * that dies fails its deliveries temporarily, so a crashing method never
 * loses mail.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"

#define WORKERS_PER_USER	4
#define WORKERS_MAX		64
#define WORKER_IDLE		10	/* seconds */

struct mda_job {
	TAILQ_ENTRY(mda_job)	 entry;
	struct envelope		 ev;
};
TAILQ_HEAD(joblist, mda_job);

struct mda_worker {
	TAILQ_ENTRY(mda_worker)	 entry;
	pid_t			 pid;
	uid_t			 uid;
	gid_t			 gid;
	int			 method;
	char			 user[64];
	struct ipc		*work;		/* frames to the worker */
	struct event		*ev_result;	/* its result lines */
	int			 resfd;
	char			 rbuf[MDA_RESULT_MAX];
	size_t			 rlen;
	struct joblist		 jobs;		/* sent, not yet answered */
	size_t			 njobs;
	time_t			 idle_since;
};
TAILQ_HEAD(, mda_worker) workers = TAILQ_HEAD_INITIALIZER(workers);
static size_t		 nworkers;
static struct event	*idle_timer;

/* Local methods are mda modules; the others never reach this file. */
static const char *method_names[A_NMETHODS] = {
	[A_MBOX] = "mbox",
	[A_MAILDIR] = "maildir",
	[A_LMTP] = "lmtp",
	[A_MDA] = "mda",
};
#define NMETHODS	A_NMETHODS
static struct module	*methods[NMETHODS];

#define GROUP_MAX		256	/* supplementary groups kept */

int
mda_init(void)
{
	struct action	*a;

	TAILQ_FOREACH(a, &env.conf->actions, entry) {
		if ((size_t)a->method >= NMETHODS)
			fatalx("mda: unknown method");
		if (method_names[a->method] == NULL || methods[a->method])
			continue;
		methods[a->method] = module_load(MSD_KIND_MDA,
		    method_names[a->method]);
		if (methods[a->method] == NULL) {
			log_warnx("%s:%d: action \"%s\": cannot load the %s"
			    " delivery method", a->file, a->line, a->name,
			    method_names[a->method]);
			return -1;
		}
	}
	return 0;
}

static void
send_result(uint64_t evpid, uint32_t status, const char *text)
{
	struct ipc_out *o = ipc_begin(env.peer[ROLE_QUEUE], IMSG_MDA_RESULT);

	ipc_put_u64(o, evpid);
	ipc_put_u32(o, status);
	ipc_put_str(o, text);
	ipc_end(o, -1);
}

/* ------------------------------------------------- per-method arguments */

#define MBOX_DIR		"/var/mail"

/* What one delivery needs: method, user, the method's argument. */
struct plan {
	int			 method;	/* A_MBOX ... A_MDA */
	struct userinfo		 ui;
	char			 arg[MDA_ARG_MAX];
	char			 rcpt[SMTPD_MAXADDR];	/* lmtp RCPT TO */
	int			 junk;
};

/* The user an envelope is for: set by expansion, else dest's local part. */
static int
logical_user(const struct envelope *ev, char *user, size_t len)
{
	char	 domain[SMTPD_MAXADDR];

	if (ev->user[0] != '\0')
		return msd_strlcpy(user, ev->user, len) < len ? 0 : -1;
	if (addr_split(ev->dest, user, len, domain, sizeof(domain)) == -1)
		return -1;
	subaddr_strip(user, env.conf->subaddr_delim);
	lowercase(user);
	return 0;
}

/* 1: found, 0: no such user, -1: try again later. */
static int
plan_user(const struct action *a, const struct envelope *ev,
    struct userinfo *ui)
{
	const struct passwd	*pw;
	char			 user[SMTPD_MAXADDR];

	if (!env.privileged) {
		if ((pw = getpwuid(getuid())) == NULL)
			return -1;
		return user_lookup(NULL, pw->pw_name, ui);
	}
	if (a->user)
		return user_lookup(NULL, a->user, ui);
	if (logical_user(ev, user, sizeof(user)) == -1)
		return 0;
	return user_lookup(a->userbase, user, ui);
}

/*
 * A path or command with smtpd.conf(5) format specifiers expanded; values
 * from the network are sanitised by expand_format().
 */
static int
plan_expand(struct plan *p, const char *in, const char *mda,
    const struct envelope *ev)
{
	struct expand_ctx	 x;
	const char		*err;

	memset(&x, 0, sizeof(x));
	x.sender = ev->sender;
	x.rcpt = ev->rcpt;
	x.dest = ev->dest;
	x.user = p->ui.name;
	x.directory = p->ui.home;
	x.mbox_from = ev->sender[0] ? ev->sender : "MAILER-DAEMON";
	x.mda = mda;
	x.subaddr_delim = env.conf->subaddr_delim;
	if (expand_format(in, &x, p->arg, sizeof(p->arg), &err) == -1) {
		log_warnx("mda: evp:%016" PRIx64 ": cannot expand \"%s\": %s",
		    ev->id, in, err);
		return -1;
	}
	return 0;
}

/* The mda command, through the action's `wrapper` when it has one. */
static int
plan_command(struct plan *p, const struct action *a,
    const struct envelope *ev)
{
	const struct wrapper	*w;
	char			 cmd[MDA_ARG_MAX];

	if (plan_expand(p, a->mda_cmd, NULL, ev) == -1)
		return -1;
	if (a->wrapper == NULL)
		return 0;
	if ((w = config_wrapper_find(env.conf, a->wrapper)) == NULL)
		return -1;
	msd_strlcpy(cmd, p->arg, sizeof(cmd));
	return plan_expand(p, w->command, cmd, ev);
}

/* The mailbox in the system mail spool; names with '/' never get there. */
static int
plan_mbox(struct plan *p)
{
	if (strchr(p->ui.name, '/') != NULL || p->ui.name[0] == '.' ||
	    (size_t)snprintf(p->arg, sizeof(p->arg), "%s/%s", MBOX_DIR,
	    p->ui.name) >= sizeof(p->arg))
		return -1;
	return 0;
}

/* -1 when the action's arguments cannot be built for this envelope. */
static int
plan_method(struct plan *p, const struct action *a, const struct envelope *ev)
{
	char	 user[SMTPD_MAXADDR];

	switch (ev->dlv) {
	case DLV_FILE:
		p->method = A_MBOX;
		msd_strlcpy(p->arg, ev->dlv_arg, sizeof(p->arg));
		return p->arg[0] == '/' ? 0 : -1;
	case DLV_COMMAND:
		p->method = A_MDA;
		msd_strlcpy(p->arg, ev->dlv_arg, sizeof(p->arg));
		return 0;
	}
	p->method = a->method;
	switch (a->method) {
	case A_MAILDIR:
		p->junk = a->junk;
		if (plan_expand(p, a->path ? a->path : "~/Maildir", NULL,
		    ev) == -1)
			return -1;
		return p->arg[0] == '/' ? 0 : -1;
	case A_MBOX:
		return plan_mbox(p);
	case A_LMTP:
		msd_strlcpy(p->arg, a->lmtp_dest, sizeof(p->arg));
		if (a->lmtp_rcpt_to)
			msd_strlcpy(p->rcpt, ev->dest, sizeof(p->rcpt));
		else if (logical_user(ev, user, sizeof(user)) == 0)
			msd_strlcpy(p->rcpt, user, sizeof(p->rcpt));
		else
			return -1;
		return 0;
	case A_MDA:
		return plan_command(p, a, ev);
	default:
		return -1;
	}
}

/* ----------------------------------------------------------- the parent */

static void
log_delivery(const struct mda_job *j, const char *user, char status,
    const char *stat)
{
	char	 delay[64];

	log_info("%016" PRIx64 " mda delivery evpid=%016" PRIx64 " from=<%s>"
	    " to=<%s> rcpt=<%s> user=%s delay=%s result=%s stat=%s",
	    j->ev.id, j->ev.id, j->ev.sender, j->ev.dest, j->ev.rcpt, user,
	    duration_text(time(NULL) - j->ev.creation, delay, sizeof(delay)),
	    status == 'O' ? "Ok" : status == 'P' ? "PermFail" : "TempFail",
	    stat);
}

static void
job_done(struct mda_worker *w, struct mda_job *j, char status,
    const char *text)
{
	TAILQ_REMOVE(&w->jobs, j, entry);
	if (--w->njobs == 0)
		w->idle_since = time(NULL);
	log_delivery(j, w->user, status, text);
	send_result(j->ev.id, status == 'O' ? DELIVERY_OK :
	    status == 'P' ? DELIVERY_PERMFAIL : DELIVERY_TEMPFAIL, text);
	free(j);
}

/* Stops sending work and forgets the worker; it exits on EOF. */
static void
worker_close(struct mda_worker *w, const char *why)
{
	struct mda_job	*j;

	while ((j = TAILQ_FIRST(&w->jobs)))
		job_done(w, j, 'T', why);
	TAILQ_REMOVE(&workers, w, entry);
	nworkers--;
	ipc_free(w->work);
	event_free(w->ev_result);
	close(w->resfd);
	free(w);
}

/*
 * One result line: "<16 hex> <O|T|P><text>".  The worker runs as a user
 * who could tamper with it, so anything else ends that worker.
 */
static int
worker_line(struct mda_worker *w, char *line)
{
	struct mda_job	*j;
	char		*end;
	uint64_t	 evpid;

	if (strlen(line) < 18 || line[16] != ' ' ||
	    (line[17] != 'O' && line[17] != 'T' && line[17] != 'P'))
		return -1;
	line[16] = '\0';
	evpid = strtoull(line, &end, 16);
	if (*end != '\0')
		return -1;
	TAILQ_FOREACH(j, &w->jobs, entry)
		if (j->ev.id == evpid)
			break;
	if (j == NULL)
		return -1;
	job_done(w, j, line[17], line + 18);
	return 0;
}

/* Reads what the worker reported; returns -1 at EOF or on garbage. */
static int
worker_read(struct mda_worker *w)
{
	char	*nl;
	ssize_t	 n;

	for (;;) {
		n = read(w->resfd, w->rbuf + w->rlen,
		    sizeof(w->rbuf) - 1 - w->rlen);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		w->rlen += n;
		w->rbuf[w->rlen] = '\0';
		while ((nl = memchr(w->rbuf, '\n', w->rlen))) {
			*nl = '\0';
			if (worker_line(w, w->rbuf) == -1) {
				log_warnx("mda: worker %d for %s sent a bad"
				    " result, stopping it", (int)w->pid,
				    w->user);
				return -1;
			}
			w->rlen -= nl + 1 - w->rbuf;
			memmove(w->rbuf, nl + 1, w->rlen);
		}
		if (w->rlen == sizeof(w->rbuf) - 1) {
			log_warnx("mda: worker %d for %s sent an overlong"
			    " result, stopping it", (int)w->pid, w->user);
			return -1;
		}
	}
}

static void
worker_on_result(evutil_socket_t fd, short ev, void *arg)
{
	struct mda_worker *w = arg;

	if (worker_read(w) == -1) {
		kill(w->pid, SIGKILL);
		worker_close(w, "delivery worker failed");
	}
}

static void	on_idle_timer(evutil_socket_t, short, void *);

static void
worker_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	/* Nothing comes this way; a closed socket is handled by SIGCHLD. */
}

/*
 * The user's groups, asked here once per worker, not by initgroups() in
 * the child.  mbox deliveries also get the "mail" group: Debian's
 * /var/mail is root:mail 2775, and mail.local-style dotlocks are created
 * in it.
 */
static int
worker_groups(const struct userinfo *ui, int method, gid_t *groups)
{
	const struct group	*gr;
	int			 ngroups = GROUP_MAX - 1;

	if (!env.privileged)
		return 0;
	if (getgrouplist(ui->name, ui->gid, groups, &ngroups) == -1) {
		log_warnx("mda: user %s is in more than %d groups, using the"
		    " first ones", ui->name, GROUP_MAX - 1);
		ngroups = GROUP_MAX - 1;
	}
	if (method == A_MBOX && (gr = getgrnam("mail")) != NULL)
		groups[ngroups++] = gr->gr_gid;
	return ngroups;
}

static struct mda_worker *
worker_spawn(const struct userinfo *ui, int method)
{
	struct mda_worker *w;
	gid_t		 groups[GROUP_MAX];
	int		 ngroups, sp[2], rp[2];
	pid_t		 pid;

	ngroups = worker_groups(ui, method, groups);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1)
		return NULL;
	if (pipe2(rp, O_CLOEXEC) == -1) {
		close(sp[0]);
		close(sp[1]);
		return NULL;
	}
	if ((pid = fork()) == -1) {
		close(sp[0]);
		close(sp[1]);
		close(rp[0]);
		close(rp[1]);
		return NULL;
	}
	if (pid == 0)
		mda_worker_run(methods[method], ui, groups, ngroups, sp[1],
		    rp[1]);
	close(sp[1]);
	close(rp[1]);
	w = xcalloc(1, sizeof(*w));
	w->pid = pid;
	w->uid = ui->uid;
	w->gid = ui->gid;
	w->method = method;
	msd_strlcpy(w->user, ui->name, sizeof(w->user));
	TAILQ_INIT(&w->jobs);
	w->work = ipc_new(sp[0], "delivery", worker_imsg, w);
	w->resfd = rp[0];
	evutil_make_socket_nonblocking(w->resfd);
	w->ev_result = event_new(env.evbase, w->resfd, EV_READ | EV_PERSIST,
	    worker_on_result, w);
	if (w->ev_result == NULL)
		fatalx("mda: event_new");
	event_add(w->ev_result, NULL);
	w->idle_since = time(NULL);
	if (idle_timer == NULL) {
		struct timeval tv = { WORKER_IDLE, 0 };

		if ((idle_timer = evtimer_new(env.evbase, on_idle_timer,
		    NULL)) == NULL)
			fatalx("mda: evtimer_new");
		evtimer_add(idle_timer, &tv);
	}
	TAILQ_INSERT_TAIL(&workers, w, entry);
	nworkers++;
	return w;
}

/* The idle worker unused the longest, to make room. */
static void
worker_evict(void)
{
	struct mda_worker *w, *lru = NULL;

	TAILQ_FOREACH(w, &workers, entry)
		if (w->njobs == 0 && (lru == NULL ||
		    w->idle_since < lru->idle_since))
			lru = w;
	if (lru)
		worker_close(lru, "evicted");
}

/* The least busy worker of this user and method, or a new one. */
static struct mda_worker *
worker_get(const struct userinfo *ui, int method)
{
	struct mda_worker *w, *best = NULL;
	size_t		 n = 0;

	TAILQ_FOREACH(w, &workers, entry) {
		if (w->uid != ui->uid || w->gid != ui->gid ||
		    w->method != method)
			continue;
		n++;
		if (best == NULL || w->njobs < best->njobs)
			best = w;
	}
	if (best && (best->njobs == 0 || n >= WORKERS_PER_USER))
		return best;
	if (nworkers >= WORKERS_MAX)
		worker_evict();
	if (nworkers >= WORKERS_MAX)
		return best;
	if ((w = worker_spawn(ui, method)) == NULL) {
		log_warn("mda: cannot start a delivery worker for %s",
		    ui->name);
		return best;
	}
	return w;
}

static void
on_idle_timer(evutil_socket_t fd, short ev, void *arg)
{
	struct mda_worker *w, *next;
	struct timeval	 tv = { WORKER_IDLE, 0 };
	time_t		 now = time(NULL);

	for (w = TAILQ_FIRST(&workers); w; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->njobs == 0 && now - w->idle_since >= WORKER_IDLE)
			worker_close(w, "idle");
	}
	evtimer_add(idle_timer, &tv);
}

/* Fails the delivery at once: nothing was handed to a worker. */
static void
deliver_refuse(struct ipc_msg *m, uint64_t evpid, uint32_t status,
    const char *why)
{
	close(m->fd);
	send_result(evpid, status, why);
}

void
mda_deliver(struct ipc_msg *m)
{
	struct envelope		 ev;
	struct plan		 p;
	struct action		*a;
	struct mda_worker	*w;
	struct mda_job		*j;
	struct ipc_out		*o;
	const char		*json;
	uint64_t		 evpid;
	int			 r;

	evpid = ipc_get_u64(m);
	json = ipc_get_str(m);
	ipc_get_end(m);
	if (m->fd == -1 || json == NULL)
		fatalx("mda: delivery request without message");
	if (envelope_load_json(&ev, json, strlen(json)) == -1)
		fatalx("mda: bad envelope from queue");
	ev.id = evpid;
	memset(&p, 0, sizeof(p));
	if ((a = config_action(env.conf, ev.action)) == NULL)
		return deliver_refuse(m, evpid, DELIVERY_TEMPFAIL,
		    "action no longer exists");
	if ((r = plan_user(a, &ev, &p.ui)) != 1)
		return deliver_refuse(m, evpid, r == 0 ? DELIVERY_PERMFAIL :
		    DELIVERY_TEMPFAIL, r == 0 ? "550 5.1.1 user unknown" :
		    "451 4.3.0 user lookup failed");
	if (plan_method(&p, a, &ev) == -1)
		return deliver_refuse(m, evpid, DELIVERY_PERMFAIL,
		    "cannot build the delivery arguments (see the log)");
	if (methods[p.method] == NULL &&
	    (methods[p.method] = module_load(MSD_KIND_MDA,
	    method_names[p.method])) == NULL)
		return deliver_refuse(m, evpid, DELIVERY_TEMPFAIL,
		    "delivery method not available");
	if ((w = worker_get(&p.ui, p.method)) == NULL)
		return deliver_refuse(m, evpid, DELIVERY_TEMPFAIL,
		    "no delivery worker available");
	j = xcalloc(1, sizeof(*j));
	j->ev = ev;
	TAILQ_INSERT_TAIL(&w->jobs, j, entry);
	w->njobs++;
	o = ipc_begin(w->work, IMSG_MDA_WORK);
	ipc_put_u64(o, evpid);
	ipc_put_str(o, json);
	ipc_put_str(o, p.arg);
	ipc_put_str(o, p.rcpt);
	ipc_put_u32(o, p.junk);
	ipc_end(o, m->fd);
}

/* A worker exited: what it reported before is still in its pipe. */
void
mda_child_exited(pid_t pid, int status)
{
	struct mda_worker *w;
	char		 why[128];

	TAILQ_FOREACH(w, &workers, entry)
		if (w->pid == pid)
			break;
	if (w == NULL)
		return;		/* closed on purpose earlier */
	(void)worker_read(w);
	snprintf(why, sizeof(why), "delivery worker %s %d",
	    WIFSIGNALED(status) ? "killed by signal" : "exited with status",
	    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	if (w->njobs)
		log_warnx("mda: %s for %s with %zu deliveries pending", why,
		    w->user, w->njobs);
	worker_close(w, why);
}

/* Workers still alive; after mda_stop() they finish and exit. */
size_t
mda_running(void)
{
	return nworkers;
}

/*
 * Shutdown: no more work; each worker finishes what it has, reports it
 * and exits at EOF, and mda_child_exited() collects the reports.
 */
void
mda_stop(void)
{
	struct mda_worker *w;

	TAILQ_FOREACH(w, &workers, entry) {
		(void)ipc_flush_sync(w->work);
		shutdown(ipc_fd(w->work), SHUT_WR);
	}
}
