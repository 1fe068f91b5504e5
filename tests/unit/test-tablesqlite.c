/*
 * test-tablesqlite.c - the sqlite table backend through the module loader:
 * a database made here with the sqlite3 API and table-sqlite style
 * configuration files; the result of every service, keys bound and not
 * interpolated, fetch_source's round robin, configurations refused at open
 * with their line, a writer's lock turning into a temporary failure after
 * the busy timeout, and update() keeping the old setup when the new one is
 * broken.
 *
 * Prints TAP-style "ok N - what" lines; exits non-zero on any failure.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "smtpd.h"
#include "tap.h"
#include "testutil.h"

#ifndef TOP_BUILDDIR
#error "TOP_BUILDDIR must name the build tree"
#endif

#define SQLITE_SO	TOP_BUILDDIR "/modules/table/sqlite/.libs/sqlite.so"
#define BUSY_MS		5000	/* the module's TS_BUSY_MS */

static char	 root[PATH_MAX];		/* scratch directory */
static char	 db1[PATH_MAX], db2[PATH_MAX];
static char	 logbuf[8192];			/* what the module logged */
static struct msd_host			 th;	/* its host, log captured */
static const struct msd_table_ops	*ops;

/* ------------------------------------------------------------- helpers */

static void __attribute__((format(printf, 2, 3)))
test_log(int level, const char *fmt, ...)
{
	va_list	 ap;
	size_t	 n = strlen(logbuf);

	if (n + 2 >= sizeof(logbuf))
		return;
	va_start(ap, fmt);
	vsnprintf(logbuf + n, sizeof(logbuf) - n - 1, fmt, ap);
	va_end(ap);
	n = strlen(logbuf);
	logbuf[n] = '\n';
	logbuf[n + 1] = '\0';
}

static void __attribute__((format(printf, 2, 3)))
write_conf(const char *path, const char *fmt, ...)
{
	va_list	 ap;
	FILE	*fp;

	if ((fp = fopen(path, "w")) == NULL)
		fatal("%s", path);
	va_start(ap, fmt);
	vfprintf(fp, fmt, ap);
	va_end(ap);
	if (fclose(fp) == EOF)
		fatal("%s", path);
}

static void
db_exec(const char *path, const char *sql)
{
	sqlite3	*db;
	char	*err = NULL;

	if (sqlite3_open(path, &db) != SQLITE_OK)
		fatalx("%s: %s", path, sqlite3_errmsg(db));
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fatalx("%s: %s", path, err);
	sqlite3_close(db);
}

static int
table_exists(const char *path, const char *name)
{
	sqlite3_stmt	*st;
	sqlite3		*db;
	int		 n = -1;

	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE "
	    "type = 'table' AND name = ?", -1, &st, NULL) != SQLITE_OK)
		fatalx("%s: %s", path, sqlite3_errmsg(db));
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n == 1;
}

static int
lookup(void *inst, uint32_t service, const char *key, struct msd_result *res)
{
	result_reset(res);
	return ops->lookup(inst, service, key, res);
}

static int
fetch(void *inst, struct msd_result *res)
{
	result_reset(res);
	return ops->fetch(inst, MSD_TS_SOURCE, res);
}

static int
log_has(const char *want)
{
	if (strstr(logbuf, want) != NULL)
		return 1;
	printf("# log \"%s\", want \"%s\"\n", logbuf, want);
	return 0;
}

static int
open_table(const char *path, void **inst)
{
	logbuf[0] = '\0';
	*inst = NULL;
	return ops->open(&th, "users", path, inst);
}

/* ------------------------------------------------------------ the data */

static void
make_databases(void)
{
	mkpath(db1, sizeof(db1), "%s/one.sqlite", root);
	mkpath(db2, sizeof(db2), "%s/two.sqlite", root);
	db_exec(db1,
	    "CREATE TABLE virtuals (email TEXT, destination TEXT);"
	    "INSERT INTO virtuals VALUES"
	    " ('abuse@example.com', 'bob@example.com'),"
	    " ('abuse@example.com', 'alice@example.net'),"
	    " ('postmaster@example.com', 'bob@example.com'),"
	    " ('bob@example.com', 'vmail');"
	    "CREATE TABLE domains (domain TEXT);"
	    "INSERT INTO domains VALUES ('example.com'), ('example.net'),"
	    " ('o''hara''; drop table x; --');"
	    "CREATE TABLE credentials (email TEXT, password TEXT);"
	    "INSERT INTO credentials VALUES"
	    " ('bob@example.com', '$6$salt$hash');"
	    "CREATE TABLE users (name TEXT, uid INTEGER, gid INTEGER,"
	    " home TEXT);"
	    "INSERT INTO users VALUES ('bob', 1000, 1001, '/home/bob'),"
	    " ('eve', 'abc', 1001, '/home/eve');"
	    "CREATE TABLE sources (addr TEXT);"
	    "INSERT INTO sources VALUES ('192.0.2.2'), ('192.0.2.1'),"
	    " ('192.0.2.3');"
	    "CREATE TABLE x (victim INTEGER);");
	db_exec(db2,
	    "CREATE TABLE domains (domain TEXT);"
	    "INSERT INTO domains VALUES ('example.org');");
}

/* Spacing and separators as table-sqlite accepts them. */
static void
write_good_conf(const char *path)
{
	write_conf(path,
	    "# users, as table-sqlite would read it\n"
	    "\n"
	    "dbpath %s\n"
	    "query_alias\tSELECT destination FROM virtuals WHERE email=?"
	    " ORDER BY rowid;\n"
	    "query_domain: SELECT domain FROM domains WHERE domain=?;   \n"
	    "query_credentials SELECT email, password FROM credentials"
	    " WHERE email=?\n"
	    "  query_userinfo SELECT uid, gid, home FROM users WHERE name=?\n"
	    "query_mailaddrmap SELECT email FROM virtuals WHERE destination=?"
	    " ORDER BY rowid\n"
	    "fetch_source SELECT addr FROM sources ORDER BY addr\n"
	    "fetch_source_expire 60\n"
	    "fetch_source_refresh 1000\n", db1);
}

/* -------------------------------------------------------------- tests */

static void
test_module(struct module *m)
{
	uint32_t	 want = MSD_TS_ALIAS | MSD_TS_DOMAIN |
			    MSD_TS_CREDENTIALS | MSD_TS_NETADDR |
			    MSD_TS_USERINFO | MSD_TS_SOURCE | MSD_TS_MAILADDR |
			    MSD_TS_ADDRNAME | MSD_TS_MAILADDRMAP;

	ok(m->desc.services == want,
	    "services: those with a query keyword, not relayhost/string/regex");
	ok((m->desc.flags & MSD_MF_MAY_BLOCK) != 0,
	    "the module says its lookups may block");
	ok(ops->load == NULL && ops->lookup != NULL && ops->fetch != NULL &&
	    ops->update != NULL, "a lookup-style table: no load");
}

static void
test_lookups(void *inst)
{
	struct msd_result	 res;

	memset(&res, 0, sizeof(res));
	ok(lookup(inst, MSD_TS_ALIAS, "abuse@example.com", &res) == MSD_OK &&
	    value_is(&res, "bob@example.com, alice@example.net"),
	    "alias: two rows joined with \", \"");
	ok(lookup(inst, MSD_TS_ALIAS, "nobody@example.com", &res) ==
	    MSD_NOTFOUND && !res.failed, "alias: no row is not found");
	ok(lookup(inst, MSD_TS_DOMAIN, "example.com", &res) == MSD_OK &&
	    value_is(&res, "example.com"), "domain: found, the entry as value");
	ok(lookup(inst, MSD_TS_DOMAIN, "example.org", &res) == MSD_NOTFOUND,
	    "domain: not found");
	ok(lookup(inst, MSD_TS_CREDENTIALS, "bob@example.com", &res) ==
	    MSD_OK && value_is(&res, "bob@example.com:$6$salt$hash"),
	    "credentials: \"user:hash\"");
	ok(lookup(inst, MSD_TS_USERINFO, "bob", &res) == MSD_OK &&
	    value_is(&res, "1000:1001:/home/bob"),
	    "userinfo: \"uid:gid:home\"");
	ok(lookup(inst, MSD_TS_USERINFO, "eve", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "not a numeric id"),
	    "userinfo: a uid that is not a number fails, never reads as 0");
	ok(lookup(inst, MSD_TS_MAILADDRMAP, "bob@example.com", &res) ==
	    MSD_OK &&
	    value_is(&res, "abuse@example.com, postmaster@example.com"),
	    "mailaddrmap: rows joined like alias");
	result_reset(&res);
}

static void
test_injection(void *inst)
{
	struct msd_result	 res;
	static const char	 key[] = "o'hara'; drop table x; --";

	memset(&res, 0, sizeof(res));
	ok(lookup(inst, MSD_TS_DOMAIN, key, &res) == MSD_OK &&
	    value_is(&res, key), "a key with quotes and SQL is looked up "
	    "literally");
	ok(lookup(inst, MSD_TS_DOMAIN, "x' or '1'='1", &res) == MSD_NOTFOUND,
	    "a key that would widen an interpolated query finds nothing");
	ok(lookup(inst, MSD_TS_ALIAS, "'; drop table x; --", &res) ==
	    MSD_NOTFOUND && table_exists(db1, "x"),
	    "the table named in the key still exists");
	result_reset(&res);
}

static void
test_fetch(void *inst)
{
	struct msd_result	 res;
	static const char *const want[] = {
		"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1",
	};
	size_t			 i;
	int			 good = 1;

	memset(&res, 0, sizeof(res));
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (fetch(inst, &res) != MSD_OK || !value_is(&res, want[i]))
			good = 0;
	ok(good, "fetch_source: rows in turn, wrapping around");
	ok(ops->fetch(inst, MSD_TS_RELAYHOST, &res) == MSD_TEMPFAIL &&
	    error_has(&res, "relayhost"), "fetch of another service fails");
	result_reset(&res);
}

static void
test_missing(void *inst, const char *path)
{
	struct msd_result	 res;
	char			 want[PATH_MAX + 64];

	memset(&res, 0, sizeof(res));
	mkpath(want, sizeof(want), "no query_netaddr in %s", path);
	ok(lookup(inst, MSD_TS_NETADDR, "192.0.2.1", &res) == MSD_TEMPFAIL &&
	    error_has(&res, want),
	    "a service without its query: TEMPFAIL naming the keyword");
	ok(lookup(inst, MSD_TS_RELAYHOST, "label", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "relayhost"),
	    "a service no keyword serves: TEMPFAIL with the reason");
	result_reset(&res);
}

/* A writer's exclusive lock: the lookup waits, then fails temporarily. */
static void
test_locked(void *inst)
{
	struct msd_result	 res;
	struct timeval		 t0, t1;
	sqlite3			*w;
	long			 ms;
	int			 r;

	memset(&res, 0, sizeof(res));
	if (sqlite3_open(db1, &w) != SQLITE_OK ||
	    sqlite3_exec(w, "BEGIN EXCLUSIVE", NULL, NULL, NULL) != SQLITE_OK)
		fatalx("%s: %s", db1, sqlite3_errmsg(w));
	gettimeofday(&t0, NULL);
	r = lookup(inst, MSD_TS_DOMAIN, "example.com", &res);
	gettimeofday(&t1, NULL);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
	ok(r == MSD_TEMPFAIL && error_has(&res, "locked"),
	    "a locked database is a temporary failure, not \"not found\"");
	ok(ms >= BUSY_MS - 250 && ms < BUSY_MS * 3,
	    "after waiting the busy timeout (%ld ms)", ms);
	sqlite3_exec(w, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(w);
	ok(lookup(inst, MSD_TS_DOMAIN, "example.com", &res) == MSD_OK,
	    "lookups answer again once the writer is done");
	result_reset(&res);
}

static void
refused(const char *path, const char *what, const char *want1,
    const char *want2)
{
	void	*inst;
	int	 r;

	r = open_table(path, &inst);
	ok(r != MSD_OK && inst == NULL && log_has(want1) && log_has(want2),
	    "refused at open: %s", what);
	if (inst != NULL)
		ops->close(inst);
}

static void
test_bad_configs(void)
{
	char	 p[PATH_MAX], l1[PATH_MAX + 8], l2[PATH_MAX + 8];
	char	 l3[PATH_MAX + 8], missing[PATH_MAX];

	mkpath(p, sizeof(p), "%s/bad.conf", root);
	mkpath(l1, sizeof(l1), "%s:1:", p);
	mkpath(l2, sizeof(l2), "%s:2:", p);
	mkpath(l3, sizeof(l3), "%s:3:", p);

	write_conf(p, "# typo\ndbpath %s\nquery_aliases SELECT 1 WHERE ?\n",
	    db1);
	refused(p, "an unknown keyword, with its line", l3,
	    "unknown keyword \"query_aliases\"");
	write_conf(p, "dbpath %s\nquery_domain SELEC domain FROM domains "
	    "WHERE domain=?\n", db1);
	refused(p, "SQL that does not prepare", l2, "syntax error");
	write_conf(p, "dbpath %s\nquery_domain SELECT d FROM nope WHERE d=?\n",
	    db1);
	refused(p, "a missing table, with sqlite's message", l2,
	    "no such table: nope");
	write_conf(p, "dbpath %s\nquery_domain SELECT domain FROM domains\n"
	    "query_alias SELECT destination FROM virtuals WHERE email=? OR "
	    "destination=?\n", db1);
	refused(p, "the first bad query in the file: one without a parameter",
	    l2, "query_domain has 0 parameters");
	write_conf(p, "dbpath %s\n\nquery_alias SELECT destination FROM "
	    "virtuals WHERE email=? OR destination=?\n", db1);
	refused(p, "a query with two parameters", l3, "has 2 parameters");
	write_conf(p, "query_domain SELECT domain FROM domains WHERE "
	    "domain=?\n");
	refused(p, "no dbpath", p, ": no dbpath");
	write_conf(p, "dbpath %s\nquery_userinfo SELECT uid, home FROM users "
	    "WHERE name=?\n", db1);
	refused(p, "a userinfo query returning two columns", l2,
	    "query_userinfo returns 2 columns, it must return 3");
	write_conf(p, "dbpath %s\nfetch_source SELECT addr FROM sources "
	    "WHERE addr=?\n", db1);
	refused(p, "fetch_source with a parameter", l2,
	    "fetch_source has 1 parameter, it must have none");
	write_conf(p, "dbpath %s\nquery_domain SELECT domain FROM domains "
	    "WHERE domain=?; DROP TABLE x\n", db1);
	refused(p, "two statements in one query", l2, "more than one SQL");
	write_conf(p, "dbpath %s\nquery_domain DELETE FROM domains WHERE "
	    "domain=? RETURNING domain\n", db1);
	refused(p, "a statement that writes", l2, "not a read-only");
	write_conf(p, "dbpath %s\nquery_domain SELECT domain FROM domains "
	    "WHERE domain=?\nquery_domain SELECT 1 WHERE ?\n", db1);
	refused(p, "a keyword given twice", l3, "first on line 2");
	write_conf(p, "dbpath %s\nquery_domain\n", db1);
	refused(p, "a keyword without a value", l2, "without a value");
	write_conf(p, "dbpath %s\nfetch_source SELECT addr FROM sources\n"
	    "fetch_source_refresh often\n", db1);
	refused(p, "a number that is not one", l3, "not a number");
	mkpath(missing, sizeof(missing), "%s/none.sqlite", root);
	write_conf(p, "dbpath %s\nquery_domain SELECT 1 WHERE ?\n", missing);
	refused(p, "a database that does not exist (read-only: not created)",
	    l1, "unable to open");
	ok(access(missing, F_OK) == -1, "the missing database was not created");
	write_conf(p, "dbpath %s\n", db1);
	refused(p, "no query at all", p, "no query_* or fetch_source");
	mkpath(missing, sizeof(missing), "%s/none.conf", root);
	refused(missing, "a configuration file that does not exist", missing,
	    "No such file");
	refused("", "an empty configuration string", "users",
	    "no configuration file");
}

/* fetch_source_refresh: the rows are read again after that many fetches. */
static void
test_refresh(void)
{
	struct msd_result	 res;
	static const char *const want[] = {
		"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.1",
	};
	char			 p[PATH_MAX];
	void			*inst;
	size_t			 i;
	int			 good = 1;

	memset(&res, 0, sizeof(res));
	mkpath(p, sizeof(p), "%s/refresh.conf", root);
	write_conf(p, "dbpath %s\nfetch_source SELECT addr FROM sources "
	    "ORDER BY addr\nfetch_source_refresh 2\n", db1);
	if (open_table(p, &inst) != MSD_OK) {
		ok(0, "open with fetch_source_refresh: %s", logbuf);
		return;
	}
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (i == 2)
			db_exec(db1,
			    "INSERT INTO sources VALUES ('192.0.2.4')");
		if (fetch(inst, &res) != MSD_OK || !value_is(&res, want[i]))
			good = 0;
	}
	ok(good, "fetch_source_refresh 2: a row added shows up, in turn");
	db_exec(db1, "DELETE FROM sources WHERE addr = '192.0.2.4'");
	ops->close(inst);
	result_reset(&res);
}

static void
test_update(void *inst, const char *path)
{
	struct msd_result	 res;
	char			 want[PATH_MAX + 8];

	memset(&res, 0, sizeof(res));
	logbuf[0] = '\0';
	mkpath(want, sizeof(want), "%s:2:", path);
	write_conf(path, "dbpath %s\nquery_alias SELEC\n", db2);
	ok(ops->update(inst) == MSD_TEMPFAIL && log_has("update refused") &&
	    log_has(want), "update with a broken configuration fails, "
	    "with its line in the log");
	ok(lookup(inst, MSD_TS_ALIAS, "abuse@example.com", &res) == MSD_OK &&
	    value_is(&res, "bob@example.com, alice@example.net") &&
	    lookup(inst, MSD_TS_DOMAIN, "example.com", &res) == MSD_OK,
	    "... and the old configuration keeps answering");

	write_conf(path, "dbpath %s\nquery_domain SELECT domain FROM domains "
	    "WHERE domain=?\n", db2);
	ok(ops->update(inst) == MSD_OK, "update with a new dbpath");
	ok(lookup(inst, MSD_TS_DOMAIN, "example.org", &res) == MSD_OK &&
	    lookup(inst, MSD_TS_DOMAIN, "example.com", &res) == MSD_NOTFOUND,
	    "the new database answers");
	ok(lookup(inst, MSD_TS_ALIAS, "abuse@example.com", &res) ==
	    MSD_TEMPFAIL && error_has(&res, "no query_alias"),
	    "the new configuration's queries are the only ones");
	result_reset(&res);
}

int
main(void)
{
	struct module	*m;
	char		 conf[PATH_MAX];
	void		*inst = NULL;

	log_init(1, 0);
	mkpath(root, sizeof(root), "/tmp/test-tablesqlite.XXXXXX");
	if (mkdtemp(root) == NULL)
		fatal("mkdtemp");

	m = module_load_file(SQLITE_SO, MSD_KIND_TABLE, "sqlite");
	ok(m != NULL, "the sqlite module loads");
	if (m == NULL || (ops = module_ops(m, sizeof(*ops))) == NULL) {
		ok(0, "sqlite table ops");
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		return tap_done();
	}
	th = *m->host;
	th.log = test_log;
	test_module(m);

	make_databases();
	mkpath(conf, sizeof(conf), "%s/sqlite.conf", root);
	write_good_conf(conf);
	ok(open_table(conf, &inst) == MSD_OK && inst != NULL,
	    "open with table-sqlite's keywords and separators");
	if (inst == NULL)
		printf("# log: %s", logbuf);
	else {
		test_lookups(inst);
		test_injection(inst);
		test_fetch(inst);
		test_missing(inst, conf);
		test_locked(inst);
		test_update(inst, conf);
		ops->close(inst);
	}
	test_bad_configs();
	test_refresh();

	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return tap_done();
}
