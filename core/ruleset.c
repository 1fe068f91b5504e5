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
	/* One whole address: no network, no short IPv4 form like 127.1. */
	if (strchr(buf, '/') != NULL || netaddr_parse(buf, &n) == -1 ||
	    n.bits != (n.af == AF_INET ? 32 : 128))
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

/* The client address as tables hold it; IPv4-mapped IPv6 as IPv4. */
static int
src_text(const struct match_ctx *ctx, char *buf, size_t len)
{
	struct netaddr	 n;

	if (ctx->local || netaddr_from_ss(ctx->src, &n) == -1)
		return -1;
	if (inet_ntop(n.af, n.addr, buf, len) == NULL)
		return -1;
	return 0;
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

/* value against the condition's table; NULL value never matches. */
static int
cond_lookup(const struct cond *c, enum table_service service,
    const char *value)
{
	if (value == NULL)
		return 0;
	return table_match(c->table, c->regex ? K_REGEX : service, value);
}

/* value exists, and matches the table when there is one. */
static int
cond_optional(const struct cond *c, enum table_service service,
    const char *value)
{
	if (value == NULL)
		return 0;
	if (c->table == NULL)
		return 1;
	return cond_lookup(c, service, value);
}

/* 1: holds, 0: does not, -1: a table failed (temporary). */
static int
cond_eval(const struct config *conf, const struct cond *c,
    const struct match_ctx *ctx)
{
	char	 src[INET6_ADDRSTRLEN];

	switch (c->kind) {
	case C_FROM_ANY:
	case C_FOR_ANY:
		return 1;
	case C_FROM_LOCAL:
		return ctx->local || ss_is_loopback(ctx->src);
	case C_FROM_SOCKET:
		return ctx->local;
	case C_FROM_SRC:
		if (src_text(ctx, src, sizeof(src)) == -1)
			return 0;
		return cond_lookup(c, K_NETADDR, src);
	case C_FROM_AUTH:
	case C_AUTH:
		return cond_optional(c, K_STRING, ctx->auth);
	case C_FROM_RDNS:
		return cond_optional(c, K_DOMAIN, ctx->rdns);
	case C_FROM_MAIL_FROM:
	case C_MAIL_FROM:
		return cond_lookup(c, K_MAILADDR, ctx->sender);
	case C_FOR_LOCAL:
		return domain_is_local(conf, rcpt_domain(ctx->rcpt));
	case C_FOR_DOMAIN:
		return cond_lookup(c, K_DOMAIN, rcpt_domain(ctx->rcpt));
	case C_FOR_RCPT_TO:
	case C_RCPT_TO:
		return cond_lookup(c, K_MAILADDR, ctx->rcpt);
	case C_HELO:
		return cond_lookup(c, K_DOMAIN, ctx->helo);
	case C_TAG:
		return cond_lookup(c, K_STRING, ctx->tag);
	case C_TLS:
		return ctx->tls;
	default:
		return 0;
	}
}

/* 1, 0, or -1 when a table could not answer. */
static int
rule_matches(const struct config *conf, const struct rule *r,
    const struct match_ctx *ctx)
{
	int	 i, m;

	for (i = 0; i < SLOT_NSLOTS; i++) {
		if (!r->set[i])
			continue;
		if ((m = cond_eval(conf, &r->conds[i], ctx)) == -1)
			return -1;
		if (!!m == !!r->conds[i].neg)
			return 0;
	}
	return 1;
}

/*
 * First match wins.  A table failure stops the walk with *tempfail set:
 * a later rule must not decide for a recipient an earlier one would
 * have taken had its table answered.
 */
const struct rule *
ruleset_match(const struct config *conf, const struct match_ctx *ctx,
    int *tempfail)
{
	const struct rule	*r;
	int			 m;

	*tempfail = 0;
	TAILQ_FOREACH(r, &conf->rules, entry) {
		if ((m = rule_matches(conf, r, ctx)) == -1) {
			*tempfail = 1;
			return NULL;
		}
		if (m)
			return r;
	}
	return NULL;
}
