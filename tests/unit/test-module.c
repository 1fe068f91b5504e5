/*
 * test-module.c - the module loader and the in-tree modules, end to end:
 * the ABI refusals and their one log line, an older minor read through a
 * zero-filled copy, the search path, the host services, and a round trip
 * through the fs queue and the maildir delivery method.
 *
 * Prints TAP-style "ok N - what" lines; exits non-zero on any failure.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"
#include "tap.h"
#include "testutil.h"

#ifndef TOP_BUILDDIR
#error "TOP_BUILDDIR must name the build tree"
#endif

#define TESTMOD(dir)	TOP_BUILDDIR "/tests/modules/" dir "/.libs/maildir.so"
#define FS_SO		TOP_BUILDDIR "/modules/queue/fs/.libs/fs.so"
#define MAILDIR_SO	TOP_BUILDDIR "/modules/mda/maildir/.libs/maildir.so"
#define BUILTIN_SO	TOP_BUILDDIR "/modules/filter/builtin/.libs/builtin.so"

/* 1.4 appended to msd_host; what was there keeps its place. */
_Static_assert(offsetof(struct msd_host, filter_register) ==
    offsetof(struct msd_host, query) + sizeof(void *),
    "msd_host grows at its end");
_Static_assert(offsetof(struct msd_host, table_match) ==
    offsetof(struct msd_host, filter_register) + 4 * sizeof(void *),
    "the 1.4 host services in their order");

static char	 root[PATH_MAX];		/* scratch directory */
static char	 logbuf[8192];			/* last captured stderr */

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

static int
count_lines(const char *s)
{
	int	 n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Reads at most size bytes of path; -1 on error. */
static ssize_t
read_file(const char *path, char *buf, size_t size)
{
	ssize_t	 n;
	size_t	 len = 0;
	int	 fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return -1;
	while (len < size && (n = read(fd, buf + len, size - len)) > 0)
		len += n;
	close(fd);
	return (ssize_t)len;
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

static int
copy_file(const char *from, const char *to, mode_t mode)
{
	static char	 buf[1024 * 1024];
	ssize_t		 n;

	if ((n = read_file(from, buf, sizeof(buf))) < 0 ||
	    (size_t)n == sizeof(buf))
		return -1;
	return write_file(to, buf, n, mode);
}

/* Entries of dir but . and ..; the first name goes to name. */
static int
count_dir(const char *dir, char *name, size_t size)
{
	struct dirent	*de;
	DIR		*d;
	int		 n = 0;

	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (n++ == 0 && name != NULL)
			msd_strlcpy(name, de->d_name, size);
	}
	closedir(d);
	return n;
}

static void
cleanup(void)
{
	if (root[0] != '\0')
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------ the ABI */

#define STR(x)		#x
#define XSTR(x)		STR(x)
#define HOST_ABI	XSTR(MSD_ABI_MAJOR) "." XSTR(MSD_ABI_MINOR)

static void
test_abi_refusals(void)
{
	struct module	*m;
	const char	*log;

	capture_start();
	m = module_load_file(TESTMOD("abi2"), MSD_KIND_MDA, "maildir");
	log = capture_end();
	ok(m == NULL, "a module built for ABI 2.0 is refused");
	ok(strstr(log, "module " TESTMOD("abi2") ": built for ABI 2.0, "
	    "this host is " HOST_ABI) != NULL && count_lines(log) == 1,
	    "one log line names the file and both versions");
	if (m != NULL || count_lines(log) != 1)
		fprintf(stderr, "# log: %s", log);

	capture_start();
	m = module_load_file(TESTMOD("badmagic"), MSD_KIND_MDA, "maildir");
	log = capture_end();
	ok(m == NULL, "a module with a bad magic is refused");
	ok(strstr(log, "module " TESTMOD("badmagic") ": bad magic 0x0badcafe, "
	    "not a modsmtpd module") != NULL && count_lines(log) == 1,
	    "bad magic is one log line naming the file");
}

static void
test_abi_oldminor(void)
{
	const struct msd_mda_ops	*ops;
	struct msd_result		 res;
	struct module			*m;

	memset(&res, 0, sizeof(res));
	m = module_load_file(TESTMOD("oldminor"), MSD_KIND_MDA, "maildir");
	ok(m != NULL, "a module built for the older minor 1.0 loads");
	if (m == NULL)
		return;
	ok(m->desc.abi_minor == 0 && m->desc.size ==
	    offsetof(struct msd_module, description),
	    "it declares 1.0 and the 1.0 descriptor size");
	ok(m->desc.description == NULL, "its 1.1 description reads as NULL");
	ok(m->host != NULL && m->host->size == sizeof(struct msd_host) &&
	    m->host->abi_major == MSD_ABI_MAJOR &&
	    m->host->abi_minor == MSD_ABI_MINOR, "host services are 1.1");
	ops = module_ops(m, sizeof(*ops));
	ok(ops != NULL && ops->deliver != NULL &&
	    ops->deliver(m->host, -1, NULL, &res) == MSD_TEMPFAIL &&
	    res.failed && strcmp(res.error, "abi test module: no delivery") == 0,
	    "its ops run and report through result_error");
	ok(module_ops(m, sizeof(*ops) + 8) == NULL,
	    "module_ops refuses a size larger than the copy");
	ok(module_load_file(TESTMOD("oldminor"), MSD_KIND_MDA, "maildir") == m,
	    "loading the same file again gives the same module");
	result_reset(&res);
}

static void
test_file_checks(void)
{
	char		 path[PATH_MAX];
	struct module	*m;
	const char	*log;

	if (geteuid() != 0) {
		skip("ownership checks apply only when running as root");
		return;
	}
	mkpath(path, sizeof(path), "%s/gw", root);
	if (mkdir(path, 0755) == -1)
		fatal("mkdir %s", path);
	mkpath(path, sizeof(path), "%s/gw/maildir.so", root);
	if (copy_file(TESTMOD("oldminor"), path, 0664) == -1)
		fatal("copy %s", path);
	capture_start();
	m = module_load_file(path, MSD_KIND_MDA, "maildir");
	log = capture_end();
	ok(m == NULL && strstr(log, path) != NULL &&
	    strstr(log, "writable by group or others") != NULL,
	    "a group-writable module file is refused as root");
}

static void
test_kind_and_name(void)
{
	struct module	*m;
	const char	*log;

	capture_start();
	m = module_load_file(FS_SO, MSD_KIND_MDA, "fs");
	log = capture_end();
	ok(m == NULL && strstr(log, "is a queue module, expected mda") != NULL,
	    "a module of another kind is refused");
	capture_start();
	m = module_load_file(FS_SO, MSD_KIND_QUEUE, "other");
	log = capture_end();
	ok(m == NULL && strstr(log, "is named \"fs\", expected \"other\"") !=
	    NULL, "a module of another name is refused");
}

/* --------------------------------------------------------- search path */

static struct module *fs_mod, *maildir_mod;

static void
test_search(void)
{
	char		 flat[PATH_MAX], path[PATH_MAX];
	struct module	*m;
	const char	*log;

	setenv("MODSMTPD_MODULE_PATH", TOP_BUILDDIR "/modules", 1);
	module_init(NULL);
	fs_mod = module_load(MSD_KIND_QUEUE, "fs");
	ok(fs_mod != NULL && strcmp(fs_mod->path, FS_SO) == 0,
	    "fs loads from the build tree through MODSMTPD_MODULE_PATH");
	ok(fs_mod != NULL && fs_mod->desc.description != NULL &&
	    fs_mod->desc.abi_minor == MSD_ABI_MINOR,
	    "fs is a current-minor module");
	maildir_mod = module_load(MSD_KIND_MDA, "maildir");
	ok(maildir_mod != NULL && strcmp(maildir_mod->path, MAILDIR_SO) == 0,
	    "maildir loads from the build tree");

	capture_start();
	m = module_load(MSD_KIND_MDA, "nosuch");
	log = capture_end();
	ok(m == NULL && strstr(log, "module mda \"nosuch\" not found in "
	    TOP_BUILDDIR "/modules:" MODULEDIR) != NULL &&
	    count_lines(log) == 1,
	    "a missing module is one line naming the directories searched");
	capture_start();
	m = module_load(MSD_KIND_MDA, "../fs");
	log = capture_end();
	ok(m == NULL && strstr(log, "invalid") != NULL,
	    "a name with a slash is refused");

	/* module-path comes first and may be a flat directory. */
	mkpath(flat, sizeof(flat), "%s/flat", root);
	mkpath(path, sizeof(path), "%s/maildir.so", flat);
	if (mkdir(flat, 0755) == -1 ||
	    copy_file(TESTMOD("oldminor"), path, 0755) == -1)
		fatal("copy %s", path);
	module_init(flat);
	log_verbose = 1;
	capture_start();
	m = module_load(MSD_KIND_MDA, "maildir");
	log = capture_end();
	log_verbose = 0;
	ok(m != NULL && strcmp(m->path, path) == 0 && m->desc.abi_minor == 0,
	    "module-path wins over MODSMTPD_MODULE_PATH, flat layout works");
	ok(strstr(log, MAILDIR_SO " shadowed by ") != NULL,
	    "the shadowed module is logged at debug level");
	ok(strcmp(module_host()->config_get("module-path"), flat) == 0,
	    "config_get(module-path) answers the configured path");
	module_init(NULL);
}

/* -------------------------------------------------------- host services */

static int	 fired, watched;

static void
timer_cb(void *arg)
{
	fired++;
}

static void
io_cb(int fd, uint32_t events, void *arg)
{
	char	 c;

	if ((events & MSD_EV_READ) && read(fd, &c, 1) == 1)
		watched++;
	module_host()->fd_unwatch(arg ? *(msd_io **)arg : NULL);
}

static void
test_host(void)
{
	const struct msd_host	*h = module_host();
	struct msd_envelope	 me;
	struct envelope		 e;
	struct msd_result	 res;
	msd_timer		*t;
	msd_io			*io;
	const char		*log;
	int			 p[2];

	memset(&res, 0, sizeof(res));
	h->result_set(&res, "abc", 3);
	ok(res.len == 3 && memcmp(res.value, "abc", 4) == 0,
	    "result_set copies and terminates the value");
	h->result_set(&res, "xy", 2);
	ok(res.len == 2 && strcmp(res.value, "xy") == 0 && !res.failed,
	    "result_set replaces an earlier value");
	h->result_error(&res, "line\none");
	ok(res.failed && strcmp(res.error, "line one") == 0,
	    "result_error records a one-line reason");
	result_reset(&res);
	ok(res.value == NULL && !res.failed, "result_reset clears");

	memset(&e, 0, sizeof(e));
	e.id = 0x0123456789abcdefULL;
	e.msgid = 0x01234567;
	msd_strlcpy(e.rcpt, "bob@example.org", sizeof(e.rcpt));
	memset(&me, 0, sizeof(me));
	me.ev = &e;
	me.user = "bob";
	me.junk = 1;
	ok(strcmp(h->env_get(&me, MSD_ENV_ID), "0123456789abcdef") == 0 &&
	    strcmp(h->env_get(&me, MSD_ENV_MSGID), "01234567") == 0 &&
	    strcmp(h->env_get(&me, MSD_ENV_RCPT), "bob@example.org") == 0 &&
	    strcmp(h->env_get(&me, MSD_ENV_USER), "bob") == 0 &&
	    strcmp(h->env_get(&me, MSD_ENV_MDA_ARG), "") == 0 &&
	    strcmp(h->env_get(&me, MSD_ENV_MDA_JUNK), "1") == 0 &&
	    h->env_get(&me, 999) == NULL, "env_get answers envelope fields");

	msd_strlcpy(env.spool, "/var/spool/test", sizeof(env.spool));
	ok(strcmp(h->config_get("spool"), "/var/spool/test") == 0 &&
	    h->config_get("hostname") == NULL && h->config_get("x") == NULL,
	    "config_get answers from env, NULL when unset");
	env.spool[0] = '\0';
	ok(h->query("anything", 1) == NULL, "query has no interfaces yet");

	capture_start();
	fs_mod->host->log(MSD_LOG_WARNING, "hello %d", 42);
	fs_mod->host->log(MSD_LOG_DEBUG, "not shown without -v");
	log = capture_end();
	ok(strcmp(log, "module fs: hello 42\n") == 0,
	    "log lines carry the module's name");

	ok(h->timer_add(1, timer_cb, NULL) == NULL,
	    "timer_add without an event base fails cleanly");
	if ((env.evbase = event_base_new()) == NULL || pipe(p) == -1)
		fatal("event_base_new");
	ok(h->timer_add(1, timer_cb, NULL) != NULL, "timer_add");
	t = h->timer_add(60000, timer_cb, NULL);
	h->timer_del(t);
	io = h->fd_watch(p[0], MSD_EV_READ, io_cb, &io);
	ok(io != NULL && write(p[1], "x", 1) == 1, "fd_watch");
	event_base_dispatch(env.evbase);
	ok(fired == 1 && watched == 1,
	    "timers and watches fire on the host loop; timer_del cancels");
	close(p[0]);
	close(p[1]);
	event_base_free(env.evbase);
	env.evbase = NULL;
}

/* ------------------------------------------------------------ fs queue */

static const char	 msgtext[] = "Subject: test\n\nhello\n";
static const char	 evtext[] = "{\"rcpt\":\"bob@example.org\"}";

static int
walk_find(const struct msd_queue_ops *q, void *inst, uint64_t want,
    const char *text)
{
	struct msd_result	 res;
	void			*cookie = NULL;
	uint64_t		 id;
	int			 found = 0, n = 0;

	memset(&res, 0, sizeof(res));
	while (q->envelope_walk(inst, &cookie, &id, &res) == MSD_OK) {
		n++;
		if (id == want && res.len == strlen(text) &&
		    memcmp(res.value, text, res.len) == 0)
			found = 1;
	}
	result_reset(&res);
	return cookie == NULL && n == 1 && found;
}

static int
fs_paths(const char *spool, uint64_t evpid, int *tmp, int *committed)
{
	char		 path[PATH_MAX];
	struct stat	 st;

	mkpath(path, sizeof(path), "%s/tmp/%016llx", spool,
	    (unsigned long long)evpid);
	*tmp = stat(path, &st) == 0;
	mkpath(path, sizeof(path), "%s/envelope/%016llx", spool,
	    (unsigned long long)evpid);
	*committed = stat(path, &st) == 0;
	return 0;
}

static void
test_fs_leftovers(const struct msd_queue_ops *q, const char *spool)
{
	void		*inst = NULL;
	uint32_t	 msgid;
	uint64_t	 evpid;
	int		 fd, tmp, committed;
	char		 path[PATH_MAX];

	if (q->open(fs_mod->host, spool, NULL, &inst) != MSD_OK)
		return;
	if (q->message_create(inst, &msgid, &fd) == MSD_OK)
		close(fd);
	q->envelope_create(inst, msgid, evtext, strlen(evtext), &evpid);
	q->close(inst);
	inst = NULL;
	ok(q->open(fs_mod->host, spool, NULL, &inst) == MSD_OK, "fs reopens");
	fs_paths(spool, evpid, &tmp, &committed);
	mkpath(path, sizeof(path), "%s/tmp", spool);
	ok(!tmp && !committed && count_dir(path, NULL, 0) == 0,
	    "open removes envelopes left uncommitted in tmp/");
	ok(q->message_delete(inst, msgid) == MSD_OK &&
	    q->message_delete(inst, msgid) == MSD_NOTFOUND,
	    "message_delete, then not found");
	q->close(inst);
}

static void
test_fs_commit(const struct msd_queue_ops *q, void *inst, const char *spool,
    uint32_t *msgidp, uint64_t *evpidp)
{
	uint32_t	 msgid = 0;
	uint64_t	 evpid = 0;
	int		 fd = -1, tmp, committed;

	ok(q->message_create(inst, &msgid, &fd) == MSD_OK && fd >= 0 &&
	    msgid != 0, "message_create gives an id and a descriptor");
	ok(write(fd, msgtext, strlen(msgtext)) == (ssize_t)strlen(msgtext) &&
	    close(fd) == 0, "the host writes the message");
	ok(q->envelope_create(inst, msgid, evtext, strlen(evtext), &evpid) ==
	    MSD_OK && evpid >> 32 == msgid, "envelope_create: msgid<<32|rnd");
	fs_paths(spool, evpid, &tmp, &committed);
	ok(tmp && !committed, "the envelope is staged in tmp/");
	ok(q->message_commit(inst, msgid) == MSD_OK, "message_commit");
	fs_paths(spool, evpid, &tmp, &committed);
	ok(tmp && !committed, "a commit waits for the round's flush");
	ok(q->flush(inst) == MSD_OK, "flush after the commit");
	fs_paths(spool, evpid, &tmp, &committed);
	ok(!tmp && committed, "flush moved the envelope to envelope/");
	*msgidp = msgid;
	*evpidp = evpid;
}

static void
test_fs_read(const struct msd_queue_ops *q, void *inst, uint32_t msgid,
    uint64_t evpid)
{
	static const char	 upd[] = "{\"retry\":1}";
	struct msd_result	 res;
	void			*cookie = NULL;
	uint32_t		 id = 0;
	char			 buf[256];
	ssize_t			 n;
	int			 fd;

	memset(&res, 0, sizeof(res));
	ok(walk_find(q, inst, evpid, evtext), "envelope_walk finds it");
	ok(q->envelope_load(inst, evpid, &res) == MSD_OK &&
	    res.len == strlen(evtext) && memcmp(res.value, evtext, res.len) == 0,
	    "envelope_load gives the bytes back");
	fd = q->message_fd_r(inst, msgid);
	n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
	ok(n == (ssize_t)strlen(msgtext) && memcmp(buf, msgtext, n) == 0,
	    "message_fd_r reads the message back");
	if (fd >= 0)
		close(fd);
	ok(q->message_walk(inst, &cookie, &id) == MSD_OK && id == msgid &&
	    q->message_walk(inst, &cookie, &id) == MSD_NOTFOUND &&
	    cookie == NULL, "message_walk finds it, then ends");
	ok(q->envelope_update(inst, evpid, upd, strlen(upd)) == MSD_OK &&
	    q->envelope_load(inst, evpid, &res) == MSD_OK &&
	    strcmp(res.value, upd) == 0, "envelope_update replaces the bytes");
	result_reset(&res);
}

static void
test_fs(void)
{
	const struct msd_queue_ops	*q;
	struct msd_result		 res;
	char				 spool[PATH_MAX];
	void				*inst = NULL, *cookie = NULL;
	uint32_t			 msgid = 0;
	uint64_t			 evpid = 0, id;

	if (fs_mod == NULL || (q = module_ops(fs_mod, sizeof(*q))) == NULL) {
		ok(0, "fs module and ops");
		return;
	}
	memset(&res, 0, sizeof(res));
	mkpath(spool, sizeof(spool), "%s/spool/queue", root);
	ok(q->open(fs_mod->host, spool, NULL, &inst) == MSD_OK,
	    "fs open creates the spool");
	if (inst == NULL)
		return;
	ok(q->flush(inst) == MSD_OK, "flush with nothing pending");
	test_fs_commit(q, inst, spool, &msgid, &evpid);
	test_fs_read(q, inst, msgid, evpid);
	ok(q->envelope_delete(inst, evpid) == MSD_OK &&
	    q->envelope_load(inst, evpid, &res) == MSD_NOTFOUND &&
	    q->envelope_delete(inst, evpid) == MSD_NOTFOUND,
	    "envelope_delete, then not found");
	ok(q->envelope_walk(inst, &cookie, &id, &res) == MSD_NOTFOUND &&
	    cookie == NULL, "the walk is empty again");
	ok(q->message_delete(inst, msgid) == MSD_OK &&
	    q->message_fd_r(inst, msgid) == -1, "message_delete");
	ok(q->envelope_create(inst, msgid, "{}", 2, &evpid) == MSD_NOTFOUND,
	    "no envelope for a missing message");
	result_reset(&res);
	q->close(inst);
	test_fs_leftovers(q, spool);

	/* The same commit with the round synced file by file. */
	ok(q->open(fs_mod->host, spool, "sync=bogus", &inst) == MSD_TEMPFAIL,
	    "fs refuses an unknown option");
	ok(q->open(fs_mod->host, spool, "sync=files", &inst) == MSD_OK,
	    "fs open with sync=files");
	test_fs_commit(q, inst, spool, &msgid, &evpid);
	ok(q->envelope_delete(inst, evpid) == MSD_OK &&
	    q->message_delete(inst, msgid) == MSD_OK,
	    "sync=files: the committed envelope and message are removed");
	q->close(inst);
}

/* ------------------------------------------------------------- maildir */

static int
deliver(const char *text, size_t len, struct msd_envelope *me,
    struct msd_result *res)
{
	const struct msd_mda_ops	*ops;
	char				 path[PATH_MAX];
	int				 fd, r;

	if ((ops = module_ops(maildir_mod, sizeof(*ops))) == NULL)
		return -100;
	mkpath(path, sizeof(path), "%s/message", root);
	if (write_file(path, text, len, 0600) == -1 ||
	    (fd = open(path, O_RDONLY)) == -1)
		fatal("%s", path);
	result_reset(res);
	r = ops->deliver(maildir_mod->host, fd, me, res);
	close(fd);
	return r;
}

/* The one file in dir/new is byte-identical to text. */
static int
delivered(const char *dir, const char *text, size_t len)
{
	static char	 buf[512 * 1024];
	char		 path[PATH_MAX], name[NAME_MAX + 1];
	ssize_t		 n;

	mkpath(path, sizeof(path), "%s/new", dir);
	if (count_dir(path, name, sizeof(name)) != 1)
		return 0;
	mkpath(path, sizeof(path), "%s/new/%s", dir, name);
	n = read_file(path, buf, sizeof(buf));
	if (n != (ssize_t)len || memcmp(buf, text, len) != 0)
		return 0;
	/* Consumed, so the next check sees only the next delivery. */
	unlink(path);
	mkpath(path, sizeof(path), "%s/tmp", dir);
	return count_dir(path, NULL, 0) == 0;
}

static void
test_maildir(void)
{
	static const char	 spam[] = "Subject: buy\nX-SPAM:   YES\n\nbody\n";
	struct msd_envelope	 me;
	struct msd_result	 res;
	struct envelope		 e;
	char			 md[PATH_MAX], junk[PATH_MAX], path[PATH_MAX];
	char			*big;
	size_t			 biglen = 300 * 1024;

	if (maildir_mod == NULL) {
		ok(0, "maildir module");
		return;
	}
	memset(&res, 0, sizeof(res));
	memset(&e, 0, sizeof(e));
	memset(&me, 0, sizeof(me));
	mkpath(md, sizeof(md), "%s/home/bob/Mail/box", root);
	mkpath(junk, sizeof(junk), "%s/.Junk", md);
	me.ev = &e;
	me.user = "bob";
	me.homedir = root;
	me.mda_arg = md;

	ok(deliver(msgtext, strlen(msgtext), &me, &res) == MSD_OK &&
	    !res.failed, "maildir deliver returns OK");
	ok(delivered(md, msgtext, strlen(msgtext)),
	    "new/ holds a byte-identical copy, tmp/ is empty");
	mkpath(path, sizeof(path), "%s/cur", md);
	ok(count_dir(path, NULL, 0) == 0, "cur/ was created");

	ok(deliver(spam, strlen(spam), &me, &res) == MSD_OK &&
	    delivered(md, spam, strlen(spam)), "without junk, spam stays in new/");
	me.junk = 1;
	ok(deliver(spam, strlen(spam), &me, &res) == MSD_OK &&
	    delivered(junk, spam, strlen(spam)),
	    "with junk, X-Spam: yes goes to .Junk");
	ok(deliver(msgtext, strlen(msgtext), &me, &res) == MSD_OK &&
	    delivered(md, msgtext, strlen(msgtext)),
	    "with junk, a clean message stays in new/");

	big = xmalloc(biglen);
	memset(big, 'a', biglen);
	memcpy(big, "Subject: big\n\n", 14);
	big[biglen - 1] = '\n';
	ok(deliver(big, biglen, &me, &res) == MSD_OK &&
	    delivered(md, big, biglen), "a 300 KiB message is copied verbatim");
	free(big);

	/* A delivery repeated after a crash finds the first copy. */
	e.id = 0x1234567800abcdefULL;
	e.creation = 1700000000;
	ok(deliver(msgtext, strlen(msgtext), &me, &res) == MSD_OK &&
	    deliver(msgtext, strlen(msgtext), &me, &res) == MSD_OK &&
	    delivered(md, msgtext, strlen(msgtext)),
	    "the same envelope delivered twice leaves one copy");

	me.mda_arg = "";
	mkpath(path, sizeof(path), "%s/Maildir", root);
	ok(deliver(msgtext, strlen(msgtext), &me, &res) == MSD_OK &&
	    delivered(path, msgtext, strlen(msgtext)),
	    "an empty path means ~/Maildir");

	mkpath(path, sizeof(path), "%s/message/box", root);
	me.mda_arg = path;
	ok(deliver(msgtext, strlen(msgtext), &me, &res) == MSD_TEMPFAIL &&
	    res.failed && strstr(res.error, "cannot create") != NULL,
	    "an impossible path is a temporary failure with a reason");
	result_reset(&res);
}

/* The filter kind: ops copied and checked, open() parses its arguments. */
static void
test_filter_kind(void)
{
	const struct msd_filter_ops	*ops;
	struct msd_result		 res;
	struct module			*m;
	const char *const		 bad[] = { "phase", "helo", "match",
					    "src", "reject", "550 no" };
	const char *const		 good[] = { "phase", "rcpt-to", "match",
					    "!", "rcpt-to", "regex", "<t>", "junk" };
	void				*inst = NULL;

	memset(&res, 0, sizeof(res));
	m = module_load_file(BUILTIN_SO, MSD_KIND_FILTER, "builtin");
	ok(m != NULL && m->desc.abi_minor == 4, "the builtin filter module "
	    "loads as a 1.4 filter");
	if (m == NULL || (ops = module_ops(m, sizeof(*ops))) == NULL) {
		ok(0, "no filter ops");
		return;
	}
	ok(ops->open != NULL && ops->request != NULL && ops->report != NULL &&
	    ops->data_line == NULL, "its ops table is copied as declared");
	ok(m->host->filter_register != NULL && m->host->table_match != NULL,
	    "the host has the 1.4 filter services");
	ok(ops->open(m->host, NULL, "f", 6, bad, &inst, &res) != MSD_OK &&
	    res.failed && strcmp(res.error, "condition src needs a <table>") ==
	    0, "bad arguments: refused with the reason");
	result_reset(&res);
	ok(ops->open(m->host, NULL, "f", 8, good, &inst, &res) == MSD_OK &&
	    inst != NULL, "good arguments open an instance (no services here:"
	    " registering is a no-op)");
	if (inst != NULL)
		ops->close(inst);
	ok(m->host->table_match("t", MSD_TS_STRING, "x", NULL, NULL) ==
	    MSD_TEMPFAIL, "table_match without a configuration: TEMPFAIL");
	result_reset(&res);
}

int
main(void)
{
	log_init(1, 0);
	mkpath(root, sizeof(root), "/tmp/test-module.XXXXXX");
	if (mkdtemp(root) == NULL)
		fatal("mkdtemp");
	umask(022);

	test_abi_refusals();
	test_abi_oldminor();
	test_file_checks();
	test_kind_and_name();
	test_search();
	test_host();
	test_fs();
	test_maildir();
	test_filter_kind();

	cleanup();
	return tap_done();
}
