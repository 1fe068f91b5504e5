/*
 * proxy.c - the PROXY protocol, version 2 (HAProxy's binary header), on
 * `listen on ... proxy-v2` listeners.
 *
 * A load balancer in front of the daemon opens each connection with a
 * header naming the client's address and port and the address it
 * connected to; the session then runs as if the client had connected
 * directly.  Only the binary version 2 is read, as OpenSMTPD does: a TCP
 * client over IPv4 or IPv6 (PROXY), or the balancer's own connection
 * (LOCAL: health checks), which keeps the real addresses.  TLVs are
 * skipped.  Anything else is an error and the session is closed.
 *
 * This file only parses; smtp_session.c reads the bytes and decides.
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <string.h>

#include "smtpd.h"

static const uint8_t pv2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

#define PV2_HDR		16	/* signature, ver_cmd, fam, len */
#define PV2_CMD_LOCAL	0x0
#define PV2_CMD_PROXY	0x1
#define PV2_UNSPEC	0x00
#define PV2_TCP4	0x11	/* AF_INET, STREAM */
#define PV2_TCP6	0x21	/* AF_INET6, STREAM */
#define PV2_ADDR4	12	/* src, dst, sport, dport */
#define PV2_ADDR6	36

static int
proxy_err(char *err, size_t errlen, const char *why)
{
	msd_strlcpy(err, why, errlen);
	return -1;
}

static void
set_in(struct sockaddr_storage *ss, const uint8_t *addr, const uint8_t *port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, addr, 4);
	memcpy(&sin->sin_port, port, 2);
}

static void
set_in6(struct sockaddr_storage *ss, const uint8_t *addr, const uint8_t *port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	memcpy(&sin6->sin6_addr, addr, 16);
	memcpy(&sin6->sin6_port, port, 2);
}

/*
 * The header at the start of buf (len bytes so far).  Returns the bytes
 * it takes once complete, 0 while more are needed, -1 with err set when
 * it is not a header this daemon accepts.  p->local is set for LOCAL;
 * otherwise p->src and p->dst hold the proxied addresses.
 */
int
proxy_v2_parse(const uint8_t *buf, size_t len, struct proxy_info *p,
    char *err, size_t errlen)
{
	size_t	 total, need;
	uint8_t	 cmd, fam;

	if (memcmp(buf, pv2_sig, len < sizeof(pv2_sig) ? len :
	    sizeof(pv2_sig)) != 0)
		return proxy_err(err, errlen, "not a PROXY protocol v2"
		    " header");
	if (len < PV2_HDR)
		return 0;
	if ((buf[12] >> 4) != 2)
		return proxy_err(err, errlen, "unsupported PROXY protocol"
		    " version");
	cmd = buf[12] & 0x0f;
	fam = buf[13];
	total = PV2_HDR + (((size_t)buf[14] << 8) | buf[15]);
	if (cmd != PV2_CMD_LOCAL && cmd != PV2_CMD_PROXY)
		return proxy_err(err, errlen, "unknown PROXY command");
	need = fam == PV2_TCP4 ? PV2_ADDR4 : fam == PV2_TCP6 ? PV2_ADDR6 : 0;
	if (cmd == PV2_CMD_PROXY && need == 0)
		return proxy_err(err, errlen, "unsupported address family"
		    " (only TCP over IPv4 and IPv6)");
	if (total < PV2_HDR + need)
		return proxy_err(err, errlen, "address block too short");
	if (len < total)
		return 0;
	memset(p, 0, sizeof(*p));
	if (cmd == PV2_CMD_LOCAL) {
		p->local = 1;
		return (int)total;
	}
	if (fam == PV2_TCP4) {
		set_in(&p->src, buf + 16, buf + 24);
		set_in(&p->dst, buf + 20, buf + 26);
	} else {
		set_in6(&p->src, buf + 16, buf + 48);
		set_in6(&p->dst, buf + 32, buf + 50);
	}
	return (int)total;
}
