/*
 * table_proc.c - the `proc` table backend: a table served by an external
 * program, as OpenSMTPD's table-* programs are.
 *
 * `table NAME proc:X[:ARG]` runs table-X, found in the table program
 * directory (MODSMTPD_TABLE_DIR when set, then the directories OpenSMTPD
 * packages install them in), or X itself when X is an absolute path, with
 * argv {NAME, ARG}.  One end of a socketpair is the program's stdin and
 * stdout: old programs answer on fd 0, new ones on fd 1.  It inherits
 * stderr and no other descriptor, and its environment holds PATH only.
 * It runs as the process that opened the table.
 *
 * Both table protocols are spoken: the line protocol "0.1" of OpenSMTPD
 * 7.6 and later, and the imsg protocol (API version 2) of older releases,
 * which Debian's opensmtpd-extras binaries speak.  Which one a program
 * speaks is found out when the table is opened (tp_detect) and kept for
 * its restarts.
 *
 * Lookups run synchronously in the lookup process, so every exchange has
 * a deadline.  A program that misses it, dies, or answers out of protocol
 * is killed and reaped, and the lookup fails temporarily: never "not
 * found".  The next lookup starts it again, but only after a pause that
 * doubles with every failure in a row (1 s up to 60 s), so a program that
 * cannot start does not make the lookup process fork in a loop; lookups
 * during the pause fail at once.
 *
 * Uses only sdk/modsmtpd.h and libc.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	1	/* close_range */
#endif

#include <sys/types.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "modsmtpd.h"

/* The build force-includes config.h; out of tree there is none. */
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

#define TP_REQUEST_MS		30000	/* an answer, or the program dies;
					   the host's "table-timeout" first */
#define TP_DETECT_MS		1000	/* first register line, see tp_detect */
#define TP_CLOSE_MS		1000	/* exit after close, then SIGKILL */
#define TP_GONE_MS		200	/* for the exit status of a closer */
#define TP_BACKOFF_MIN		1	/* seconds before a restart ... */
#define TP_BACKOFF_MAX		60	/* ... doubling up to this */
#define TP_LINE_MAX		(64 * 1024)	/* a request or reply line */
#define TP_KEY_MAX		8192	/* fits an imsg request too */
#define TP_NAME_MAX		1024	/* the table name, in every request */
#define TP_ERR_MAX		256	/* as much as msd_result keeps */
#define TP_DIR_ENV		"MODSMTPD_TABLE_DIR"
#define TP_ENV_PATH	\
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/*
 * Line protocol.  We announce the release that introduced the protocol:
 * a program may compare the version, and ours means nothing to it.
 */
#define TP_PROTOCOL		"0.1"
#define TP_SMTPD_VERSION	"7.6.0"

/* imsg protocol, API version 2, in native byte order (protocols.md 3.2). */
#define IM_VERSION		2
#define IM_MAX			16384	/* MAX_IMSGSIZE, header included */
#define IM_NAME_MAX		2048	/* LINE_MAX in table_open_params */
#define IM_OK			0
#define IM_FAIL			1
#define IM_OPEN			2
#define IM_CLOSE		3
#define IM_UPDATE		4
#define IM_CHECK		5
#define IM_LOOKUP		6
#define IM_FETCH		7

struct im_hdr {
	uint32_t	type;
	uint16_t	len;		/* header included */
	uint16_t	flags;
	uint32_t	peerid;
	uint32_t	pid;
};
_Static_assert(sizeof(struct im_hdr) == 16, "imsg header is 16 bytes");

/* Which protocol the program speaks. */
#define TP_UNKNOWN		0
#define TP_LINE			1
#define TP_IMSG			2

/* K_AUTH of OpenSMTPD 7.6: a program may register it; no lookup uses it. */
#define TP_TS_AUTH		0x1000

#define TP_SERVICES	(MSD_TS_ALIAS | MSD_TS_DOMAIN | MSD_TS_CREDENTIALS | \
	MSD_TS_NETADDR | MSD_TS_USERINFO | MSD_TS_SOURCE | MSD_TS_MAILADDR | \
	MSD_TS_ADDRNAME | MSD_TS_MAILADDRMAP | MSD_TS_RELAYHOST | \
	MSD_TS_STRING | MSD_TS_REGEX)

/*
 * list: OpenSMTPD only ever matches these (check), so that is what a
 * program expects for them; a match's value is the key.  The others are
 * looked up for their value.
 */
struct service {
	uint32_t	 bit;
	const char	*name;
	int		 list;
};

static const struct service services[] = {
	{ MSD_TS_ALIAS, "alias", 0 },
	{ MSD_TS_DOMAIN, "domain", 1 },
	{ MSD_TS_CREDENTIALS, "credentials", 0 },
	{ MSD_TS_NETADDR, "netaddr", 1 },
	{ MSD_TS_USERINFO, "userinfo", 0 },
	{ MSD_TS_SOURCE, "source", 1 },
	{ MSD_TS_MAILADDR, "mailaddr", 1 },
	{ MSD_TS_ADDRNAME, "addrname", 0 },
	{ MSD_TS_MAILADDRMAP, "mailaddrmap", 0 },
	{ MSD_TS_RELAYHOST, "relayhost", 0 },
	{ MSD_TS_STRING, "string", 1 },
	{ MSD_TS_REGEX, "regex", 1 },
	{ TP_TS_AUTH, "auth", 1 },
};

/* Where table-X is looked for after MODSMTPD_TABLE_DIR; Debian's last. */
static const char *const dirs[] = {
	"/usr/local/libexec/smtpd",
	"/usr/libexec/smtpd",
	"/usr/libexec/opensmtpd",
};

struct tproc {
	const struct msd_host	*host;
	char			*name;		/* the table's */
	char			*arg;		/* argv[1], NULL for none */
	char			 prog[PATH_MAX];
	const char		*label;		/* prog's base name */
	int			 proto;
	uint32_t		 services;	/* registered (line protocol) */
	pid_t			 pid;		/* -1: not running */
	int			 fd;
	int			 gone;		/* it closed the connection */
	int			 timedout;	/* the deadline passed */
	unsigned int		 delay;		/* next restart pause, s */
	int64_t			 retry_at;	/* monotonic ms */
	int64_t			 deadline;	/* of the exchange under way */
	int			 limit_ms;	/* its length, for messages */
	int			 request_ms;	/* for one answer */
	char			 id[9];		/* of the last line request */
	char			 err[TP_ERR_MAX];	/* why a step failed */
	size_t			 rlen;
	char			 rbuf[TP_LINE_MAX + 1];
};

/* ------------------------------------------------------------ helpers */

static int64_t
tp_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Records why a step failed (without the program's name); returns -1. */
static int __attribute__((format(printf, 2, 3)))
tp_error(struct tproc *t, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	if (vsnprintf(t->err, sizeof(t->err), fmt, ap) < 0)
		t->err[0] = '\0';
	va_end(ap);
	return -1;
}

/* "table-X: why" as the lookup's reason; MSD_TEMPFAIL. */
static int __attribute__((format(printf, 3, 4)))
tp_report(struct tproc *t, msd_result *res, const char *fmt, ...)
{
	char	 what[TP_ERR_MAX], msg[TP_ERR_MAX];
	va_list	 ap;

	va_start(ap, fmt);
	if (vsnprintf(what, sizeof(what), fmt, ap) < 0)
		what[0] = '\0';
	va_end(ap);
	/* Truncation is fine: the host keeps this much anyway. */
	if (snprintf(msg, sizeof(msg), "%s: %s", t->label, what) < 0)
		msg[0] = '\0';
	if (res != NULL)
		t->host->result_error(res, msg);
	else
		t->host->log(MSD_LOG_WARNING, "table %s: %s", t->name, msg);
	return MSD_TEMPFAIL;
}

static const struct service *
service_bit(uint32_t bit)
{
	size_t	 i;

	for (i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		if (services[i].bit == bit)
			return &services[i];
	return NULL;
}

static const struct service *
service_name(const char *name)
{
	size_t	 i;

	for (i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		if (strcmp(services[i].name, name) == 0)
			return &services[i];
	return NULL;
}

/* A fresh random id, never the previous one: a late reply cannot match. */
static void
tp_newid(struct tproc *t)
{
	static uint32_t	 seq;
	char		 prev[sizeof(t->id)];
	uint32_t	 v;

	memcpy(prev, t->id, sizeof(prev));
	do {
		if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
			v = (++seq * 2654435761U) ^ (uint32_t)tp_now();
		snprintf(t->id, sizeof(t->id), "%08x", v);
	} while (strcmp(t->id, prev) == 0);
}

/* ------------------------------------------------------ the program */

static int
is_program(const char *path)
{
	struct stat	 sb;

	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    access(path, X_OK) == 0;
}

/* dir/table-x when it is there; 1 found, 0 not, -1 path too long. */
static int
try_dir(struct tproc *t, const char *dir, const char *x)
{
	int	 n;

	n = snprintf(t->prog, sizeof(t->prog), "%s/table-%s", dir, x);
	if (n < 0 || (size_t)n >= sizeof(t->prog))
		return -1;
	return is_program(t->prog);
}

/* Looks for table-x in the program directories, in order. */
static int
find_program(struct tproc *t, const char *x)
{
	const char	*env = getenv(TP_DIR_ENV);
	char		 list[1024];
	size_t		 i, len = 0;
	int		 n;

	list[0] = '\0';
	if (env != NULL && env[0] != '\0') {
		if (try_dir(t, env, x) == 1)
			return MSD_OK;
		n = snprintf(list, sizeof(list), "%s, ", env);
		len = n > 0 && (size_t)n < sizeof(list) ? (size_t)n : 0;
	}
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (try_dir(t, dirs[i], x) == 1)
			return MSD_OK;
		n = snprintf(list + len, sizeof(list) - len, "%s%s", dirs[i],
		    i + 1 < sizeof(dirs) / sizeof(dirs[0]) ? ", " : "");
		if (n > 0 && (size_t)n < sizeof(list) - len)
			len += n;
	}
	t->host->log(MSD_LOG_ERR, "table %s: no table-%s in %s", t->name, x,
	    list);
	return MSD_PERMFAIL;
}

/* "X[:ARG]": the program and its argument. */
static int
parse_config(struct tproc *t, const char *config)
{
	const char	*colon = strchr(config, ':');
	char		 x[PATH_MAX];
	size_t		 n = colon != NULL ? (size_t)(colon - config) :
			    strlen(config);

	if (n == 0 || n >= sizeof(x)) {
		t->host->log(MSD_LOG_ERR, "table %s: \"%s\": %s", t->name,
		    config, n == 0 ? "no program (proc:NAME[:ARG])" :
		    "program name too long");
		return MSD_PERMFAIL;
	}
	memcpy(x, config, n);
	x[n] = '\0';
	/* OpenSMTPD passes what follows the colon, even when empty. */
	if (colon != NULL && (t->arg = strdup(colon + 1)) == NULL) {
		t->host->log(MSD_LOG_ERR, "table %s: out of memory", t->name);
		return MSD_TEMPFAIL;
	}
	if (x[0] != '/') {
		if (strchr(x, '/') != NULL) {
			t->host->log(MSD_LOG_ERR, "table %s: \"%s\": a program"
			    " is a name or an absolute path", t->name, x);
			return MSD_PERMFAIL;
		}
		return find_program(t, x);
	}
	memcpy(t->prog, x, n + 1);
	if (!is_program(t->prog)) {
		t->host->log(MSD_LOG_ERR, "table %s: %s is not an executable"
		    " file", t->name, t->prog);
		return MSD_PERMFAIL;
	}
	return MSD_OK;
}

/* ----------------------------------------------------- the child side */

static void
close_from(int lowfd, long maxfd)
{
	long	 fd;

#if defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	if (close_range((unsigned int)lowfd, ~0U, 0) == 0)
		return;
#endif
	for (fd = lowfd; fd < maxfd; fd++)
		(void)close((int)fd);
}

/*
 * In the child, between fork and exec: async-signal-safe calls only.
 * The socket goes above 2 first, so that neither dup2 is a no-op that
 * would leave close-on-exec set on fd 0 or 1.
 */
/* Who the program runs as when we are root; uid 0 means "as we are". */
struct tp_cred {
	uid_t	 uid;
	gid_t	 gid;
};

static void __attribute__((noreturn))
tp_exec(const char *prog, int sock, int other, long maxfd,
    char *const argv[], char *const envp[], const struct tp_cred *cred)
{
	struct sigaction	 sa;
	sigset_t		 set;
	int			 fd, sig;

	if (cred->uid != 0 && (setgroups(1, &cred->gid) == -1 ||
	    setresgid(cred->gid, cred->gid, cred->gid) == -1 ||
	    setresuid(cred->uid, cred->uid, cred->uid) == -1))
		_exit(127);

	if ((fd = fcntl(sock, F_DUPFD, 3)) == -1 ||
	    dup2(fd, STDIN_FILENO) == -1 || dup2(fd, STDOUT_FILENO) == -1)
		_exit(127);
	/* With fd 2 closed, a socket took it: stderr must not be either. */
	if ((sock == STDERR_FILENO || other == STDERR_FILENO) &&
	    ((fd = open("/dev/null", O_WRONLY)) == -1 ||
	    dup2(fd, STDERR_FILENO) == -1))
		_exit(127);
	close_from(3, maxfd);
	/* The lookup process ignores SIGPIPE; the program gets defaults. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &sa, NULL);
	sigemptyset(&set);
	(void)sigprocmask(SIG_SETMASK, &set, NULL);
#ifdef __linux__
	/* A program stuck in a loop must not outlive the lookup process. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
#endif
	execve(prog, argv, envp);
	_exit(127);
}

/*
 * A table program is third-party code: as root (the parent checks the
 * configuration with the tables open) it runs as the daemon's
 * unprivileged user instead, as it does under the lookup role.
 */
static int
tp_cred(struct tproc *t, struct tp_cred *cred)
{
	const struct passwd	*pw;
	const char		*user;

	cred->uid = 0;
	cred->gid = 0;
	if (geteuid() != 0)
		return 0;
	user = t->host->config_get ? t->host->config_get("user") : NULL;
	if (user == NULL || (pw = getpwnam(user)) == NULL || pw->pw_uid == 0)
		return tp_error(t, "refusing to run %s as root (no"
		    " unprivileged user%s%s)", t->label, user ? " " : "",
		    user ? user : "");
	cred->uid = pw->pw_uid;
	cred->gid = pw->pw_gid;
	return 0;
}

static int
tp_spawn(struct tproc *t)
{
	struct tp_cred	 cred;
	char		*argv[3], *envp[2];
	long		 maxfd = sysconf(_SC_OPEN_MAX);
	pid_t		 pid;
	int		 sv[2];

	if (tp_cred(t, &cred) == -1)
		return -1;

	argv[0] = t->name;
	argv[1] = t->arg;
	argv[2] = NULL;
	envp[0] = (char *)TP_ENV_PATH;
	envp[1] = NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return tp_error(t, "socketpair: %s", strerror(errno));
	if ((pid = fork()) == -1) {
		close(sv[0]);
		close(sv[1]);
		return tp_error(t, "fork: %s", strerror(errno));
	}
	if (pid == 0)
		tp_exec(t->prog, sv[1], sv[0], maxfd > 0 ? maxfd : 1024,
		    argv, envp, &cred);
	close(sv[1]);
	t->fd = sv[0];
	t->pid = pid;
	t->rlen = 0;
	t->gone = 0;
	return 0;
}

/*
 * Reaps pid: 1 when it ended by itself within grace_ms (*status says
 * how), 0 when it had to be killed, -1 when it is no longer our child.
 * A pid reaped elsewhere (by a SIGCHLD handler) may already belong to
 * another process, so it is never signalled then.
 */
static int
tp_reap(pid_t pid, int grace_ms, int *status)
{
	struct timespec	 nap = { 0, 5 * 1000 * 1000 };
	pid_t		 r;
	int		 waited = 0;

	for (;;) {
		if ((r = waitpid(pid, status, WNOHANG)) == pid)
			return 1;
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		if (waited >= grace_ms)
			break;
		nanosleep(&nap, NULL);
		waited += 5;
	}
	(void)kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) == -1 && errno == EINTR)
		;
	return 0;
}

/* Closes the connection and reaps the program; says how it ended. */
static void
tp_stop(struct tproc *t, int grace_ms)
{
	size_t	 len;
	int	 status;

	if (t->fd != -1) {
		close(t->fd);
		t->fd = -1;
	}
	if (t->pid > 0 && tp_reap(t->pid, t->gone ? TP_GONE_MS : grace_ms,
	    &status) == 1) {
		len = strlen(t->err);
		if (WIFEXITED(status))
			snprintf(t->err + len, sizeof(t->err) - len,
			    " (exited with status %d)", WEXITSTATUS(status));
		else if (WIFSIGNALED(status))
			snprintf(t->err + len, sizeof(t->err) - len,
			    " (killed by signal %d)", WTERMSIG(status));
	}
	t->pid = -1;
	t->rlen = 0;
	t->gone = 0;
}

/* ------------------------------------------------------------ the I/O */

/* Starts the clock of an exchange. */
/*
 * How long one answer may take: the host's "table-timeout" (seconds), as
 * the host gives blocking tables a process of their own and waits that
 * long for them; else TP_REQUEST_MS.
 */
static int
tp_timeout(const struct msd_host *host)
{
	const char	*v;
	char		*end;
	long		 s;

	v = host->config_get != NULL ? host->config_get("table-timeout") :
	    NULL;
	if (v == NULL)
		return TP_REQUEST_MS;
	errno = 0;
	s = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || s < 1 || s > 3600)
		return TP_REQUEST_MS;
	return (int)s * 1000;
}

static void
tp_begin(struct tproc *t, int ms)
{
	t->limit_ms = ms;
	t->deadline = tp_now() + ms;
	t->timedout = 0;
}

/* Waits for the socket until the deadline: 0 ready, -1 timed out. */
static int
tp_wait(struct tproc *t, short events)
{
	struct pollfd	 pfd;
	int64_t		 left;
	int		 r;

	for (;;) {
		if ((left = t->deadline - tp_now()) <= 0) {
			t->timedout = 1;
			if (t->limit_ms % 1000 == 0)
				return tp_error(t, "no answer within %ds",
				    t->limit_ms / 1000);
			return tp_error(t, "no answer within %dms",
			    t->limit_ms);
		}
		pfd.fd = t->fd;
		pfd.events = events;
		pfd.revents = 0;
		if ((r = poll(&pfd, 1, (int)left)) > 0)
			return 0;
		if (r == -1 && errno != EINTR)
			return tp_error(t, "poll: %s", strerror(errno));
	}
}

static int
tp_write(struct tproc *t, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		/* MSG_NOSIGNAL: a dead program is an error, not SIGPIPE. */
		n = send(t->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (tp_wait(t, POLLOUT) == -1)
				return -1;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EPIPE || errno == ECONNRESET)) {
			t->gone = 1;
			return tp_error(t, "connection closed");
		}
		return tp_error(t, "write: %s", strerror(errno));
	}
	return 0;
}

/* Adds what the program sent to rbuf; -1 at the deadline, EOF or error. */
static int
tp_fill(struct tproc *t)
{
	ssize_t	 n;

	if (t->rlen >= sizeof(t->rbuf) - 1)
		return tp_error(t, "answer longer than %d bytes", TP_LINE_MAX);
	for (;;) {
		if (tp_wait(t, POLLIN) == -1)
			return -1;
		n = recv(t->fd, t->rbuf + t->rlen, sizeof(t->rbuf) - 1 -
		    t->rlen, MSG_DONTWAIT);
		if (n > 0) {
			t->rlen += n;
			return 0;
		}
		if (n == 0 || errno == ECONNRESET) {
			t->gone = 1;
			return tp_error(t, "connection closed");
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return tp_error(t, "read: %s", strerror(errno));
	}
}

/* Anything but printable ASCII, tab, CR and LF (UTF-8 passes). */
static int
is_binary(const char *p, size_t len)
{
	unsigned char	 c;
	size_t		 i;

	for (i = 0; i < len; i++) {
		c = (unsigned char)p[i];
		if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') ||
		    c == 0x7f)
			return 1;
	}
	return 0;
}

/*
 * The next line, NUL-terminated in rbuf, *used bytes to consume.  text:
 * fail on the first byte no line program would send, without waiting
 * for a newline that may never come.
 */
static int
tp_readline(struct tproc *t, int text, char **line, size_t *used)
{
	char	*nl;

	for (;;) {
		if (text && is_binary(t->rbuf, t->rlen))
			return tp_error(t, "its output is not text");
		if ((nl = memchr(t->rbuf, '\n', t->rlen)) != NULL)
			break;
		if (tp_fill(t) == -1)
			return -1;
	}
	if (memchr(t->rbuf, '\0', nl - t->rbuf) != NULL)
		return tp_error(t, "NUL byte in a line");
	*nl = '\0';
	*line = t->rbuf;
	*used = nl - t->rbuf + 1;
	return 0;
}

static void
tp_consume(struct tproc *t, size_t n)
{
	memmove(t->rbuf, t->rbuf + n, t->rlen - n);
	t->rlen -= n;
}

/* One imsg: its type and payload in rbuf, until the next exchange. */
static int
tp_readmsg(struct tproc *t, uint32_t *type, const char **data, size_t *len)
{
	struct im_hdr	 h;

	while (t->rlen < sizeof(h))
		if (tp_fill(t) == -1)
			return -1;
	memcpy(&h, t->rbuf, sizeof(h));
	if (h.len < sizeof(h) || h.len > IM_MAX)
		return tp_error(t, "malformed imsg (length %u)",
		    (unsigned int)h.len);
	while (t->rlen < h.len)
		if (tp_fill(t) == -1)
			return -1;
	/* The protocol is one answer per request: more is garbage. */
	if (t->rlen > h.len)
		return tp_error(t, "more than one answer");
	*type = h.type;
	*data = t->rbuf + sizeof(h);
	*len = h.len - sizeof(h);
	return 0;
}

static int
tp_sendmsg(struct tproc *t, uint32_t type, const void *data, size_t len)
{
	char		 buf[IM_MAX];
	struct im_hdr	 h;

	if (len > sizeof(buf) - sizeof(h))
		return tp_error(t, "request too large");
	memset(&h, 0, sizeof(h));
	h.type = type;
	h.len = (uint16_t)(sizeof(h) + len);
	h.pid = (uint32_t)getpid();
	memcpy(buf, &h, sizeof(h));
	if (len > 0)
		memcpy(buf + sizeof(h), data, len);
	return tp_write(t, buf, sizeof(h) + len);
}

/* ---------------------------------------------------------- handshakes */

/*
 * The line protocol's.  detect: the program may not speak it, and any
 * failure before its first register line says so (-2).
 */
static int
hello_line(struct tproc *t, int detect)
{
	const struct service	*s;
	char			 buf[TP_NAME_MAX + 128], *line;
	size_t			 used;
	int			 n, first = detect;

	n = snprintf(buf, sizeof(buf), "config|smtpd-version|%s\n"
	    "config|protocol|%s\nconfig|tablename|%s\nconfig|ready\n",
	    TP_SMTPD_VERSION, TP_PROTOCOL, t->name);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return tp_error(t, "table name too long");
	tp_begin(t, detect ? TP_DETECT_MS : t->request_ms);
	if (tp_write(t, buf, n) == -1)
		return first ? -2 : -1;
	t->services = 0;
	for (;;) {
		if (tp_readline(t, first, &line, &used) == -1)
			return first ? -2 : -1;
		if (strncmp(line, "register|", 9) != 0) {
			tp_error(t, "handshake: \"%.60s\" is not a register"
			    " line", line);
			return first ? -2 : -1;
		}
		if (first)
			tp_begin(t, t->request_ms);
		first = 0;
		if (strcmp(line + 9, "ready") == 0)
			break;
		if ((s = service_name(line + 9)) == NULL)
			return tp_error(t, "handshake: unknown service"
			    " \"%.60s\"", line + 9);
		t->services |= s->bit;
		tp_consume(t, used);
	}
	tp_consume(t, used);
	if (t->services == 0)
		return tp_error(t, "handshake: no service registered");
	if (t->rlen > 0)
		return tp_error(t, "handshake: output after register|ready");
	return 0;
}

/* The imsg protocol's: OPEN with the table name, answered by an empty OK. */
static int
hello_imsg(struct tproc *t)
{
	char		 params[4 + IM_NAME_MAX];	/* version, name */
	const char	*data;
	uint32_t	 version = IM_VERSION, type;
	size_t		 len;

	memset(params, 0, sizeof(params));
	memcpy(params, &version, sizeof(version));
	len = strlen(t->name);
	memcpy(params + 4, t->name, len < IM_NAME_MAX ? len : IM_NAME_MAX - 1);
	tp_begin(t, t->request_ms);
	if (tp_sendmsg(t, IM_OPEN, params, sizeof(params)) == -1 ||
	    tp_readmsg(t, &type, &data, &len) == -1)
		return -1;
	t->rlen = 0;
	if (type != IM_OK || len != 0)
		return tp_error(t, "handshake: OPEN answered with type %u,"
		    " %zu bytes", (unsigned int)type, len);
	return 0;
}

/*
 * Which protocol?  The line handshake goes first because of what each
 * kind of program does with the other's bytes.  An imsg program reads
 * "config|smtpd-ver" as a header whose length field ("ig", over 26000)
 * exceeds the imsg maximum: it exits at once without writing a byte, so
 * the fallback costs one short-lived process and no waiting.  The other
 * way round, a line program would see a binary OPEN without a newline
 * and wait for the rest of a line until our timeout, for every modern
 * program at every start, and a byte 0x0a in the header's pid could even
 * hand it a garbage line to act on.  So: line protocol, and imsg when
 * the first output is not text, the program exits, or no register line
 * comes within TP_DETECT_MS.
 *
 * A program that stayed silent for TP_DETECT_MS and then fails the imsg
 * handshake too is most likely a line program slow to start (a database
 * to reach): it gets one more line handshake with the full timeout
 * before the open fails.
 */
static int
tp_detect(struct tproc *t)
{
	char	 as_line[TP_ERR_MAX], as_imsg[TP_ERR_MAX];
	int	 r, silent;

	if (tp_spawn(t) == -1)
		return -1;
	if ((r = hello_line(t, 1)) == 0) {
		t->proto = TP_LINE;
		return 0;
	}
	silent = t->timedout && t->rlen == 0;
	tp_stop(t, 0);
	if (r == -1)
		return -1;
	memcpy(as_line, t->err, sizeof(as_line));
	if (tp_spawn(t) == -1)
		return -1;
	if (hello_imsg(t) == 0) {
		t->proto = TP_IMSG;
		/* Its complaint on stderr about the line handshake: normal. */
		t->host->log(MSD_LOG_INFO, "table %s: %s speaks the imsg table "
		    "protocol (line protocol: %s)", t->name, t->label, as_line);
		return 0;
	}
	tp_stop(t, 0);
	memcpy(as_imsg, t->err, sizeof(as_imsg));
	if (silent && tp_spawn(t) == 0) {
		if (hello_line(t, 0) == 0) {
			t->proto = TP_LINE;
			t->host->log(MSD_LOG_INFO, "table %s: %s took more than"
			    " %dms to start", t->name, t->label, TP_DETECT_MS);
			return 0;
		}
		tp_stop(t, 0);
	}
	tp_error(t, "line protocol: %.100s; imsg protocol: %.100s", as_line,
	    as_imsg);
	return -1;
}

/* Starts the program and completes the handshake; -1 and t->err. */
static int
tp_start(struct tproc *t)
{
	int	 r;

	t->err[0] = '\0';
	if (t->proto == TP_UNKNOWN)
		return tp_detect(t);
	if (tp_spawn(t) == -1)
		return -1;
	r = t->proto == TP_LINE ? hello_line(t, 0) : hello_imsg(t);
	if (r == -1)
		tp_stop(t, 0);
	return r;
}

/* ------------------------------------------------------ failure policy */

/* The program broke the exchange: kill it, plan its restart. */
static int
tp_failed(struct tproc *t, msd_result *res)
{
	tp_stop(t, 0);
	t->retry_at = tp_now() + (int64_t)t->delay * 1000;
	t->host->log(MSD_LOG_WARNING, "table %s: %s: %s; restarting it in"
	    " %us", t->name, t->label, t->err, t->delay);
	tp_report(t, res, "%s", t->err);
	t->delay = t->delay * 2 > TP_BACKOFF_MAX ? TP_BACKOFF_MAX :
	    t->delay * 2;
	return MSD_TEMPFAIL;
}

/* The program answered within the protocol: it works, reset the pause. */
static void
tp_done(struct tproc *t)
{
	t->rlen = 0;
	t->delay = TP_BACKOFF_MIN;
}

/* Running, or started now: 0.  Else MSD_TEMPFAIL was reported: -1. */
static int
tp_ready(struct tproc *t, msd_result *res)
{
	char	 msg[TP_ERR_MAX];
	int64_t	 wait;

	if (t->pid > 0)
		return 0;
	if ((wait = t->retry_at - tp_now()) > 0) {
		snprintf(msg, sizeof(msg), "table program %s restarting in"
		    " %llds", t->label, (long long)(wait + 999) / 1000);
		if (res != NULL)
			t->host->result_error(res, msg);
		else
			t->host->log(MSD_LOG_WARNING, "table %s: %s", t->name,
			    msg);
		return -1;
	}
	if (tp_start(t) == -1) {
		tp_failed(t, res);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------- line requests */

/*
 * Sends "table|0.1|<ts>|<table>|<op>[|<service>]|<id>[|<key>]" and reads
 * the answer up to its result: what follows "<op>-result|<id>|".
 */
static int
line_call(struct tproc *t, const char *op, const char *svc,
    const char *key, char **result)
{
	char		 buf[TP_LINE_MAX], *line, *p;
	struct timespec	 ts;
	size_t		 used, n;
	int		 len;

	tp_newid(t);
	clock_gettime(CLOCK_REALTIME, &ts);
	len = snprintf(buf, sizeof(buf), "table|%s|%lld.%06ld|%s|%s%s%s|%s%s%s"
	    "\n", TP_PROTOCOL, (long long)ts.tv_sec, ts.tv_nsec / 1000,
	    t->name, op, svc != NULL ? "|" : "", svc != NULL ? svc : "",
	    t->id, key != NULL ? "|" : "", key != NULL ? key : "");
	if (len < 0 || (size_t)len >= sizeof(buf))
		return tp_error(t, "request too long");
	tp_begin(t, t->request_ms);
	if (tp_write(t, buf, len) == -1 ||
	    tp_readline(t, 0, &line, &used) == -1)
		return -1;
	if (used != t->rlen)
		return tp_error(t, "more than one answer line");
	n = strlen(op);
	p = line + n;
	if (strncmp(line, op, n) != 0 || strncmp(p, "-result|", 8) != 0)
		return tp_error(t, "malformed answer \"%.60s\"", line);
	p += 8;
	n = strlen(t->id);
	if (strncmp(p, t->id, n) != 0 || p[n] != '|')
		return tp_error(t, "answer \"%.60s\" is not for request %s",
		    line, t->id);
	*result = p + n + 1;
	return 0;
}

/* "error[|message]" within the protocol: a temporary failure. */
static int
line_error(struct tproc *t, const char *r, msd_result *res)
{
	tp_done(t);
	if (r[5] == '|' && r[6] != '\0')
		return tp_report(t, res, "error: %.160s", r + 6);
	return tp_report(t, res, "error");
}

/* "found", or "found|value" for a lookup or fetch (key NULL); -1 if not. */
static int
line_found(struct tproc *t, const char *r, const char *key, msd_result *res)
{
	const char	*v;

	if (key != NULL) {
		/* check-result: OpenSMTPD reads "found" and ignores the rest */
		if (strncmp(r, "found", 5) != 0 || (r[5] != '\0' &&
		    r[5] != '|'))
			return -1;
		v = key;
	} else {
		if (strncmp(r, "found|", 6) != 0)
			return -1;
		v = r + 6;
		if (*v == '\0')
			return tp_error(t, "found with an empty value");
	}
	t->host->result_set(res, v, strlen(v));
	tp_done(t);
	return 0;
}

static int
line_query(struct tproc *t, const struct service *s, const char *op,
    const char *key, msd_result *res)
{
	char	*r;

	if ((t->services & s->bit) == 0)
		return tp_report(t, res, "no %s service registered", s->name);
	if (line_call(t, op, s->name, key, &r) == -1)
		return tp_failed(t, res);
	if (strcmp(r, "not-found") == 0) {
		tp_done(t);
		return MSD_NOTFOUND;
	}
	if (strncmp(r, "error", 5) == 0 && (r[5] == '\0' || r[5] == '|'))
		return line_error(t, r, res);
	t->err[0] = '\0';
	if (line_found(t, r, strcmp(op, "check") == 0 ? key : NULL, res) == 0)
		return MSD_OK;
	if (t->err[0] == '\0')
		tp_error(t, "malformed answer \"%s-result|%s|%.40s\"", op,
		    t->id, r);
	return tp_failed(t, res);
}

/* ------------------------------------------------------- imsg requests */

/* OK with int r, then the value when r == 1 and one is expected. */
static int
imsg_result(struct tproc *t, const char *key, msd_result *res)
{
	const char	*data;
	uint32_t	 type;
	size_t		 len;
	int		 r;

	if (tp_readmsg(t, &type, &data, &len) == -1)
		return tp_failed(t, res);
	if (type == IM_FAIL) {
		tp_done(t);
		return tp_report(t, res, "request failed (FAIL)");
	}
	if (type != IM_OK || len < sizeof(r)) {
		tp_error(t, "malformed answer (type %u, %zu bytes)",
		    (unsigned int)type, len);
		return tp_failed(t, res);
	}
	memcpy(&r, data, sizeof(r));
	data += sizeof(r);
	len -= sizeof(r);
	switch (r) {
	case 1:
		/* CHECK: nothing follows; LOOKUP, FETCH: a non-empty string */
		if (key != NULL && len == 0)
			data = key;
		else if (key != NULL || len < 2 ||
		    memchr(data, '\0', len) != data + len - 1)
			break;
		t->host->result_set(res, data, strlen(data));
		tp_done(t);
		return MSD_OK;
	case 0:
		if (len > 0)
			break;
		tp_done(t);
		return MSD_NOTFOUND;
	case -1:
		if (len > 0)
			break;
		tp_done(t);
		return tp_report(t, res, "the table reported an error");
	}
	tp_error(t, "malformed answer (result %d, %zu value bytes)", r, len);
	return tp_failed(t, res);
}

/* CHECK and LOOKUP: {int service; size_t nparams = 0; key NUL}. */
static int
imsg_query(struct tproc *t, const struct service *s, const char *key,
    msd_result *res)
{
	char	 buf[sizeof(int) + sizeof(size_t) + TP_KEY_MAX + 1];
	size_t	 nparams = 0, klen = strlen(key);
	int	 svc = (int)s->bit;

	memcpy(buf, &svc, sizeof(svc));
	memcpy(buf + sizeof(svc), &nparams, sizeof(nparams));
	memcpy(buf + sizeof(svc) + sizeof(nparams), key, klen + 1);
	tp_begin(t, t->request_ms);
	if (tp_sendmsg(t, s->list ? IM_CHECK : IM_LOOKUP, buf,
	    sizeof(svc) + sizeof(nparams) + klen + 1) == -1)
		return tp_failed(t, res);
	return imsg_result(t, s->list ? key : NULL, res);
}

/* ------------------------------------------------------------ the ops */

static void
tp_free(struct tproc *t)
{
	if (t == NULL)
		return;
	free(t->name);
	free(t->arg);
	free(t);
}

static int
tp_open(const struct msd_host *host, const char *name, const char *config,
    void **inst)
{
	struct tproc	*t;
	const char	*slash;
	int		 r;

	*inst = NULL;
	if (name == NULL)
		name = "";
	if (config == NULL)
		config = "";
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->name = strdup(name)) == NULL) {
		host->log(MSD_LOG_ERR, "table %s: out of memory", name);
		tp_free(t);
		return MSD_TEMPFAIL;
	}
	t->host = host;
	t->pid = -1;
	t->fd = -1;
	t->delay = TP_BACKOFF_MIN;
	t->request_ms = tp_timeout(host);
	/* The name is a field of every line request. */
	if (strlen(name) > TP_NAME_MAX || strpbrk(name, "|\r\n") != NULL) {
		host->log(MSD_LOG_ERR, "table %s: unusable table name for a"
		    " table program", name);
		tp_free(t);
		return MSD_PERMFAIL;
	}
	if ((r = parse_config(t, config)) != MSD_OK) {
		tp_free(t);
		return r;
	}
	t->label = (slash = strrchr(t->prog, '/')) != NULL ? slash + 1 :
	    t->prog;
	if (tp_start(t) == -1) {
		host->log(MSD_LOG_ERR, "table %s: %s: %s", name, t->prog,
		    t->err);
		tp_free(t);
		return MSD_TEMPFAIL;
	}
	*inst = t;
	return MSD_OK;
}

/* imsg programs exit on CLOSE, line programs at EOF: then reap. */
static void
tp_close(void *inst)
{
	struct tproc	*t = inst;

	if (t == NULL)
		return;
	if (t->pid > 0 && t->proto == TP_IMSG) {
		tp_begin(t, TP_CLOSE_MS);
		(void)tp_sendmsg(t, IM_CLOSE, NULL, 0);
	}
	tp_stop(t, TP_CLOSE_MS);
	tp_free(t);
}

static int
tp_lookup(void *inst, uint32_t service, const char *key, msd_result *res)
{
	struct tproc		*t = inst;
	const struct service	*s;

	if ((s = service_bit(service)) == NULL)
		return tp_report(t, res, "unknown service 0x%x",
		    (unsigned int)service);
	if (key == NULL || strlen(key) > TP_KEY_MAX)
		return tp_report(t, res, "key missing or too long");
	/* A line break would end the request early: a second request. */
	if (t->proto == TP_LINE && strpbrk(key, "\r\n") != NULL)
		return tp_report(t, res, "key contains a line break");
	if (tp_ready(t, res) == -1)
		return MSD_TEMPFAIL;
	if (t->proto == TP_LINE)
		return line_query(t, s, s->list ? "check" : "lookup", key,
		    res);
	return imsg_query(t, s, key, res);
}

static int
tp_fetch(void *inst, uint32_t service, msd_result *res)
{
	struct tproc		*t = inst;
	const struct service	*s;
	char			 buf[sizeof(int) + sizeof(size_t)];
	size_t			 nparams = 0;
	int			 svc = (int)service;

	if ((s = service_bit(service)) == NULL)
		return tp_report(t, res, "unknown service 0x%x",
		    (unsigned int)service);
	if (tp_ready(t, res) == -1)
		return MSD_TEMPFAIL;
	if (t->proto == TP_LINE)
		return line_query(t, s, "fetch", NULL, res);
	memcpy(buf, &svc, sizeof(svc));
	memcpy(buf + sizeof(svc), &nparams, sizeof(nparams));
	tp_begin(t, t->request_ms);
	if (tp_sendmsg(t, IM_FETCH, buf, sizeof(buf)) == -1)
		return tp_failed(t, res);
	return imsg_result(t, NULL, res);
}

static int
update_line(struct tproc *t)
{
	char	*r;

	if (line_call(t, "update", NULL, NULL, &r) == -1)
		return tp_failed(t, NULL);
	if (strcmp(r, "ok") == 0) {
		tp_done(t);
		return MSD_OK;
	}
	if (strncmp(r, "error", 5) == 0 && (r[5] == '\0' || r[5] == '|'))
		return line_error(t, r, NULL);
	tp_error(t, "malformed answer \"update-result|%s|%.40s\"", t->id, r);
	return tp_failed(t, NULL);
}

/* UPDATE: OK with int r, 1 done, 0 failed. */
static int
update_imsg(struct tproc *t)
{
	const char	*data;
	uint32_t	 type;
	size_t		 len;
	int		 r;

	tp_begin(t, t->request_ms);
	if (tp_sendmsg(t, IM_UPDATE, NULL, 0) == -1 ||
	    tp_readmsg(t, &type, &data, &len) == -1)
		return tp_failed(t, NULL);
	if (type == IM_OK && len == sizeof(r)) {
		memcpy(&r, data, sizeof(r));
		tp_done(t);
		if (r == 1)
			return MSD_OK;
		return tp_report(t, NULL, "update failed");
	}
	if (type == IM_FAIL) {
		tp_done(t);
		return tp_report(t, NULL, "update failed (FAIL)");
	}
	tp_error(t, "malformed answer to UPDATE (type %u, %zu bytes)",
	    (unsigned int)type, len);
	return tp_failed(t, NULL);
}

static int
tp_update(void *inst)
{
	struct tproc	*t = inst;

	if (tp_ready(t, NULL) == -1)
		return MSD_TEMPFAIL;
	return t->proto == TP_LINE ? update_line(t) : update_imsg(t);
}

static const struct msd_table_ops proc_ops = {
	.size = MSD_TABLE_OPS_SIZE,
	.open = tp_open,
	.close = tp_close,
	.lookup = tp_lookup,
	.fetch = tp_fetch,
	.update = tp_update,
};

static const struct msd_module proc_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	/* A lookup may wait request_ms for the program. */
	.flags = MSD_MF_BUILD | MSD_MF_MAY_BLOCK,
	.kind = MSD_KIND_TABLE,
	/* Whatever the program serves: known only once it runs. */
	.services = TP_SERVICES,
	.name = "proc",
	.version = PACKAGE_VERSION,
	.ops = &proc_ops,
	.description = "an external table program (OpenSMTPD's table-*, line"
	    " or imsg protocol)",
};

MSD_MODULE(proc)
{
	(void)host_major;	/* the loader checks the versions */
	(void)host_minor;
	return &proc_module;
}
