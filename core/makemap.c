/*
 * makemap.c - builds the db maps smtpd reads (`table NAME db:/path.db`)
 * from table(5) text files, as OpenSMTPD's makemap(8) does:
 *
 *	makemap [-U] [-d hash|btree] [-o dbfile] [-t aliases|set] file
 *	makemap [-t aliases|set] hash name < file	(sendmail's form)
 *
 * The text is read with the rules of the daemon's file tables (table.c):
 * lines trimmed, blank lines and lines starting with '#' skipped, a key
 * starting with '[' running to its ']', otherwise ending at a blank or
 * ':', then one separator and the blanks after it.  Keys are lowercased.
 * Records are stored as OpenSMTPD stores them, so either program reads
 * the other's maps: key and value each with its trailing NUL, the value
 * "<set>" for every key of a list (-t set).
 *
 * The map is written to a temporary file beside the target, synced and
 * renamed over it: a reader sees the old map or the new one, and after an
 * error the old one is left as it was.  Errors name the line
 * ("file:line: why") and exit 1; success prints nothing.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <db_185.h>
#include <signal.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

/* newaliases reads smtpd.conf with the daemon's own parser. */
struct smtpd	 env;

#define MM_SET_VALUE	"<set>"
/* The daemon's table key limit: a longer key could never match. */
#define MM_KEY_MAX	1024
#define MM_NEW_MODE	0644	/* a map built from stdin, no target yet */

/* The first page of a libdb file: see modules/table/db/table_db.c. */
#define MM_META_SIZE	512
#define MM_META_MAGIC	12
#define MM_META_ENCRYPT	24
#define MM_HASH_MAGIC	0x061561U
#define MM_BTREE_MAGIC	0x053162U

enum mm_type {
	MM_PLAIN,
	MM_ALIASES,
	MM_SET
};

struct mm_build {
	DB		*db;
	const char	*name;		/* the source, for messages */
	enum mm_type	 type;
	size_t		 lineno;
	int		 decided;	/* list or map known */
	int		 list;
	int		 marker;	/* "# @list" decided it */
};

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: makemap [-U] [-d hash|btree] [-o dbfile] "
	    "[-t aliases|set] file\n"
	    "       makemap [-t aliases|set] hash name < file\n");
	exit(1);
}

static void	 line_error(struct mm_build *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

static void
line_error(struct mm_build *b, const char *fmt, ...)
{
	char	 msg[512];
	va_list	 ap;

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	warnx("%s:%zu: %s", b->name, b->lineno, msg);
}

static int
parse_dbtype(const char *s, DBTYPE *type)
{
	if (strcmp(s, "hash") == 0)
		*type = DB_HASH;
	else if (strcmp(s, "btree") == 0)
		*type = DB_BTREE;
	else
		return -1;
	return 0;
}

/* ------------------------------------------------------ aliases(5) */

/* A login name as aliases(5) takes it: letters, digits, "_.-+". */
static int
valid_user(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && strchr("_.-+", *s) == NULL)
			return 0;
	return 1;
}

/* user@domain with the characters OpenSMTPD's makemap allows. */
static int
valid_address(const char *s)
{
	const char	*at = strchr(s, '@');
	const char	*p;

	if (at == NULL || at == s || at[1] == '\0')
		return 0;
	for (p = s; p < at; p++)
		if (!isalnum((unsigned char)*p) &&
		    strchr("!#$%*/?|^{}`~&'+-=_.", *p) == NULL)
			return 0;
	for (p = at + 1; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return 0;
	return 1;
}

/* "error:" then a 4xx or 5xx code, a blank and a text. */
static int
valid_error(const char *s)
{
	return (s[0] == '4' || s[0] == '5') &&
	    isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) &&
	    s[3] == ' ' && isalnum((unsigned char)s[4]);
}

/*
 * One element of an alias value, trimmed and unquoted in place as the
 * daemon does when it expands it; NULL when valid, else why not.
 */
static const char *
alias_element(char **ep)
{
	char	*e = *ep;
	size_t	 len;

	while (*e == ' ' || *e == '\t')
		e++;
	len = strlen(e);
	while (len > 0 && (e[len - 1] == ' ' || e[len - 1] == '\t'))
		e[--len] = '\0';
	if (len >= 2 && e[0] == '"' && e[len - 1] == '"') {
		e[len - 1] = '\0';
		e++;
	}
	*ep = e;
	if (*e == '\0')
		return "an empty element (a comma too many?)";
	if (*e == '\\')
		return valid_user(e + 1) ? NULL : "not a valid user name";
	if (*e == '|')
		return e[1] != '\0' ? NULL : "an empty command";
	if (*e == '/')
		return NULL;
	if (strncasecmp(e, ":include:", 9) == 0)
		return e[9] == '/' ? NULL : ":include: needs an absolute path";
	if (strncasecmp(e, "error:", 6) == 0)
		return valid_error(e + 6) ? NULL : "error: needs a 4xx or 5xx "
		    "code, a blank and a text";
	if (strchr(e, '@') != NULL)
		return valid_address(e) ? NULL : "not a valid address";
	return valid_user(e) ? NULL : "not a user name, address, /file, "
	    "|command, :include:/file or error:code text";
}

/* Every comma-separated element (commas in quotes do not split). */
static int
check_aliases(struct mm_build *b, const char *key, const char *value)
{
	char		*copy, *p, *start, *elem;
	const char	*why;
	size_t		 quotes = 0;
	int		 quoted = 0, end = 0, rc = 0;

	for (p = (char *)value; (p = strchr(p, '"')) != NULL; p++)
		quotes++;
	if (quotes % 2 != 0) {
		line_error(b, "alias \"%s\": a '\"' is not closed", key);
		return -1;
	}
	copy = xstrdup(value);
	for (p = start = copy; !end && rc == 0; p++) {
		if (*p == '"')
			quoted = !quoted;
		if (*p != '\0' && (*p != ',' || quoted))
			continue;
		end = *p == '\0';
		*p = '\0';
		elem = start;
		if ((why = alias_element(&elem)) != NULL) {
			line_error(b, "alias \"%s\": \"%.60s\": %s", key,
			    elem, why);
			rc = -1;
		}
		start = p + 1;
	}
	free(copy);
	return rc;
}

/* ------------------------------------------------------------ parse */

/* key (lowercased) and value, each with its NUL; duplicates refused. */
static int
mm_put(struct mm_build *b, char *key, const char *value)
{
	DBT	 k, v;
	size_t	 len = strlen(key);
	int	 r;

	if (len >= MM_KEY_MAX) {
		line_error(b, "key \"%.40s...\" is too long (%zu bytes, at "
		    "most %d)", key, len, MM_KEY_MAX - 1);
		return -1;
	}
	lowercase(key);
	if (b->type == MM_ALIASES && check_aliases(b, key, value) == -1)
		return -1;
	k.data = key;
	k.size = len + 1;
	v.data = (void *)value;
	v.size = strlen(value) + 1;
	if ((r = b->db->put(b->db, &k, &v, R_NOOVERWRITE)) == 1) {
		line_error(b, "duplicate key \"%s\"", key);
		return -1;
	}
	if (r != 0) {
		line_error(b, "cannot store \"%s\": %s", key, strerror(errno));
		return -1;
	}
	return 0;
}

/* The first entry (or the marker) decides; -t set always reads a list. */
static void
mm_decide(struct mm_build *b, int has_value)
{
	if (b->decided)
		return;
	b->decided = 1;
	b->list = b->type == MM_SET || !has_value;
}

static int
mm_line(struct mm_build *b, char *line)
{
	char	*key, *sep, *value;

	switch (table_line(line, &key, &sep)) {
	case TLINE_SKIP:
		return 0;
	case TLINE_LIST:
		if (!b->decided)
			b->decided = b->list = b->marker = 1;
		return 0;
	case TLINE_BAD:
		line_error(b, "no ']' closes \"%.40s\"", key);
		return -1;
	case TLINE_ENTRY:
		break;
	}
	mm_decide(b, *sep != '\0');
	if (b->list && b->type != MM_SET) {
		if (b->marker)
			line_error(b, "the file is a list (# @list): build "
			    "it with -t set");
		else
			line_error(b, "\"%.40s\" has no value: a list needs "
			    "-t set", key);
		return -1;
	}
	if (b->list)
		return mm_put(b, key, MM_SET_VALUE);
	if (*(value = table_line_value(sep)) == '\0') {
		line_error(b, "key \"%.40s\" has no value", key);
		return -1;
	}
	return mm_put(b, key, value);
}

static int
mm_read(struct mm_build *b, FILE *fp)
{
	char	*line = NULL;
	size_t	 size = 0;
	ssize_t	 len;
	int	 rc = 0;

	while ((len = getline(&line, &size, fp)) != -1) {
		b->lineno++;
		if (memchr(line, '\0', len) != NULL) {
			line_error(b, "NUL byte in line");
			rc = -1;
			break;
		}
		if ((rc = mm_line(b, line)) == -1)
			break;
	}
	if (rc == 0 && ferror(fp)) {
		warn("%s", b->name);
		rc = -1;
	}
	free(line);
	return rc;
}

/* ------------------------------------------------------------ build */

struct mm_out {
	const char	*path;		/* the map */
	char		 tmp[PATH_MAX];	/* beside it until complete */
	int		 fd;
	struct stat	 like;		/* owner and mode to give it */
};

/* The owner and mode of the source; from stdin, those of the old map. */
static int
out_attrs(struct mm_out *o, FILE *src, const char *name)
{
	struct stat	 sb;
	mode_t		 mask;

	if (fstat(fileno(src), &sb) == -1) {
		warn("%s", name);
		return -1;
	}
	if (S_ISDIR(sb.st_mode)) {
		warnx("%s: %s", name, strerror(EISDIR));
		return -1;
	}
	if (strcmp(name, "<stdin>") != 0) {
		o->like = sb;
		return 0;
	}
	if (stat(o->path, &o->like) == 0)
		return 0;
	mask = umask(0);
	umask(mask);
	o->like.st_mode = MM_NEW_MODE & ~mask;
	o->like.st_uid = geteuid();
	o->like.st_gid = getegid();
	return 0;
}

/* Renaming onto the source would lose it. */
static int
out_is_source(const struct mm_out *o, FILE *src)
{
	struct stat	 a, b;

	return stat(o->path, &a) == 0 && fstat(fileno(src), &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int
out_create(struct mm_out *o)
{
	int	 n;

	n = snprintf(o->tmp, sizeof(o->tmp), "%s.XXXXXXXXXX", o->path);
	if (n < 0 || (size_t)n >= sizeof(o->tmp)) {
		warnx("%s: path too long", o->path);
		return -1;
	}
	if ((o->fd = mkstemp(o->tmp)) == -1) {
		warn("%s", o->tmp);
		return -1;
	}
	return 0;
}

static int
out_attrs_apply(struct mm_out *o)
{
	struct stat	 sb;

	if (fstat(o->fd, &sb) == -1) {
		warn("%s", o->tmp);
		return -1;
	}
	if ((sb.st_uid != o->like.st_uid || sb.st_gid != o->like.st_gid) &&
	    fchown(o->fd, o->like.st_uid, o->like.st_gid) == -1) {
		warn("cannot give %s the owner of the source", o->tmp);
		return -1;
	}
	if (fchmod(o->fd, o->like.st_mode & 0777) == -1) {
		warn("%s", o->tmp);
		return -1;
	}
	return 0;
}

/* Durable under its final name: data, then the directory entry. */
static int
out_commit(struct mm_out *o)
{
	char	 dir[PATH_MAX];

	if (out_attrs_apply(o) == -1)
		return -1;
	if (fsync(o->fd) == -1) {
		warn("fsync %s", o->tmp);
		return -1;
	}
	if (rename(o->tmp, o->path) == -1) {
		warn("rename %s to %s", o->tmp, o->path);
		return -1;
	}
	msd_strlcpy(dir, o->path, sizeof(dir));
	if (fsync_dir(dirname(dir)) == -1)
		warn("fsync %s", dir);
	return 0;
}

static int
build(const char *source, const char *path, enum mm_type type)
{
	struct mm_build	 b;
	struct mm_out	 o;
	FILE		*fp;
	int		 rc = -1;

	memset(&b, 0, sizeof(b));
	memset(&o, 0, sizeof(o));
	o.path = path;
	o.fd = -1;
	b.type = type;
	if (strcmp(source, "-") == 0) {
		fp = stdin;
		b.name = "<stdin>";
	} else if ((fp = fopen(source, "re")) == NULL) {
		warn("%s", source);
		return -1;
	} else
		b.name = source;
	if (out_attrs(&o, fp, b.name) == -1)
		goto done;
	if (out_is_source(&o, fp)) {
		warnx("%s: the map would replace its source", path);
		goto done;
	}
	if (out_create(&o) == -1)
		goto done;
	/* libdb takes an empty file for a damaged one unless it truncates */
	if ((b.db = dbopen(o.tmp, O_RDWR | O_TRUNC, 0600, DB_HASH,
	    NULL)) == NULL) {
		warn("dbopen %s", o.tmp);
		goto done;
	}
	if (mm_read(&b, fp) == 0) {
		if (b.db->sync(b.db, 0) == 0)
			rc = 0;
		else
			warn("sync %s", o.tmp);
	}
	if (b.db->close(b.db) == -1 && rc == 0) {
		warn("close %s", o.tmp);
		rc = -1;
	}
	if (rc == 0)
		rc = out_commit(&o);
done:
	if (o.fd != -1) {
		close(o.fd);
		if (rc == -1)
			unlink(o.tmp);
	}
	if (fp != stdin)
		fclose(fp);
	return rc;
}

/* ------------------------------------------------------------- dump */

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

/*
 * Refuses what is not an unencrypted libdb file of the type asked for
 * before dbopen() sees it: libdb would print its own complaints and may
 * read a foreign file at length.
 */
static int
db_file_check(const char *path, DBTYPE type)
{
	unsigned char	 meta[MM_META_SIZE];
	uint32_t	 magic = type == DB_HASH ? MM_HASH_MAGIC :
			    MM_BTREE_MAGIC;
	ssize_t		 n;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) == -1) {
		warn("%s", path);
		return -1;
	}
	n = read(fd, meta, sizeof(meta));
	if (n == -1) {
		warn("%s", path);
		close(fd);
		return -1;
	}
	close(fd);
	if (n < (ssize_t)sizeof(meta) ||
	    (get32(meta + MM_META_MAGIC, 0) != magic &&
	    get32(meta + MM_META_MAGIC, 1) != magic) ||
	    meta[MM_META_ENCRYPT] != 0) {
		warnx("%s: not a Berkeley DB %s file", path,
		    type == DB_HASH ? "hash" : "btree");
		return -1;
	}
	return 0;
}

/* The length of a record's string without its one NUL; -1 if it has others. */
static ssize_t
rec_len(const DBT *d)
{
	const char	*s = d->data;
	size_t		 len = d->size;

	if (len > 0 && s[len - 1] == '\0')
		len--;
	if (memchr(s, '\0', len) != NULL || len > SSIZE_MAX)
		return -1;
	return (ssize_t)len;
}

/* "key<TAB>value" per record, "key" alone for a list entry. */
static int
dump_record(const char *path, const DBT *k, const DBT *v)
{
	ssize_t	 klen = rec_len(k), vlen = rec_len(v);

	if (klen == -1 || vlen == -1) {
		warnx("%s: a record holds a NUL byte inside its %s", path,
		    klen == -1 ? "key" : "value");
		return -1;
	}
	fwrite(k->data, 1, klen, stdout);
	if (vlen != sizeof(MM_SET_VALUE) - 1 ||
	    memcmp(v->data, MM_SET_VALUE, vlen) != 0) {
		putchar('\t');
		fwrite(v->data, 1, vlen, stdout);
	}
	putchar('\n');
	return 0;
}

static int
dump(const char *path, DBTYPE type)
{
	DB	*db;
	DBT	 k, v;
	int	 r;

	if (db_file_check(path, type) == -1)
		return -1;
	if ((db = dbopen(path, O_RDONLY, 0, type, NULL)) == NULL) {
		warn("dbopen %s", path);
		return -1;
	}
	for (r = db->seq(db, &k, &v, R_FIRST); r == 0;
	    r = db->seq(db, &k, &v, R_NEXT))
		if (dump_record(path, &k, &v) == -1)
			break;
	if (r == -1)
		warn("%s", path);
	db->close(db);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		warn("stdout");
		return -1;
	}
	return r == 1 ? 0 : -1;
}

/* ------------------------------------------------------------- main */

/* sendmail's "makemap TYPE NAME < file": NAME.db, unless it says so. */
static char *
sendmail_name(const char *name)
{
	size_t	 len = strlen(name);
	char	*out;

	if (len >= 3 && strcmp(name + len - 3, ".db") == 0)
		return xstrdup(name);
	xasprintf(&out, "%s.db", name);
	return out;
}

/* ------------------------------------------------------------ newaliases */

/*
 * Tells a running daemon to read its tables again (SIGHUP), found by the
 * pid in its spool lock; quiet when there is none.
 */
static void
newaliases_signal(const char *spool)
{
	char	 path[PATH_MAX], buf[32];
	FILE	*fp;
	long	 pid;

	if ((size_t)snprintf(path, sizeof(path), "%s/smtpd.lock", spool) >=
	    sizeof(path) || (fp = fopen(path, "re")) == NULL)
		return;
	if (fgets(buf, sizeof(buf), fp) != NULL &&
	    (pid = strtol(buf, NULL, 10)) > 1 && kill((pid_t)pid, SIGHUP) == 0)
		printf("newaliases: smtpd (pid %ld) reads its tables again\n",
		    pid);
	fclose(fp);
}

/*
 * newaliases [-f smtpd.conf] [-s spool]: rebuilds the table named
 * "aliases" of smtpd.conf ($MODSMTPD_CONF, else the installed one)
 * when it is a db table (from the same path without ".db"), then has
 * the daemon read its tables again.
 */
static int
newaliases(int argc, char *argv[])
{
	const char	*conffile = getenv("MODSMTPD_CONF"), *spool = SPOOLDIR;
	struct config	*conf;
	struct table	*t;
	char		*src;
	size_t		 len;
	int		 ch, rc = 0;

	while ((ch = getopt(argc, argv, "f:s:")) != -1) {
		switch (ch) {
		case 'f':
			conffile = optarg;
			break;
		case 's':
			spool = optarg;
			break;
		default:
			fprintf(stderr, "usage: newaliases [-f file] [-s spool]"
			    "\n");
			return 1;
		}
	}
	if (conffile == NULL || *conffile == '\0')
		conffile = SYSCONFDIR "/smtpd.conf";
	log_init(1, 0);
	if ((conf = config_load(conffile, NULL, 0)) == NULL)
		return 1;
	if ((t = config_table(conf, "aliases")) == NULL) {
		warnx("%s: no table named \"aliases\"", conffile);
		config_free(conf);
		return 1;
	}
	if (t->type != NULL && strcmp(t->type, "db") == 0 && t->config) {
		len = strlen(t->config);
		if (len <= 3 || strcmp(t->config + len - 3, ".db") != 0) {
			warnx("%s: the db table \"aliases\" is not a .db file",
			    t->config);
			rc = 1;
		} else {
			src = xstrdup(t->config);
			src[len - 3] = '\0';
			if ((rc = build(src, t->config, MM_ALIASES)) == 0)
				printf("newaliases: %s rebuilt from %s\n",
				    t->config, src);
			free(src);
		}
	} else
		printf("newaliases: \"aliases\" is a %s table: nothing to"
		    " build\n", t->type != NULL ? t->type : "file");
	if (rc == 0)
		newaliases_signal(spool);
	config_free(conf);
	return rc != 0;
}

int
main(int argc, char *argv[])
{
	DBTYPE		 dbtype = DB_HASH;
	enum mm_type	 type = MM_PLAIN;
	const char	*source;
	char		*out = NULL;
	int		 ch, Uflag = 0, rc;

	if (strcmp(basename(argv[0]), "newaliases") == 0)
		return newaliases(argc, argv);
	log_setproc("makemap");
	while ((ch = getopt(argc, argv, "d:o:t:U")) != -1) {
		switch (ch) {
		case 'd':
			if (parse_dbtype(optarg, &dbtype) == -1)
				errx(1, "unsupported db type \"%s\" (hash or "
				    "btree)", optarg);
			break;
		case 'o':
			out = xstrdup(optarg);
			break;
		case 't':
			if (strcmp(optarg, "aliases") == 0)
				type = MM_ALIASES;
			else if (strcmp(optarg, "set") == 0)
				type = MM_SET;
			else
				errx(1, "unsupported map type \"%s\" (aliases "
				    "or set)", optarg);
			break;
		case 'U':
			Uflag = 1;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;

	if (argc == 2) {
		if (out != NULL || Uflag)
			usage();
		if (parse_dbtype(argv[0], &dbtype) == -1)
			errx(1, "unsupported db type \"%s\" (hash or btree)",
			    argv[0]);
		out = sendmail_name(argv[1]);
		source = "-";
	} else if (argc == 1)
		source = argv[0];
	else
		usage();

	if (Uflag) {
		if (strcmp(source, "-") == 0)
			errx(1, "-U needs the map's file name");
		return dump(source, dbtype) == 0 ? 0 : 1;
	}
	if (dbtype != DB_HASH)
		errx(1, "btree maps are not built: smtpd reads hash maps "
		    "only (-d hash)");
	if (out == NULL) {
		if (strcmp(source, "-") == 0)
			errx(1, "reading stdin needs -o dbfile");
		xasprintf(&out, "%s.db", source);
	}
	rc = build(source, out, type);
	free(out);
	return rc == 0 ? 0 : 1;
}
