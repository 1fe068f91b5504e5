/*
 * sendmail.c - the local enqueuer: sendmail(8), also run as mailq and
 * newaliases.
 *
 * Cron, mail(1) and scripts hand a message to "sendmail [-t] rcpt ..." on
 * stdin.  We read it into a temporary file first (the daemon's session
 * timeout must not depend on how slowly the caller writes, and the
 * offline queue needs the raw bytes), complete its header, then submit it
 * over SMTP on <spool>/submit.sock, where the session is "local" for the
 * rules.  When the daemon is down the submission goes to <spool>/offline
 * and the daemon re-runs it at its next start (offline.c), so nothing a
 * script sends is lost.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "smtpd.h"

#define SUBMIT_SOCK	"submit.sock"
#define OFFLINE_DIR	"offline"
#define OFFLINE_MAGIC	"#modsmtpd-offline 1"
/* RFC 5321 4.5.3.2: the longest wait it recommends, for the final dot. */
#define REPLY_TIMEOUT	600
#define REPLY_LINE_MAX	1024
#define REPLY_TEXT_MAX	4096

enum mode {
	MODE_DELIVER,
	MODE_SMTP,
	MODE_MAILQ,
	MODE_NEWALIASES
};

struct addrlist {
	char	**v;
	size_t	  n;
};

struct header {
	char	*text;		/* the field and its continuation lines */
	size_t	 len;
	int	 drop;		/* Bcc: never leaves this program */
};

/* The message: header fields in memory, the body left in the file. */
struct message {
	FILE		*raw;		/* stdin as read (offline queue) */
	struct header	*hdr;
	size_t		 nhdr;
	off_t		 body;		/* offset of the first body line */
	int		 separator;	/* an empty line before the body */
	int		 eightbit;
	int		 saw_from, saw_date, saw_msgid;
};

struct conn {
	int	 fd;
	int	 broken;	/* a write failed: read what the server said */
	int	 eightbitmime;
	int	 dsn;		/* the daemon offers DSN */
	char	 rbuf[4096];
	size_t	 rpos, rlen;
	char	 wbuf[16384];
	size_t	 wlen;
};

struct reply {
	int	 code;
	char	 text[REPLY_TEXT_MAX];	/* lines joined by '\n' */
};

static const char	*progname = "sendmail";
static char		 hostname[256];
static int		 iflag, tflag, verbose;

static void
usage(void)
{
	fprintf(stderr, "usage: %s [-tiv] [-F name] [-f from] [-bm | -bs |"
	    " -bp | -bi] [-o option] [address ...]\n", progname);
	exit(EX_USAGE);
}

static void __attribute__((format(printf, 2, 3), noreturn))
die(int status, const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

/* ------------------------------------------------------------ addresses */

/* Controls or brackets would break the SMTP command they go into. */
static int
addr_valid(const char *a)
{
	for (; *a; a++)
		if ((unsigned char)*a < 0x20 || *a == 0x7f || *a == '<' ||
		    *a == '>')
			return 0;
	return 1;
}

/* "user" -> "user@host"; "" (the null sender) stays empty. */
static char *
qualify(const char *addr)
{
	char	*out;

	if (*addr == '\0' || strchr(addr, '@') != NULL)
		out = xstrdup(addr);
	else
		xasprintf(&out, "%s@%s", addr, hostname);
	if (strlen(out) >= SMTPD_MAXADDR)
		die(EX_DATAERR, "address too long: %.64s...", out);
	if (!addr_valid(out))
		die(EX_DATAERR, "invalid character in address: %s", out);
	return out;
}

static void
addrlist_add(struct addrlist *l, const char *addr)
{
	char	*a = qualify(addr);
	size_t	 i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i], a) == 0) {
			free(a);
			return;
		}
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = a;
}

/* The buffer an address list item is collected in. */
struct addrbuf {
	char	 s[SMTPD_MAXADDR];
	size_t	 len;
	int	 overflow;
};

static void
addrbuf_put(struct addrbuf *b, char c)
{
	if (b->len + 1 >= sizeof(b->s)) {
		b->overflow = 1;
		return;
	}
	b->s[b->len++] = c;
	b->s[b->len] = '\0';
}

/* Copies "..." or [...] (with \ escapes) from *sp; -1 if unterminated. */
static int
copy_quoted(const char **sp, char close, struct addrbuf *b)
{
	const char	*s = *sp;

	addrbuf_put(b, *s++);
	for (; *s && *s != close; s++) {
		if (*s == '\\' && s[1] != '\0')
			addrbuf_put(b, *s++);
		addrbuf_put(b, *s);
	}
	if (*s != close)
		return -1;
	addrbuf_put(b, *s);
	*sp = s;
	return 0;
}

/* Skips a (comment), which may nest; -1 if unterminated. */
static int
skip_comment(const char **sp)
{
	const char	*s = *sp;
	int		 depth = 0;

	for (; *s; s++) {
		if (*s == '\\' && s[1] != '\0')
			s++;
		else if (*s == '(')
			depth++;
		else if (*s == ')' && --depth == 0) {
			*sp = s;
			return 0;
		}
	}
	return -1;
}

/* Ends one list item: the <address> when there was one, else the text. */
static int
addr_item_end(struct addrbuf *item, struct addrbuf *angle, int *hadangle,
    struct addrlist *out)
{
	const char	*a = *hadangle ? angle->s : item->s;

	if (item->overflow || angle->overflow)
		return -1;
	/* <@relay,@relay:user@domain>: the source route is obsolete. */
	if (*a == '@' && strchr(a, ':') != NULL)
		a = strchr(a, ':') + 1;
	if (*a != '\0')
		addrlist_add(out, a);
	memset(item, 0, sizeof(*item));
	memset(angle, 0, sizeof(*angle));
	*hadangle = 0;
	return 0;
}

/*
 * Adds each address of an RFC 5322 address list ("Name <a@b>, c@d
 * (comment), group: e@f;") to out: the part inside <> when there is one,
 * else the text with comments and white space removed.  Display names and
 * group names are dropped.  -1 on bad syntax or an address too long.
 */
static int
parse_addrlist(const char *s, struct addrlist *out)
{
	struct addrbuf	 item, angle, *cur;
	int		 inangle = 0, hadangle = 0;

	memset(&item, 0, sizeof(item));
	memset(&angle, 0, sizeof(angle));
	for (;; s++) {
		cur = inangle ? &angle : &item;
		if (*s == '\0' || (!inangle && (*s == ',' || *s == ';'))) {
			if (addr_item_end(&item, &angle, &hadangle, out) == -1)
				return -1;
			if (*s == '\0')
				break;
		} else if (*s == '"' || *s == '[') {
			if (copy_quoted(&s, *s == '"' ? '"' : ']', cur) == -1)
				return -1;
		} else if (*s == '(') {
			if (skip_comment(&s) == -1)
				return -1;
		} else if (!inangle && *s == '<') {
			inangle = hadangle = 1;
			memset(&angle, 0, sizeof(angle));
		} else if (inangle && *s == '>')
			inangle = 0;
		else if (!inangle && *s == ':')
			memset(&item, 0, sizeof(item));	/* a group's name */
		else if (!isspace((unsigned char)*s))
			addrbuf_put(cur, *s);
	}
	return inangle ? -1 : 0;
}

/* -f/-r: "addr", "<addr>", or "" / "<>" for the null sender. */
static char *
parse_sender(const char *arg)
{
	char	 buf[SMTPD_MAXADDR];
	size_t	 len;

	while (isspace((unsigned char)*arg))
		arg++;
	if (msd_strlcpy(buf, arg, sizeof(buf)) >= sizeof(buf))
		die(EX_DATAERR, "sender address too long");
	len = strlen(buf);
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		buf[--len] = '\0';
	if (buf[0] == '<' && len >= 2 && buf[len - 1] == '>') {
		buf[len - 1] = '\0';
		return qualify(buf + 1);
	}
	return qualify(buf);
}

/* ---------------------------------------------------------------- input */

/* The "." line that ends the input without -i. */
static int
is_dot_line(const char *p, ssize_t n)
{
	return p[0] == '.' && (n == 1 || (n == 2 && p[1] == '\n') ||
	    (n == 3 && p[1] == '\r' && p[2] == '\n'));
}

/* Copies stdin (up to the "." line without -i) to m->raw. */
static void
read_input(struct message *m)
{
	char	*buf = NULL;
	size_t	 cap = 0;
	ssize_t	 n, i;

	if ((m->raw = tmpfile()) == NULL)
		die(EX_TEMPFAIL, "cannot create a temporary file: %s",
		    strerror(errno));
	while ((n = getline(&buf, &cap, stdin)) != -1) {
		if (fwrite(buf, 1, n, m->raw) != (size_t)n)
			die(EX_TEMPFAIL, "temporary file: %s", strerror(errno));
		for (i = 0; i < n && !m->eightbit; i++)
			if ((unsigned char)buf[i] >= 0x80)
				m->eightbit = 1;
		if (!iflag && is_dot_line(buf, n))
			break;
	}
	if (ferror(stdin))
		die(EX_IOERR, "reading the message: %s", strerror(errno));
	if (fflush(m->raw) == EOF)
		die(EX_TEMPFAIL, "temporary file: %s", strerror(errno));
	free(buf);
}

/*
 * One line of the message without its line end (CRLF or LF), NUL-
 * terminated; -1 at the end, which is the "." line without -i.
 */
static ssize_t
read_line(FILE *fp, char **buf, size_t *cap)
{
	ssize_t	 n;

	if ((n = getline(buf, cap, fp)) == -1) {
		if (ferror(fp))
			die(EX_TEMPFAIL, "temporary file: %s", strerror(errno));
		return -1;
	}
	if (!iflag && is_dot_line(*buf, n))
		return -1;
	if (n > 0 && (*buf)[n - 1] == '\n') {
		n--;
		if (n > 0 && (*buf)[n - 1] == '\r')
			n--;
	}
	(*buf)[n] = '\0';
	return n;
}

/* Length of the field name of a header line "Name: ...", 0 if none. */
static size_t
field_name_len(const char *p, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++) {
		if (p[i] == ':')
			return i;
		if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] > '~')
			return 0;
	}
	return 0;
}

static int
is_field(const struct header *h, const char *name)
{
	size_t	 n = strlen(name);

	return field_name_len(h->text, h->len) == n &&
	    strncasecmp(h->text, name, n) == 0;
}

static void
header_append(struct header *h, const char *line, size_t n)
{
	h->text = xreallocarray(h->text, h->len + n + 2, 1);
	memcpy(h->text + h->len, line, n);
	h->len += n;
	h->text[h->len++] = '\n';
	h->text[h->len] = '\0';
}

/*
 * Reads the header section from m->raw.  It ends at an empty line, or at
 * the first line that is neither a field nor a continuation: then that
 * line starts the body, and an empty line is put before it so the result
 * is a well-formed message (input without any header is such a body).
 */
static void
parse_header(struct message *m)
{
	char	*buf = NULL;
	size_t	 cap = 0;
	ssize_t	 n;
	off_t	 off;

	rewind(m->raw);
	for (;;) {
		off = ftello(m->raw);
		if ((n = read_line(m->raw, &buf, &cap)) == -1) {
			m->separator = m->nhdr == 0;
			break;
		}
		if (n == 0) {
			m->separator = 1;
			break;
		}
		if ((buf[0] == ' ' || buf[0] == '\t') && m->nhdr > 0) {
			header_append(&m->hdr[m->nhdr - 1], buf, n);
			continue;
		}
		if (field_name_len(buf, n) == 0) {
			if (fseeko(m->raw, off, SEEK_SET) == -1)
				die(EX_TEMPFAIL, "temporary file: %s",
				    strerror(errno));
			m->separator = 1;
			break;
		}
		m->hdr = xreallocarray(m->hdr, m->nhdr + 1, sizeof(*m->hdr));
		memset(&m->hdr[m->nhdr], 0, sizeof(*m->hdr));
		header_append(&m->hdr[m->nhdr++], buf, n);
	}
	m->body = ftello(m->raw);
	free(buf);
}

/* Notes the fields we would otherwise add; -t takes recipients. */
static void
scan_header(struct message *m, struct addrlist *rcpts)
{
	struct header	*h;
	size_t		 i;
	int		 isbcc;

	for (i = 0; i < m->nhdr; i++) {
		h = &m->hdr[i];
		m->saw_from |= is_field(h, "From");
		m->saw_date |= is_field(h, "Date");
		m->saw_msgid |= is_field(h, "Message-ID");
		isbcc = is_field(h, "Bcc");
		h->drop = isbcc;
		if (!tflag || !(isbcc || is_field(h, "To") ||
		    is_field(h, "Cc")))
			continue;
		if (parse_addrlist(h->text + field_name_len(h->text, h->len) +
		    1, rcpts) == -1)
			die(EX_DATAERR, "bad address list in header: %.*s",
			    (int)strcspn(h->text, "\n"), h->text);
	}
}

/* ----------------------------------------------------- added header */

/* "Name" as a phrase: quoted unless it is atoms and spaces only. */
static char *
display_name(const char *name)
{
	const char	*specials = "!#$%&'*+-/=?^_`{|}~ ";
	char		*out, *o;
	const char	*p;
	int		 quote = 0;

	out = o = xmalloc(2 * strlen(name) + 3);
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr(specials, *p))
			quote = 1;
	if (quote)
		*o++ = '"';
	for (p = name; *p; p++) {
		if (*p == '"' || *p == '\\')
			*o++ = '\\';
		/* No line breaks or controls into a header from -F. */
		*o++ = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
	}
	if (quote)
		*o++ = '"';
	*o = '\0';
	return out;
}

/* The passwd comment up to the first comma, '&' standing for the login. */
static char *
gecos_name(const struct passwd *pw)
{
	size_t	 len = strcspn(pw->pw_gecos, ",");
	char	*amp, *out;

	amp = memchr(pw->pw_gecos, '&', len);
	if (amp == NULL)
		return xstrndup(pw->pw_gecos, len);
	xasprintf(&out, "%.*s%c%s%.*s", (int)(amp - pw->pw_gecos),
	    pw->pw_gecos, toupper((unsigned char)pw->pw_name[0]),
	    pw->pw_name[0] ? pw->pw_name + 1 : "",
	    (int)(len - (amp - pw->pw_gecos) - 1), amp + 1);
	return out;
}

static char *
date_header(void)
{
	char		 buf[64];
	time_t		 now = time(NULL);
	struct tm	*tm = localtime(&now);

	/* The C locale (we never call setlocale) gives RFC 5322 names. */
	if (tm == NULL || strftime(buf, sizeof(buf),
	    "Date: %a, %d %b %Y %H:%M:%S %z", tm) == 0)
		die(EX_OSERR, "cannot format the date");
	return xstrdup(buf);
}

static char *
msgid_header(void)
{
	char	*out;

	xasprintf(&out, "Message-ID: <%08x%08x.%lld@%s>", msd_random(),
	    msd_random(), (long long)time(NULL), hostname);
	return out;
}

/* ---------------------------------------------------------------- SMTP */

/* The daemon's socket; -1 with errno set when it cannot be reached. */
static int
submit_connect(const char *spool)
{
	struct timeval	 tv = { REPLY_TIMEOUT, 0 };
	char		 path[PATH_MAX];
	int		 fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", spool,
	    SUBMIT_SOCK) >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = unix_connect(path)) == -1)
		return -1;
	/* A daemon that stops answering must not hang cron forever. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t	 w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= w;
	}
	return 0;
}

/*
 * After a failed write, writes are dropped: the next reply read tells
 * what the server said before it closed (552, "Line too long"...), or
 * that the connection is gone.
 */
static void
conn_flush(struct conn *c)
{
	if (!c->broken && c->wlen > 0 &&
	    write_all(c->fd, c->wbuf, c->wlen) == -1)
		c->broken = 1;
	c->wlen = 0;
}

static void
conn_write(struct conn *c, const char *p, size_t n)
{
	size_t	 k;

	while (n > 0) {
		if (c->wlen == sizeof(c->wbuf))
			conn_flush(c);
		k = sizeof(c->wbuf) - c->wlen;
		if (k > n)
			k = n;
		memcpy(c->wbuf + c->wlen, p, k);
		c->wlen += k;
		p += k;
		n -= k;
	}
}

static void __attribute__((format(printf, 2, 3)))
conn_cmd(struct conn *c, const char *fmt, ...)
{
	char	 buf[SMTPD_MAXCMDSIZE];
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf) - 2)
		die(EX_SOFTWARE, "SMTP command too long");
	if (verbose)
		fprintf(stderr, ">>> %s\n", buf);
	memcpy(buf + n, "\r\n", 2);
	conn_write(c, buf, n + 2);
	conn_flush(c);
}

/* One reply line without CRLF (cut to len - 1 bytes); -1 when closed. */
static int
conn_getline(struct conn *c, char *line, size_t len)
{
	size_t	 n = 0;
	ssize_t	 r;
	char	 ch;

	for (;;) {
		if (c->rpos == c->rlen) {
			r = read(c->fd, c->rbuf, sizeof(c->rbuf));
			if (r == -1 && errno == EINTR)
				continue;
			if (r <= 0)
				return -1;
			c->rpos = 0;
			c->rlen = r;
		}
		ch = c->rbuf[c->rpos++];
		if (ch == '\n')
			break;
		if (n + 1 < len)
			line[n++] = ch;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	return 0;
}

static void __attribute__((noreturn))
conn_lost(const char *what)
{
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		die(EX_TEMPFAIL, "%s: no reply from smtpd within %d seconds",
		    what, REPLY_TIMEOUT);
	die(EX_TEMPFAIL, "%s: connection to smtpd lost%s%s", what,
	    errno ? ": " : "", errno ? strerror(errno) : "");
}

/* Reads a reply, multi-line ones whole; exits when the server is gone. */
static void
conn_reply(struct conn *c, const char *what, struct reply *r)
{
	char	 line[REPLY_LINE_MAX];
	size_t	 tlen = 0;

	r->text[0] = '\0';
	for (;;) {
		if (conn_getline(c, line, sizeof(line)) == -1)
			conn_lost(what);
		if (verbose)
			fprintf(stderr, "<<< %s\n", line);
		if (strlen(line) < 3 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) ||
		    !isdigit((unsigned char)line[2]) ||
		    (line[3] != '\0' && line[3] != ' ' && line[3] != '-'))
			die(EX_PROTOCOL, "%s: malformed reply: %s", what, line);
		tlen += snprintf(r->text + tlen, sizeof(r->text) - tlen,
		    "%s%s", tlen ? "\n" : "", line);
		if (tlen >= sizeof(r->text))
			tlen = sizeof(r->text) - 1;
		if (line[3] != '-')
			break;
	}
	r->code = atoi(line);
}

/*
 * Reads the reply to what and exits unless it is in the class want (2 or
 * 3): 4xx is temporary (EX_TEMPFAIL), 5xx permanent, EX_NOUSER for a
 * recipient and EX_DATAERR for the rest.
 */
static void
conn_expect(struct conn *c, const char *what, int want, struct reply *r)
{
	const char	*p;
	int		 status;

	errno = 0;
	conn_reply(c, what, r);
	if (r->code / 100 == want)
		return;
	for (p = r->text; *p; p += strcspn(p, "\n"), p += *p == '\n')
		fprintf(stderr, "%s: %s: %.*s\n", progname, what,
		    (int)strcspn(p, "\n"), p);
	if (r->code / 100 == 4)
		status = EX_TEMPFAIL;
	else if (r->code / 100 == 5)
		status = strncmp(what, "RCPT", 4) == 0 ? EX_NOUSER : EX_DATAERR;
	else
		status = EX_PROTOCOL;
	if (!c->broken) {
		conn_cmd(c, "QUIT");
		if (!c->broken)
			conn_getline(c, r->text, sizeof(r->text));
	}
	exit(status);
}

/* A line of the message on the wire: dot-stuffed, CRLF. */
static void
send_line(struct conn *c, const char *p, size_t n)
{
	if (n > 0 && p[0] == '.')
		conn_write(c, ".", 1);
	conn_write(c, p, n);
	conn_write(c, "\r\n", 2);
}

static void
send_text(struct conn *c, const char *text)
{
	size_t	 n;

	while (*text) {
		n = strcspn(text, "\n");
		send_line(c, text, n);
		text += n + (text[n] == '\n');
	}
}

static void
send_message(struct conn *c, struct message *m, char **added, size_t nadded)
{
	char	*buf = NULL;
	size_t	 cap = 0, i;
	ssize_t	 n;

	for (i = 0; i < nadded; i++)
		send_text(c, added[i]);
	for (i = 0; i < m->nhdr; i++)
		if (!m->hdr[i].drop)
			send_text(c, m->hdr[i].text);
	if (m->separator)
		send_line(c, "", 0);
	if (fseeko(m->raw, m->body, SEEK_SET) == -1)
		die(EX_TEMPFAIL, "temporary file: %s", strerror(errno));
	while ((n = read_line(m->raw, &buf, &cap)) != -1 && !c->broken)
		send_line(c, buf, n);
	conn_write(c, ".\r\n", 3);
	conn_flush(c);
	free(buf);
}

/*
 * -N, -R and -V: RFC 3461 parameters, checked here so that a bad one is
 * a usage error now rather than a refusal when an offline file is sent.
 */
static char	 dsn_notify[32];		/* "SUCCESS,DELAY", "NEVER" */
static const char *dsn_ret;			/* "FULL", "HDRS" */
static char	 dsn_envid[DSN_ENVID_MAX + 1];	/* xtext */

static void
dsn_option(int ch, const char *arg)
{
	static const char *const notify[] = { "never", "success", "failure",
	    "delay" };
	size_t	 n, i;
	unsigned seen = 0;
	const char *p;

	if (ch == 'R') {
		if (strcasecmp(arg, "full") != 0 && strcasecmp(arg, "hdrs") != 0)
			die(EX_USAGE, "-R %s: expected full or hdrs", arg);
		dsn_ret = toupper((unsigned char)arg[0]) == 'F' ? "FULL" : "HDRS";
		return;
	}
	if (ch == 'V') {
		for (p = arg; *p; p++)
			if ((unsigned char)*p < ' ' || (unsigned char)*p > '~')
				die(EX_USAGE, "-V: the envelope id must be"
				    " printable ASCII");
		if (*arg == '\0' ||
		    xtext_encode(arg, dsn_envid, sizeof(dsn_envid)) == -1)
			die(EX_USAGE, "-V: an envelope id of 1 to %d"
			    " characters (encoded) is expected", DSN_ENVID_MAX);
		return;
	}
	/* -N: never, or a list of success, failure and delay */
	for (p = arg; ; p += n + 1) {
		n = strcspn(p, ",");
		for (i = 0; i < sizeof(notify) / sizeof(notify[0]); i++)
			if (strlen(notify[i]) == n &&
			    strncasecmp(p, notify[i], n) == 0)
				break;
		if (i == sizeof(notify) / sizeof(notify[0]) ||
		    (i == 0 && (p != arg || p[n] != '\0')) ||
		    (seen & (1U << i)))
			die(EX_USAGE, "-N %s: expected never, or a list of"
			    " success, failure and delay", arg);
		seen |= 1U << i;
		if (p[n] == '\0')
			break;
	}
	if (msd_strlcpy(dsn_notify, arg, sizeof(dsn_notify)) >=
	    sizeof(dsn_notify))
		die(EX_USAGE, "-N %s: too long", arg);
	for (i = 0; dsn_notify[i]; i++)
		dsn_notify[i] = toupper((unsigned char)dsn_notify[i]);
}

/* " RET=... ENVID=..." for MAIL when the daemon offers DSN, or "". */
static void
dsn_mail_params(const struct conn *c, char *buf, size_t len)
{
	buf[0] = '\0';
	if (!c->dsn)
		return;
	if (dsn_ret != NULL)
		snprintf(buf, len, " RET=%s", dsn_ret);
	if (dsn_envid[0] != '\0') {
		msd_strlcat(buf, " ENVID=", len);
		msd_strlcat(buf, dsn_envid, len);
	}
}

/* 1 if the EHLO reply (lines joined by '\n') lists keyword. */
static int
ehlo_has(const char *text, const char *kw)
{
	size_t		 kl = strlen(kw);
	const char	*p;

	for (p = text; *p; p += strcspn(p, "\n"), p += *p == '\n')
		if (strcspn(p, "\n") >= 4 + kl &&
		    strncasecmp(p + 4, kw, kl) == 0 &&
		    (p[4 + kl] == '\0' || p[4 + kl] == '\n' ||
		    p[4 + kl] == ' '))
			return 1;
	return 0;
}

static void
ehlo(struct conn *c)
{
	struct reply	 r;

	conn_expect(c, "greeting", 2, &r);
	conn_cmd(c, "EHLO %s", hostname);
	conn_expect(c, "EHLO", 2, &r);
	c->eightbitmime = ehlo_has(r.text, "8BITMIME");
	c->dsn = ehlo_has(r.text, "DSN");
}

/* One SMTP transaction; returns only when the message was accepted. */
static void
submit(int fd, struct message *m, const char *sender,
    const struct addrlist *rcpts, char **added, size_t nadded)
{
	struct conn	 c;
	struct reply	 r;
	char		 what[SMTPD_MAXADDR + 16], params[160];
	size_t		 i;

	memset(&c, 0, sizeof(c));
	c.fd = fd;
	ehlo(&c);
	dsn_mail_params(&c, params, sizeof(params));
	conn_cmd(&c, "MAIL FROM:<%s>%s%s", sender,
	    m->eightbit && c.eightbitmime ? " BODY=8BITMIME" : "", params);
	snprintf(what, sizeof(what), "MAIL FROM:<%s>", sender);
	conn_expect(&c, what, 2, &r);
	for (i = 0; i < rcpts->n; i++) {
		conn_cmd(&c, "RCPT TO:<%s>%s%s", rcpts->v[i],
		    c.dsn && dsn_notify[0] ? " NOTIFY=" : "",
		    c.dsn ? dsn_notify : "");
		snprintf(what, sizeof(what), "RCPT TO:<%s>", rcpts->v[i]);
		conn_expect(&c, what, 2, &r);
	}
	conn_cmd(&c, "DATA");
	conn_expect(&c, "DATA", 3, &r);
	send_message(&c, m, added, nadded);
	conn_expect(&c, "end of DATA", 2, &r);
	/* Accepted; the 221 is awaited only so the daemon sees a clean QUIT. */
	conn_cmd(&c, "QUIT");
	if (!c.broken && conn_getline(&c, r.text, sizeof(r.text)) == 0 &&
	    verbose)
		fprintf(stderr, "<<< %s\n", r.text);
	close(fd);
}

/*
 * -bs: the caller speaks SMTP to the daemon through us, both ways.  A
 * caller that writes its whole conversation and closes stdin expects
 * every command answered, but the daemon drops what it has not answered
 * yet when the connection is half-closed: so after stdin ends we relay
 * replies until the daemon closes (after QUIT), and half-close only when
 * it has been silent for BS_DRAIN_TIMEOUT (a caller that never said QUIT).
 */
#define BS_DRAIN_TIMEOUT	60	/* seconds */

static int
relay(int fd)
{
	struct pollfd	 pfd[2];
	char		 buf[16384];
	ssize_t		 n;
	int		 in_open = 1, r;

	for (;;) {
		pfd[0].fd = in_open ? STDIN_FILENO : -1;
		pfd[0].events = POLLIN;
		pfd[1].fd = fd;
		pfd[1].events = POLLIN;
		if ((r = poll(pfd, 2, in_open ? -1 : BS_DRAIN_TIMEOUT * 1000))
		    == -1) {
			if (errno == EINTR)
				continue;
			die(EX_OSERR, "poll: %s", strerror(errno));
		}
		if (r == 0) {
			shutdown(fd, SHUT_WR);
			continue;
		}
		if (pfd[1].revents) {
			if ((n = read(fd, buf, sizeof(buf))) == -1 &&
			    errno == EINTR)
				continue;
			if (n <= 0)
				return EX_OK;	/* the daemon closed: done */
			if (write_all(STDOUT_FILENO, buf, n) == -1)
				return EX_IOERR;
		}
		if (in_open && pfd[0].revents) {
			if ((n = read(STDIN_FILENO, buf, sizeof(buf))) == -1 &&
			    errno == EINTR)
				continue;
			if (n <= 0 || write_all(fd, buf, n) == -1)
				in_open = 0;
		}
	}
}

/* ------------------------------------------------------- offline queue */

/* Percent-encodes what could break the one-argument-per-line format. */
static int
put_arg(FILE *fp, const char *arg)
{
	const unsigned char	*p;

	if (fputs("arg ", fp) == EOF)
		return -1;
	for (p = (const unsigned char *)arg; *p; p++) {
		if (*p == '%' || *p < 0x20 || *p == 0x7f) {
			if (fprintf(fp, "%%%02X", *p) < 0)
				return -1;
		} else if (putc(*p, fp) == EOF)
			return -1;
	}
	return putc('\n', fp) == EOF ? -1 : 0;
}

static int
offline_copy(FILE *fp, int argc, char **argv, FILE *raw)
{
	char	 buf[65536];
	size_t	 n;
	int	 i;

	if (fprintf(fp, "%s\n", OFFLINE_MAGIC) < 0)
		return -1;
	for (i = 1; i < argc; i++)
		if (put_arg(fp, argv[i]) == -1)
			return -1;
	if (putc('\n', fp) == EOF)
		return -1;
	rewind(raw);
	while ((n = fread(buf, 1, sizeof(buf), raw)) > 0)
		if (fwrite(buf, 1, n, fp) != n)
			return -1;
	if (ferror(raw) || fflush(fp) == EOF || fsync(fileno(fp)) == -1)
		return -1;
	return 0;
}

/*
 * Gives the complete file its final name.  The daemon must never see a
 * file still being written, and a name taken by someone else stays
 * theirs: RENAME_NOREPLACE, or link+unlink where the file system lacks it.
 */
static int
offline_publish(const char *tmp, const char *final)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (link(tmp, final) == -1)
		return -1;
	unlink(tmp);
	return 0;
}

/*
 * Keeps a submission the daemon could not take: <spool>/offline/<time>.X
 * holds the magic line, our arguments, an empty line and the raw input.
 * smtpd runs "sendmail ARGS < FILE" as the file's owner at its next start.
 */
static int
offline_keep(const char *spool, int argc, char **argv, FILE *raw)
{
	char	 dir[PATH_MAX], tmp[PATH_MAX], final[PATH_MAX];
	FILE	*fp;
	int	 fd, saved;

	if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", spool, OFFLINE_DIR) >=
	    sizeof(dir) || (size_t)snprintf(tmp, sizeof(tmp),
	    "%s/.tmp.XXXXXX", dir) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1)
		return -1;
	if ((fp = fdopen(fd, "w")) == NULL) {
		saved = errno;
		close(fd);
		goto fail;
	}
	if (fchmod(fd, 0600) == -1 || offline_copy(fp, argc, argv, raw) == -1) {
		saved = errno;
		fclose(fp);
		goto fail;
	}
	if (fclose(fp) == EOF) {
		saved = errno;
		goto fail;
	}
	if ((size_t)snprintf(final, sizeof(final), "%s/%lld.%s", dir,
	    (long long)time(NULL), strrchr(tmp, '.') + 1) >= sizeof(final)) {
		saved = ENAMETOOLONG;
		goto fail;
	}
	if (offline_publish(tmp, final) == -1) {
		saved = errno;
		goto fail;
	}
	if (fsync_dir(dir) == -1)
		return -1;
	return 0;
 fail:
	unlink(tmp);
	errno = saved;
	return -1;
}

/* ----------------------------------------------------------------- main */

/* Our name, to qualify bare addresses: never a DNS lookup from here. */
static void
init_hostname(void)
{
	if (gethostname(hostname, sizeof(hostname)) == -1 ||
	    hostname[0] == '\0')
		msd_strlcpy(hostname, "localhost", sizeof(hostname));
	hostname[sizeof(hostname) - 1] = '\0';
}

static void
progname_from(const char *argv0)
{
	const char	*p;

	if (argv0 == NULL || *argv0 == '\0')
		return;
	p = strrchr(argv0, '/');
	progname = p ? p + 1 : argv0;
}

/* Options; returns the mode.  Those we only accept are ignored. */
static enum mode
parse_options(int argc, char **argv, char **from, char **fullname)
{
	enum mode	 mode = MODE_DELIVER;
	int		 ch;

	if (strcmp(progname, "mailq") == 0)
		mode = MODE_MAILQ;
	else if (strcmp(progname, "newaliases") == 0)
		mode = MODE_NEWALIASES;
	opterr = 0;
	/* '+': recipients end the options, as sendmail's own getopt does. */
	while ((ch = getopt(argc, argv, "+B:b:F:f:GiL:mN:o:R:r:tUV:v")) != -1) {
		switch (ch) {
		case 'b':
			if (strcmp(optarg, "m") == 0)
				mode = MODE_DELIVER;
			else if (strcmp(optarg, "s") == 0)
				mode = MODE_SMTP;
			else if (strcmp(optarg, "p") == 0)
				mode = MODE_MAILQ;
			else if (strcmp(optarg, "i") == 0)
				mode = MODE_NEWALIASES;
			else
				usage();
			break;
		case 'F':
			*fullname = optarg;
			break;
		case 'f':
		case 'r':
			*from = optarg;
			break;
		case 'i':
			iflag = 1;
			break;
		case 'o':
			if (strcmp(optarg, "i") == 0)
				iflag = 1;
			break;
		case 't':
			tflag = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'N': case 'R': case 'V':
			dsn_option(ch, optarg);
			break;
		case 'B': case 'G': case 'L': case 'm': case 'U':
			break;
		default:
			usage();
		}
	}
	return mode;
}

/* The headers the message lacks, in the order they go on top. */
static size_t
added_headers(const struct message *m, const char *sender,
    const char *fullname, char **out)
{
	char	*name;
	size_t	 n = 0;

	if (!m->saw_from) {
		name = display_name(fullname);
		if (*name)
			xasprintf(&out[n++], "From: %s <%s>", name, sender);
		else
			xasprintf(&out[n++], "From: <%s>", sender);
		free(name);
	}
	if (!m->saw_date)
		out[n++] = date_header();
	if (!m->saw_msgid)
		out[n++] = msgid_header();
	return n;
}

static void
run_smtp_mode(const char *spool)
{
	int	 fd;

	if ((fd = submit_connect(spool)) == -1) {
		printf("421 4.3.0 %s: smtpd is not available: %s/%s: %s\r\n",
		    hostname, spool, SUBMIT_SOCK, strerror(errno));
		fflush(stdout);
		exit(EX_TEMPFAIL);
	}
	exit(relay(fd));
}

static void
deliver(int argc, char **argv, const char *sender, const char *fromaddr,
    const char *fullname, struct addrlist *rcpts)
{
	struct message	 m;
	const char	*spool = default_spool();
	char		*added[3];
	size_t		 nadded;
	int		 fd;

	memset(&m, 0, sizeof(m));
	read_input(&m);
	parse_header(&m);
	scan_header(&m, rcpts);
	if (rcpts->n == 0)
		die(EX_USAGE, "no recipients");
	if ((fd = submit_connect(spool)) == -1) {
		if ((errno != ENOENT && errno != ECONNREFUSED &&
		    errno != ENOTSOCK) || getenv("MODSMTPD_NO_OFFLINE") != NULL)
			die(EX_TEMPFAIL, "cannot reach smtpd at %s/%s: %s",
			    spool, SUBMIT_SOCK, strerror(errno));
		if (offline_keep(spool, argc, argv, m.raw) == -1)
			die(EX_TEMPFAIL, "smtpd is not running and the message"
			    " cannot be kept in %s/%s: %s", spool, OFFLINE_DIR,
			    strerror(errno));
		exit(EX_OK);
	}
	nadded = added_headers(&m, fromaddr, fullname, added);
	submit(fd, &m, sender, rcpts, added, nadded);
	exit(EX_OK);
}

/* The invoking user, for the default sender and the From: name. */
static struct passwd *
invoking_user(void)
{
	struct passwd	*pw;

	if ((pw = getpwuid(getuid())) == NULL)
		die(EX_NOUSER, "user id %lu has no passwd entry; use -f",
		    (unsigned long)getuid());
	return pw;
}

/* -bi: makemap, run as newaliases, rebuilds the aliases table. */
static int
run_newaliases(const char *spool)
{
	char	 path[PATH_MAX];

	if (program_path("makemap", path, sizeof(path)) == -1) {
		fprintf(stderr, "newaliases: no makemap next to this"
		    " program\n");
		return EX_UNAVAILABLE;
	}
	fflush(stdout);
	execl(path, "newaliases", "-s", spool, (char *)NULL);
	fprintf(stderr, "newaliases: %s: %s\n", path, strerror(errno));
	return EX_OSERR;
}

int
main(int argc, char *argv[])
{
	struct addrlist	 rcpts = { NULL, 0 };
	struct passwd	*pw;
	char		*from = NULL, *fullname = NULL, *sender, *fromaddr;
	enum mode	 mode;
	int		 i;

	progname_from(argv[0]);
	log_init(1, 0);
	log_setproc(progname);
	/* A daemon that goes away is a write error, not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	mode = parse_options(argc, argv, &from, &fullname);
	switch (mode) {
	case MODE_MAILQ:
		return mailq_run(default_spool());
	case MODE_NEWALIASES:
		return run_newaliases(default_spool());
	default:
		break;
	}
	init_hostname();
	if (mode == MODE_SMTP)
		run_smtp_mode(default_spool());
	if (from != NULL)
		sender = parse_sender(from);
	else {
		pw = invoking_user();
		sender = qualify(pw->pw_name);
		if (fullname == NULL)
			fullname = gecos_name(pw);
	}
	/* The null sender (-f '<>') cannot be the From: address. */
	fromaddr = *sender ? sender : qualify(invoking_user()->pw_name);
	for (i = optind; i < argc; i++)
		if (parse_addrlist(argv[i], &rcpts) == -1)
			die(EX_DATAERR, "bad address: %s", argv[i]);
	if (rcpts.n == 0 && !tflag)
		die(EX_USAGE, "no recipients");
	deliver(argc, argv, sender, fromaddr, fullname ? fullname : "", &rcpts);
	return EX_OK;
}
