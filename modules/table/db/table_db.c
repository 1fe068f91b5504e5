/*
 * table_db.c - the `db` table backend.
 *
 * `table aliases db:/etc/mail/aliases.db` names a Berkeley DB hash file as
 * makemap(8) writes it, ours or OpenSMTPD's: every key and value is a
 * string stored with its trailing NUL, and a list (`makemap -t set`) holds
 * the value "<set>" for every key.
 *
 * The table is load-style: load() walks every record and hands it to the
 * host, which indexes the entries and answers every service exactly as for
 * a file table.  The file is opened at each load and closed before load
 * returns, so a map rebuilt by makemap (a rename over the old file) is
 * seen whole at the next load, and an update is simply a new load.
 *
 * Uses only sdk/modsmtpd.h, libc and libdb (its DB 1.85 interface).
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <db_185.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modsmtpd.h"

/* The build force-includes config.h; out of tree there is none. */
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

#define TDB_SET_VALUE		"<set>"		/* makemap -t set */
/* Records without their NUL are copied; longer ones are refused. */
#define TDB_KEY_MAX		1024		/* the host's key limit too */
#define TDB_VALUE_MAX		(64 * 1024)
#define TDB_ERR_MAX		512

/*
 * The first page of a libdb file starts with its metadata: magic number at
 * offset 12, encryption algorithm at 24, page type at 25 (8: hash
 * metadata).  Checked before dbopen() because libdb prints its complaints
 * about a foreign file on stderr, and reads garbage at length.
 */
#define TDB_META_SIZE		512
#define TDB_META_MAGIC		12
#define TDB_META_ENCRYPT	24
#define TDB_META_TYPE		25
#define TDB_HASH_MAGIC		0x061561U
#define TDB_HASH_META_TYPE	8

#define TDB_SERVICES	(MSD_TS_ALIAS | MSD_TS_DOMAIN | MSD_TS_CREDENTIALS | \
	    MSD_TS_NETADDR | MSD_TS_USERINFO | MSD_TS_SOURCE | \
	    MSD_TS_MAILADDR | MSD_TS_ADDRNAME | MSD_TS_MAILADDRMAP | \
	    MSD_TS_RELAYHOST | MSD_TS_STRING | MSD_TS_REGEX)

struct dbtable {
	const struct msd_host	*host;
	char			 path[PATH_MAX];
};

/* One load: the copies of records stored without their NUL. */
struct dbload {
	struct dbtable		*t;
	msd_result		*err;
	char			 key[TDB_KEY_MAX];
	char			 value[TDB_VALUE_MAX];
};

static void	 tdb_error(struct dbload *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/* "path: why" for the host, which logs it and fails the table. */
static void
tdb_error(struct dbload *l, const char *fmt, ...)
{
	char	 msg[TDB_ERR_MAX], buf[TDB_ERR_MAX + PATH_MAX + 2];	/* ": " */
	va_list	 ap;

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	snprintf(buf, sizeof(buf), "%s: %s", l->t->path, msg);
	l->t->host->result_error(l->err, buf);
}

/* Up to size-1 bytes of data for a message, unprintable bytes as '?'. */
static void
printable(char *out, size_t size, const char *data, size_t len)
{
	size_t	 i;

	if (len > size - 1)
		len = size - 1;
	for (i = 0; i < len; i++)
		out[i] = data[i] >= 0x20 && data[i] < 0x7f ? data[i] : '?';
	out[i] = '\0';
}

/* A 32-bit number in either byte order: libdb writes its own. */
static uint32_t
get32(const unsigned char *p, int big_endian)
{
	if (big_endian)
		return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		    (uint32_t)p[2] << 8 | p[3];
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[1] << 8 | p[0];
}

/* Whether the first page describes an unencrypted hash db, either order. */
static int
meta_is_hash(const unsigned char *meta)
{
	if (get32(meta + TDB_META_MAGIC, 0) != TDB_HASH_MAGIC &&
	    get32(meta + TDB_META_MAGIC, 1) != TDB_HASH_MAGIC)
		return 0;
	return meta[TDB_META_ENCRYPT] == 0 &&
	    meta[TDB_META_TYPE] == TDB_HASH_META_TYPE;
}

/* MSD_OK when path is a readable hash db, else why in the error. */
static int
tdb_check(struct dbload *l)
{
	unsigned char	 meta[TDB_META_SIZE];
	struct stat	 sb;
	ssize_t		 n;
	int		 fd, saved;

	if ((fd = open(l->t->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) == -1) {
		tdb_error(l, "%s", strerror(errno));
		return MSD_TEMPFAIL;
	}
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode))
		n = -2;
	else
		n = pread(fd, meta, sizeof(meta), 0);
	saved = errno;
	close(fd);
	if (n == -1) {
		tdb_error(l, "%s", strerror(saved));
		return MSD_TEMPFAIL;
	}
	if (n == -2) {
		tdb_error(l, "not a regular file");
		return MSD_TEMPFAIL;
	}
	if (n < (ssize_t)sizeof(meta) || !meta_is_hash(meta)) {
		tdb_error(l, "not a Berkeley DB hash file (makemap builds "
		    "them)");
		return MSD_TEMPFAIL;
	}
	return MSD_OK;
}

/*
 * A record as a C string: in place when it ends with its one NUL (how
 * makemap stores it), else copied into buf.  NULL and *why when it is
 * empty, holds a NUL inside or does not fit.
 */
static const char *
rec_string(const DBT *d, char *buf, size_t size, const char **why)
{
	const char	*data = d->data;
	size_t		 len = d->size;

	if (len > 0 && data[len - 1] == '\0')
		len--;
	*why = NULL;
	if (len == 0)
		*why = "is empty";
	else if (memchr(data, '\0', len) != NULL)
		*why = "holds a NUL byte";
	else if (len < d->size)
		return data;
	else if (len >= size)
		*why = "is too long";
	if (*why != NULL)
		return NULL;
	memcpy(buf, data, len);
	buf[len] = '\0';
	return buf;
}

/* The key of a bad record for the message; never its value (secrets). */
static void
rec_fail(struct dbload *l, const DBT *k, int of_value, const char *why)
{
	char	 show[64];
	size_t	 len = k->size;

	if (len > 0 && ((const char *)k->data)[len - 1] == '\0')
		len--;
	printable(show, sizeof(show), k->data, len);
	tdb_error(l, "%skey \"%s%s\" %s", of_value ? "the value of " : "",
	    show, len >= sizeof(show) ? "..." : "", why);
}

/* Every record to entry(); a "<set>" value makes a list entry. */
static int
tdb_walk(struct dbload *l, DB *db, msd_table_entry_fn *entry, void *arg)
{
	const char	*key, *value, *why;
	DBT		 k, v;
	int		 r;

	for (r = db->seq(db, &k, &v, R_FIRST); r == 0;
	    r = db->seq(db, &k, &v, R_NEXT)) {
		if ((key = rec_string(&k, l->key, sizeof(l->key), &why)) ==
		    NULL) {
			rec_fail(l, &k, 0, why);
			return MSD_TEMPFAIL;
		}
		if ((value = rec_string(&v, l->value, sizeof(l->value),
		    &why)) == NULL) {
			rec_fail(l, &k, 1, why);
			return MSD_TEMPFAIL;
		}
		if (strcmp(value, TDB_SET_VALUE) == 0)
			value = NULL;
		if (entry(arg, key, value, 0) == -1) {
			tdb_error(l, "loading stopped by the host");
			return MSD_TEMPFAIL;
		}
	}
	if (r == -1) {
		tdb_error(l, "cannot read: %s", strerror(errno));
		return MSD_TEMPFAIL;
	}
	return MSD_OK;
}

static int
tdb_load(void *inst, msd_table_entry_fn *entry, void *arg, msd_result *err)
{
	struct dbtable	*t = inst;
	struct dbload	*l;
	DB		*db;
	int		 r;

	if ((l = malloc(sizeof(*l))) == NULL) {
		t->host->result_error(err, "db table: out of memory");
		return MSD_TEMPFAIL;
	}
	l->t = t;
	l->err = err;
	if ((r = tdb_check(l)) != MSD_OK) {
		free(l);
		return r;
	}
	if ((db = dbopen(t->path, O_RDONLY, 0, DB_HASH, NULL)) == NULL) {
		tdb_error(l, "cannot open as a hash db: %s", strerror(errno));
		free(l);
		return MSD_TEMPFAIL;
	}
	r = tdb_walk(l, db, entry, arg);
	db->close(db);
	free(l);
	return r;
}

static int
tdb_open(const struct msd_host *host, const char *name, const char *config,
    void **inst)
{
	struct dbtable	*t;

	*inst = NULL;
	if (config == NULL || config[0] != '/') {
		host->log(MSD_LOG_ERR, "table %s: db: \"%s\" is not an "
		    "absolute path", name, config != NULL ? config : "");
		return MSD_PERMFAIL;
	}
	if (strlen(config) >= sizeof(t->path)) {
		host->log(MSD_LOG_ERR, "table %s: db: path too long", name);
		return MSD_PERMFAIL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		host->log(MSD_LOG_ERR, "table %s: db: out of memory", name);
		return MSD_TEMPFAIL;
	}
	t->host = host;
	memcpy(t->path, config, strlen(config) + 1);
	*inst = t;
	return MSD_OK;
}

static void
tdb_close(void *inst)
{
	free(inst);
}

static const struct msd_table_ops db_ops = {
	.size = MSD_TABLE_OPS_SIZE,
	.open = tdb_open,
	.close = tdb_close,
	.load = tdb_load,
};

static const struct msd_module db_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD,
	.kind = MSD_KIND_TABLE,
	.services = TDB_SERVICES,
	.name = "db",
	.version = PACKAGE_VERSION,
	.ops = &db_ops,
	.description = "Berkeley DB hash maps written by makemap",
};

MSD_MODULE(db)
{
	(void)host_major;
	(void)host_minor;
	return &db_module;
}
