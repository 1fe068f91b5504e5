/*
 * bounce.c - RFC 3464 delivery status notifications: a multipart/report
 * (RFC 6522) of a human-readable explanation, the message/delivery-status
 * part and the original message (or its headers), written with LF line
 * ends as the spool keeps them.
 */
#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smtpd.h"

/* Larger originals are returned as their headers only. */
#define BOUNCE_MAX_ORIGINAL	(10 * 1024 * 1024)
/*
 * Originals up to this size are read into memory, which lets the boundary
 * be checked against them and the 8bit label be exact.
 */
#define BOUNCE_MAX_MEMORY	(1024 * 1024)
#define BOUNCE_CHUNK		(64 * 1024)

#define LINE_LIMIT	998		/* RFC 5322 2.1.1, without the CRLF */
#define FOLD_AT		78		/* RFC 5322 2.1.1, SHOULD */
#define HOST_MAX	255		/* a DNS name */
#define ADDR_MAX	SMTPD_MAXADDR
#define ENVID_MAX	256		/* 3x when xtext-encoded, still < 998 */
#define DIAG_MAX	8192		/* folded, so only a sanity bound */
#define TEXT_INDENT	"    "		/* continuation lines in part 1 */

struct original {
	char	*text;		/* LF line ends; NULL: copied from the fd */
	size_t	 len;
	int	 headers;	/* only the header section */
	int	 toolarge;	/* headers only because of the size */
	int	 eightbit;
};

static const char *
str(const char *s)
{
	return s != NULL ? s : "";
}

/*
 * A copy of s fit for one line of the report: control characters (CR and
 * LF of a multi-line reply included) become one space, and bytes above
 * ASCII become '?' because the report parts are declared us-ascii.  At
 * most max bytes, trimmed.
 */
static char *
clean(const char *s, size_t max)
{
	char		*d, *p;
	unsigned char	 c;

	p = d = xmalloc(max + 1);
	for (s = str(s); *s != '\0' && (size_t)(p - d) < max; s++) {
		c = *s;
		if (c < 0x20 || c == 0x7f)
			c = ' ';
		else if (c >= 0x80)
			c = '?';
		if (c == ' ' && (p == d || p[-1] == ' '))
			continue;
		*p++ = c;
	}
	while (p > d && p[-1] == ' ')
		p--;
	*p = '\0';
	return d;
}

/*
 * Writes s (from clean()) starting at column col: folded at spaces near
 * FOLD_AT, and a word too long for LINE_LIMIT is cut, so no line exceeds
 * it.  Continuation lines begin with indent, which in a header field is
 * the whitespace that makes them continuations.
 */
static void
put_folded(FILE *out, size_t col, const char *s, const char *indent)
{
	size_t	 ind = strlen(indent), w, n;
	int	 first = 1;

	while (*s != '\0') {
		w = strcspn(s, " ");
		if (!first && col + 1 + w > FOLD_AT) {
			fprintf(out, "\n%s", indent);
			col = ind;
		} else if (!first) {
			fputc(' ', out);
			col++;
		}
		first = 0;
		while (w > 0) {
			if (col >= LINE_LIMIT) {
				fprintf(out, "\n%s", indent);
				col = ind;
			}
			n = w < LINE_LIMIT - col ? w : LINE_LIMIT - col;
			fwrite(s, 1, n, out);
			s += n;
			w -= n;
			col += n;
		}
		s += strspn(s, " ");
	}
}

/* RFC 3461 xtext: '+', '=', space, controls and non-ASCII as "+XX". */
static void
put_xtext(FILE *out, const char *s, size_t max)
{
	unsigned char	 c;

	for (; *s != '\0' && max > 0; s++, max--) {
		c = *s;
		if (c > ' ' && c < 0x7f && c != '+' && c != '=')
			fputc(c, out);
		else
			fprintf(out, "+%02X", c);
	}
}

/*
 * RFC 5322 date, local time with a numeric zone.  strftime's %a and %b
 * are English because the daemon never calls setlocale().
 */
static void
fmt_date(char *buf, size_t len, time_t t)
{
	struct tm	 tm;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm) == 0)
		msd_strlcpy(buf, "Thu, 01 Jan 1970 00:00:00 +0000", len);
}

/* class.subject.detail of RFC 3463, with a class a DSN may carry. */
static int
status_ok(const char *s)
{
	char	 class[2], subject[4], detail[4], extra;

	return s != NULL && sscanf(s, "%1[245].%3[0-9].%3[0-9]%c", class,
	    subject, detail, &extra) == 3;
}

/*
 * Part 1 has a section per Action, in this order; Subject names the first
 * that occurs ("error" and "delay" are what OpenSMTPD's users know).
 */
static const struct {
	const char	*action;
	const char	*subject;
	const char	*intro;
} sections[] = {
	{ "failed", "error", "An error has occurred while attempting to"
	    " deliver a message for the following list of recipients:" },
	{ "delayed", "delay", "Your message could not be delivered yet to"
	    " the following recipients; delivery will be retried:" },
	{ "delivered", "delivered", "Your message was successfully delivered"
	    " to the following recipients:" },
	{ "relayed", "relayed", "Your message was relayed to the following"
	    " recipients; the next server does not send delivery"
	    " notifications, so no further report will come:" },
	{ "expanded", "expanded", "Your message was delivered to the"
	    " following recipients, which expanded to further addresses:" },
};
#define NSECTIONS	(sizeof(sections) / sizeof(sections[0]))

/*
 * RFC 3464 2.3.3: the Action field's value; one of the sections, so that
 * nothing else reaches the report.
 */
static const char *
action_of(const struct bounce_rcpt *r)
{
	size_t	 i;

	for (i = 0; r->action != NULL && i < NSECTIONS; i++)
		if (strcmp(r->action, sections[i].action) == 0)
			return sections[i].action;
	return r->permanent ? "failed" : "delayed";
}

static const char *
status_of(const struct bounce_rcpt *r)
{
	const char	*a = action_of(r);

	if (status_ok(r->status))
		return r->status;
	if (strcmp(a, "failed") == 0)
		return "5.0.0";
	return strcmp(a, "delayed") == 0 ? "4.0.0" : "2.0.0";
}

static size_t
count_rcpts(const struct bounce_rcpt *r, size_t n, const char *action)
{
	size_t	 i, c = 0;

	for (i = 0; i < n; i++)
		if (strcmp(action_of(&r[i]), action) == 0)
			c++;
	return c;
}

/*
 * pread() the chunk of the message at *off into buf, turning CRLF into
 * LF in place.  Returns its new length, 0 at the end, -1 on error.
 */
static ssize_t
next_chunk(int fd, off_t *off, char *buf, size_t size)
{
	ssize_t	 n, i, j;

	if (size > BOUNCE_CHUNK)
		size = BOUNCE_CHUNK;
	do
		n = pread(fd, buf, size, *off);
	while (n == -1 && errno == EINTR);
	if (n <= 0)
		return n;
	/* A CR at the end may begin a CRLF: it is read again next time. */
	if (n > 1 && buf[n - 1] == '\r')
		n--;
	*off += n;
	for (i = j = 0; i < n; i++)
		if (buf[i] != '\r' || i + 1 == n || buf[i + 1] != '\n')
			buf[j++] = buf[i];
	return j;
}

/* Length of the header section of text: up to the first empty line. */
static int
header_end(const char *text, size_t len, size_t *end)
{
	const char	*p;

	if (len > 0 && text[0] == '\n') {
		*end = 0;
		return 1;
	}
	if ((p = memmem(text, len, "\n\n", 2)) == NULL)
		return 0;
	*end = p - text + 1;
	return 1;
}

/*
 * Reads at most max bytes (after CRLF conversion) of the message into
 * o->text; with o->headers only its header section.
 */
static int
orig_load(int fd, size_t max, struct original *o)
{
	off_t	 off = 0;
	ssize_t	 n;
	size_t	 end;

	o->text = xmalloc(max);
	o->len = 0;
	while (o->len < max) {
		n = next_chunk(fd, &off, o->text + o->len, max - o->len);
		if (n == -1)
			return -1;
		if (n == 0)
			break;
		o->len += n;
		if (o->headers && header_end(o->text, o->len, &end)) {
			o->len = end;
			break;
		}
	}
	return 0;
}

static int
has_8bit(const char *p, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		if ((unsigned char)p[i] >= 0x80)
			return 1;
	return 0;
}

/* Decides what of the message goes into part 3 and reads it if small. */
static int
orig_open(int fd, const struct bounce_info *bi, struct original *o)
{
	struct stat	 st;

	if (fstat(fd, &st) == -1)
		return -1;
	o->toolarge = st.st_size > BOUNCE_MAX_ORIGINAL;
	o->headers = bi->headers_only || o->toolarge;
	if (!o->headers && st.st_size > BOUNCE_MAX_MEMORY) {
		/* Copied later without being scanned: 8bit covers 7bit. */
		o->eightbit = 1;
		return 0;
	}
	if (orig_load(fd, o->headers ? BOUNCE_MAX_MEMORY : (size_t)st.st_size,
	    o) == -1)
		return -1;
	o->eightbit = has_8bit(o->text, o->len);
	return 0;
}

/* 1 if a line of text begins with "--" and the boundary. */
static int
collides(const char *text, size_t len, const char *boundary)
{
	size_t		 blen = strlen(boundary), i = 0;
	const char	*nl;

	for (;;) {
		if (len - i >= blen + 2 && text[i] == '-' &&
		    text[i + 1] == '-' && memcmp(text + i + 2, boundary,
		    blen) == 0)
			return 1;
		if ((nl = memchr(text + i, '\n', len - i)) == NULL)
			return 0;
		i = nl - text + 1;
	}
}

/*
 * 128 random bits, so no original can contain the boundary by accident or
 * design; checked anyway when the original is in memory.  "=_" can occur
 * in neither quoted-printable nor base64 text.
 */
static void
make_boundary(const struct original *o, char *b, size_t len)
{
	do
		snprintf(b, len, "=_%08" PRIx32 "%08" PRIx32 "%08" PRIx32
		    "%08" PRIx32, msd_random(), msd_random(), msd_random(),
		    msd_random());
	while (o->text != NULL && collides(o->text, o->len, b));
}

static void
put_headers(FILE *out, const struct bounce_info *bi, const char *subject,
    const struct original *o, const char *boundary, time_t now)
{
	char	 date[64];
	char	*host, *sender;

	host = clean(bi->hostname, HOST_MAX);
	sender = clean(bi->sender, ADDR_MAX);
	fmt_date(date, sizeof(date), now);
	fprintf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\n",
	    host[0] != '\0' ? host : "localhost");
	fprintf(out, "To: <%s>\n", sender);
	fprintf(out, "Subject: Delivery status notification: %s\n", subject);
	fprintf(out, "Date: %s\n", date);
	fprintf(out, "Message-ID: <%" PRId64 ".%08" PRIx32 ".%08" PRIx32
	    "%08" PRIx32 "@%s>\n", (int64_t)now, bi->msgid, msd_random(),
	    msd_random(), host[0] != '\0' ? host : "localhost");
	/* RFC 3834: auto-responders must not answer this one. */
	fputs("Auto-Submitted: auto-replied\n", out);
	fputs("MIME-Version: 1.0\n", out);
	fprintf(out, "Content-Type: multipart/report;"
	    " report-type=delivery-status;\n\tboundary=\"%s\"\n", boundary);
	fprintf(out, "Content-Transfer-Encoding: %s\n\n",
	    o->eightbit ? "8bit" : "7bit");
	free(host);
	free(sender);
}

/* "<dest>: diag", one per recipient of the kind, folded for reading. */
static void
put_rcpt_lines(FILE *out, const struct bounce_rcpt *r, size_t n,
    const char *action)
{
	char	*dest, *diag, *line;
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (strcmp(action_of(&r[i]), action) != 0)
			continue;
		dest = clean(r[i].dest, ADDR_MAX);
		diag = clean(r[i].diag, DIAG_MAX);
		if (diag[0] != '\0')
			xasprintf(&line, "<%s>: %s", dest, diag);
		else
			xasprintf(&line, "<%s>: no diagnostic, status %s",
			    dest, status_of(&r[i]));
		put_folded(out, 0, line, TEXT_INDENT);
		fputc('\n', out);
		free(line);
		free(diag);
		free(dest);
	}
	fputc('\n', out);
}

/* Subject's word: the first section present, or the first's. */
static const char *
subject_of(const struct bounce_rcpt *r, size_t n)
{
	size_t	 i;

	for (i = 0; i < NSECTIONS; i++)
		if (count_rcpts(r, n, sections[i].action) > 0)
			return sections[i].subject;
	return sections[0].subject;
}

/* The latest Will-Retry-Until, in words for part 1; 0 when none. */
static int64_t
retry_until(const struct bounce_rcpt *r, size_t n)
{
	int64_t	 t = 0;
	size_t	 i;

	for (i = 0; i < n; i++)
		if (r[i].retry_until > t)
			t = r[i].retry_until;
	return t;
}

static void
put_explanation(FILE *out, const struct bounce_info *bi,
    const struct bounce_rcpt *r, size_t n, const struct original *o)
{
	char	 date[64], *note;
	size_t	 i;

	fputs("Content-Type: text/plain; charset=us-ascii\n\n", out);
	fputs("Hi!\n\nThis is the MAILER-DAEMON, please DO NOT REPLY to this"
	    " e-mail.\n\n", out);
	if (bi->note != NULL && bi->note[0] != '\0') {
		note = clean(bi->note, DIAG_MAX);
		put_folded(out, 0, note, "");
		fputs("\n\n", out);
		free(note);
	}
	for (i = 0; i < NSECTIONS; i++) {
		if (count_rcpts(r, n, sections[i].action) == 0)
			continue;
		fprintf(out, "%s\n\n", sections[i].intro);
		put_rcpt_lines(out, r, n, sections[i].action);
	}
	if (retry_until(r, n) != 0) {
		fmt_date(date, sizeof(date), (time_t)retry_until(r, n));
		fprintf(out, "Delivery will be tried until %s; the message"
		    " is returned if it still fails then.\n\n", date);
	}
	if (o->toolarge)
		fprintf(out, "The original message is larger than %d MB, so"
		    " only its headers are included.\n\n",
		    BOUNCE_MAX_ORIGINAL / (1024 * 1024));
	fprintf(out, "Below is a copy of the original message%s:\n",
	    o->headers ? " headers" : "");
}

/*
 * RFC 3461 6.3: the ORCPT, when the client gave one, is the
 * Original-Recipient; otherwise the address as given, if expansion
 * changed it.
 */
static void
put_original_rcpt(FILE *out, const struct bounce_rcpt *r, const char *dest,
    const char *rcpt)
{
	const char	*semi;
	char		*type, *addr;

	if (r->orcpt != NULL && (semi = strchr(r->orcpt, ';')) != NULL &&
	    semi > r->orcpt) {
		type = clean(r->orcpt, semi - r->orcpt);
		addr = clean(semi + 1, ADDR_MAX);
		if (type[0] != '\0' && addr[0] != '\0')
			fprintf(out, "Original-Recipient: %s; %s\n", type, addr);
		free(addr);
		free(type);
		return;
	}
	if (dest[0] != '\0' && rcpt[0] != '\0' &&
	    strcmp(str(r->rcpt), str(r->dest)) != 0)
		fprintf(out, "Original-Recipient: rfc822; %s\n", rcpt);
}

static void
put_rcpt_status(FILE *out, const struct bounce_rcpt *r)
{
	char	 date[64];
	char	*dest, *rcpt, *diag;

	dest = clean(r->dest, ADDR_MAX);
	rcpt = clean(r->rcpt, ADDR_MAX);
	diag = clean(r->diag, DIAG_MAX);
	/* Final-Recipient is required: the original one if nothing else. */
	fprintf(out, "Final-Recipient: rfc822; %s\n",
	    dest[0] != '\0' ? dest : rcpt);
	put_original_rcpt(out, r, dest, rcpt);
	fprintf(out, "Action: %s\n", action_of(r));
	fprintf(out, "Status: %s\n", status_of(r));
	/*
	 * "smtp" even for text that is not an SMTP reply (a local delivery
	 * error): RFC 3464 has no better type and readers expect this one.
	 */
	if (diag[0] != '\0') {
		fputs("Diagnostic-Code: smtp; ", out);
		put_folded(out, strlen("Diagnostic-Code: smtp; "), diag, " ");
		fputc('\n', out);
	}
	if (r->retry_until != 0) {
		fmt_date(date, sizeof(date), (time_t)r->retry_until);
		fprintf(out, "Will-Retry-Until: %s\n", date);
	}
	free(diag);
	free(rcpt);
	free(dest);
}

static void
put_status(FILE *out, const struct bounce_info *bi,
    const struct bounce_rcpt *r, size_t n)
{
	char	 date[64];
	char	*s, *src;
	size_t	 i;

	fputs("Content-Type: message/delivery-status\n\n", out);
	s = clean(bi->hostname, HOST_MAX);
	fprintf(out, "Reporting-MTA: dns; %s\n",
	    s[0] != '\0' ? s : "localhost");
	free(s);
	if (bi->envid != NULL && bi->envid[0] != '\0') {
		fputs("Original-Envelope-Id: ", out);
		put_xtext(out, bi->envid, ENVID_MAX);
		fputc('\n', out);
	}
	s = clean(bi->helo, HOST_MAX);
	src = clean(bi->src, HOST_MAX);
	if (s[0] != '\0')
		fprintf(out, "Received-From-MTA: dns; %s%s%s%s\n", s,
		    src[0] != '\0' ? " (" : "", src, src[0] != '\0' ? ")" : "");
	free(src);
	free(s);
	fmt_date(date, sizeof(date), (time_t)bi->arrival);
	fprintf(out, "Arrival-Date: %s\n", date);
	for (i = 0; i < n; i++) {
		fputc('\n', out);
		put_rcpt_status(out, &r[i]);
	}
}

/* Copies a message too large for memory, CRLF turned into LF. */
static int
orig_copy(FILE *out, int fd)
{
	char	 buf[16384];
	off_t	 off = 0;
	ssize_t	 n;

	while ((n = next_chunk(fd, &off, buf, sizeof(buf))) > 0)
		if (fwrite(buf, 1, n, out) != (size_t)n)
			return -1;
	return n == -1 ? -1 : 0;
}

static int
put_original(FILE *out, int fd, const struct original *o)
{
	fprintf(out, "Content-Type: %s\n",
	    o->headers ? "text/rfc822-headers" : "message/rfc822");
	if (o->eightbit)
		fputs("Content-Transfer-Encoding: 8bit\n", out);
	fputc('\n', out);
	if (o->text == NULL)
		return orig_copy(out, fd);
	if (fwrite(o->text, 1, o->len, out) != o->len)
		return -1;
	return 0;
}

int
bounce_write(FILE *out, const struct bounce_info *bi,
    const struct bounce_rcpt *rcpts, size_t n, int msgfd, time_t now)
{
	struct original	 o;
	char		 boundary[40];
	int		 r = -1, saved;

	if (n == 0) {
		errno = EINVAL;
		return -1;
	}
	memset(&o, 0, sizeof(o));
	/*
	 * Look at the message before writing: a bad descriptor fails with
	 * nothing written (a large message is still read later).
	 */
	if (orig_open(msgfd, bi, &o) == -1)
		goto done;
	make_boundary(&o, boundary, sizeof(boundary));
	put_headers(out, bi, subject_of(rcpts, n), &o, boundary, now);
	fprintf(out, "This is a MIME-encapsulated message.\n\n--%s\n",
	    boundary);
	put_explanation(out, bi, rcpts, n, &o);
	fprintf(out, "\n--%s\n", boundary);
	put_status(out, bi, rcpts, n);
	fprintf(out, "\n--%s\n", boundary);
	if (put_original(out, msgfd, &o) == -1)
		goto done;
	/* The LF before a delimiter is its own: the original keeps its end. */
	fprintf(out, "\n--%s--\n", boundary);
	if (fflush(out) == EOF)
		goto done;
	if (ferror(out)) {
		errno = EIO;
		goto done;
	}
	r = 0;
 done:
	saved = errno;
	free(o.text);
	errno = saved;
	return r;
}
