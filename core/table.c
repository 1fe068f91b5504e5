/*
 * table.c - the table layer of table(5): opens every table a configuration
 * declares and answers the two questions rules and actions ask of them,
 * "does this key match an entry for service S" and "what value goes with
 * this key".
 *
 * Backends sit behind one internal vtable (struct table_driver) so they can
 * move into loadable modules later without touching callers.  Two exist
 * now, both held in memory once opened: "static" (entries written in
 * smtpd.conf or made by the parser for a literal) and "file" (the table(5)
 * text format, read once at open).  Any other type is refused at open.
 *
 * Matching follows OpenSMTPD: keys are lowercased on both sides, domains
 * take "*" wildcards, mail addresses match as user@domain, @domain or user,
 * addresses match CIDR networks, regex entries are POSIX extended regular
 * expressions, and every other service compares the whole key.
 */
#include <sys/types.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtpd.h"

/* Longest key, NUL included: OpenSMTPD lowercases lookups into this much. */
#define TABLE_KEY_MAX	1024
#define TABLE_ERR_MAX	1024

/* What the configuration asks of a table, passed to its driver at open. */
#define TOPEN_REGEX	0x01	/* used with `regex`: compile every key now */
#define TOPEN_NETADDR	0x02	/* used for `src`: every key is a network */

/*
 * The backend interface.  open() reads what it needs from the table (its
 * entries or its config string) and returns a handle, or NULL after writing
 * one line without newline into err.  match() and lookup() receive keys
 * already lowercased and shorter than TABLE_KEY_MAX; they return 1, 0 or -1
 * as table_match() and table_lookup() do.
 */
struct table_driver {
	const char	*name;
	int		 has_kind;	/* list/map known after open */
	void		*(*open)(struct table *, int flags, char *err,
			    size_t errlen);
	int		 (*match)(void *, enum table_service, const char *key);
	int		 (*lookup)(void *, enum table_service, const char *key,
			    char *value, size_t len);
	/* The next entry, round-robin: 1, 0 (empty), -1. */
	int		 (*fetch)(void *, enum table_service, char *value,
			    size_t len);
	void		 (*close)(void *);
};

/* One opened table: which driver, and the driver's private state. */
struct table_backend {
	const struct table_driver	*drv;
	void				*handle;
	int				 flags;		/* TOPEN_* at open */
	struct table_worker		*worker;	/* lookup role, may block */
};

/* Mail addresses of a table that carry no delimiter ignore the tag. */
static char	 table_subaddr_delim = DEFAULT_SUBADDR_DELIM;

/* ------------------------------------------------------------- netaddr */

/* "/N" after an address: 1 to 3 digits, at most max; -1 otherwise. */
static int
prefix_parse(const char *s, int max)
{
	int	 bits = 0;
	size_t	 i;

	for (i = 0; isdigit((unsigned char)s[i]); i++) {
		if (i == 3)
			return -1;
		bits = bits * 10 + (s[i] - '0');
	}
	if (i == 0 || s[i] != '\0' || bits > max)
		return -1;
	return bits;
}

/*
 * IPv4 as inet_net_pton(3) reads it, which is what OpenSMTPD uses: one to
 * four decimal octets and an optional prefix, so "10/8" and "172.16" are
 * networks.  Without a prefix the width comes from the address class,
 * widened to cover every octet written; a full dotted quad is a /32.
 */
static int
netaddr_parse_v4(const char *s, struct netaddr *n)
{
	const char	*p = s;
	int		 noct = 0, v, width;

	memset(n, 0, sizeof(*n));
	for (;;) {
		if (!isdigit((unsigned char)*p))
			return -1;
		for (v = 0; isdigit((unsigned char)*p); p++)
			if ((v = v * 10 + (*p - '0')) > 255)
				return -1;
		n->addr[noct++] = (uint8_t)v;
		if (*p != '.' || noct == 4)
			break;
		p++;
	}
	n->af = AF_INET;
	if (*p == '/')
		return (n->bits = prefix_parse(p + 1, 32)) == -1 ? -1 : 0;
	if (*p != '\0')
		return -1;
	if (n->addr[0] >= 240)
		width = 32;
	else if (n->addr[0] >= 224)
		width = 4;
	else if (n->addr[0] >= 192)
		width = 24;
	else if (n->addr[0] >= 128)
		width = 16;
	else
		width = 8;
	n->bits = width < noct * 8 ? noct * 8 : width;
	return 0;
}

/* IPv6 with an optional prefix, as OpenSMTPD's fallback parser reads it. */
static int
netaddr_parse_v6(const char *s, struct netaddr *n)
{
	char	 buf[INET6_ADDRSTRLEN + 5];	/* + "/128" */
	char	*slash;

	memset(n, 0, sizeof(*n));
	if (msd_strlcpy(buf, s, sizeof(buf)) >= sizeof(buf))
		return -1;
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET6, buf, n->addr) != 1)
		return -1;
	n->af = AF_INET6;
	n->bits = 128;
	if (slash != NULL && (n->bits = prefix_parse(slash, 128)) == -1)
		return -1;
	return 0;
}

/*
 * An entry of a netaddr table or a client address: IPv4 as above, or IPv6
 * written bare, after "IPv6:", or in brackets ("[IPv6:2001:db8::1]",
 * "[2001:db8::]/32").
 */
int
netaddr_parse(const char *s, struct netaddr *n)
{
	char	 buf[INET6_ADDRSTRLEN + 16], *close;
	size_t	 len;

	if (strncasecmp(s, "ipv6:", 5) == 0)
		s += 5;
	if (netaddr_parse_v4(s, n) == 0)
		return 0;
	if (*s != '[')
		return netaddr_parse_v6(s, n);
	s++;
	if (strncasecmp(s, "ipv6:", 5) == 0)
		s += 5;
	if ((len = msd_strlcpy(buf, s, sizeof(buf))) >= sizeof(buf) ||
	    len == 0)
		return -1;
	/* "[2001:db8::]/32": the prefix length follows the bracket. */
	if ((close = strchr(buf, ']')) == NULL ||
	    (close[1] != '\0' && close[1] != '/'))
		return -1;
	memmove(close, close + 1, strlen(close + 1) + 1);
	return netaddr_parse_v6(buf, n);
}

/* Whether addr lies inside net; the address's own width does not matter. */
static int
netaddr_contains(const struct netaddr *net, const struct netaddr *addr)
{
	int	 full = net->bits / 8, rest = net->bits % 8;
	uint8_t	 mask;

	if (net->af != addr->af)
		return 0;
	if (memcmp(net->addr, addr->addr, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (uint8_t)(0xff << (8 - rest));
	return (net->addr[full] & mask) == (addr->addr[full] & mask);
}

/*
 * key is an address, entry an address or network.  Equal text matches
 * first, as in OpenSMTPD; families never mix, so callers hand IPv4-mapped
 * IPv6 clients over as IPv4 text (ruleset.c does).
 */
static int
netaddr_match(const char *key, const char *entry)
{
	struct netaddr	 k, e;

	if (strcmp(key, entry) == 0)
		return 1;
	if (netaddr_parse(key, &k) == -1 || netaddr_parse(entry, &e) == -1)
		return 0;
	return netaddr_contains(&e, &k);
}

/* A plain address (no prefix, every IPv4 octet), as relay src tables hold. */
static int
address_valid(const char *s)
{
	struct netaddr	 n;
	struct in_addr	 a4;

	if (strchr(s, '/') != NULL)
		return 0;
	if (inet_pton(AF_INET, s, &a4) == 1)
		return 1;
	return netaddr_parse(s, &n) == 0 && n.af == AF_INET6;
}

/* ------------------------------------------------------ domain, address */

static int
same_char(char a, char b)
{
	return tolower((unsigned char)a) == tolower((unsigned char)b);
}

/*
 * OpenSMTPD's hostname matching: a run of "*" skips the name up to the
 * next occurrence of the character that follows it, without backtracking.
 * So "*.example.org" matches "mx.example.org" but neither "example.org"
 * nor "a.b.example.org".
 */
static int
domain_match(const char *name, const char *pattern)
{
	const char	*n = name, *p = pattern;

	for (;;) {
		if (*p == '\0' || *n == '\0')
			return *p == '\0' && *n == '\0';
		if (*p != '*') {
			if (!same_char(*p++, *n++))
				return 0;
			continue;
		}
		p += strspn(p, "*");
		while (*n != '\0' && !same_char(*n, *p))
			n++;
	}
}

/* user@domain split at the last '@'; "@domain" has no user, "user" no domain. */
struct addr_parts {
	const char	*user;
	size_t		 ulen;
	const char	*domain;
};

static void
addr_parts(const char *s, struct addr_parts *a)
{
	const char	*at = strrchr(s, '@');

	a->user = s;
	a->ulen = at == NULL ? strlen(s) : (size_t)(at - s);
	a->domain = at == NULL ? "" : at + 1;
}

/*
 * key is an address from the session, entry one of "@" (anything),
 * "@domain", "user" or "user@domain", the domain with "*" wildcards.  An
 * entry user without the sub-address delimiter matches the key's user with
 * its tag ("+tag") removed; an entry that names a tag must match it.
 */
int
mailaddr_match(const char *key, const char *entry)
{
	struct addr_parts	 k, e;
	const char		*tag;

	addr_parts(key, &k);
	addr_parts(entry, &e);
	if (e.ulen == 0 && *e.domain == '\0')
		return 1;
	if (*e.domain != '\0' && !domain_match(k.domain, e.domain))
		return 0;
	if (e.ulen == 0)
		return 1;
	if (table_subaddr_delim != '\0' &&
	    memchr(e.user, table_subaddr_delim, e.ulen) == NULL &&
	    (tag = memchr(k.user, table_subaddr_delim, k.ulen)) != NULL)
		k.ulen = tag - k.user;
	return k.ulen == e.ulen && strncasecmp(k.user, e.user, e.ulen) == 0;
}

/* ----------------------------------------------------------------- regex */

/*
 * OpenSMTPD lowercases regex entries along with every other key, so their
 * letters match either case; compiling with REG_ICASE gives that without
 * turning escapes such as \S into \s.  A leading "(?i)" is accepted and
 * dropped: POSIX has no such syntax and matching ignores case anyway.
 */
static int
regex_compile(regex_t *re, const char *pattern, char *err, size_t errlen)
{
	char	 why[256];
	int	 rc;

	if (strncasecmp(pattern, "(?i)", 4) == 0)
		pattern += 4;
	rc = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB | REG_ICASE);
	if (rc == 0)
		return 0;
	regerror(rc, re, why, sizeof(why));
	snprintf(err, errlen, "%s", why);
	return -1;
}

/* ------------------------------------------------------ in-memory tables */

/* One entry of a static or file table. */
struct mem_entry {
	char		*key;		/* lowercased: what lookups compare */
	char		*raw;		/* as written: regexes compile from it */
	char		*value;		/* NULL in a list */
	size_t		 seq;		/* input order: the last duplicate wins */
	int		 line;		/* in the file; 0 for inline tables */
	regex_t		*re;		/* compiled at open or first use */
	int		 re_failed;
};

struct mem_table {
	enum table_kind	 kind;
	struct mem_entry *ents;
	size_t		 n;
	size_t		 cursor;	/* fetch: the next entry */
	char		*name;		/* for warnings at lookup time */
	char		*path;		/* file tables; NULL inline */
};

static struct mem_table *
mem_new(const struct table *t, const char *path)
{
	struct mem_table	*mt = xcalloc(1, sizeof(*mt));

	mt->kind = TABLE_LIST;
	mt->name = xstrdup(t->name != NULL ? t->name : "(unnamed)");
	mt->path = path != NULL ? xstrdup(path) : NULL;
	return mt;
}

static void
mem_entry_clear(struct mem_entry *e)
{
	free(e->key);
	free(e->raw);
	free(e->value);
	if (e->re != NULL) {
		regfree(e->re);
		free(e->re);
	}
}

static void
mem_free(void *h)
{
	struct mem_table	*mt = h;
	size_t			 i;

	if (mt == NULL)
		return;
	for (i = 0; i < mt->n; i++)
		mem_entry_clear(&mt->ents[i]);
	free(mt->ents);
	free(mt->name);
	free(mt->path);
	free(mt);
}

static void	 mem_err(const struct mem_table *, int, char *, size_t,
		    const char *, ...) __attribute__((format(printf, 5, 6)));
static void	 table_report(const struct table *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/* An error about one entry: "PATH:LINE: " in front for file tables. */
static void
mem_err(const struct mem_table *mt, int line, char *err, size_t errlen,
    const char *fmt, ...)
{
	char	 msg[TABLE_ERR_MAX];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (mt->path != NULL)
		snprintf(err, errlen, "%s:%d: %s", mt->path, line, msg);
	else
		snprintf(err, errlen, "%s", msg);
}

static int
mem_add(struct mem_table *mt, const char *key, const char *value, int line,
    char *err, size_t errlen)
{
	struct mem_entry	*e;
	size_t			 len = strlen(key);

	/* a longer key could never match: lookups refuse such keys */
	if (len >= TABLE_KEY_MAX) {
		mem_err(mt, line, err, errlen, "key \"%.40s...\" is too long "
		    "(%zu bytes, at most %d)", key, len, TABLE_KEY_MAX - 1);
		return -1;
	}
	mt->ents = xreallocarray(mt->ents, mt->n + 1, sizeof(*mt->ents));
	e = &mt->ents[mt->n];
	memset(e, 0, sizeof(*e));
	e->raw = xstrdup(key);
	e->key = xstrdup(key);
	lowercase(e->key);
	e->value = value != NULL ? xstrdup(value) : NULL;
	e->seq = mt->n++;
	e->line = line;
	return 0;
}

/* What the configuration requires of every entry, in input order. */
static int
mem_check(struct mem_table *mt, int flags, char *err, size_t errlen)
{
	struct mem_entry	*e;
	struct netaddr		 n;
	char			 why[256];
	size_t			 i;

	for (i = 0; i < mt->n; i++) {
		e = &mt->ents[i];
		if ((flags & TOPEN_NETADDR) && netaddr_parse(e->key, &n) == -1) {
			mem_err(mt, e->line, err, errlen, "\"%s\" is not an "
			    "IP address or CIDR network", e->raw);
			return -1;
		}
		if (!(flags & TOPEN_REGEX))
			continue;
		e->re = xmalloc(sizeof(*e->re));
		if (regex_compile(e->re, e->raw, why, sizeof(why)) == -1) {
			free(e->re);
			e->re = NULL;
			mem_err(mt, e->line, err, errlen, "invalid regex "
			    "\"%s\": %s", e->raw, why);
			return -1;
		}
	}
	return 0;
}

static int
mem_cmp(const void *a, const void *b)
{
	const struct mem_entry	*x = a, *y = b;
	int			 c;

	if ((c = strcmp(x->key, y->key)) != 0)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Sorted by lowercased key: exact lookups bisect, and pattern services
 * scan in the same order as OpenSMTPD's sorted dictionary, so the first
 * entry to match is the same one.  A key given twice keeps its last value.
 */
static void
mem_sort(struct mem_table *mt)
{
	size_t	 i, out = 0;

	if (mt->n == 0)
		return;
	qsort(mt->ents, mt->n, sizeof(*mt->ents), mem_cmp);
	for (i = 0; i < mt->n; i++) {
		if (i + 1 < mt->n &&
		    strcmp(mt->ents[i].key, mt->ents[i + 1].key) == 0) {
			mem_entry_clear(&mt->ents[i]);
			continue;
		}
		mt->ents[out++] = mt->ents[i];
	}
	mt->n = out;
}

static int
mem_finish(struct mem_table *mt, int flags, char *err, size_t errlen)
{
	if (mem_check(mt, flags, err, errlen) == -1)
		return -1;
	mem_sort(mt);
	return 0;
}

/* A regex entry not compiled at open (no `regex` use seen) compiles now. */
static int
mem_regex_match(const struct mem_table *mt, struct mem_entry *e,
    const char *key)
{
	char	 why[256];

	if (e->re == NULL) {
		if (e->re_failed)
			return 0;
		e->re = xmalloc(sizeof(*e->re));
		if (regex_compile(e->re, e->raw, why, sizeof(why)) == -1) {
			free(e->re);
			e->re = NULL;
			e->re_failed = 1;
			log_warnx("table %s: invalid regex \"%s\": %s",
			    mt->name, e->raw, why);
			return 0;
		}
	}
	return regexec(e->re, key, 0, NULL, 0) == 0;
}

static int
mem_entry_matches(const struct mem_table *mt, struct mem_entry *e,
    enum table_service s, const char *key)
{
	switch (s) {
	case K_DOMAIN:
		return domain_match(key, e->key);
	case K_NETADDR:
		return netaddr_match(key, e->key);
	case K_MAILADDR:
		return mailaddr_match(key, e->key);
	case K_REGEX:
		return mem_regex_match(mt, e, key);
	default:
		return strcmp(key, e->key) == 0;
	}
}

static int
mem_bsearch_cmp(const void *key, const void *ent)
{
	return strcmp(key, ((const struct mem_entry *)ent)->key);
}

/* The entry answering key for service s, or NULL. */
static struct mem_entry *
mem_find(struct mem_table *mt, enum table_service s, const char *key)
{
	size_t	 i;

	switch (s) {
	case K_DOMAIN:
	case K_NETADDR:
	case K_MAILADDR:
	case K_REGEX:
		for (i = 0; i < mt->n; i++)
			if (mem_entry_matches(mt, &mt->ents[i], s, key))
				return &mt->ents[i];
		return NULL;
	default:
		if (mt->n == 0)
			return NULL;
		return bsearch(key, mt->ents, mt->n, sizeof(*mt->ents),
		    mem_bsearch_cmp);
	}
}

static int
mem_match(void *h, enum table_service s, const char *key)
{
	return mem_find(h, s, key) != NULL;
}

/*
 * A list has no values: OpenSMTPD refuses such uses when it loads the
 * configuration (table_open_all does too), so reaching this is a bug in
 * the caller, answered as a temporary failure rather than a wrong value.
 */
static int
mem_lookup(void *h, enum table_service s, const char *key, char *value,
    size_t len)
{
	struct mem_table	*mt = h;
	struct mem_entry	*e;

	if (mt->kind == TABLE_LIST) {
		log_warnx("table %s: a list cannot answer %s lookups",
		    mt->name, table_service_name(s));
		return -1;
	}
	if ((e = mem_find(mt, s, key)) == NULL)
		return 0;
	if (msd_strlcpy(value, e->value, len) >= len) {
		log_warnx("table %s: value for \"%s\" is too long (%zu bytes)",
		    mt->name, key, strlen(e->value));
		return -1;
	}
	return 1;
}

/* A list's entries in turn (`src` addresses); a map's keys. */
static int
mem_fetch(void *h, enum table_service s, char *value, size_t len)
{
	struct mem_table	*mt = h;
	struct mem_entry	*e;

	(void)s;
	if (mt->n == 0)
		return 0;
	e = &mt->ents[mt->cursor++ % mt->n];
	if (msd_strlcpy(value, e->key, len) >= len) {
		log_warnx("table %s: entry \"%s\" is too long", mt->name,
		    e->key);
		return -1;
	}
	return 1;
}

/* ---------------------------------------------------------------- static */

static void *
static_open(struct table *t, int flags, char *err, size_t errlen)
{
	struct mem_table	*mt = mem_new(t, NULL);
	const char		*value;
	size_t			 i;

	mt->kind = t->kind;
	for (i = 0; i < t->nentries; i++) {
		value = t->kind == TABLE_MAP ? t->entries[i].value : NULL;
		if (t->entries[i].key == NULL ||
		    (t->kind == TABLE_MAP && value == NULL)) {
			snprintf(err, errlen, "entry %zu is incomplete", i + 1);
			goto fail;
		}
		if (mem_add(mt, t->entries[i].key, value, 0, err, errlen) == -1)
			goto fail;
	}
	if (mem_finish(mt, flags, err, errlen) == -1)
		goto fail;
	return mt;
fail:
	mem_free(mt);
	return NULL;
}

static const struct table_driver static_driver = {
	.name = "static",
	.has_kind = 1,
	.open = static_open,
	.match = mem_match,
	.lookup = mem_lookup,
	.fetch = mem_fetch,
	.close = mem_free,
};

/* ------------------------------------------------------------------ file */

/* "# @list" before the first entry makes the file a list. */
static int
is_list_marker(const char *comment)
{
	comment += strspn(comment, " \t\r\n\v\f");
	return strcmp(comment, "@list") == 0;
}

static void
trim(char **s)
{
	char	*p = *s;
	size_t	 len;

	while (isspace((unsigned char)*p))
		p++;
	len = strlen(p);
	while (len > 0 && isspace((unsigned char)p[len - 1]))
		p[--len] = '\0';
	*s = p;
}

/*
 * One line of the table(5) text format, as OpenSMTPD reads it.  Lines
 * are trimmed; blank lines and lines starting with '#' are skipped (a '#'
 * later in a line is data: passwords and alias targets may hold one).  The
 * key ends at the first space, tab or ':', or after the ']' of a key
 * starting with '[' (and its "/len" prefix length, for networks): *sep
 * points there, at '\0' for a key alone.  Nothing is cut yet: in a list
 * the whole line is the entry; table_line_value() cuts a map's line.
 */
enum table_line
table_line(char *line, char **key, char **sep)
{
	char	*k = line;

	trim(&k);
	*key = k;
	*sep = NULL;
	if (*k == '\0')
		return TLINE_SKIP;
	if (*k == '#')
		return is_list_marker(k + 1) ? TLINE_LIST : TLINE_SKIP;
	if (*k == '[') {
		if ((*sep = strchr(k, ']')) == NULL)
			return TLINE_BAD;
		(*sep)++;
		*sep += strcspn(*sep, " \t:");
	} else
		*sep = k + strcspn(k, " \t:");
	return TLINE_ENTRY;
}

/* One separator, then blanks: "key : v" gives ": v", as upstream. */
char *
table_line_value(char *sep)
{
	if (*sep != '\0') {
		*sep++ = '\0';
		sep += strspn(sep, " \t");
	}
	return sep;
}

/*
 * The first entry decides: a key alone makes a list, a key with a value a
 * map.  In a map the rest of the line, commas and all, is the value.
 */
static int
file_line(struct mem_table *mt, char *line, int lineno, int *decided,
    char *err, size_t errlen)
{
	char	*key, *sep, *value;

	switch (table_line(line, &key, &sep)) {
	case TLINE_SKIP:
		return 0;
	case TLINE_LIST:
		if (!*decided) {
			mt->kind = TABLE_LIST;
			*decided = 1;
		}
		return 0;
	case TLINE_BAD:
		mem_err(mt, lineno, err, errlen, "no ']' closes \"%.40s\"",
		    key);
		return -1;
	case TLINE_ENTRY:
		break;
	}
	if (!*decided) {
		mt->kind = *sep == '\0' ? TABLE_LIST : TABLE_MAP;
		*decided = 1;
	}
	if (mt->kind == TABLE_LIST)
		return mem_add(mt, key, NULL, lineno, err, errlen);
	if (*(value = table_line_value(sep)) == '\0') {
		mem_err(mt, lineno, err, errlen, "key \"%.40s\" has no value "
		    "in a map", key);
		return -1;
	}
	return mem_add(mt, key, value, lineno, err, errlen);
}

static int
file_read(struct mem_table *mt, FILE *fp, char *err, size_t errlen)
{
	char	*line = NULL;
	size_t	 size = 0;
	ssize_t	 len;
	int	 lineno = 0, decided = 0, rc = 0;

	while ((len = getline(&line, &size, fp)) != -1) {
		lineno++;
		if (memchr(line, '\0', len) != NULL) {
			mem_err(mt, lineno, err, errlen, "NUL byte in line");
			rc = -1;
			break;
		}
		if ((rc = file_line(mt, line, lineno, &decided, err,
		    errlen)) == -1)
			break;
	}
	if (rc == 0 && ferror(fp)) {
		snprintf(err, errlen, "%s: %s", mt->path, strerror(errno));
		rc = -1;
	}
	/* an empty file is a map, as in OpenSMTPD: empty alias files work */
	if (!decided)
		mt->kind = TABLE_MAP;
	free(line);
	return rc;
}

static void *
file_open(struct table *t, int flags, char *err, size_t errlen)
{
	struct mem_table	*mt;
	FILE			*fp;
	int			 rc;

	if (t->config == NULL || t->config[0] != '/') {
		snprintf(err, errlen, "\"%s\" is not an absolute path",
		    t->config != NULL ? t->config : "");
		return NULL;
	}
	if ((fp = fopen(t->config, "re")) == NULL) {
		snprintf(err, errlen, "%s: %s", t->config, strerror(errno));
		return NULL;
	}
	mt = mem_new(t, t->config);
	rc = file_read(mt, fp, err, errlen);
	fclose(fp);
	if (rc == -1 || mem_finish(mt, flags, err, errlen) == -1) {
		mem_free(mt);
		return NULL;
	}
	/* known only now: uses that need a list or a map check it */
	t->kind = mt->kind;
	return mt;
}

static const struct table_driver file_driver = {
	.name = "file",
	.has_kind = 1,
	.open = file_open,
	.match = mem_match,
	.lookup = mem_lookup,
	.fetch = mem_fetch,
	.close = mem_free,
};

/* --------------------------------------------------------- module tables */

/*
 * A table served by a module (db, sqlite, proc, ...).  A load-style module
 * hands its entries over and they are matched here exactly as file and
 * inline tables are; a lookup-style module answers each query.
 */
struct mod_table {
	struct module			*mod;
	const struct msd_table_ops	*ops;
	void				*inst;
	struct mem_table		*mem;	/* load-style: the entries */
	char				*name;
	char				*config;	/* as given to open */
};

struct mod_load {
	struct mem_table	*mt;
	char			*err;
	size_t			 errlen;
	size_t			 with, without;	/* entries with a value or not */
	int			 failed;
};

static int
mod_entry(void *arg, const char *key, const char *value, uint32_t line)
{
	struct mod_load	*l = arg;

	if (key == NULL || l->failed)
		return -1;
	if (value != NULL)
		l->with++;
	else
		l->without++;
	if (mem_add(l->mt, key, value, line > INT_MAX ? 0 : (int)line, l->err,
	    l->errlen) == -1) {
		l->failed = 1;
		return -1;
	}
	return 0;
}

/* The entries, indexed; the table is a list or a map by its values. */
static struct mem_table *
mod_load_entries(struct mod_table *mt, struct table *t, int flags,
    char *err, size_t errlen)
{
	struct msd_result	 res;
	struct mod_load		 l;
	int			 r;

	memset(&l, 0, sizeof(l));
	memset(&res, 0, sizeof(res));
	l.mt = mem_new(t, t->config);
	l.err = err;
	l.errlen = errlen;
	r = mt->ops->load(mt->inst, mod_entry, &l, &res);
	if (r != MSD_OK && !l.failed)
		snprintf(err, errlen, "%s", res.failed ? res.error :
		    "the backend could not load the table");
	result_reset(&res);
	if (r != MSD_OK || l.failed)
		goto fail;
	if (l.with && l.without) {
		snprintf(err, errlen, "%s mixes entries with and without values",
		    t->config != NULL ? t->config : "the table");
		goto fail;
	}
	l.mt->kind = l.without ? TABLE_LIST : TABLE_MAP;
	if (mem_finish(l.mt, flags, err, errlen) == -1)
		goto fail;
	return l.mt;
fail:
	mem_free(l.mt);
	return NULL;
}

static void
mod_free(struct mod_table *mt)
{
	mem_free(mt->mem);
	free(mt->name);
	free(mt->config);
	free(mt);
}

static void
mod_close(void *h)
{
	struct mod_table	*mt = h;

	if (mt == NULL)
		return;
	mt->ops->close(mt->inst);
	mod_free(mt);
}

/*
 * Where OpenSMTPD's table programs live (opensmtpd-extras, the 7.6+
 * table-* repositories); MODSMTPD_TABLE_DIR comes first.
 */
static const char *const table_prog_dirs[] = {
	"/usr/local/libexec/smtpd", "/usr/libexec/smtpd",
	"/usr/libexec/opensmtpd",
};

/* `table x passwd:/etc/mail/passwd` runs table-passwd, as OpenSMTPD does. */
static int
table_program_exists(const char *type)
{
	char		 path[PATH_MAX];
	const char	*dir = getenv("MODSMTPD_TABLE_DIR");
	size_t		 i;

	if (strchr(type, '/') != NULL)
		return 0;
	if (dir != NULL && *dir != '\0' && (size_t)snprintf(path,
	    sizeof(path), "%s/table-%s", dir, type) < sizeof(path) &&
	    access(path, X_OK) == 0)
		return 1;
	for (i = 0; i < sizeof(table_prog_dirs) / sizeof(table_prog_dirs[0]);
	    i++)
		if ((size_t)snprintf(path, sizeof(path), "%s/table-%s",
		    table_prog_dirs[i], type) < sizeof(path) &&
		    access(path, X_OK) == 0)
			return 1;
	return 0;
}

/*
 * The module for a table type: table/TYPE, or else the proc module for a
 * table-TYPE program, which then gets "TYPE:CONFIG" as its config.
 */
static struct module *
mod_for_type(const struct table *t, char **config, char *err, size_t errlen)
{
	char		 path[PATH_MAX];
	const char	*type = t->type != NULL ? t->type : "?";
	const char	*cfg = t->config != NULL ? t->config : "";

	if (module_find(MSD_KIND_TABLE, type, path, sizeof(path)) == 0) {
		*config = xstrdup(cfg);
		return module_load(MSD_KIND_TABLE, type);
	}
	if (strcmp(type, "proc") != 0 && table_program_exists(type) &&
	    module_find(MSD_KIND_TABLE, "proc", path, sizeof(path)) == 0) {
		xasprintf(config, "%s%s%s", type, *cfg ? ":" : "", cfg);
		return module_load(MSD_KIND_TABLE, "proc");
	}
	snprintf(err, errlen, "no table backend \"%s\" (no module table/%s"
	    "%s)", type, type, strcmp(type, "proc") != 0 ?
	    " and no table program" : "");
	return NULL;
}

static void *
mod_open(struct table *t, int flags, char *err, size_t errlen)
{
	struct module		*m;
	struct mod_table	*mt;
	const char		*type = t->type != NULL ? t->type : "?";
	char			*config = NULL;

	if ((m = mod_for_type(t, &config, err, errlen)) == NULL)
		return NULL;
	/* init once per process that uses the module, as for every kind */
	if (m->desc.init != NULL && m->init_pid != getpid()) {
		if (m->desc.init(m->host) != MSD_OK) {
			snprintf(err, errlen, "table backend \"%s\" failed to"
			    " start (see the log)", type);
			free(config);
			return NULL;
		}
		m->init_pid = getpid();
	}
	mt = xcalloc(1, sizeof(*mt));
	mt->mod = m;
	mt->ops = module_ops(m, sizeof(*mt->ops));
	mt->name = xstrdup(t->name != NULL ? t->name : "");
	mt->config = config;
	if (mt->ops == NULL ||
	    (mt->ops->load == NULL && mt->ops->lookup == NULL)) {
		snprintf(err, errlen, "table backend \"%s\" serves no lookups",
		    type);
		mod_free(mt);
		return NULL;
	}
	if (mt->ops->open(m->host, mt->name, mt->config, &mt->inst) !=
	    MSD_OK) {
		snprintf(err, errlen, "table backend \"%s\" cannot open \"%s\""
		    " (see the log)", type, mt->config);
		mod_free(mt);
		return NULL;
	}
	if (mt->ops->load != NULL) {
		if ((mt->mem = mod_load_entries(mt, t, flags, err,
		    errlen)) == NULL) {
			mod_close(mt);
			return NULL;
		}
		t->kind = mt->mem->kind;
	}
	return mt;
}

/* A lookup-style query: 1, 0 or -1; the value, if any, into value. */
static int
mod_query(struct mod_table *mt, enum table_service s, const char *key,
    char *value, size_t len)
{
	struct msd_result	 res;
	int			 r, rc;

	memset(&res, 0, sizeof(res));
	r = mt->ops->lookup(mt->inst, s, key, &res);
	if (r == MSD_OK) {
		rc = 1;
		if (value != NULL && (res.value == NULL ||
		    msd_strlcpy(value, res.value, len) >= len)) {
			log_warnx("table %s: %s value for \"%s\" %s", mt->name,
			    table_service_name(s), key, res.value == NULL ?
			    "missing" : "too long");
			rc = -1;
		}
	} else if (r == MSD_NOTFOUND)
		rc = 0;
	else {
		log_warnx("table %s: %s lookup of \"%s\" failed: %s", mt->name,
		    table_service_name(s), key, res.failed ? res.error :
		    "no reason given");
		rc = -1;
	}
	result_reset(&res);
	return rc;
}

static int
mod_match(void *h, enum table_service s, const char *key)
{
	struct mod_table	*mt = h;

	if (mt->mem != NULL)
		return mem_match(mt->mem, s, key);
	return mod_query(mt, s, key, NULL, 0);
}

static int
mod_lookup(void *h, enum table_service s, const char *key, char *value,
    size_t len)
{
	struct mod_table	*mt = h;

	if (mt->mem != NULL)
		return mem_lookup(mt->mem, s, key, value, len);
	return mod_query(mt, s, key, value, len);
}

static int
mod_fetch(void *h, enum table_service s, char *value, size_t len)
{
	struct mod_table	*mt = h;
	struct msd_result	 res;
	int			 r, rc;

	if (mt->mem != NULL)
		return mem_fetch(mt->mem, s, value, len);
	if (mt->ops->fetch == NULL) {
		log_warnx("table %s: the backend cannot list %s entries",
		    mt->name, table_service_name(s));
		return -1;
	}
	memset(&res, 0, sizeof(res));
	r = mt->ops->fetch(mt->inst, s, &res);
	if (r == MSD_OK && res.value != NULL &&
	    msd_strlcpy(value, res.value, len) < len)
		rc = 1;
	else if (r == MSD_NOTFOUND)
		rc = 0;
	else {
		log_warnx("table %s: %s fetch failed: %s", mt->name,
		    table_service_name(s), res.failed ? res.error :
		    r == MSD_OK ? "no value or too long" : "no reason given");
		rc = -1;
	}
	result_reset(&res);
	return rc;
}

/* Load-style modules know list from map once open; lookup-style never. */
static const struct table_driver modload_driver = {
	.name = "module",
	.has_kind = 1,
	.open = mod_open,
	.match = mod_match,
	.lookup = mod_lookup,
	.fetch = mod_fetch,
	.close = mod_close,
};

static const struct table_driver modlookup_driver = {
	.name = "module",
	.has_kind = 0,
	.open = mod_open,
	.match = mod_match,
	.lookup = mod_lookup,
	.fetch = mod_fetch,
	.close = mod_close,
};

/* ------------------------------------------------------------ the layer */

static const struct table_driver *const drivers[] = {
	&static_driver,
	&file_driver,
};

/* The type as written, or implied: a path alone means "file". */
static const char *
table_type(const struct table *t)
{
	if (t->type != NULL)
		return t->type;
	return t->config != NULL ? "file" : "static";
}

static const struct table_driver *
driver_find(const char *type)
{
	size_t	 i;

	for (i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (strcmp(drivers[i]->name, type) == 0)
			return drivers[i];
	return NULL;
}

/*
 * One line about a table, at the place it was declared.  A table the
 * parser made for a literal has no name worth showing: its place is the
 * rule's.
 */
static void
table_report(const struct table *t, const char *fmt, ...)
{
	char	 msg[TABLE_ERR_MAX];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (t->anon)
		log_warnx("%s:%d: %s", t->file != NULL ? t->file : "?",
		    t->line, msg);
	else
		log_warnx("%s:%d: table %s: %s", t->file != NULL ? t->file :
		    "?", t->line, t->name != NULL ? t->name : "?", msg);
}

static int
table_open_one(struct table *t, int flags)
{
	const struct table_driver	*drv;
	char				 err[TABLE_ERR_MAX];
	void				*h;

	/* Built in: inline and file tables; every other type is a module. */
	if ((drv = driver_find(table_type(t))) == NULL)
		drv = &modload_driver;
	err[0] = '\0';
	if ((h = drv->open(t, flags, err, sizeof(err))) == NULL) {
		table_report(t, "%s", err[0] != '\0' ? err : "cannot open");
		return -1;
	}
	if (drv == &modload_driver && ((struct mod_table *)h)->mem == NULL)
		drv = &modlookup_driver;
	t->backend = xcalloc(1, sizeof(*t->backend));
	t->backend->drv = drv;
	t->backend->handle = h;
	t->backend->flags = flags;
	return 0;
}

/*
 * Reads a table's source again.  The new contents replace the old only
 * once complete, so lookups never see half a table; on error the old
 * contents stay and the reason is logged at the table's declaration.
 */
int
table_update_table(struct table *t)
{
	struct table_backend	*b = t->backend;
	struct mod_table	*mt;
	enum table_kind		 kind = t->kind;
	char			 err[TABLE_ERR_MAX];
	void			*h;

	if (b->drv == &static_driver)
		return 0;
	if (b->drv == &modlookup_driver) {
		mt = b->handle;
		if (mt->ops->update == NULL ||
		    mt->ops->update(mt->inst) == MSD_OK)
			return 0;
		table_report(t, "update failed, the old contents stay");
		return -1;
	}
	err[0] = '\0';
	if ((h = b->drv->open(t, b->flags, err, sizeof(err))) == NULL) {
		t->kind = kind;
		table_report(t, "%s; the old contents stay",
		    err[0] ? err : "cannot read it");
		return -1;
	}
	if (t->kind != kind) {
		b->drv->close(h);
		t->kind = kind;
		table_report(t, "a list became a map or the reverse; the old"
		    " contents stay");
		return -1;
	}
	b->drv->close(b->handle);
	b->handle = h;
	return 0;
}

/* Every table, or the one named; the number that could not be updated. */
int
table_update_all(struct config *conf, const char *name)
{
	struct table	*t;
	int		 failed = 0;

	TAILQ_FOREACH(t, &conf->tables, entry)
		if (name != NULL && (t->name == NULL ||
		    strcmp(t->name, name) != 0))
			continue;
		else if (t->backend != NULL && t->backend->worker != NULL)
			table_async_update(t->backend->worker);
		else if (t->backend != NULL && table_update_table(t) == -1)
			failed++;
	return failed;
}

/* A lookup-style module that may block answers from a worker process. */
static int
table_may_block(const struct table *t)
{
	const struct mod_table	*mt;

	if (t->backend == NULL || t->backend->drv != &modlookup_driver)
		return 0;
	mt = t->backend->handle;
	return (mt->mod->desc.flags & MSD_MF_MAY_BLOCK) != 0;
}

/*
 * After fork: a lookup-style backend (a database connection, a child
 * process) must not be shared with the process that opened it, so this
 * process opens its own.  The inherited instance is left alone: it
 * belongs to the parent.
 */
int
table_reopen_one(struct table *t)
{
	char	 err[TABLE_ERR_MAX];
	void	*h;

	err[0] = '\0';
	if ((h = mod_open(t, t->backend->flags, err, sizeof(err))) == NULL) {
		table_report(t, "%s", err[0] ? err : "cannot open");
		return -1;
	}
	t->backend->handle = h;
	return 0;
}

/* In a worker: the table is served here, not through a worker. */
void
table_detach_worker(struct table *t)
{
	if (t->backend != NULL)
		t->backend->worker = NULL;
}

int
table_reopen_lookups(struct config *conf)
{
	struct table	*t;

	TAILQ_FOREACH(t, &conf->tables, entry) {
		if (t->backend == NULL ||
		    t->backend->drv != &modlookup_driver)
			continue;
		if (table_may_block(t))
			t->backend->worker = table_async_spawn(t);
		else if (table_reopen_one(t) == -1)
			return -1;
	}
	return 0;
}

void
table_close(struct table *t)
{
	if (t == NULL || t->backend == NULL)
		return;
	t->backend->drv->close(t->backend->handle);
	free(t->backend);
	t->backend = NULL;
}

/* Lowercased into buf, as OpenSMTPD does for every service; -1 if too long. */
static int
table_key(const struct table *t, const char *key, char *buf, size_t len)
{
	if (t == NULL || key == NULL)
		return -1;
	if (t->backend == NULL) {
		log_warnx("table %s: used before it was opened",
		    t->name != NULL ? t->name : "?");
		return -1;
	}
	if (msd_strlcpy(buf, key, len) >= len) {
		log_warnx("table %s: lookup key too long (%zu bytes)",
		    t->name != NULL ? t->name : "?", strlen(key));
		return -1;
	}
	lowercase(buf);
	return 0;
}

int
table_match(struct table *t, enum table_service s, const char *key)
{
	char	 lkey[TABLE_KEY_MAX];

	if (table_key(t, key, lkey, sizeof(lkey)) == -1)
		return -1;
	if (t->backend->worker != NULL)
		return table_async_query(t->backend->worker, TQ_MATCH, s, lkey, NULL,
		    0);
	return t->backend->drv->match(t->backend->handle, s, lkey);
}

int
table_lookup(struct table *t, enum table_service s, const char *key,
    char *value, size_t len)
{
	char	 lkey[TABLE_KEY_MAX];

	if (value == NULL || len == 0)
		return -1;
	if (table_key(t, key, lkey, sizeof(lkey)) == -1)
		return -1;
	if (t->backend->worker != NULL)
		return table_async_query(t->backend->worker, TQ_LOOKUP, s, lkey, value,
		    len);
	return t->backend->drv->lookup(t->backend->handle, s, lkey, value,
	    len);
}

/*
 * The next entry of a round-robin service (`src` addresses).  nth only
 * names the answer in a table cache, so a walk that runs again finds
 * the ones it had.
 */
int
table_fetch(struct table *t, enum table_service s, unsigned nth,
    char *value, size_t len)
{
	char	 key[16];

	if (t == NULL || t->backend == NULL || value == NULL || len == 0)
		return -1;
	if (t->backend->worker != NULL) {
		snprintf(key, sizeof(key), "%u", nth);
		return table_async_query(t->backend->worker, TQ_FETCH, s, key,
		    value, len);
	}
	return t->backend->drv->fetch(t->backend->handle, s, value, len);
}

const char *
table_service_name(enum table_service s)
{
	switch (s) {
	case K_NONE:		return "NONE";
	case K_ALIAS:		return "ALIAS";
	case K_DOMAIN:		return "DOMAIN";
	case K_CREDENTIALS:	return "CREDENTIALS";
	case K_NETADDR:		return "NETADDR";
	case K_USERINFO:	return "USERINFO";
	case K_SOURCE:		return "SOURCE";
	case K_MAILADDR:	return "MAILADDR";
	case K_ADDRNAME:	return "ADDRNAME";
	case K_MAILADDRMAP:	return "MAILADDRMAP";
	case K_RELAYHOST:	return "RELAYHOST";
	case K_STRING:		return "STRING";
	case K_REGEX:		return "REGEX";
	}
	return "???";
}

/*
 * Whether one literal can serve the service, so the parser can refuse
 * `from src 10.0.0.0/33` or a regex that does not compile where it is
 * written.  1: valid; 0: not.
 */
int
table_check_entry(enum table_service s, const char *entry)
{
	struct netaddr	 n;
	regex_t		 re;
	char		 why[256];

	if (entry == NULL || *entry == '\0' || strlen(entry) >= TABLE_KEY_MAX)
		return 0;
	switch (s) {
	case K_NETADDR:
		return netaddr_parse(entry, &n) == 0;
	case K_SOURCE:
		return address_valid(entry);
	case K_REGEX:
		if (regex_compile(&re, entry, why, sizeof(why)) == -1)
			return 0;
		regfree(&re);
		return 1;
	default:
		return 1;
	}
}

/* ------------------------------------------------------------------ uses */

/* One place the configuration uses a table, and what it needs there. */
struct table_use {
	struct table		*t;
	enum table_service	 svc;
	int			 kind;		/* TABLE_LIST/MAP; -1: either */
	const char		*what;		/* for messages: "alias" */
	const char		*file;
	int			 line;
};

struct table_uses {
	struct table_use	*v;
	size_t			 n;
};

static void
use_add(struct table_uses *u, struct table *t, enum table_service svc,
    int kind, const char *what, const char *file, int line)
{
	if (t == NULL)
		return;
	u->v = xreallocarray(u->v, u->n + 1, sizeof(*u->v));
	u->v[u->n].t = t;
	u->v[u->n].svc = svc;
	u->v[u->n].kind = kind;
	u->v[u->n].what = what;
	u->v[u->n].file = file;
	u->v[u->n].line = line;
	u->n++;
}

/* Match conditions: OpenSMTPD accepts only lists (or dynamic backends). */
static void
uses_rule(struct table_uses *u, const struct rule *r)
{
	static const struct {
		enum table_service	 svc;
		const char		*what;
	} conds[C_NKINDS] = {
		[C_FROM_SRC] =		{ K_NETADDR,	"from src" },
		[C_FROM_AUTH] =		{ K_STRING,	"from auth" },
		[C_FROM_RDNS] =		{ K_DOMAIN,	"from rdns" },
		[C_FROM_MAIL_FROM] =	{ K_MAILADDR,	"from mail-from" },
		[C_FOR_DOMAIN] =	{ K_DOMAIN,	"for domain" },
		[C_FOR_RCPT_TO] =	{ K_MAILADDR,	"for rcpt-to" },
		[C_AUTH] =		{ K_STRING,	"auth" },
		[C_HELO] =		{ K_DOMAIN,	"helo" },
		[C_MAIL_FROM] =		{ K_MAILADDR,	"mail-from" },
		[C_RCPT_TO] =		{ K_MAILADDR,	"rcpt-to" },
		[C_TAG] =		{ K_STRING,	"tag" },
	};
	const struct cond	*c;
	size_t			 i;

	for (i = 0; i < SLOT_NSLOTS; i++) {
		c = &r->conds[i];
		if (!r->set[i] || c->table == NULL || c->kind >= C_NKINDS ||
		    conds[c->kind].what == NULL)
			continue;
		use_add(u, c->table, c->regex ? K_REGEX : conds[c->kind].svc,
		    TABLE_LIST, conds[c->kind].what, r->file, r->line);
	}
}

/* Filter conditions: OpenSMTPD checks no kind there. */
static void
uses_filter(struct table_uses *u, const struct filter *f)
{
	static const enum table_service	 svc[FC_NKINDS] = {
		[FC_RDNS] = K_DOMAIN,
		[FC_SRC] = K_NETADDR,
		[FC_HELO] = K_DOMAIN,
		[FC_AUTH] = K_STRING,
		[FC_MAIL_FROM] = K_MAILADDR,
		[FC_RCPT_TO] = K_MAILADDR,
	};
	const struct filter_cond	*c;
	size_t				 i;

	for (i = 0; i < f->nconds; i++) {
		c = &f->conds[i];
		if (c->table == NULL || c->kind >= FC_NKINDS)
			continue;
		use_add(u, c->table, c->regex ? K_REGEX : svc[c->kind], -1,
		    "filter", f->file, f->line);
	}
}

static void
uses_action(struct table_uses *u, const struct action *a)
{
	use_add(u, a->alias, K_ALIAS, TABLE_MAP, "alias", a->file, a->line);
	use_add(u, a->virtual, K_ALIAS, TABLE_MAP, "virtual", a->file,
	    a->line);
	use_add(u, a->userbase, K_USERINFO, TABLE_MAP, "userbase", a->file,
	    a->line);
	use_add(u, a->helo_src, K_ADDRNAME, TABLE_MAP, "helo-src", a->file,
	    a->line);
	use_add(u, a->domain, K_RELAYHOST, TABLE_MAP, "domain", a->file,
	    a->line);
	use_add(u, a->auth, K_CREDENTIALS, TABLE_MAP, "auth", a->file,
	    a->line);
	use_add(u, a->src, K_SOURCE, TABLE_LIST, "src", a->file, a->line);
}

static void
uses_listen(struct table_uses *u, const struct listen_conf *lc)
{
	if (lc == NULL)
		return;
	use_add(u, lc->hostnames, K_ADDRNAME, TABLE_MAP, "hostnames",
	    lc->file, lc->line);
	use_add(u, lc->auth, K_CREDENTIALS, TABLE_MAP, "auth", lc->file,
	    lc->line);
	use_add(u, lc->senders, K_MAILADDRMAP, TABLE_MAP, "senders",
	    lc->file, lc->line);
}

static void
uses_collect(const struct config *conf, struct table_uses *u)
{
	const struct rule	*r;
	const struct filter	*f;
	const struct action	*a;
	const struct listen_conf *lc;

	TAILQ_FOREACH(r, &conf->rules, entry)
		uses_rule(u, r);
	TAILQ_FOREACH(f, &conf->filters, entry)
		if (f->type == F_BUILTIN)
			uses_filter(u, f);
	TAILQ_FOREACH(a, &conf->actions, entry)
		uses_action(u, a);
	TAILQ_FOREACH(lc, &conf->listen_confs, entry)
		uses_listen(u, lc);
	uses_listen(u, conf->socket_listener);
}

/* What the driver must check at open, from every use of the table. */
static int
uses_flags(const struct table_uses *u, const struct table *t)
{
	size_t	 i;
	int	 flags = 0;

	for (i = 0; i < u->n; i++) {
		if (u->v[i].t != t)
			continue;
		if (u->v[i].svc == K_REGEX)
			flags |= TOPEN_REGEX;
		if (u->v[i].svc == K_NETADDR)
			flags |= TOPEN_NETADDR;
	}
	return flags;
}

static const char *
kind_name(int kind)
{
	return kind == TABLE_MAP ? "map" : "list";
}

/*
 * OpenSMTPD refuses, when it loads the configuration, a map where a list
 * is needed and the reverse; a file table's kind is known only once read.
 */
static int
uses_check(const struct table_uses *u)
{
	const struct table_use	*x;
	size_t			 i;

	for (i = 0; i < u->n; i++) {
		x = &u->v[i];
		if (x->kind == -1 || x->t->backend == NULL ||
		    !x->t->backend->drv->has_kind || (int)x->t->kind == x->kind)
			continue;
		if (x->t->anon && x->t->nentries == 1)
			log_warnx("%s:%d: \"%s\" cannot serve \"%s\": a "
			    "table of key/value pairs is needed",
			    x->file != NULL ? x->file : "?", x->line,
			    x->t->entries[0].key, x->what);
		else
			log_warnx("%s:%d: table %s cannot serve \"%s\": it "
			    "is a %s, not a %s",
			    x->file != NULL ? x->file : "?", x->line,
			    x->t->name != NULL ? x->t->name : "?", x->what,
			    kind_name(x->t->kind), kind_name(x->kind));
		return -1;
	}
	return 0;
}

/*
 * Opens every table not yet open.  On the first error, prints one line,
 * closes what this call opened and returns -1: no table is left half
 * loaded, and a failed call leaves the configuration as it found it.
 */
int
table_open_all(struct config *conf)
{
	struct table_uses	 u = { NULL, 0 };
	struct table		**opened = NULL, *t;
	size_t			 nopened = 0, i;
	int			 rc = 0;

	table_subaddr_delim = conf->subaddr_delim != '\0' ?
	    conf->subaddr_delim : DEFAULT_SUBADDR_DELIM;
	uses_collect(conf, &u);
	TAILQ_FOREACH(t, &conf->tables, entry) {
		if (t->backend != NULL)
			continue;
		if ((rc = table_open_one(t, uses_flags(&u, t))) == -1)
			break;
		opened = xreallocarray(opened, nopened + 1, sizeof(*opened));
		opened[nopened++] = t;
	}
	if (rc == 0)
		rc = uses_check(&u);
	if (rc == -1)
		for (i = 0; i < nopened; i++)
			table_close(opened[i]);
	free(opened);
	free(u.v);
	return rc;
}

/* ---------------------------------------------------------- user lookup */

/* "uid:gid:/home" as table(5) gives userinfo values. */
static int
userinfo_parse(const char *v, struct userinfo *ui)
{
	char		*end;
	unsigned long	 uid, gid;

	errno = 0;
	uid = strtoul(v, &end, 10);
	if (end == v || *end != ':' || errno || uid > UINT32_MAX - 1)
		return -1;
	v = end + 1;
	gid = strtoul(v, &end, 10);
	if (end == v || *end != ':' || errno || gid > UINT32_MAX - 1)
		return -1;
	v = end + 1;
	if (v[0] != '/' || msd_strlcpy(ui->home, v, sizeof(ui->home)) >=
	    sizeof(ui->home))
		return -1;
	ui->uid = uid;
	ui->gid = gid;
	return 0;
}

int
user_lookup(struct table *userbase, const char *name, struct userinfo *ui)
{
	const struct passwd	*pw;
	char			 v[PATH_MAX + 64];
	int			 r;

	memset(ui, 0, sizeof(*ui));
	if (name == NULL || msd_strlcpy(ui->name, name, sizeof(ui->name)) >=
	    sizeof(ui->name) || name[0] == '\0')
		return 0;
	if (userbase != NULL) {
		if ((r = table_lookup(userbase, K_USERINFO, name, v,
		    sizeof(v))) != 1)
			return r;
		if (userinfo_parse(v, ui) == -1) {
			log_warnx("table %s: bad userinfo for %s: \"%s\""
			    " (expected uid:gid:/home)", userbase->name, name,
			    v);
			return -1;
		}
		return 1;
	}
	errno = 0;
	if ((pw = getpwnam(name)) == NULL)
		return errno == 0 || errno == ENOENT || errno == ESRCH ||
		    errno == EBADF || errno == EPERM ? 0 : -1;
	if (msd_strlcpy(ui->home, pw->pw_dir, sizeof(ui->home)) >=
	    sizeof(ui->home))
		return -1;
	ui->uid = pw->pw_uid;
	ui->gid = pw->pw_gid;
	return 1;
}
