/*
 * test-tabledb.c - the db table backend and makemap, end to end: maps
 * built by running the built makemap on text files, then loaded through
 * the db module as the host loads it; makemap's refusals (the line named,
 * the old map untouched); -U dumps read back; records makemap would never
 * write, made here with libdb directly.
 *
 * Prints TAP-style "ok N - what" lines; exits non-zero on any failure.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <db_185.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdarg.h>
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

#define DB_SO		TOP_BUILDDIR "/modules/table/db/.libs/db.so"
#define MAKEMAP		TOP_BUILDDIR "/makemap"
#define MAX_ENTRIES	32
#define OUT_MAX		8192
#define ALL_SERVICES	0x0fffU		/* MSD_TS_ALIAS ... MSD_TS_REGEX */

extern char	**environ;

static char	 root[PATH_MAX];		/* scratch directory */
static const struct msd_table_ops *ops;
static struct module *mod;

/* ------------------------------------------------------------- helpers */

/* root/name, in a static buffer of its own per call site's slot. */
static const char *
at(int slot, const char *name)
{
	static char	 paths[8][PATH_MAX];

	mkpath(paths[slot], sizeof(paths[slot]), "%s/%s", root, name);
	return paths[slot];
}

static void
write_bytes(const char *path, const char *text, size_t len, mode_t mode)
{
	int	 fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)) == -1)
		fatal("open %s", path);
	if (write(fd, text, len) != (ssize_t)len)
		fatal("write %s", path);
	if (close(fd) == -1 || chmod(path, mode) == -1)
		fatal("close %s", path);
}

static void
write_text(const char *path, const char *text, mode_t mode)
{
	write_bytes(path, text, strlen(text), mode);
}

/* Reads at most size-1 bytes of path, NUL-terminated; -1 on error. */
static ssize_t
read_file(const char *path, char *buf, size_t size)
{
	ssize_t	 n;
	size_t	 len = 0;
	int	 fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return -1;
	while (len < size - 1 && (n = read(fd, buf + len,
	    size - 1 - len)) > 0)
		len += n;
	close(fd);
	buf[len] = '\0';
	return (ssize_t)len;
}

/* Whether root holds a file whose name starts with prefix. */
static int
leftover(const char *prefix)
{
	struct dirent	*de;
	DIR		*d;
	int		 found = 0;

	if ((d = opendir(root)) == NULL)
		return 1;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			found = 1;
	closedir(d);
	return found;
}

static void
cleanup(void)
{
	if (root[0] != '\0')
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------ makemap */

struct run {
	int	 status;		/* exit status, -1 if it did not exit */
	char	 out[OUT_MAX];
	char	 err[OUT_MAX];
};

/*
 * Runs makemap with args (NULL-terminated) in root, stdin from in (or
 * /dev/null), stdout and stderr captured.
 */
static void
makemap(struct run *r, const char *in, ...)
{
	posix_spawn_file_actions_t	 fa;
	const char			*argv[16];
	va_list				 ap;
	pid_t				 pid;
	int				 argc = 0, status;

	argv[argc++] = "makemap";
	va_start(ap, in);
	while (argc < 15 && (argv[argc] = va_arg(ap, const char *)) != NULL)
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, in != NULL ? in :
	    "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, at(6, "run.out"),
	    O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, at(7, "run.err"),
	    O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (chdir(root) == -1)
		fatal("chdir %s", root);
	if (posix_spawn(&pid, MAKEMAP, &fa, NULL, (char *const *)argv,
	    environ) != 0)
		fatal("posix_spawn %s", MAKEMAP);
	posix_spawn_file_actions_destroy(&fa);
	if (waitpid(pid, &status, 0) == -1)
		fatal("waitpid");
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	if (read_file(at(6, "run.out"), r->out, sizeof(r->out)) == -1 ||
	    read_file(at(7, "run.err"), r->err, sizeof(r->err)) == -1)
		fatal("reading makemap's output");
	unlink(at(6, "run.out"));
	unlink(at(7, "run.err"));
}

/* makemap succeeded: exit 0, nothing printed. */
static int
quiet_ok(const struct run *r)
{
	if (r->status != 0 || r->out[0] != '\0' || r->err[0] != '\0')
		printf("# makemap: status %d, stdout \"%s\", stderr \"%s\"\n",
		    r->status, r->out, r->err);
	return r->status == 0 && r->out[0] == '\0' && r->err[0] == '\0';
}

/* Failed with status 1 and a message holding what. */
static int
failed_with(const struct run *r, const char *what)
{
	if (r->status != 1 || strstr(r->err, what) == NULL)
		printf("# makemap: status %d, stderr \"%s\" (wanted \"%s\")\n",
		    r->status, r->err, what);
	return r->status == 1 && strstr(r->err, what) != NULL;
}

/* ------------------------------------------------------------- loading */

struct entry {
	char	*key;
	char	*value;			/* NULL: a list entry */
};

struct loaded {
	struct entry	 e[MAX_ENTRIES];
	size_t		 n;
	int		 overflow;
	int		 stop_after;	/* > 0: entry() returns -1 then */
	int		 bad_line;	/* a line other than 0 was given */
};

static int
collect(void *arg, const char *key, const char *value, uint32_t line)
{
	struct loaded	*l = arg;

	if (line != 0)
		l->bad_line = 1;
	if (l->n == MAX_ENTRIES) {
		l->overflow = 1;
		return -1;
	}
	l->e[l->n].key = xstrdup(key);
	l->e[l->n].value = value != NULL ? xstrdup(value) : NULL;
	l->n++;
	return l->stop_after > 0 && (int)l->n >= l->stop_after ? -1 : 0;
}

static void
loaded_free(struct loaded *l)
{
	size_t	 i;

	for (i = 0; i < l->n; i++) {
		free(l->e[i].key);
		free(l->e[i].value);
	}
	memset(l, 0, sizeof(*l));
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->key,
	    ((const struct entry *)b)->key);
}

/* open + load + close of path; the result code, entries sorted by key. */
static int
load(const char *path, struct loaded *l, struct msd_result *res)
{
	void	*inst = NULL;
	int	 r;

	memset(res, 0, sizeof(*res));
	if ((r = ops->open(mod->host, "t", path, &inst)) != MSD_OK)
		return r;
	r = ops->load(inst, collect, l, res);
	ops->close(inst);
	qsort(l->e, l->n, sizeof(l->e[0]), entry_cmp);
	return r;
}

/*
 * The entries are exactly want: "key=value" or "key" for a list entry,
 * sorted by key.  Prints the first difference.
 */
static int
same_entries(const struct loaded *l, const char *const *want)
{
	char	 have[2048];
	size_t	 i;

	for (i = 0; want[i] != NULL; i++) {
		if (i >= l->n) {
			printf("# missing \"%s\"\n", want[i]);
			return 0;
		}
		if (l->e[i].value != NULL)
			mkpath(have, sizeof(have), "%s=%s", l->e[i].key,
			    l->e[i].value);
		else
			mkpath(have, sizeof(have), "%s", l->e[i].key);
		if (strcmp(have, want[i]) != 0) {
			printf("# entry %zu is \"%s\", wanted \"%s\"\n", i,
			    have, want[i]);
			return 0;
		}
	}
	if (i != l->n || l->overflow || l->bad_line) {
		printf("# %zu entries, wanted %zu%s%s\n", l->n, i,
		    l->overflow ? " (overflow)" : "",
		    l->bad_line ? " (a line number given)" : "");
		return 0;
	}
	return 1;
}

/* Builds text with makemap (extra option or NULL) and loads the map. */
static int
build_and_load(const char *name, const char *text, const char *opt,
    struct loaded *l, struct msd_result *res)
{
	struct run	 r;
	char		 src[PATH_MAX], db[PATH_MAX];

	mkpath(src, sizeof(src), "%s/%s", root, name);
	mkpath(db, sizeof(db), "%s.db", src);
	write_text(src, text, 0644);
	if (opt != NULL)
		makemap(&r, NULL, "-t", opt, src, NULL);
	else
		makemap(&r, NULL, src, NULL);
	if (!quiet_ok(&r))
		return -1;
	return load(db, l, res);
}

/* --------------------------------------------------------- the module */

static void
test_descriptor(void)
{
	void	*inst = (void *)1;

	mod = module_load_file(DB_SO, MSD_KIND_TABLE, "db");
	ok(mod != NULL, "db.so loads as the table module \"db\"");
	if (mod == NULL) {
		cleanup();
		exit(tap_done());
	}
	ok(mod->desc.services == ALL_SERVICES,
	    "it declares every table service (0x%x)", mod->desc.services);
	ops = module_ops(mod, sizeof(*ops));
	ok(ops != NULL && ops->load != NULL && ops->lookup == NULL &&
	    ops->fetch == NULL && ops->update == NULL,
	    "it is load-style: load, no lookup, fetch or update");
	if (ops == NULL || ops->load == NULL) {
		cleanup();
		exit(tap_done());
	}
	ok(ops->open(mod->host, "t", "relative/aliases.db", &inst) ==
	    MSD_PERMFAIL && inst == NULL, "open refuses a relative path");
	ok(ops->open(mod->host, "t", "", &inst) == MSD_PERMFAIL,
	    "open refuses an empty configuration");
	ok(ops->open(mod->host, "t", at(0, "nothing-yet.db"), &inst) ==
	    MSD_OK && inst != NULL,
	    "open does not read the file: a missing one is seen at load");
	if (inst != NULL && inst != (void *)1)
		ops->close(inst);
}

static void
test_map(void)
{
	static const char *const want[] = {
		"[::1]=v6 host",
		"bar=qux, quux",
		"baz=a value with  spaces",
		"foo=Bar",
		"tab=tabbed",
		NULL
	};
	struct loaded		 l;
	struct msd_result	 res;
	int			 r;

	memset(&l, 0, sizeof(l));
	r = build_and_load("map", "# a comment\n\nFOO Bar\nbar: qux, quux\n"
	    "  baz:   a value with  spaces  \r\n[::1] v6 host\ntab\ttabbed\n",
	    NULL, &l, &res);
	ok(r == MSD_OK && same_entries(&l, want),
	    "a map: keys lowercased, values as written, [ipv6] keys, CRLF");
	loaded_free(&l);
	result_reset(&res);
}

static void
test_set(void)
{
	static const char *const want[] = {
		"*.example.net",
		"192.0.2.0/24",
		"a b",
		"example.org",
		NULL
	};
	struct loaded		 l;
	struct msd_result	 res;
	int			 r;

	memset(&l, 0, sizeof(l));
	r = build_and_load("set", "Example.ORG\n*.example.net\n# x\n"
	    "192.0.2.0/24\na b\n", "set", &l, &res);
	ok(r == MSD_OK && same_entries(&l, want),
	    "-t set: a list, every value NULL, whole lines as keys");
	loaded_free(&l);
	result_reset(&res);
}

static void
test_aliases(void)
{
	static const char *const want[] = {
		"postmaster=root",
		"root=bob, alice@example.org, /var/mail/archive, "
		    "\"|/usr/bin/filter -x\", :include:/etc/mail/staff",
		"staff=\\carol, error:550 5.1.1 gone, \"|cmd a,b\"",
		NULL
	};
	struct loaded		 l;
	struct msd_result	 res;
	int			 r;

	memset(&l, 0, sizeof(l));
	r = build_and_load("aliases", "postmaster: root\n"
	    "root: bob, alice@example.org, /var/mail/archive, "
	    "\"|/usr/bin/filter -x\", :include:/etc/mail/staff\n"
	    "staff: \\carol, error:550 5.1.1 gone, \"|cmd a,b\"\n",
	    "aliases", &l, &res);
	ok(r == MSD_OK && same_entries(&l, want),
	    "-t aliases: every kind of element accepted, values unchanged");
	loaded_free(&l);
	result_reset(&res);
}

/* The stored bytes of key (size bytes given) in path, or -1 if absent. */
static int
raw_get(const char *path, const char *key, size_t size, char *out,
    size_t outlen)
{
	DB	*db;
	DBT	 k, v;
	int	 r, n = -1;

	if ((db = dbopen(path, O_RDONLY, 0, DB_HASH, NULL)) == NULL)
		return -1;
	k.data = (void *)key;
	k.size = size;
	if ((r = db->get(db, &k, &v, 0)) == 0 && v.size <= outlen) {
		memcpy(out, v.data, v.size);
		n = (int)v.size;
	}
	db->close(db);
	return n;
}

/*
 * What OpenSMTPD's lookups rely on: the key looked up with its NUL, the
 * value stored with its NUL, lists holding "<set>".
 */
static void
test_record_format(void)
{
	char	 v[64];
	int	 n;

	n = raw_get(at(0, "map.db"), "foo", 4, v, sizeof(v));
	ok(n == 4 && memcmp(v, "Bar", 4) == 0,
	    "map.db: key \"foo\\0\" holds \"Bar\\0\"");
	ok(raw_get(at(0, "map.db"), "foo", 3, v, sizeof(v)) == -1 &&
	    raw_get(at(0, "map.db"), "FOO", 4, v, sizeof(v)) == -1,
	    "map.db: no key without its NUL, no key in upper case");
	n = raw_get(at(0, "set.db"), "example.org", 12, v, sizeof(v));
	ok(n == 6 && memcmp(v, "<set>", 6) == 0,
	    "set.db: key \"example.org\\0\" holds \"<set>\\0\"");
}

/* A db written here, record by record; sizes given, so no NUL added. */
static void
raw_db(const char *path, const char *const *recs, const size_t *sizes)
{
	DB	*db;
	DBT	 k, v;
	size_t	 i;

	unlink(path);
	if ((db = dbopen(path, O_RDWR | O_CREAT, 0644, DB_HASH, NULL)) == NULL)
		fatal("dbopen %s", path);
	for (i = 0; recs[i] != NULL; i += 2) {
		k.data = (void *)recs[i];
		k.size = sizes[i];
		v.data = (void *)recs[i + 1];
		v.size = sizes[i + 1];
		if (db->put(db, &k, &v, 0) != 0)
			fatal("put");
	}
	if (db->close(db) != 0)
		fatal("close %s", path);
}

static void
test_raw_records(void)
{
	static const char *const plain[] = { "nonul", "value", NULL };
	static const size_t plain_sz[] = { 5, 5 };
	static const char *const inside[] = { "ok", "v", "bad\0key", "v",
	    NULL };
	static const size_t inside_sz[] = { 3, 2, 8, 2 };
	static const char *const twonul[] = { "k", "v\0", NULL };
	static const size_t twonul_sz[] = { 2, 3 };
	static const char *const empty[] = { "k", "", NULL };
	static const size_t empty_sz[] = { 2, 1 };
	static const char *const nowant[] = { "nonul=value", NULL };
	struct loaded		 l;
	struct msd_result	 res;
	const char		*path = at(0, "raw.db");
	int			 r;

	memset(&l, 0, sizeof(l));
	raw_db(path, plain, plain_sz);
	r = load(path, &l, &res);
	ok(r == MSD_OK && same_entries(&l, nowant),
	    "records stored without their NUL are read");
	loaded_free(&l);
	result_reset(&res);

	raw_db(path, inside, inside_sz);
	r = load(path, &l, &res);
	ok(r == MSD_TEMPFAIL && res.failed &&
	    strncmp(res.error, path, strlen(path)) == 0 &&
	    strstr(res.error, "NUL") != NULL,
	    "a key with a NUL inside is refused, naming the file (%s)",
	    res.error);
	loaded_free(&l);
	result_reset(&res);

	raw_db(path, twonul, twonul_sz);
	r = load(path, &l, &res);
	ok(r == MSD_TEMPFAIL && strstr(res.error, "value of key \"k\"") !=
	    NULL && strstr(res.error, "NUL") != NULL,
	    "a value with two NULs is refused, naming its key (%s)",
	    res.error);
	loaded_free(&l);
	result_reset(&res);

	raw_db(path, empty, empty_sz);
	r = load(path, &l, &res);
	ok(r == MSD_TEMPFAIL && strstr(res.error, "empty") != NULL,
	    "an empty value is refused (%s)", res.error);
	loaded_free(&l);
	result_reset(&res);
}

static void
test_load_errors(void)
{
	struct loaded		 l;
	struct msd_result	 res;
	const char		*path;
	int			 r;

	memset(&l, 0, sizeof(l));
	path = at(0, "missing.db");
	r = load(path, &l, &res);
	ok(r == MSD_TEMPFAIL && res.failed && strstr(res.error, path) ==
	    res.error && strstr(res.error, strerror(ENOENT)) != NULL,
	    "a missing file is a temporary failure (%s)", res.error);
	result_reset(&res);

	path = at(0, "text.db");
	write_text(path, "foo bar\n", 0644);
	r = load(path, &l, &res);
	ok(r == MSD_TEMPFAIL && strstr(res.error, path) == res.error &&
	    strstr(res.error, "not a Berkeley DB hash file") != NULL,
	    "a text file is not a db (%s)", res.error);
	result_reset(&res);

	path = at(0, "adir.db");
	if (mkdir(path, 0755) == -1)
		fatal("mkdir %s", path);
	r = load(path, &l, &res);
	ok(r == MSD_TEMPFAIL && strstr(res.error, "not a regular file") !=
	    NULL, "a directory is refused (%s)", res.error);
	result_reset(&res);
	ok(l.n == 0, "no entry was handed over on any failure");

	l.stop_after = 1;
	r = build_and_load("stop", "a 1\nb 2\nc 3\n", NULL, &l, &res);
	ok(r == MSD_TEMPFAIL && l.n == 1,
	    "entry() returning -1 stops the walk with a failure");
	loaded_free(&l);
	result_reset(&res);
}

/* A rebuilt map is what the next load sees. */
static void
test_reload(void)
{
	static const char *const want1[] = { "k=one", NULL };
	static const char *const want2[] = { "k=two", "n=new", NULL };
	struct loaded		 l;
	struct msd_result	 res;
	struct run		 run;
	void			*inst = NULL;
	int			 r1, r2, same1, same2;

	memset(&l, 0, sizeof(l));
	write_text(at(0, "re"), "k one\n", 0644);
	makemap(&run, NULL, at(0, "re"), NULL);
	memset(&res, 0, sizeof(res));
	if (ops->open(mod->host, "t", at(1, "re.db"), &inst) != MSD_OK)
		fatalx("open re.db");
	r1 = ops->load(inst, collect, &l, &res);
	same1 = same_entries(&l, want1);
	loaded_free(&l);
	write_text(at(0, "re"), "k two\nn new\n", 0644);
	makemap(&run, NULL, at(0, "re"), NULL);
	r2 = ops->load(inst, collect, &l, &res);
	qsort(l.e, l.n, sizeof(l.e[0]), entry_cmp);
	same2 = same_entries(&l, want2);
	ops->close(inst);
	ok(r1 == MSD_OK && same1 && r2 == MSD_OK && same2,
	    "one instance, the map rebuilt: the next load has the new entries");
	loaded_free(&l);
	result_reset(&res);
}

/* ------------------------------------------------------------ makemap */

static void
test_refusals(void)
{
	char		 before[OUT_MAX], after[OUT_MAX];
	struct run	 r;
	struct stat	 sb;
	ssize_t		 n1, n2;

	write_text(at(0, "dup"), "a 1\nb 2\n", 0644);
	makemap(&r, NULL, at(0, "dup"), NULL);
	ok(quiet_ok(&r), "a first dup.db is built");
	n1 = read_file(at(0, "dup.db"), before, sizeof(before));

	write_text(at(0, "dup"), "a 1\nb 2\nA 3\n", 0644);
	makemap(&r, NULL, at(0, "dup"), NULL);
	ok(failed_with(&r, "dup:3: duplicate key \"a\""),
	    "a duplicate key (another case) fails, naming line 3");
	n2 = read_file(at(0, "dup.db"), after, sizeof(after));
	ok(n1 > 0 && n1 == n2 && memcmp(before, after, n1) == 0,
	    "the old dup.db is left as it was");
	ok(!leftover("dup.db."), "no temporary file is left behind");

	write_text(at(0, "bad"), "a 1\nlonely\nc 3\n", 0644);
	makemap(&r, NULL, at(0, "bad"), NULL);
	ok(failed_with(&r, "bad:2: key \"lonely\" has no value") &&
	    stat(at(0, "bad.db"), &sb) == -1 && errno == ENOENT,
	    "a key without a value in a map: line 2, no map written");

	write_text(at(0, "brk"), "a 1\n\n[::1 v\n", 0644);
	makemap(&r, NULL, at(0, "brk"), NULL);
	ok(failed_with(&r, "brk:3: no ']'"), "an unclosed '[': line 3");

	write_text(at(0, "lst"), "alpha\nbeta\n", 0644);
	makemap(&r, NULL, at(0, "lst"), NULL);
	ok(failed_with(&r, "lst:1: \"alpha\" has no value: a list needs -t "
	    "set"), "a list without -t set is refused");

	write_text(at(0, "mark"), "# @list\nalpha beta\n", 0644);
	makemap(&r, NULL, at(0, "mark"), NULL);
	ok(failed_with(&r, "mark:2: the file is a list"),
	    "a \"# @list\" file without -t set is refused");

	write_bytes(at(0, "nul"), "a 1\nb\0x 2\n", 10, 0644);
	makemap(&r, NULL, at(0, "nul"), NULL);
	ok(failed_with(&r, "nul:2: NUL byte"), "a NUL byte in line 2");
}

static void
test_alias_refusals(void)
{
	static const struct {
		const char	*text;
		const char	*what;
	} bad[] = {
		{ "a: bob\nb: bob, , carol\n", "al:2: alias \"b\": \"\"" },
		{ "a: bob\nb: x\nc: bo b\n", "al:3: alias \"c\": \"bo b\"" },
		{ "a: x@\n", "al:1: alias \"a\": \"x@\": not a valid" },
		{ "a: |\n", "al:1: alias \"a\": \"|\": an empty command" },
		{ "a: :include:etc/x\n", "al:1: alias \"a\": \":include:" },
		{ "a: error:250 ok\n", "al:1: alias \"a\": \"error:250 ok\"" },
		{ "a: \"|cmd, x\n", "al:1: alias \"a\": a '\"' is not closed" },
	};
	struct run	 r;
	size_t		 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_text(at(0, "al"), bad[i].text, 0644);
		makemap(&r, NULL, "-t", "aliases", at(0, "al"), NULL);
		ok(failed_with(&r, bad[i].what),
		    "-t aliases refuses: %s", bad[i].what);
	}
	makemap(&r, NULL, at(0, "al"), NULL);
	ok(quiet_ok(&r), "without -t aliases the values are not checked");
}

static int
line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of in, sorted: dumps come in the order of the hash. */
static void
sorted_lines(const char *in, char *out, size_t size)
{
	char	*copy = xstrdup(in), *lines[64], *p, *save = NULL;
	size_t	 n = 0, i;

	for (p = strtok_r(copy, "\n", &save); p != NULL && n < 64;
	    p = strtok_r(NULL, "\n", &save))
		lines[n++] = p;
	qsort(lines, n, sizeof(lines[0]), line_cmp);
	out[0] = '\0';
	for (i = 0; i < n; i++)
		if (msd_strlcat(out, lines[i], size) >= size ||
		    msd_strlcat(out, "\n", size) >= size)
			fatalx("sorted_lines: too long");
	free(copy);
}

static void
test_dump(void)
{
	static const char *const want_map[] = {
		"[::1]=v6 host", "bar=qux, quux", "baz=a value with  spaces",
		"foo=Bar", "tab=tabbed", NULL
	};
	char			 sorted[OUT_MAX];
	struct loaded		 l;
	struct msd_result	 res;
	struct run		 r;
	int			 rc;

	makemap(&r, NULL, "-U", at(0, "map.db"), NULL);
	sorted_lines(r.out, sorted, sizeof(sorted));
	ok(r.status == 0 && r.err[0] == '\0' && strcmp(sorted,
	    "[::1]\tv6 host\nbar\tqux, quux\nbaz\ta value with  spaces\n"
	    "foo\tBar\ntab\ttabbed\n") == 0,
	    "-U dumps a map as key<TAB>value lines");

	write_text(at(0, "map.dump"), r.out, 0644);
	makemap(&r, NULL, "-o", at(1, "map2.db"), at(0, "map.dump"), NULL);
	memset(&l, 0, sizeof(l));
	rc = quiet_ok(&r) ? load(at(1, "map2.db"), &l, &res) : MSD_TEMPFAIL;
	ok(rc == MSD_OK && same_entries(&l, want_map),
	    "the dump, built again with -o, holds the same entries");
	loaded_free(&l);
	result_reset(&res);

	makemap(&r, NULL, "-U", at(0, "set.db"), NULL);
	sorted_lines(r.out, sorted, sizeof(sorted));
	ok(r.status == 0 && strcmp(sorted,
	    "*.example.net\n192.0.2.0/24\na b\nexample.org\n") == 0,
	    "-U dumps a list as keys alone");
	write_text(at(0, "set.dump"), r.out, 0644);
	makemap(&r, NULL, "-t", "set", at(0, "set.dump"), NULL);
	makemap(&r, NULL, "-U", at(0, "set.dump.db"), NULL);
	sorted_lines(r.out, sorted, sizeof(sorted));
	ok(r.status == 0 && strcmp(sorted,
	    "*.example.net\n192.0.2.0/24\na b\nexample.org\n") == 0,
	    "a list dumped and built again with -t set is the same list");

	makemap(&r, NULL, "-U", at(0, "map"), NULL);
	ok(failed_with(&r, "not a Berkeley DB hash file"),
	    "-U refuses a text file");
	makemap(&r, NULL, "-U", at(0, "no-such.db"), NULL);
	ok(failed_with(&r, strerror(ENOENT)), "-U on a missing file fails");
}

static void
test_forms(void)
{
	static const char *const want[] = { "k=v", "x=y z", NULL };
	struct loaded		 l;
	struct msd_result	 res;
	struct run		 r;
	struct stat		 sb;
	int			 rc;

	write_text(at(0, "in"), "k v\nX y z\n", 0644);
	makemap(&r, at(0, "in"), "hash", at(1, "sendmail"), NULL);
	memset(&l, 0, sizeof(l));
	rc = quiet_ok(&r) ? load(at(1, "sendmail.db"), &l, &res) :
	    MSD_TEMPFAIL;
	ok(rc == MSD_OK && same_entries(&l, want),
	    "sendmail's form: makemap hash NAME < file writes NAME.db");
	loaded_free(&l);
	result_reset(&res);

	makemap(&r, at(0, "in"), "hash", at(1, "named.db"), NULL);
	ok(quiet_ok(&r) && stat(at(1, "named.db"), &sb) == 0 &&
	    stat(at(1, "named.db.db"), &sb) == -1,
	    "a NAME ending in .db is used as it is");

	write_text(at(0, "secret"), "user hash\n", 0640);
	makemap(&r, NULL, at(0, "secret"), NULL);
	rc = quiet_ok(&r) && stat(at(0, "secret.db"), &sb) == 0;
	ok(rc && (sb.st_mode & 0777) == 0640 && sb.st_uid == getuid(),
	    "the map takes the source's mode (0%o)", rc ? sb.st_mode & 0777 :
	    0);

	makemap(&r, NULL, "-d", "btree", at(0, "in"), NULL);
	ok(failed_with(&r, "btree") && stat(at(0, "in.db"), &sb) == -1,
	    "-d btree is refused with a reason");
	makemap(&r, NULL, "-t", "nope", at(0, "in"), NULL);
	ok(failed_with(&r, "unsupported map type"), "an unknown -t fails");
	makemap(&r, NULL, "-o", at(0, "in"), at(0, "in"), NULL);
	ok(failed_with(&r, "would replace its source") &&
	    read_file(at(0, "in"), r.out, sizeof(r.out)) == 10,
	    "-o naming the source is refused and the source kept");
	makemap(&r, NULL, NULL);
	ok(failed_with(&r, "usage:"), "no file: usage");

	write_text(at(0, "empty"), "# nothing\n", 0644);
	makemap(&r, NULL, at(0, "empty"), NULL);
	memset(&l, 0, sizeof(l));
	rc = quiet_ok(&r) ? load(at(0, "empty.db"), &l, &res) : MSD_TEMPFAIL;
	ok(rc == MSD_OK && l.n == 0, "an empty source gives an empty map");
	loaded_free(&l);
	result_reset(&res);
}

int
main(void)
{
	log_init(1, 0);
	mkpath(root, sizeof(root), "/tmp/test-tabledb.XXXXXX");
	if (mkdtemp(root) == NULL)
		fatal("mkdtemp");
	umask(022);

	test_descriptor();
	test_map();
	test_set();
	test_aliases();
	test_record_format();
	test_raw_records();
	test_load_errors();
	test_reload();
	test_refusals();
	test_alias_refusals();
	test_dump();
	test_forms();

	cleanup();
	return tap_done();
}
