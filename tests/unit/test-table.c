/*
 * test-table.c - the table layer: static and file tables, every service's
 * matching rules (wildcards, mail addresses, CIDR networks, regexes, case),
 * map lookups, the table(5) file format, and the one-line errors at open
 * for malformed files, bad regexes, bad networks, wrong kinds and backends
 * that do not exist yet.  Fixtures live in tests/unit/table/.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parse.h"
#include "tap.h"

#define TABLEDIR	TOP_SRCDIR "/tests/unit/table/"
#define CONF		"smtpd.conf"

static char	 errbuf[4096];

/*
 * A table as the parser leaves it.  kv holds keys for a list, key/value
 * pairs for a map, NULL-terminated; type NULL means static.
 */
static struct table *
mk_table(struct config *conf, const char *name, const char *type,
    const char *path, enum table_kind kind, const char *const *kv, int line)
{
	struct table	*t = xcalloc(1, sizeof(*t));
	size_t		 step = kind == TABLE_MAP ? 2 : 1;

	t->name = xstrdup(name);
	t->type = xstrdup(type != NULL ? type : "static");
	t->config = path != NULL ? xstrdup(path) : NULL;
	t->kind = kind;
	t->file = xstrdup(CONF);
	t->line = line;
	for (; kv != NULL && kv[0] != NULL; kv += step) {
		t->entries = xreallocarray(t->entries, t->nentries + 1,
		    sizeof(*t->entries));
		t->entries[t->nentries].key = xstrdup(kv[0]);
		t->entries[t->nentries].value = step == 2 ? xstrdup(kv[1]) :
		    NULL;
		t->nentries++;
	}
	TAILQ_INSERT_TAIL(&conf->tables, t, entry);
	return t;
}

static struct table *
mk_file(struct config *conf, const char *name, const char *fixture, int line)
{
	char	 path[PATH_MAX];

	snprintf(path, sizeof(path), "%s%s", TABLEDIR, fixture);
	return mk_table(conf, name, "file", path, TABLE_LIST, NULL, line);
}

/* A literal in a rule, as the parser makes it. */
static struct table *
mk_anon(struct config *conf, const char *value, int line)
{
	const char	*kv[] = { value, NULL };
	struct table	*t;

	t = mk_table(conf, "<anon:1>", NULL, NULL, TABLE_LIST, kv, line);
	t->anon = 1;
	return t;
}

static struct rule *
mk_rule(struct config *conf, enum cond_slot slot, enum cond_kind kind,
    int regex, struct table *t, int line)
{
	struct rule	*r = xcalloc(1, sizeof(*r));

	r->set[slot] = 1;
	r->conds[slot].kind = kind;
	r->conds[slot].regex = regex;
	r->conds[slot].table = t;
	r->file = xstrdup(CONF);
	r->line = line;
	TAILQ_INSERT_TAIL(&conf->rules, r, entry);
	return r;
}

static struct action *
mk_action(struct config *conf, struct table *alias, int line)
{
	struct action	*a = xcalloc(1, sizeof(*a));

	a->name = xstrdup("local");
	a->alias = alias;
	a->file = xstrdup(CONF);
	a->line = line;
	TAILQ_INSERT_TAIL(&conf->actions, a, entry);
	return a;
}

/* table_open_all with stderr captured in errbuf. */
static int
open_capture(struct config *conf)
{
	FILE	*tmp;
	size_t	 n;
	int	 saved, rc;

	fflush(stderr);
	if ((tmp = tmpfile()) == NULL || (saved = dup(STDERR_FILENO)) == -1)
		fatal("capture");
	dup2(fileno(tmp), STDERR_FILENO);
	rc = table_open_all(conf);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(errbuf, 1, sizeof(errbuf) - 1, tmp);
	errbuf[n] = '\0';
	fclose(tmp);
	return rc;
}

/* The open failed with exactly the line want. */
static void
open_fails(struct config *conf, const char *want, const char *what)
{
	char	 line[1024];
	int	 rc;

	snprintf(line, sizeof(line), "%s\n", want);
	rc = open_capture(conf);
	ok(rc == -1 && strcmp(errbuf, line) == 0, "%s", what);
	if (strcmp(errbuf, line) != 0)
		printf("#   got:  %s#   want: %s", errbuf, line);
}

static int
lookup_is(struct table *t, enum table_service s, const char *key,
    const char *want)
{
	char	 buf[256];

	return table_lookup(t, s, key, buf, sizeof(buf)) == 1 &&
	    strcmp(buf, want) == 0;
}

static void
test_names(void)
{
	ok(strcmp(table_service_name(K_ALIAS), "ALIAS") == 0 &&
	    strcmp(table_service_name(K_NETADDR), "NETADDR") == 0 &&
	    strcmp(table_service_name(K_REGEX), "REGEX") == 0 &&
	    strcmp(table_service_name(K_MAILADDRMAP), "MAILADDRMAP") == 0,
	    "service names");
	ok(strcmp(table_service_name((enum table_service)0x7000), "???") == 0,
	    "unknown service has a name");
}

static void
test_domain(void)
{
	const char	*kv[] = { "example.org", "*.Example.NET", "mx*.test",
	    NULL };
	const char	*star[] = { "*", NULL };
	struct config	*conf = config_new();
	struct table	*t, *s;

	t = mk_table(conf, "domains", NULL, NULL, TABLE_LIST, kv, 1);
	ok(table_match(t, K_DOMAIN, "example.org") == -1,
	    "a table used before open is a temporary failure");
	ok(table_open_all(conf) == 0, "static domain table opens");
	ok(table_match(t, K_DOMAIN, "Example.ORG") == 1,
	    "domain matches without regard to case");
	ok(table_match(t, K_DOMAIN, "example.org.") == 0 &&
	    table_match(t, K_DOMAIN, "xexample.org") == 0 &&
	    table_match(t, K_DOMAIN, "") == 0, "near misses do not match");
	ok(table_match(t, K_DOMAIN, "mx.example.org") == 0,
	    "a plain entry does not match subdomains");
	ok(table_match(t, K_DOMAIN, "a.example.net") == 1 &&
	    table_match(t, K_DOMAIN, "MX.EXAMPLE.NET") == 1,
	    "*.domain matches one label, any case");
	ok(table_match(t, K_DOMAIN, "example.net") == 0,
	    "*.domain does not match the domain itself");
	ok(table_match(t, K_DOMAIN, "a.b.example.net") == 0,
	    "*.domain does not match two labels (no backtracking)");
	ok(table_match(t, K_DOMAIN, "mx1.test") == 1 &&
	    table_match(t, K_DOMAIN, "mx.test") == 1 &&
	    table_match(t, K_DOMAIN, "m.test") == 0,
	    "a star inside a label");
	s = mk_table(conf, "star", NULL, NULL, TABLE_LIST, star, 2);
	ok(table_open_all(conf) == 0 && s->backend != NULL,
	    "a later open_all opens only the new table");
	ok(table_match(s, K_DOMAIN, "anything.at.all") == 1 &&
	    table_match(s, K_DOMAIN, "") == 0,
	    "\"*\" matches any name but the empty one");
	config_free(conf);
}

static void
test_string(void)
{
	const char	*kv[] = { "Tag1", "other", NULL };
	struct config	*conf = config_new();
	struct table	*t;

	t = mk_table(conf, "tags", NULL, NULL, TABLE_LIST, kv, 1);
	ok(table_open_all(conf) == 0, "string table opens");
	ok(table_match(t, K_STRING, "tag1") == 1 &&
	    table_match(t, K_STRING, "TAG1") == 1,
	    "strings match without regard to case, as OpenSMTPD lowercases");
	ok(table_match(t, K_STRING, "tag") == 0 &&
	    table_match(t, K_STRING, "tag1 ") == 0 &&
	    table_match(t, K_STRING, "*") == 0, "strings match whole");
	ok(table_match(t, K_CREDENTIALS, "other") == 1,
	    "other services compare whole keys too");
	config_free(conf);
}

static void
test_mailaddr(void)
{
	const char	*kv[] = { "user", "@example.org", "john@*.example.com",
	    "Admin@Example.NET", NULL };
	const char	*tagged[] = { "bob+tag@example.com", "alice@example.com",
	    NULL };
	const char	*all[] = { "@", NULL };
	struct config	*conf = config_new();
	struct table	*t, *tt, *ta;

	t = mk_table(conf, "addrs", NULL, NULL, TABLE_LIST, kv, 1);
	tt = mk_table(conf, "tagged", NULL, NULL, TABLE_LIST, tagged, 2);
	ta = mk_table(conf, "all", NULL, NULL, TABLE_LIST, all, 3);
	ok(table_open_all(conf) == 0, "mailaddr tables open");
	ok(table_match(t, K_MAILADDR, "user@anywhere.test") == 1 &&
	    table_match(t, K_MAILADDR, "USER@x") == 1 &&
	    table_match(t, K_MAILADDR, "user") == 1,
	    "a user entry matches that user at any domain");
	ok(table_match(t, K_MAILADDR, "user+list@x.test") == 1,
	    "a user entry ignores the key's tag");
	ok(table_match(t, K_MAILADDR, "users@x.test") == 0,
	    "user entries match whole");
	ok(table_match(t, K_MAILADDR, "someone@example.org") == 1 &&
	    table_match(t, K_MAILADDR, "x@EXAMPLE.ORG") == 1,
	    "an @domain entry matches any user there");
	ok(table_match(t, K_MAILADDR, "someone@sub.example.org") == 0 &&
	    table_match(t, K_MAILADDR, "example.org") == 0,
	    "@domain does not match subdomains or a bare word");
	ok(table_match(t, K_MAILADDR, "john@mail.example.com") == 1 &&
	    table_match(t, K_MAILADDR, "john@example.com") == 0 &&
	    table_match(t, K_MAILADDR, "jane@mail.example.com") == 0,
	    "user@*.domain");
	ok(table_match(t, K_MAILADDR, "admin@example.net") == 1 &&
	    table_match(t, K_MAILADDR, "ADMIN@EXAMPLE.NET") == 1,
	    "user@domain entries are case-insensitive");
	ok(table_match(tt, K_MAILADDR, "bob+tag@example.com") == 1 &&
	    table_match(tt, K_MAILADDR, "bob@example.com") == 0 &&
	    table_match(tt, K_MAILADDR, "bob+other@example.com") == 0,
	    "an entry with a tag must match it");
	ok(table_match(tt, K_MAILADDR, "alice+x@example.com") == 1,
	    "an entry without a tag matches tagged keys");
	ok(table_match(ta, K_MAILADDR, "anyone@anywhere") == 1 &&
	    table_match(ta, K_MAILADDR, "") == 1, "\"@\" matches everything");
	config_free(conf);

	conf = config_new();
	conf->subaddr_delim = '-';
	tt = mk_table(conf, "tagged", NULL, NULL, TABLE_LIST, tagged, 2);
	ok(table_open_all(conf) == 0 &&
	    table_match(tt, K_MAILADDR, "alice-x@example.com") == 1 &&
	    table_match(tt, K_MAILADDR, "alice+x@example.com") == 0,
	    "the configured sub-address delimiter is used");
	config_free(conf);
}

static void
test_netaddr(void)
{
	const char	*kv[] = { "192.168.1.128/25", "10.0.0.1", "172.16",
	    "2001:DB8::/32", "[::1]", "IPv6:fe80::/10", NULL };
	const char	*any4[] = { "0.0.0.0/0", NULL };
	const char	*any6[] = { "::/0", NULL };
	const char	*host6[] = { "2001:db8::1/128", NULL };
	struct config	*conf = config_new();
	struct table	*t, *a4, *a6, *h6;

	t = mk_table(conf, "nets", NULL, NULL, TABLE_LIST, kv, 1);
	a4 = mk_table(conf, "any4", NULL, NULL, TABLE_LIST, any4, 2);
	a6 = mk_table(conf, "any6", NULL, NULL, TABLE_LIST, any6, 3);
	h6 = mk_table(conf, "host6", NULL, NULL, TABLE_LIST, host6, 4);
	mk_rule(conf, SLOT_FROM, C_FROM_SRC, 0, t, 10);
	ok(table_open_all(conf) == 0, "netaddr tables open");
	ok(table_match(t, K_NETADDR, "192.168.1.200") == 1 &&
	    table_match(t, K_NETADDR, "192.168.1.128") == 1 &&
	    table_match(t, K_NETADDR, "192.168.1.255") == 1,
	    "inside a /25");
	ok(table_match(t, K_NETADDR, "192.168.1.127") == 0 &&
	    table_match(t, K_NETADDR, "192.168.2.200") == 0,
	    "outside a /25");
	ok(table_match(t, K_NETADDR, "10.0.0.1") == 1 &&
	    table_match(t, K_NETADDR, "10.0.0.2") == 0,
	    "a dotted quad is a /32");
	ok(table_match(t, K_NETADDR, "172.16.200.1") == 1 &&
	    table_match(t, K_NETADDR, "172.17.0.1") == 0,
	    "a short form takes its class width (172.16 is a /16)");
	ok(table_match(t, K_NETADDR, "2001:db8:ffff::25") == 1 &&
	    table_match(t, K_NETADDR, "2001:db9::1") == 0, "IPv6 /32");
	ok(table_match(t, K_NETADDR, "::1") == 1 &&
	    table_match(t, K_NETADDR, "[::1]") == 1 &&
	    table_match(t, K_NETADDR, "[IPv6:::1]") == 1 &&
	    table_match(t, K_NETADDR, "::2") == 0,
	    "bracketed and IPv6: forms, both sides");
	ok(table_match(t, K_NETADDR, "FE80::abcd") == 1,
	    "IPv6: prefix and upper case in a network");
	ok(table_match(a4, K_NETADDR, "203.0.113.9") == 1 &&
	    table_match(a4, K_NETADDR, "0.0.0.0") == 1 &&
	    table_match(a4, K_NETADDR, "2001:db8::1") == 0,
	    "/0 matches every IPv4 address and no IPv6 one");
	ok(table_match(a6, K_NETADDR, "2001:db8::1") == 1 &&
	    table_match(a6, K_NETADDR, "192.0.2.1") == 0,
	    "::/0 matches every IPv6 address and no IPv4 one");
	ok(table_match(h6, K_NETADDR, "2001:db8::1") == 1 &&
	    table_match(h6, K_NETADDR, "2001:db8::2") == 0, "IPv6 /128");
	ok(table_match(t, K_NETADDR, "::ffff:192.168.1.130") == 0 &&
	    table_match(a4, K_NETADDR, "::ffff:10.1.1.1") == 0 &&
	    table_match(t, K_NETADDR, "::c0a8:182") == 0,
	    "families never mix: IPv6 keys miss IPv4 networks");
	ok(table_match(t, K_NETADDR, "not-an-address") == 0 &&
	    table_match(t, K_NETADDR, "") == 0, "garbage keys do not match");

	ok(table_check_entry(K_NETADDR, "10.0.0.0/8") &&
	    table_check_entry(K_NETADDR, "0.0.0.0/0") &&
	    table_check_entry(K_NETADDR, "10/8") &&
	    table_check_entry(K_NETADDR, "2001:db8::/32") &&
	    table_check_entry(K_NETADDR, "::/0") &&
	    table_check_entry(K_NETADDR, "[::1]") &&
	    table_check_entry(K_NETADDR, "ipv6:::1"),
	    "valid networks pass table_check_entry");
	ok(!table_check_entry(K_NETADDR, "10.0.0.0/33") &&
	    !table_check_entry(K_NETADDR, "::/129") &&
	    !table_check_entry(K_NETADDR, "1.2.3.4/") &&
	    !table_check_entry(K_NETADDR, "1.2.3.256") &&
	    !table_check_entry(K_NETADDR, "1.2.3.4.5") &&
	    !table_check_entry(K_NETADDR, "1.2.3.") &&
	    !table_check_entry(K_NETADDR, "10.0.0.0/-1") &&
	    !table_check_entry(K_NETADDR, "[::1") &&
	    !table_check_entry(K_NETADDR, "example.org") &&
	    !table_check_entry(K_NETADDR, ""),
	    "invalid networks fail table_check_entry");
	ok(table_check_entry(K_SOURCE, "192.0.2.1") &&
	    table_check_entry(K_SOURCE, "2001:db8::1") &&
	    !table_check_entry(K_SOURCE, "192.0.2.0/24") &&
	    !table_check_entry(K_SOURCE, "10"),
	    "relay src entries are plain addresses");
	config_free(conf);

	conf = config_new();
	mk_rule(conf, SLOT_FROM, C_FROM_SRC, 0, mk_anon(conf, "10.0.0.0/33", 7),
	    7);
	open_fails(conf, CONF ":7: \"10.0.0.0/33\" is not an IP address or "
	    "CIDR network", "a bad network literal in from src fails at open");
	config_free(conf);
}

static void
test_regex(void)
{
	const char	*kv[] = { "^mx[0-9]+\\.example\\.org$", "(?i)^SPAM",
	    "\\.BAD$", "^\\S+@host$", NULL };
	struct config	*conf = config_new();
	struct table	*t, *lazy;

	t = mk_table(conf, "rx", NULL, NULL, TABLE_LIST, kv, 1);
	lazy = mk_table(conf, "lazy", NULL, NULL, TABLE_LIST, kv, 2);
	mk_rule(conf, SLOT_FROM, C_FROM_RDNS, 1, t, 10);
	ok(table_open_all(conf) == 0, "regex tables open");
	ok(table_match(t, K_REGEX, "mx1.example.org") == 1 &&
	    table_match(t, K_REGEX, "MX12.EXAMPLE.ORG") == 1,
	    "anchored regex matches, any case");
	ok(table_match(t, K_REGEX, "amx1.example.org") == 0 &&
	    table_match(t, K_REGEX, "mx1.example.org.evil") == 0 &&
	    table_match(t, K_REGEX, "mx.example.org") == 0,
	    "anchors hold");
	ok(table_match(t, K_REGEX, "spam-host") == 1 &&
	    table_match(t, K_REGEX, "a.spam") == 0, "(?i) prefix accepted");
	ok(table_match(t, K_REGEX, "host.bad") == 1 &&
	    table_match(t, K_REGEX, "HOST.BAD") == 1 &&
	    table_match(t, K_REGEX, "hostbad") == 0,
	    "upper-case pattern letters match either case");
	ok(table_match(t, K_REGEX, "user@host") == 1 &&
	    table_match(t, K_REGEX, "us er@host") == 0,
	    "escapes keep their meaning (\\S is not \\s)");
	ok(table_match(lazy, K_REGEX, "mx7.example.org") == 1 &&
	    table_match(lazy, K_DOMAIN, "mx7.example.org") == 0,
	    "a table not declared for regex still matches as one on demand");
	ok(table_check_entry(K_REGEX, "^ok$") &&
	    table_check_entry(K_REGEX, "(?i)^ok$") &&
	    !table_check_entry(K_REGEX, "a(b") &&
	    !table_check_entry(K_REGEX, "[z-a]"),
	    "table_check_entry compiles regexes");
	config_free(conf);

	conf = config_new();
	mk_rule(conf, SLOT_HELO, C_HELO, 1, mk_anon(conf, "a(b", 12), 12);
	ok(open_capture(conf) == -1 &&
	    strncmp(errbuf, CONF ":12: invalid regex \"a(b\": ", 27) == 0 &&
	    strchr(errbuf, '\n') == errbuf + strlen(errbuf) - 1,
	    "a bad regex literal fails at open, one line");
	config_free(conf);

	conf = config_new();
	mk_rule(conf, SLOT_FOR, C_FOR_DOMAIN, 1, mk_file(conf, "rx", "bad-regex.txt",
	    3), 20);
	ok(open_capture(conf) == -1 &&
	    strncmp(errbuf, CONF ":3: table rx: " TABLEDIR "bad-regex.txt:3: "
	    "invalid regex \"a(b\": ", strlen(CONF ":3: table rx: " TABLEDIR
	    "bad-regex.txt:3: invalid regex \"a(b\": ")) == 0 &&
	    strchr(errbuf, '\n') == errbuf + strlen(errbuf) - 1,
	    "a bad regex in a file names the file and line");
	ok(TAILQ_FIRST(&conf->tables)->backend == NULL,
	    "the failed table is not left open");
	config_free(conf);
}

static void
test_static_map(void)
{
	const char	*kv[] = { "Root", "admin, bob@example.org",
	    "postmaster", "root", "joe", "1000:100:/home/joe", NULL };
	const char	*list[] = { "a", NULL };
	struct config	*conf = config_new();
	struct table	*t, *l;
	char		 small[8];

	t = mk_table(conf, "aliases", NULL, NULL, TABLE_MAP, kv, 1);
	l = mk_table(conf, "list", NULL, NULL, TABLE_LIST, list, 2);
	ok(table_open_all(conf) == 0, "static map opens");
	ok(lookup_is(t, K_ALIAS, "root", "admin, bob@example.org") &&
	    lookup_is(t, K_ALIAS, "ROOT", "admin, bob@example.org"),
	    "alias lookup lowercases the key, keeps the value");
	ok(lookup_is(t, K_USERINFO, "joe", "1000:100:/home/joe"),
	    "userinfo lookup");
	ok(table_lookup(t, K_ALIAS, "nobody", small, sizeof(small)) == 0,
	    "missing key is 0");
	ok(table_lookup(t, K_ALIAS, "root", small, sizeof(small)) == -1,
	    "value longer than the buffer is -1");
	ok(table_match(t, K_ALIAS, "postmaster") == 1 &&
	    table_match(t, K_ALIAS, "admin") == 0, "maps match on keys");
	ok(table_lookup(l, K_ALIAS, "a", small, sizeof(small)) == -1,
	    "a list cannot answer a lookup");
	config_free(conf);
}

/* `src <t>`: a list's entries in turn, wrapping around. */
static void
test_fetch(void)
{
	const char	*list[] = { "192.0.2.1", "2001:db8::1", NULL };
	const char	*none[] = { NULL };
	struct config	*conf = config_new();
	struct table	*t, *e;
	char		 a[64], b[64], c[64], small[4];

	t = mk_table(conf, "srcs", NULL, NULL, TABLE_LIST, list, 1);
	e = mk_table(conf, "empty", NULL, NULL, TABLE_LIST, none, 2);
	ok(table_open_all(conf) == 0, "source lists open");
	ok(table_fetch(t, K_SOURCE, 0, a, sizeof(a)) == 1 &&
	    table_fetch(t, K_SOURCE, 1, b, sizeof(b)) == 1 &&
	    table_fetch(t, K_SOURCE, 2, c, sizeof(c)) == 1,
	    "fetch gives an entry each time");
	ok(strcmp(a, b) != 0 && strcmp(a, c) == 0 &&
	    (strcmp(a, "192.0.2.1") == 0 || strcmp(a, "2001:db8::1") == 0) &&
	    (strcmp(b, "192.0.2.1") == 0 || strcmp(b, "2001:db8::1") == 0),
	    "both entries in turn, then the first again");
	ok(table_fetch(e, K_SOURCE, 0, a, sizeof(a)) == 0,
	    "an empty list fetches nothing");
	ok(table_fetch(t, K_SOURCE, 0, small, sizeof(small)) == -1,
	    "an entry longer than the buffer is -1");
	config_free(conf);
}

static void
test_file(void)
{
	struct config	*conf = config_new();
	struct table	*al, *dom, *mark, *empty, *net, *rx, *net6;
	char		 buf[256];

	al = mk_file(conf, "aliases", "aliases.txt", 1);
	dom = mk_file(conf, "domains", "domains.txt", 2);
	mark = mk_file(conf, "marked", "list-marker.txt", 3);
	empty = mk_file(conf, "empty", "empty.txt", 4);
	net = mk_file(conf, "nets", "netaddr.txt", 5);
	rx = mk_file(conf, "rx", "regex.txt", 6);
	net6 = mk_file(conf, "nets6", "netaddr-v6first.txt", 7);
	mk_rule(conf, SLOT_FROM, C_FROM_SRC, 0, net, 10);
	mk_rule(conf, SLOT_FROM, C_FROM_SRC, 0, net6, 13);
	mk_rule(conf, SLOT_FOR, C_FOR_DOMAIN, 1, rx, 11);
	mk_action(conf, al, 12);
	ok(open_capture(conf) == 0 && errbuf[0] == '\0',
	    "file tables open silently");
	if (errbuf[0] != '\0')
		printf("#   got: %s", errbuf);
	ok(al->kind == TABLE_MAP && dom->kind == TABLE_LIST &&
	    mark->kind == TABLE_LIST && empty->kind == TABLE_MAP,
	    "kinds: first entry decides, \"# @list\" forces a list, "
	    "empty is a map");
	ok(lookup_is(al, K_ALIAS, "root", "admin, bob@example.org"),
	    "\"key:<tab>value\", value with commas kept whole");
	ok(lookup_is(al, K_ALIAS, "postmaster", "root") &&
	    lookup_is(al, K_ALIAS, "abuse", "postmaster") &&
	    lookup_is(al, K_ALIAS, "Mailer-Daemon", "postmaster"),
	    "tab, colon and colon-space separators");
	ok(lookup_is(al, K_ALIAS, "dup", "second"), "last duplicate wins");
	ok(lookup_is(al, K_CREDENTIALS, "hash", "pass#word"),
	    "'#' inside a line is data, trailing blanks trimmed");
	ok(lookup_is(al, K_ALIAS, "spaced", "value with  spaces"),
	    "leading blanks skipped, inner blanks kept");
	ok(lookup_is(al, K_ADDRNAME, "[::1]", "localhost"),
	    "a bracketed key ends at ']'");
	ok(lookup_is(al, K_ALIAS, "weird", ": colon"),
	    "one separator is dropped, as OpenSMTPD does; CR trimmed");
	ok(table_lookup(al, K_ALIAS, "# aliases", buf, sizeof(buf)) == 0 &&
	    table_lookup(al, K_ALIAS, "", buf, sizeof(buf)) == 0,
	    "comments and blank lines are not entries");
	ok(table_match(dom, K_DOMAIN, "example.org") == 1 &&
	    table_match(dom, K_DOMAIN, "www.example.net") == 1 &&
	    table_match(dom, K_DOMAIN, "sub.example.com") == 1 &&
	    table_match(dom, K_DOMAIN, "example.com") == 0,
	    "file domain list, wildcard and case");
	ok(table_match(mark, K_STRING, "alpha beta") == 1 &&
	    table_match(mark, K_STRING, "alpha") == 0,
	    "in a list the whole line is the entry");
	ok(table_lookup(empty, K_ALIAS, "x", buf, sizeof(buf)) == 0,
	    "empty map finds nothing");
	ok(net6->kind == TABLE_LIST &&
	    table_match(net6, K_NETADDR, "2001:db8:1::25") == 1 &&
	    table_match(net6, K_NETADDR, "2001:db8:2::25") == 0 &&
	    table_match(net6, K_NETADDR, "192.0.2.9") == 1,
	    "a first line \"[v6]/len\" is a network of a list, not a key"
	    " with a value");
	ok(table_match(net, K_NETADDR, "10.200.0.1") == 1 &&
	    table_match(net, K_NETADDR, "192.168.1.7") == 1 &&
	    table_match(net, K_NETADDR, "::1") == 1 &&
	    table_match(net, K_NETADDR, "fe80::1") == 1 &&
	    table_match(net, K_NETADDR, "11.0.0.1") == 0,
	    "file netaddr list");
	ok(table_match(rx, K_REGEX, "mx3.example.org") == 1 &&
	    table_match(rx, K_REGEX, "x.bad") == 1 &&
	    table_match(rx, K_REGEX, "mx3.example.org.x") == 0,
	    "file regex list");
	config_free(conf);
}

static void
test_errors(void)
{
	struct config	*conf;

	conf = config_new();
	mk_file(conf, "broken", "bad-map.txt", 4);
	open_fails(conf, CONF ":4: table broken: " TABLEDIR "bad-map.txt:4: "
	    "key \"bob\" has no value in a map",
	    "a map line without value: one exact line");
	ok(TAILQ_FIRST(&conf->tables)->backend == NULL,
	    "the malformed table is not loaded");
	config_free(conf);

	conf = config_new();
	mk_file(conf, "br", "bad-bracket.txt", 5);
	open_fails(conf, CONF ":5: table br: " TABLEDIR "bad-bracket.txt:2: "
	    "no ']' closes \"[::1 localhost\"", "an unclosed '[' key");
	config_free(conf);

	conf = config_new();
	mk_rule(conf, SLOT_FROM, C_FROM_SRC, 0, mk_file(conf, "nets",
	    "bad-netaddr.txt", 6), 30);
	open_fails(conf, CONF ":6: table nets: " TABLEDIR "bad-netaddr.txt:2: "
	    "\"10.0.0.0/33\" is not an IP address or CIDR network",
	    "a bad network in a from src file");
	config_free(conf);

	conf = config_new();
	mk_file(conf, "gone", "no-such-file.txt", 7);
	open_fails(conf, CONF ":7: table gone: " TABLEDIR "no-such-file.txt: "
	    "No such file or directory", "a missing file");
	config_free(conf);

	conf = config_new();
	mk_table(conf, "rel", "file", "relative/path", TABLE_LIST, NULL, 8);
	open_fails(conf, CONF ":8: table rel: \"relative/path\" is not an "
	    "absolute path", "a relative path");
	config_free(conf);

	conf = config_new();
	mk_table(conf, "ok", NULL, NULL, TABLE_LIST, (const char *[]){ "a",
	    NULL }, 1);
	mk_table(conf, "users", "nosuch", "/etc/mail/users.db", TABLE_MAP,
	    NULL, 9);
	open_fails(conf, CONF ":9: table users: no table backend"
	    " \"nosuch\" (no module table/nosuch and no table program)",
	    "a backend without a module is refused");
	ok(TAILQ_FIRST(&conf->tables)->backend == NULL,
	    "tables opened before the failure are closed again");
	ok(table_match(TAILQ_LAST(&conf->tables, tablelist), K_STRING, "x")
	    == -1, "an unopened table answers -1, no crash");
	config_free(conf);

	conf = config_new();
	mk_table(conf, "p", "proc", "/usr/libexec/table-x", TABLE_LIST, NULL,
	    10);
	open_capture(conf);
	ok(strstr(errbuf, "table p: /usr/libexec/table-x is not an executable"
	    " file\n") != NULL && strstr(errbuf, CONF ":10: table p: table"
	    " backend \"proc\" cannot open \"/usr/libexec/table-x\"") != NULL,
	    "a proc table without its program is refused, naming both");
	if (strstr(errbuf, "cannot open") == NULL)
		printf("#   got:  %s", errbuf);
	config_free(conf);

	conf = config_new();
	mk_action(conf, mk_file(conf, "doms", "domains.txt", 11), 40);
	open_fails(conf, CONF ":40: table doms cannot serve \"alias\": it "
	    "is a list, not a map", "a list file used as aliases");
	config_free(conf);

	conf = config_new();
	mk_rule(conf, SLOT_FOR, C_FOR_DOMAIN, 0, mk_file(conf, "e", "empty.txt",
	    12), 41);
	open_fails(conf, CONF ":41: table e cannot serve \"for domain\": "
	    "it is a map, not a list",
	    "an empty file is a map, refused for domains as in OpenSMTPD");
	config_free(conf);

	conf = config_new();
	mk_action(conf, mk_anon(conf, "root", 42), 42);
	open_fails(conf, CONF ":42: \"root\" cannot serve \"alias\": a "
	    "table of key/value pairs is needed",
	    "a literal where a map is needed");
	config_free(conf);
}

static void
test_long_keys(void)
{
	const char	*kv[] = { "short", NULL };
	struct config	*conf = config_new();
	struct table	*t;
	char		 key[1100];

	t = mk_table(conf, "t", NULL, NULL, TABLE_LIST, kv, 1);
	ok(table_open_all(conf) == 0, "table opens");
	memset(key, 'a', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	ok(open_capture(conf) == 0, "opening again is a no-op");
	fflush(stderr);
	ok(table_match(t, K_STRING, key) == -1,
	    "an overlong key is a temporary failure");
	config_free(conf);

	conf = config_new();
	kv[0] = key;
	mk_table(conf, "long", NULL, NULL, TABLE_LIST, kv, 2);
	ok(open_capture(conf) == -1 && strstr(errbuf, CONF ":2: table long: "
	    "key \"aaaa") == errbuf, "an overlong entry fails at open");
	config_free(conf);
}

int
main(void)
{
	log_init(1, 0);
	test_names();
	test_domain();
	test_string();
	test_mailaddr();
	test_netaddr();
	test_regex();
	test_static_map();
	test_fetch();
	test_file();
	test_errors();
	test_long_keys();
	return tap_done();
}
