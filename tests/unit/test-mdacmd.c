/*
 * test-mdacmd.c - the `mda` delivery method: the command gets the whole
 * message on stdin, a clean environment, no stray descriptor or signal
 * setting, a session of its own; its exit status and the last line of its
 * output become the result.
 *
 * Prints TAP-style "ok N - what" lines; exits non-zero on any failure.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

#define MDA_SO		TOP_BUILDDIR "/modules/mda/mda/.libs/mda.so"
#define FILEBUF		(64 * 1024)

static const char	 msgtext[] = "From: alice@example.com\n"
			    "Subject: test\n\nhello\n.\nbye\n";

static char			 root[PATH_MAX];	/* scratch dir */
static struct module		*mod;
static struct envelope		 e;
static struct msd_envelope	 me;
static struct msd_result	 res;
static char			 filebuf[FILEBUF];	/* read_file's */

/* ------------------------------------------------------------- helpers */

/* root/name into filebuf, NUL-terminated; -1 if missing or too large. */
static ssize_t
read_file(const char *name)
{
	char	 path[PATH_MAX];
	ssize_t	 n;
	size_t	 len = 0;
	int	 fd;

	mkpath(path, sizeof(path), "%s/%s", root, name);
	if ((fd = open(path, O_RDONLY)) == -1)
		return -1;
	while (len < sizeof(filebuf) - 1 &&
	    (n = read(fd, filebuf + len, sizeof(filebuf) - 1 - len)) > 0)
		len += n;
	close(fd);
	filebuf[len] = '\0';
	if (len == sizeof(filebuf) - 1)
		return -1;
	unlink(path);	/* so the next check sees only its own run */
	return (ssize_t)len;
}

static void
cleanup(void)
{
	if (root[0] != '\0')
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Runs the command (a format: "%s" gets root) on text, the descriptor
 * first moved to offset as if the worker had read part of it.
 */
static int __attribute__((format(printf, 4, 5)))
deliver(const char *text, size_t len, off_t offset, const char *fmt, ...)
{
	const struct msd_mda_ops	*ops;
	char				 path[PATH_MAX], cmd[1024];
	va_list				 ap;
	int				 fd, n, r;

	if (mod == NULL || (ops = module_ops(mod, sizeof(*ops))) == NULL)
		return -100;
	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		fatalx("command too long");
	mkpath(path, sizeof(path), "%s/message", root);
	if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    write(fd, text, len) != (ssize_t)len ||
	    lseek(fd, offset, SEEK_SET) != offset)
		fatal("%s", path);
	me.mda_arg = cmd;
	result_reset(&res);
	r = ops->deliver(mod->host, fd, &me, &res);
	close(fd);
	me.mda_arg = NULL;
	return r;
}

/* The value of NAME in env output, or NULL. */
static const char *
env_value(const char *envout, const char *name)
{
	static char	 value[1024];
	const char	*p = envout, *nl;
	size_t		 n = strlen(name), len;

	for (; *p != '\0'; p = nl + 1) {
		if ((nl = strchr(p, '\n')) == NULL)
			nl = p + strlen(p);
		if ((size_t)(nl - p) > n && strncmp(p, name, n) == 0 &&
		    p[n] == '=') {
			len = nl - p - n - 1;
			if (len >= sizeof(value))
				return NULL;
			memcpy(value, p + n + 1, len);
			value[len] = '\0';
			return value;
		}
		if (*nl == '\0')
			break;
	}
	return NULL;
}

static int
env_is(const char *envout, const char *name, const char *want)
{
	const char	*v = env_value(envout, name);

	if (v == NULL || strcmp(v, want) != 0) {
		printf("# %s is %s%s%s, want \"%s\"\n", name, v ? "\"" : "",
		    v ? v : "unset", v ? "\"" : "", want);
		return 0;
	}
	return 1;
}

/* Every line names one of the documented variables. */
static int
env_only_documented(const char *envout)
{
	static const char *const names[] = { "PATH", "HOME", "USER",
	    "LOGNAME", "SHELL", "SENDER", "RECIPIENT", "ORIGINAL_RECIPIENT",
	    "LOCAL", "DOMAIN", "EXTENSION",
	    "PWD" };	/* exported by sh itself, not by the module */
	const char	*p, *eq, *nl;
	size_t		 i, n;
	int		 good = 1;

	for (p = envout; *p != '\0'; p = nl + 1) {
		if ((nl = strchr(p, '\n')) == NULL || (eq = strchr(p, '=')) ==
		    NULL || eq > nl)
			return 0;
		n = eq - p;
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strlen(names[i]) == n && strncmp(p, names[i], n) ==
			    0)
				break;
		if (i == sizeof(names) / sizeof(names[0])) {
			printf("# unexpected variable %.*s\n", (int)n, p);
			good = 0;
		}
	}
	return good;
}

static int
error_is(const char *want)
{
	if (!res.failed || strcmp(res.error, want) != 0) {
		printf("# error \"%s\", want \"%s\"\n",
		    res.failed ? res.error : "(none)", want);
		return 0;
	}
	return 1;
}

static int64_t
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- tests */

static void
test_load(void)
{
	mod = module_load_file(MDA_SO, MSD_KIND_MDA, "mda");
	ok(mod != NULL, "mda.so loads as the mda method \"mda\"");
	ok(mod != NULL && mod->desc.description != NULL &&
	    strcmp(mod->desc.description, "pipe the message into a command") ==
	    0, "it describes itself");
}

static void
test_stdin(void)
{
	ok(deliver(msgtext, strlen(msgtext), 0, "cat > %s/out", root) ==
	    MSD_OK && !res.failed, "cat > FILE succeeds");
	ok(read_file("out") == (ssize_t)strlen(msgtext) &&
	    memcmp(filebuf, msgtext, strlen(msgtext)) == 0,
	    "the command reads exactly the message bytes");
	ok(deliver(msgtext, strlen(msgtext), 20, "cat > %s/out", root) ==
	    MSD_OK && read_file("out") == (ssize_t)strlen(msgtext) &&
	    memcmp(filebuf, msgtext, strlen(msgtext)) == 0,
	    "a descriptor already read into is delivered whole");
	ok(deliver(msgtext, strlen(msgtext), 0,
	    "exec >&- 2>&-; sleep 1; cat > %s/out", root) == MSD_OK &&
	    read_file("out") == (ssize_t)strlen(msgtext),
	    "a command that closes its output early is waited for");
}

static void
test_env(void)
{
	ssize_t	 n;

	setenv("MDACMD_CANARY", "leaked", 1);
	msd_strlcpy(e.sender, "alice@example.com", sizeof(e.sender));
	msd_strlcpy(e.rcpt, "Bob+Lists@Example.org", sizeof(e.rcpt));
	msd_strlcpy(e.dest, "bob+lists@example.org", sizeof(e.dest));
	ok(deliver(msgtext, strlen(msgtext), 0, "env > %s/env", root) ==
	    MSD_OK && (n = read_file("env")) > 0, "env > FILE succeeds");
	ok(env_value(filebuf, "MDACMD_CANARY") == NULL,
	    "the worker's own environment does not leak");
	ok(env_only_documented(filebuf), "no variable beyond the documented");
	ok(env_is(filebuf, "PATH", "/usr/bin:/bin:/usr/sbin:/sbin") &&
	    env_is(filebuf, "HOME", root) && env_is(filebuf, "USER", "bob") &&
	    env_is(filebuf, "LOGNAME", "bob") &&
	    env_is(filebuf, "SHELL", "/bin/sh"),
	    "PATH, HOME, USER, LOGNAME, SHELL");
	ok(env_is(filebuf, "SENDER", "alice@example.com") &&
	    env_is(filebuf, "RECIPIENT", "bob+lists@example.org") &&
	    env_is(filebuf, "ORIGINAL_RECIPIENT", "Bob+Lists@Example.org"),
	    "SENDER, RECIPIENT (dest), ORIGINAL_RECIPIENT (rcpt)");
	ok(env_is(filebuf, "LOCAL", "bob+lists") &&
	    env_is(filebuf, "DOMAIN", "example.org") &&
	    env_is(filebuf, "EXTENSION", "lists"),
	    "LOCAL, DOMAIN, EXTENSION from the dest address");

	e.sender[0] = '\0';
	msd_strlcpy(e.dest, "bob@example.org", sizeof(e.dest));
	ok(deliver(msgtext, strlen(msgtext), 0, "env > %s/env", root) ==
	    MSD_OK && read_file("env") > 0 &&
	    env_value(filebuf, "EXTENSION") == NULL &&
	    env_is(filebuf, "LOCAL", "bob") && env_is(filebuf, "SENDER", ""),
	    "no '+': no EXTENSION; <> gives an empty SENDER");

	msd_strlcpy(e.sender, "x\nINJECTED=1", sizeof(e.sender));
	ok(deliver(msgtext, strlen(msgtext), 0, "env > %s/env", root) ==
	    MSD_OK && read_file("env") > 0 &&
	    env_value(filebuf, "SENDER") == NULL &&
	    env_value(filebuf, "INJECTED") == NULL &&
	    env_is(filebuf, "RECIPIENT", "bob@example.org"),
	    "a value with a newline is left out, the others stay");
	unsetenv("MDACMD_CANARY");
	msd_strlcpy(e.sender, "alice@example.com", sizeof(e.sender));
}

static void
test_process(void)
{
	sigset_t	 usr1, old;
	long		 pid, sid;
	int		 extra;

	/* Not close-on-exec: only the module's closing keeps it out. */
	if ((extra = open("/dev/null", O_RDONLY)) == -1)
		fatal("/dev/null");
	ok(deliver(msgtext, strlen(msgtext), 0, "ls /proc/self/fd > %s/fds",
	    root) == MSD_OK && read_file("fds") > 0 &&
	    strcmp(filebuf, "0\n1\n2\n3\n") == 0,
	    "only 0, 1, 2 are open (3 is the directory ls reads)");
	if (strcmp(filebuf, "0\n1\n2\n3\n") != 0)
		printf("# descriptors: %s\n", filebuf);
	close(extra);

	/* The worker ignores SIGPIPE; block one more to see it undone. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);
	ok(deliver(msgtext, strlen(msgtext), 0, "grep -E '^Sig(Ign|Blk)' "
	    "/proc/self/status > %s/sig", root) == MSD_OK &&
	    read_file("sig") > 0 && strcmp(filebuf,
	    "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n") == 0,
	    "no signal is ignored or blocked in the command");
	sigprocmask(SIG_SETMASK, &old, NULL);

	ok(deliver(msgtext, strlen(msgtext), 0, "echo $$ $(cut -d' ' -f6 "
	    "/proc/$$/stat) > %s/sid", root) == MSD_OK &&
	    read_file("sid") > 0 &&
	    sscanf(filebuf, "%ld %ld", &pid, &sid) == 2 && pid == sid,
	    "the command leads a session of its own");
}

static void
test_status(void)
{
	ok(deliver(msgtext, strlen(msgtext), 0, "exit 75") == MSD_TEMPFAIL &&
	    error_is("command exited with status 75"),
	    "exit 75 (EX_TEMPFAIL) is a temporary failure");
	ok(deliver(msgtext, strlen(msgtext), 0, "exit 73") == MSD_TEMPFAIL,
	    "exit 73 (EX_CANTCREAT) is a temporary failure");
	ok(deliver(msgtext, strlen(msgtext), 0, "echo oops >&2; exit 1") ==
	    MSD_PERMFAIL && error_is("command exited with status 1: oops"),
	    "exit 1 is permanent, with the last line of stderr");
	ok(deliver(msgtext, strlen(msgtext), 0, "exit 67") == MSD_PERMFAIL &&
	    error_is("command exited with status 67"),
	    "exit 67 without output is permanent, no trailing colon");
	ok(deliver(msgtext, strlen(msgtext), 0, "echo first; echo '  last  ';"
	    " echo; echo ' '; printf '\\n\\n'; exit 1") == MSD_PERMFAIL &&
	    error_is("command exited with status 1: last"),
	    "the reason is the last non-empty line, trimmed");
	ok(deliver(msgtext, strlen(msgtext), 0, "kill -9 $$") ==
	    MSD_TEMPFAIL && error_is("command killed by signal 9"),
	    "a command killed by a signal is a temporary failure");
	ok(deliver(msgtext, strlen(msgtext), 0, "nosuchcommand-mdacmd") ==
	    MSD_PERMFAIL && res.failed && strstr(res.error, "status 127") !=
	    NULL && strstr(res.error, "not found") != NULL,
	    "a missing program is permanent, with the shell's complaint");
	ok(deliver(msgtext, strlen(msgtext), 0, "%s", "") == MSD_PERMFAIL &&
	    error_is("mda: empty command"), "an empty command is refused");
	ok(deliver(msgtext, strlen(msgtext), 0, " \t ") == MSD_PERMFAIL &&
	    error_is("mda: empty command"), "a blank command is refused");
}

static void
test_output(void)
{
	char	*big;
	size_t	 biglen = 4 * 1024 * 1024;

	/* About 1.3 MB of numbered lines: only the tail is kept. */
	ok(deliver(msgtext, strlen(msgtext), 0, "seq 1 200000; exit 2") ==
	    MSD_PERMFAIL && error_is("command exited with status 2: 200000"),
	    "after 1 MB of output the reason is the last line");
	ok(deliver(msgtext, strlen(msgtext), 0, "seq 1 200000 >&2; "
	    "printf 'no newline at the end'; exit 3") == MSD_PERMFAIL &&
	    error_is("command exited with status 3: no newline at the end"),
	    "a last line without a newline counts");

	big = xmalloc(biglen);
	memset(big, 'a', biglen);
	memcpy(big, "Subject: big\n\n", 14);
	big[biglen - 1] = '\n';
	ok(deliver(big, biglen, 0, "exit 0") == MSD_OK && !res.failed,
	    "a command that never reads a 4 MB message succeeds");
	ok(deliver(big, biglen, 0, "head -c 10 > /dev/null") == MSD_OK,
	    "a command that reads part of it succeeds");
	free(big);
}

/* A process left in the background must not hold up the delivery. */
static void
test_background(void)
{
	int64_t	 start;
	long	 pid = 0;
	int	 r;

	start = now_ms();
	r = deliver(msgtext, strlen(msgtext), 0,
	    "sleep 30 & echo $! > %s/bg; exit 0", root);
	ok(r == MSD_OK && now_ms() - start < 10000,
	    "the exit, not the end of output, ends the wait");
	if (read_file("bg") > 0 && sscanf(filebuf, "%ld", &pid) == 1 &&
	    pid > 1)
		kill((pid_t)pid, SIGKILL);
}

int
main(void)
{
	log_init(1, 0);
	/* As the delivery worker does: a closed pipe is an error, not death. */
	signal(SIGPIPE, SIG_IGN);
	mkpath(root, sizeof(root), "/tmp/test-mdacmd.XXXXXX");
	if (mkdtemp(root) == NULL)
		fatal("mkdtemp");
	umask(022);
	if (chdir(root) == -1)
		fatal("chdir %s", root);

	memset(&e, 0, sizeof(e));
	memset(&me, 0, sizeof(me));
	memset(&res, 0, sizeof(res));
	e.id = 0x0123456789abcdefULL;
	msd_strlcpy(e.sender, "alice@example.com", sizeof(e.sender));
	msd_strlcpy(e.rcpt, "bob@example.org", sizeof(e.rcpt));
	msd_strlcpy(e.dest, "bob@example.org", sizeof(e.dest));
	me.ev = &e;
	me.user = "bob";
	me.homedir = root;

	test_load();
	test_stdin();
	test_env();
	test_process();
	test_status();
	test_output();
	test_background();

	result_reset(&res);
	if (chdir("/") == -1)
		fatal("chdir /");
	cleanup();
	return tap_done();
}
