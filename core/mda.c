/*
 * mda.c - local delivery, run by the parent (root when privileged).
 *
 * For each envelope the queue hands over (with the message descriptor),
 * the parent resolves the action and the user, forks a child that drops to
 * that user and runs the delivery method's module, and reports the result
 * back to the queue.  The child tells its result through a pipe before it
 * exits; an exit without a result is a temporary failure, so a crashing
 * method never loses mail.
 */
#include <sys/types.h>
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

#include "smtpd.h"

struct mda_child {
	TAILQ_ENTRY(mda_child)	 entry;
	pid_t			 pid;
	int			 pipefd;
	struct envelope		 ev;
	char			 user[64];
};
TAILQ_HEAD(, mda_child) children = TAILQ_HEAD_INITIALIZER(children);

static const char *method_names[] = {
	[A_MAILDIR] = "maildir",
};
#define NMETHODS	(sizeof(method_names) / sizeof(method_names[0]))
static struct module	*methods[NMETHODS];

/*
 * Supplementary groups of delivery users, cached: initgroups() in every
 * delivery child asks every NSS source (systemd's among them) per message.
 * A change to /etc/group reaches deliveries within GROUP_CACHE_TTL.
 */
#define GROUP_CACHE_SIZE	32
#define GROUP_CACHE_TTL		60
#define GROUP_MAX		256

struct group_entry {
	uid_t	 uid;
	gid_t	 gid;
	time_t	 expires;
	int	 ngroups;
	gid_t	 groups[GROUP_MAX];
};
static struct group_entry group_cache[GROUP_CACHE_SIZE];

static const struct group_entry *
user_groups(const struct passwd *pw)
{
	struct group_entry *e, *victim = &group_cache[0];
	time_t		 now = time(NULL);
	size_t		 i;

	for (i = 0; i < GROUP_CACHE_SIZE; i++) {
		e = &group_cache[i];
		if (e->expires > now && e->uid == pw->pw_uid &&
		    e->gid == pw->pw_gid)
			return e;
		if (e->expires < victim->expires)
			victim = e;
	}
	victim->ngroups = GROUP_MAX;
	if (getgrouplist(pw->pw_name, pw->pw_gid, victim->groups,
	    &victim->ngroups) == -1) {
		log_warnx("mda: user %s is in more than %d groups, using the"
		    " first ones", pw->pw_name, GROUP_MAX);
		victim->ngroups = GROUP_MAX;
	}
	victim->uid = pw->pw_uid;
	victim->gid = pw->pw_gid;
	victim->expires = now + GROUP_CACHE_TTL;
	return victim;
}

int
mda_init(void)
{
	struct action	*a;

	TAILQ_FOREACH(a, &env.conf->actions, entry) {
		if ((size_t)a->method >= NMETHODS)
			fatalx("mda: unknown method");
		if (methods[a->method])
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

/* Values from the network must not climb out of the intended directory. */
static int
safe_component(const char *v)
{
	return v[0] != '\0' && strchr(v, '/') == NULL && strcmp(v, ".") &&
	    strcmp(v, "..");
}

static int
expand_token(const char *tok, size_t toklen, const struct envelope *ev,
    const struct passwd *pw, char *out, size_t outlen)
{
	char	 user[SMTPD_MAXADDR], domain[SMTPD_MAXADDR];
	const char *v = NULL;

	if (addr_split(ev->dest, user, sizeof(user), domain,
	    sizeof(domain)) == -1)
		return -1;
	lowercase(domain);
#define TOK(s)	(toklen == sizeof(s) - 1 && strncmp(tok, s, toklen) == 0)
	if (TOK("user.username"))
		v = pw->pw_name;
	else if (TOK("user.directory"))
		v = pw->pw_dir;
	else if (TOK("dest.user") || TOK("rcpt.user"))
		v = user;
	else if (TOK("dest.domain") || TOK("rcpt.domain"))
		v = domain;
#undef TOK
	if (v == NULL || (v != pw->pw_dir && !safe_component(v)))
		return -1;
	return msd_strlcat(out, v, outlen) < outlen ? 0 : -1;
}

static int
expand_path(const char *in, const struct envelope *ev,
    const struct passwd *pw, char *out, size_t outlen)
{
	const char *p, *end;
	char	 c[2] = { 0, 0 };

	out[0] = '\0';
	if (in == NULL)
		in = "~/Maildir";
	if (in[0] == '~' && (in[1] == '/' || in[1] == '\0')) {
		if (msd_strlcat(out, pw->pw_dir, outlen) >= outlen)
			return -1;
		in++;
	}
	for (p = in; *p; p++) {
		if (p[0] == '%' && p[1] == '{') {
			if ((end = strchr(p, '}')) == NULL ||
			    expand_token(p + 2, end - p - 2, ev, pw, out,
			    outlen) == -1)
				return -1;
			p = end;
			continue;
		}
		c[0] = *p;
		if (msd_strlcat(out, c, outlen) >= outlen)
			return -1;
	}
	return out[0] == '/' ? 0 : -1;
}

/* ------------------------------------------------------------ the child */

static void
child_report(int fd, char status, const char *text)
{
	char	 buf[600];
	int	 n;

	n = snprintf(buf, sizeof(buf), "%c%s", status, text);
	if (n < 0)
		_exit(1);
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	if (write(fd, buf, n) != n)
		_exit(1);
}

static void __attribute__((noreturn))
child_run(struct module *mod, int msgfd, int pipefd,
    const struct envelope *ev, const struct passwd *pw,
    const struct group_entry *grp, const char *path, const struct action *a)
{
	const struct msd_mda_ops *ops;
	struct msd_envelope	 menv;
	struct msd_result	 res;
	int			 r;

	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	if (env.privileged &&
	    (setgroups(grp->ngroups, grp->groups) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)) {
		child_report(pipefd, 'T', "cannot switch to the user");
		_exit(0);
	}
	if (chdir(pw->pw_dir) == -1 && chdir("/") == -1)
		_exit(1);
	memset(&menv, 0, sizeof(menv));
	menv.ev = ev;
	menv.user = pw->pw_name;
	menv.homedir = pw->pw_dir;
	menv.mda_arg = path;
	menv.junk = a->junk;
	memset(&res, 0, sizeof(res));
	ops = module_ops(mod, sizeof(*ops));
	if (ops->deliver == NULL ||
	    (mod->desc.init && mod->desc.init(mod->host) != MSD_OK)) {
		child_report(pipefd, 'T', "delivery method failed to start");
		_exit(0);
	}
	r = ops->deliver(mod->host, msgfd, &menv, &res);
	if (r == MSD_OK)
		child_report(pipefd, 'O', "Delivered");
	else
		child_report(pipefd, r == MSD_PERMFAIL ? 'P' : 'T',
		    res.failed ? res.error : "delivery failed");
	_exit(0);
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
	lowercase(user);
	return getpwnam(user);
}

void
mda_deliver(struct ipc_msg *m)
{
	struct envelope		 ev;
	const struct passwd	*pw;
	const struct group_entry *grp;
	struct action		*a;
	struct mda_child	*c;
	char			 path[PATH_MAX];
	const char		*json;
	uint64_t		 evpid;
	int			 p[2];

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
	if (pipe2(p, O_CLOEXEC) == -1) {
		close(m->fd);
		send_result(evpid, DELIVERY_TEMPFAIL, "pipe failed");
		return;
	}
	grp = env.privileged ? user_groups(pw) : NULL;
	c = xcalloc(1, sizeof(*c));
	c->ev = ev;
	msd_strlcpy(c->user, pw->pw_name, sizeof(c->user));
	switch (c->pid = fork()) {
	case -1:
		close(p[0]);
		close(p[1]);
		close(m->fd);
		free(c);
		send_result(evpid, DELIVERY_TEMPFAIL, "fork failed");
		return;
	case 0:
		close(p[0]);
		child_run(methods[a->method], m->fd, p[1], &ev, pw, grp, path,
		    a);
	default:
		break;
	}
	close(p[1]);
	close(m->fd);
	c->pipefd = p[0];
	TAILQ_INSERT_TAIL(&children, c, entry);
}

static void
log_delivery(const struct mda_child *c, const char *result, const char *stat)
{
	log_info("%016" PRIx64 " mda delivery evpid=%016" PRIx64 " from=<%s>"
	    " to=<%s> rcpt=<%s> user=%s delay=%llds result=%s stat=%s",
	    c->ev.id, c->ev.id, c->ev.sender, c->ev.dest, c->ev.rcpt, c->user,
	    (long long)(time(NULL) - c->ev.creation), result, stat);
}

void
mda_child_exited(pid_t pid, int status)
{
	struct mda_child *c;
	char		 buf[600];
	ssize_t		 n;
	uint32_t	 st;

	TAILQ_FOREACH(c, &children, entry)
		if (c->pid == pid)
			break;
	if (c == NULL)
		return;
	TAILQ_REMOVE(&children, c, entry);
	/* The child wrote before exiting: the bytes wait in the pipe. */
	n = read(c->pipefd, buf, sizeof(buf) - 1);
	close(c->pipefd);
	if (n <= 0) {
		snprintf(buf, sizeof(buf), "Tdelivery process %s %d",
		    WIFSIGNALED(status) ? "killed by signal" : "exited with",
		    WIFSIGNALED(status) ? WTERMSIG(status) :
		    WEXITSTATUS(status));
		n = strlen(buf);
	}
	buf[n] = '\0';
	st = buf[0] == 'O' ? DELIVERY_OK : buf[0] == 'P' ? DELIVERY_PERMFAIL :
	    DELIVERY_TEMPFAIL;
	log_delivery(c, st == DELIVERY_OK ? "Ok" : st == DELIVERY_PERMFAIL ?
	    "PermFail" : "TempFail", buf + 1);
	send_result(c->ev.id, st, buf + 1);
	free(c);
}

size_t
mda_running(void)
{
	struct mda_child *c;
	size_t		 n = 0;

	TAILQ_FOREACH(c, &children, entry)
		n++;
	return n;
}
