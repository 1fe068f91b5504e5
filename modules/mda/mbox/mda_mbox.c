/*
 * mda_mbox.c - the `mbox` delivery method.
 *
 * deliver() runs in the delivery child, already as the recipient, and
 * appends the message to the mbox file named by the method argument
 * (/var/mail/<user>, or a file from an aliases or .forward entry) the way
 * mail.local(8) does: a "From <sender> <date>" line, body lines starting
 * with "From " escaped as ">From ", CRLF turned into LF, one empty line
 * after the message.
 *
 * The mailbox is locked with a dotlock <path>.lock and an fcntl write lock,
 * the two locks mail readers use.  The size before the delivery is
 * recorded; any failure truncates the mailbox back to it, so a retry never
 * leaves half a message behind.  Only a fsync'd delivery is reported done.
 *
 * Uses only sdk/modsmtpd.h and libc.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
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

#define MB_BUFSIZE		(64 * 1024)	/* read and write buffers */
#define MB_FILE_MODE		0600
#define MB_LOCK_WAIT		(20 * 1000)	/* ms to get both locks */
#define MB_LOCK_NAP		(100 * 1000 * 1000)	/* ns between tries */
#define MB_LOCK_STALE		(5 * 60)	/* s: older dotlocks are dead */
#define MB_OPEN_TRIES		5
#define MB_FROM			"From "
#define MB_FROMLEN		(sizeof(MB_FROM) - 1)

struct delivery {
	const struct msd_host	*host;
	msd_result		*res;
	char			 path[PATH_MAX];	/* the mailbox */
	char			 lock[PATH_MAX];	/* <path>.lock */
	int			 dotlocked;
	dev_t			 lockdev;		/* our dotlock */
	ino_t			 lockino;
	long long		 deadline;		/* for the locks, ms */
	int			 fd;			/* the mailbox or -1 */
	int			 created;
	off_t			 size;		/* before this delivery */
	char			*in;		/* MB_BUFSIZE read buffer */
	char			*out;		/* MB_BUFSIZE write buffer */
	size_t			 outlen;
	char			 last;		/* last byte written */
};

/* Where a line start may still turn out to be "From ". */
struct escape {
	size_t	 match;		/* bytes of "From " held back */
	int	 bol;		/* at the start of a line */
	int	 cr;		/* a CR held back: CRLF becomes LF */
};

/* The warning about a directory without dotlocks is given once. */
static int	 mb_warned;

/* Records the reason for the log and the bounce. */
static int __attribute__((format(printf, 2, 3)))
mb_error(struct delivery *dl, const char *fmt, ...)
{
	char	 buf[512];
	va_list	 ap;

	va_start(ap, fmt);
	if (vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
		buf[0] = '\0';
	va_end(ap);
	dl->host->result_error(dl->res, buf);
	return MSD_TEMPFAIL;
}

/* The same with errno: "mbox <path>: <what>: <strerror>". */
static int
mb_fail(struct delivery *dl, const char *what)
{
	return mb_error(dl, "mbox %s: %s: %s", dl->path, what,
	    strerror(errno));
}

static int
mb_target(struct delivery *dl, const msd_envelope *ev)
{
	const char	*arg;
	int		 n;

	arg = dl->host->env_get(ev, MSD_ENV_MDA_ARG);
	if (arg == NULL || arg[0] == '\0')
		return mb_error(dl, "mbox: no mailbox path");
	if (arg[0] != '/')
		return mb_error(dl, "mbox %s: path is not absolute", arg);
	n = snprintf(dl->path, sizeof(dl->path), "%s", arg);
	if (n < 0 || (size_t)n >= sizeof(dl->path))
		return mb_error(dl, "mbox: mailbox path too long");
	n = snprintf(dl->lock, sizeof(dl->lock), "%s.lock", arg);
	if (n < 0 || (size_t)n >= sizeof(dl->lock))
		return mb_error(dl, "mbox: mailbox path too long");
	return MSD_OK;
}

/* ------------------------------------------------------------ locking */

/* Monotonic: a clock step must not cut or stretch the wait. */
static long long
mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One short sleep before the next try; 0 once the deadline passed. */
static int
lock_nap(struct delivery *dl)
{
	struct timespec	 ts = { 0, MB_LOCK_NAP };

	if (mono_ms() >= dl->deadline)
		return 0;
	nanosleep(&ts, NULL);
	return 1;
}

/*
 * A dotlock older than MB_LOCK_STALE was left by a holder that died:
 * remove it.  Two waiters may judge the same lock stale and the second
 * may remove the lock the first just took, as with mail.local; the fcntl
 * lock still keeps the writers apart.  Returns 1 to try again at once.
 */
static int
dotlock_stale(struct delivery *dl)
{
	struct stat	 sb;

	if (lstat(dl->lock, &sb) == -1)
		return errno == ENOENT;
	if (time(NULL) - sb.st_mtime < MB_LOCK_STALE)
		return 0;
	if (unlink(dl->lock) == -1)
		return errno == ENOENT;
	dl->host->log(MSD_LOG_WARNING, "mbox %s: removed the stale lock %s",
	    dl->path, dl->lock);
	return 1;
}

/* Mailbox directories other users cannot write have no dotlocks. */
static void
dotlock_none(struct delivery *dl)
{
	if (mb_warned)
		return;
	mb_warned = 1;
	dl->host->log(MSD_LOG_WARNING, "mbox %s: cannot create %s (%s), "
	    "locking with fcntl only", dl->path, dl->lock, strerror(EACCES));
}

static int
dotlock_take(struct delivery *dl)
{
	struct stat	 sb;
	int		 fd;

	for (;;) {
		fd = open(dl->lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, MB_FILE_MODE);
		if (fd != -1)
			break;
		if (errno == EACCES) {
			dotlock_none(dl);
			return MSD_OK;
		}
		if (errno != EEXIST && errno != EINTR)
			return mb_error(dl, "mbox %s: cannot create the lock "
			    "%s: %s", dl->path, dl->lock, strerror(errno));
		if (errno == EEXIST && !dotlock_stale(dl) && !lock_nap(dl))
			return mb_error(dl, "mailbox %s is locked", dl->path);
	}
	/* Remembered so that dotlock_drop removes this lock and no other. */
	if (fstat(fd, &sb) == -1) {
		mb_fail(dl, "fstat of the lock");
		close(fd);
		unlink(dl->lock);
		return MSD_TEMPFAIL;
	}
	close(fd);
	dl->lockdev = sb.st_dev;
	dl->lockino = sb.st_ino;
	dl->dotlocked = 1;
	return MSD_OK;
}

/*
 * After a delivery longer than MB_LOCK_STALE another process may have
 * broken our dotlock and taken its own: leave that one alone.
 */
static void
dotlock_drop(struct delivery *dl)
{
	struct stat	 sb;

	if (!dl->dotlocked)
		return;
	dl->dotlocked = 0;
	if (lstat(dl->lock, &sb) == 0 && sb.st_dev == dl->lockdev &&
	    sb.st_ino == dl->lockino && unlink(dl->lock) == -1)
		dl->host->log(MSD_LOG_WARNING, "mbox %s: cannot remove %s: %s",
		    dl->path, dl->lock, strerror(errno));
}

/* The fcntl lock, within the deadline the dotlock started. */
static int
mbox_lock(struct delivery *dl)
{
	struct flock	 fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;		/* l_start = l_len = 0: all of it */
	while (fcntl(dl->fd, F_SETLK, &fl) == -1) {
		if (errno != EAGAIN && errno != EACCES && errno != EINTR)
			return mb_fail(dl, "fcntl lock");
		if (!lock_nap(dl))
			return mb_error(dl, "mailbox %s is locked", dl->path);
	}
	return MSD_OK;
}

/* ----------------------------------------------------------- opening */

/*
 * The file must be what it seemed before the open, a regular file with
 * one name, owned by the user we deliver for: else we would append to a
 * file someone else planted or shares.  Refusals are temporary, so the
 * mail waits in the queue while an administrator looks.
 */
static int
mbox_check(struct delivery *dl, const struct stat *before)
{
	struct stat	 sb;

	if (fstat(dl->fd, &sb) == -1)
		return mb_fail(dl, "fstat");
	if (!S_ISREG(sb.st_mode))
		return mb_error(dl, "mbox %s: not a regular file", dl->path);
	if (sb.st_nlink != 1)
		return mb_error(dl, "mbox %s: has %lu hard links, refusing to "
		    "deliver", dl->path, (unsigned long)sb.st_nlink);
	if (sb.st_uid != geteuid())
		return mb_error(dl, "mbox %s: owned by uid %lu, not by uid %lu",
		    dl->path, (unsigned long)sb.st_uid,
		    (unsigned long)geteuid());
	if (before != NULL && (sb.st_dev != before->st_dev ||
	    sb.st_ino != before->st_ino))
		return mb_error(dl, "mbox %s: replaced while being opened",
		    dl->path);
	return MSD_OK;
}

/* A new mailbox; EEXIST when another process was quicker. */
static int
mbox_create(struct delivery *dl)
{
	dl->fd = open(dl->path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, MB_FILE_MODE);
	if (dl->fd == -1)
		return -1;
	dl->created = 1;
	/* 0600 whatever the umask of the worker. */
	if (fchmod(dl->fd, MB_FILE_MODE) == -1)
		return -1;
	return 0;
}

static int
mbox_symlink(struct delivery *dl)
{
	return mb_error(dl, "mbox %s: is a symbolic link, refusing to "
	    "deliver", dl->path);
}

/*
 * O_NONBLOCK: a fifo swapped in after the lstat must not hang the open;
 * it has no effect on the regular file mbox_check insists on.
 */
static int
mbox_open(struct delivery *dl)
{
	struct stat	 sb;
	int		 i;

	for (i = 0; i < MB_OPEN_TRIES; i++) {
		if (lstat(dl->path, &sb) == -1) {
			if (errno != ENOENT)
				return mb_fail(dl, "lstat");
			if (mbox_create(dl) == 0)
				return mbox_check(dl, NULL);
			if (errno != EEXIST)
				return mb_fail(dl, "cannot create");
			continue;	/* appeared meanwhile: open it */
		}
		if (S_ISLNK(sb.st_mode))
			return mbox_symlink(dl);
		if (!S_ISREG(sb.st_mode))
			return mb_error(dl, "mbox %s: not a regular file",
			    dl->path);
		dl->fd = open(dl->path, O_WRONLY | O_APPEND | O_NOFOLLOW |
		    O_NONBLOCK | O_CLOEXEC);
		if (dl->fd != -1)
			return mbox_check(dl, &sb);
		if (errno == ELOOP)
			return mbox_symlink(dl);
		if (errno != ENOENT)
			return mb_fail(dl, "open");
		/* removed meanwhile: create it */
	}
	return mb_error(dl, "mbox %s: keeps appearing and disappearing",
	    dl->path);
}

/* ------------------------------------------------------------ writing */

static int
write_all(int fd, const char *buf, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		if ((n = write(fd, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= n;
	}
	return 0;
}

static int
out_flush(struct delivery *dl)
{
	if (write_all(dl->fd, dl->out, dl->outlen) == -1)
		return -1;
	dl->outlen = 0;
	return 0;
}

/* Buffered append; -1 with errno from write(2). */
static int
out_write(struct delivery *dl, const char *s, size_t len)
{
	size_t	 n;

	if (len > 0)
		dl->last = s[len - 1];
	while (len > 0) {
		if (dl->outlen == MB_BUFSIZE && out_flush(dl) == -1)
			return -1;
		n = MB_BUFSIZE - dl->outlen;
		if (n > len)
			n = len;
		memcpy(dl->out + dl->outlen, s, n);
		dl->outlen += n;
		s += n;
		len -= n;
	}
	return 0;
}

/* asctime(3)'s format without its newline, English whatever the locale. */
static int
mbox_date(char *buf, size_t size)
{
	static const char	 days[] = "SunMonTueWedThuFriSat";
	static const char	 months[] =
	    "JanFebMarAprMayJunJulAugSepOctNovDec";
	struct tm		 tm;
	time_t			 now = time(NULL);
	int			 n;

	if (localtime_r(&now, &tm) == NULL || tm.tm_wday < 0 ||
	    tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11)
		return -1;
	n = snprintf(buf, size, "%.3s %.3s%3d %.2d:%.2d:%.2d %d",
	    days + 3 * tm.tm_wday, months + 3 * tm.tm_mon, tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, 1900 + tm.tm_year);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/*
 * "From <sender> <date>\n".  A blank or a control character in the sender
 * (a quoted local part) would end the address early for mbox readers or
 * break the line: they become '_'.
 */
static int
from_line(struct delivery *dl, const char *sender)
{
	char		 date[64];
	char		 c;

	if (mbox_date(date, sizeof(date)) == -1)
		return mb_error(dl, "mbox %s: cannot format the date",
		    dl->path);
	if (sender == NULL || sender[0] == '\0')
		sender = "MAILER-DAEMON";
	if (out_write(dl, MB_FROM, MB_FROMLEN) == -1)
		return mb_fail(dl, "write");
	for (; *sender != '\0'; sender++) {
		c = (unsigned char)*sender <= ' ' || *sender == 0x7f ? '_' :
		    *sender;
		if (out_write(dl, &c, 1) == -1)
			return mb_fail(dl, "write");
	}
	if (out_write(dl, " ", 1) == -1 || out_write(dl, date, strlen(date)) ==
	    -1 || out_write(dl, "\n", 1) == -1)
		return mb_fail(dl, "write");
	return MSD_OK;
}

/* One byte where a line start, "From " or a CR needs a decision. */
static int
escape_byte(struct delivery *dl, struct escape *e, char c)
{
	if (e->bol) {
		if (c == MB_FROM[e->match]) {
			if (++e->match < MB_FROMLEN)
				return 0;
			e->bol = 0;
			e->match = 0;
			return out_write(dl, ">" MB_FROM, MB_FROMLEN + 1);
		}
		e->bol = 0;
		if (out_write(dl, MB_FROM, e->match) == -1)
			return -1;
		e->match = 0;
	}
	if (e->cr) {
		e->cr = 0;
		if (c != '\n' && out_write(dl, "\r", 1) == -1)
			return -1;
	}
	if (c == '\r') {
		e->cr = 1;
		return 0;
	}
	if (c == '\n')
		e->bol = 1;
	return out_write(dl, &c, 1);
}

/* Copies buf, whole runs of plain bytes at a time. */
static int
escape_buf(struct delivery *dl, struct escape *e, const char *buf,
    size_t len)
{
	const char	*p = buf, *end = buf + len, *q;

	while (p < end) {
		if (!e->bol && !e->cr) {
			for (q = p; q < end && *q != '\r' && *q != '\n'; q++)
				;
			if (q > p) {
				if (out_write(dl, p, q - p) == -1)
					return -1;
				p = q;
				continue;
			}
		}
		if (escape_byte(dl, e, *p++) == -1)
			return -1;
	}
	return 0;
}

/*
 * What is held back at EOF: a partial "From" goes out as it is, a last
 * CR ends the line.  Then the final newline if missing, and the empty
 * line the next From_ line must follow.
 */
static int
escape_end(struct delivery *dl, struct escape *e)
{
	if (e->bol && e->match > 0 && out_write(dl, MB_FROM, e->match) == -1)
		return -1;
	if (e->cr && out_write(dl, "\n", 1) == -1)
		return -1;
	if (dl->last != '\n' && out_write(dl, "\n", 1) == -1)
		return -1;
	if (out_write(dl, "\n", 1) == -1)
		return -1;
	return out_flush(dl);
}

/* From_ line and message; sets the error on failure. */
static int
mbox_copy(struct delivery *dl, int in, const char *sender)
{
	struct escape	 e = { 0, 1, 0 };
	ssize_t		 n;
	int		 r;

	if ((r = from_line(dl, sender)) != MSD_OK)
		return r;
	for (;;) {
		if ((n = read(in, dl->in, MB_BUFSIZE)) == -1) {
			if (errno == EINTR)
				continue;
			return mb_fail(dl, "reading the message");
		}
		if (n == 0)
			break;
		if (escape_buf(dl, &e, dl->in, (size_t)n) == -1)
			return mb_fail(dl, "write");
	}
	if (escape_end(dl, &e) == -1)
		return mb_fail(dl, "write");
	return MSD_OK;
}

/* A new mailbox is durable only once its directory entry is. */
static int
fsync_parent(struct delivery *dl)
{
	char	 dir[PATH_MAX];
	char	*slash;
	int	 fd, r, saved;

	memcpy(dir, dl->path, sizeof(dir));
	slash = strrchr(dir, '/');		/* the path is absolute */
	if (slash == dir)
		slash++;
	*slash = '\0';
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return r;
}

/*
 * Back to the size before the delivery.  A new mailbox stays, empty: a
 * process waiting for our locks may already have it open, and mail it
 * appended to an unlinked file would be lost.
 */
static void
mbox_rollback(struct delivery *dl)
{
	if (ftruncate(dl->fd, dl->size) == -1 || fsync(dl->fd) == -1)
		dl->host->log(MSD_LOG_ERR, "mbox %s: cannot truncate back to "
		    "%lld bytes: %s", dl->path, (long long)dl->size,
		    strerror(errno));
}

static int
mbox_append(struct delivery *dl, int in, const char *sender)
{
	struct stat	 sb;
	int		 r;

	/* After locking: the last writer before us has finished. */
	if (fstat(dl->fd, &sb) == -1)
		return mb_fail(dl, "fstat");
	dl->size = sb.st_size;
	r = mbox_copy(dl, in, sender);
	if (r == MSD_OK && fsync(dl->fd) == -1)
		r = mb_fail(dl, "fsync");
	if (r == MSD_OK && dl->created && fsync_parent(dl) == -1)
		r = mb_fail(dl, "fsync of the directory");
	if (r != MSD_OK)
		mbox_rollback(dl);
	return r;
}

static int
mb_deliver(const struct msd_host *host, int fd, const msd_envelope *ev,
    msd_result *res)
{
	struct delivery	 dl;
	int		 r;

	memset(&dl, 0, sizeof(dl));
	dl.host = host;
	dl.res = res;
	dl.fd = -1;
	if ((r = mb_target(&dl, ev)) != MSD_OK)
		return r;
	if ((dl.in = malloc(2 * MB_BUFSIZE)) == NULL)
		return mb_fail(&dl, "buffers");
	dl.out = dl.in + MB_BUFSIZE;
	dl.deadline = mono_ms() + MB_LOCK_WAIT;
	r = dotlock_take(&dl);
	if (r == MSD_OK)
		r = mbox_open(&dl);
	if (r == MSD_OK)
		r = mbox_lock(&dl);
	if (r == MSD_OK)
		r = mbox_append(&dl, fd, host->env_get(ev, MSD_ENV_SENDER));
	/* Closing drops the fcntl lock, before the dotlock as it was taken. */
	if (dl.fd != -1)
		close(dl.fd);
	dotlock_drop(&dl);
	free(dl.in);
	return r;
}

static const struct msd_mda_ops mbox_ops = {
	.size = MSD_MDA_OPS_SIZE,
	.deliver = mb_deliver,
};

static const struct msd_module mbox_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	/* Waiting for a locked mailbox takes up to MB_LOCK_WAIT. */
	.flags = MSD_MF_BUILD | MSD_MF_MAY_BLOCK,
	.kind = MSD_KIND_MDA,
	.name = "mbox",
	.version = PACKAGE_VERSION,
	.ops = &mbox_ops,
	.description = "append to an mbox file (mail.local semantics)",
};

MSD_MODULE(mbox)
{
	return &mbox_module;
}
