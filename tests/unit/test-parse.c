/*
 * test-parse.c - the smtpd.conf reader and the rule matcher.  Good configs
 * under tests/unit/parse/ are checked against the model they must produce;
 * bad ones against the exact "file:line: message" written to stderr.
 * Prints one "ok N - ..." / "not ok N - ..." line per check.
 */
#include <arpa/inet.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtpd.h"
#include "tap.h"


#define PARSEDIR	TOP_SRCDIR "/tests/unit/parse/"

static char	 errbuf[8192];		/* stderr of the last load() */

/* Loads PARSEDIR/name with stderr captured into errbuf. */
static struct config *
load(const char *name, const struct macro *macros, size_t nmacros)
{
	struct config	*conf;
	char		 path[PATH_MAX], tmpl[] = "/tmp/test-parse.XXXXXX";
	ssize_t		 n;
	int		 fd, saved;

	if ((size_t)snprintf(path, sizeof(path), "%s%s", PARSEDIR, name) >=
	    sizeof(path))
		fatalx("path too long");
	fflush(stderr);
	if ((fd = mkstemp(tmpl)) == -1 || (saved = dup(STDERR_FILENO)) == -1)
		fatal("capture stderr");
	unlink(tmpl);
	dup2(fd, STDERR_FILENO);
	conf = config_load(path, macros, nmacros);
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

static struct listener *
nth_listener(struct config *conf, int n)
{
	struct listener	*l;

	TAILQ_FOREACH(l, &conf->listeners, entry)
		if (n-- == 0)
			return l;
	return NULL;
}

static struct rule *
nth_rule(struct config *conf, int n)
{
	struct rule	*r;

	TAILQ_FOREACH(r, &conf->rules, entry)
		if (n-- == 0)
			return r;
	return NULL;
}

static int
count_listeners(struct config *conf)
{
	struct listener	*l;
	int		 n = 0;

	TAILQ_FOREACH(l, &conf->listeners, entry)
		n++;
	return n;
}

static int
port_of(const struct listener *l)
{
	if (l->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&l->ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&l->ss)->sin6_port);
}

static int
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Address, port, tag and hostname of one listener, fd still unbound. */
static int
listener_is(const struct listener *l, const char *addr, int port,
    const char *tag, const char *hostname)
{
	socklen_t	 want;

	if (l == NULL)
		return 0;
	want = l->ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6);
	return strcmp(ss_to_text(&l->ss), addr) == 0 && port_of(l) == port &&
	    l->sslen == want && l->fd == -1 && str_eq(l->lc->tag, tag) &&
	    str_eq(l->lc->hostname, hostname);
}

static int
entry_is(const struct table *t, size_t i, const char *key, const char *value)
{
	return t != NULL && i < t->nentries &&
	    str_eq(t->entries[i].key, key) && str_eq(t->entries[i].value, value);
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t	 a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void
test_basic_listeners(struct config *c)
{
	ok(count_listeners(c) == 4, "basic: 4 listeners (localhost gives two)");
	ok(listener_is(nth_listener(c, 0), "127.0.0.1", 25, NULL, NULL),
	    "basic: localhost -> 127.0.0.1 port 25 first");
	ok(listener_is(nth_listener(c, 1), "::1", 25, NULL, NULL),
	    "basic: localhost -> ::1 port 25 second");
	ok(listener_is(nth_listener(c, 2), "127.0.0.1", 587, "SUBMIT",
	    "mx.example.org"), "basic: macro carrying several words");
	ok(listener_is(nth_listener(c, 3), "::1", 2525, "CONT", NULL) &&
	    nth_listener(c, 3)->lc->line == 15,
	    "basic: continued listen line, line number of its start");
	ok(nth_listener(c, 0)->lc->line == 13 &&
	    ends_with(nth_listener(c, 0)->lc->file, "/good-basic.conf"),
	    "basic: listener file and line");
}

static void
test_basic_actions(struct config *c)
{
	struct action	*a;

	a = config_action(c, "local");
	ok(a != NULL && a->method == A_MAILDIR && a->path == NULL &&
	    a->junk && a->user == NULL && a->line == 18,
	    "basic: action local maildir junk");
	a = config_action(c, "virt");
	ok(a != NULL && str_eq(a->path,
	    "/var/vmail/%{dest.domain}/%{dest.user}") && !a->junk &&
	    str_eq(a->user, "vmail"), "basic: action with quoted path and user");
	a = config_action(c, "later");
	ok(a != NULL && str_eq(a->path, "~/Mail") && a->line == 32,
	    "basic: action defined after its use");
	a = config_action(c, "junkpath");
	ok(a != NULL && str_eq(a->path, "junk") && a->junk,
	    "basic: a quoted keyword is a path, a bare one an option");
	ok(config_action(c, "nope") == NULL, "basic: config_action miss");
}

static void
test_basic_tables(struct config *c)
{
	struct table	*t;

	t = config_table(c, "mynets");
	ok(t != NULL && t->kind == TABLE_LIST && t->nentries == 3 &&
	    entry_is(t, 0, "192.168.0.0/16", NULL) &&
	    entry_is(t, 2, "::1/128", NULL) && t->line == 6,
	    "basic: list table");
	t = config_table(c, "aliases");
	ok(t != NULL && t->kind == TABLE_MAP && t->nentries == 2 &&
	    entry_is(t, 0, "root", "admin") &&
	    entry_is(t, 1, "postmaster", "admin"), "basic: map table");
	t = config_table(c, "domains");
	ok(t != NULL && t->kind == TABLE_LIST && t->nentries == 2 &&
	    entry_is(t, 1, "Example.NET", NULL),
	    "basic: list table split over lines without commas");
	ok(config_table(c, "nope") == NULL, "basic: config_table miss");
}

/* Slot SLOT of rule r: kind, negation and table. */
static int
cond_is(const struct rule *r, int slot, enum cond_kind kind, int neg,
    const struct table *t)
{
	return r->set[slot] && r->conds[slot].kind == kind &&
	    r->conds[slot].neg == neg && (t == NULL ||
	    r->conds[slot].table == t);
}

static int
literal_is(const struct rule *r, int slot, const char *value)
{
	const struct table	*t = r->conds[slot].table;

	return t != NULL && t->anon && t->nentries == 1 &&
	    strcmp(t->entries[0].key, value) == 0;
}

static void
test_basic_rules(struct config *c)
{
	struct rule	*r;

	r = nth_rule(c, 0);
	ok(r != NULL && cond_is(r, SLOT_FROM, C_FROM_LOCAL, 0, NULL) &&
	    cond_is(r, SLOT_FOR, C_FOR_LOCAL, 0, NULL) && !r->reject &&
	    r->action == config_action(c, "local") && r->line == 25,
	    "basic: rule 1 from local for local");
	r = nth_rule(c, 1);
	ok(r != NULL && cond_is(r, SLOT_FROM, C_FROM_SRC, 0,
	    config_table(c, "mynets")) && cond_is(r, SLOT_FOR, C_FOR_DOMAIN,
	    0, config_table(c, "domains")) &&
	    r->action == config_action(c, "virt"),
	    "basic: rule 2 src table, domain table");
	r = nth_rule(c, 2);
	ok(r != NULL && cond_is(r, SLOT_FROM, C_FROM_LOCAL, 1, NULL) &&
	    cond_is(r, SLOT_FOR, C_FOR_DOMAIN, 0, NULL) &&
	    literal_is(r, SLOT_FOR, "example.com") && r->reject &&
	    r->action == NULL, "basic: rule 3 negated, reject");
	r = nth_rule(c, 3);
	ok(r != NULL && cond_is(r, SLOT_TAG, C_TAG, 0, NULL) &&
	    literal_is(r, SLOT_TAG, "SUBMIT") &&
	    cond_is(r, SLOT_FROM, C_FROM_ANY, 0, NULL) &&
	    cond_is(r, SLOT_FOR, C_FOR_DOMAIN, 1, NULL) &&
	    r->action == config_action(c, "later"),
	    "basic: rule 4 tag, !for, forward action reference");
	r = nth_rule(c, 4);
	ok(r != NULL && cond_is(r, SLOT_FROM, C_FROM_LOCAL, 0, NULL) &&
	    cond_is(r, SLOT_FOR, C_FOR_ANY, 0, NULL) &&
	    nth_rule(c, 5) == NULL, "basic: rule 5 omitted from is local; "
	    "five rules in order");
}

static void
test_basic(void)
{
	struct config	*c;
	char		 host[HOST_NAME_MAX + 1];

	c = load("good-basic.conf", NULL, 0);
	ok(c != NULL && errbuf[0] == '\0', "basic: loads without a message");
	if (c == NULL) {
		printf("# stderr: %s", errbuf);
		return;
	}
	test_basic_listeners(c);
	test_basic_actions(c);
	test_basic_tables(c);
	test_basic_rules(c);
	ok(c->max_message_size == 10 * 1024 * 1024,
	    "basic: max-message-size from macro 10M");
	ok(c->max_rcpt == 50 && c->max_mails == 7,
	    "basic: two limits on one line");
	ok(str_eq(c->module_path, "/opt/modsmtpd/modules"), "basic: module-path");
	if (gethostname(host, sizeof(host)) == 0) {
		host[sizeof(host) - 1] = '\0';
		lowercase(host);
	}
	ok(str_eq(c->hostname, host), "basic: hostname from gethostname");
	config_free(c);
}

static void
test_defaults(void)
{
	struct config	*c;
	struct rule	*r;

	c = load("good-empty.conf", NULL, 0);
	ok(c != NULL && c->max_message_size == 35 * 1024 * 1024 &&
	    c->max_rcpt == 1000 && c->max_mails == 100 &&
	    c->module_path == NULL && TAILQ_EMPTY(&c->listeners) &&
	    TAILQ_EMPTY(&c->rules) && c->hostname != NULL,
	    "defaults: sizes and limits");
	config_free(c);

	c = load("good-defaults.conf", NULL, 0);
	r = c ? nth_rule(c, 0) : NULL;
	ok(r != NULL && cond_is(r, SLOT_FROM, C_FROM_LOCAL, 0, NULL) &&
	    cond_is(r, SLOT_FOR, C_FOR_LOCAL, 0, NULL),
	    "defaults: omitted from/for are local");
	config_free(c);
}

static void
test_macros(void)
{
	struct macro	 m[] = {
		{ "max", "1K" },
		{ "lan", "::1" },
	};
	struct config	*c;

	c = load("good-basic.conf", m, 2);
	ok(c != NULL && c->max_message_size == 1024,
	    "macros: -D max=1K overrides the file");
	ok(c != NULL && listener_is(nth_listener(c, 2), "::1", 587, "SUBMIT",
	    "mx.example.org"), "macros: -D lan=::1 overrides the file");
	config_free(c);
}

/* Sizes as scan_scaled(3) reads them, given through the max macro. */
static void
test_sizes(void)
{
	static const struct {
		const char	*text;
		size_t		 bytes;
	} sizes[] = {
		{ "512", 512 },
		{ "1k", 1024 },
		{ "1.5M", 1536 * 1024 },
		{ "2G", 2048UL * 1024 * 1024 },
		{ "0", 0 },
		{ "1.5", 0 },
		{ "12MB", 0 },
		{ "99999999999999999999", 0 },
	};
	struct macro	 m = { "max", NULL };
	struct config	*c;
	size_t		 i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		m.value = sizes[i].text;
		c = load("good-basic.conf", &m, 1);
		if (sizes[i].bytes)
			ok(c != NULL && c->max_message_size == sizes[i].bytes,
			    "size: %s is %zu bytes", sizes[i].text,
			    sizes[i].bytes);
		else
			ok(c == NULL && strstr(errbuf, ":21: invalid size") !=
			    NULL, "size: %s is refused", sizes[i].text);
		config_free(c);
	}
}

static void
test_crlf(void)
{
	struct config	*c = load("good-crlf.conf", NULL, 0);

	ok(c != NULL && listener_is(nth_listener(c, 0), "127.0.0.1", 2727,
	    "A B", NULL) && nth_rule(c, 0) != NULL &&
	    nth_rule(c, 0)->line == 5, "crlf: line ends and continuations");
	config_free(c);
}

static void
test_include(void)
{
	struct config	*c;
	struct action	*a;
	struct rule	*r;

	c = load("good-include.conf", NULL, 0);
	ok(c != NULL, "include: nested include loads");
	if (c == NULL) {
		printf("# stderr: %s", errbuf);
		return;
	}
	a = config_action(c, "inc_action");
	ok(a != NULL && ends_with(a->file, "/inc/two.conf") && a->line == 1,
	    "include: relative to the including file, file:line recorded");
	r = nth_rule(c, 0);
	ok(r != NULL && r->action == a &&
	    r->conds[SLOT_FOR].table == config_table(c, "incdomains") &&
	    r->line == 2 &&
	    ends_with(r->file, "/good-include.conf"),
	    "include: names from included files resolve");
	ok(listener_is(nth_listener(c, 0), "127.0.0.1", 10025, NULL, NULL),
	    "include: listener from the inner file");
	config_free(c);
}

static void
test_interface(void)
{
	struct config	*c;
	struct listener	*l;
	int		 loopback = 1;

	if (if_nametoindex("lo") == 0) {
		ok(1, "# SKIP no interface lo");
		return;
	}
	c = load("good-iface.conf", NULL, 0);
	ok(c != NULL && count_listeners(c) >= 1, "interface: lo has addresses");
	if (c == NULL)
		return;
	TAILQ_FOREACH(l, &c->listeners, entry)
		if (!ss_is_loopback(&l->ss) || port_of(l) != 2526 ||
		    !str_eq(l->lc->tag, "LO"))
			loopback = 0;
	ok(loopback, "interface: every lo address, port and tag applied");
	config_free(c);
}

/* The load fails and stderr holds exactly the one expected line. */
static void bad(const char *, const char *, int, const char *, ...)
    __attribute__((format(printf, 4, 5)));

static void
bad(const char *name, const char *file, int line, const char *fmt, ...)
{
	struct config	*c;
	va_list		 ap;
	char		 msg[1024], want[2048];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(want, sizeof(want), "%s%s:%d: %s\n", PARSEDIR, file, line,
	    msg);
	c = load(name, NULL, 0);
	ok(c == NULL && strcmp(errbuf, want) == 0, "%s -> %s:%d: %s", name,
	    file, line, msg);
	if (c != NULL || strcmp(errbuf, want) != 0)
		printf("# want: %s# got:  %s%s", want, errbuf,
		    c ? "(and a config)\n" : "");
	config_free(c);
}

static void
test_errors(void)
{
	bad("bad-directive.conf", "bad-directive.conf", 3,
	    "unknown directive \"lisen\"");
	bad("bad-on.conf", "bad-on.conf", 1,
	    "syntax error: expected \"on\" after \"listen\", got \"onn\"");
	bad("bad-port.conf", "bad-port.conf", 2,
	    "invalid port \"70000\": expected a number from 1 to 65535");
	bad("bad-action.conf", "bad-action.conf", 2,
	    "undefined action \"lcoal\"");
	bad("bad-table.conf", "bad-table.conf", 3, "undefined table \"nets\"");
	bad("bad-quote.conf", "bad-quote.conf", 2,
	    "unterminated quoted string");
	bad("bad-include.conf", "bad-include.conf", 3,
	    "cannot read include file \"%sdoes-not-exist.conf\": "
	    "No such file or directory", PARSEDIR);
	bad("bad-include-inner.conf", "inc/bad-syntax.conf", 2,
	    "syntax error: expected an interface, an address, a host name or "
	    "\"socket\" after \"on\", got end of line");
	bad("bad-recursive.conf", "bad-recursive.conf", 1,
	    "include \"%sbad-recursive.conf\": nested too deeply (more than "
	    "16 levels)", PARSEDIR);
	bad("bad-macro.conf", "bad-macro.conf", 1, "undefined macro \"nope\"");
	bad("bad-size.conf", "bad-size.conf", 1, "invalid size \"35Q\": "
	    "expected a positive number of bytes, optionally scaled with K, "
	    "M or G");
	bad("bad-method.conf", "bad-method.conf", 1, "syntax error: expected "
	    "a delivery method (mbox, maildir, lmtp, mda, relay, expand-only "
	    "or forward-only) after \"out\", got \"deliver\"");
	bad("bad-dup-action.conf", "bad-dup-action.conf", 3, "action \"a\" is "
	    "already defined at %sbad-dup-action.conf:1", PARSEDIR);
	bad("bad-match.conf", "bad-match.conf", 2, "syntax error: expected "
	    "a match option, \"action\" or \"reject\" after \"any\", got "
	    "end of line");
	bad("bad-continuation.conf", "bad-continuation.conf", 3,
	    "unknown listen option \"tg\"");
	bad("bad-dup-listen.conf", "bad-dup-listen.conf", 2, "listen on "
	    "\"localhost\": 127.0.0.1 port 25 is already declared at "
	    "%sbad-dup-listen.conf:1", PARSEDIR);
	bad("bad-src.conf", "bad-src.conf", 1, "table \"nets\": "
	    "\"192.168.0.0/33\" is not an IP address or CIDR network, as "
	    "\"from src\" at %sbad-src.conf:3 requires", PARSEDIR);
	bad("bad-twice.conf", "bad-twice.conf", 1,
	    "option \"port\" given twice");
	bad("bad-srs-ttl.conf", "bad-srs-ttl.conf", 2, "srs ttl is too short: "
	    "expected at least 1d (the SRS timestamp counts days)");
}

static void
test_missing_file(void)
{
	struct config	*c = load("no-such-file.conf", NULL, 0);
	char		 want[PATH_MAX + 64];

	snprintf(want, sizeof(want), "%sno-such-file.conf: No such file or "
	    "directory\n", PARSEDIR);
	ok(c == NULL && strcmp(errbuf, want) == 0, "missing main file");
	config_free(c);
}

/* ----------------------------------------------------------- ruleset */

static const char *
match(struct config *c, int local, const char *src, const char *tag,
    const char *rcpt)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	struct match_ctx	 ctx;
	const struct rule	*r;
	int			 tempfail;

	memset(&ss, 0, sizeof(ss));
	memset(&ctx, 0, sizeof(ctx));
	if (src != NULL && inet_pton(AF_INET, src, &sin->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (src != NULL && inet_pton(AF_INET6, src, &sin6->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else if (src != NULL)
		fatalx("bad test address %s", src);
	ctx.local = local;
	ctx.src = src ? &ss : NULL;
	ctx.tag = tag;
	ctx.sender = "";
	ctx.rcpt = rcpt;
	if ((r = ruleset_match(c, &ctx, &tempfail)) == NULL)
		return tempfail ? "tempfail" : "none";
	return r->reject ? "reject" : r->action->name;
}

static void
expect(struct config *c, int local, const char *src, const char *tag,
    const char *rcpt, const char *want)
{
	const char	*got = match(c, local, src, tag, rcpt);
	char		 desc[256];

	snprintf(desc, sizeof(desc), "match %s%s%s -> %s: %s",
	    src ? src : "socket", tag ? " tag " : "", tag ? tag : "", rcpt,
	    want);
	ok(strcmp(got, want) == 0, "%s", desc);
	if (strcmp(got, want) != 0)
		printf("# got %s\n", got);
}

static void
test_ruleset(void)
{
	struct config	*c = load("good-rules.conf", NULL, 0);

	if (c != NULL && table_open_all(c) == -1) {
		config_free(c);
		c = NULL;
	}
	ok(c != NULL, "rules: config loads");
	if (c == NULL) {
		printf("# stderr: %s", errbuf);
		return;
	}
	expect(c, 0, "203.0.113.5", "SUB", "x@anything.example", "tagged");
	expect(c, 0, "203.0.113.5", "OTHER", "x@blocked.example", "reject");
	expect(c, 0, "203.0.113.5", NULL, "x@BLOCKED.example", "reject");
	expect(c, 0, "192.168.4.4", NULL, "x@Example.ORG", "in");
	expect(c, 0, "2001:db8::5", NULL, "x@example.net", "in");
	expect(c, 0, "::ffff:192.168.1.1", NULL, "x@example.org", "in");
	expect(c, 0, "10.1.2.3", NULL, "x@example.org", "in");
	expect(c, 0, "10.1.2.4", NULL, "x@example.org", "out");
	expect(c, 0, "203.0.113.5", NULL, "x@example.com", "none");
	expect(c, 0, "127.0.0.1", NULL, "root@localhost", "in");
	expect(c, 0, "::1", NULL, "root", "in");
	expect(c, 0, "::1", NULL, "root@[127.0.0.1]", "in");
	expect(c, 1, NULL, NULL, "root@LocalHost", "in");
	expect(c, 1, NULL, NULL, "x@remote.example", "out");
	expect(c, 0, "127.0.0.1", NULL, "x@remote.example", "none");
	expect(c, 0, "172.20.1.1", NULL, "x@remote.example", "out");
	expect(c, 0, "172.32.0.1", NULL, "x@remote.example", "none");
	expect(c, 0, "203.0.113.5", NULL, "x@tagneg.example", "reject");
	expect(c, 0, "203.0.113.5", "INTERNAL", "x@tagneg.example", "none");
	config_free(c);
}

static void
test_domain_is_local(void)
{
	struct config	*c = load("good-empty.conf", NULL, 0);
	char		 host[HOST_NAME_MAX + 1], shortname[HOST_NAME_MAX + 1];

	if (c == NULL) {
		ok(0, "local: config loads");
		return;
	}
	ok(domain_is_local(c, "localhost") && domain_is_local(c, "LOCALHOST"),
	    "local: localhost, any case");
	ok(domain_is_local(c, "") && domain_is_local(c, NULL),
	    "local: no domain");
	ok(domain_is_local(c, "[127.0.0.1]") &&
	    domain_is_local(c, "[IPv6:::1]") && domain_is_local(c, "[::1]"),
	    "local: loopback address literals");
	ok(!domain_is_local(c, "[192.0.2.1]") &&
	    !domain_is_local(c, "[127.0.0.1") &&
	    !domain_is_local(c, "[127.0.0.0/8]"),
	    "local: foreign or malformed literals");
	ok(!domain_is_local(c, "example.com"), "local: example.com is not");
	free(c->hostname);
	c->hostname = xstrdup("mx.example.org");
	ok(domain_is_local(c, "MX.example.org"), "local: conf->hostname");
	if (gethostname(host, sizeof(host)) == 0) {
		host[sizeof(host) - 1] = '\0';
		msd_strlcpy(shortname, host, sizeof(shortname));
		shortname[strcspn(shortname, ".")] = '\0';
		ok(domain_is_local(c, host) && domain_is_local(c, shortname),
		    "local: gethostname full and short");
	}
	config_free(c);
}

int
main(void)
{
	test_basic();
	test_defaults();
	test_macros();
	test_sizes();
	test_crlf();
	test_include();
	test_interface();
	test_errors();
	test_missing_file();
	test_ruleset();
	test_domain_is_local();
	return tap_done();
}
