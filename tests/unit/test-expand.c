/*
 * test-expand.c - the format specifiers of smtpd.conf(5): every token,
 * every slice and modifier example of the manual, sanitisation, "~/" and
 * '%' handling, the errors, and the output bound to the exact byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "tap.h"

static struct expand_ctx	 ctx;

/* A context where every token is available and every value differs. */
static void
ctx_full(void)
{
	memset(&ctx, 0, sizeof(ctx));
	ctx.sender = "Alice.B@Sender.Example";
	ctx.rcpt = "User+Tag@Example.org";
	ctx.dest = "vuser@dest.example";
	ctx.user = "vmail";
	ctx.directory = "/home/vmail";
	ctx.mbox_from = "Alice.B@Sender.Example";
	ctx.mda = "/usr/local/bin/spamc | /usr/libexec/deliver";
	ctx.subaddr_delim = '+';
}

static void
expect(const char *in, const char *want)
{
	char		 buf[1024];
	const char	*err = NULL;
	int		 rc;

	rc = expand_format(in, &ctx, buf, sizeof(buf), &err);
	ok(rc == 0 && strcmp(buf, want) == 0, "\"%s\" -> \"%s\" (got %s%s%s)",
	    in, want, rc == 0 ? "\"" : "error: ", rc == 0 ? buf : err,
	    rc == 0 ? "\"" : "");
}

/* Fails, with a reason containing why, and leaves the output empty. */
static void
expect_err(const char *in, const char *why)
{
	char		 buf[1024];
	const char	*err = NULL;
	int		 rc;

	memset(buf, 'x', sizeof(buf));
	rc = expand_format(in, &ctx, buf, sizeof(buf), &err);
	ok(rc == -1 && err != NULL && strstr(err, why) != NULL &&
	    buf[0] == '\0', "\"%s\" fails with \"%s\" (got %s)", in, why,
	    rc == 0 ? buf : err ? err : "no reason");
}

static void
test_tokens(void)
{
	ctx_full();
	expect("%{sender}", "Alice.B@Sender.Example");
	expect("%{sender.user}", "Alice.B");
	expect("%{sender.domain}", "Sender.Example");
	expect("%{rcpt}", "User+Tag@Example.org");
	expect("%{rcpt.user}", "User+Tag");
	expect("%{rcpt.domain}", "Example.org");
	expect("%{dest}", "vuser@dest.example");
	expect("%{dest.user}", "vuser");
	expect("%{dest.domain}", "dest.example");
	expect("%{user.username}", "vmail");
	expect("%{user.directory}", "/home/vmail");
	expect("%{mbox.from}", "Alice.B@Sender.Example");
	expect("%{mda}", "/usr/local/bin/spamc | /usr/libexec/deliver");

	/* Names are matched without regard to case, as OpenSMTPD does. */
	expect("%{RCPT.Domain}", "Example.org");
	expect("%{Sender.USER}", "Alice.B");

	/* The null sender: every part empty, even sliced. */
	ctx.sender = "";
	ctx.mbox_from = "MAILER-DAEMON";
	expect("%{sender}", "");
	expect("%{sender.user}", "");
	expect("%{sender.domain}", "");
	expect("<%{sender[3]}>", "<>");
	expect("%{mbox.from}", "MAILER-DAEMON");

	ctx.rcpt = "no-at-sign";
	expect_err("%{rcpt.user}", "malformed address");
	expect("%{rcpt}", "no-at-sign");
}

static void
test_missing(void)
{
	memset(&ctx, 0, sizeof(ctx));
	expect_err("%{sender}", "%{sender} is not available");
	expect_err("%{sender.domain}", "%{sender} is not available");
	expect_err("%{rcpt.user}", "%{rcpt} is not available");
	expect_err("%{dest}", "%{dest} is not available");
	expect_err("%{user.username}", "%{user.username} is not available");
	expect_err("%{user.directory}",
	    "%{user.directory} is not available");
	expect_err("%{mbox.from}", "%{mbox.from} is not available");
	expect_err("%{mda}", "%{mda} is only available in mda wrappers");
	expect_err("~/Maildir", "home directory");
	expect("/var/mail/plain", "/var/mail/plain");
}

/* The manual's slice examples and every other slice form. */
static void
test_slices(void)
{
	ctx_full();
	ctx.rcpt = "user@example.org";
	expect("%{rcpt.domain[0]}", "e");
	expect("%{rcpt.domain[1]}", "x");
	expect("%{rcpt.domain[8:]}", "org");
	expect("%{rcpt.domain[-3:]}", "org");
	expect("%{rcpt.domain[0:6]}", "example");
	expect("%{rcpt.domain[0:-4]}", "example");

	expect("%{rcpt.domain[:3]}", "exam");
	expect("%{rcpt.domain[:]}", "example.org");
	expect("%{rcpt.domain[3:3]}", "m");
	expect("%{rcpt.domain[10]}", "g");
	expect("%{rcpt.domain[+1]}", "x");
	/* A negative end counts from the last character, excluded. */
	expect("%{rcpt.domain[-3:-1]}", "or");
	expect("%{rcpt.domain[-4:-2]}", ".o");
	expect("%{rcpt.domain[-11:]}", "example.org");
	expect("%{rcpt.domain[0:-1]}", "example.or");

	/* Ends past the string are clamped, starts past it are not. */
	expect("%{rcpt.domain[0:100]}", "example.org");
	expect("%{rcpt.domain[8:1024]}", "org");
	expect_err("%{rcpt.domain[11]}", "out of range");
	expect_err("%{rcpt.domain[11:]}", "out of range");
	expect_err("%{rcpt.domain[-12:]}", "out of range");
	expect_err("%{rcpt.domain[5:2]}", "out of range");
	expect_err("%{rcpt.domain[0:-12]}", "out of range");
	/* [-N] ends before it starts, an error in OpenSMTPD too. */
	expect_err("%{rcpt.domain[-1]}", "out of range");

	expect_err("%{rcpt.domain[]}", "bad slice");
	expect_err("%{rcpt.domain[x]}", "bad slice");
	expect_err("%{rcpt.domain[1:y]}", "bad slice");
	expect_err("%{rcpt.domain[1:2:3]}", "bad slice");
	expect_err("%{rcpt.domain[-]}", "bad slice");
	expect_err("%{rcpt.domain[ 1]}", "bad slice");
	expect_err("%{rcpt.domain[1025]}", "bad slice");
	expect_err("%{rcpt.domain[0}", "bad slice");
	expect_err("%{rcpt.domain[0]x}", "bad slice");
	expect_err("%{rcpt.domain[1024:]}", "out of range");
	expect_err("%{rcpt.domain[1024]}", "out of range");
}

/* The manual's modifier examples, chains, and the sub-address delim. */
static void
test_modifiers(void)
{
	ctx_full();
	expect("%{rcpt:lowercase}", "user+tag@example.org");
	expect("%{rcpt:uppercase}", "USER+TAG@EXAMPLE.ORG");
	expect("%{rcpt:strip}", "User@Example.org");
	expect("%{rcpt:lowercase|strip}", "user@example.org");
	expect("%{rcpt:strip|uppercase}", "USER@EXAMPLE.ORG");
	expect("%{rcpt:LowerCase|STRIP}", "user@example.org");
	expect("%{rcpt.user:strip}", "User");
	expect("%{rcpt.domain:strip}", "Example.org");
	expect("%{rcpt.user[0:3]:lowercase}", "user");
	/* Modifiers run before the slice. */
	expect("%{rcpt[0:4]:strip}", "User@");
	expect("%{rcpt.domain[-3:]:uppercase}", "ORG");

	expect_err("%{rcpt:bogus}", "unknown format modifier");
	expect_err("%{rcpt:}", "unknown format modifier");
	expect_err("%{rcpt:lowercase|}", "unknown format modifier");
	expect_err("%{rcpt:lowercase|bogus}", "unknown format modifier");
	expect_err("%{rcpt:lower}", "unknown format modifier");
	expect_err("%{rcpt:lowercase[0]}", "unknown format modifier");

	ctx.rcpt = "user-ext-more@my-host.org";
	ctx.subaddr_delim = '-';
	expect("%{rcpt:strip}", "user@my-host.org");
	expect("%{rcpt.domain:strip}", "my");
	ctx.rcpt = "user@my-host.org";
	expect("%{rcpt:strip}", "user@my-host.org");
	ctx.rcpt = "a+b@example.org";
	ctx.subaddr_delim = '\0';
	expect("%{rcpt:strip}", "a@example.org");
}

static void
test_sanitise(void)
{
	ctx_full();
	ctx.rcpt = "user+t?g@example.org";
	expect("%{rcpt}", "user+t:g@example.org");
	expect("%{rcpt:raw}", "user+t?g@example.org");
	expect("%{rcpt:raw|uppercase}", "USER+T?G@EXAMPLE.ORG");
	expect("%{rcpt:uppercase|raw}", "USER+T?G@EXAMPLE.ORG");

	ctx.rcpt = "a!#$%&'*?`{|}~b@example.org";
	expect("%{rcpt.user}", "a:::::::::::::b");
	expect("%{rcpt.user:raw}", "a!#$%&'*?`{|}~b");
	/* Kept: '/', '^', '+', '=', '-', '_' (OpenSMTPD's current set). */
	ctx.rcpt = "a/b^c+d=e-f_g@example.org";
	expect("%{rcpt.user}", "a/b^c+d=e-f_g");

	/* Values no dot-atom can hold must not climb directories. */
	ctx.rcpt = "..@example.org";
	expect_err("/var/vmail/%{rcpt.user}", "unsafe");
	ctx.rcpt = "../../etc@example.org";
	expect_err("/var/vmail/%{rcpt.user}", "unsafe");
	ctx.rcpt = "john..doe@example.org";
	expect_err("%{rcpt}", "unsafe");
	ctx.rcpt = ".@example.org";
	expect_err("%{rcpt.user}", "unsafe");
	expect("%{rcpt.user:raw}", ".");
	ctx.rcpt = "a.b@example.org";
	expect("%{rcpt.user}", "a.b");

	/* Trusted values are never rewritten. */
	ctx.directory = "/home/we!rd~dir";
	ctx.user = "we!rd";
	expect("%{user.directory}", "/home/we!rd~dir");
	expect("%{user.username}", "we:rd");
	expect("%{mda}", "/usr/local/bin/spamc | /usr/libexec/deliver");
	/* The format itself is configuration, not input. */
	expect("/a b|c?d", "/a b|c?d");
}

/* "~/", "%%" and a lone '%', as OpenSMTPD treats them. */
static void
test_literals(void)
{
	ctx_full();
	expect("~/Maildir", "/home/vmail/Maildir");
	expect("~/", "/home/vmail/");
	expect("~", "~");
	expect("~user/Maildir", "~user/Maildir");
	expect("/var/~/x", "/var/~/x");
	expect("~/~/x", "/home/vmail/~/x");
	expect("", "");
	expect("100%%", "100%");
	expect("%%{rcpt}", "%{rcpt}");
	expect("%%%{rcpt.user}", "%User+Tag");
	expect("50%", "50%");
	expect("%x%", "%x%");
	expect("%", "%");
	expect("}{", "}{");
}

static void
test_errors(void)
{
	ctx_full();
	expect_err("%{bogus}", "unknown format token");
	expect_err("%{}", "unknown format token");
	expect_err("%{rcpt.}", "unknown format token");
	expect_err("%{ rcpt}", "unknown format token");
	expect_err("%{rcpt.domainx}", "unknown format token");
	expect_err("%{rcpt", "unterminated");
	expect_err("/var/%{rcpt.domain", "unterminated");
	expect_err("%{", "unterminated");
	expect_err("/ok/%{rcpt.user}/%{nope}", "unknown format token");
}

static void
test_mixed(void)
{
	ctx_full();
	expect("/var/mail/%{rcpt.domain}/%{rcpt.user:lowercase}",
	    "/var/mail/Example.org/user+tag");
	expect("/var/vmail/%{rcpt.domain}/%{rcpt.user}",
	    "/var/vmail/Example.org/User+Tag");
	expect("/var/vmail/%{dest.domain:lowercase}/%{dest.user:strip}/Maildir",
	    "/var/vmail/dest.example/vuser/Maildir");
	expect("%{rcpt.user}%{rcpt.domain}", "User+TagExample.org");
	expect("~/Maildir/.%{rcpt.user[-3:]:lowercase}",
	    "/home/vmail/Maildir/.tag");
	expect("/usr/libexec/dovecot/deliver -f %{sender} -a %{rcpt:strip}",
	    "/usr/libexec/dovecot/deliver -f Alice.B@Sender.Example"
	    " -a User@Example.org");
	expect("%{mda} --user %{user.username}",
	    "/usr/local/bin/spamc | /usr/libexec/deliver --user vmail");
}

/* Heap buffers of the exact size, so any overrun is caught by ASan. */
static void
bound(const char *in, const char *want)
{
	size_t		 len = strlen(want);
	char		*fit = malloc(len + 1), *small = malloc(len);
	const char	*err = NULL;
	int		 rc;

	if (fit == NULL || small == NULL)
		fatalx("out of memory");
	rc = expand_format(in, &ctx, fit, len + 1, &err);
	ok(rc == 0 && strcmp(fit, want) == 0, "\"%s\" fits in %zu bytes", in,
	    len + 1);
	err = NULL;
	rc = len > 0 ? expand_format(in, &ctx, small, len, &err) : -1;
	ok(len == 0 || (rc == -1 && err != NULL &&
	    strcmp(err, "expansion too long") == 0 && small[0] == '\0'),
	    "\"%s\" in %zu bytes is too long (%s)", in, len,
	    err ? err : "no reason");
	free(fit);
	free(small);
}

static void
test_bounds(void)
{
	char		 c = 'x';
	const char	*err = NULL;

	ctx_full();
	bound("/var/mail/plain", "/var/mail/plain");
	bound("/var/vmail/%{rcpt.domain}/%{rcpt.user:lowercase}",
	    "/var/vmail/Example.org/user+tag");
	bound("/x/%{rcpt.domain}", "/x/Example.org");
	bound("%{rcpt.domain}/x", "Example.org/x");
	bound("~/Maildir", "/home/vmail/Maildir");
	bound("~/", "/home/vmail/");
	bound("100%%", "100%");
	bound("%{rcpt.domain[0:6]}", "Example");
	ok(expand_format("", &ctx, &c, 0, &err) == -1 && c == 'x',
	    "zero-sized output refused and untouched");
	c = 'x';
	ok(expand_format("", &ctx, &c, 1, &err) == 0 && c == '\0',
	    "empty format fits in one byte");
	ok(expand_format("a", &ctx, &c, 1, &err) == -1 && c == '\0',
	    "one character does not fit in one byte");
}

int
main(void)
{
	log_init(1, 0);
	test_tokens();
	test_missing();
	test_slices();
	test_modifiers();
	test_sanitise();
	test_literals();
	test_errors();
	test_mixed();
	test_bounds();
	return tap_done();
}
