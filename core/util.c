/*
 * util.c - small helpers shared by the daemon and its tools: the allocation
 * family that aborts on failure, bounded string copies, address text.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "smtpd.h"

void *
xmalloc(size_t n)
{
	void	*p;

	if ((p = malloc(n ? n : 1)) == NULL)
		fatal("malloc");
	return p;
}

void *
xcalloc(size_t n, size_t sz)
{
	void	*p;

	if ((p = calloc(n ? n : 1, sz ? sz : 1)) == NULL)
		fatal("calloc");
	return p;
}

void *
xreallocarray(void *p, size_t n, size_t sz)
{
	if (sz && n > SIZE_MAX / sz)
		fatalx("reallocarray: overflow");
	if ((p = realloc(p, n * sz == 0 ? 1 : n * sz)) == NULL)
		fatal("realloc");
	return p;
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fatal("strdup");
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p;

	if ((p = strndup(s, n)) == NULL)
		fatal("strndup");
	return p;
}

int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vasprintf(ret, fmt, ap);
	va_end(ap);
	if (n == -1)
		fatal("asprintf");
	return n;
}

size_t
msd_strlcpy(char *dst, const char *src, size_t dsize)
{
	size_t	 len = strlen(src);

	if (dsize) {
		size_t n = len >= dsize ? dsize - 1 : len;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

size_t
msd_strlcat(char *dst, const char *src, size_t dsize)
{
	size_t	 dlen = strnlen(dst, dsize);

	if (dlen == dsize)
		return dlen + strlen(src);
	return dlen + msd_strlcpy(dst + dlen, src, dsize - dlen);
}

const char *
ss_to_text(const struct sockaddr_storage *ss)
{
	static char	 buf[INET6_ADDRSTRLEN + 8];
	const void	*a;

	if (ss == NULL)
		return "local";
	switch (ss->ss_family) {
	case AF_INET:
		a = &((const struct sockaddr_in *)ss)->sin_addr;
		break;
	case AF_INET6:
		a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		break;
	case AF_UNIX:
		return "local";
	default:
		return "unknown";
	}
	if (inet_ntop(ss->ss_family, a, buf, sizeof(buf)) == NULL)
		return "unknown";
	return buf;
}

/* 1 if s is an IPv4 or IPv6 literal (v6 may carry %scope), else 0. */
int
addr_literal(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 1];
	char			*scope;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return 1;
	}
	if (msd_strlcpy(buf, s, sizeof(buf)) >= sizeof(buf))
		return 0;
	if ((scope = strchr(buf, '%')) != NULL)
		*scope++ = '\0';
	if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
		return 0;
	if (scope != NULL && (sin6->sin6_scope_id = if_nametoindex(scope)) == 0)
		return 0;
	sin6->sin6_family = AF_INET6;
	return 1;
}

/* The length connect(2)/bind(2) want for an AF_INET or AF_INET6 address. */
socklen_t
ss_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6);
}

int
ss_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss == NULL)
		return 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		return IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
	}
	return 0;
}

int
mkdir_p(const char *path, mode_t mode)
{
	char	 buf[PATH_MAX];
	char	*p;

	if (msd_strlcpy(buf, path, sizeof(buf)) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

int
fsync_dir(const char *path)
{
	int	 fd, r;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

uint32_t
msd_random(void)
{
	uint32_t v;

	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		fatal("getrandom");
	return v;
}

int
addr_split(const char *addr, char *user, size_t ulen, char *domain,
    size_t dlen)
{
	const char	*at = strrchr(addr, '@');
	size_t		 n;

	if (at == NULL || at == addr || at[1] == '\0')
		return -1;
	n = at - addr;
	if (n >= ulen || strlen(at + 1) >= dlen)
		return -1;
	memcpy(user, addr, n);
	user[n] = '\0';
	msd_strlcpy(domain, at + 1, dlen);
	return 0;
}

void
lowercase(char *s)
{
	for (; *s; s++)
		*s = tolower((unsigned char)*s);
}

/*
 * "user+tag" -> "user" for the user lookup (smtpd.conf sub-addr-delim);
 * a name that starts with the delimiter is left alone.
 */
void
subaddr_strip(char *user, char delim)
{
	char	*d;

	if (delim != '\0' && user[0] != delim &&
	    (d = strchr(user, delim)) != NULL)
		*d = '\0';
}

/*
 * A program installed (or built) next to the running one: smtpd runs
 * sendmail, sendmail runs makemap as newaliases.  0, or -1 if it is not
 * an executable file there.
 */
int
program_path(const char *name, char *out, size_t len)
{
	char		 exe[PATH_MAX], *slash;
	ssize_t		 n;
	struct stat	 sb;
	const char	*deleted = " (deleted)";

	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) == -1)
		return -1;
	exe[n] = '\0';
	/* Still running after an upgrade replaced the binary. */
	if ((size_t)n > strlen(deleted) &&
	    strcmp(exe + n - strlen(deleted), deleted) == 0)
		exe[n - strlen(deleted)] = '\0';
	if ((slash = strrchr(exe, '/')) == NULL)
		return -1;
	*slash = '\0';
	if ((size_t)snprintf(out, len, "%s/%s", exe, name) >= len)
		return -1;
	if (stat(out, &sb) == -1 || !S_ISREG(sb.st_mode) ||
	    (sb.st_mode & 0111) == 0)
		return -1;
	return 0;
}

/* The spool the tools (sendmail, smtpctl) talk to: $MODSMTPD_SPOOL first. */
const char *
default_spool(void)
{
	const char	*s = getenv("MODSMTPD_SPOOL");

	return s != NULL && *s != '\0' ? s : SPOOLDIR;
}

/* A connected stream socket to a UNIX socket path; -1 with errno set. */
int
unix_connect(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd, saved;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (msd_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* ------------------------------------------------------------- base64 */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* RFC 4648 base64 of len bytes into out (NUL-terminated); -1 if too small. */
int
base64_encode(const void *in, size_t len, char *out, size_t outlen)
{
	const unsigned char	*p = in;
	size_t			 i, o = 0;
	uint32_t		 v;

	if (outlen < (len + 2) / 3 * 4 + 1)
		return -1;
	for (i = 0; i < len; i += 3) {
		v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = b64chars[(v >> 18) & 63];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64chars[v & 63] : '=';
	}
	out[o] = '\0';
	return (int)o;
}

static int
b64val(int c)
{
	const char	*p;

	if (c == '\0' || (p = strchr(b64chars, c)) == NULL)
		return -1;
	return (int)(p - b64chars);
}

/*
 * Strict RFC 4648 base64 (padding required, no whitespace) into out; the
 * decoded length, or -1 on bad input or when out is too small.  out gets
 * a NUL after the data, so outlen must leave room for it.
 */
int
base64_decode(const char *in, unsigned char *out, size_t outlen)
{
	size_t		 len = strlen(in), i, o = 0;
	int		 a, b, c, d;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		a = b64val(in[i]);
		b = b64val(in[i + 1]);
		c = in[i + 2] == '=' ? -2 : b64val(in[i + 2]);
		d = in[i + 3] == '=' ? -2 : b64val(in[i + 3]);
		if (a < 0 || b < 0 || c == -1 || d == -1 ||
		    (c == -2 && d != -2) || ((c == -2 || d == -2) &&
		    i + 4 != len))
			return -1;
		if (o + 3 >= outlen)
			return -1;
		out[o++] = (unsigned char)(a << 2 | b >> 4);
		if (c >= 0)
			out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
		if (d >= 0)
			out[o++] = (unsigned char)((c & 3) << 6 | d);
	}
	out[o] = '\0';
	return (int)o;
}

/* "1d2h3m4s", zero units left out, as OpenSMTPD's logs show delays. */
const char *
duration_text(time_t t, char *buf, size_t len)
{
	static const struct { time_t secs; char unit; } units[] = {
		{ 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' },
	};
	size_t	 i, off = 0;

	if (t <= 0)
		return "0s";
	buf[0] = '\0';
	for (i = 0; i < sizeof(units) / sizeof(units[0]) && off < len; i++) {
		if (t < units[i].secs)
			continue;
		off += snprintf(buf + off, len - off, "%lld%c",
		    (long long)(t / units[i].secs), units[i].unit);
		t %= units[i].secs;
	}
	return buf;
}

static const char *const relay_schemes[] = {
	[RELAY_SMTP] = "smtp",
	[RELAY_SMTP_TLS] = "smtp+tls",
	[RELAY_SMTP_NOTLS] = "smtp+notls",
	[RELAY_SMTPS] = "smtps",
	[RELAY_LMTP] = "lmtp",
};

const char *
relay_scheme_name(enum relay_scheme s)
{
	return s <= RELAY_LMTP ? relay_schemes[s] : "?";
}

static int
relay_url_scheme(const char *u, size_t n, struct relay_url *url)
{
	size_t	 i;

	for (i = 0; i < sizeof(relay_schemes) / sizeof(relay_schemes[0]); i++)
		if (strlen(relay_schemes[i]) == n &&
		    strncmp(u, relay_schemes[i], n) == 0) {
			url->scheme = i;
			return 0;
		}
	return -1;
}

enum relay_url_error
relay_url_parse(const char *u, struct relay_url *url)
{
	const char	*sep, *host, *port = NULL, *end;
	size_t		 hlen;
	char		*e;
	long		 n;

	memset(url, 0, sizeof(*url));
	url->scheme = RELAY_SMTP;
	if ((sep = strstr(u, "://")) != NULL) {
		if (relay_url_scheme(u, sep - u, url) == -1)
			return RELAY_URL_SCHEME;
		u = sep + 3;
	}
	if ((sep = strrchr(u, '@')) != NULL) {
		if ((size_t)(sep - u) >= sizeof(url->label))
			return RELAY_URL_LABEL;
		memcpy(url->label, u, sep - u);
		u = sep + 1;
	}
	host = u;
	if (*host == '[') {
		if ((end = strchr(host, ']')) == NULL)
			return RELAY_URL_HOST;
		end++;
		if (*end == ':')
			port = end + 1;
		else if (*end != '\0')
			return RELAY_URL_PORT;
	} else if ((end = strchr(host, ':')) != NULL)
		port = end + 1;
	else
		end = host + strlen(host);
	hlen = end - host;
	if (hlen == 0 || hlen >= sizeof(url->host))
		return RELAY_URL_HOST;
	memcpy(url->host, host, hlen);
	if (port != NULL) {
		n = strtol(port, &e, 10);
		if (*port == '\0' || *e != '\0' || n < 1 || n > 65535)
			return RELAY_URL_PORT;
		url->port = n;
	} else if (url->scheme == RELAY_LMTP)
		return RELAY_URL_LMTP_PORT;
	else
		url->port = url->scheme == RELAY_SMTPS ? 465 : 25;
	return RELAY_URL_OK;
}

/* An uppercase hex digit's value, -1 otherwise (xtext allows no others). */
static int
xtext_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * RFC 3461 section 4: xchar is '!' to '~' but '+' and '='; "+XX" encodes
 * any other byte with two uppercase hex digits.
 */
int
xtext_decode(const char *in, char *out, size_t outlen)
{
	size_t	 o = 0;
	int	 hi, lo, c;

	for (; *in != '\0'; in++) {
		c = (unsigned char)*in;
		if (c == '+') {
			if ((hi = xtext_hexval(in[1])) == -1 ||
			    (lo = xtext_hexval(in[2])) == -1)
				return -1;
			c = hi << 4 | lo;
			in += 2;
		} else if (c < '!' || c > '~' || c == '=')
			return -1;
		/* A NUL would cut the value short where it is stored. */
		if (c == 0 || o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	if (outlen == 0)
		return -1;
	out[o] = '\0';
	return (int)o;
}

int
xtext_encode(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		 o = 0;
	unsigned char	 c;

	for (; *in != '\0'; in++) {
		c = *in;
		if (c >= '!' && c <= '~' && c != '+' && c != '=') {
			if (o + 1 >= outlen)
				return -1;
			out[o++] = c;
			continue;
		}
		if (o + 3 >= outlen)
			return -1;
		out[o++] = '+';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 15];
	}
	if (outlen == 0)
		return -1;
	out[o] = '\0';
	return (int)o;
}
