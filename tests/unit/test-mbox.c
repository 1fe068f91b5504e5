/*
 * test-mbox.c - the `mbox` delivery method: the From_ line, ">From "
 * escaping, CRLF, the blank line between messages, the dotlock and fcntl
 * lock (waiting, stale locks, the timeout), the mailboxes it refuses and
 * the rollback of a delivery that fails halfway.
 *
 * Prints TAP-style "ok N - what" lines; exits non-zero on any failure.
 * Takes some 25 seconds: one delivery waits out the lock timeout.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smtpd.h"
#include "tap.h"
#include "testutil.h"

#ifndef TOP_BUILDDIR
#error "TOP_BUILDDIR must name the build tree"
#endif

#define MBOX_SO		TOP_BUILDDIR "/modules/mda/mbox/.libs/mbox.so"
#define DATELEN		24		/* "Sun Nov 22 10:00:00 2026" */
#define NOBODY		65534		/* an unprivileged uid and gid */

static struct module			*mod;
static const struct msd_mda_ops		*ops;
static char	 root[PATH_MAX];		/* scratch directory */
static char	 logbuf[8192];			/* last captured stderr */
static char	 filebuf[1024 * 1024];		/* last read_file */
static time_t	 t_begin;			/* no From_ date before */

/* ------------------------------------------------------------- helpers */

static int	 cap_saved = -1;
static char	 cap_path[PATH_MAX];

/* log_init(1, ...) writes to fd 2: point it at a file for a while. */
static void
capture_start(void)
{
	int	 fd;

	mkpath(cap_path, sizeof(cap_path), "%s/log.XXXXXX", root);
	if ((fd = mkstemp(cap_path)) == -1)
		fatal("mkstemp");
	fflush(stderr);
	if ((cap_saved = dup(STDERR_FILENO)) == -1 ||
	    dup2(fd, STDERR_FILENO) == -1)
		fatal("dup");
	close(fd);
}

static const char *
capture_end(void)
{
	ssize_t	 n;
	int	 fd;

	fflush(stderr);
	if (dup2(cap_saved, STDERR_FILENO) == -1)
		fatal("dup2");
	close(cap_saved);
	logbuf[0] = '\0';
	if ((fd = open(cap_path, O_RDONLY)) == -1)
		fatal("open %s", cap_path);
	n = read(fd, logbuf, sizeof(logbuf) - 1);
	logbuf[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(cap_path);
	return logbuf;
}

/* Occurrences of what in s. */
static int
count_str(const char *s, const char *what)
{
	int	 n = 0;

	while ((s = strstr(s, what)) != NULL) {
		n++;
		s += strlen(what);
	}
	return n;
}

/* Reads path into filebuf; -1 on error or when it does not fit. */
static ssize_t
read_file(const char *path)
{
	ssize_t	 n;
	size_t	 len = 0;
	int	 fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return -1;
	while (len < sizeof(filebuf) &&
	    (n = read(fd, filebuf + len, sizeof(filebuf) - len)) > 0)
		len += n;
	close(fd);
	return len == sizeof(filebuf) ? -1 : (ssize_t)len;
}

static int
write_file(const char *path, const char *buf, size_t len, mode_t mode)
{
	int	 fd, r;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)) == -1)
		return -1;
	r = write(fd, buf, len) == (ssize_t)len ? 0 : -1;
	if (close(fd) == -1)
		r = -1;
	return chmod(path, mode) == -1 ? -1 : r;
}

/* path holds exactly text. */
static int
file_is(const char *path, const char *text)
{
	ssize_t	 n = read_file(path);

	return n == (ssize_t)strlen(text) && memcmp(filebuf, text, n) == 0;
}

static int
exists(const char *path)
{
	struct stat	 sb;

	return lstat(path, &sb) == 0;
}

static off_t
file_size(const char *path)
{
	struct stat	 sb;

	return stat(path, &sb) == 0 ? sb.st_size : -1;
}

static long long
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
cleanup(void)
{
	if (root[0] != '\0')
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Before fork: the child must not print the parent's buffered lines. */
static pid_t
xfork(void)
{
	pid_t	 pid;

	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1)
		fatal("fork");
	return pid;
}

/* The child's exit status, -1 when it did not exit. */
static int
child_status(pid_t pid)
{
	int	 st;

	if (waitpid(pid, &st, 0) == -1)
		fatal("waitpid");
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ------------------------------------------------------------ delivery */

/*
 * The message as the host gives it: a descriptor to read from, here
 * positioned after skip, which the module must not copy.
 */
static int
message_fd_at(const char *skip, const char *text, size_t len)
{
	char	 path[PATH_MAX];
	size_t	 n = strlen(skip);
	int	 fd;

	mkpath(path, sizeof(path), "%s/message", root);
	if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    write(fd, skip, n) != (ssize_t)n ||
	    write(fd, text, len) != (ssize_t)len ||
	    lseek(fd, (off_t)n, SEEK_SET) != (off_t)n)
		fatal("%s", path);
	unlink(path);
	return fd;
}

static int
message_fd(const char *text, size_t len)
{
	return message_fd_at("", text, len);
}

static int
deliver_fd(int fd, const char *mbox, const char *sender,
    struct msd_result *res)
{
	struct msd_envelope	 me;
	struct envelope		 e;

	memset(&e, 0, sizeof(e));
	memset(&me, 0, sizeof(me));
	msd_strlcpy(e.sender, sender, sizeof(e.sender));
	msd_strlcpy(e.rcpt, "bob@example.org", sizeof(e.rcpt));
	me.ev = &e;
	me.user = "bob";
	me.homedir = root;
	me.mda_arg = mbox;
	result_reset(res);
	return ops->deliver(mod->host, fd, &me, res);
}

static int
deliver(const char *mbox, const char *sender, const char *text,
    struct msd_result *res)
{
	int	 fd, r;

	fd = message_fd(text, strlen(text));
	r = deliver_fd(fd, mbox, sender, res);
	close(fd);
	return r;
}

/* Delivered, with no error text and no dotlock left behind. */
static int
deliver_ok(const char *mbox, const char *sender, const char *text,
    struct msd_result *res)
{
	char	 lock[PATH_MAX];
	int	 r;

	mkpath(lock, sizeof(lock), "%s.lock", mbox);
	r = deliver(mbox, sender, text, res);
	if (r != MSD_OK || res->failed)
		fprintf(stderr, "# deliver: %d %s\n", r, res->error);
	return r == MSD_OK && !res->failed && !exists(lock);
}

/* A date written between t_begin and now, as asctime(3) has it. */
static int
date_ok(const char *s)
{
	char		 want[32];
	struct tm	 tm;
	time_t		 t;

	for (t = t_begin; t <= time(NULL); t++)
		if (localtime_r(&t, &tm) != NULL &&
		    asctime_r(&tm, want) != NULL &&
		    memcmp(s, want, DATELEN) == 0)
			return 1;
	return 0;
}

/*
 * Consumes one "From <sender> <date>\n" line and then exactly body from
 * *p: 0 on any difference.
 */
static int
take_message(const char **p, size_t *len, const char *sender,
    const char *body)
{
	size_t	 n = strlen(sender), blen = strlen(body);

	if (*len < 5 + n + 1 + DATELEN + 1 || memcmp(*p, "From ", 5) != 0 ||
	    memcmp(*p + 5, sender, n) != 0 || (*p)[5 + n] != ' ')
		return 0;
	*p += 5 + n + 1;
	*len -= 5 + n + 1;
	if (!date_ok(*p) || (*p)[DATELEN] != '\n')
		return 0;
	*p += DATELEN + 1;
	*len -= DATELEN + 1;
	if (*len < blen || memcmp(*p, body, blen) != 0)
		return 0;
	*p += blen;
	*len -= blen;
	return 1;
}

/* The mailbox holds exactly one message from sender with body. */
static int
mbox_is(const char *mbox, const char *sender, const char *body)
{
	const char	*p = filebuf;
	ssize_t		 n;
	size_t		 len;

	if ((n = read_file(mbox)) == -1)
		return 0;
	len = n;
	if (!take_message(&p, &len, sender, body) || len != 0) {
		fprintf(stderr, "# %s holds:\n%.*s", mbox, (int)n, filebuf);
		return 0;
	}
	return 1;
}

/* ----------------------------------------------------------- the format */

static void
test_new(void)
{
	static const char	 msg[] = "Subject: hi\n\nFrom here\nFromage\n"
	    "From\n From x\n";
	static const char	 want[] = "Subject: hi\n\n>From here\nFromage\n"
	    "From\n From x\n\n";
	struct msd_result	 res;
	struct stat		 sb;
	char			 mbox[PATH_MAX];

	memset(&res, 0, sizeof(res));
	mkpath(mbox, sizeof(mbox), "%s/bob", root);
	ok(deliver_ok(mbox, "alice@example.org", msg, &res),
	    "a delivery to a new mailbox succeeds and leaves no dotlock");
	ok(lstat(mbox, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    (sb.st_mode & 07777) == 0600 && sb.st_uid == geteuid(),
	    "the new mailbox is a regular file with mode 0600");
	if (read_file(mbox) == -1)
		filebuf[0] = '\0';
	ok(strncmp(filebuf, "From alice@example.org ", 23) == 0 &&
	    date_ok(filebuf + 23) && filebuf[23 + DATELEN] == '\n',
	    "From_ line: the sender and a 24-character asctime date");
	ok(mbox_is(mbox, "alice@example.org", want),
	    "\"From here\" is escaped, \"Fromage\", \"From\" and \" From\" "
	    "are not, a blank line follows");
	result_reset(&res);
}

static void
test_append(void)
{
	static const char	 one[] = "Subject: one\n\nfirst\n";
	static const char	 two[] = "Subject: two\n\nsecond\n";
	struct msd_result	 res;
	char			 mbox[PATH_MAX];
	const char		*p = filebuf;
	ssize_t			 n;
	size_t			 len;

	memset(&res, 0, sizeof(res));
	mkpath(mbox, sizeof(mbox), "%s/append", root);
	ok(deliver_ok(mbox, "a@example.org", one, &res) &&
	    deliver_ok(mbox, "b@example.org", two, &res),
	    "two deliveries to the same mailbox");
	n = read_file(mbox);
	len = n > 0 ? n : 0;
	ok(take_message(&p, &len, "a@example.org",
	    "Subject: one\n\nfirst\n\n") &&
	    take_message(&p, &len, "b@example.org",
	    "Subject: two\n\nsecond\n\n") && len == 0,
	    "the second follows the first after a blank line");
	result_reset(&res);
}

static void
test_convert(void)
{
	struct msd_result	 res;
	char			 mbox[PATH_MAX];

	memset(&res, 0, sizeof(res));
	mkpath(mbox, sizeof(mbox), "%s/null", root);
	ok(deliver_ok(mbox, "", "Subject: bounce\n\nx\n", &res) &&
	    mbox_is(mbox, "MAILER-DAEMON", "Subject: bounce\n\nx\n\n"),
	    "the null sender is written as MAILER-DAEMON");

	mkpath(mbox, sizeof(mbox), "%s/crlf", root);
	ok(deliver_ok(mbox, "c@example.org",
	    "Subject: crlf\r\n\r\nFrom here\r\na\rb\r\n\r\n", &res) &&
	    mbox_is(mbox, "c@example.org",
	    "Subject: crlf\n\n>From here\na\rb\n\n\n"),
	    "CRLF becomes LF, a lone CR stays, escaping still applies");

	mkpath(mbox, sizeof(mbox), "%s/nonl", root);
	ok(deliver_ok(mbox, "d@example.org", "Subject: x\n\nlast line",
	    &res) && mbox_is(mbox, "d@example.org",
	    "Subject: x\n\nlast line\n\n"),
	    "a missing final newline is added before the blank line");

	mkpath(mbox, sizeof(mbox), "%s/nonl2", root);
	ok(deliver_ok(mbox, "d@example.org", "Subject: x\n\nFro", &res) &&
	    mbox_is(mbox, "d@example.org", "Subject: x\n\nFro\n\n"),
	    "a last line that starts like \"From \" is written as it is");

	mkpath(mbox, sizeof(mbox), "%s/empty", root);
	ok(deliver_ok(mbox, "e@example.org", "", &res) &&
	    mbox_is(mbox, "e@example.org", "\n"),
	    "an empty message is a From_ line and a blank line");

	mkpath(mbox, sizeof(mbox), "%s/space", root);
	ok(deliver_ok(mbox, "\"f g\"@example.org", "x\n", &res) &&
	    mbox_is(mbox, "\"f_g\"@example.org", "x\n\n"),
	    "a blank in the sender becomes '_'");
	result_reset(&res);
}

/*
 * Line by line, the way a reader sees it: the module works on 64 KB
 * blocks, so this catches a CRLF or a "From " split between two.
 */
static size_t
reference(const char *in, size_t len, char *out)
{
	const char	*p = in, *end = in + len, *nl;
	size_t		 o = 0, n;

	while (p < end) {
		nl = memchr(p, '\n', end - p);
		n = (nl != NULL ? nl : end) - p;
		if (n >= 5 && memcmp(p, "From ", 5) == 0)
			out[o++] = '>';
		memcpy(out + o, p, n);
		o += n;
		if (n > 0 && p[n - 1] == '\r' && nl != NULL)
			o--;
		out[o++] = '\n';
		p += n + 1;
	}
	out[o++] = '\n';
	return o;
}

static void
test_big(void)
{
	static char		 big[3 * 65536 + 100], want[sizeof(big) * 2];
	struct msd_result	 res;
	char			 mbox[PATH_MAX];
	const char		*p = filebuf;
	size_t			 i, len, wlen;
	ssize_t			 n;
	int			 fd, r;

	memset(&res, 0, sizeof(res));
	for (i = 0; i < sizeof(big); i++)
		big[i] = i % 64 == 63 ? '\n' : 'a';
	memcpy(big + 65535, "\r\n", 2);		/* CR ends a block */
	memcpy(big + 2 * 65536 - 3, "\nFrom ", 6);	/* "Fr" ends one */
	memcpy(big + sizeof(big) - 6, "\nFrom ", 6);
	wlen = reference(big, sizeof(big), want);
	want[wlen] = '\0';

	mkpath(mbox, sizeof(mbox), "%s/big", root);
	fd = message_fd_at("SKIPPED\n", big, sizeof(big));
	r = deliver_fd(fd, mbox, "g@example.org", &res);
	ok(r == MSD_OK && fcntl(fd, F_GETFD) != -1,
	    "a 196 KiB message is delivered and its descriptor left open");
	close(fd);
	n = read_file(mbox);
	len = n > 0 ? n : 0;
	ok(take_message(&p, &len, "g@example.org", want) && len == 0,
	    "it is read from the current offset; CRLF and \"From \" across "
	    "64 KiB blocks are handled");
	result_reset(&res);
}

/* ------------------------------------------------------------ locking */

static void
make_lock(const char *lock, time_t age)
{
	struct timeval	 tv[2];

	if (write_file(lock, "", 0, 0600) == -1)
		fatal("%s", lock);
	if (age == 0)
		return;
	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec -= age;
	tv[1] = tv[0];
	if (utimes(lock, tv) == -1)
		fatal("utimes %s", lock);
}

static void
test_dotlock_wait(void)
{
	struct msd_result	 res;
	char			 mbox[PATH_MAX], lock[PATH_MAX];
	long long		 t;
	pid_t			 pid;
	int			 r;

	memset(&res, 0, sizeof(res));
	mkpath(mbox, sizeof(mbox), "%s/dotwait", root);
	mkpath(lock, sizeof(lock), "%s.lock", mbox);
	make_lock(lock, 0);
	if ((pid = xfork()) == 0) {
		sleep(1);
		_exit(unlink(lock) == 0 ? 0 : 1);
	}
	t = now_ms();
	r = deliver_ok(mbox, "h@example.org", "x\n", &res);
	t = now_ms() - t;
	ok(child_status(pid) == 0 && r && t >= 900 && t < 10000,
	    "a held dotlock is waited for (%lld ms), then the delivery "
	    "succeeds", t);
	ok(mbox_is(mbox, "h@example.org", "x\n\n"), "and the message is there");
	result_reset(&res);
}

/*
 * A child holds an fcntl lock on the mailbox for a second and checks
 * that the module's dotlock exists meanwhile: dotlock first, then fcntl.
 */
static void
test_fcntl_wait(void)
{
	struct msd_result	 res;
	struct flock		 fl;
	char			 mbox[PATH_MAX], lock[PATH_MAX], c;
	long long		 t;
	pid_t			 pid;
	int			 p[2], fd, r;

	memset(&res, 0, sizeof(res));
	mkpath(mbox, sizeof(mbox), "%s/fcntlwait", root);
	mkpath(lock, sizeof(lock), "%s.lock", mbox);
	if (write_file(mbox, "", 0, 0600) == -1 || pipe(p) == -1)
		fatal("%s", mbox);
	if ((pid = xfork()) == 0) {
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		if ((fd = open(mbox, O_WRONLY)) == -1 ||
		    fcntl(fd, F_SETLKW, &fl) == -1)
			_exit(2);
		if (write(p[1], "x", 1) != 1)
			_exit(2);
		usleep(500 * 1000);
		r = exists(lock);
		usleep(500 * 1000);
		_exit(r ? 0 : 1);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		fatalx("the locking child failed");
	close(p[0]);
	t = now_ms();
	r = deliver_ok(mbox, "i@example.org", "y\n", &res);
	t = now_ms() - t;
	ok(r && t >= 800 && t < 10000,
	    "a held fcntl lock is waited for (%lld ms), then the delivery "
	    "succeeds", t);
	ok(child_status(pid) == 0, "the dotlock is held while waiting");
	ok(mbox_is(mbox, "i@example.org", "y\n\n"), "and the message is there");
	result_reset(&res);
}

static void
test_stale(void)
{
	struct msd_result	 res;
	char			 mbox[PATH_MAX], lock[PATH_MAX];
	const char		*log;
	long long		 t;
	int			 r;

	memset(&res, 0, sizeof(res));
	mkpath(mbox, sizeof(mbox), "%s/stale", root);
	mkpath(lock, sizeof(lock), "%s.lock", mbox);
	make_lock(lock, 10 * 60);
	capture_start();
	t = now_ms();
	r = deliver_ok(mbox, "j@example.org", "z\n", &res);
	t = now_ms() - t;
	log = capture_end();
	ok(r && t < 5000 && mbox_is(mbox, "j@example.org", "z\n\n"),
	    "a dotlock 10 minutes old is broken at once (%lld ms)", t);
	ok(strstr(log, "removed the stale lock") != NULL &&
	    strstr(log, lock) != NULL, "breaking it is logged");
	result_reset(&res);
}

/* The one test of the 20-second timeout: a dotlock never released. */
static void
test_timeout(void)
{
	struct msd_result	 res;
	char			 mbox[PATH_MAX], lock[PATH_MAX], want[PATH_MAX];
	long long		 t;
	int			 r;

	memset(&res, 0, sizeof(res));
	mkpath(mbox, sizeof(mbox), "%s/locked", root);
	mkpath(lock, sizeof(lock), "%s.lock", mbox);
	mkpath(want, sizeof(want), "mailbox %s is locked", mbox);
	if (write_file(mbox, "old\n\n", 5, 0600) == -1)
		fatal("%s", mbox);
	make_lock(lock, 0);
	t = now_ms();
	r = deliver(mbox, "k@example.org", "never\n", &res);
	t = now_ms() - t;
	ok(r == MSD_TEMPFAIL && res.failed && strcmp(res.error, want) == 0,
	    "a lock held for good is a temporary failure: \"%s\"", res.error);
	ok(t >= 19500 && t < 25000, "after about 20 seconds (%lld ms)", t);
	ok(file_is(mbox, "old\n\n") && exists(lock),
	    "the mailbox is untouched and the other holder's dotlock stays");
	unlink(lock);
	result_reset(&res);
}

/* Without the right to create a dotlock, fcntl alone; warned once. */
static void
test_nodotlock(void)
{
	struct msd_result	 res;
	char			 dir[PATH_MAX], mbox[PATH_MAX], logf[PATH_MAX];
	char			 lock[PATH_MAX];
	const char		*p = filebuf;
	ssize_t			 n;
	size_t			 len;
	pid_t			 pid;
	int			 st, fd, m1, m2, asroot = geteuid() == 0;

	memset(&res, 0, sizeof(res));
	mkpath(dir, sizeof(dir), "%s/ro", root);
	mkpath(mbox, sizeof(mbox), "%s/ro/mbox", root);
	mkpath(lock, sizeof(lock), "%s.lock", mbox);
	mkpath(logf, sizeof(logf), "%s/ro.log", root);
	if (mkdir(dir, 0755) == -1 || write_file(mbox, "", 0, 0600) == -1)
		fatal("%s", dir);
	/* As root, the child drops to an uid that cannot write dir. */
	if (asroot ? chown(mbox, NOBODY, NOBODY) == -1 ||
	    chmod(root, 0711) == -1 : chmod(dir, 0555) == -1)
		fatal("%s", dir);
	if ((pid = xfork()) == 0) {
		if ((fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0666)) ==
		    -1 || dup2(fd, STDERR_FILENO) == -1)
			_exit(100);
		/* Made first: the scratch directory is root's. */
		m1 = message_fd("one\n", 4);
		m2 = message_fd("two\n", 4);
		if (asroot && (setgroups(0, NULL) == -1 ||
		    setgid(NOBODY) == -1 || setuid(NOBODY) == -1))
			_exit(100);
		st = deliver_fd(m1, mbox, "l@example.org", &res) == MSD_OK ?
		    0 : 1;
		st |= deliver_fd(m2, mbox, "l@example.org", &res) == MSD_OK ?
		    0 : 2;
		if (st != 0)
			fprintf(stderr, "# child: %s\n", res.error);
		fflush(stderr);
		_exit(st);
	}
	st = child_status(pid);
	chmod(root, 0700);
	chmod(dir, 0755);
	if (st == 100) {
		skip("cannot drop privileges for the dotlock test");
		return;
	}
	ok(st == 0, "a directory without dotlock rights still gets mail");
	ok(!exists(lock), "and no dotlock was made");
	n = read_file(mbox);
	len = n > 0 ? n : 0;
	ok(take_message(&p, &len, "l@example.org", "one\n\n") &&
	    take_message(&p, &len, "l@example.org", "two\n\n") && len == 0,
	    "both messages are in the mailbox");
	n = read_file(logf);
	filebuf[n > 0 ? n : 0] = '\0';
	ok(count_str(filebuf, "locking with fcntl only") == 1,
	    "the warning is given once per process");
}

/* ---------------------------------------------------------- refusals */

/* Refused as a temporary failure with a reason naming the mailbox. */
static int
refused(const char *mbox, const char *why, struct msd_result *res)
{
	char	 lock[PATH_MAX];
	int	 r;

	mkpath(lock, sizeof(lock), "%s.lock", mbox);
	r = deliver(mbox, "m@example.org", "evil\n", res);
	if (r != MSD_TEMPFAIL || strstr(res->error, mbox) == NULL ||
	    strstr(res->error, why) == NULL)
		fprintf(stderr, "# %d: %s\n", r, res->error);
	return r == MSD_TEMPFAIL && res->failed &&
	    strstr(res->error, mbox) != NULL &&
	    strstr(res->error, why) != NULL && !exists(lock);
}

static void
test_refusals(void)
{
	struct msd_result	 res;
	char			 mbox[PATH_MAX], other[PATH_MAX];
	struct stat		 sb;

	memset(&res, 0, sizeof(res));
	mkpath(mbox, sizeof(mbox), "%s/link", root);
	mkpath(other, sizeof(other), "%s/target", root);
	if (write_file(other, "precious\n", 9, 0600) == -1 ||
	    symlink(other, mbox) == -1)
		fatal("%s", mbox);
	ok(refused(mbox, "symbolic link", &res),
	    "a symlinked mailbox is refused: \"%s\"", res.error);
	ok(file_is(other, "precious\n") && lstat(mbox, &sb) == 0 &&
	    S_ISLNK(sb.st_mode), "the symlink and its target are untouched");

	mkpath(mbox, sizeof(mbox), "%s/hard", root);
	mkpath(other, sizeof(other), "%s/hard2", root);
	if (write_file(mbox, "kept\n", 5, 0600) == -1 ||
	    link(mbox, other) == -1)
		fatal("%s", mbox);
	ok(refused(mbox, "2 hard links", &res),
	    "a mailbox with two hard links is refused: \"%s\"", res.error);
	ok(file_is(mbox, "kept\n"), "and it is untouched");

	mkpath(mbox, sizeof(mbox), "%s/fifo", root);
	if (mkfifo(mbox, 0600) == -1)
		fatal("%s", mbox);
	ok(refused(mbox, "not a regular file", &res),
	    "a fifo is refused without blocking: \"%s\"", res.error);

	mkpath(mbox, sizeof(mbox), "%s/theirs", root);
	if (write_file(mbox, "theirs\n", 7, 0600) == -1)
		fatal("%s", mbox);
	if (geteuid() != 0)
		skip("needs root to give a file away");
	else if (chown(mbox, NOBODY, NOBODY) == -1)
		fatal("chown %s", mbox);
	else
		ok(refused(mbox, "owned by uid 65534", &res) &&
		    file_is(mbox, "theirs\n"),
		    "a mailbox owned by another user is refused: \"%s\"",
		    res.error);

	ok(deliver(NULL, "m@example.org", "x\n", &res) == MSD_TEMPFAIL &&
	    strstr(res.error, "no mailbox path") != NULL,
	    "no path is a temporary failure");
	ok(deliver("var/mail/bob", "m@example.org", "x\n", &res) ==
	    MSD_TEMPFAIL && strstr(res.error, "not absolute") != NULL,
	    "a relative path is refused");
	mkpath(mbox, sizeof(mbox), "%s/nodir/bob", root);
	ok(refused(mbox, "No such file or directory", &res),
	    "a missing directory is reported: \"%s\"", res.error);
	result_reset(&res);
}

/* ------------------------------------------------------------ rollback */

#define BIGMSG		(256 * 1024)

/*
 * In a child, so the file size limit stays there: exit status bits for
 * each thing that went wrong.
 */
static int
fsize_child(const char *mbox, off_t size)
{
	struct msd_result	 res;
	struct rlimit		 rl, saved;
	char			*big;
	int			 fd, r, st = 0;

	memset(&res, 0, sizeof(res));
	if ((big = malloc(BIGMSG + 1)) == NULL)
		return 64;
	memset(big, 'b', BIGMSG);
	big[BIGMSG - 1] = '\n';
	big[BIGMSG] = '\0';
	fd = message_fd(big, BIGMSG);
	if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR ||
	    getrlimit(RLIMIT_FSIZE, &saved) == -1)
		return 64;
	rl = saved;
	rl.rlim_cur = size + 1024;
	if (setrlimit(RLIMIT_FSIZE, &rl) == -1)
		return 64;
	r = deliver_fd(fd, mbox, "n@example.org", &res);
	if (setrlimit(RLIMIT_FSIZE, &saved) == -1)
		st |= 64;
	if (r != MSD_TEMPFAIL)
		st |= 1;
	if (strstr(res.error, "File too large") == NULL ||
	    strstr(res.error, mbox) == NULL)
		st |= 2;
	if (file_size(mbox) != size)
		st |= 4;
	if (st != 0)
		fprintf(stderr, "# child: %d %s\n", r, res.error);
	return st;
}

static void
test_rollback(void)
{
	static const char	 old[] =
	    "From x Sun Nov 22 10:00:00 2026\nold\n\n";
	struct msd_result	 res;
	char			 mbox[PATH_MAX];
	const char		*p = filebuf + strlen(old);
	ssize_t			 n;
	size_t			 len;
	pid_t			 pid;
	int			 st, r;

	memset(&res, 0, sizeof(res));
	mkpath(mbox, sizeof(mbox), "%s/full", root);
	if (write_file(mbox, old, strlen(old), 0600) == -1)
		fatal("%s", mbox);
	if ((pid = xfork()) == 0) {
		st = fsize_child(mbox, (off_t)strlen(old));
		fflush(stderr);
		_exit(st);
	}
	st = child_status(pid);
	ok(st >= 0 && (st & 64) == 0, "the child ran under a file size limit");
	ok(st >= 0 && (st & 1) == 0,
	    "a write failing halfway is a temporary failure");
	ok(st >= 0 && (st & 2) == 0, "its reason names the mailbox and "
	    "says \"File too large\"");
	ok(st >= 0 && (st & 4) == 0 && file_is(mbox, old),
	    "the mailbox is truncated back to what it was");
	r = deliver_ok(mbox, "o@example.org", "after\n", &res);
	n = read_file(mbox);
	len = n > (ssize_t)strlen(old) ? n - strlen(old) : 0;
	ok(r && len > 0 && memcmp(filebuf, old, strlen(old)) == 0 &&
	    take_message(&p, &len, "o@example.org", "after\n\n") && len == 0,
	    "the next delivery appends right after the old contents");
	result_reset(&res);
}

int
main(void)
{
	log_init(1, 0);
	mkpath(root, sizeof(root), "/tmp/test-mbox.XXXXXX");
	if (mkdtemp(root) == NULL)
		fatal("mkdtemp");
	umask(022);
	t_begin = time(NULL);

	mod = module_load_file(MBOX_SO, MSD_KIND_MDA, "mbox");
	ok(mod != NULL && mod->desc.description != NULL &&
	    strcmp(mod->desc.description,
	    "append to an mbox file (mail.local semantics)") == 0,
	    "the mbox module loads");
	if (mod == NULL || (ops = module_ops(mod, sizeof(*ops))) == NULL) {
		cleanup();
		ok(0, "mbox ops");
		return tap_done();
	}

	test_new();
	test_append();
	test_convert();
	test_big();
	test_dotlock_wait();
	test_fcntl_wait();
	test_stale();
	test_refusals();
	test_rollback();
	test_nodotlock();
	test_timeout();

	cleanup();
	return tap_done();
}
