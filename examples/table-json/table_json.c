/*
 * table_json.c - the `json` table backend, built out of tree.
 *
 * `table users json:/etc/mail/users.json` names a JSON file whose top
 * level is either an array of strings, a list table:
 *
 *	["example.org", "example.net"]
 *
 * or an object mapping strings to strings, a map table, where an array of
 * strings stands for an alias list and is joined with ", ":
 *
 *	{ "postmaster": "root", "staff": ["ann", "bob@example.net"] }
 *
 * The table is load-style: load() hands every entry to the host, which
 * indexes them and answers every table(5) service exactly as it does for
 * a file table.  The file is read at each load and closed before load
 * returns, so a reload (SIGHUP) sees the file as it is then.
 *
 * This module is the proof that the SDK stands on its own: it uses only
 * the installed modsmtpd.h (found by pkg-config), libc and jansson, and
 * links against nothing from the daemon.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

/*
 * Pin the minor we need (1.3 brought table backends): built against a
 * newer SDK, the module still declares 1.3 sizes and so keeps loading
 * into every 1.3 host and later.
 */
#define MSD_ABI_TARGET_MINOR	3
#include <modsmtpd.h>

#define TJ_VERSION		"1.0"
#define TJ_VALUE_MAX		(64 * 1024)	/* a joined alias list, NUL incl. */
#define TJ_ERR_MAX		512
#define TJ_SHOW_MAX		48		/* bytes of a key quoted in errors */
#define TJ_SHOW_SIZE		(TJ_SHOW_MAX + sizeof("..."))

/* Load-style: the host matches every service itself. */
#define TJ_SERVICES	(MSD_TS_ALIAS | MSD_TS_DOMAIN | MSD_TS_CREDENTIALS | \
	    MSD_TS_NETADDR | MSD_TS_USERINFO | MSD_TS_SOURCE | \
	    MSD_TS_MAILADDR | MSD_TS_ADDRNAME | MSD_TS_MAILADDRMAP | \
	    MSD_TS_RELAYHOST | MSD_TS_STRING | MSD_TS_REGEX)

/* One `table NAME json:PATH` line. */
struct jtable {
	const struct msd_host	*host;
	char			 path[PATH_MAX];
};

/* One load. */
struct jload {
	struct jtable		*t;
	msd_table_entry_fn	*entry;
	void			*arg;
	msd_result		*err;
	char			*value;		/* TJ_VALUE_MAX bytes */
};

static void	 tj_error(struct jload *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/* "path: why" for the host, which fails the table with it. */
static void
tj_error(struct jload *l, const char *fmt, ...)
{
	char	 msg[TJ_ERR_MAX], buf[PATH_MAX + sizeof(": ") + TJ_ERR_MAX];
	va_list	 ap;

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	snprintf(buf, sizeof(buf), "%s: %s", l->t->path, msg);
	l->t->host->result_error(l->err, buf);
}

/*
 * A key for a message: at most TJ_SHOW_MAX bytes, cut on a UTF-8
 * character boundary, with "..." when cut; buf holds TJ_SHOW_SIZE bytes.
 * Never a value: values may be password hashes.
 */
static const char *
tj_show(const char *s, char buf[static TJ_SHOW_SIZE])
{
	size_t	 n = TJ_SHOW_MAX;

	if (strlen(s) <= TJ_SHOW_MAX)
		return s;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	memcpy(buf, s, n);
	memcpy(buf + n, "...", sizeof("..."));
	return buf;
}

static const char *
tj_type(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "something else";
}

/*
 * Why s cannot be a key or a value, or NULL.  A table(5) file cannot
 * hold an empty entry or a control character either, and a newline in a
 * value would split the log lines and envelope fields it ends up in.
 */
static const char *
tj_bad_string(const char *s, size_t len)
{
	if (len == 0)
		return "is empty";
	/* Parsed without JSON_ALLOW_NUL; checked all the same. */
	if (strlen(s) != len)
		return "holds a NUL byte";
	if (len >= TJ_VALUE_MAX)
		return "is too long (64 KiB or more)";
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return "holds a control character";
	return NULL;
}

/*
 * The string in v, or NULL after an error that says where it was:
 * element index of the list (key NULL), the value of key, or element
 * index of the value of key (elem set).
 */
static const char *
tj_string(struct jload *l, const json_t *v, const char *key, int elem,
    size_t index)
{
	char		 show[TJ_SHOW_SIZE], why[64], where[TJ_SHOW_SIZE + 64];
	const char	*s, *bad;

	if (!json_is_string(v))
		snprintf(why, sizeof(why), "is %s, expected a string",
		    tj_type(v));
	else if ((bad = tj_bad_string(s = json_string_value(v),
	    json_string_length(v))) == NULL)
		return s;
	else
		snprintf(why, sizeof(why), "%s", bad);
	if (key == NULL)
		snprintf(where, sizeof(where), "element %zu", index + 1);
	else if (elem)
		snprintf(where, sizeof(where), "element %zu of the value of "
		    "\"%s\"", index + 1, tj_show(key, show));
	else
		snprintf(where, sizeof(where), "the value of \"%s\"",
		    tj_show(key, show));
	tj_error(l, "%s %s", where, why);
	return NULL;
}

/* A list table: every element an entry without a value. */
static int
tj_list(struct jload *l, json_t *arr)
{
	const char	*s;
	json_t		*v;
	size_t		 i;

	json_array_foreach(arr, i, v) {
		if ((s = tj_string(l, v, NULL, 0, i)) == NULL)
			return MSD_PERMFAIL;
		if (l->entry(l->arg, s, NULL, 0) == -1) {
			tj_error(l, "loading stopped by the host");
			return MSD_TEMPFAIL;
		}
	}
	return MSD_OK;
}

/* An alias list: its strings joined with ", " into l->value. */
static const char *
tj_join(struct jload *l, const char *key, json_t *arr)
{
	char		 show[TJ_SHOW_SIZE];
	const char	*s;
	json_t		*v;
	size_t		 i, len = 0, n, sep;

	if (json_array_size(arr) == 0) {
		tj_error(l, "the value of \"%s\" is an empty array",
		    tj_show(key, show));
		return NULL;
	}
	json_array_foreach(arr, i, v) {
		if ((s = tj_string(l, v, key, 1, i)) == NULL)
			return NULL;
		n = strlen(s);		/* < TJ_VALUE_MAX: no overflow below */
		sep = i > 0 ? 2 : 0;
		if (len + sep + n >= TJ_VALUE_MAX) {
			tj_error(l, "the value of \"%s\" is too long once "
			    "joined (64 KiB or more)", tj_show(key, show));
			return NULL;
		}
		memcpy(l->value + len, ", ", sep);
		memcpy(l->value + len + sep, s, n);
		len += sep + n;
	}
	l->value[len] = '\0';
	return l->value;
}

/* A map table: every member an entry with its value. */
static int
tj_map(struct jload *l, json_t *obj)
{
	char		 show[TJ_SHOW_SIZE];
	const char	*key, *value, *why;
	json_t		*v;

	json_object_foreach(obj, key, v) {
		if ((why = tj_bad_string(key, strlen(key))) != NULL) {
			tj_error(l, "key \"%s\" %s", tj_show(key, show), why);
			return MSD_PERMFAIL;
		}
		if (json_is_array(v))
			value = tj_join(l, key, v);
		else
			value = tj_string(l, v, key, 0, 0);
		if (value == NULL)
			return MSD_PERMFAIL;
		if (l->entry(l->arg, key, value, 0) == -1) {
			tj_error(l, "loading stopped by the host");
			return MSD_TEMPFAIL;
		}
	}
	return MSD_OK;
}

/*
 * Entries carry no line number (0): jansson keeps no positions once a
 * document is parsed, so errors about an entry name its key or index.
 * A file that cannot be read is a temporary failure (it may be being
 * replaced); one that is wrong stays wrong until edited: permanent.
 */
static int
tj_load(void *inst, msd_table_entry_fn *entry, void *arg, msd_result *err)
{
	struct jtable	*t = inst;
	struct jload	 l;
	struct stat	 sb;
	/* path, two ints of up to 11 characters, jansson's text */
	char		 msg[PATH_MAX + 2 * 12 + 2 + JSON_ERROR_TEXT_LENGTH];
	json_error_t	 jerr;
	json_t		*root;
	FILE		*fp;
	int		 fd, r;

	memset(&l, 0, sizeof(l));
	l.t = t;
	l.entry = entry;
	l.arg = arg;
	l.err = err;
	/*
	 * A FIFO or a device would block the process that loads us (the
	 * parent, the lookup role): O_NONBLOCK for the open, which reads of
	 * a regular file ignore, then nothing but a regular file.
	 */
	if ((fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1) {
		tj_error(&l, "%s", strerror(errno));
		return MSD_TEMPFAIL;
	}
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
		tj_error(&l, "not a regular file");
		close(fd);
		return MSD_TEMPFAIL;
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		tj_error(&l, "%s", strerror(errno));
		close(fd);
		return MSD_TEMPFAIL;
	}
	/* A key given twice is a mistake, not "the last one wins". */
	root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
	fclose(fp);
	if (root == NULL) {
		/* "path:line:column: why", as compilers and editors read it */
		snprintf(msg, sizeof(msg), "%s:%d:%d: %s", t->path, jerr.line,
		    jerr.column, jerr.text);
		t->host->result_error(err, msg);
		return MSD_PERMFAIL;
	}
	if ((l.value = malloc(TJ_VALUE_MAX)) == NULL) {
		json_decref(root);
		tj_error(&l, "out of memory");
		return MSD_TEMPFAIL;
	}
	if (json_is_array(root))
		r = tj_list(&l, root);
	else if (json_is_object(root))
		r = tj_map(&l, root);
	else {
		/* Only with JSON_DECODE_ANY, which we do not pass. */
		tj_error(&l, "the top level is %s, expected an array (a list) "
		    "or an object (a map)", tj_type(root));
		r = MSD_PERMFAIL;
	}
	free(l.value);
	json_decref(root);
	return r;
}

static int
tj_open(const struct msd_host *host, const char *name, const char *config,
    void **inst)
{
	struct jtable	*t;
	size_t		 len;

	*inst = NULL;
	/* A relative path would depend on the daemon's working directory. */
	if (config == NULL || config[0] != '/') {
		host->log(MSD_LOG_ERR, "table %s: \"%s\" is not an absolute "
		    "path", name, config != NULL ? config : "");
		return MSD_PERMFAIL;
	}
	if ((len = strlen(config)) >= sizeof(t->path)) {
		host->log(MSD_LOG_ERR, "table %s: path too long", name);
		return MSD_PERMFAIL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		host->log(MSD_LOG_ERR, "table %s: out of memory", name);
		return MSD_TEMPFAIL;
	}
	t->host = host;
	memcpy(t->path, config, len + 1);
	*inst = t;
	return MSD_OK;
}

static void
tj_close(void *inst)
{
	free(inst);
}

static const struct msd_table_ops json_ops = {
	.size = MSD_TABLE_OPS_SIZE,
	.open = tj_open,
	.close = tj_close,
	.load = tj_load,
};

static const struct msd_module json_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD,
	.kind = MSD_KIND_TABLE,
	.services = TJ_SERVICES,
	.name = "json",
	.version = TJ_VERSION,
	.ops = &json_ops,
	.description = "lists and maps read from a JSON file",
};

/*
 * An older host refuses the module itself (our minor is newer than its
 * own), with one log line naming both versions: nothing to check here.
 */
MSD_MODULE(json)
{
	(void)host_major;
	(void)host_minor;
	return &json_module;
}
