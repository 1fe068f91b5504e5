/*
 * queue_fs.c - the `fs` queue backend: one file per message and per
 * envelope under the spool directory.
 *
 *	<spool>/message/<msgid>		message, 8 hex digits
 *	<spool>/tmp/<evpid>		envelope staged by envelope_create
 *	<spool>/envelope/<evpid>	committed envelope, 16 hex digits
 *
 * Group commit: message_commit only marks a message's staged envelopes as
 * part of the current round.  flush then makes the whole round durable:
 * the message files and staged envelopes first (one syncfs(), or with the
 * option "sync=files" an fsync of each by a few threads at once), then the
 * envelopes are renamed into envelope/ and that directory fsync'd.  An
 * envelope is never durable in envelope/ before its message, so a crash
 * can leave only uncommitted files behind, which the host removes.
 *
 * Uses only sdk/modsmtpd.h and libc; it logs through host->log.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* syncfs */
#endif
#include <sys/random.h>
#include <sys/stat.h>

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modsmtpd.h"

/* The build force-includes config.h; out of tree there is none. */
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

#define FS_FILE_MAX		(1024 * 1024)	/* largest envelope */
#define FS_ID_TRIES		100		/* random id collisions */
#define FS_DIR_MODE		0700
#define FS_FILE_MODE		0600

/* An envelope written by envelope_create, waiting for message_commit. */
struct staged {
	uint32_t	 msgid;
	uint64_t	 evpid;
	int		 in_round;	/* message_commit'ed, flush pending */
};

struct fs {
	const struct msd_host	*host;
	char			 spool[PATH_MAX];
	int			 msgdir;	/* kept open for flush */
	int			 envdir;
	struct staged		*staged;
	size_t			 nstaged;
	size_t			 capstaged;
	int			 dirty;		/* commits since last flush */
	int			 sync_files;	/* config "sync=files" */
};

/* ---------------------------------------------------------------- utils */

static int
fs_fail(struct fs *fs, const char *what, const char *path)
{
	int	 saved = errno;

	fs->host->log(MSD_LOG_WARNING, "%s %s: %s", what, path,
	    strerror(saved));
	return MSD_TEMPFAIL;
}

static int
msg_path(const struct fs *fs, char *buf, size_t size, uint32_t msgid)
{
	int	 n;

	n = snprintf(buf, size, "%s/message/%08" PRIx32, fs->spool, msgid);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

static int
fs_toolong(struct fs *fs, const char *what)
{
	fs->host->log(MSD_LOG_WARNING, "path too long under %s: %s",
	    fs->spool, what);
	return MSD_TEMPFAIL;
}

static int
dir_path(const struct fs *fs, char *buf, size_t size, const char *sub)
{
	int	 n;

	n = snprintf(buf, size, "%s/%s", fs->spool, sub);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* sub is "tmp" or "envelope". */
static int
env_path(const struct fs *fs, char *buf, size_t size, const char *sub,
    uint64_t evpid)
{
	int	 n;

	n = snprintf(buf, size, "%s/%s/%016" PRIx64, fs->spool, sub, evpid);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

static int
fs_random(uint32_t *v)
{
	ssize_t	 n;

	do {
		n = getrandom(v, sizeof(*v), 0);
	} while (n == -1 && errno == EINTR);
	return n == (ssize_t)sizeof(*v) ? 0 : -1;
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

static int
fsync_path(const char *path)
{
	int	 fd, r, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	r = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return r;
}

/* Exactly digits hex characters, as this module names its files. */
static int
parse_hex(const char *name, size_t digits, uint64_t *v)
{
	size_t	 i;

	if (strlen(name) != digits)
		return 0;
	for (i = 0; i < digits; i++)
		if (!((name[i] >= '0' && name[i] <= '9') ||
		    (name[i] >= 'a' && name[i] <= 'f')))
			return 0;
	*v = strtoull(name, NULL, 16);
	return 1;
}

/*
 * Writes buf to path, fsync'd when sync is set.  With O_EXCL, a name
 * already taken gives MSD_NOTFOUND so the caller can pick another.
 */
static int
write_file(struct fs *fs, const char *path, int flags, const char *buf,
    size_t len, int sync)
{
	int	 fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags,
	    FS_FILE_MODE)) == -1)
		return errno == EEXIST ? MSD_NOTFOUND : fs_fail(fs,
		    "cannot create", path);
	if (write_all(fd, buf, len) == -1 || (sync && fsync(fd) == -1)) {
		fs_fail(fs, "cannot write", path);
		close(fd);
		unlink(path);
		return MSD_TEMPFAIL;
	}
	if (close(fd) == -1) {
		fs_fail(fs, "cannot write", path);
		unlink(path);
		return MSD_TEMPFAIL;
	}
	return MSD_OK;
}

/* Reads a whole file of at most FS_FILE_MAX bytes into out. */
static int
read_file(struct fs *fs, const char *path, msd_result *out)
{
	struct stat	 st;
	char		*buf;
	size_t		 total = 0;
	ssize_t		 n = 0;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return errno == ENOENT ? MSD_NOTFOUND :
		    fs_fail(fs, "cannot open", path);
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > FS_FILE_MAX) {
		fs->host->log(MSD_LOG_WARNING, "%s: not a regular file of "
		    "at most %d bytes", path, FS_FILE_MAX);
		close(fd);
		return MSD_TEMPFAIL;
	}
	/* One byte more than the size, to notice a file that grew. */
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return fs_fail(fs, "out of memory reading", path);
	}
	while (total <= (size_t)st.st_size) {
		n = read(fd, buf + total, (size_t)st.st_size + 1 - total);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += n;
	}
	if (n == -1 || total != (size_t)st.st_size) {
		if (n == -1)
			fs_fail(fs, "cannot read", path);
		else
			fs->host->log(MSD_LOG_WARNING, "%s: changed while "
			    "being read", path);
		free(buf);
		close(fd);
		return MSD_TEMPFAIL;
	}
	fs->host->result_set(out, buf, total);
	free(buf);
	close(fd);
	return MSD_OK;
}

/* ---------------------------------------------------------- staged list */

static int
staged_add(struct fs *fs, uint32_t msgid, uint64_t evpid)
{
	struct staged	*s;
	size_t		 cap;

	if (fs->nstaged == fs->capstaged) {
		cap = fs->capstaged ? fs->capstaged * 2 : 16;
		if (cap > SIZE_MAX / sizeof(*s) ||
		    (s = realloc(fs->staged, cap * sizeof(*s))) == NULL)
			return -1;
		fs->staged = s;
		fs->capstaged = cap;
	}
	fs->staged[fs->nstaged].msgid = msgid;
	fs->staged[fs->nstaged].evpid = evpid;
	fs->staged[fs->nstaged].in_round = 0;
	fs->nstaged++;
	return 0;
}

static void
staged_remove(struct fs *fs, size_t i)
{
	fs->staged[i] = fs->staged[--fs->nstaged];
}

static int
staged_find(const struct fs *fs, uint64_t evpid, size_t *idx)
{
	size_t	 i;

	for (i = 0; i < fs->nstaged; i++)
		if (fs->staged[i].evpid == evpid) {
			*idx = i;
			return 1;
		}
	return 0;
}

/* Unlinks and forgets the staged envelopes of msgid. */
static void
staged_drop(struct fs *fs, uint32_t msgid)
{
	char	 path[PATH_MAX];
	size_t	 i = 0;

	while (i < fs->nstaged) {
		if (fs->staged[i].msgid != msgid) {
			i++;
			continue;
		}
		if (env_path(fs, path, sizeof(path), "tmp",
		    fs->staged[i].evpid) == 0 && unlink(path) == -1 &&
		    errno != ENOENT)
			fs_fail(fs, "cannot remove", path);
		staged_remove(fs, i);
	}
}

/* ------------------------------------------------------------ open/close */

static int
mkdir_parents(char *path)
{
	char	*p;

	for (p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, FS_DIR_MODE) == -1 && errno != EEXIST) {
			*p = '/';
			return -1;
		}
		*p = '/';
	}
	if (mkdir(path, FS_DIR_MODE) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

static int
fs_mkdirs(struct fs *fs)
{
	static const char *const subs[] = { "message", "tmp", "envelope" };
	char	 path[PATH_MAX];
	size_t	 i;

	memcpy(path, fs->spool, sizeof(path));
	if (mkdir_parents(path) == -1)
		return fs_fail(fs, "cannot create", fs->spool);
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (dir_path(fs, path, sizeof(path), subs[i]) == -1)
			return fs_toolong(fs, subs[i]);
		if (mkdir(path, FS_DIR_MODE) == -1 && errno != EEXIST)
			return fs_fail(fs, "cannot create", path);
	}
	/* The subdirectories' own names must survive a crash too. */
	if (fsync_path(fs->spool) == -1)
		return fs_fail(fs, "cannot fsync", fs->spool);
	return MSD_OK;
}

/* Envelopes left in tmp/ by a crash were never committed: drop them. */
static int
fs_clean_tmp(struct fs *fs)
{
	char		 path[PATH_MAX];
	struct dirent	*de;
	DIR		*d;

	if (dir_path(fs, path, sizeof(path), "tmp") == -1)
		return fs_toolong(fs, "tmp");
	if ((d = opendir(path)) == NULL)
		return fs_fail(fs, "cannot open", path);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == -1 && errno != ENOENT)
			fs_fail(fs, "cannot remove leftover in", path);
	}
	closedir(d);
	return MSD_OK;
}

static int
open_dir(struct fs *fs, const char *sub, int *fd)
{
	char	 path[PATH_MAX];

	if (dir_path(fs, path, sizeof(path), sub) == -1)
		return fs_toolong(fs, sub);
	if ((*fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return fs_fail(fs, "cannot open", path);
	return MSD_OK;
}

static void
fs_close(void *inst)
{
	struct fs	*fs = inst;

	if (fs == NULL)
		return;
	if (fs->msgdir != -1)
		close(fs->msgdir);
	if (fs->envdir != -1)
		close(fs->envdir);
	/* Staged envelopes stay in tmp/; the next open removes them. */
	free(fs->staged);
	free(fs);
}

static int
fs_open(const struct msd_host *host, const char *spool, const char *config,
    void **inst)
{
	struct fs	*fs;

	if (spool == NULL || spool[0] == '\0')
		spool = host->config_get("spool");
	if (spool == NULL || spool[0] != '/') {
		host->log(MSD_LOG_ERR, "no absolute spool directory given");
		return MSD_TEMPFAIL;
	}
	/* Room for "/envelope/" and 16 hex digits in every path. */
	if (strlen(spool) + sizeof("/envelope/") + 16 >= PATH_MAX) {
		host->log(MSD_LOG_ERR, "spool path too long: %s", spool);
		return MSD_TEMPFAIL;
	}
	if ((fs = calloc(1, sizeof(*fs))) == NULL) {
		host->log(MSD_LOG_ERR, "out of memory");
		return MSD_TEMPFAIL;
	}
	fs->host = host;
	fs->msgdir = fs->envdir = -1;
	if (config != NULL && config[0] != '\0') {
		if (strcmp(config, "sync=files") == 0)
			fs->sync_files = 1;
		else if (strcmp(config, "sync=fs") != 0) {
			host->log(MSD_LOG_ERR, "unknown option \"%s\" (expected"
			    " sync=fs or sync=files)", config);
			free(fs);
			return MSD_TEMPFAIL;
		}
	}
	memcpy(fs->spool, spool, strlen(spool) + 1);
	if (fs_mkdirs(fs) != MSD_OK || fs_clean_tmp(fs) != MSD_OK ||
	    open_dir(fs, "message", &fs->msgdir) != MSD_OK ||
	    open_dir(fs, "envelope", &fs->envdir) != MSD_OK) {
		fs_close(fs);
		return MSD_TEMPFAIL;
	}
	*inst = fs;
	return MSD_OK;
}

/* -------------------------------------------------------------- message */

static int
fs_message_create(void *inst, uint32_t *msgid, int *fdp)
{
	struct fs	*fs = inst;
	char		 path[PATH_MAX];
	uint32_t	 id;
	int		 fd, i;

	for (i = 0; i < FS_ID_TRIES; i++) {
		if (fs_random(&id) == -1)
			return fs_fail(fs, "getrandom", "for a message id");
		if (id == 0 || msg_path(fs, path, sizeof(path), id) == -1)
			continue;
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    FS_FILE_MODE);
		if (fd != -1) {
			*msgid = id;
			*fdp = fd;
			return MSD_OK;
		}
		if (errno != EEXIST)
			return fs_fail(fs, "cannot create", path);
	}
	fs->host->log(MSD_LOG_WARNING, "no free message id in %d tries",
	    FS_ID_TRIES);
	return MSD_TEMPFAIL;
}

static int
fs_message_commit(void *inst, uint32_t msgid)
{
	struct fs	*fs = inst;
	size_t		 i, n = 0;

	for (i = 0; i < fs->nstaged; i++)
		if (fs->staged[i].msgid == msgid) {
			fs->staged[i].in_round = 1;
			n++;
		}
	if (n == 0) {
		fs->host->log(MSD_LOG_WARNING, "commit of message %08" PRIx32
		    " without envelopes", msgid);
		return MSD_NOTFOUND;
	}
	fs->dirty = 1;
	return MSD_OK;
}

static int
fs_message_delete(void *inst, uint32_t msgid)
{
	struct fs	*fs = inst;
	char		 path[PATH_MAX];

	staged_drop(fs, msgid);
	if (msg_path(fs, path, sizeof(path), msgid) == -1)
		return MSD_NOTFOUND;
	if (unlink(path) == -1)
		return errno == ENOENT ? MSD_NOTFOUND :
		    fs_fail(fs, "cannot remove", path);
	return MSD_OK;
}

static int
fs_message_fd_r(void *inst, uint32_t msgid)
{
	struct fs	*fs = inst;
	char		 path[PATH_MAX];
	int		 fd;

	if (msg_path(fs, path, sizeof(path), msgid) == -1)
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1 &&
	    errno != ENOENT)
		fs_fail(fs, "cannot open", path);
	return fd;
}

/* ------------------------------------------------------------- envelope */

static int
check_len(struct fs *fs, const char *buf, size_t len)
{
	if ((buf == NULL && len > 0) || len > FS_FILE_MAX) {
		fs->host->log(MSD_LOG_WARNING, "envelope of %zu bytes refused "
		    "(at most %d)", len, FS_FILE_MAX);
		return -1;
	}
	return 0;
}

static int
fs_envelope_create(void *inst, uint32_t msgid, const char *buf, size_t len,
    uint64_t *evpid)
{
	struct fs	*fs = inst;
	char		 path[PATH_MAX];
	struct stat	 st;
	uint64_t	 id;
	uint32_t	 lo;
	int		 i, r;

	if (check_len(fs, buf, len) == -1)
		return MSD_TEMPFAIL;
	if (msg_path(fs, path, sizeof(path), msgid) == -1 ||
	    stat(path, &st) == -1)
		return errno == ENOENT ? MSD_NOTFOUND :
		    fs_fail(fs, "cannot stat", path);
	for (i = 0; i < FS_ID_TRIES; i++) {
		if (fs_random(&lo) == -1)
			return fs_fail(fs, "getrandom", "for an envelope id");
		id = (uint64_t)msgid << 32 | lo;
		/* Neither committed nor staged under that id. */
		if (lo == 0 || env_path(fs, path, sizeof(path), "envelope",
		    id) == -1 || lstat(path, &st) == 0)
			continue;
		if (env_path(fs, path, sizeof(path), "tmp", id) == -1)
			return fs_toolong(fs, "tmp");
		r = write_file(fs, path, O_EXCL, buf, len, 0);
		if (r == MSD_NOTFOUND)
			continue;	/* EEXIST */
		if (r != MSD_OK)
			return r;
		if (staged_add(fs, msgid, id) == -1) {
			unlink(path);
			return fs_fail(fs, "out of memory staging", path);
		}
		*evpid = id;
		return MSD_OK;
	}
	fs->host->log(MSD_LOG_WARNING, "no free envelope id in %d tries",
	    FS_ID_TRIES);
	return MSD_TEMPFAIL;
}

static int
fs_envelope_delete(void *inst, uint64_t evpid)
{
	struct fs	*fs = inst;
	char		 path[PATH_MAX];
	size_t		 i;

	if (staged_find(fs, evpid, &i)) {
		if (env_path(fs, path, sizeof(path), "tmp", evpid) == -1)
			return fs_toolong(fs, "tmp");
		staged_remove(fs, i);
	} else if (env_path(fs, path, sizeof(path), "envelope", evpid) == -1)
		return fs_toolong(fs, "envelope");
	/* No fsync: a delete lost in a crash means a redelivery, not a loss. */
	if (unlink(path) == -1)
		return errno == ENOENT ? MSD_NOTFOUND :
		    fs_fail(fs, "cannot remove", path);
	return MSD_OK;
}

static int
fs_envelope_update(void *inst, uint64_t evpid, const char *buf, size_t len)
{
	struct fs	*fs = inst;
	char		 tmp[PATH_MAX], path[PATH_MAX];
	struct stat	 st;
	size_t		 i;
	int		 r;

	if (check_len(fs, buf, len) == -1)
		return MSD_TEMPFAIL;
	if (env_path(fs, tmp, sizeof(tmp), "tmp", evpid) == -1 ||
	    env_path(fs, path, sizeof(path), "envelope", evpid) == -1)
		return fs_toolong(fs, "envelope");
	/* Not committed yet: message_commit will fsync it. */
	if (staged_find(fs, evpid, &i))
		return write_file(fs, tmp, O_TRUNC, buf, len, 0);
	if (lstat(path, &st) == -1)
		return errno == ENOENT ? MSD_NOTFOUND :
		    fs_fail(fs, "cannot stat", path);
	/* After a crash the envelope is either the old or the new one. */
	if ((r = write_file(fs, tmp, O_TRUNC, buf, len, 1)) != MSD_OK)
		return r;
	if (rename(tmp, path) == -1) {
		r = fs_fail(fs, "cannot rename", tmp);
		unlink(tmp);
		return r;
	}
	return MSD_OK;
}

static int
fs_envelope_load(void *inst, uint64_t evpid, msd_result *out)
{
	struct fs	*fs = inst;
	char		 path[PATH_MAX];

	if (env_path(fs, path, sizeof(path), "envelope", evpid) == -1)
		return MSD_NOTFOUND;
	return read_file(fs, path, out);
}

/* ----------------------------------------------------------------- walks */

/* Next entry named with digits hex digits; the cookie is the DIR. */
static int
walk_next(struct fs *fs, const char *sub, size_t digits, void **cookie,
    uint64_t *id)
{
	char		 path[PATH_MAX];
	struct dirent	*de;
	DIR		*d = *cookie;
	int		 r;

	if (d == NULL) {
		if (dir_path(fs, path, sizeof(path), sub) == -1)
			return fs_toolong(fs, sub);
		if ((d = opendir(path)) == NULL)
			return fs_fail(fs, "cannot open", path);
		*cookie = d;
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		if (parse_hex(de->d_name, digits, id))
			return MSD_OK;
	}
	r = errno != 0 ? fs_fail(fs, "cannot read directory", sub) :
	    MSD_NOTFOUND;
	closedir(d);
	*cookie = NULL;
	return r;
}

static int
fs_envelope_walk(void *inst, void **cookie, uint64_t *evpid,
    msd_result *out)
{
	struct fs	*fs = inst;
	uint64_t	 id;
	int		 r;

	while ((r = walk_next(fs, "envelope", 16, cookie, &id)) == MSD_OK) {
		/* A vanished or unreadable file (logged) is skipped. */
		if (fs_envelope_load(fs, id, out) == MSD_OK) {
			*evpid = id;
			return MSD_OK;
		}
	}
	return r;
}

static int
fs_message_walk(void *inst, void **cookie, uint32_t *msgid)
{
	uint64_t	 id;
	int		 r;

	if ((r = walk_next(inst, "message", 8, cookie, &id)) == MSD_OK)
		*msgid = (uint32_t)id;
	return r;
}

/* Moves the round's envelopes from tmp/ to envelope/. */
static int
round_publish(struct fs *fs)
{
	char	 tmp[PATH_MAX], path[PATH_MAX];
	size_t	 i = 0;

	while (i < fs->nstaged) {
		if (!fs->staged[i].in_round) {
			i++;
			continue;
		}
		if (env_path(fs, tmp, sizeof(tmp), "tmp",
		    fs->staged[i].evpid) == -1 || env_path(fs, path,
		    sizeof(path), "envelope", fs->staged[i].evpid) == -1 ||
		    rename(tmp, path) == -1)
			return fs_fail(fs, "cannot rename", tmp);
		staged_remove(fs, i);
	}
	return MSD_OK;
}

/*
 * The files of a round are fsync'd by a few threads at once: the file
 * system merges concurrent syncs into few journal commits, and unlike
 * syncfs() the round never waits for other programs' dirty data.
 */
#define FS_SYNC_THREADS		8

struct sync_job {
	char	**paths;
	size_t	 npaths;
	size_t	 first;
	size_t	 step;
	int	 failed;		/* errno of the first failure */
	size_t	 bad;			/* ... and which path */
};

static void *
sync_worker(void *arg)
{
	struct sync_job	*j = arg;
	size_t		 i;

	for (i = j->first; i < j->npaths && !j->failed; i += j->step)
		if (fsync_path(j->paths[i]) == -1) {
			j->failed = errno;
			j->bad = i;
		}
	return NULL;
}

static int
sync_paths(struct fs *fs, char **paths, size_t n)
{
	struct sync_job	 jobs[FS_SYNC_THREADS];
	pthread_t	 tid[FS_SYNC_THREADS];
	size_t		 i, k = n < FS_SYNC_THREADS ? n : FS_SYNC_THREADS;
	int		 started[FS_SYNC_THREADS];

	for (i = 0; i < k; i++) {
		jobs[i] = (struct sync_job){ paths, n, i, k, 0, 0 };
		/* Without a thread, this one does its share itself. */
		started[i] = pthread_create(&tid[i], NULL, sync_worker,
		    &jobs[i]) == 0;
		if (!started[i])
			sync_worker(&jobs[i]);
	}
	for (i = 0; i < k; i++)
		if (started[i])
			pthread_join(tid[i], NULL);
	for (i = 0; i < k; i++)
		if (jobs[i].failed) {
			errno = jobs[i].failed;
			return fs_fail(fs, "cannot fsync", paths[jobs[i].bad]);
		}
	return MSD_OK;
}

static void
paths_free(char **paths, size_t n)
{
	while (n > 0)
		free(paths[--n]);
	free(paths);
}

/* The message files and staged envelopes of the round, to be synced. */
static int
round_paths(struct fs *fs, char ***out, size_t *np)
{
	char	 path[PATH_MAX], **paths;
	size_t	 i, n = 0;

	if ((paths = calloc(2 * fs->nstaged + 1, sizeof(*paths))) == NULL)
		return fs_fail(fs, "out of memory for", "a round");
	for (i = 0; i < fs->nstaged; i++) {
		if (!fs->staged[i].in_round)
			continue;
		/* A second fsync of a message with several envelopes is free. */
		if (msg_path(fs, path, sizeof(path), fs->staged[i].msgid) == -1 ||
		    (paths[n++] = strdup(path)) == NULL ||
		    env_path(fs, path, sizeof(path), "tmp",
		    fs->staged[i].evpid) == -1 ||
		    (paths[n++] = strdup(path)) == NULL) {
			paths_free(paths, n);
			return fs_fail(fs, "cannot list", "a round");
		}
	}
	*out = paths;
	*np = n;
	return MSD_OK;
}

static int
fs_flush(void *inst)
{
	struct fs	*fs = inst;
	char		**paths = NULL;
	size_t		 n = 0;
	int		 r;

	if (!fs->dirty)
		return MSD_OK;
	/*
	 * Bytes first, then the names: message files and staged envelopes
	 * durable, then the envelopes renamed into envelope/ and that
	 * directory synced.  An envelope is never durable before its message.
	 *
	 * By default one syncfs() covers the round: one pass over the file
	 * system however many files, measured 1.8x the rate of parallel
	 * fsyncs here.  It also writes other programs' dirty data on that
	 * file system, so a spool sharing a disk with heavy writers may want
	 * "sync=files", which syncs only the round's own files.
	 */
	if (!fs->sync_files) {
		if (syncfs(fs->msgdir) == -1)
			return fs_fail(fs, "cannot syncfs", fs->spool);
	} else {
		if ((r = round_paths(fs, &paths, &n)) != MSD_OK)
			return r;
		r = sync_paths(fs, paths, n);
		paths_free(paths, n);
		if (r != MSD_OK)
			return r;
		if (fsync(fs->msgdir) == -1)
			return fs_fail(fs, "cannot fsync", "message/");
	}
	if ((r = round_publish(fs)) != MSD_OK)
		return r;
	if (fsync(fs->envdir) == -1)
		return fs_fail(fs, "cannot fsync", "envelope/");
	fs->dirty = 0;
	return MSD_OK;
}

static const struct msd_queue_ops fs_ops = {
	.size = MSD_QUEUE_OPS_SIZE,
	.open = fs_open,
	.close = fs_close,
	.message_create = fs_message_create,
	.message_commit = fs_message_commit,
	.message_delete = fs_message_delete,
	.message_fd_r = fs_message_fd_r,
	.envelope_create = fs_envelope_create,
	.envelope_delete = fs_envelope_delete,
	.envelope_update = fs_envelope_update,
	.envelope_load = fs_envelope_load,
	.envelope_walk = fs_envelope_walk,
	.message_walk = fs_message_walk,
	.flush = fs_flush,
};

static const struct msd_module fs_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD | MSD_MF_MAY_BLOCK,
	.kind = MSD_KIND_QUEUE,
	.name = "fs",
	.version = PACKAGE_VERSION,
	.ops = &fs_ops,
	.description = "queue in spool files, with group commit",
};

MSD_MODULE(fs)
{
	return &fs_module;
}
