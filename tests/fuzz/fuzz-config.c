/*
 * fuzz-config.c - libFuzzer target for the smtpd.conf(5) parser.
 *
 * Each input is written to smtpd.conf in a private directory made once per
 * process, loaded with config_load() and, when it loads, printed with
 * config_print() to /dev/null and freed.  Relative `include` names resolve
 * against that directory, so an input can include itself (nesting limit)
 * or, through an absolute name, whatever the sandbox of tests/fuzz/run
 * leaves reachable.  Built and run by tests/fuzz/run; see README.md there.
 *
 * FUZZ_CONFIG_PRINT is defined by the run script when the tree has
 * config_print().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The daemon's global state lives in smtpd.c, which is not linked here. */
struct smtpd	 env;

/* Fixed -D macros, so the command-line side of macros is exercised too. */
static const struct macro fuzz_macros[] = {
	{ "iface",	"lo" },
	{ "opts",	"port 2525 tag FUZZ" },
};

static char	 fuzz_dir[PATH_MAX];
static char	 fuzz_conf[PATH_MAX];
static FILE	*fuzz_null;

/* A broken harness must not pass for a clean parser: stop loudly. */
static void
fuzz_die(const char *what)
{
	fprintf(stderr, "fuzz-config: %s: %s\n", what, strerror(errno));
	abort();
}

static void
fuzz_cleanup(void)
{
	if (fuzz_conf[0] != '\0')
		unlink(fuzz_conf);
	if (fuzz_dir[0] != '\0')
		rmdir(fuzz_dir);
}

static void
fuzz_make_dir(void)
{
	const char	*tmp = getenv("TMPDIR");
	int		 n;

	if (tmp == NULL || *tmp == '\0')
		tmp = "/tmp";
	n = snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/fuzz-config.XXXXXX", tmp);
	if (n < 0 || (size_t)n >= sizeof(fuzz_dir))
		fuzz_die("TMPDIR too long");
	if (mkdtemp(fuzz_dir) == NULL) {
		fuzz_dir[0] = '\0';
		fuzz_die("mkdtemp");
	}
	n = snprintf(fuzz_conf, sizeof(fuzz_conf), "%s/smtpd.conf", fuzz_dir);
	if (n < 0 || (size_t)n >= sizeof(fuzz_conf))
		fuzz_die("TMPDIR too long");
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Foreground logging: parse errors go to stderr, never to syslog. */
	log_init(1, 0);
	fuzz_make_dir();
	atexit(fuzz_cleanup);
	if ((fuzz_null = fopen("/dev/null", "we")) == NULL)
		fuzz_die("/dev/null");
	return 0;
}

static void
fuzz_write_conf(const uint8_t *data, size_t size)
{
	ssize_t	 n;
	int	 fd;

	fd = open(fuzz_conf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
	    O_NOFOLLOW, 0600);
	if (fd == -1)
		fuzz_die(fuzz_conf);
	while (size > 0) {
		if ((n = write(fd, data, size)) == -1) {
			if (errno == EINTR)
				continue;
			fuzz_die(fuzz_conf);
		}
		data += n;
		size -= n;
	}
	if (close(fd) == -1)
		fuzz_die(fuzz_conf);
}

/* What the daemon does with a loaded model, short of opening tables. */
static void
fuzz_use_config(const struct config *conf)
{
#ifdef FUZZ_CONFIG_PRINT
	config_print(fuzz_null, conf);
	fflush(fuzz_null);
#else
	(void)conf;
#endif
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config	*conf;

	fuzz_write_conf(data, size);
	conf = config_load(fuzz_conf, fuzz_macros,
	    sizeof(fuzz_macros) / sizeof(fuzz_macros[0]));
	if (conf != NULL) {
		fuzz_use_config(conf);
		config_free(conf);
	}
	return 0;
}
