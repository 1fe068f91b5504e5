/*
 * ruleset.c - picks the rule for one recipient: the first `match` whose
 * conditions all hold, in file order, as smtpd.conf(5) says.  No rule
 * matching means the recipient is rejected.
 *
 * Runs in the lookup role for every RCPT TO, so it only compares what the
 * parser left in memory; the one system call (getifaddrs) is reserved for
 * address-literal domains such as [192.0.2.1].
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtpd.h"

/* An address or a network in a fixed, comparable form. */
struct netaddr {
	int	 af;
	uint8_t	 addr[16];
	int	 bits;			/* prefix length */
};

static int
netaddr_parse(const char *s, struct netaddr *n)
{
	char	 buf[INET6_ADDRSTRLEN + 5];	/* + "/128" */
	char	*slash, *end;
	long	 bits;
	int	 max;

	if (msd_strlcpy(buf, s, sizeof(buf)) >= sizeof(buf))
		return -1;
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, buf, n->addr) == 1) {
		n->af = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, n->addr) == 1) {
		n->af = AF_INET6;
		max = 128;
	} else
		return -1;
	n->bits = max;
	if (slash == NULL)
		return 0;
	if (*slash < '0' || *slash > '9')
		return -1;
	bits = strtol(slash, &end, 10);
	if (*end != '\0' || bits > max)
		return -1;
	n->bits = bits;
	return 0;
}

int
ruleset_netaddr_valid(const char *s)
{
	struct netaddr	 n;

	return netaddr_parse(s, &n) == 0;
}

/* The client address; an IPv4-mapped IPv6 address counts as IPv4. */
static int
netaddr_from_ss(const struct sockaddr_storage *ss, struct netaddr *n)
{
	static const uint8_t	 mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	memset(n, 0, sizeof(*n));
	if (ss == NULL)
		return -1;
	if (ss->ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)ss;
		n->af = AF_INET;
		n->bits = 32;
		memcpy(n->addr, &sin->sin_addr, 4);
		return 0;
	}
	if (ss->ss_family != AF_INET6)
		return -1;
	sin6 = (const struct sockaddr_in6 *)ss;
	if (memcmp(sin6->sin6_addr.s6_addr, mapped, sizeof(mapped)) == 0) {
		n->af = AF_INET;
		n->bits = 32;
		memcpy(n->addr, sin6->sin6_addr.s6_addr + 12, 4);
		return 0;
	}
	n->af = AF_INET6;
	n->bits = 128;
	memcpy(n->addr, &sin6->sin6_addr, 16);
	return 0;
}

/* Whether addr lies inside net. */
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

static int
table_has_src(const struct table *t, const struct sockaddr_storage *ss)
{
	struct netaddr	 src, net;
	size_t		 i;

	if (t == NULL || netaddr_from_ss(ss, &src) == -1)
		return 0;
	for (i = 0; i < t->nentries; i++)
		if (netaddr_parse(t->entries[i].key, &net) == 0 &&
		    netaddr_contains(&net, &src))
			return 1;
	return 0;
}

/* Domains compare without regard to case, in lists and maps alike. */
static int
table_has_domain(const struct table *t, const char *domain)
{
	size_t	 i;

	if (t == NULL)
		return 0;
	for (i = 0; i < t->nentries; i++)
		if (strcasecmp(t->entries[i].key, domain) == 0)
			return 1;
	return 0;
}

/* Whether an address belongs to this host: loopback or an interface. */
static int
netaddr_is_ours(const struct netaddr *a)
{
	struct ifaddrs		*ifap, *ifa;
	struct sockaddr_storage	 ss;
	struct netaddr		 n;
	size_t			 len;
	int			 found = 0;

	if ((a->af == AF_INET && a->addr[0] == 127) ||
	    (a->af == AF_INET6 && memcmp(a->addr, &in6addr_loopback,
	    sizeof(in6addr_loopback)) == 0))
		return 1;
	if (getifaddrs(&ifap) == -1)
		return 0;
	for (ifa = ifap; ifa != NULL && !found; ifa = ifa->ifa_next) {
		if (ifa->ifa_addr == NULL)
			continue;
		if (ifa->ifa_addr->sa_family == AF_INET)
			len = sizeof(struct sockaddr_in);
		else if (ifa->ifa_addr->sa_family == AF_INET6)
			len = sizeof(struct sockaddr_in6);
		else
			continue;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, ifa->ifa_addr, len);
		found = netaddr_from_ss(&ss, &n) == 0 && n.af == a->af &&
		    memcmp(n.addr, a->addr, sizeof(n.addr)) == 0;
	}
	freeifaddrs(ifap);
	return found;
}

/* [192.0.2.1], [IPv6:2001:db8::1] (RFC 5321) or, leniently, [2001:db8::1] */
static int
literal_is_local(const char *domain)
{
	char		 buf[INET6_ADDRSTRLEN + 8];
	struct netaddr	 n;
	const char	*s = domain + 1;
	size_t		 len;

	if (strncasecmp(s, "IPv6:", 5) == 0)
		s += 5;
	len = strlen(s);
	if (len < 2 || s[len - 1] != ']' || len > sizeof(buf))
		return 0;
	memcpy(buf, s, len - 1);
	buf[len - 1] = '\0';
	if (strchr(buf, '/') != NULL || netaddr_parse(buf, &n) == -1)
		return 0;
	return netaddr_is_ours(&n);
}

/* name equals full, or the part of full before its first dot. */
static int
name_matches_host(const char *name, const char *full)
{
	size_t	 shortlen = strcspn(full, ".");

	if (strcasecmp(name, full) == 0)
		return 1;
	return strlen(name) == shortlen && shortlen > 0 &&
	    strncasecmp(name, full, shortlen) == 0;
}

int
domain_is_local(const struct config *conf, const char *domain)
{
	char	 host[HOST_NAME_MAX + 1];

	if (domain == NULL || *domain == '\0')
		return 1;
	if (*domain == '[')
		return literal_is_local(domain);
	if (strcasecmp(domain, "localhost") == 0)
		return 1;
	if (conf != NULL && conf->hostname != NULL &&
	    strcasecmp(domain, conf->hostname) == 0)
		return 1;
	if (gethostname(host, sizeof(host)) == -1)
		return 0;
	host[sizeof(host) - 1] = '\0';
	return name_matches_host(domain, host);
}

static int
from_matches(const struct rule *r, const struct match_ctx *ctx)
{
	int	 m;

	switch (r->from) {
	case FROM_ANY:
		m = 1;
		break;
	case FROM_LOCAL:
		m = ctx->local || ss_is_loopback(ctx->src);
		break;
	case FROM_SOCKET:
		m = ctx->local;
		break;
	case FROM_SRC:
		m = !ctx->local && table_has_src(r->from_table, ctx->src);
		break;
	default:
		m = 0;
		break;
	}
	return !!m != !!r->from_neg;
}

/* The part after the last '@'; "" (a local recipient) when none. */
static const char *
rcpt_domain(const char *rcpt)
{
	const char	*at;

	if (rcpt == NULL || (at = strrchr(rcpt, '@')) == NULL)
		return "";
	return at + 1;
}

static int
for_matches(const struct config *conf, const struct rule *r,
    const struct match_ctx *ctx)
{
	const char	*domain = rcpt_domain(ctx->rcpt);
	int		 m;

	switch (r->for_) {
	case FOR_ANY:
		m = 1;
		break;
	case FOR_LOCAL:
		m = domain_is_local(conf, domain);
		break;
	case FOR_DOMAIN:
		if (r->for_table != NULL)
			m = table_has_domain(r->for_table, domain);
		else
			m = r->for_domain != NULL &&
			    strcasecmp(r->for_domain, domain) == 0;
		break;
	default:
		m = 0;
		break;
	}
	return !!m != !!r->for_neg;
}

static int
tag_matches(const struct rule *r, const struct match_ctx *ctx)
{
	int	 m;

	if (r->tag == NULL)
		return 1;
	m = ctx->tag != NULL && strcmp(ctx->tag, r->tag) == 0;
	return !!m != !!r->tag_neg;
}

const struct rule *
ruleset_match(const struct config *conf, const struct match_ctx *ctx)
{
	const struct rule	*r;

	TAILQ_FOREACH(r, &conf->rules, entry)
		if (tag_matches(r, ctx) && from_matches(r, ctx) &&
		    for_matches(conf, r, ctx))
			return r;
	return NULL;
}
