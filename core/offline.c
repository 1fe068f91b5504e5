/*
 * offline.c - re-submits what sendmail(8) kept in <spool>/offline while
 * the daemon was down.
 *
 * Each file holds the arguments of one sendmail run and the raw input it
 * read (sendmail.c writes them).  Once the roles are up, the parent forks
 * one walker so it never blocks itself; the walker runs sendmail again
 * for each file, one after another, as the file's owner with the file on
 * stdin, and removes the files that were accepted.  A file that fails
 * stays, with a warning, for the next start.
 */
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"

#define OFFLINE_MAGIC		"#modsmtpd-offline 1\n"
#define OFFLINE_HEADER_MAX	(256 * 1024)	/* the arguments' lines */
#define OFFLINE_ERR_MAX		512		/* sendmail's words we log */
/*
 * sendmail writes offline only while the socket refuses it, which also
 * happens during a start: files are looked for again this often.
 */
#define OFFLINE_RESCAN		300		/* seconds */

/* One file's header: the decoded arguments, where the input starts. */
struct offline_job {
	char	*buf;			/* the header, decoded in place */
	char	**argv;			/* "sendmail", args..., NULL */
	off_t	 body;
};

struct offline_ctx {
	int	 dirfd;
	char	 dir[PATH_MAX];
	char	 sendmail[PATH_MAX];
	char	*envp[4];
};

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "%0A" -> '\n' in place; -1 on a bad escape or an encoded NUL. */
static int
decode_arg(char *s)
{
	char	*o = s;
	int	 hi, lo;

	for (; *s; s++) {
		if (*s != '%') {
			*o++ = *s;
			continue;
		}
		if ((hi = hexval(s[1])) == -1 || (lo = hexval(s[2])) == -1 ||
		    (hi == 0 && lo == 0))
			return -1;
		*o++ = (char)(hi << 4 | lo);
		s += 2;
	}
	*o = '\0';
	return 0;
}

/* Reads the header up to its empty line; -1 when it is not ours. */
static int
read_job_header(int fd, struct offline_job *job)
{
	const size_t	 mlen = strlen(OFFLINE_MAGIC);
	size_t		 len = 0, cap = 4096;
	ssize_t		 n;
	char		*end;

	job->buf = xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			if (cap >= OFFLINE_HEADER_MAX)
				return -1;
			cap *= 2;
			job->buf = xreallocarray(job->buf, cap + 1, 1);
		}
		if ((n = read(fd, job->buf + len, cap - len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return -1;
		len += n;
		if (len < mlen)
			continue;
		if (memcmp(job->buf, OFFLINE_MAGIC, mlen) != 0)
			return -1;
		/* The magic line's own '\n' starts the first "\n\n". */
		if ((end = memmem(job->buf + mlen - 1, len - mlen + 1, "\n\n",
		    2)) != NULL) {
			end[1] = '\0';
			job->body = end + 2 - job->buf;
			return 0;
		}
	}
}

/* The "arg " lines into job->argv; -1 on anything else. */
static int
parse_job_args(struct offline_job *job)
{
	char	*line, *next;
	size_t	 n = 1;

	job->argv = xreallocarray(NULL, 2, sizeof(char *));
	job->argv[0] = "sendmail";
	for (line = job->buf + strlen(OFFLINE_MAGIC); *line; line = next) {
		if ((next = strchr(line, '\n')) == NULL)
			return -1;
		*next++ = '\0';
		if (strncmp(line, "arg ", 4) != 0 || decode_arg(line + 4) == -1)
			return -1;
		job->argv = xreallocarray(job->argv, n + 2, sizeof(char *));
		job->argv[n++] = line + 4;
	}
	job->argv[n] = NULL;
	return 0;
}

static void
job_free(struct offline_job *job)
{
	free(job->buf);
	free(job->argv);
	memset(job, 0, sizeof(*job));
}

/* ---------------------------------------------------------- one file */

/* Runs in the grandchild: becomes the owner, then sendmail. */
static void __attribute__((noreturn))
job_exec(struct offline_ctx *ctx, struct offline_job *job, int fd,
    int errfd, const struct passwd *pw)
{
	sigset_t	 set;

	if (dup2(fd, STDIN_FILENO) == -1 || dup2(errfd, STDOUT_FILENO) == -1 ||
	    dup2(errfd, STDERR_FILENO) == -1 ||
	    lseek(STDIN_FILENO, job->body, SEEK_SET) == -1 ||
	    fcntl(STDIN_FILENO, F_SETFL, 0) == -1)
		_exit(71);
	if (env.privileged && (initgroups(pw->pw_name, pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)) {
		dprintf(STDERR_FILENO, "cannot switch to user %s: %s\n",
		    pw->pw_name, strerror(errno));
		_exit(71);
	}
	if (chdir("/") == -1)
		_exit(71);
	umask(077);
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
	execve(ctx->sendmail, job->argv, ctx->envp);
	dprintf(STDERR_FILENO, "%s: %s\n", ctx->sendmail, strerror(errno));
	_exit(71);
}

/* What sendmail printed, on one line, for the log. */
static void
read_errors(int fd, char *buf, size_t len)
{
	char	 junk[4096];
	size_t	 n = 0, i;
	ssize_t	 r;

	while (n + 1 < len && (r = read(fd, buf + n, len - 1 - n)) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			break;
		n += r;
	}
	/* The rest is dropped, but read so sendmail never blocks on it. */
	while ((r = read(fd, junk, sizeof(junk))) > 0 ||
	    (r == -1 && errno == EINTR))
		;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	for (i = 0; i < n; i++)
		if ((unsigned char)buf[i] < ' ')
			buf[i] = ' ';
	buf[n] = '\0';
}

/* Forks sendmail for the job; returns its wait status, -1 if no fork. */
static int
job_run(struct offline_ctx *ctx, struct offline_job *job, int fd,
    const struct passwd *pw, char *err, size_t errlen)
{
	int	 p[2], status;
	pid_t	 pid;

	if (pipe2(p, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0)
		job_exec(ctx, job, fd, p[1], pw);
	close(p[1]);
	read_errors(p[0], err, errlen);
	close(p[0]);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR) {
			snprintf(err, errlen, "waitpid: %s", strerror(errno));
			return -1;
		}
	return status;
}

/*
 * Opens name without following links or blocking on a FIFO, and only
 * when it is a regular file with one link: a hard link to someone else's
 * file must not be sent as its owner.
 */
static int
job_open(struct offline_ctx *ctx, const char *name, struct stat *sb)
{
	struct stat	 lsb;
	int		 fd;

	if (fstatat(ctx->dirfd, name, &lsb, AT_SYMLINK_NOFOLLOW) == -1 ||
	    !S_ISREG(lsb.st_mode) || lsb.st_nlink != 1)
		return -1;
	if ((fd = openat(ctx->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, sb) == -1 || !S_ISREG(sb->st_mode) ||
	    sb->st_nlink != 1 || sb->st_dev != lsb.st_dev ||
	    sb->st_ino != lsb.st_ino || (sb->st_mode & 022) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The user a file is sent as: its owner; NULL when we cannot be them. */
static struct passwd *
job_owner(const char *path, const struct stat *sb)
{
	struct passwd	*pw;

	if (!env.privileged && sb->st_uid != geteuid()) {
		log_warnx("offline: %s: owned by uid %lu, not by us, skipped",
		    path, (unsigned long)sb->st_uid);
		return NULL;
	}
	if ((pw = getpwuid(sb->st_uid)) == NULL)
		log_warnx("offline: %s: owner uid %lu is unknown, skipped",
		    path, (unsigned long)sb->st_uid);
	return pw;
}

static void
offline_one(struct offline_ctx *ctx, const char *name)
{
	struct offline_job	 job;
	struct passwd		*pw;
	struct stat		 sb;
	char			 path[PATH_MAX * 2], err[OFFLINE_ERR_MAX];
	int			 fd, status;

	memset(&job, 0, sizeof(job));
	snprintf(path, sizeof(path), "%s/%s", ctx->dir, name);
	if ((fd = job_open(ctx, name, &sb)) == -1) {
		log_warnx("offline: %s: not a regular file of its own, skipped",
		    path);
		return;
	}
	if (read_job_header(fd, &job) == -1 || parse_job_args(&job) == -1) {
		log_warnx("offline: %s: not a sendmail offline file, skipped",
		    path);
		goto done;
	}
	if ((pw = job_owner(path, &sb)) == NULL)
		goto done;
	status = job_run(ctx, &job, fd, pw, err, sizeof(err));
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		if (unlinkat(ctx->dirfd, name, 0) == -1)
			log_warn("offline: re-submitted %s for user %s, but"
			    " cannot remove it", path, pw->pw_name);
		else
			log_info("offline: re-submitted %s for user %s", path,
			    pw->pw_name);
	} else if (status == -1)
		log_warnx("offline: %s for user %s kept: %s", path,
		    pw->pw_name, err);
	else
		log_warnx("offline: %s for user %s kept: sendmail %s %d%s%s",
		    path, pw->pw_name, WIFEXITED(status) ?
		    "exited with status" : "was killed by signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
		    err[0] ? ": " : "", err);
 done:
	job_free(&job);
	close(fd);
}

/* -------------------------------------------------------------- walker */

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Names to process, oldest first (sendmail names files <time>.<random>);
 * names starting with '.' are files sendmail is still writing.
 */
static char **
list_names(int dirfd, size_t *count)
{
	DIR		*d;
	struct dirent	*de;
	char		**v = NULL;
	size_t		 n = 0;
	int		 fd;

	if ((fd = dup(dirfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return NULL;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		v = xreallocarray(v, n + 1, sizeof(*v));
		v[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), name_cmp);
	*count = n;
	return v;
}


static int
ctx_init(struct offline_ctx *ctx)
{
	if ((size_t)snprintf(ctx->dir, sizeof(ctx->dir), "%s/offline",
	    env.spool) >= sizeof(ctx->dir))
		return -1;
	if (program_path("sendmail", ctx->sendmail, sizeof(ctx->sendmail)) == -1) {
		log_warnx("offline: no sendmail program next to smtpd (%s);"
		    " files in %s kept", ctx->sendmail, ctx->dir);
		return -1;
	}
	if ((ctx->dirfd = open(ctx->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1) {
		log_warn("offline: %s", ctx->dir);
		return -1;
	}
	/* A walker left from the previous start may still be at work. */
	if (flock(ctx->dirfd, LOCK_EX | LOCK_NB) == -1) {
		log_warnx("offline: %s is being processed by an earlier smtpd",
		    ctx->dir);
		return -1;
	}
	ctx->envp[0] = "PATH=/usr/bin:/bin";
	xasprintf(&ctx->envp[1], "MODSMTPD_SPOOL=%s", env.spool);
	ctx->envp[2] = "MODSMTPD_NO_OFFLINE=1";
	ctx->envp[3] = NULL;
	return 0;
}

static void
offline_walk(void)
{
	struct offline_ctx	 ctx;
	char			**names;
	size_t			 i, n = 0;

	memset(&ctx, 0, sizeof(ctx));
	if (ctx_init(&ctx) == -1)
		return;
	names = list_names(ctx.dirfd, &n);
	for (i = 0; i < n; i++) {
		offline_one(&ctx, names[i]);
		free(names[i]);
	}
	free(names);
}

/*
 * The walker keeps none of the parent's descriptors (IPC channels,
 * listeners, the spool lock): a role must see its peer go away when the
 * parent does, however long the walker runs.  The parent's signal
 * handlers write to libevent's socketpair, so they go first.
 */
static void
walker_setup(void)
{
	sigset_t	 set;
	int		 fd;

	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
	closelog();
	if (close_range(3, ~0U, 0) == -1)
		for (fd = 3; fd < getdtablesize(); fd++)
			close(fd);
	log_init(env.foreground, log_verbose);
	log_setproc("offline");
	prctl(PR_SET_NAME, "offline", 0, 0, 0);
}

/* Anything but dot files in the directory: worth a walker. */
static int
offline_pending(void)
{
	char		 dir[PATH_MAX];
	DIR		*d;
	struct dirent	*de;
	int		 found = 0;

	if ((size_t)snprintf(dir, sizeof(dir), "%s/offline", env.spool) >=
	    sizeof(dir) || (d = opendir(dir)) == NULL)
		return 0;
	while (!found && (de = readdir(d)) != NULL)
		found = de->d_name[0] != '.';
	closedir(d);
	return found;
}

static void
on_rescan(evutil_socket_t fd, short ev, void *arg)
{
	struct timeval	 tv = { OFFLINE_RESCAN, 0 };

	offline_enqueue();
	evtimer_add((struct event *)arg, &tv);
}

void
offline_enqueue(void)
{
	static struct event	*rescan;
	struct timeval		 tv = { OFFLINE_RESCAN, 0 };
	pid_t			 pid;

	if (rescan == NULL && env.evbase != NULL) {
		if ((rescan = evtimer_new(env.evbase, on_rescan,
		    event_self_cbarg())) == NULL)
			fatalx("offline: evtimer_new");
		evtimer_add(rescan, &tv);
	}
	if (!offline_pending())
		return;
	if ((pid = fork()) == -1) {
		log_warn("offline: fork");
		return;
	}
	if (pid > 0)
		return;		/* the parent's SIGCHLD handler reaps it */
	walker_setup();
	offline_walk();
	_exit(0);
}
