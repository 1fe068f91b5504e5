/*
 * test-config.c - the configuration corpus under tests/unit/conf/: proves
 * the reader (parse.c) and the printer (config_print.c) together.
 *
 * For every NAME.conf in the directory:
 *  - with NAME.expect: the file must load, print exactly NAME.expect (the
 *    hand-written specification of the model in the current grammar), and
 *    the printed text must load again and print identically (fixed point);
 *  - with NAME.error: the load must fail; the first line of NAME.error is
 *    the expected "NAME.conf:LINE:" prefix of the message (directories are
 *    ignored) and the second a substring the message must contain.
 * One TAP line per file.  Arguments, if any, restrict the run to the
 * named files; TEST_CONFIG_SHOW=1 in the environment dumps what was
 * printed for each mismatch.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"
#include "tap.h"

#define CONFDIR		TOP_SRCDIR "/tests/unit/conf/"
#define MAXFILE		(1024 * 1024)	/* no corpus file comes close */

static char	 errbuf[8192];		/* stderr of the last load() */

/* The whole of path as a string, or NULL when it cannot be read. */
static char *
slurp(const char *path, size_t *lenp)
{
	FILE	*fp;
	char	*buf;
	size_t	 len;

	if ((fp = fopen(path, "r")) == NULL)
		return NULL;
	buf = xmalloc(MAXFILE + 1);
	len = fread(buf, 1, MAXFILE + 1, fp);
	if (ferror(fp) || len > MAXFILE) {
		fclose(fp);
		free(buf);
		return NULL;
	}
	fclose(fp);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return buf;
}

/* config_load(path) with stderr captured into errbuf. */
static struct config *
load(const char *path)
{
	struct config	*conf;
	char		 tmpl[] = "/tmp/test-config-err.XXXXXX";
	ssize_t		 n;
	int		 fd, saved;

	fflush(stderr);
	if ((fd = mkstemp(tmpl)) == -1 || (saved = dup(STDERR_FILENO)) == -1)
		fatal("capture stderr");
	unlink(tmpl);
	dup2(fd, STDERR_FILENO);
	conf = config_load(path, NULL, 0);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	if (lseek(fd, 0, SEEK_SET) == -1 ||
	    (n = read(fd, errbuf, sizeof(errbuf) - 1)) == -1)
		fatal("read captured stderr");
	errbuf[n] = '\0';
	close(fd);
	return conf;
}

/* What config_print writes for conf, as a string. */
static char *
print_conf(const struct config *conf, size_t *lenp)
{
	FILE	*fp;
	char	*buf = NULL;
	size_t	 len = 0;

	if ((fp = open_memstream(&buf, &len)) == NULL)
		fatal("open_memstream");
	config_print(fp, conf);
	if (fclose(fp) != 0)
		fatal("open_memstream");
	*lenp = len;
	return buf;
}

/* Prints one line of s (up to its newline) as a TAP diagnostic. */
static void
diag_line(const char *what, int lineno, const char *s)
{
	int	 n;

	if (s == NULL) {
		printf("#   %s line %d: (end of text)\n", what, lineno);
		return;
	}
	n = (int)strcspn(s, "\n");
	printf("#   %s line %d: %.*s\n", what, lineno, n, s);
}

/* Shows the first line where the two texts differ. */
static void
diag_diff(const char *name, const char *want, const char *got)
{
	const char	*w = want, *g = got;
	int		 lineno = 1;

	while (*w != '\0' && *g != '\0') {
		size_t	 wl = strcspn(w, "\n"), gl = strcspn(g, "\n");

		if (wl != gl || memcmp(w, g, wl) != 0 || w[wl] != g[gl])
			break;
		w += wl + (w[wl] != '\0');
		g += gl + (g[gl] != '\0');
		lineno++;
	}
	printf("# %s: first difference\n", name);
	diag_line("expected", lineno, *w != '\0' ? w : NULL);
	diag_line("got     ", lineno, *g != '\0' ? g : NULL);
	if (getenv("TEST_CONFIG_SHOW") != NULL)
		printf("# --- printed:\n%s# ---\n", got);
}

static void
diag_stderr(const char *name)
{
	const char	*s = errbuf;
	int		 n;

	while (*s != '\0') {
		n = (int)strcspn(s, "\n");
		printf("# %s: stderr: %.*s\n", name, n, s);
		s += n + (s[n] != '\0');
	}
}

/* Loads the printed text again and checks it prints the same. */
static int
fixed_point(const char *name, const char *text, size_t len)
{
	struct config	*conf;
	char		 tmpl[] = "/tmp/test-config.XXXXXX";
	char		*again;
	size_t		 alen;
	int		 fd, same;

	if ((fd = mkstemp(tmpl)) == -1)
		fatal("mkstemp");
	if (write(fd, text, len) != (ssize_t)len)
		fatal("write %s", tmpl);
	close(fd);
	conf = load(tmpl);
	unlink(tmpl);
	if (conf == NULL) {
		printf("# %s: the printed configuration does not load\n", name);
		diag_stderr(name);
		return 0;
	}
	again = print_conf(conf, &alen);
	config_free(conf);
	same = alen == len && memcmp(again, text, len) == 0;
	if (!same) {
		printf("# %s: reloading the printed text changes it\n", name);
		diag_diff(name, text, again);
	}
	free(again);
	return same;
}

static int
check_good(const char *name, const char *path, const char *want)
{
	struct config	*conf;
	char		*got;
	size_t		 len;
	int		 good;

	if ((conf = load(path)) == NULL) {
		printf("# %s: does not load\n", name);
		diag_stderr(name);
		return 0;
	}
	got = print_conf(conf, &len);
	config_free(conf);
	good = strlen(want) == len && memcmp(want, got, len) == 0;
	if (!good)
		diag_diff(name, want, got);
	else
		good = fixed_point(name, got, len);
	free(got);
	return good;
}

/* Whether the len bytes at s contain the string sub. */
static int
line_has(const char *s, size_t len, const char *sub)
{
	size_t	 n = strlen(sub), i;

	for (i = 0; i + n <= len; i++)
		if (memcmp(s + i, sub, n) == 0)
			return 1;
	return 0;
}

/*
 * The first line of stderr that is not a warning (a file in the old
 * grammar is announced by one before any error), with the directory part
 * of its file name dropped: "dir/NAME.conf:3: ..." gives "NAME.conf:3: ...".
 */
static const char *
message_start(const char *msg)
{
	const char	*colon, *s;
	size_t		 len;

	for (;;) {
		len = strcspn(msg, "\n");
		if (msg[len] == '\0' || !line_has(msg, len, ": warning: "))
			break;
		msg += len + 1;
	}
	if ((colon = strchr(msg, ':')) == NULL)
		return msg;
	for (s = colon; s > msg; s--)
		if (s[-1] == '/')
			break;
	return s;
}

static int
check_error(const char *name, const char *path, char *spec)
{
	struct config	*conf;
	const char	*msg;
	char		*prefix, *needle, *nl, first[sizeof(errbuf)];

	prefix = spec;
	if ((nl = strchr(prefix, '\n')) == NULL) {
		printf("# %s: the .error file needs two lines\n", name);
		return 0;
	}
	*nl = '\0';
	needle = nl + 1;
	needle[strcspn(needle, "\n")] = '\0';
	if ((conf = load(path)) != NULL) {
		printf("# %s: loads, but must fail with \"%s ... %s\"\n",
		    name, prefix, needle);
		config_free(conf);
		return 0;
	}
	msg = message_start(errbuf);
	msd_strlcpy(first, msg, sizeof(first));
	first[strcspn(first, "\n")] = '\0';
	if (strncmp(first, prefix, strlen(prefix)) == 0 &&
	    strstr(first + strlen(prefix), needle) != NULL)
		return 1;
	printf("# %s: expected \"%s\" and \"%s\"\n", name, prefix, needle);
	printf("# %s: got      \"%s\"\n", name, first);
	return 0;
}

/* Reads CONFDIR/name + suffix, or NULL when there is no such file. */
static char *
companion(const char *base, const char *suffix)
{
	char	 path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s%s%s", CONFDIR, base,
	    suffix) >= sizeof(path))
		fatalx("path too long");
	return slurp(path, NULL);
}

static void
check_file(const char *name)
{
	char	 path[PATH_MAX], base[PATH_MAX];
	char	*spec;
	size_t	 len = strlen(name);

	if ((size_t)snprintf(path, sizeof(path), "%s%s", CONFDIR, name) >=
	    sizeof(path))
		fatalx("path too long");
	msd_strlcpy(base, name, sizeof(base));
	base[len - strlen(".conf")] = '\0';
	if ((spec = companion(base, ".expect")) != NULL)
		ok(check_good(name, path, spec), "%s prints as %s.expect",
		    name, base);
	else if ((spec = companion(base, ".error")) != NULL)
		ok(check_error(name, path, spec), "%s is refused as %s.error",
		    name, base);
	else
		ok(0, "%s has neither %s.expect nor %s.error", name, base,
		    base);
	free(spec);
}

static int
is_conf(const struct dirent *d)
{
	size_t	 len = strlen(d->d_name);

	return len > strlen(".conf") &&
	    strcmp(d->d_name + len - strlen(".conf"), ".conf") == 0;
}

static int
wanted(const char *name, int argc, char **argv)
{
	int	 i;

	if (argc < 2)
		return 1;
	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

int
main(int argc, char **argv)
{
	struct dirent	**names;
	int		  i, n;

	if ((n = scandir(CONFDIR, &names, is_conf, alphasort)) == -1)
		fatal("%s", CONFDIR);
	for (i = 0; i < n; i++) {
		if (wanted(names[i]->d_name, argc, argv))
			check_file(names[i]->d_name);
		free(names[i]);
	}
	free(names);
	return tap_done();
}
