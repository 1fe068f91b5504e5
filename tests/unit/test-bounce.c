/*
 * test-bounce.c - bounce_write() produces a well-formed RFC 3464 report:
 * the top-level headers, three MIME parts, the delivery-status fields per
 * recipient, the original message (or its headers) unchanged but for
 * CRLF, no line over 998 characters, and -1 when the message or the
 * output fails.  Python's email package parses one result independently.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"
#include "tap.h"

/*
 * The recipients below are written positionally with the fields a test
 * sets; the DSN fields after them (action, orcpt, retry_until) are zero
 * unless a test names them.
 */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* Tue, 14 Nov 2023 22:13:20 UTC */
#define NOW		((time_t)1700000000)
#define MB		(1024 * 1024)

struct out {
	char	*text;
	size_t	 len;
	int	 rc;
	int	 err;		/* errno after a -1 */
};

struct part {
	const char	*text;
	size_t		 len;
};

static const char msg1[] =
    "From: Alice <alice@example.com>\n"
    "To: bob@example.org\n"
    "Subject: hello\n"
    "Message-ID: <1@example.com>\n"
    "\n"
    "Hello Bob,\n"
    "\n"
    "--not a boundary\n"
    "bye\n";
static const char msg1_headers[] =
    "From: Alice <alice@example.com>\n"
    "To: bob@example.org\n"
    "Subject: hello\n"
    "Message-ID: <1@example.com>\n";

/* A message in an unlinked temp file, its offset left at the end. */
static int
msgfile(const char *text, size_t len)
{
	char	 path[] = "/tmp/test-bounce.XXXXXX";
	int	 fd;

	if ((fd = mkstemp(path)) == -1)
		fatal("mkstemp");
	unlink(path);
	if (write(fd, text, len) != (ssize_t)len)
		fatal("write");
	return fd;
}

static struct out
run(const struct bounce_info *bi, const struct bounce_rcpt *r, size_t n,
    int fd)
{
	struct out	 o;
	FILE		*f;
	long		 len;

	if ((f = tmpfile()) == NULL)
		fatal("tmpfile");
	errno = 0;
	o.rc = bounce_write(f, bi, r, n, fd, NOW);
	o.err = errno;
	if ((len = ftell(f)) == -1)
		fatal("ftell");
	rewind(f);
	o.text = xmalloc(len + 1);
	if (fread(o.text, 1, len, f) != (size_t)len)
		fatal("fread");
	o.text[len] = '\0';
	o.len = len;
	fclose(f);
	return o;
}

static struct out
run_msg(const struct bounce_info *bi, const struct bounce_rcpt *r, size_t n,
    const char *msg, size_t len)
{
	struct out	 o;
	int		 fd;

	fd = msgfile(msg, len);
	o = run(bi, r, n, fd);
	close(fd);
	return o;
}

/* Length of the header section at text: through the LF of its last line. */
static size_t
head_len(const char *text, size_t len)
{
	const char	*p;

	if (len > 0 && text[0] == '\n')
		return 0;
	if ((p = memmem(text, len, "\n\n", 2)) == NULL)
		return len;
	return p - text + 1;
}

/*
 * The unfolded value of field name in the header-like section at text
 * (up to its first empty line), or NULL.
 */
static char *
field(const char *text, size_t len, const char *name)
{
	const char	*p = text, *end = text + head_len(text, len);
	size_t		 nlen = strlen(name), i, j;
	char		*v;

	while (p < end) {
		if ((size_t)(end - p) > nlen && strncmp(p, name, nlen) == 0 &&
		    p[nlen] == ':') {
			p += nlen + 1;
			p += strspn(p, " ");
			v = xmalloc(end - p + 1);
			for (i = j = 0; p + i < end; i++) {
				if (p[i] == '\n' && (p + i + 1 == end ||
				    (p[i + 1] != ' ' && p[i + 1] != '\t')))
					break;
				if (p[i] != '\n')
					v[j++] = p[i];
			}
			v[j] = '\0';
			return v;
		}
		if ((p = memchr(p, '\n', end - p)) == NULL)
			break;
		p++;
	}
	return NULL;
}

/* 1 if field name has exactly the value want. */
static int
field_is(const char *text, size_t len, const char *name, const char *want)
{
	char	*v = field(text, len, name);
	int	 r = v != NULL && strcmp(v, want) == 0;

	free(v);
	return r;
}

static int
has_line(const char *text, size_t len, const char *line)
{
	size_t		 ll = strlen(line);
	const char	*p = text, *end = text + len;

	while ((p = memmem(p, end - p, line, ll)) != NULL) {
		if ((p == text || p[-1] == '\n') &&
		    (p + ll == end || p[ll] == '\n'))
			return 1;
		p++;
	}
	return 0;
}

static int
count_prefix(const char *text, size_t len, const char *prefix)
{
	size_t		 pl = strlen(prefix);
	const char	*p = text, *end = text + len;
	int		 n = 0;

	while (p < end) {
		if ((size_t)(end - p) >= pl && memcmp(p, prefix, pl) == 0)
			n++;
		if ((p = memchr(p, '\n', end - p)) == NULL)
			break;
		p++;
	}
	return n;
}

static size_t
max_line(const char *text, size_t len)
{
	size_t	 i, col = 0, max = 0;

	for (i = 0; i < len; i++) {
		if (text[i] == '\n')
			col = 0;
		else if (++col > max)
			max = col;
	}
	return max;
}

static int
contains(const char *text, size_t len, const char *s)
{
	return memmem(text, len, s, strlen(s)) != NULL;
}

/* The boundary parameter of the top-level Content-Type, or "". */
static void
boundary_of(const struct out *o, char *b, size_t blen)
{
	char	*ct, *p;
	size_t	 n;

	b[0] = '\0';
	if ((ct = field(o->text, o->len, "Content-Type")) == NULL)
		return;
	if ((p = strstr(ct, "boundary=\"")) != NULL) {
		p += strlen("boundary=\"");
		n = strcspn(p, "\"");
		if (p[n] == '"' && n < blen) {
			memcpy(b, p, n);
			b[n] = '\0';
		}
	}
	free(ct);
}

/*
 * The body parts between the boundary delimiters; how many, or -1 when
 * the structure is broken (no close delimiter, text after it...).
 */
static int
split(const struct out *o, struct part *parts, int max)
{
	char		 b[100], delim[110];
	const char	*p, *q, *end = o->text + o->len;
	size_t		 dl;
	int		 n = 0;

	boundary_of(o, b, sizeof(b));
	if (b[0] == '\0')
		return -1;
	dl = snprintf(delim, sizeof(delim), "\n--%s", b);
	if ((p = memmem(o->text, o->len, delim, dl)) == NULL)
		return -1;
	for (;;) {
		p += dl;
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			return end - p == 3 && p[2] == '\n' ? n : -1;
		if (p >= end || *p++ != '\n')
			return -1;
		if ((q = memmem(p, end - p, delim, dl)) == NULL)
			return -1;
		if (n < max) {
			parts[n].text = p;
			parts[n].len = q - p;
		}
		n++;
		p = q;
	}
}

static struct part
body_of(struct part pt)
{
	struct part	 b;
	size_t		 h = head_len(pt.text, pt.len);

	/* h < len: the empty line after the header section is there. */
	b.text = pt.text + h + (h < pt.len);
	b.len = h < pt.len ? pt.len - h - 1 : 0;
	return b;
}

/* 1 if part has Content-Type type (parameters ignored). */
static int
type_is(struct part pt, const char *type)
{
	char	*v = field(pt.text, pt.len, "Content-Type");
	int	 r;

	if (v == NULL)
		return 0;
	v[strcspn(v, ";")] = '\0';
	r = strcmp(v, type) == 0;
	free(v);
	return r;
}

/* The idx-th block (0 per-message, then recipients) of part 2's body. */
static struct part
block(struct part body, int idx)
{
	struct part	 b = body;
	const char	*p;

	for (; idx > 0; idx--) {
		if ((p = memmem(b.text, b.len, "\n\n", 2)) == NULL) {
			b.len = 0;
			return b;
		}
		b.len -= p + 2 - b.text;
		b.text = p + 2;
	}
	if ((p = memmem(b.text, b.len, "\n\n", 2)) != NULL)
		b.len = p + 1 - b.text;
	return b;
}

static int
parts3(const struct out *o, struct part *p)
{
	return split(o, p, 3) == 3;
}

static void
init_info(struct bounce_info *bi)
{
	memset(bi, 0, sizeof(*bi));
	bi->hostname = "mx.example.org";
	bi->sender = "alice@example.com";
	bi->msgid = 0xdeadbeef;
	bi->arrival = NOW - 3600;
	bi->src = "192.0.2.1";
	bi->helo = "client.example.com";
}

static void
test_one(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.1.1", "550 5.1.1 <bob@example.org>: user unknown", 1 };
	struct out		 o;
	struct part		 p[3], body, b;
	char			 bd[100], *v;

	init_info(&bi);
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(o.rc == 0, "one recipient: returns 0");
	ok(field_is(o.text, o.len, "From",
	    "Mail Delivery System <MAILER-DAEMON@mx.example.org>"),
	    "From is MAILER-DAEMON at the hostname");
	ok(field_is(o.text, o.len, "To", "<alice@example.com>"),
	    "To is the sender");
	ok(field_is(o.text, o.len, "Subject",
	    "Delivery status notification: error"), "Subject says error");
	ok(field_is(o.text, o.len, "Date", "Tue, 14 Nov 2023 22:13:20 +0000"),
	    "Date is now in RFC 5322 form");
	v = field(o.text, o.len, "Message-ID");
	ok(v != NULL && v[0] == '<' && strstr(v, "deadbeef") != NULL &&
	    strstr(v, "@mx.example.org>") != NULL,
	    "Message-ID has the msgid and the hostname");
	free(v);
	ok(field_is(o.text, o.len, "Auto-Submitted", "auto-replied"),
	    "Auto-Submitted: auto-replied");
	ok(field_is(o.text, o.len, "MIME-Version", "1.0"), "MIME-Version");
	v = field(o.text, o.len, "Content-Type");
	ok(v != NULL && strncmp(v, "multipart/report;", 17) == 0 &&
	    strstr(v, "report-type=delivery-status") != NULL,
	    "Content-Type multipart/report, report-type delivery-status");
	free(v);
	boundary_of(&o, bd, sizeof(bd));
	ok(strlen(bd) >= 32, "boundary of 32+ characters");
	ok(bd[0] != '\0' && !contains(msg1, strlen(msg1), bd),
	    "boundary does not occur in the original");
	ok(field_is(o.text, o.len, "Content-Transfer-Encoding", "7bit"),
	    "7bit for a 7bit original");
	ok(split(&o, p, 3) == 3, "exactly three parts");
	if (!parts3(&o, p)) {
		free(o.text);
		return;
	}
	ok(type_is(p[0], "text/plain") && type_is(p[1],
	    "message/delivery-status") && type_is(p[2], "message/rfc822"),
	    "parts are text/plain, message/delivery-status, message/rfc822");

	body = body_of(p[0]);
	ok(contains(body.text, body.len, "Hi!\n\nThis is the MAILER-DAEMON, "
	    "please DO NOT REPLY to this e-mail.\n\n"), "part 1 greeting");
	ok(contains(body.text, body.len, "An error has occurred while "
	    "attempting to deliver a message for the following list of "
	    "recipients:\n\n") && !contains(body.text, body.len,
	    "delivery will be retried"), "part 1 error sentence only");
	ok(has_line(body.text, body.len, "<bob@example.org>: 550 5.1.1 "
	    "<bob@example.org>: user unknown"), "part 1 recipient line");
	ok(has_line(body.text, body.len,
	    "Below is a copy of the original message:"), "part 1 closing line");

	body = body_of(p[1]);
	b = block(body, 0);
	ok(has_line(b.text, b.len, "Reporting-MTA: dns; mx.example.org"),
	    "Reporting-MTA");
	ok(has_line(b.text, b.len, "Arrival-Date: Tue, 14 Nov 2023 21:13:20 "
	    "+0000"), "Arrival-Date");
	ok(has_line(b.text, b.len,
	    "Received-From-MTA: dns; client.example.com (192.0.2.1)"),
	    "Received-From-MTA");
	ok(count_prefix(body.text, body.len, "Original-Envelope-Id:") == 0,
	    "no Original-Envelope-Id without ENVID");
	b = block(body, 1);
	ok(has_line(b.text, b.len, "Final-Recipient: rfc822; bob@example.org"),
	    "Final-Recipient");
	ok(count_prefix(body.text, body.len, "Original-Recipient:") == 0,
	    "no Original-Recipient when rcpt equals dest");
	ok(has_line(b.text, b.len, "Action: failed"), "Action: failed");
	ok(has_line(b.text, b.len, "Status: 5.1.1"), "Status: 5.1.1");
	ok(has_line(b.text, b.len, "Diagnostic-Code: smtp; 550 5.1.1 "
	    "<bob@example.org>: user unknown"), "Diagnostic-Code");
	ok(block(body, 2).len == 0, "one recipient block");

	body = body_of(p[2]);
	ok(body.len == strlen(msg1) && memcmp(body.text, msg1, body.len) == 0,
	    "message/rfc822 part is the original verbatim");
	ok(max_line(o.text, o.len) <= 998, "no line over 998");
	free(o.text);
}

static void
test_three(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r[3] = {
		{ "Team@Example.org", "carol@example.org", "5.2.2",
		    "552 5.2.2 mailbox full", 1 },
		{ "dave@example.net", "dave@example.net", "4.4.1",
		    "connection timed out", 0 },
		{ "erin@example.net", "erin@example.net", "5.7.1", "", 1 },
	};
	struct out		 o;
	struct part		 p[3], body, b;

	init_info(&bi);
	o = run_msg(&bi, r, 3, msg1, strlen(msg1));
	ok(o.rc == 0 && parts3(&o, p), "three recipients: three parts");
	if (!parts3(&o, p)) {
		free(o.text);
		return;
	}
	ok(field_is(o.text, o.len, "Subject",
	    "Delivery status notification: error"),
	    "any permanent failure: Subject says error");
	body = body_of(p[1]);
	ok(count_prefix(body.text, body.len, "Final-Recipient:") == 3,
	    "three Final-Recipient fields");
	ok(count_prefix(body.text, body.len, "Original-Recipient:") == 1,
	    "one Original-Recipient");
	b = block(body, 1);
	ok(has_line(b.text, b.len, "Final-Recipient: rfc822; carol@example.org")
	    && has_line(b.text, b.len,
	    "Original-Recipient: rfc822; Team@Example.org") &&
	    has_line(b.text, b.len, "Action: failed") &&
	    has_line(b.text, b.len, "Status: 5.2.2") &&
	    has_line(b.text, b.len,
	    "Diagnostic-Code: smtp; 552 5.2.2 mailbox full"),
	    "recipient 1: expanded, failed, 5.2.2");
	b = block(body, 2);
	ok(has_line(b.text, b.len, "Final-Recipient: rfc822; dave@example.net")
	    && has_line(b.text, b.len, "Action: delayed") &&
	    has_line(b.text, b.len, "Status: 4.4.1") &&
	    has_line(b.text, b.len,
	    "Diagnostic-Code: smtp; connection timed out") &&
	    count_prefix(b.text, b.len, "Original-Recipient:") == 0,
	    "recipient 2: delayed, 4.4.1, text diagnostic");
	b = block(body, 3);
	ok(has_line(b.text, b.len, "Final-Recipient: rfc822; erin@example.net")
	    && has_line(b.text, b.len, "Action: failed") &&
	    has_line(b.text, b.len, "Status: 5.7.1") &&
	    count_prefix(b.text, b.len, "Diagnostic-Code:") == 0,
	    "recipient 3: failed, no Diagnostic-Code for an empty diag");
	body = body_of(p[0]);
	ok(contains(body.text, body.len, "An error has occurred") &&
	    contains(body.text, body.len, "delivery will be retried"),
	    "part 1 has both the error and the delay sections");
	ok(has_line(body.text, body.len,
	    "<dave@example.net>: connection timed out") &&
	    has_line(body.text, body.len,
	    "<erin@example.net>: no diagnostic, status 5.7.1"),
	    "part 1 lines for every recipient");
	free(o.text);
}

static void
test_delay(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "4.4.7", "421 4.4.7 try again later", 0 };
	struct out		 o;
	struct part		 p[3], body;

	init_info(&bi);
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(o.rc == 0 && field_is(o.text, o.len, "Subject",
	    "Delivery status notification: delay"),
	    "delay: Subject says delay");
	if (parts3(&o, p)) {
		body = body_of(p[1]);
		ok(has_line(body.text, body.len, "Action: delayed") &&
		    has_line(body.text, body.len, "Status: 4.4.7"),
		    "delay: Action delayed, Status 4.4.7");
		body = body_of(p[0]);
		ok(contains(body.text, body.len, "Your message could not be "
		    "delivered yet to the following recipients; delivery will "
		    "be retried:\n\n") && !contains(body.text, body.len,
		    "An error has occurred"), "delay: part 1 delay sentence");
	} else
		ok(0, "delay: three parts");
	free(o.text);
}

static void
test_status(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r[7] = {
		{ "a@x", "a@x", "5.1", "", 1 },
		{ "b@x", "b@x", "3.1.1", "", 1 },
		{ "c@x", "c@x", "5.1.1234", "", 1 },
		{ "d@x", "d@x", "5.1.1 ", "", 1 },
		{ "e@x", "e@x", NULL, "", 1 },
		{ "f@x", "f@x", "abc", "", 0 },
		{ "g@x", "g@x", "2.0.0", "", 1 },
	};
	struct out		 o;
	struct part		 p[3], body;

	init_info(&bi);
	o = run_msg(&bi, r, 7, msg1, strlen(msg1));
	ok(o.rc == 0 && parts3(&o, p), "bad status: three parts");
	if (parts3(&o, p)) {
		body = body_of(p[1]);
		ok(count_prefix(body.text, body.len, "Status: 5.0.0\n") == 5,
		    "invalid status of a failure becomes 5.0.0");
		ok(count_prefix(body.text, body.len, "Status: 4.0.0\n") == 1,
		    "invalid status of a delay becomes 4.0.0");
		ok(count_prefix(body.text, body.len, "Status: 2.0.0\n") == 1,
		    "valid class 2 status kept");
	}
	free(o.text);
}

static void
test_envid(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.1.1", "550 no", 1 };
	struct out		 o;

	init_info(&bi);
	bi.envid = "a+b=c d\001\303\251~";
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(o.rc == 0 && has_line(o.text, o.len,
	    "Original-Envelope-Id: a+2Bb+3Dc+20d+01+C3+A9~"),
	    "ENVID xtext-encoded");
	free(o.text);
}

/* Success notices, ORCPT, a delay's note and Will-Retry-Until. */
static void
test_dsn_fields(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "Team@Example.org", "bob@example.org",
	    NULL, "250 2.0.0 Ok: queued", 0 };
	struct bounce_rcpt	 d = { "bob@example.org", "bob@example.org",
	    NULL, "exited with status 75", 0 };
	struct out		 o;
	struct part		 p[3], body;

	init_info(&bi);
	r.action = "delivered";
	r.orcpt = "rfc822;Orig+x@Example.org";
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(o.rc == 0 && field_is(o.text, o.len, "Subject",
	    "Delivery status notification: delivered"),
	    "success: Subject says delivered");
	if (parts3(&o, p)) {
		body = body_of(p[1]);
		ok(has_line(body.text, body.len, "Action: delivered") &&
		    has_line(body.text, body.len, "Status: 2.0.0"),
		    "success: Action delivered, Status 2.0.0 by default");
		ok(has_line(body.text, body.len,
		    "Original-Recipient: rfc822; Orig+x@Example.org") &&
		    count_prefix(body.text, body.len,
		    "Original-Recipient:") == 1,
		    "ORCPT is the Original-Recipient, not RCPT TO");
		body = body_of(p[0]);
		ok(contains(body.text, body.len, "Your message was successfully"
		    " delivered to the following recipients:\n\n"
		    "<bob@example.org>: 250 2.0.0 Ok: queued\n"),
		    "success: part 1 sentence and line");
	} else
		ok(0, "success: three parts");
	free(o.text);

	r.action = "relayed";
	r.orcpt = "utf-8;caf\303\251@example.org";
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(o.rc == 0 && field_is(o.text, o.len, "Subject",
	    "Delivery status notification: relayed") && has_line(o.text,
	    o.len, "Action: relayed") && contains(o.text, o.len,
	    "does not send delivery notifications"), "relayed notice");
	ok(has_line(o.text, o.len,
	    "Original-Recipient: utf-8; caf??@example.org"),
	    "ORCPT type kept, non-ASCII made safe");
	free(o.text);

	r.action = "bogus\nInjected: yes";
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(o.rc == 0 && has_line(o.text, o.len, "Action: delayed") &&
	    !contains(o.text, o.len, "bogus"),
	    "an unknown Action falls back to failed/delayed");
	free(o.text);

	bi.note = "Your message has been waiting in the queue for 4 hours.";
	d.retry_until = NOW + 86400;
	o = run_msg(&bi, &d, 1, msg1, strlen(msg1));
	ok(o.rc == 0 && parts3(&o, p), "delayed with note: three parts");
	if (parts3(&o, p)) {
		body = body_of(p[0]);
		ok(has_line(body.text, body.len, bi.note),
		    "the note is in part 1");
		ok(has_line(body.text, body.len, "Delivery will be tried until"
		    " Wed, 15 Nov 2023 22:13:20 +0000; the message is returned"
		    " if it still fails then."), "part 1 says until when");
		body = body_of(p[1]);
		ok(has_line(body.text, body.len, "Will-Retry-Until: Wed, 15 Nov"
		    " 2023 22:13:20 +0000") && has_line(body.text, body.len,
		    "Status: 4.0.0"), "Will-Retry-Until, Status 4.0.0");
	}
	free(o.text);
}

static void
test_headers_only(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.1.1", "550 no", 1 };
	struct out		 o;
	struct part		 p[3], body;

	init_info(&bi);
	bi.headers_only = 1;
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(o.rc == 0 && parts3(&o, p), "headers only: three parts");
	if (!parts3(&o, p)) {
		free(o.text);
		return;
	}
	ok(type_is(p[2], "text/rfc822-headers"),
	    "headers only: part 3 is text/rfc822-headers");
	body = body_of(p[2]);
	ok(body.len == strlen(msg1_headers) &&
	    memcmp(body.text, msg1_headers, body.len) == 0,
	    "headers only: exactly the header section");
	ok(!contains(o.text, o.len, "Hello Bob"),
	    "headers only: the body is not included");
	body = body_of(p[0]);
	ok(has_line(body.text, body.len,
	    "Below is a copy of the original message headers:"),
	    "headers only: part 1 says headers");
	free(o.text);
}

/* CRLF lines of varying length, and the same text with LF. */
static void
make_crlf(size_t size, char **crlf, size_t *clen, char **lf, size_t *llen)
{
	size_t	 i, n;

	*crlf = xmalloc(size + 200);
	*lf = xmalloc(size + 200);
	*clen = *llen = 0;
	memcpy(*crlf, "Subject: big\r\n\r\n", 16);
	memcpy(*lf, "Subject: big\n\n", 14);
	*clen = 16;
	*llen = 14;
	for (i = 0; *clen < size; i++) {
		n = i % 97;
		memset(*crlf + *clen, 'a' + i % 26, n);
		memset(*lf + *llen, 'a' + i % 26, n);
		memcpy(*crlf + *clen + n, "\r\n", 2);
		(*lf)[*llen + n] = '\n';
		*clen += n + 2;
		*llen += n + 1;
	}
}

static void
test_crlf(void)
{
	static const char crlf[] = "Subject: x\r\n\r\nline\rwith cr\r\nend\r\n";
	static const char lf[] = "Subject: x\n\nline\rwith cr\nend\n";
	static const size_t sizes[] = { 900 * 1024, 2 * MB };
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.1.1", "550 no", 1 };
	struct out		 o;
	struct part		 p[3], body;
	char			*big, *bigl;
	size_t			 blen, bllen, i;

	init_info(&bi);
	o = run_msg(&bi, &r, 1, crlf, strlen(crlf));
	ok(o.rc == 0 && parts3(&o, p) &&
	    (body = body_of(p[2])).len == strlen(lf) &&
	    memcmp(body.text, lf, body.len) == 0,
	    "CRLF converted to LF, a lone CR kept");
	ok(!contains(o.text, o.len, "\r\n"), "no CRLF in the output");
	free(o.text);

	/* In memory, and copied in chunks: a CRLF split across reads. */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		make_crlf(sizes[i], &big, &blen, &bigl, &bllen);
		o = run_msg(&bi, &r, 1, big, blen);
		ok(o.rc == 0 && parts3(&o, p) &&
		    (body = body_of(p[2])).len == bllen &&
		    memcmp(body.text, bigl, bllen) == 0,
		    "%zu KB CRLF message converted exactly", sizes[i] / 1024);
		free(o.text);
		free(big);
		free(bigl);
	}
}

static void
test_no_final_newline(void)
{
	static const char m[] = "Subject: x\n\nno newline";
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.1.1", "550 no", 1 };
	struct out		 o;
	struct part		 p[3], body;

	init_info(&bi);
	o = run_msg(&bi, &r, 1, m, strlen(m));
	ok(o.rc == 0 && parts3(&o, p) &&
	    (body = body_of(p[2])).len == strlen(m) &&
	    memcmp(body.text, m, body.len) == 0,
	    "original without a final newline kept exactly");
	free(o.text);
}

static void
test_8bit(void)
{
	static const char m[] = "Subject: caf\303\251\n\nna\303\257ve\n";
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.1.1", "550 \303\251chec", 1 };
	struct out		 o;
	struct part		 p[3], body;

	init_info(&bi);
	o = run_msg(&bi, &r, 1, m, strlen(m));
	ok(o.rc == 0 && field_is(o.text, o.len, "Content-Transfer-Encoding",
	    "8bit"), "8bit original: top level declares 8bit");
	ok(parts3(&o, p) && field_is(p[2].text, p[2].len,
	    "Content-Transfer-Encoding", "8bit") &&
	    (body = body_of(p[2])).len == strlen(m) &&
	    memcmp(body.text, m, body.len) == 0,
	    "8bit original: part 3 declares 8bit, bytes verbatim");
	ok(parts3(&o, p) && has_line(body_of(p[1]).text, body_of(p[1]).len,
	    "Diagnostic-Code: smtp; 550 ??chec"),
	    "8bit diagnostic text made ASCII");
	free(o.text);
}

static void
test_long_lines(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r[3];
	struct out		 o;
	struct part		 p[3], b;
	char			*x, *words, *addr, *v;
	size_t			 i, nx;

	x = xmalloc(5001);
	memset(x, 'x', 5000);
	x[5000] = '\0';
	words = xmalloc(5001);
	for (i = 0; i < 5000; i++)
		words[i] = i % 7 == 6 ? ' ' : 'w';
	words[5000] = '\0';
	addr = xmalloc(2001);
	memset(addr, 'u', 2000);
	addr[2000] = '\0';
	r[0] = (struct bounce_rcpt){ "a@x", "a@x", "5.0.0", x, 1 };
	r[1] = (struct bounce_rcpt){ "b@x", "b@x", "5.0.0", words, 1 };
	r[2] = (struct bounce_rcpt){ addr, addr, "5.0.0", "550 no", 1 };
	init_info(&bi);
	o = run_msg(&bi, r, 3, msg1, strlen(msg1));
	ok(o.rc == 0 && max_line(o.text, o.len) <= 998,
	    "5000-character diagnostics, 2000-character address: "
	    "no line over 998 (longest %zu)", max_line(o.text, o.len));
	ok(parts3(&o, p), "long fields: three parts");
	if (parts3(&o, p)) {
		b = block(body_of(p[1]), 1);
		v = field(b.text, b.len, "Diagnostic-Code");
		for (i = nx = 0; v != NULL && v[i] != '\0'; i++)
			nx += v[i] == 'x';
		ok(v != NULL && strncmp(v, "smtp; xxx", 9) == 0 && nx == 5000,
		    "folded Diagnostic-Code keeps all 5000 characters");
		free(v);
		b = block(body_of(p[1]), 2);
		ok(count_prefix(b.text, b.len, "Diagnostic-Code: smtp; wwwwww ")
		    == 1 && max_line(b.text, b.len) <= 78,
		    "a diagnostic of words is folded at 78");
	}
	free(o.text);
	free(x);
	free(words);
	free(addr);
}

static void
test_injection(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.1.1", "550-first line\r\nInjected: header\n550 last\001", 1 };
	struct out		 o;

	init_info(&bi);
	bi.sender = "alice@example.com\nBcc: victim@example.net";
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(o.rc == 0 && count_prefix(o.text, o.len, "Injected:") == 0 &&
	    count_prefix(o.text, o.len, "Bcc:") == 0,
	    "CR, LF in diag and sender do not start lines");
	ok(has_line(o.text, o.len, "Diagnostic-Code: smtp; 550-first line "
	    "Injected: header 550 last"), "control characters become spaces");
	free(o.text);
}

static void
test_too_large(void)
{
	static const char head[] = "Subject: huge\nX-Test: yes\n\nbody\n";
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.3.4", "552 too big", 1 };
	struct out		 o;
	struct part		 p[3], body;
	int			 fd;

	init_info(&bi);
	fd = msgfile(head, strlen(head));
	if (ftruncate(fd, 11 * MB) == -1)
		fatal("ftruncate");
	o = run(&bi, &r, 1, fd);
	close(fd);
	ok(o.rc == 0 && parts3(&o, p) && type_is(p[2], "text/rfc822-headers")
	    && (body = body_of(p[2])).len == 26 &&
	    memcmp(body.text, head, 26) == 0,
	    "message over 10 MB: headers only");
	ok(parts3(&o, p) && contains(p[0].text, p[0].len, "larger than 10 MB"),
	    "message over 10 MB: part 1 says so");
	free(o.text);
}

static void
test_errors(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.1.1", "550 no", 1 };
	struct out		 o;
	char			 path[] = "/tmp/test-bounce.XXXXXX";
	FILE			*ro;
	int			 fd, wfd;

	init_info(&bi);
	/* Far above the lowest free number, which tmpfile() would reuse. */
	wfd = msgfile(msg1, strlen(msg1));
	if ((fd = fcntl(wfd, F_DUPFD, 200)) == -1)
		fatal("fcntl");
	close(wfd);
	close(fd);
	o = run(&bi, &r, 1, fd);
	ok(o.rc == -1 && o.err == EBADF, "closed msgfd: -1, EBADF");
	ok(o.len == 0, "closed msgfd: nothing written");
	free(o.text);

	if ((fd = mkstemp(path)) == -1)
		fatal("mkstemp");
	if ((wfd = open(path, O_WRONLY)) == -1)
		fatal("open");
	unlink(path);
	if (write(wfd, msg1, strlen(msg1)) != (ssize_t)strlen(msg1))
		fatal("write");
	close(fd);
	o = run(&bi, &r, 1, wfd);
	close(wfd);
	ok(o.rc == -1 && o.err == EBADF, "write-only msgfd: -1, EBADF");
	free(o.text);

	fd = msgfile(msg1, strlen(msg1));
	if ((ro = fopen("/dev/null", "r")) == NULL)
		fatal("fopen");
	errno = 0;
	ok(bounce_write(ro, &bi, &r, 1, fd, NOW) == -1 && errno != 0,
	    "unwritable output: -1, errno set");
	fclose(ro);
	o = run(&bi, &r, 0, fd);
	ok(o.rc == -1 && o.err == EINVAL, "no recipients: -1, EINVAL");
	free(o.text);
	close(fd);
}

static void
test_zones(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r = { "bob@example.org", "bob@example.org",
	    "5.1.1", "550 no", 1 };
	struct out		 o;

	init_info(&bi);
	setenv("TZ", "ABC-2", 1);
	tzset();
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(field_is(o.text, o.len, "Date", "Wed, 15 Nov 2023 00:13:20 +0200"),
	    "Date in local time, positive zone");
	free(o.text);
	setenv("TZ", "ABC+3:30", 1);
	tzset();
	o = run_msg(&bi, &r, 1, msg1, strlen(msg1));
	ok(field_is(o.text, o.len, "Date", "Tue, 14 Nov 2023 18:43:20 -0330"),
	    "Date in local time, negative zone");
	free(o.text);
	setenv("TZ", "UTC0", 1);
	tzset();
}

/*
 * An independent MIME parser: argv 1 the file, 2 the type of part 3,
 * 3 the number of recipients.
 */
static const char pycheck[] =
    "import email,sys\n"
    "m=email.message_from_binary_file(open(sys.argv[1],\"rb\"))\n"
    "p=m.get_payload() if m.is_multipart() else []\n"
    "t=[x.get_content_type() for x in p]\n"
    "ok=m.is_multipart() and m.get_content_type()==\"multipart/report\" "
    "and m.get_param(\"report-type\")==\"delivery-status\" and "
    "t==[\"text/plain\",\"message/delivery-status\",sys.argv[2]] and "
    "not m.defects and not any(x.defects for x in p)\n"
    "d=p[1].get_payload() if ok else []\n"
    "ok=ok and len(d)==int(sys.argv[3])+1 and "
    "d[0][\"Reporting-MTA\"]==\"dns; mx.example.org\" and "
    "all(b[\"Final-Recipient\"] and b[\"Action\"] for b in d[1:])\n"
    "ok=ok and (t[2]!=\"message/rfc822\" or "
    "p[2].get_payload(0)[\"Subject\"]==\"hello\")\n"
    "sys.exit(0 if ok else 1)\n";

static int
python_parses(const struct out *o, const char *type, size_t nrcpt)
{
	char	 path[] = "/tmp/test-bounce.XXXXXX", cmd[2048];
	int	 fd, st;

	if ((fd = mkstemp(path)) == -1)
		fatal("mkstemp");
	if (write(fd, o->text, o->len) != (ssize_t)o->len)
		fatal("write");
	close(fd);
	snprintf(cmd, sizeof(cmd), "python3 -c '%s' %s %s %zu", pycheck, path,
	    type, nrcpt);
	st = system(cmd);
	unlink(path);
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void
test_python(void)
{
	struct bounce_info	 bi;
	struct bounce_rcpt	 r[3] = {
		{ "Team@Example.org", "carol@example.org", "5.2.2",
		    "552 5.2.2 mailbox full", 1 },
		{ "dave@example.net", "dave@example.net", "4.4.1",
		    "connection timed out", 0 },
		{ "erin@example.net", "erin@example.net", "5.7.1", "", 1 },
	};
	struct out		 o;

	if (system("command -v python3 >/dev/null 2>&1") != 0) {
		skip("python3 parses the report (no python3)");
		skip("python3 parses a headers-only report (no python3)");
		return;
	}
	init_info(&bi);
	bi.envid = "env+id";
	o = run_msg(&bi, r, 3, msg1, strlen(msg1));
	ok(o.rc == 0 && python_parses(&o, "message/rfc822", 3),
	    "python3 email parses the report: three parts of the right types");
	free(o.text);
	bi.headers_only = 1;
	o = run_msg(&bi, r, 1, msg1, strlen(msg1));
	ok(o.rc == 0 && python_parses(&o, "text/rfc822-headers", 1),
	    "python3 email parses a headers-only report");
	free(o.text);
}

int
main(void)
{
	log_init(1, 0);
	setenv("TZ", "UTC0", 1);
	tzset();
	test_one();
	test_three();
	test_delay();
	test_status();
	test_envid();
	test_dsn_fields();
	test_headers_only();
	test_crlf();
	test_no_final_newline();
	test_8bit();
	test_long_lines();
	test_injection();
	test_too_large();
	test_errors();
	test_zones();
	test_python();
	return tap_done();
}
