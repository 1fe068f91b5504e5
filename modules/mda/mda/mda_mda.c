/*
 * mda_mda.c - the `mda` delivery method: pipe the message into a command.
 *
 * deliver() runs in the delivery worker, already as the recipient and in
 * the home directory.  The method argument is the complete command line,
 * expanded and sanitised by the host; it runs under /bin/sh -c with the
 * message on stdin, in a session of its own, with a clean environment and
 * no descriptor but 0, 1 and 2.  stdout and stderr go to one pipe of
 * which only the tail is kept: its last non-empty line is the reason
 * given when the command fails.  The exit status maps to a result the way
 * sysexits(3) intends: temporary conditions are retried, the rest bounce.
 *
 * Uses only sdk/modsmtpd.h and libc.
 */
/* close_range, pipe2: config.h has it in tree, out of tree there is none. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <sys/types.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "modsmtpd.h"

/* The build force-includes config.h; out of tree there is none. */
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

#define MC_TIMEOUT		600	/* seconds a command may run */
#define MC_KILL_GRACE		5	/* seconds from SIGTERM to SIGKILL */
#define MC_SLICE_MS		50	/* exit checks without a pidfd */
#define MC_TAIL			512	/* output bytes kept for a reason */
#define MC_READSIZE		4096
#define MC_DRAIN_READS		16	/* a default pipe's worth */
#define MC_ERRSIZE		512
#define MC_SHELL		"/bin/sh"
#define MC_PATH			"/usr/bin:/bin:/usr/sbin:/sbin"

#define MC_ENV_MAX		16	/* variables, with room to spare */
#define MC_VALUE_MAX		4096	/* longest value passed on */
#define MC_ENV_BUFSIZE		(16 * 1024)

/* The environment of the command, built before the fork. */
struct mc_env {
	char	*vars[MC_ENV_MAX + 1];		/* NULL-terminated */
	char	 buf[MC_ENV_BUFSIZE];
	size_t	 used;
	int	 n;
};

/* One run of the command. */
struct mc_run {
	const struct msd_host	*host;
	msd_result		*res;
	pid_t			 pid;
	int			 out;		/* pipe read end, or -1 */
	int			 pidfd;		/* -1: poll in slices */
	int			 status;	/* from waitpid */
	char			 tail[MC_TAIL];	/* last output bytes */
	size_t			 taillen;
};

static int __attribute__((format(printf, 3, 4)))
mc_error(struct mc_run *run, int code, const char *fmt, ...)
{
	char	 buf[MC_ERRSIZE];
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		buf[0] = '\0';
	run->host->result_error(run->res, buf);
	return code;
}

/* -------------------------------------------------------- environment */

/*
 * Adds NAME=value.  A value that is too long or holds a line break is
 * left out rather than cut: a truncated address would name someone else,
 * and a line break could forge a variable for tools that parse env output.
 */
static void
env_add(struct mc_env *e, const struct msd_host *host, const char *name,
    const char *value, size_t len)
{
	size_t	 left = sizeof(e->buf) - e->used;
	int	 n;

	if (len > MC_VALUE_MAX || memchr(value, '\n', len) != NULL ||
	    memchr(value, '\r', len) != NULL ||
	    memchr(value, '\0', len) != NULL) {
		host->log(MSD_LOG_WARNING, "%s left out of the "
		    "environment: too long or not one line", name);
		return;
	}
	if (e->n >= MC_ENV_MAX)
		return;
	n = snprintf(e->buf + e->used, left, "%s=%.*s", name, (int)len, value);
	if (n < 0 || (size_t)n >= left) {
		host->log(MSD_LOG_WARNING, "%s left out of the "
		    "environment: no room", name);
		return;
	}
	e->vars[e->n++] = e->buf + e->used;
	e->vars[e->n] = NULL;
	e->used += (size_t)n + 1;
}

static void
env_str(struct mc_env *e, const struct msd_host *host, const char *name,
    const char *value)
{
	if (value != NULL)
		env_add(e, host, name, value, strlen(value));
}

/* LOCAL, DOMAIN and EXTENSION from the final recipient address. */
static void
env_dest(struct mc_env *e, const struct msd_host *host, const char *dest)
{
	const char	*at, *plus;
	size_t		 local;

	if (dest == NULL)
		return;
	at = strrchr(dest, '@');
	local = at != NULL ? (size_t)(at - dest) : strlen(dest);
	env_add(e, host, "LOCAL", dest, local);
	env_str(e, host, "DOMAIN", at != NULL ? at + 1 : "");
	/* Only a non-empty extension is one: "bob+@" has none. */
	plus = memchr(dest, '+', local);
	if (plus != NULL && plus + 1 < dest + local)
		env_add(e, host, "EXTENSION", plus + 1,
		    (size_t)(dest + local - plus - 1));
}

/* Built from scratch: nothing of the worker's own environment leaks. */
static void
env_build(struct mc_env *e, const struct msd_host *host,
    const msd_envelope *ev)
{
	const char	*user = host->env_get(ev, MSD_ENV_USER);

	memset(e, 0, sizeof(*e));
	env_str(e, host, "PATH", MC_PATH);
	env_str(e, host, "HOME", host->env_get(ev, MSD_ENV_HOMEDIR));
	env_str(e, host, "USER", user);
	env_str(e, host, "LOGNAME", user);
	env_str(e, host, "SHELL", MC_SHELL);
	env_str(e, host, "SENDER", host->env_get(ev, MSD_ENV_SENDER));
	env_str(e, host, "RECIPIENT", host->env_get(ev, MSD_ENV_DEST));
	env_str(e, host, "ORIGINAL_RECIPIENT", host->env_get(ev, MSD_ENV_RCPT));
	env_dest(e, host, host->env_get(ev, MSD_ENV_DEST));
}

/* -------------------------------------------------------------- child */

/*
 * Reports on the pipe, which the parent reads, and exits EX_OSERR so the
 * delivery is retried.  The worker is single-threaded, so stdio is safe
 * here after the fork.
 */
static void __attribute__((noreturn))
child_die(int out, const char *what)
{
	char	 buf[256];
	ssize_t	 w;
	int	 n;

	n = snprintf(buf, sizeof(buf), "mda: cannot %s: %s\n", what,
	    strerror(errno));
	if (n > 0) {
		w = write(out, buf, (size_t)n < sizeof(buf) ? (size_t)n :
		    sizeof(buf) - 1);
		(void)w;	/* nothing more to do if even this fails */
	}
	_exit(EX_OSERR);
}

/* Nothing the worker set up for itself carries over into the command. */
static void
child_signals(void)
{
	sigset_t	 none;
	int		 sig;

	/* SIGKILL and SIGSTOP refuse, and that is fine. */
	for (sig = 1; sig < NSIG; sig++)
		(void)signal(sig, SIG_DFL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static void __attribute__((noreturn))
child_run(int msgfd, int out, const char *cmd, char *const envp[])
{
	int	 in, o;

	child_signals();
	if (setsid() == -1)
		child_die(out, "start a session");
	/*
	 * Both descriptors go above 2 first: either may be 0, 1 or 2 itself,
	 * and dup2 onto the same number would keep its close-on-exec flag.
	 */
	if ((in = fcntl(msgfd, F_DUPFD_CLOEXEC, 3)) == -1 ||
	    (o = fcntl(out, F_DUPFD_CLOEXEC, 3)) == -1)
		child_die(out, "duplicate descriptors");
	if (dup2(in, STDIN_FILENO) == -1 || dup2(o, STDOUT_FILENO) == -1 ||
	    dup2(o, STDERR_FILENO) == -1)
		child_die(o, "set up stdin and stdout");
	/* The spool, the worker's channels: not the user's to reach. */
	if (close_range(3, ~0U, 0) == -1)
		child_die(STDERR_FILENO, "close descriptors");
	execle(MC_SHELL, "sh", "-c", cmd, (char *)NULL, envp);
	child_die(STDERR_FILENO, "run " MC_SHELL);
}

/* ------------------------------------------------------------- output */

/* Keeps the last MC_TAIL bytes: a noisy command costs no memory. */
static void
tail_add(struct mc_run *run, const char *buf, size_t len)
{
	size_t	 drop;

	if (len >= sizeof(run->tail)) {
		memcpy(run->tail, buf + len - sizeof(run->tail),
		    sizeof(run->tail));
		run->taillen = sizeof(run->tail);
		return;
	}
	if (run->taillen + len > sizeof(run->tail)) {
		drop = run->taillen + len - sizeof(run->tail);
		memmove(run->tail, run->tail + drop, run->taillen - drop);
		run->taillen -= drop;
	}
	memcpy(run->tail + run->taillen, buf, len);
	run->taillen += len;
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\0';
}

/* The last line with something on it, trimmed, into line; "" if none. */
static void
tail_line(const struct mc_run *run, char *line, size_t size)
{
	size_t	 end = run->taillen, start, len;

	while (end > 0 && is_blank(run->tail[end - 1]))
		end--;
	start = end;
	while (start > 0 && run->tail[start - 1] != '\n')
		start--;
	while (start < end && is_blank(run->tail[start]))
		start++;
	len = end - start;
	if (len >= size)
		len = size - 1;
	memcpy(line, run->tail + start, len);
	line[len] = '\0';
	/* A NUL in the output would cut the reason short. */
	while (len-- > 0)
		if (line[len] == '\0')
			line[len] = ' ';
}

/* One read: 0 on data, -1 at EOF or on error (the pipe is then closed). */
static int
out_read(struct mc_run *run)
{
	char	 buf[MC_READSIZE];
	ssize_t	 n;

	if ((n = read(run->out, buf, sizeof(buf))) == -1 && errno == EINTR)
		return 0;
	if (n <= 0) {
		close(run->out);
		run->out = -1;
		return -1;
	}
	tail_add(run, buf, (size_t)n);
	return 0;
}

/*
 * What is already in the pipe once the command is gone, without waiting:
 * bounded, since a process left in the background may write for ever.
 */
static void
out_drain(struct mc_run *run)
{
	struct pollfd	 pfd;
	int		 i;

	for (i = 0; i < MC_DRAIN_READS && run->out != -1; i++) {
		pfd.fd = run->out;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 0) <= 0 || out_read(run) == -1)
			break;
	}
	if (run->out != -1) {
		close(run->out);
		run->out = -1;
	}
}

/* ------------------------------------------------------------ waiting */

static int64_t
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 once the child has exited (not reaped: its pid stays ours), else 0. */
static int
child_exited(const struct mc_run *run)
{
	siginfo_t	 si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)run->pid, &si, WEXITED | WNOHANG | WNOWAIT) ==
	    -1)
		return errno != EINTR;
	return si.si_pid == run->pid;
}

/*
 * Waits until the child exits or deadline, reading its output meanwhile:
 * 0 once it exited, -1 at the deadline.  The exit, not the end of the
 * output, ends the wait: a command may close its stdout early, and a
 * process it left in the background may hold the pipe for ever.
 */
static int
run_wait(struct mc_run *run, int64_t deadline)
{
	struct pollfd	 pfd[2];
	int64_t		 left;
	int		 n;

	for (;;) {
		if (child_exited(run)) {
			out_drain(run);
			return 0;
		}
		if ((left = deadline - now_ms()) <= 0)
			return -1;
		if (run->pidfd == -1 && left > MC_SLICE_MS)
			left = MC_SLICE_MS;
		pfd[0].fd = run->out;		/* poll skips -1 */
		pfd[0].events = POLLIN;
		pfd[1].fd = run->pidfd;
		pfd[1].events = POLLIN;
		n = poll(pfd, 2, (int)left);
		if (n > 0 && run->out != -1 &&
		    (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
			(void)out_read(run);
	}
}

static int
run_reap(struct mc_run *run)
{
	pid_t	 r;

	while ((r = waitpid(run->pid, &run->status, 0)) == -1 &&
	    errno == EINTR)
		;
	return r == run->pid ? 0 : -1;
}

/* The whole process group: the shell and whatever it started. */
static void
run_kill(struct mc_run *run)
{
	(void)kill(-run->pid, SIGTERM);
	(void)run_wait(run, now_ms() + MC_KILL_GRACE * 1000);
	(void)kill(-run->pid, SIGKILL);
	(void)run_reap(run);
}

/* --------------------------------------------------------------- run */

static int
pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	return -1;
#endif
}

/*
 * Forks the command.  All signals stay blocked across the fork, so none
 * runs a handler of the worker in the child before it resets them.
 */
static int
run_start(struct mc_run *run, int fd, const char *cmd, struct mc_env *e)
{
	sigset_t	 all, old;
	int		 p[2], saved;

	if (pipe2(p, O_CLOEXEC) == -1)
		return mc_error(run, MSD_TEMPFAIL, "mda: cannot create a "
		    "pipe: %s", strerror(errno));
	sigfillset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, &old);
	if ((run->pid = fork()) == 0)
		child_run(fd, p[1], cmd, e->vars);
	saved = errno;
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[1]);
	if (run->pid == -1) {
		close(p[0]);
		return mc_error(run, MSD_TEMPFAIL, "mda: cannot fork: %s",
		    strerror(saved));
	}
	run->out = p[0];
	run->pidfd = pidfd_of(run->pid);
	return MSD_OK;
}

static int
is_tempfail(int code)
{
	return code == EX_TEMPFAIL || code == EX_OSERR || code == EX_IOERR ||
	    code == EX_CANTCREAT || code == EX_OSFILE;
}

/* The exit status as a result, with the last line of output as reason. */
static int
run_result(struct mc_run *run)
{
	char	 line[MC_TAIL + 1];
	char	 what[64];
	int	 code, r;

	if (WIFEXITED(run->status) && WEXITSTATUS(run->status) == 0)
		return MSD_OK;
	if (WIFEXITED(run->status)) {
		code = WEXITSTATUS(run->status);
		r = is_tempfail(code) ? MSD_TEMPFAIL : MSD_PERMFAIL;
		snprintf(what, sizeof(what), "exited with status %d", code);
	} else if (WIFSIGNALED(run->status)) {
		r = MSD_TEMPFAIL;
		snprintf(what, sizeof(what), "killed by signal %d",
		    WTERMSIG(run->status));
	} else {
		r = MSD_TEMPFAIL;
		snprintf(what, sizeof(what), "ended with wait status %#x",
		    (unsigned int)run->status);
	}
	tail_line(run, line, sizeof(line));
	return mc_error(run, r, "command %s%s%s", what, line[0] ? ": " : "",
	    line);
}

static int
mc_deliver(const struct msd_host *host, int fd, const msd_envelope *ev,
    msd_result *res)
{
	struct mc_env	 e;
	struct mc_run	 run;
	const char	*cmd, *p;
	int		 r;

	memset(&run, 0, sizeof(run));
	run.host = host;
	run.res = res;
	run.out = run.pidfd = -1;
	cmd = host->env_get(ev, MSD_ENV_MDA_ARG);
	for (p = cmd; p != NULL && is_blank(*p) && *p != '\0'; p++)
		;
	/* sh -c "" succeeds: the message would be dropped without a word. */
	if (p == NULL || *p == '\0')
		return mc_error(&run, MSD_PERMFAIL, "mda: empty command");
	/* The whole message, whatever the worker read of it before. */
	if (lseek(fd, 0, SEEK_SET) == -1 && errno != ESPIPE)
		return mc_error(&run, MSD_TEMPFAIL, "mda: cannot rewind the "
		    "message: %s", strerror(errno));
	env_build(&e, host, ev);
	if ((r = run_start(&run, fd, cmd, &e)) != MSD_OK)
		return r;
	if (run_wait(&run, now_ms() + MC_TIMEOUT * 1000) == -1) {
		run_kill(&run);
		r = mc_error(&run, MSD_TEMPFAIL, "command timed out after "
		    "%ds", MC_TIMEOUT);
	} else if (run_reap(&run) == -1)
		/* Reaped by someone else (SIGCHLD ignored?): status unknown. */
		r = mc_error(&run, MSD_TEMPFAIL, "mda: cannot wait for the "
		    "command: %s", strerror(errno));
	else
		r = run_result(&run);
	if (run.out != -1)
		close(run.out);
	if (run.pidfd != -1)
		close(run.pidfd);
	return r;
}

static const struct msd_mda_ops mda_ops = {
	.size = MSD_MDA_OPS_SIZE,
	.deliver = mc_deliver,
};

static const struct msd_module mda_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD | MSD_MF_MAY_BLOCK,
	.kind = MSD_KIND_MDA,
	.name = "mda",
	.version = PACKAGE_VERSION,
	.ops = &mda_ops,
	.description = "pipe the message into a command",
};

MSD_MODULE(mda)
{
	(void)host_major;
	(void)host_minor;
	return &mda_module;
}
