/*
 * filter_exec.c - the parent's half of proc filters: it starts every
 * `proc` and `filter ... proc-exec` program, as the user, group and chroot
 * the configuration names (the daemon's unprivileged user by default),
 * hands the program's stdin/stdout socket to the lookup role, which speaks
 * the smtpd-filters protocol with it (filter.c, filter_proc.c), and logs
 * what the program writes to stderr, line by line, under its name.
 *
 * A program that exits is started again; the pause before each restart
 * doubles with every quick failure in a row (0 s, then 1 s up to 60 s), so
 * a program that cannot start does not make the parent fork in a loop.
 * The lookup role asks for a restart when a program breaks the protocol
 * (IMSG_FILTER_RESTART): the parent kills it and the same path applies.
 * Nothing here ever stops the daemon.
 */
#include <sys/types.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "smtpd.h"

#define FX_BACKOFF_MAX		60	/* seconds between restarts, at most */
#define FX_STABLE		60	/* alive this long: failures forgotten */
#define FX_STDERR_LINE		1024	/* longer stderr lines are cut */
#define FX_DIR_ENV		"MODSMTPD_FILTER_DIR"

/* Where OpenSMTPD packages put filters: Debian's first, then upstream's. */
static const char *const fx_dirs[] = {
	"/usr/libexec/opensmtpd",
	"/usr/local/libexec/smtpd",
	"/usr/libexec/smtpd",
};

struct fx_proc {
	TAILQ_ENTRY(fx_proc)	 entry;
	const char		*name;
	const char		*command;
	const char		*user;		/* NULL: SMTPD_USER */
	const char		*group;		/* NULL: the user's group */
	const char		*chroot;
	pid_t			 pid;		/* 0 while not running */
	time_t			 started;
	unsigned		 fails;		/* quick failures in a row */
	int			 killed;	/* we asked it to die */
	struct event		*restart;
};
static TAILQ_HEAD(, fx_proc) fx_procs = TAILQ_HEAD_INITIALIZER(fx_procs);
static int	 fx_stopping;

static void	fx_spawn(struct fx_proc *);

/* ------------------------------------------------------------- stderr */

/* One warning per line, "name: line", as OpenSMTPD logs them. */
static void
fx_stderr_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer	*in = bufferevent_get_input(bev);
	const char	*name = arg;
	char		*line;
	size_t		 len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		log_warnx("%s: %.*s", name, (int)(len < FX_STDERR_LINE ? len :
		    FX_STDERR_LINE), line);
		free(line);
	}
	/* A line without end that keeps growing is logged in pieces. */
	while (evbuffer_get_length(in) >= FX_STDERR_LINE) {
		char	 buf[FX_STDERR_LINE];

		evbuffer_remove(in, buf, sizeof(buf));
		log_warnx("%s: %.*s", name, (int)sizeof(buf), buf);
	}
}

static void
fx_stderr_event(struct bufferevent *bev, short what, void *arg)
{
	fx_stderr_read(bev, arg);
	bufferevent_free(bev);		/* closes our end */
}

static void
fx_stderr_watch(struct fx_proc *p, int fd)
{
	struct bufferevent *bev;

	evutil_make_socket_nonblocking(fd);
	bev = bufferevent_socket_new(env.evbase, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		fatalx("filter: bufferevent_socket_new");
	bufferevent_setcb(bev, fx_stderr_read, NULL, fx_stderr_event,
	    (void *)p->name);
	bufferevent_enable(bev, EV_READ);
}

/* ----------------------------------------------------------- the child */

/*
 * "cmd args" with a relative cmd: the first filter directory that has
 * cmd, MODSMTPD_FILTER_DIR first; OpenSMTPD's rule otherwise.
 */
static char *
fx_command(const char *command)
{
	const char	*env_dir = getenv(FX_DIR_ENV);
	const char	*dir = NULL;
	char		*path, *out;
	size_t		 n = strcspn(command, " \t"), i;

	if (command[0] == '/')
		return xstrdup(command);
	if (env_dir != NULL && env_dir[0] != '\0')
		dir = env_dir;
	for (i = 0; dir == NULL && i < sizeof(fx_dirs) / sizeof(fx_dirs[0]);
	    i++) {
		xasprintf(&path, "%s/%.*s", fx_dirs[i], (int)n, command);
		if (access(path, X_OK) == 0)
			dir = fx_dirs[i];
		free(path);
	}
	xasprintf(&out, "%s/%s", dir ? dir : fx_dirs[0], command);
	return out;
}

struct fx_cred {
	int	 drop;
	uid_t	 uid;
	gid_t	 gid;
};

/* Who the program runs as; -1 (logged) when the names do not exist. */
static int
fx_cred(const struct fx_proc *p, struct fx_cred *c)
{
	const char	*user = p->user ? p->user : SMTPD_USER;
	struct passwd	*pw;
	struct group	*gr;

	c->drop = env.privileged;
	if (!c->drop)
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		log_warnx("filter %s: user %s does not exist", p->name, user);
		return -1;
	}
	c->uid = pw->pw_uid;
	c->gid = pw->pw_gid;
	if (p->group != NULL) {
		if ((gr = getgrnam(p->group)) == NULL) {
			log_warnx("filter %s: group %s does not exist",
			    p->name, p->group);
			return -1;
		}
		c->gid = gr->gr_gid;
	}
	return 0;
}

/* Between fork and exec. */
static void __attribute__((noreturn))
fx_exec(const struct fx_proc *p, const struct fx_cred *c, const char *cmd,
    int data, int err)
{
	char		*shcmd;
	int		 sig;

	if (p->chroot && (chroot(p->chroot) == -1 || chdir("/") == -1))
		_exit(126);
	if (c->drop && (setgroups(1, &c->gid) == -1 ||
	    setresgid(c->gid, c->gid, c->gid) == -1 ||
	    setresuid(c->uid, c->uid, c->uid) == -1))
		_exit(126);
	/* Above 2 first, so no dup2 below is a no-op keeping CLOEXEC. */
	if ((data = fcntl(data, F_DUPFD, 3)) == -1 ||
	    (err = fcntl(err, F_DUPFD, 3)) == -1 ||
	    dup2(data, STDIN_FILENO) == -1 ||
	    dup2(data, STDOUT_FILENO) == -1 ||
	    dup2(err, STDERR_FILENO) == -1)
		_exit(126);
	if (close_range(3, ~0U, 0) == -1)
		_exit(126);
	setsid();
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	{
		sigset_t set;

		sigemptyset(&set);
		sigprocmask(SIG_SETMASK, &set, NULL);
	}
	/* After setuid, which clears it: a filter never outlives us. */
	prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
	xasprintf(&shcmd, "exec %s", cmd);
	execl("/bin/sh", "sh", "-c", shcmd, (char *)NULL);
	_exit(127);
}

static void
fx_restart_cb(evutil_socket_t fd, short ev, void *arg)
{
	fx_spawn(arg);
}

/* The next start, after the pause the failures so far call for. */
static long
fx_schedule(struct fx_proc *p)
{
	struct timeval	 tv = { 0, 0 };

	if (p->fails > 0)
		tv.tv_sec = p->fails > 6 ? FX_BACKOFF_MAX :
		    (1L << (p->fails - 1)) < FX_BACKOFF_MAX ?
		    (1L << (p->fails - 1)) : FX_BACKOFF_MAX;
	p->fails++;
	evtimer_add(p->restart, &tv);
	return (long)tv.tv_sec;
}

static void
fx_spawn(struct fx_proc *p)
{
	struct fx_cred	 cred;
	struct ipc_out	*o;
	char		*cmd;
	int		 data[2], err[2];
	pid_t		 pid;

	if (fx_stopping)
		return;
	if (fx_cred(p, &cred) == -1) {
		fx_schedule(p);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, data) == -1 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, err) == -1)
		fatal("filter: socketpair");
	cmd = fx_command(p->command);
	if ((pid = fork()) == -1) {
		log_warn("filter %s: fork", p->name);
		close(data[0]);
		close(data[1]);
		close(err[0]);
		close(err[1]);
		free(cmd);
		fx_schedule(p);
		return;
	}
	if (pid == 0)
		fx_exec(p, &cred, cmd, data[1], err[1]);
	log_debug("filter %s: started %s (pid %ld)", p->name, cmd, (long)pid);
	free(cmd);
	close(data[1]);
	close(err[1]);
	p->pid = pid;
	p->started = time(NULL);
	p->killed = 0;
	fx_stderr_watch(p, err[0]);
	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_FILTER_PROC);
	ipc_put_str(o, p->name);
	ipc_end(o, data[0]);
}

/* ------------------------------------------------------------ the API */

static void
fx_add(const char *name, const char *command, const char *user,
    const char *group, const char *chroot)
{
	struct fx_proc	*p = xcalloc(1, sizeof(*p));

	p->name = name;
	p->command = command;
	p->user = user;
	p->group = group;
	p->chroot = chroot;
	p->restart = evtimer_new(env.evbase, fx_restart_cb, p);
	if (p->restart == NULL)
		fatalx("filter: evtimer_new");
	TAILQ_INSERT_TAIL(&fx_procs, p, entry);
}

/* Once the roles run: every declared filter program starts. */
void
filter_exec_start(void)
{
	const struct proc	*pr;
	const struct filter	*f;
	struct fx_proc		*p;

	TAILQ_FOREACH(pr, &env.conf->procs, entry)
		fx_add(pr->name, pr->command, pr->user, pr->group, pr->chroot);
	TAILQ_FOREACH(f, &env.conf->filters, entry)
		if (f->type == F_PROC_EXEC)
			fx_add(f->name, f->command, f->user, f->group,
			    f->chroot);
	TAILQ_FOREACH(p, &fx_procs, entry)
		fx_spawn(p);
}

/* 1 when pid was a filter program (restarted unless we are stopping). */
int
filter_exec_exited(pid_t pid, int status)
{
	struct fx_proc	*p;
	char		 how[64];
	long		 delay;

	TAILQ_FOREACH(p, &fx_procs, entry)
		if (p->pid == pid)
			break;
	if (p == NULL)
		return 0;
	p->pid = 0;
	if (fx_stopping)
		return 1;
	if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "killed by signal %d",
		    WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "exited with status %d",
		    WEXITSTATUS(status));
	if (time(NULL) - p->started >= FX_STABLE)
		p->fails = 0;
	delay = fx_schedule(p);
	if (p->killed)
		log_info("filter %s: %s, restarting in %lds", p->name, how,
		    delay);
	else
		log_warnx("filter %s: %s, restarting in %lds", p->name, how,
		    delay);
	return 1;
}

/* The lookup role found the program broken (it logged why). */
void
filter_exec_restart(struct ipc_msg *m)
{
	const char	*name = ipc_get_str(m);
	struct fx_proc	*p;

	ipc_get_end(m);
	TAILQ_FOREACH(p, &fx_procs, entry)
		if (name && strcmp(p->name, name) == 0 && p->pid > 0) {
			p->killed = 1;
			kill(p->pid, SIGKILL);
		}
}

/* Shutdown: no more restarts; the programs get SIGTERM. */
void
filter_exec_stop(void)
{
	struct fx_proc	*p;

	fx_stopping = 1;
	TAILQ_FOREACH(p, &fx_procs, entry) {
		evtimer_del(p->restart);
		if (p->pid > 0)
			kill(p->pid, SIGTERM);
	}
}
