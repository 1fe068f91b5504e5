/*
 * table_sqlite.c - the `sqlite` table backend.
 *
 * `table users sqlite:/etc/mail/sqlite.conf` names a configuration file in
 * the format OpenSMTPD's table-sqlite reads, so an existing one works
 * unchanged: `dbpath FILE`, one `query_SERVICE SQL` per service whose one
 * parameter is bound to the lookup key, and `fetch_source SQL` (without a
 * parameter) whose rows the source service hands out in turn, re-read after
 * fetch_source_refresh fetches or fetch_source_expire seconds.
 *
 * table-sqlite skips lines it does not understand and queries that do not
 * prepare; here a configuration with a mistake is refused at open, naming
 * its line, because a table that silently answers nothing turns into
 * bounces much later.
 *
 * The database is opened read-only with a busy timeout: while a writer
 * holds its lock a lookup waits up to TS_BUSY_MS, then fails temporarily,
 * never "not found".  update() builds a new connection from the file and
 * swaps it in only once every statement has prepared.
 *
 * Uses only sdk/modsmtpd.h, libc and libsqlite3.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "modsmtpd.h"

/* The build force-includes config.h; out of tree there is none. */
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

#define TS_BUSY_MS		5000		/* wait for a writer's lock */
#define TS_LINE_MAX		(64 * 1024)	/* longest configuration line */
#define TS_VALUE_MAX		(64 * 1024)	/* longest value handed back */
#define TS_SOURCES_MAX		65536		/* most fetch_source rows */
#define TS_ERR_MAX		512
#define TS_ID_DIGITS		10		/* uid/gid: up to 4294967295 */
#define TS_EXPIRE_DEFAULT	60		/* fetch_source: seconds */
#define TS_REFRESH_DEFAULT	1000		/* fetch_source: fetches */

/* What a query keyword exists for; nothing else can be configured. */
#define TS_SERVICES	(MSD_TS_ALIAS | MSD_TS_DOMAIN | MSD_TS_CREDENTIALS | \
	MSD_TS_NETADDR | MSD_TS_USERINFO | MSD_TS_SOURCE | MSD_TS_MAILADDR | \
	MSD_TS_ADDRNAME | MSD_TS_MAILADDRMAP)

/* How a keyword's value is used, and for queries how rows become a value. */
#define SHAPE_PATH	0	/* dbpath */
#define SHAPE_NUMBER	1	/* fetch_source_expire, _refresh */
#define SHAPE_FETCH	2	/* fetch_source: every row, kept */
#define SHAPE_JOIN	3	/* every row's column, ", " between */
#define SHAPE_PAIR	4	/* "col0:col1" */
#define SHAPE_USERINFO	5	/* "uid:gid:home", the ids checked */
#define SHAPE_LIST	6	/* found when a row comes back */
#define SHAPE_FIRST	7	/* the first row's column */

/* Keyword slots, in the order of keywords[]. */
enum {
	SLOT_DBPATH,
	SLOT_ALIAS,
	SLOT_DOMAIN,
	SLOT_CREDENTIALS,
	SLOT_NETADDR,
	SLOT_USERINFO,
	SLOT_SOURCE,
	SLOT_MAILADDR,
	SLOT_ADDRNAME,
	SLOT_MAILADDRMAP,
	SLOT_FETCH,
	SLOT_EXPIRE,
	SLOT_REFRESH,
	SLOT_MAX
};

struct keyword {
	const char	*name;
	uint32_t	 service;	/* the lookups it answers */
	int		 ncols;		/* columns its statement returns */
	int		 nparams;	/* `?` its statement takes */
	int		 shape;
};

/* Column counts are those table-sqlite checks, so its queries fit. */
static const struct keyword keywords[SLOT_MAX] = {
	[SLOT_DBPATH] = { "dbpath", 0, 0, 0, SHAPE_PATH },
	[SLOT_ALIAS] = { "query_alias", MSD_TS_ALIAS, 1, 1, SHAPE_JOIN },
	[SLOT_DOMAIN] = { "query_domain", MSD_TS_DOMAIN, 1, 1, SHAPE_LIST },
	[SLOT_CREDENTIALS] = { "query_credentials", MSD_TS_CREDENTIALS, 2, 1,
	    SHAPE_PAIR },
	[SLOT_NETADDR] = { "query_netaddr", MSD_TS_NETADDR, 1, 1, SHAPE_LIST },
	[SLOT_USERINFO] = { "query_userinfo", MSD_TS_USERINFO, 3, 1,
	    SHAPE_USERINFO },
	[SLOT_SOURCE] = { "query_source", MSD_TS_SOURCE, 1, 1, SHAPE_LIST },
	[SLOT_MAILADDR] = { "query_mailaddr", MSD_TS_MAILADDR, 1, 1,
	    SHAPE_LIST },
	[SLOT_ADDRNAME] = { "query_addrname", MSD_TS_ADDRNAME, 1, 1,
	    SHAPE_FIRST },
	[SLOT_MAILADDRMAP] = { "query_mailaddrmap", MSD_TS_MAILADDRMAP, 1, 1,
	    SHAPE_JOIN },
	[SLOT_FETCH] = { "fetch_source", MSD_TS_SOURCE, 1, 0, SHAPE_FETCH },
	[SLOT_EXPIRE] = { "fetch_source_expire", 0, 0, 0, SHAPE_NUMBER },
	[SLOT_REFRESH] = { "fetch_source_refresh", 0, 0, 0, SHAPE_NUMBER },
};

/* table(5) service names by bit, for messages. */
static const char *const service_names[] = {
	"alias", "domain", "credentials", "netaddr", "userinfo", "source",
	"mailaddr", "addrname", "mailaddrmap", "relayhost", "string", "regex",
};

/* One reading of the configuration file and what it prepared. */
struct conf {
	char		*val[SLOT_MAX];
	uint32_t	 line[SLOT_MAX];
	sqlite3		*db;
	sqlite3_stmt	*stmt[SLOT_MAX];
	uint32_t	 expire, refresh;
};

/* fetch_source's rows, handed out in turn. */
struct sources {
	char		**v;
	size_t		 n, next;
	uint32_t	 calls;		/* fetches since the rows were read */
	time_t		 when;		/* monotonic seconds of that read */
	int		 loaded;
};

struct tsql {
	const struct msd_host	*host;
	char			*name;		/* the table's, for the log */
	char			*path;		/* the configuration file */
	struct conf		*conf;
	struct sources		 src;
};

struct err {
	char	 msg[TS_ERR_MAX];
};

/* A value being built, never longer than TS_VALUE_MAX. */
struct buf {
	char	*p;
	size_t	 len, size;
};

/* ------------------------------------------------------------ helpers */

static int __attribute__((format(printf, 3, 4)))
seterr(struct err *e, int rc, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	if (vsnprintf(e->msg, sizeof(e->msg), fmt, ap) < 0)
		e->msg[0] = '\0';
	va_end(ap);
	return rc;
}

/* Lock contention and I/O trouble pass; anything else is the setup's. */
static int
db_class(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_IOERR:
	case SQLITE_NOMEM:
	case SQLITE_PROTOCOL:
		return MSD_TEMPFAIL;
	}
	return MSD_PERMFAIL;
}

static const char *
service_name(uint32_t service)
{
	size_t	 i;

	for (i = 0; i < sizeof(service_names) / sizeof(service_names[0]); i++)
		if (service == (uint32_t)1 << i)
			return service_names[i];
	return "unknown";
}

static int
buf_add(struct buf *b, const char *s, size_t len, struct err *e)
{
	size_t	 size;
	char	*p;

	if (len > TS_VALUE_MAX - b->len)
		return seterr(e, -1, "value longer than %d bytes",
		    TS_VALUE_MAX);
	if (b->len + len + 1 > b->size) {
		size = b->size ? b->size : 256;
		while (size < b->len + len + 1)
			size *= 2;
		if ((p = realloc(b->p, size)) == NULL)
			return seterr(e, -1, "out of memory");
		b->p = p;
		b->size = size;
	}
	memcpy(b->p + b->len, s, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

static time_t
mono_now(void)
{
	struct timespec	 ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return ts.tv_sec;
}

/* ------------------------------------------------- configuration file */

static char *
trim(char *s)
{
	size_t	 n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' ||
	    s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

/*
 * Ends the keyword at the first blank or ':' and returns the value ("" if
 * none).  Blanks, and a ':' followed by a blank, are skipped before the
 * value: table-sqlite accepts "dbpath /x", "dbpath: /x" and "dbpath:/x".
 */
static char *
split(char *key)
{
	char	*v;

	v = key + strcspn(key, " \t:");
	if (*v == '\0')
		return v;
	*v++ = '\0';
	while (*v == ' ' || *v == '\t' ||
	    (*v == ':' && (v[1] == ' ' || v[1] == '\t')))
		v++;
	return v;
}

static int
keyword_find(const char *name)
{
	int	 i;

	for (i = 0; i < SLOT_MAX; i++)
		if (strcmp(keywords[i].name, name) == 0)
			return i;
	return -1;
}

static int
parse_number(struct conf *c, int slot, const char *path, struct err *e)
{
	const char	*s = c->val[slot];
	char		*end;
	unsigned long	 n;

	errno = 0;
	n = strtoul(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 ||
	    n > INT_MAX)
		return seterr(e, MSD_PERMFAIL, "%s:%u: %s: \"%.64s\" is not a "
		    "number from 0 to %d", path, c->line[slot],
		    keywords[slot].name, s, INT_MAX);
	if (slot == SLOT_EXPIRE)
		c->expire = (uint32_t)n;
	else
		c->refresh = (uint32_t)n;
	return MSD_OK;
}

static int
parse_line(struct conf *c, const char *path, uint32_t lineno, char *line,
    struct err *e)
{
	char	*key, *value;
	int	 slot;

	key = trim(line);
	if (*key == '\0' || *key == '#')
		return MSD_OK;
	value = split(key);
	if ((slot = keyword_find(key)) == -1)
		return seterr(e, MSD_PERMFAIL, "%s:%u: unknown keyword "
		    "\"%.64s\"", path, lineno, key);
	if (*value == '\0')
		return seterr(e, MSD_PERMFAIL, "%s:%u: %s without a value",
		    path, lineno, key);
	/* table-sqlite keeps one of the two silently; which is a guess. */
	if (c->val[slot] != NULL)
		return seterr(e, MSD_PERMFAIL, "%s:%u: %s given twice (first "
		    "on line %u)", path, lineno, key, c->line[slot]);
	if ((c->val[slot] = strdup(value)) == NULL)
		return seterr(e, MSD_TEMPFAIL, "out of memory");
	c->line[slot] = lineno;
	if (keywords[slot].shape == SHAPE_NUMBER)
		return parse_number(c, slot, path, e);
	return MSD_OK;
}

static int
parse_file(struct conf *c, const char *path, struct err *e)
{
	FILE		*fp;
	char		*line = NULL;
	size_t		 size = 0;
	ssize_t		 n;
	uint32_t	 lineno = 0;
	int		 r = MSD_OK;

	if ((fp = fopen(path, "re")) == NULL)
		return seterr(e, errno == ENOENT || errno == EACCES ?
		    MSD_PERMFAIL : MSD_TEMPFAIL, "%s: %s", path,
		    strerror(errno));
	while (r == MSD_OK && (n = getline(&line, &size, fp)) != -1) {
		lineno++;
		if (n > TS_LINE_MAX)
			r = seterr(e, MSD_PERMFAIL, "%s:%u: line longer than "
			    "%d bytes", path, lineno, TS_LINE_MAX);
		else if (strlen(line) != (size_t)n)
			r = seterr(e, MSD_PERMFAIL, "%s:%u: NUL byte", path,
			    lineno);
		else
			r = parse_line(c, path, lineno, line, e);
	}
	if (r == MSD_OK && ferror(fp))
		r = seterr(e, MSD_TEMPFAIL, "%s: %s", path, strerror(errno));
	free(line);
	fclose(fp);
	return r;
}

/* ------------------------------------------------------- the database */

static int
db_open(struct conf *c, const char *path, struct err *e)
{
	const char	*db = c->val[SLOT_DBPATH];
	int		 rc;

	rc = sqlite3_open_v2(db, &c->db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK)
		return seterr(e, db_class(rc), "%s:%u: dbpath %s: %s", path,
		    c->line[SLOT_DBPATH], db, c->db != NULL ?
		    sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
	sqlite3_busy_timeout(c->db, TS_BUSY_MS);
	return MSD_OK;
}

/* Text after the statement is ignored by sqlite: refuse a second one. */
static int
single_statement(sqlite3 *db, const char *tail)
{
	sqlite3_stmt	*st = NULL;
	int		 rc, more;

	if (tail == NULL || *tail == '\0')
		return 1;
	rc = sqlite3_prepare_v2(db, tail, -1, &st, NULL);
	more = st != NULL;
	sqlite3_finalize(st);
	return rc == SQLITE_OK && !more;
}

/* The statement's shape is checked here so a lookup never meets a surprise. */
static int
stmt_check(struct conf *c, int slot, const char *path, struct err *e)
{
	const struct keyword	*k = &keywords[slot];
	sqlite3_stmt		*st = c->stmt[slot];
	uint32_t		 line = c->line[slot];
	int			 n;

	if (!sqlite3_stmt_readonly(st))
		return seterr(e, MSD_PERMFAIL, "%s:%u: %s is not a read-only "
		    "statement", path, line, k->name);
	if ((n = sqlite3_bind_parameter_count(st)) != k->nparams)
		return seterr(e, MSD_PERMFAIL, "%s:%u: %s has %d parameter%s, "
		    "it must have %s", path, line, k->name, n,
		    n == 1 ? "" : "s", k->nparams ? "exactly one ?" : "none");
	if ((n = sqlite3_column_count(st)) != k->ncols)
		return seterr(e, MSD_PERMFAIL, "%s:%u: %s returns %d "
		    "column%s, it must return %d", path, line, k->name, n,
		    n == 1 ? "" : "s", k->ncols);
	return MSD_OK;
}

static int
stmt_prepare(struct conf *c, int slot, const char *path, struct err *e)
{
	const char	*tail = NULL;
	int		 rc;

	rc = sqlite3_prepare_v2(c->db, c->val[slot], -1, &c->stmt[slot],
	    &tail);
	if (rc != SQLITE_OK)
		return seterr(e, db_class(rc), "%s:%u: %s: %s", path,
		    c->line[slot], keywords[slot].name, sqlite3_errmsg(c->db));
	if (c->stmt[slot] == NULL)
		return seterr(e, MSD_PERMFAIL, "%s:%u: %s holds no SQL "
		    "statement", path, c->line[slot], keywords[slot].name);
	if (!single_statement(c->db, tail))
		return seterr(e, MSD_PERMFAIL, "%s:%u: %s holds more than one "
		    "SQL statement", path, c->line[slot], keywords[slot].name);
	return stmt_check(c, slot, path, e);
}

/* The statement keyword on the first line after line, or -1. */
static int
next_statement(const struct conf *c, uint32_t line)
{
	int	 slot, best = -1;

	for (slot = 0; slot < SLOT_MAX; slot++) {
		if (keywords[slot].ncols == 0 || c->val[slot] == NULL ||
		    c->line[slot] <= line)
			continue;
		if (best == -1 || c->line[slot] < c->line[best])
			best = slot;
	}
	return best;
}

static int
conf_prepare(struct conf *c, const char *path, struct err *e)
{
	uint32_t	 line = 0;
	int		 slot, r, any = 0;

	if (c->val[SLOT_DBPATH] == NULL)
		return seterr(e, MSD_PERMFAIL, "%s: no dbpath", path);
	for (slot = 0; slot < SLOT_MAX; slot++)
		if (keywords[slot].ncols > 0 && c->val[slot] != NULL)
			any = 1;
	if (!any)
		return seterr(e, MSD_PERMFAIL, "%s: no query_* or fetch_source",
		    path);
	if ((r = db_open(c, path, e)) != MSD_OK)
		return r;
	/* In file order, so the error reported is the first in the file. */
	while ((slot = next_statement(c, line)) != -1) {
		if ((r = stmt_prepare(c, slot, path, e)) != MSD_OK)
			return r;
		line = c->line[slot];
	}
	return MSD_OK;
}

static void
conf_free(struct conf *c)
{
	int	 i;

	if (c == NULL)
		return;
	for (i = 0; i < SLOT_MAX; i++) {
		sqlite3_finalize(c->stmt[i]);
		free(c->val[i]);
	}
	sqlite3_close(c->db);
	free(c);
}

/* Reads path and prepares everything it asks for, or nothing. */
static int
conf_load(const char *path, struct conf **cp, struct err *e)
{
	struct conf	*c;
	int		 r;

	*cp = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return seterr(e, MSD_TEMPFAIL, "out of memory");
	c->expire = TS_EXPIRE_DEFAULT;
	c->refresh = TS_REFRESH_DEFAULT;
	if ((r = parse_file(c, path, e)) == MSD_OK)
		r = conf_prepare(c, path, e);
	if (r != MSD_OK) {
		conf_free(c);
		return r;
	}
	*cp = c;
	return MSD_OK;
}

/* ------------------------------------------------------------ lookups */

static int
query_error(struct tsql *t, int slot, struct err *e)
{
	return seterr(e, MSD_TEMPFAIL, "%s on %s: %s", keywords[slot].name,
	    t->conf->val[SLOT_DBPATH], sqlite3_errmsg(t->conf->db));
}

/* One step: 1 for a row of the expected width, 0 at the end, -1 on error. */
static int
step(struct tsql *t, int slot, sqlite3_stmt *st, struct err *e)
{
	int	 rc, n;

	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW) {
		query_error(t, slot, e);
		return -1;
	}
	/* Checked at open, but a schema change re-prepares the statement. */
	if ((n = sqlite3_column_count(st)) != keywords[slot].ncols) {
		seterr(e, -1, "%s now returns %d columns, it must return %d",
		    keywords[slot].name, n, keywords[slot].ncols);
		return -1;
	}
	return 1;
}

/* Column i as a non-empty string without NUL bytes, else NULL. */
static const char *
column(struct tsql *t, int slot, sqlite3_stmt *st, int i, struct err *e)
{
	const char	*s;
	int		 n;

	s = (const char *)sqlite3_column_text(st, i);
	n = sqlite3_column_bytes(st, i);
	if (s == NULL && sqlite3_errcode(t->conf->db) == SQLITE_NOMEM)
		seterr(e, -1, "%s: out of memory", keywords[slot].name);
	else if (s == NULL || *s == '\0')
		seterr(e, -1, "%s: column %d is %s", keywords[slot].name,
		    i + 1, s == NULL ? "NULL" : "empty");
	else if (strlen(s) != (size_t)n)
		seterr(e, -1, "%s: column %d holds a NUL byte",
		    keywords[slot].name, i + 1);
	else
		return s;
	return NULL;
}

/* A uid or gid: decimal digits only, or a text id would read as 0, root. */
static const char *
id_column(struct tsql *t, int slot, sqlite3_stmt *st, int i, struct err *e)
{
	const char	*s;
	size_t		 n;

	if ((s = column(t, slot, st, i, e)) == NULL)
		return NULL;
	n = strspn(s, "0123456789");
	if (s[n] != '\0' || n > TS_ID_DIGITS ||
	    strtoull(s, NULL, 10) > UINT32_MAX) {
		seterr(e, -1, "%s: column %d, \"%.32s\", is not a numeric id",
		    keywords[slot].name, i + 1, s);
		return NULL;
	}
	return s;
}

/* alias, mailaddrmap: every row is one element of the list. */
static int
shape_join(struct tsql *t, int slot, sqlite3_stmt *st, struct buf *b,
    struct err *e)
{
	const char	*s;
	int		 r;

	while ((r = step(t, slot, st, e)) == 1) {
		if ((s = column(t, slot, st, 0, e)) == NULL ||
		    (b->len > 0 && buf_add(b, ", ", 2, e) == -1) ||
		    buf_add(b, s, strlen(s), e) == -1)
			return MSD_TEMPFAIL;
	}
	if (r == -1)
		return MSD_TEMPFAIL;
	return b->len > 0 ? MSD_OK : MSD_NOTFOUND;
}

/* credentials "user:hash", userinfo "uid:gid:home": the first row. */
static int
shape_fields(struct tsql *t, int slot, sqlite3_stmt *st, struct buf *b,
    struct err *e)
{
	const char	*s;
	int		 i, r;

	if ((r = step(t, slot, st, e)) != 1)
		return r == 0 ? MSD_NOTFOUND : MSD_TEMPFAIL;
	for (i = 0; i < keywords[slot].ncols; i++) {
		if (keywords[slot].shape == SHAPE_USERINFO && i < 2)
			s = id_column(t, slot, st, i, e);
		else
			s = column(t, slot, st, i, e);
		if (s == NULL || (i > 0 && buf_add(b, ":", 1, e) == -1) ||
		    buf_add(b, s, strlen(s), e) == -1)
			return MSD_TEMPFAIL;
	}
	return MSD_OK;
}

/*
 * List services: a row means found.  The value is the entry that matched,
 * the first column when it is text (a pattern query may return the pattern),
 * else the key (for "SELECT 1 ...").
 */
static int
shape_list(struct tsql *t, int slot, sqlite3_stmt *st, const char *key,
    struct buf *b, struct err *e)
{
	const char	*s = key;
	int		 r;

	if ((r = step(t, slot, st, e)) != 1)
		return r == 0 ? MSD_NOTFOUND : MSD_TEMPFAIL;
	if (sqlite3_column_type(st, 0) == SQLITE_TEXT &&
	    (s = column(t, slot, st, 0, e)) == NULL)
		return MSD_TEMPFAIL;
	return buf_add(b, s, strlen(s), e) == -1 ? MSD_TEMPFAIL : MSD_OK;
}

static int
shape_first(struct tsql *t, int slot, sqlite3_stmt *st, struct buf *b,
    struct err *e)
{
	const char	*s;
	int		 r;

	if ((r = step(t, slot, st, e)) != 1)
		return r == 0 ? MSD_NOTFOUND : MSD_TEMPFAIL;
	if ((s = column(t, slot, st, 0, e)) == NULL ||
	    buf_add(b, s, strlen(s), e) == -1)
		return MSD_TEMPFAIL;
	return MSD_OK;
}

/* The key is bound, never pasted into SQL; the reset ends the read. */
static int
run_query(struct tsql *t, int slot, const char *key, struct buf *b,
    struct err *e)
{
	sqlite3_stmt	*st = t->conf->stmt[slot];
	int		 r;

	if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK)
		return query_error(t, slot, e);
	switch (keywords[slot].shape) {
	case SHAPE_JOIN:
		r = shape_join(t, slot, st, b, e);
		break;
	case SHAPE_PAIR:
	case SHAPE_USERINFO:
		r = shape_fields(t, slot, st, b, e);
		break;
	case SHAPE_LIST:
		r = shape_list(t, slot, st, key, b, e);
		break;
	default:
		r = shape_first(t, slot, st, b, e);
		break;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return r;
}

static int
slot_of(uint32_t service)
{
	int	 i;

	for (i = 0; i < SLOT_MAX; i++)
		if (keywords[i].service == service && keywords[i].nparams == 1)
			return i;
	return -1;
}

static int
ts_lookup(void *inst, uint32_t service, const char *key, msd_result *out)
{
	struct tsql	*t = inst;
	struct buf	 b = { NULL, 0, 0 };
	struct err	 e;
	int		 slot, r;

	if ((slot = slot_of(service)) == -1)
		r = seterr(&e, MSD_TEMPFAIL, "sqlite tables have no query for "
		    "the %s service", service_name(service));
	else if (t->conf->stmt[slot] == NULL)
		r = seterr(&e, MSD_TEMPFAIL, "no %s in %s", keywords[slot].name,
		    t->path);
	else if (key == NULL)
		r = seterr(&e, MSD_TEMPFAIL, "%s: no key", keywords[slot].name);
	else
		r = run_query(t, slot, key, &b, &e);
	if (r == MSD_OK)
		t->host->result_set(out, b.p, b.len);
	else if (r != MSD_NOTFOUND) {
		t->host->result_error(out, e.msg);
		r = MSD_TEMPFAIL;
	}
	free(b.p);
	return r;
}

/* ------------------------------------------------------------- fetch */

static void
sources_free(char **v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int
sources_add(char ***vp, size_t *np, const char *s, struct err *e)
{
	char	**v;

	if (*np >= TS_SOURCES_MAX)
		return seterr(e, -1, "fetch_source returns more than %d rows",
		    TS_SOURCES_MAX);
	if ((v = reallocarray(*vp, *np + 1, sizeof(*v))) == NULL)
		return seterr(e, -1, "out of memory");
	*vp = v;
	if ((v[*np] = strdup(s)) == NULL)
		return seterr(e, -1, "out of memory");
	(*np)++;
	return 0;
}

/* Reads the rows anew; on failure the previous ones stay. */
static int
sources_load(struct tsql *t, struct err *e)
{
	sqlite3_stmt	*st = t->conf->stmt[SLOT_FETCH];
	const char	*s;
	char		**v = NULL;
	size_t		 n = 0;
	int		 r;

	while ((r = step(t, SLOT_FETCH, st, e)) == 1) {
		if ((s = column(t, SLOT_FETCH, st, 0, e)) == NULL ||
		    sources_add(&v, &n, s, e) == -1) {
			r = -1;
			break;
		}
	}
	sqlite3_reset(st);
	if (r == -1) {
		sources_free(v, n);
		return -1;
	}
	sources_free(t->src.v, t->src.n);
	t->src.v = v;
	t->src.n = n;
	/* Keep the turn where it was, so a reload does not favour row one. */
	t->src.next = n > 0 ? t->src.next % n : 0;
	t->src.calls = 0;
	t->src.when = mono_now();
	t->src.loaded = 1;
	return 0;
}

static int
sources_stale(struct tsql *t)
{
	return !t->src.loaded || t->src.calls >= t->conf->refresh ||
	    mono_now() - t->src.when >= (time_t)t->conf->expire;
}

static int
ts_fetch(void *inst, uint32_t service, msd_result *out)
{
	struct tsql	*t = inst;
	struct err	 e;
	const char	*s;

	if (service != MSD_TS_SOURCE)
		seterr(&e, 0, "sqlite tables fetch only for the source service,"
		    " not %s", service_name(service));
	else if (t->conf->stmt[SLOT_FETCH] == NULL)
		seterr(&e, 0, "no fetch_source in %s", t->path);
	else if (!sources_stale(t) || sources_load(t, &e) == 0) {
		if (t->src.n == 0)
			return MSD_NOTFOUND;
		s = t->src.v[t->src.next];
		t->src.next = (t->src.next + 1) % t->src.n;
		t->src.calls++;
		t->host->result_set(out, s, strlen(s));
		return MSD_OK;
	}
	t->host->result_error(out, e.msg);
	return MSD_TEMPFAIL;
}

/* ------------------------------------------------------ the lifecycle */

static void
ts_free(struct tsql *t)
{
	if (t == NULL)
		return;
	conf_free(t->conf);
	sources_free(t->src.v, t->src.n);
	free(t->name);
	free(t->path);
	free(t);
}

static int
ts_open(const struct msd_host *host, const char *name, const char *config,
    void **inst)
{
	struct tsql	*t;
	struct err	 e;
	int		 r;

	*inst = NULL;
	if (name == NULL)
		name = "";
	if (config == NULL || config[0] == '\0') {
		host->log(MSD_LOG_ERR, "table %s: no configuration file "
		    "(sqlite:/path/to/sqlite.conf)", name);
		return MSD_PERMFAIL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->name = strdup(name)) == NULL ||
	    (t->path = strdup(config)) == NULL) {
		host->log(MSD_LOG_ERR, "table %s: out of memory", name);
		ts_free(t);
		return MSD_TEMPFAIL;
	}
	t->host = host;
	if ((r = conf_load(t->path, &t->conf, &e)) != MSD_OK) {
		host->log(MSD_LOG_ERR, "table %s: %s", name, e.msg);
		ts_free(t);
		return r;
	}
	*inst = t;
	return MSD_OK;
}

static void
ts_close(void *inst)
{
	ts_free(inst);
}

/* The old connection answers until the new one is complete. */
static int
ts_update(void *inst)
{
	struct tsql	*t = inst;
	struct conf	*c;
	struct err	 e;

	if (conf_load(t->path, &c, &e) != MSD_OK) {
		t->host->log(MSD_LOG_ERR, "table %s: update refused, the "
		    "previous configuration stays: %s", t->name, e.msg);
		return MSD_TEMPFAIL;
	}
	conf_free(t->conf);
	t->conf = c;
	t->src.loaded = 0;
	return MSD_OK;
}

static const struct msd_table_ops sqlite_ops = {
	.size = MSD_TABLE_OPS_SIZE,
	.open = ts_open,
	.close = ts_close,
	.lookup = ts_lookup,
	.fetch = ts_fetch,
	.update = ts_update,
};

static const struct msd_module sqlite_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	/* A lookup may wait TS_BUSY_MS for a writer. */
	.flags = MSD_MF_BUILD | MSD_MF_MAY_BLOCK,
	.kind = MSD_KIND_TABLE,
	.services = TS_SERVICES,
	.name = "sqlite",
	.version = PACKAGE_VERSION,
	.ops = &sqlite_ops,
	.description = "SQL queries on an SQLite database (table-sqlite's "
	    "configuration)",
};

MSD_MODULE(sqlite)
{
	return &sqlite_module;
}
