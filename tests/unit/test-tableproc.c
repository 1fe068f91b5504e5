/*
 * test-tableproc.c - the proc table backend through the module loader,
 * against the table programs in tests/table-proc/: the line protocol
 * (every kind of answer, what the program is given, fresh request ids),
 * each way a program can fail a request (timeout, exit, kill, garbage,
 * another request's id, an empty value, two answers) with the restart
 * after a pause that doubles, keys refused before they reach a program,
 * programs refused at open, the fallback to the imsg protocol with a fake
 * old-style program, and Debian's opensmtpd-extras table-passwd when it
 * is at hand.
 *
 * The module is loaded from $TABLEPROC_SO when set, else from
 * TOP_BUILDDIR/modules/table/proc/.libs/proc.so, where the build puts it.
 * table-passwd is looked for in $TABLEPROC_EXTRAS_DIR, else in
 * /var/cache/modsmtpd-test/opensmtpd-extras/usr/libexec/opensmtpd, where
 * tests/integration/test_table_proc.py unpacks the package; without it
 * that part is skipped.  `test-tableproc extras` runs that part alone.
 * The Python programs need python3 in /usr/bin or /usr/local/bin: the
 * module gives programs a PATH of the usual directories only.
 *
 * Prints TAP-style "ok N - what" lines; exits non-zero on any failure.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pwd.h>
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
#ifndef TOP_SRCDIR
#error "TOP_SRCDIR must name the source tree"
#endif

#define PROC_SO		TOP_BUILDDIR "/modules/table/proc/.libs/proc.so"
#define EXTRAS_CACHE	"/var/cache/modsmtpd-test/opensmtpd-extras/usr/" \
			"libexec/opensmtpd"
#define REQUEST_MS	5000	/* "table-timeout" of test_config_get */
#define CANARY		"TABLEPROC_CANARY"

/* Keys the test program misbehaves on (see table-test.py). */
#define SWITCHES	"sleep=slow,exit=crash,garbage=junk,wrongid=other," \
			"empty=hollow,twice=double,error=boom"

static char	 root[PATH_MAX];		/* scratch directory */
static char	 logbuf[16384];			/* what the module logged */
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

/* The daemon's host, but with a 5 s table-timeout to keep the tests short. */
static const char *(*host_config_get)(const char *);

static const char *
test_config_get(const char *key)
{
	if (key != NULL && strcmp(key, "table-timeout") == 0)
		return "5";
	return host_config_get(key);
}

static int64_t
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
	struct timespec	 ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE	*fp;

	if ((fp = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fputs(text, fp);
	if (fclose(fp) == EOF || chmod(path, mode) == -1)
		fatal("%s", path);
}

static size_t
read_file(const char *path, char *buf, size_t size)
{
	FILE	*fp;
	size_t	 n = 0;

	buf[0] = '\0';
	if ((fp = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, size - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return n;
}

/* table-NAME in the scratch directory: runs a script of tests/table-proc. */
static void
make_wrapper(const char *name, const char *script)
{
	char	 path[PATH_MAX], text[PATH_MAX + 64];

	mkpath(path, sizeof(path), "%s/table-%s", root, name);
	mkpath(text, sizeof(text), "#!/bin/sh\nexec python3 %s/tests/"
	    "table-proc/%s \"$@\"\n", TOP_SRCDIR, script);
	write_file(path, text, 0755);
}

static int
lookup(void *inst, uint32_t service, const char *key, struct msd_result *res)
{
	result_reset(res);
	return ops->lookup(inst, service, key, res);
}

static int
fetch(void *inst, uint32_t service, struct msd_result *res)
{
	result_reset(res);
	return ops->fetch(inst, service, res);
}

static int
has(const char *text, const char *want, const char *what)
{
	if (strstr(text, want) != NULL)
		return 1;
	printf("# %s \"%s\", want \"%s\"\n", what, text, want);
	return 0;
}

static int
open_table(const char *config, void **inst)
{
	logbuf[0] = '\0';
	*inst = NULL;
	return ops->open(&th, "users", config, inst);
}

/* The one live child of this process (a table program); -1 if none. */
static pid_t
child_pid(void)
{
	DIR		*d;
	struct dirent	*de;
	char		 path[PATH_MAX], stat[512], *p, state;
	pid_t		 found = -1;
	int		 ppid;

	if ((d = opendir("/proc")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		mkpath(path, sizeof(path), "/proc/%s/stat", de->d_name);
		if (read_file(path, stat, sizeof(stat)) == 0 ||
		    (p = strrchr(stat, ')')) == NULL ||
		    sscanf(p + 1, " %c %d", &state, &ppid) != 2)
			continue;
		if (ppid == getpid() && state != 'Z') {
			found = (pid_t)atoi(de->d_name);
			break;
		}
	}
	closedir(d);
	return found;
}

/* Gone for good: not even a zombie waiting to be reaped. */
static int
pid_gone(pid_t pid)
{
	return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH;
}

/* --------------------------------------------------------- line protocol */

static void
test_module(struct module *m)
{
	ok(m->desc.kind == MSD_KIND_TABLE && strcmp(m->desc.name, "proc") ==
	    0, "a table module named proc");
	ok((m->desc.flags & MSD_MF_MAY_BLOCK) != 0,
	    "the module says its lookups may block");
	ok(ops->load == NULL && ops->lookup != NULL && ops->fetch != NULL &&
	    ops->update != NULL, "a lookup-style table: no load");
	ok(m->desc.services == 0xfff, "every table(5) service: the program "
	    "decides");
}

static void
test_answers(void *inst)
{
	struct msd_result	 res;
	static const char *const want[] = {
		"192.0.2.1", "192.0.2.2", "192.0.2.1",
	};
	size_t			 i;
	pid_t			 pid = child_pid();
	int			 good = 1;

	memset(&res, 0, sizeof(res));
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK &&
	    value_is(&res, "1000:1000:/home/alice"), "userinfo: found");
	ok(lookup(inst, MSD_TS_USERINFO, "nobody", &res) == MSD_NOTFOUND &&
	    !res.failed, "userinfo: not found");
	ok(lookup(inst, MSD_TS_CREDENTIALS, "alice", &res) == MSD_OK &&
	    res.value != NULL && strncmp(res.value, "alice:$6$", 9) == 0,
	    "credentials: \"user:hash\"");
	ok(lookup(inst, MSD_TS_ALIAS, "postmaster", &res) == MSD_OK &&
	    value_is(&res, "alice, bob"), "alias: the list as one value");
	ok(lookup(inst, MSD_TS_DOMAIN, "example.org", &res) == MSD_OK &&
	    value_is(&res, "example.org"),
	    "domain (a list): found, the key as value");
	ok(lookup(inst, MSD_TS_DOMAIN, "example.net", &res) == MSD_NOTFOUND,
	    "domain: not found");
	ok(lookup(inst, MSD_TS_ALIAS, "a|b", &res) == MSD_NOTFOUND,
	    "a key with \"|\" is the last field: passed whole");
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (fetch(inst, MSD_TS_SOURCE, &res) != MSD_OK ||
		    !value_is(&res, want[i]))
			good = 0;
	ok(good, "fetch source: entries in turn, wrapping around");
	ok(ops->update(inst) == MSD_OK, "update: ok");

	ok(lookup(inst, MSD_TS_NETADDR, "192.0.2.1", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "no netaddr service registered"),
	    "a service the program did not register: TEMPFAIL naming it");
	ok(fetch(inst, MSD_TS_RELAYHOST, &res) == MSD_TEMPFAIL &&
	    error_has(&res, "relayhost"), "fetch of an unregistered service");
	ok(lookup(inst, MSD_TS_USERINFO, "a\nb", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "line break"), "a key with LF is refused");
	ok(lookup(inst, MSD_TS_USERINFO, "a\rb", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "line break"), "a key with CR is refused");
	ok(lookup(inst, MSD_TS_USERINFO, "boom", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "error: no database"),
	    "an error answer: TEMPFAIL with the program's message");
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK &&
	    child_pid() == pid && pid > 0,
	    "refused keys and error answers leave the program running");
	result_reset(&res);
}

/* Ids of the requests in the program's log: 8 hex digits, all different. */
static int
ids_fresh(char *log, int *count)
{
	char	*line, *save, *f[8], *p, ids[64][9];
	int	 n = 0, i, j, nf;

	for (line = strtok_r(log, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "table|0.1|", 10) != 0)
			continue;
		for (nf = 0, p = line; nf < 8 && p != NULL; nf++)
			f[nf] = strsep(&p, "|");
		if (nf < 6 || n >= 64)
			return 0;
		p = strcmp(f[4], "update") == 0 ? f[5] : nf > 6 ? f[6] : "";
		if (strlen(p) != 8 || strspn(p, "0123456789abcdef") != 8)
			return 0;
		memcpy(ids[n++], p, 9);
	}
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (strcmp(ids[i], ids[j]) == 0)
				return 0;
	*count = n;
	return n > 0;
}

/* What the program got: argv, environment, descriptors, the requests. */
static void
test_what_it_sees(const char *logpath)
{
	static char	 log[65536];
	char		 want[PATH_MAX + 64];
	int		 n = 0, fresh;

	/* ids_fresh cuts the text up: a copy of its own */
	read_file(logpath, log, sizeof(log));
	fresh = ids_fresh(log, &n);
	ok(fresh && n >= 10, "request ids: 8 hex digits, a fresh one each "
	    "time (%d requests)", n);
	read_file(logpath, log, sizeof(log));
	mkpath(want, sizeof(want), "start argc=2 arg=log=%s,", logpath);
	ok(has(log, want, "log"), "argv[1] is what follows \"test:\"");
	ok(has(log, " fds=0,1,2\n", "log"),
	    "the program has fds 0, 1 and 2 and no other");
	if (geteuid() == 0) {
		struct stat	 sb;
		struct passwd	*pw = getpwnam(SMTPD_USER);

		ok(stat(logpath, &sb) == 0 && pw != NULL &&
		    sb.st_uid == pw->pw_uid, "as root, the program runs as "
		    SMTPD_USER ", never as root");
	} else
		skip("not root: the program runs as we do");
	ok(has(log, "PATH=/usr/local/sbin:", "log") &&
	    strstr(log, CANARY) == NULL,
	    "its environment is PATH, not ours");
	ok(has(log, "\nconfig|smtpd-version|", "log") &&
	    has(log, "\nconfig|protocol|0.1\nconfig|tablename|users\n"
	    "config|ready\n", "log"), "the handshake, with the table name");
	ok(has(log, "|users|lookup|userinfo|", "log") &&
	    has(log, "|users|lookup|alias|", "log"),
	    "map services are looked up");
	ok(has(log, "|users|check|domain|", "log"),
	    "list services are checked, as OpenSMTPD does");
	ok(has(log, "|users|fetch|source|", "log") &&
	    has(log, "|users|update|", "log"), "fetch and update requests");
	ok(has(log, "|users|lookup|alias|", "log") && strstr(log, "a\nb") ==
	    NULL, "the refused keys never reached the program");
}

/*
 * The request for key fails with an error containing why, the program
 * is gone, lookups fail at once until the pause is over, then it runs
 * again and answers.
 */
static void
test_failure(void *inst, const char *key, const char *why, const char *what)
{
	struct msd_result	 res;
	pid_t			 pid = child_pid();
	int64_t			 t0 = now_ms();
	int			 r;

	memset(&res, 0, sizeof(res));
	r = lookup(inst, MSD_TS_USERINFO, key, &res);
	ok(r == MSD_TEMPFAIL && error_has(&res, why) && now_ms() - t0 < 2000,
	    "%s: TEMPFAIL (%s)", what, res.error);
	ok(pid_gone(pid) && child_pid() == -1,
	    "%s: the program is killed and reaped", what);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "table program table-test restarting in 1s"),
	    "%s: during the pause, TEMPFAIL at once", what);
	sleep_ms(1100);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK &&
	    value_is(&res, "1000:1000:/home/alice") && child_pid() > 0 &&
	    child_pid() != pid, "%s: restarted after 1s, answers again", what);
	result_reset(&res);
}

static void
test_timeout(void *inst)
{
	struct msd_result	 res;
	int64_t			 t0 = now_ms(), took;
	int			 r;

	memset(&res, 0, sizeof(res));
	r = lookup(inst, MSD_TS_USERINFO, "slow", &res);
	took = now_ms() - t0;
	ok(r == MSD_TEMPFAIL && error_has(&res, "no answer within 5s") &&
	    took >= REQUEST_MS - 100 && took < REQUEST_MS + 1500,
	    "a program that does not answer: TEMPFAIL after %lldms",
	    (long long)took);
	ok(child_pid() == -1, "the silent program is killed and reaped");
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "restarting in 1s"), "then TEMPFAIL during 1s");
	sleep_ms(1100);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK,
	    "and success after the restart");
	result_reset(&res);
}

static void
test_killed(void *inst)
{
	struct msd_result	 res;
	pid_t			 pid = child_pid();

	memset(&res, 0, sizeof(res));
	ok(pid > 0 && kill(pid, SIGKILL) == 0, "the program is killed from "
	    "outside");
	sleep_ms(100);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "killed by signal 9"),
	    "next lookup: TEMPFAIL saying how it died");
	ok(pid_gone(pid), "the dead program is reaped");
	sleep_ms(1100);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK &&
	    child_pid() != pid, "after the pause: a new program answers");
	result_reset(&res);
}

/* Failures in a row double the pause; an answer resets it. */
static void
test_backoff(void *inst)
{
	struct msd_result	 res;

	memset(&res, 0, sizeof(res));
	ok(lookup(inst, MSD_TS_USERINFO, "crash", &res) == MSD_TEMPFAIL &&
	    lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "restarting in 1s"), "first failure: 1s pause");
	sleep_ms(1100);
	ok(lookup(inst, MSD_TS_USERINFO, "crash", &res) == MSD_TEMPFAIL &&
	    lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "restarting in 2s"),
	    "second failure in a row: 2s pause");
	sleep_ms(1100);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "restarting in 1s"), "still paused after 1.1s");
	sleep_ms(1000);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK,
	    "answers after 2s");
	ok(lookup(inst, MSD_TS_USERINFO, "crash", &res) == MSD_TEMPFAIL &&
	    lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "restarting in 1s"),
	    "an answer in between: back to 1s");
	sleep_ms(1100);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK,
	    "answers again (and the pause is back to 1s)");
	result_reset(&res);
}

static void
test_line(void)
{
	char		 config[PATH_MAX], logpath[PATH_MAX];
	void		*inst;
	pid_t		 pid;
	int64_t		 t0;

	mkpath(logpath, sizeof(logpath), "%s/requests.log", root);
	mkpath(config, sizeof(config), "test:log=%s," SWITCHES, logpath);
	t0 = now_ms();
	ok(open_table(config, &inst) == MSD_OK && inst != NULL,
	    "open proc:test:... from MODSMTPD_TABLE_DIR");
	if (inst == NULL) {
		printf("# log: %s", logbuf);
		return;
	}
	ok(now_ms() - t0 < 1000 && strstr(logbuf, "imsg") == NULL,
	    "a line-protocol program is recognised at once");
	test_answers(inst);
	test_what_it_sees(logpath);
	test_failure(inst, "junk", "malformed answer \"this is not the "
	    "protocol\"", "an answer out of protocol");
	test_failure(inst, "other", "is not for request",
	    "an answer with another request's id");
	test_failure(inst, "hollow", "found with an empty value",
	    "found with an empty value");
	test_failure(inst, "double", "more than one answer", "two answers");
	test_failure(inst, "crash", "exited with status 3",
	    "a program that exits");
	ok(has(logbuf, "table users: table-test: connection closed (exited "
	    "with status 3); restarting it in 1s\n", "log"),
	    "a killed program is logged, with the restart pause");
	test_killed(inst);
	test_backoff(inst);
	test_timeout(inst);
	pid = child_pid();
	ops->close(inst);
	ok(pid_gone(pid), "close: the program exits and is reaped");
}

/* --------------------------------------------------------- open errors */

static void
test_open_errors(void)
{
	char		 config[PATH_MAX], want[PATH_MAX + 128];
	void		*inst;

	ok(open_table("nosuch", &inst) == MSD_PERMFAIL && inst == NULL,
	    "a missing program: PERMFAIL at open");
	mkpath(want, sizeof(want), "no table-nosuch in %s, /usr/local/libexec/"
	    "smtpd, /usr/libexec/smtpd, /usr/libexec/opensmtpd", root);
	ok(has(logbuf, want, "log"), "the reason names every directory");
	ok(open_table("", &inst) == MSD_PERMFAIL && has(logbuf, "no program",
	    "log"), "no program at all: PERMFAIL");
	ok(open_table("../test", &inst) == MSD_PERMFAIL,
	    "a relative path is refused");
	ok(open_table("/nonexistent/table-x:arg", &inst) == MSD_PERMFAIL &&
	    has(logbuf, "/nonexistent/table-x is not an executable", "log"),
	    "an absolute path that is not a program: PERMFAIL");
	mkpath(config, sizeof(config), "%s/table-test:only=alias+bogus", root);
	ok(open_table(config, &inst) == MSD_TEMPFAIL && inst == NULL &&
	    has(logbuf, "unknown service \"bogus\"", "log"),
	    "a program registering an unknown service fails the open");
	ok(child_pid() == -1, "and it is reaped");
	ok(open_table("false", &inst) == MSD_TEMPFAIL && has(logbuf,
	    "line protocol: connection closed (exited with status 1); imsg "
	    "protocol: connection closed (exited with status 1)", "log"),
	    "a program that exits at once: both protocols tried, both "
	    "reasons logged");
	ok(child_pid() == -1, "no program left behind");
}

/* An absolute path, no MODSMTPD_TABLE_DIR needed. */
static void
test_absolute(void)
{
	struct msd_result	 res;
	char			 config[PATH_MAX];
	void			*inst;

	memset(&res, 0, sizeof(res));
	unsetenv("MODSMTPD_TABLE_DIR");
	mkpath(config, sizeof(config), "%s/table-test", root);
	ok(open_table(config, &inst) == MSD_OK && inst != NULL &&
	    lookup(inst, MSD_TS_USERINFO, "bob", &res) == MSD_OK &&
	    value_is(&res, "1001:1001:/home/bob"),
	    "proc:/absolute/path without an argument");
	if (inst != NULL)
		ops->close(inst);
	setenv("MODSMTPD_TABLE_DIR", root, 1);
	result_reset(&res);
}

/* A line program silent for more than the detection's 1s still opens. */
static void
test_slow_start(void)
{
	struct msd_result	 res;
	void			*inst;
	int64_t			 t0 = now_ms();
	int			 r;

	memset(&res, 0, sizeof(res));
	r = open_table("test:slowstart=1.5", &inst);
	ok(r == MSD_OK && inst != NULL, "a line program that starts slowly "
	    "opens (%lldms)", (long long)(now_ms() - t0));
	ok(has(logbuf, "table-test took more than 1000ms to start", "log"),
	    "after the imsg attempt, a line handshake with the full timeout");
	ok(inst != NULL && lookup(inst, MSD_TS_USERINFO, "alice", &res) ==
	    MSD_OK, "and it answers in the line protocol");
	if (inst != NULL)
		ops->close(inst);
	result_reset(&res);
}

/* ---------------------------------------------------------- imsg, fake */

static void
test_imsg_fake(void)
{
	struct msd_result	 res;
	char			 config[PATH_MAX], logpath[PATH_MAX];
	static char		 log[8192];
	void			*inst;
	pid_t			 pid;
	int64_t			 t0;

	memset(&res, 0, sizeof(res));
	mkpath(logpath, sizeof(logpath), "%s/imsg.log", root);
	mkpath(config, sizeof(config), "imsgtest:log=%s,garbage=junk,"
	    "fail=nope", logpath);
	t0 = now_ms();
	ok(open_table(config, &inst) == MSD_OK && inst != NULL,
	    "imsg: an old-style program opens");
	if (inst == NULL) {
		printf("# log: %s", logbuf);
		return;
	}
	ok(now_ms() - t0 < 900, "imsg: recognised without waiting for the "
	    "detection timeout (%lldms)", (long long)(now_ms() - t0));
	ok(has(logbuf, "speaks the imsg table protocol", "log"),
	    "imsg: the fallback is logged");
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK &&
	    value_is(&res, "1000:1000:/home/alice"), "imsg: LOOKUP found");
	ok(lookup(inst, MSD_TS_USERINFO, "bob", &res) == MSD_NOTFOUND &&
	    !res.failed, "imsg: LOOKUP not found");
	ok(lookup(inst, MSD_TS_DOMAIN, "example.org", &res) == MSD_OK &&
	    value_is(&res, "example.org"), "imsg: CHECK found, key as value");
	ok(lookup(inst, MSD_TS_DOMAIN, "example.net", &res) == MSD_NOTFOUND,
	    "imsg: CHECK not found");
	ok(lookup(inst, MSD_TS_CREDENTIALS, "alice", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "reported an error"), "imsg: r = -1 is TEMPFAIL");
	ok(lookup(inst, MSD_TS_USERINFO, "nope", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "FAIL"), "imsg: a FAIL answer is TEMPFAIL");
	ok(fetch(inst, MSD_TS_SOURCE, &res) == MSD_OK &&
	    value_is(&res, "192.0.2.1") && fetch(inst, MSD_TS_SOURCE, &res) ==
	    MSD_OK && value_is(&res, "192.0.2.2"), "imsg: FETCH in turn");
	ok(ops->update(inst) == MSD_OK, "imsg: UPDATE");
	ok(lookup(inst, MSD_TS_USERINFO, "a\nb", &res) == MSD_NOTFOUND,
	    "imsg: a key with LF is fine in a NUL-terminated field");
	pid = child_pid();
	ok(lookup(inst, MSD_TS_USERINFO, "junk", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "malformed imsg") && pid_gone(pid),
	    "imsg: a garbage answer kills the program");
	sleep_ms(1100);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK,
	    "imsg: restarted after the pause");
	pid = child_pid();
	ok(pid > 0 && kill(pid, SIGKILL) == 0 &&
	    lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_TEMPFAIL &&
	    pid_gone(pid), "imsg: a killed program: TEMPFAIL");
	sleep_ms(1100);
	logbuf[0] = '\0';
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK &&
	    strstr(logbuf, "speaks the imsg") == NULL,
	    "imsg: restarted in imsg mode, without detecting again");
	pid = child_pid();
	t0 = now_ms();
	ops->close(inst);
	ok(pid_gone(pid) && now_ms() - t0 < 900,
	    "imsg: close sends CLOSE, the program exits by itself");
	read_file(logpath, log, sizeof(log));
	ok(has(log, "type 2 len 2068\n", "log") && has(log, "type 3 len 16\n",
	    "log"), "imsg: OPEN of 2052 bytes, then CLOSE");
	result_reset(&res);
}

/* ------------------------------------------------ Debian's table-passwd */

static void
test_extras(void)
{
	struct msd_result	 res;
	const char		*dir = getenv("TABLEPROC_EXTRAS_DIR");
	char			 path[PATH_MAX], config[PATH_MAX];
	void			*inst;
	pid_t			 pid;
	int64_t			 t0;

	memset(&res, 0, sizeof(res));
	if (dir == NULL || dir[0] == '\0')
		dir = EXTRAS_CACHE;
	mkpath(path, sizeof(path), "%s/table-passwd", dir);
	if (access(path, X_OK) == -1) {
		skip("Debian table-passwd: not in " EXTRAS_CACHE " (tests/"
		    "integration/test_table_proc.py downloads it)");
		return;
	}
	setenv("MODSMTPD_TABLE_DIR", dir, 1);
	mkpath(path, sizeof(path), "%s/passwd", root);
	write_file(path, "# user:hash:uid:gid:gecos:home:shell\n"
	    "alice:$6$rounds=5000$salt$hash:1000:1001::/home/alice:/bin/sh\n"
	    "bob:*:1002:1002:Bob:/home/bob:/usr/sbin/nologin\n", 0644);
	mkpath(config, sizeof(config), "passwd:%s", path);
	t0 = now_ms();
	ok(open_table(config, &inst) == MSD_OK && inst != NULL,
	    "table-passwd: opens in imsg mode");
	if (inst == NULL) {
		printf("# log: %s", logbuf);
		setenv("MODSMTPD_TABLE_DIR", root, 1);
		return;
	}
	ok(now_ms() - t0 < 900 && has(logbuf, "table-passwd speaks the imsg",
	    "log"), "table-passwd: recognised as imsg at once (%lldms)",
	    (long long)(now_ms() - t0));
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK &&
	    value_is(&res, "1000:1001:/home/alice"),
	    "table-passwd: userinfo \"uid:gid:home\"");
	ok(lookup(inst, MSD_TS_CREDENTIALS, "alice", &res) == MSD_OK &&
	    value_is(&res, "alice:$6$rounds=5000$salt$hash"),
	    "table-passwd: credentials \"user:hash\"");
	ok(lookup(inst, MSD_TS_USERINFO, "bob", &res) == MSD_OK &&
	    value_is(&res, "1002:1002:/home/bob"), "table-passwd: bob");
	ok(lookup(inst, MSD_TS_USERINFO, "carol", &res) == MSD_NOTFOUND &&
	    !res.failed, "table-passwd: not found");
	ok(lookup(inst, MSD_TS_DOMAIN, "example.org", &res) == MSD_TEMPFAIL &&
	    error_has(&res, "reported an error") && child_pid() > 0,
	    "table-passwd: CHECK answers -1 (TEMPFAIL), the program stays");
	ok(ops->update(inst) == MSD_OK, "table-passwd: UPDATE");
	pid = child_pid();
	ok(pid > 0 && kill(pid, SIGKILL) == 0 &&
	    lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_TEMPFAIL &&
	    pid_gone(pid), "table-passwd: killed, TEMPFAIL");
	sleep_ms(1100);
	ok(lookup(inst, MSD_TS_USERINFO, "alice", &res) == MSD_OK &&
	    value_is(&res, "1000:1001:/home/alice"),
	    "table-passwd: restarted in imsg mode");
	pid = child_pid();
	t0 = now_ms();
	ops->close(inst);
	ok(pid_gone(pid) && now_ms() - t0 < 900,
	    "table-passwd: exits on CLOSE and is reaped");
	ok(open_table("passwd:/nonexistent/passwd", &inst) == MSD_TEMPFAIL &&
	    has(logbuf, "exited with status 1", "log"),
	    "table-passwd: an unreadable file fails the open");
	setenv("MODSMTPD_TABLE_DIR", root, 1);
	result_reset(&res);
}

int
main(int argc, char *argv[])
{
	struct module	*m;
	const char	*so = getenv("TABLEPROC_SO");
	char		 path[PATH_MAX];
	int		 only_extras;

	only_extras = argc > 1 && strcmp(argv[1], "extras") == 0;
	log_init(1, 0);
	/* Whole lines: the programs' complaints share our output. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	mkpath(root, sizeof(root), "/tmp/test-tableproc.XXXXXX");
	if (mkdtemp(root) == NULL)
		fatal("mkdtemp");
	/*
	 * As root the programs run as the daemon's user: they must reach
	 * the directory and write their logs into it.
	 */
	if (chmod(root, 01777) == -1)
		fatal("chmod %s", root);
	/* Must not reach the programs: their environment is PATH only. */
	setenv(CANARY, "1", 1);
	setenv("MODSMTPD_TABLE_DIR", root, 1);
	make_wrapper("test", "table-test.py");
	make_wrapper("imsgtest", "table-imsgtest.py");
	mkpath(path, sizeof(path), "%s/table-false", root);
	write_file(path, "#!/bin/sh\nexit 1\n", 0755);

	m = module_load_file(so != NULL && so[0] != '\0' ? so : PROC_SO,
	    MSD_KIND_TABLE, "proc");
	ok(m != NULL, "the proc module loads");
	if (m == NULL || (ops = module_ops(m, sizeof(*ops))) == NULL) {
		ok(0, "proc table ops");
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		return tap_done();
	}
	th = *m->host;
	th.log = test_log;
	host_config_get = m->host->config_get;
	th.config_get = test_config_get;
	if (!only_extras) {
		test_module(m);
		test_line();
		test_open_errors();
		test_absolute();
		test_slow_start();
		test_imsg_fake();
	}
	test_extras();

	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return tap_done();
}
