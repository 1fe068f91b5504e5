/*
 * queue_backend.c - the host side of the queue module (queue role only).
 * Every call into the module goes through here: envelopes are serialised
 * to JSON on the way in and validated on the way out, and a module error
 * is logged once with what was being done.
 *
 * Under `queue compression` or `queue encryption` the module only ever
 * sees the packed form (queue_crypt.c), whatever module it is:
 *
 *  - a new message is written (by the smtp role, or a bounce here) into an
 *    unnamed file of ours in <spool>/plaintext; the module's descriptor
 *    waits, and at commit the plaintext is packed into it, before the
 *    module's commit and the round's flush make it durable as usual (the
 *    module syncs what the host wrote through its descriptor);
 *  - a message opened for delivery is unpacked into a new unnamed file,
 *    in memory when it is small, else there: a regular file at offset 0
 *    like the module's own;
 *  - envelopes are packed on create and update and unpacked on load.
 *
 * A file that cannot be unpacked (another key, corrupt, truncated) is
 * logged with its id and left where it is: never delivered, never removed.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

#define PLAIN_DIR		"plaintext"
#define RECEIVING_BUCKETS	1024	/* messages being received at once */
/*
 * Creating inodes is what costs here (ext4 looks long for a free one when
 * many were just deleted): emptied plaintext files are kept for the next
 * messages, and a small message is decoded for delivery into memory.
 */
#define PLAIN_SPARES		64
#define PLAIN_MEM_MAX		(256 * 1024)	/* stored bytes */

static struct module		*qmod;
static struct msd_queue_ops	 qops;
static void			*qinst;

/* A message being received while files are packed. */
struct receiving {
	struct receiving	*next;
	uint32_t		 msgid;
	int			 plain;		/* what the writer fills */
	int			 stored;	/* the module's, packed at commit */
};
static struct receiving	*recv_table[RECEIVING_BUCKETS];
static int		 plaindir = -1;
static int		 spares[PLAIN_SPARES];
static size_t		 nspares;

/* ------------------------------------------------------ plaintext files */

/* Named files there come only from the fallback below and a crash. */
static void
plain_dir_clean(void)
{
	struct dirent	*de;
	DIR		*d;
	int		 fd;

	if ((fd = dup(plaindir)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' &&
		    unlinkat(plaindir, de->d_name, 0) == -1 && errno != ENOENT)
			log_warn("queue: cannot remove %s/%s/%s", env.spool,
			    PLAIN_DIR, de->d_name);
	closedir(d);
}

static int
plain_dir_open(void)
{
	char	 path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", env.spool,
	    PLAIN_DIR) >= sizeof(path)) {
		log_warnx("queue: spool path too long for %s", PLAIN_DIR);
		return -1;
	}
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		log_warn("queue: cannot create %s", path);
		return -1;
	}
	if ((plaindir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC |
	    O_NOFOLLOW)) == -1) {
		log_warn("queue: cannot open %s", path);
		return -1;
	}
	plain_dir_clean();
	return 0;
}

/* An unnamed read-write file in <spool>/plaintext: gone when closed. */
static int
plain_tmpfile(void)
{
	char	 name[16];
	int	 fd, i;

	if (plaindir == -1 && plain_dir_open() == -1)
		return -1;
	fd = openat(plaindir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd != -1)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
		log_warn("queue: cannot create a file in %s/%s", env.spool,
		    PLAIN_DIR);
		return -1;
	}
	/* A file system without O_TMPFILE: a name, unlinked at once. */
	for (i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "%08" PRIx32, msd_random());
		fd = openat(plaindir, name, O_RDWR | O_CREAT | O_EXCL |
		    O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd != -1) {
			unlinkat(plaindir, name, 0);
			return fd;
		}
		if (errno != EEXIST)
			break;
	}
	log_warn("queue: cannot create a file in %s/%s", env.spool, PLAIN_DIR);
	return -1;
}

/* A file for a new message to be written into: a spare, else a new one. */
static int
plain_get(void)
{
	if (nspares > 0)
		return spares[--nspares];
	return plain_tmpfile();
}

/*
 * After its commit the writer has closed its copy: emptied and back at
 * offset 0 (which the copies share), the file can take another message.
 */
static void
plain_put(int fd)
{
	if (nspares < PLAIN_SPARES && ftruncate(fd, 0) == 0 &&
	    lseek(fd, 0, SEEK_SET) == 0)
		spares[nspares++] = fd;
	else
		close(fd);
}

/* Where a message is decoded for delivery: memory when it is small. */
static int
delivery_file(int stored)
{
	struct stat	 st;
	int		 fd;

	if (fstat(stored, &st) == 0 && st.st_size <= PLAIN_MEM_MAX &&
	    (fd = memfd_create("plaintext", MFD_CLOEXEC)) != -1)
		return fd;
	return plain_tmpfile();
}

/* ------------------------------------------------------------ receiving */

static struct receiving **
receiving_slot(uint32_t msgid)
{
	struct receiving **pp = &recv_table[msgid % RECEIVING_BUCKETS];

	while (*pp != NULL && (*pp)->msgid != msgid)
		pp = &(*pp)->next;
	return pp;
}

/* Unlinks and returns msgid's entry, NULL when it has none. */
static struct receiving *
receiving_take(uint32_t msgid)
{
	struct receiving	**pp = receiving_slot(msgid), *r = *pp;

	if (r != NULL)
		*pp = r->next;
	return r;
}

static void
receiving_free(struct receiving *r)
{
	close(r->plain);
	close(r->stored);
	free(r);
}

/* Hands out a descriptor of a new plaintext file; keeps the module's. */
static int
receiving_start(uint32_t msgid, int stored, int *fd)
{
	struct receiving	*r;
	int			 plain;

	if ((plain = plain_get()) == -1)
		return -1;
	if ((*fd = fcntl(plain, F_DUPFD_CLOEXEC, 0)) == -1) {
		log_warn("queue: dup");
		close(plain);
		return -1;
	}
	r = xcalloc(1, sizeof(*r));
	r->msgid = msgid;
	r->plain = plain;
	r->stored = stored;
	r->next = recv_table[msgid % RECEIVING_BUCKETS];
	recv_table[msgid % RECEIVING_BUCKETS] = r;
	return 0;
}

/* The writer is done: the packed form goes into the module's file. */
static int
receiving_pack(struct receiving *r)
{
	char	 err[256];
	int	 ok;

	ok = qcrypt_pack_fd(r->plain, r->stored, err, sizeof(err)) == 0;
	if (!ok)
		log_warnx("queue: message %08" PRIx32 ": cannot store it %s: %s",
		    r->msgid, qcrypt_encrypting() ? "encrypted" : "compressed",
		    err);
	plain_put(r->plain);
	/* A delayed write error shows at close. */
	if (close(r->stored) == -1 && ok) {
		log_warn("queue: message %08" PRIx32 ": cannot store it",
		    r->msgid);
		ok = 0;
	}
	free(r);
	return ok ? 0 : -1;
}

/* ---------------------------------------------------------------- module */

int
queue_backend_init(const char *name)
{
	const struct msd_queue_ops *ops;

	if ((qmod = module_load(MSD_KIND_QUEUE, name)) == NULL)
		return -1;
	/* The loader refused modules that lack a mandatory operation. */
	ops = module_ops(qmod, sizeof(qops));
	memcpy(&qops, ops, sizeof(qops));
	if (qmod->desc.init && qmod->desc.init(qmod->host) != MSD_OK) {
		log_warnx("queue: module %s failed to initialise", qmod->path);
		return -1;
	}
	if (qops.open(qmod->host, env.spool, NULL, &qinst) != MSD_OK) {
		log_warnx("queue: cannot open spool %s", env.spool);
		return -1;
	}
	qcrypt_set_compress(env.conf->queue_compression);
	if (env.conf->queue_compression)
		log_info("queue: queue compression enabled");
	if (qcrypt_encrypting())
		log_info("queue: queue encryption enabled");
	/* Leftovers of a crash go now, whatever the settings. */
	if (qcrypt_active() && plain_dir_open() == -1)
		return -1;
	return 0;
}

int
queue_message_create(uint32_t *msgid, int *fd)
{
	int	 stored = -1;

	*fd = -1;
	if (qops.message_create(qinst, msgid, &stored) != MSD_OK)
		return -1;
	if (!qcrypt_active()) {
		*fd = stored;
		return 0;
	}
	if (receiving_start(*msgid, stored, fd) == -1) {
		close(stored);
		qops.message_delete(qinst, *msgid);
		return -1;
	}
	return 0;
}

int
queue_message_commit(uint32_t msgid)
{
	struct receiving	*r;

	if ((r = receiving_take(msgid)) != NULL && receiving_pack(r) == -1)
		return -1;
	return qops.message_commit(qinst, msgid) == MSD_OK ? 0 : -1;
}

int
queue_message_delete(uint32_t msgid)
{
	struct receiving	*r;

	if ((r = receiving_take(msgid)) != NULL)
		receiving_free(r);
	return qops.message_delete(qinst, msgid) == MSD_OK ? 0 : -1;
}

/* A read-only descriptor of the same file, or fd itself (no /proc). */
static int
read_only(int fd)
{
	char	 path[64];
	int	 ro;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if ((ro = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return fd;
	close(fd);
	return ro;
}

/* The stored form, unpacked into a file of ours; the stored fd is closed. */
static int
message_unpack(uint32_t msgid, int stored)
{
	char	 err[256];
	int	 plain;

	if ((plain = delivery_file(stored)) == -1) {
		close(stored);
		return -1;
	}
	if (qcrypt_unpack_fd(stored, plain, err, sizeof(err)) == -1) {
		log_warnx("queue: message %08" PRIx32 " cannot be read: %s;"
		    " it stays in the queue", msgid, err);
		close(plain);
		close(stored);
		return QUEUE_UNREADABLE;
	}
	close(stored);
	if (lseek(plain, 0, SEEK_SET) == -1) {
		log_warn("queue: message %08" PRIx32 ": lseek", msgid);
		close(plain);
		return -1;
	}
	/* Readers get what the module would give: no write access. */
	return read_only(plain);
}

int
queue_message_fd_r(uint32_t msgid)
{
	unsigned char	 head[8];
	ssize_t		 n;
	int		 fd;

	if ((fd = qops.message_fd_r(qinst, msgid)) == -1)
		return -1;
	/* pread leaves the module's offset at the start. */
	while ((n = pread(fd, head, sizeof(head), 0)) == -1 && errno == EINTR)
		;
	if (n == -1) {
		log_warn("queue: message %08" PRIx32 ": read", msgid);
		close(fd);
		return -1;
	}
	/* Stored as is, and that may be trusted: the module's descriptor. */
	if (!qcrypt_is_packed(head, (size_t)n) && !qcrypt_encrypting())
		return fd;
	return message_unpack(msgid, fd);
}

/* The JSON of ev as stored: packed when files are; NULL: logged. */
static char *
envelope_store(const struct envelope *ev, size_t *len)
{
	char	 err[256];
	char	*json = envelope_dump(ev), *packed;
	size_t	 jlen = strlen(json);

	if (!qcrypt_active()) {
		*len = jlen;
		return json;
	}
	if (qcrypt_pack_buf(json, jlen, &packed, len, err, sizeof(err)) == -1)
		log_warnx("queue: message %08" PRIx32 ": cannot store an "
		    "envelope: %s", ev->msgid, err);
	explicit_bzero(json, jlen);
	free(json);
	return packed;
}

int
queue_envelope_create(struct envelope *ev)
{
	char	*buf;
	size_t	 len;
	int	 r;

	if ((buf = envelope_store(ev, &len)) == NULL)
		return -1;
	r = qops.envelope_create(qinst, ev->msgid, buf, len, &ev->id);
	free(buf);
	return r == MSD_OK ? 0 : -1;
}

int
queue_envelope_delete(uint64_t evpid)
{
	return qops.envelope_delete(qinst, evpid) == MSD_OK ? 0 : -1;
}

int
queue_envelope_update(const struct envelope *ev)
{
	char	*buf;
	size_t	 len;
	int	 r;

	if ((buf = envelope_store(ev, &len)) == NULL)
		return -1;
	r = qops.envelope_update(qinst, ev->id, buf, len);
	free(buf);
	return r == MSD_OK ? 0 : -1;
}

/* Without flush the module made every commit durable already. */
int
queue_flush(void)
{
	if (qops.flush == NULL)
		return 0;
	return qops.flush(qinst) == MSD_OK ? 0 : -1;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Messages with no committed envelope were never acknowledged: remove. */
static void
remove_orphans(uint32_t *ids, size_t n)
{
	void		*cookie = NULL;
	uint32_t	 msgid;

	if (n > 0)
		qsort(ids, n, sizeof(*ids), cmp_u32);
	while (qops.message_walk(qinst, &cookie, &msgid) == MSD_OK) {
		if (n > 0 && bsearch(&msgid, ids, n, sizeof(*ids), cmp_u32))
			continue;
		log_info("queue: removing uncommitted message %08" PRIx32,
		    msgid);
		qops.message_delete(qinst, msgid);
	}
}

/* An envelope as the module stored it; -1: logged, left in place. */
static int
envelope_read(uint64_t evpid, const struct msd_result *res,
    struct envelope *ev)
{
	char	 err[256];
	char	*json;
	size_t	 len;
	int	 r;

	if (!qcrypt_is_packed(res->value, res->len) && !qcrypt_encrypting()) {
		if ((r = envelope_load_json(ev, res->value, res->len)) == -1)
			log_warnx("queue: envelope %016" PRIx64 " is corrupt,"
			    " left in place", evpid);
		return r;
	}
	if (qcrypt_unpack_buf(res->value, res->len, &json, &len, err,
	    sizeof(err)) == -1) {
		log_warnx("queue: envelope %016" PRIx64 " of message %08"
		    PRIx32 " cannot be read: %s; left in the queue", evpid,
		    (uint32_t)(evpid >> 32), err);
		return -1;
	}
	if ((r = envelope_load_json(ev, json, len)) == -1)
		log_warnx("queue: envelope %016" PRIx64 " is corrupt, left in"
		    " place", evpid);
	explicit_bzero(json, len);
	free(json);
	return r;
}

int
queue_load(void (*cb)(struct envelope *))
{
	struct msd_result res;
	struct envelope	 ev;
	void		*cookie = NULL;
	uint64_t	 evpid;
	uint32_t	*ids = NULL;
	size_t		 n = 0;
	int		 r;

	memset(&res, 0, sizeof(res));
	while ((r = qops.envelope_walk(qinst, &cookie, &evpid, &res)) ==
	    MSD_OK) {
		/* Even a corrupt envelope keeps its message. */
		ids = xreallocarray(ids, n + 1, sizeof(*ids));
		ids[n++] = evpid >> 32;
		if (envelope_read(evpid, &res, &ev) == -1) {
			result_reset(&res);
			continue;
		}
		ev.id = evpid;
		ev.msgid = evpid >> 32;
		cb(&ev);
		result_reset(&res);
	}
	result_reset(&res);
	if (r != MSD_NOTFOUND) {
		free(ids);
		return -1;
	}
	remove_orphans(ids, n);
	free(ids);
	return 0;
}
