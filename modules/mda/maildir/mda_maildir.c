/*
 * mda_maildir.c - the `maildir` delivery method.
 *
 * deliver() runs in the delivery child, already as the recipient.  The
 * message is copied verbatim into <maildir>/tmp/<unique>, fsync'd, linked
 * into new/ and new/ is fsync'd: only then is the delivery reported done.
 * With `junk`, a message whose headers say "X-Spam: yes" goes to the
 * Maildir++ folder <maildir>/.Junk instead.  No header is added.
 *
 * Uses only sdk/modsmtpd.h and libc.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "modsmtpd.h"

/* The build force-includes config.h; out of tree there is none. */
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

#define MD_BUFSIZE		(64 * 1024)	/* copy buffer; also the most
						   header bytes scanned */
#define MD_DIR_MODE		0700
#define MD_FILE_MODE		0600
#define MD_NAME_TRIES		10
#define MD_JUNK_FOLDER		".Junk"

struct delivery {
	const struct msd_host	*host;
	msd_result		*res;
	char			 dir[PATH_MAX];		/* target maildir */
	char			 tmp[PATH_MAX];		/* tmp/<name> */
	char			 new[PATH_MAX];		/* new/<name> */
};

/* Counts deliveries of this process: part of the unique name. */
static unsigned int	 md_counter;

/* Records the reason (with errno) for the log and the bounce. */
static int
md_fail(struct delivery *dl, const char *what, const char *path)
{
	char	 buf[512];
	int	 saved = errno;

	if (snprintf(buf, sizeof(buf), "maildir %s: %s %s: %s", dl->dir, what,
	    path, strerror(saved)) < 0)
		buf[0] = '\0';
	dl->host->result_error(dl->res, buf);
	return MSD_TEMPFAIL;
}

static int
md_error(struct delivery *dl, const char *msg)
{
	dl->host->result_error(dl->res, msg);
	return MSD_TEMPFAIL;
}

/* <maildir> from the method argument, else ~/Maildir. */
static int
md_target(struct delivery *dl, const msd_envelope *ev)
{
	const char	*arg, *home;
	int		 n;

	arg = dl->host->env_get(ev, MSD_ENV_MDA_ARG);
	if (arg != NULL && arg[0] != '\0')
		n = snprintf(dl->dir, sizeof(dl->dir), "%s", arg);
	else {
		home = dl->host->env_get(ev, MSD_ENV_HOMEDIR);
		if (home == NULL || home[0] == '\0')
			return md_error(dl, "maildir: no path and no home "
			    "directory");
		n = snprintf(dl->dir, sizeof(dl->dir), "%s/Maildir", home);
	}
	if (n < 0 || (size_t)n >= sizeof(dl->dir))
		return md_error(dl, "maildir: path too long");
	if (dl->dir[0] != '/')
		return md_error(dl, "maildir: path is not absolute");
	return MSD_OK;
}

/* ------------------------------------------------------------ junk test */

/* "X-Spam:", optional blanks, "yes" as a whole word, any case. */
static int
line_is_spam(const char *line, size_t len)
{
	static const char	 name[] = "X-Spam:";
	size_t			 i = sizeof(name) - 1;

	if (len < i || strncasecmp(line, name, i) != 0)
		return 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (len - i < 3 || strncasecmp(line + i, "yes", 3) != 0)
		return 0;
	i += 3;
	return i == len || line[i] == ' ' || line[i] == '\t' ||
	    line[i] == '\r' || line[i] == ';' || line[i] == ',';
}

/*
 * Walks the complete header lines in buf: returns 1 at the first line
 * test() accepts, 0 at the empty line ending the headers (*end set), -1
 * when buf ends first.
 */
static int
head_scan(const char *buf, size_t len, int (*test)(const char *, size_t),
    int *end)
{
	const char	*p = buf, *stop = buf + len, *nl;
	size_t		 n;

	*end = 0;
	while (p < stop && (nl = memchr(p, '\n', stop - p)) != NULL) {
		n = nl - p;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0) {
			*end = 1;
			return 0;
		}
		if (test != NULL && test(p, n))
			return 1;
		p = nl + 1;
	}
	return -1;
}

static int
head_is_spam(const char *buf, size_t len)
{
	int	 end;

	return head_scan(buf, len, line_is_spam, &end) == 1;
}

/* Reads until the end of the headers, EOF or a full buffer. */
static ssize_t
read_head(int fd, char *buf, size_t size)
{
	size_t	 len = 0;
	ssize_t	 n;
	int	 end = 0;

	while (len < size && !end) {
		if ((n = read(fd, buf + len, size - len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		len += n;
		head_scan(buf, len, NULL, &end);
	}
	return (ssize_t)len;
}

/* ------------------------------------------------------------ the dirs */

/* mkdir -p; *created tells whether the last component is new. */
static int
mkdir_parents(char *path, int *created)
{
	char	*p;

	*created = 0;
	for (p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, MD_DIR_MODE) == -1 && errno != EEXIST) {
			*p = '/';
			return -1;
		}
		*p = '/';
	}
	if (mkdir(path, MD_DIR_MODE) == 0)
		*created = 1;
	else if (errno != EEXIST)
		return -1;
	return 0;
}

static int
fsync_dir(const char *path)
{
	int	 fd, r, saved;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return r;
}

/* Creates dir and its tmp/ new/ cur/; new ones are fsync'd into place. */
static int
md_make(struct delivery *dl, const char *dir)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char	 path[PATH_MAX];
	size_t	 i;
	int	 created, any = 0;

	/*
	 * The usual case is a maildir that exists: stat takes no directory
	 * lock, while mkdir would serialise concurrent deliveries on it.
	 */
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		struct stat sb;

		if (snprintf(path, sizeof(path), "%s/%s", dir, subs[i]) >=
		    (int)sizeof(path))
			return md_error(dl, "maildir: path too long");
		if (stat(path, &sb) == -1 || !S_ISDIR(sb.st_mode))
			break;
	}
	if (i == sizeof(subs) / sizeof(subs[0]))
		return MSD_OK;
	memcpy(path, dir, sizeof(path));
	if (mkdir_parents(path, &created) == -1)
		return md_fail(dl, "cannot create", dir);
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (snprintf(path, sizeof(path), "%s/%s", dir, subs[i]) >=
		    (int)sizeof(path))
			return md_error(dl, "maildir: path too long");
		if (mkdir(path, MD_DIR_MODE) == 0)
			any = 1;
		else if (errno != EEXIST)
			return md_fail(dl, "cannot create", path);
	}
	if (any && fsync_dir(dir) == -1)
		return md_fail(dl, "cannot fsync", dir);
	return MSD_OK;
}

/* ------------------------------------------------------------ the file */

/* The host name as Maildir wants it: '/' and ':' escaped as octal. */
static void
md_hostname(char *out, size_t size)
{
	char	 host[256];
	size_t	 o = 0;
	char	*p;

	if (gethostname(host, sizeof(host)) == -1)
		memcpy(host, "localhost", sizeof("localhost"));
	host[sizeof(host) - 1] = '\0';
	for (p = host; *p && o + 5 < size; p++) {
		if (*p == '/' || *p == ':')
			o += snprintf(out + o, size - o, "\\%03o",
			    (unsigned char)*p);
		else
			out[o++] = *p;
	}
	out[o] = '\0';
}

/*
 * The name in new/ is derived from the envelope, "<queued>.E<evpid>.<host>",
 * so a delivery repeated after a crash (the queue never heard of the first
 * one) finds its earlier copy instead of adding a second.  The tmp/ name
 * stays unique per attempt.
 */
static int
md_names(struct delivery *dl, const msd_envelope *ev, const char *host)
{
	const char	*id = dl->host->env_get(ev, MSD_ENV_ID);
	const char	*when = dl->host->env_get(ev, MSD_ENV_CREATION);
	int		 n;

	if (id == NULL || id[0] == '\0' || when == NULL || when[0] == '\0')
		return 0;
	n = snprintf(dl->new, sizeof(dl->new), "%s/new/%s.E%s.%s", dl->dir,
	    when, id, host);
	if (n < 0 || (size_t)n >= sizeof(dl->new))
		return md_error(dl, "maildir: path too long");
	return 1;
}

/* Creates tmp/<sec.MusecPpid_counter.host> exclusively. */
static int
md_create(struct delivery *dl, const msd_envelope *ev)
{
	char		 host[256 * 4 + 1], name[NAME_MAX + 1];
	struct timeval	 tv;
	int		 fd, i, n, named;

	md_hostname(host, sizeof(host));
	if ((named = md_names(dl, ev, host)) == MSD_TEMPFAIL)
		return -1;
	for (i = 0; i < MD_NAME_TRIES; i++) {
		gettimeofday(&tv, NULL);
		n = snprintf(name, sizeof(name), "%lld.M%ldP%ld_%u.%s",
		    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(),
		    md_counter++, host);
		if (n < 0 || (size_t)n >= sizeof(name) ||
		    snprintf(dl->tmp, sizeof(dl->tmp), "%s/tmp/%s", dl->dir,
		    name) >= (int)sizeof(dl->tmp) || (!named &&
		    snprintf(dl->new, sizeof(dl->new), "%s/new/%s", dl->dir,
		    name) >= (int)sizeof(dl->new))) {
			md_error(dl, "maildir: path too long");
			return -1;
		}
		fd = open(dl->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    MD_FILE_MODE);
		if (fd != -1)
			return fd;
		if (errno != EEXIST) {
			md_fail(dl, "cannot create", dl->tmp);
			return -1;
		}
	}
	md_error(dl, "maildir: no unique file name in tmp/");
	return -1;
}

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

/* Writes the bytes already read, then the rest of in; fsyncs. */
static int
md_copy(struct delivery *dl, int out, int in, char *buf, size_t len)
{
	ssize_t	 n;

	for (;;) {
		if (write_all(out, buf, len) == -1)
			return md_fail(dl, "cannot write", dl->tmp);
		if ((n = read(in, buf, MD_BUFSIZE)) == -1) {
			if (errno == EINTR) {
				len = 0;
				continue;
			}
			return md_fail(dl, "cannot read the message for",
			    dl->tmp);
		}
		if (n == 0)
			break;
		len = n;
	}
	if (fsync(out) == -1)
		return md_fail(dl, "cannot fsync", dl->tmp);
	return MSD_OK;
}

/* tmp/ to new/: link never replaces a file, rename where links fail. */
static int
md_publish(struct delivery *dl)
{
	char	 newdir[PATH_MAX];
	int	 earlier = 0;

	if (snprintf(newdir, sizeof(newdir), "%s/new", dl->dir) >=
	    (int)sizeof(newdir))
		return md_error(dl, "maildir: path too long");
	if (link(dl->tmp, dl->new) == 0)
		unlink(dl->tmp);
	else if (errno == EEXIST) {
		/* Delivered before a crash: keep that copy, drop this one. */
		dl->host->log(MSD_LOG_INFO, "%s already delivered", dl->new);
		unlink(dl->tmp);
		earlier = 1;
	} else if (errno == EPERM || errno == EXDEV || errno == ENOSYS ||
	    errno == EOPNOTSUPP || errno == EMLINK) {
		if (rename(dl->tmp, dl->new) == -1)
			return md_fail(dl, "cannot rename into", dl->new);
	} else
		return md_fail(dl, "cannot link into", dl->new);
	/* Not durable: take it back so the retry does not duplicate it. */
	if (fsync_dir(newdir) == -1) {
		md_fail(dl, "cannot fsync", newdir);
		if (!earlier)
			unlink(dl->new);
		return MSD_TEMPFAIL;
	}
	return MSD_OK;
}

static int
md_store(struct delivery *dl, const msd_envelope *ev, int in, char *buf,
    size_t len)
{
	int	 out, r;

	if ((out = md_create(dl, ev)) == -1)
		return MSD_TEMPFAIL;
	r = md_copy(dl, out, in, buf, len);
	if (close(out) == -1 && r == MSD_OK)
		r = md_fail(dl, "cannot write", dl->tmp);
	if (r == MSD_OK)
		r = md_publish(dl);
	if (r != MSD_OK)
		unlink(dl->tmp);
	return r;
}

static int
md_deliver(const struct msd_host *host, int fd, const msd_envelope *ev,
    msd_result *res)
{
	struct delivery	 dl;
	const char	*junk;
	char		*buf;
	ssize_t		 len;
	size_t		 n;
	int		 r;

	memset(&dl, 0, sizeof(dl));
	dl.host = host;
	dl.res = res;
	if ((r = md_target(&dl, ev)) != MSD_OK)
		return r;
	if ((buf = malloc(MD_BUFSIZE)) == NULL)
		return md_fail(&dl, "out of memory for", "the copy buffer");
	if ((len = read_head(fd, buf, MD_BUFSIZE)) == -1) {
		free(buf);
		return md_fail(&dl, "cannot read", "the message");
	}
	r = md_make(&dl, dl.dir);
	junk = host->env_get(ev, MSD_ENV_MDA_JUNK);
	if (r == MSD_OK && junk != NULL && strcmp(junk, "1") == 0 &&
	    head_is_spam(buf, (size_t)len)) {
		n = strlen(dl.dir);
		if (n + sizeof("/" MD_JUNK_FOLDER) > sizeof(dl.dir))
			r = md_error(&dl, "maildir: path too long");
		else {
			memcpy(dl.dir + n, "/" MD_JUNK_FOLDER,
			    sizeof("/" MD_JUNK_FOLDER));
			r = md_make(&dl, dl.dir);
		}
	}
	if (r == MSD_OK)
		r = md_store(&dl, ev, fd, buf, (size_t)len);
	free(buf);
	return r;
}

static const struct msd_mda_ops maildir_ops = {
	.size = MSD_MDA_OPS_SIZE,
	.deliver = md_deliver,
};

static const struct msd_module maildir_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD,
	.kind = MSD_KIND_MDA,
	.name = "maildir",
	.version = PACKAGE_VERSION,
	.ops = &maildir_ops,
	.description = "deliver into a Maildir, junk to .Junk",
};

MSD_MODULE(maildir)
{
	return &maildir_module;
}
