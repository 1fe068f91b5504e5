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

/* ---------------------------------------------------- path expansion */

/*
 * The mailbox path with smtpd.conf(5) format specifiers expanded; values
 * from the network are sanitised by expand_format().
 */
static int
expand_path(const char *in, const struct envelope *ev,
    const struct passwd *pw, char *out, size_t outlen)
{
	struct expand_ctx	 x;
	const char		*err;

	memset(&x, 0, sizeof(x));
	x.sender = ev->sender;
	x.rcpt = ev->rcpt;
	x.dest = ev->dest;
	x.user = pw->pw_name;
	x.directory = pw->pw_dir;
	x.mbox_from = ev->sender[0] ? ev->sender : "MAILER-DAEMON";
	x.subaddr_delim = env.conf->subaddr_delim;
	if (expand_format(in ? in : "~/Maildir", &x, out, outlen, &err) == -1) {
		log_warnx("mda: evp:%016" PRIx64 ": cannot expand \"%s\": %s",
		    ev->id, in ? in : "~/Maildir", err);
		return -1;
	}
	return out[0] == '/' ? 0 : -1;
}

/* ----------------------------------------------------------- the parent */

static const struct passwd *
delivery_user(const struct action *a, const struct envelope *ev)
{
	char	 user[SMTPD_MAXADDR], domain[SMTPD_MAXADDR];

	if (!env.privileged)
		return getpwuid(getuid());
	if (a->user)
		return getpwnam(a->user);
	if (addr_split(ev->dest, user, sizeof(user), domain,
	    sizeof(domain)) == -1)
		return NULL;
	subaddr_strip(user, env.conf->subaddr_delim);
	lowercase(user);
	return getpwnam(user);
}

/* "1d2h3m4s", zero units left out, as OpenSMTPD's logs show delays. */
static const char *
duration_text(time_t t, char *buf, size_t len)
{
	static const struct { time_t secs; char unit; } units[] = {
		{ 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' },
	};
	size_t	 i, off = 0;

	if (t <= 0)
		return "0s";
	buf[0] = '\0';
	for (i = 0; i < sizeof(units) / sizeof(units[0]) && off < len; i++) {
		if (t < units[i].secs)
			continue;
		off += snprintf(buf + off, len - off, "%lld%c",
		    (long long)(t / units[i].secs), units[i].unit);
		t %= units[i].secs;
	}
	return buf;
}

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

static struct mda_worker *
worker_spawn(const struct passwd *pw, int method)
{
	struct mda_worker *w;
	gid_t		 groups[GROUP_MAX];
	int		 ngroups = GROUP_MAX, sp[2], rp[2];
	pid_t		 pid;

	/* Asked here, once per worker, not by initgroups() in the child. */
	if (env.privileged && getgrouplist(pw->pw_name, pw->pw_gid, groups,
	    &ngroups) == -1) {
		log_warnx("mda: user %s is in more than %d groups, using the"
		    " first ones", pw->pw_name, GROUP_MAX);
		ngroups = GROUP_MAX;
	}

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
		mda_worker_run(methods[method], pw, groups, ngroups, sp[1],
		    rp[1]);
	close(sp[1]);
	close(rp[1]);
	w = xcalloc(1, sizeof(*w));
	w->pid = pid;
	w->uid = pw->pw_uid;
	w->gid = pw->pw_gid;
	w->method = method;
	msd_strlcpy(w->user, pw->pw_name, sizeof(w->user));
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
worker_get(const struct passwd *pw, int method)
{
	struct mda_worker *w, *best = NULL;
	size_t		 n = 0;

	TAILQ_FOREACH(w, &workers, entry) {
		if (w->uid != pw->pw_uid || w->gid != pw->pw_gid ||
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
	if ((w = worker_spawn(pw, method)) == NULL) {
		log_warn("mda: cannot start a delivery worker for %s",
		    pw->pw_name);
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

void
mda_deliver(struct ipc_msg *m)
{
	struct envelope		 ev;
	const struct passwd	*pw;
	struct action		*a;
	struct mda_worker	*w;
	struct mda_job		*j;
	struct ipc_out		*o;
	char			 path[PATH_MAX];
	const char		*json;
	uint64_t		 evpid;

	evpid = ipc_get_u64(m);
	json = ipc_get_str(m);
	ipc_get_end(m);
	if (m->fd == -1 || json == NULL)
		fatalx("mda: delivery request without message");
	if (envelope_load_json(&ev, json, strlen(json)) == -1)
		fatalx("mda: bad envelope from queue");
	ev.id = evpid;
	if ((a = config_action(env.conf, ev.action)) == NULL) {
		close(m->fd);
		send_result(evpid, DELIVERY_TEMPFAIL, "action no longer exists");
		return;
	}
	if ((pw = delivery_user(a, &ev)) == NULL) {
		close(m->fd);
		send_result(evpid, DELIVERY_PERMFAIL, "550 5.1.1 user unknown");
		return;
	}
	if (expand_path(a->path, &ev, pw, path, sizeof(path)) == -1) {
		close(m->fd);
		send_result(evpid, DELIVERY_PERMFAIL,
		    "cannot expand the mailbox path");
		return;
	}
	if ((w = worker_get(pw, a->method)) == NULL) {
		close(m->fd);
		send_result(evpid, DELIVERY_TEMPFAIL,
		    "no delivery worker available");
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->ev = ev;
	TAILQ_INSERT_TAIL(&w->jobs, j, entry);
	w->njobs++;
	o = ipc_begin(w->work, IMSG_MDA_WORK);
	ipc_put_u64(o, evpid);
	ipc_put_str(o, json);
	ipc_put_str(o, path);
	ipc_put_u32(o, a->junk);
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
