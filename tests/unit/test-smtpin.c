/*
 * test-smtpin.c - the parsers the smtp role runs on what clients send
 * before or around a message: the PROXY v2 header (proxy.c) and the
 * From: rewriting of `senders <t> masquerade` (masquerade.c).
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "tap.h"

/* ------------------------------------------------------------ proxy */

static const uint8_t sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* A v2 header: ver_cmd, fam, then body (len bytes) after the length. */
static size_t
header(uint8_t *buf, uint8_t ver_cmd, uint8_t fam, const uint8_t *body,
    size_t len)
{
	memcpy(buf, sig, sizeof(sig));
	buf[12] = ver_cmd;
	buf[13] = fam;
	buf[14] = len >> 8;
	buf[15] = len & 0xff;
	memcpy(buf + 16, body, len);
	return 16 + len;
}

static void
test_proxy(void)
{
	uint8_t			 buf[256], body[64];
	struct proxy_info	 p;
	char			 err[128], a[INET6_ADDRSTRLEN];
	size_t			 n, i;
	int			 rc, partial = 1;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&p.src;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&p.dst;

	/* TCP4 192.0.2.7:40000 -> 198.51.100.25:25, with a 4-byte TLV */
	memcpy(body, "\xc0\x00\x02\x07\xc6\x33\x64\x19\x9c\x40\x00\x19"
	    "\x04\x00\x01x", 16);
	n = header(buf, 0x21, 0x11, body, 16);
	for (i = 0; i < n; i++)
		if (proxy_v2_parse(buf, i, &p, err, sizeof(err)) != 0)
			partial = 0;
	ok(partial, "tcp4: every prefix asks for more");
	rc = proxy_v2_parse(buf, n, &p, err, sizeof(err));
	inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
	ok(rc == (int)n && !p.local && p.src.ss_family == AF_INET &&
	    strcmp(a, "192.0.2.7") == 0 && ntohs(sin->sin_port) == 40000,
	    "tcp4: the whole header, the client 192.0.2.7:40000 (%s)", a);
	rc = proxy_v2_parse(buf, n + 10, &p, err, sizeof(err));
	ok(rc == (int)n, "tcp4: bytes after the header are not taken");

	/* TCP6 2001:db8::7 -> 2001:db8::25 */
	memset(body, 0, 36);
	body[0] = 0x20; body[1] = 0x01; body[2] = 0x0d; body[3] = 0xb8;
	body[15] = 0x07;
	body[16] = 0x20; body[17] = 0x01; body[18] = 0x0d; body[19] = 0xb8;
	body[31] = 0x25;
	body[35] = 25;
	n = header(buf, 0x21, 0x21, body, 36);
	rc = proxy_v2_parse(buf, n, &p, err, sizeof(err));
	inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
	ok(rc == (int)n && p.dst.ss_family == AF_INET6 &&
	    strcmp(a, "2001:db8::25") == 0 && ntohs(sin6->sin6_port) == 25,
	    "tcp6: the destination 2001:db8::25 port 25 (%s)", a);

	n = header(buf, 0x20, 0x00, body, 0);
	ok(proxy_v2_parse(buf, n, &p, err, sizeof(err)) == 16 && p.local,
	    "LOCAL, no addresses");

	ok(proxy_v2_parse((const uint8_t *)"EHLO x\r\n", 8, &p, err,
	    sizeof(err)) == -1 && strstr(err, "not a PROXY") != NULL,
	    "an SMTP command: not a header (%s)", err);
	n = header(buf, 0x11, 0x11, body, 12);
	ok(proxy_v2_parse(buf, n, &p, err, sizeof(err)) == -1,
	    "version 1 in a v2 header: refused (%s)", err);
	n = header(buf, 0x22, 0x11, body, 12);
	ok(proxy_v2_parse(buf, n, &p, err, sizeof(err)) == -1,
	    "command 2: refused (%s)", err);
	n = header(buf, 0x21, 0x12, body, 12);
	ok(proxy_v2_parse(buf, n, &p, err, sizeof(err)) == -1,
	    "UDP: refused (%s)", err);
	n = header(buf, 0x21, 0x31, body, 36);
	ok(proxy_v2_parse(buf, n, &p, err, sizeof(err)) == -1,
	    "AF_UNIX: refused (%s)", err);
	n = header(buf, 0x21, 0x11, body, 11);
	ok(proxy_v2_parse(buf, 16, &p, err, sizeof(err)) == -1,
	    "tcp4 with an 11-byte block: refused before it is read (%s)",
	    err);
}

/* ------------------------------------------------------- masquerade */

/* s on one TAP line: line ends and tabs as \n and \t. */
static const char *
flat(const char *s, char *buf, size_t len)
{
	size_t	 o = 0;

	for (; s != NULL && *s && o + 3 < len; s++) {
		if (*s == '\n' || *s == '\t') {
			buf[o++] = '\\';
			buf[o++] = *s == '\n' ? 'n' : 't';
		} else
			buf[o++] = *s;
	}
	buf[o] = '\0';
	return s == NULL ? "NULL" : buf;
}

static void
masq(const char *in, const char *want)
{
	char	*out, b1[128], b2[128], b3[128];
	size_t	 len;

	out = masquerade_from(in, strlen(in), "me@example.org", &len);
	if (want == NULL)
		ok(out == NULL, "kept: %s (got %s)", flat(in, b1, sizeof(b1)),
		    flat(out, b3, sizeof(b3)));
	else
		ok(out != NULL && len == strlen(want) &&
		    strcmp(out, want) == 0, "%s -> %s (got %s)",
		    flat(in, b1, sizeof(b1)), flat(want, b2, sizeof(b2)),
		    flat(out, b3, sizeof(b3)));
	free(out);
}

static void
test_masquerade(void)
{
	masq("From: <a@x>", "From: <me@example.org>");
	masq("From: a@x", "From: me@example.org");
	masq("From:a@x", "From:me@example.org");
	masq("From: \"A <b@c>\" <a@x>", "From: \"A <b@c>\" <me@example.org>");
	masq("From: a@x (The <a@x> (nested) one)",
	    "From: me@example.org (The <a@x> (nested) one)");
	masq("From: (lead) a@x", "From: (lead) me@example.org");
	masq("From: Alice\n\t<a@x>", "From: Alice\n\t<me@example.org>");
	masq("From: <a\n @x>", "From: <me@example.org>");
	masq("From: \"a\\\"b\" <a@x>, c@y",
	    "From: \"a\\\"b\" <me@example.org>, me@example.org");
	masq("From: \"john doe\"@x", "From: me@example.org");
	masq("From: <@relay:a@x>", "From: <me@example.org>");
	masq("From: g: a@x;", NULL);
	masq("From: \"open <a@x>", NULL);
	masq("From: (open <a@x>", NULL);
	masq("From: <a@x", NULL);
	masq("From: <a@x> <b@y>", NULL);
	masq("From:", NULL);
	masq("From:   ", NULL);
	ok(masquerade_is_from("From: x", 7) && masquerade_is_from("fROM :x", 7)
	    && !masquerade_is_from("From-X: y", 9) &&
	    !masquerade_is_from("Fro", 3) && !masquerade_is_from("X-From: a", 9),
	    "which lines start a From: header");
}

int
main(void)
{
	test_proxy();
	test_masquerade();
	return tap_done();
}
