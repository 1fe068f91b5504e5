/*
 * dns.c - asynchronous DNS for the lookup role (c-ares on the role's
 * libevent loop) and the relay routes built from it: for an outbound
 * message, which addresses to connect to, in which order, speaking what.
 *
 * The smtp role cannot resolve names (it is chrooted and must never wait
 * on the network for a lookup), so it asks here with IMSG_MTA_ROUTE and
 * gets every address at once, best MX first.  The resolver's servers come
 * from /etc/resolv.conf, or from $MODSMTPD_RESOLVER ("127.0.0.1:5353,
 * [::1]:53") so tests and special setups can point it elsewhere.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>

#include <ctype.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ares.h>
#include <event2/event.h>

#include "smtpd.h"

#define DNS_TIMEOUT_MS	5000		/* per try, per server */
#define DNS_TRIES	2
#define ROUTE_MAX_HOSTS	32		/* addresses handed to the smtp role */
#define ROUTE_MAX_SRC	16		/* `src` addresses per route */
#define HELO_MAX	256

static ares_channel	 channel;
static struct event	*dns_timer;

struct dns_fd {
	struct dns_fd	*next;
	int		 fd;
	struct event	*ev;
};
static struct dns_fd	*dns_fds;

static void	dns_arm_timer(void);

/* -------------------------------------------------- c-ares on libevent */

static void
on_dns_fd(evutil_socket_t fd, short what, void *arg)
{
	ares_process_fd(channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_arm_timer();
}

static void
on_dns_timer(evutil_socket_t fd, short what, void *arg)
{
	ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_arm_timer();
}

static void
dns_arm_timer(void)
{
	struct timeval	 tv, *tvp;

	if ((tvp = ares_timeout(channel, NULL, &tv)) == NULL)
		evtimer_del(dns_timer);
	else
		evtimer_add(dns_timer, tvp);
}

/* c-ares says which sockets it waits on; one libevent event each. */
static void
on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_fd	**p, *d;

	for (p = &dns_fds; (d = *p); p = &d->next)
		if (d->fd == fd)
			break;
	if (d != NULL) {
		event_free(d->ev);
		if (!readable && !writable) {
			*p = d->next;
			free(d);
			return;
		}
	} else {
		if (!readable && !writable)
			return;
		d = xcalloc(1, sizeof(*d));
		d->fd = fd;
		d->next = dns_fds;
		dns_fds = d;
	}
	d->ev = event_new(env.evbase, fd, EV_PERSIST |
	    (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0), on_dns_fd,
	    NULL);
	if (d->ev == NULL || event_add(d->ev, NULL) == -1)
		fatalx("dns: event_new");
}

void
dns_init(void)
{
	struct ares_options	 opts;
	const char		*servers = getenv("MODSMTPD_RESOLVER");
	int			 rc;

	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS)
		fatalx("dns: ares_library_init: %s", ares_strerror(rc));
	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = on_sock_state;
	opts.timeout = DNS_TIMEOUT_MS;
	opts.tries = DNS_TRIES;
	rc = ares_init_options(&channel, &opts, ARES_OPT_SOCK_STATE_CB |
	    ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
	if (rc != ARES_SUCCESS)
		fatalx("dns: cannot start the resolver: %s", ares_strerror(rc));
	if (servers != NULL && *servers != '\0' &&
	    (rc = ares_set_servers_ports_csv(channel, servers)) != ARES_SUCCESS)
		fatalx("dns: MODSMTPD_RESOLVER \"%s\": %s", servers,
		    ares_strerror(rc));
	if ((dns_timer = evtimer_new(env.evbase, on_dns_timer, NULL)) == NULL)
		fatalx("dns: evtimer_new");
}

/* ------------------------------------------------------------ routes */

struct route_host {
	uint32_t		 pref;
	uint32_t		 tie;		/* shuffles MX of equal pref */
	uint32_t		 seq;		/* the resolver's order */
	char			 name[256];
	struct sockaddr_storage	 ss;
	char			 helo[HELO_MAX]; /* helo-src, without src */
};

/* A local address to connect from (`src`) and its HELO (`helo-src`). */
struct route_src {
	struct sockaddr_storage	 ss;
	char			 helo[HELO_MAX];
};

struct route_req {
	uint64_t		 reqid;
	const struct action	*a;
	char			 domain[256];
	struct table_cache	*cache;
	/* from the relay URL, when the action has one */
	struct relay_url	 url;
	int			 have_url;
	char			*auth;		/* "user:password" */
	uint32_t		 salt;		/* this request's MX shuffle */
	/* MX names still being resolved, then the addresses found */
	size_t			 pending;
	struct route_host	 hosts[ROUTE_MAX_HOSTS];
	size_t			 nhosts;
	int			 tempfail;	/* some lookup failed for now */
	char			 error[512];
	/* then the local side: src addresses, helo-src names */
	int			 phase;		/* 1: hosts known */
	int			 have_srcs;
	struct route_src	 srcs[ROUTE_MAX_SRC];
	size_t			 nsrc;
};

static void	route_step(void *);

static void
route_free(struct route_req *r)
{
	if (r->auth != NULL)
		explicit_bzero(r->auth, strlen(r->auth));
	free(r->auth);
	table_cache_free(r->cache);
	free(r);
}

/*
 * Preference order; MX hosts of equal preference in a random order
 * (RFC 5321 5.1) so the load spreads; the addresses of one host in the
 * resolver's order.  qsort is not stable: seq keeps that order.
 */
static int
host_cmp(const void *a, const void *b)
{
	const struct route_host *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	if (x->tie != y->tie)
		return x->tie < y->tie ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The same for every address of one name, random from one request on. */
static uint32_t
host_tie(const struct route_req *r, const char *name)
{
	uint32_t	 h = 2166136261u ^ r->salt;

	for (; *name; name++) {
		h ^= (unsigned char)tolower((unsigned char)*name);
		h *= 16777619u;
	}
	return h ^ (h >> 15);
}

static void
route_send(struct route_req *r, uint32_t status, const char *text)
{
	struct ipc_out	*o;
	size_t		 i;

	if (status == LKA_OK && r->nhosts == 0) {
		status = LKA_TEMPFAIL;
		text = r->error[0] ? r->error : "no address for the host";
	}
	qsort(r->hosts, r->nhosts, sizeof(r->hosts[0]), host_cmp);
	o = ipc_begin(env.peer[ROLE_SMTP], IMSG_MTA_ROUTE_RESULT);
	ipc_put_u64(o, r->reqid);
	ipc_put_u32(o, status);
	ipc_put_str(o, text);
	ipc_put_u32(o, r->have_url ? r->url.scheme : RELAY_SMTP);
	ipc_put_str(o, r->auth);
	ipc_put_u32(o, status == LKA_OK ? r->nhosts : 0);
	for (i = 0; status == LKA_OK && i < r->nhosts; i++) {
		ipc_put_u32(o, r->hosts[i].pref);
		ipc_put_str(o, r->hosts[i].name);
		ipc_put_data(o, &r->hosts[i].ss, sizeof(r->hosts[i].ss));
		ipc_put_str(o, r->hosts[i].helo[0] ? r->hosts[i].helo : NULL);
	}
	ipc_put_u32(o, status == LKA_OK ? r->nsrc : 0);
	for (i = 0; status == LKA_OK && i < r->nsrc; i++) {
		ipc_put_data(o, &r->srcs[i].ss, sizeof(r->srcs[i].ss));
		ipc_put_str(o, r->srcs[i].helo[0] ? r->srcs[i].helo : NULL);
	}
	ipc_end(o, -1);
	route_free(r);
}

static void	route_local(struct route_req *);

/* With the hosts known, the local side (`src`, `helo-src`) comes next. */
static void
route_answer(struct route_req *r, uint32_t status, const char *text)
{
	if (status == LKA_OK && r->nhosts > 0 && r->phase == 0 &&
	    (r->a->src != NULL || r->a->helo_src != NULL)) {
		r->phase = 1;
		route_local(r);
		return;
	}
	route_send(r, status, text);
}

static void
route_fail(struct route_req *r, uint32_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
route_fail(struct route_req *r, uint32_t status, const char *fmt, ...)
{
	va_list	 ap;
	char	 text[512];

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	r->nhosts = 0;
	route_answer(r, status, text);
}

static void
add_addr(struct route_req *r, uint32_t pref, const char *name,
    const struct sockaddr *sa, socklen_t len, uint16_t port)
{
	struct route_host	*h;

	if (r->nhosts >= ROUTE_MAX_HOSTS || len > sizeof(h->ss))
		return;
	h = &r->hosts[r->nhosts];
	memset(h, 0, sizeof(*h));
	h->seq = r->nhosts++;
	h->pref = pref;
	h->tie = host_tie(r, name);
	msd_strlcpy(h->name, name, sizeof(h->name));
	memcpy(&h->ss, sa, len);
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)&h->ss)->sin_port = htons(port);
	else if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)&h->ss)->sin6_port = htons(port);
}

struct addr_query {
	struct route_req	*r;
	uint32_t		 pref;
	int			 implicit;	/* the domain itself, no MX */
	char			 name[256];
};

static uint16_t
route_port(const struct route_req *r)
{
	return r->have_url ? r->url.port : 25;
}

static void
on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct addr_query	*q = arg;
	struct route_req	*r = q->r;
	struct ares_addrinfo_node *n;

	if (status == ARES_SUCCESS) {
		for (n = ai->nodes; n; n = n->ai_next)
			if (n->ai_family == AF_INET || n->ai_family == AF_INET6)
				add_addr(r, q->pref, q->name, n->ai_addr,
				    n->ai_addrlen, route_port(r));
	} else if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
		snprintf(r->error, sizeof(r->error), "%.255s: %s", q->name,
		    q->implicit && status == ARES_ENOTFOUND ?
		    "Domain does not exist" : "no address for the host");
		if (q->implicit && status == ARES_ENOTFOUND) {
			/* Neither MX nor address: no such domain, for good. */
			r->tempfail = -1;
		}
	} else if (status != ARES_EDESTRUCTION) {
		snprintf(r->error, sizeof(r->error), "%.255s: DNS error: %s",
		    q->name, ares_strerror(status));
		r->tempfail = 1;
	}
	if (ai != NULL)
		ares_freeaddrinfo(ai);
	free(q);
	if (status == ARES_EDESTRUCTION || --r->pending > 0)
		return;
	if (r->nhosts == 0 && r->tempfail == -1)
		route_answer(r, LKA_REJECT, r->error);
	else
		route_answer(r, LKA_OK, NULL);
}

/* A literal address needs no lookup. */
static int
literal_addr(struct route_req *r, const char *host, uint32_t pref)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	char			 buf[256];
	size_t			 n = strlen(host);

	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		add_addr(r, pref, host, (struct sockaddr *)&sin, sizeof(sin),
		    route_port(r));
		return 1;
	}
	if (host[0] == '[' && n > 2 && host[n - 1] == ']' && n < sizeof(buf)) {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		if (strncasecmp(buf, "IPv6:", 5) == 0)
			memmove(buf, buf + 5, strlen(buf + 5) + 1);
		if (inet_pton(AF_INET6, buf, &sin6.sin6_addr) == 1) {
			sin6.sin6_family = AF_INET6;
			add_addr(r, pref, host, (struct sockaddr *)&sin6,
			    sizeof(sin6), route_port(r));
			return 1;
		}
		if (inet_pton(AF_INET, buf, &sin.sin_addr) == 1) {
			sin.sin_family = AF_INET;
			add_addr(r, pref, host, (struct sockaddr *)&sin,
			    sizeof(sin), route_port(r));
			return 1;
		}
	}
	return 0;
}

static void
resolve_host(struct route_req *r, const char *name, uint32_t pref,
    int implicit)
{
	struct ares_addrinfo_hints hints;
	struct addr_query	*q;

	if (literal_addr(r, name, pref))
		return;
	q = xcalloc(1, sizeof(*q));
	q->r = r;
	q->pref = pref;
	q->implicit = implicit;
	msd_strlcpy(q->name, name, sizeof(q->name));
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	r->pending++;
	ares_getaddrinfo(channel, name, NULL, &hints, on_addrinfo, q);
	dns_arm_timer();
}

/* The lowest preference we may not use: our own, as an MX of the domain. */
static uint32_t
own_pref(const struct route_req *r, const struct ares_mx_reply *mx)
{
	const char	*self = r->a->backup_mx ? r->a->backup_mx :
			    env.conf->hostname;

	for (; mx; mx = mx->next)
		if (strcasecmp(mx->host, self) == 0)
			return mx->priority;
	return UINT32_MAX;
}

static void
mx_answer(struct route_req *r, struct ares_mx_reply *mx)
{
	struct ares_mx_reply	*m;
	uint32_t		 limit = own_pref(r, mx);

	/* RFC 7505: a single "." MX says the domain takes no mail. */
	if (mx != NULL && mx->next == NULL && mx->host[0] == '\0') {
		route_fail(r, LKA_REJECT, "556 5.1.10 Domain %s does not "
		    "accept mail (null MX)", r->domain);
		return;
	}
	if (r->a->backup && limit == UINT32_MAX) {
		route_fail(r, LKA_TEMPFAIL, "%s is not an MX of %s",
		    r->a->backup_mx ? r->a->backup_mx : env.conf->hostname,
		    r->domain);
		return;
	}
	r->pending++;		/* held while the queries start */
	for (m = mx; m; m = m->next)
		if (m->priority < limit && m->host[0] != '\0')
			resolve_host(r, m->host, m->priority, 0);
	if (--r->pending == 0) {
		if (limit != UINT32_MAX && r->nhosts == 0)
			route_fail(r, LKA_TEMPFAIL, "we are the best MX of "
			    "%s: no better MX to relay to", r->domain);
		else
			route_answer(r, LKA_OK, NULL);
	}
}

static void
on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct route_req	*r = arg;
	struct ares_mx_reply	*mx = NULL;

	if (status == ARES_EDESTRUCTION)
		return;
	if (status == ARES_SUCCESS &&
	    (status = ares_parse_mx_reply(abuf, alen, &mx)) == ARES_SUCCESS) {
		mx_answer(r, mx);
		ares_free_data(mx);
		return;
	}
	if (status == ARES_ENODATA) {
		/* RFC 5321 5.1: no MX, the domain's own address is its MX. */
		resolve_host(r, r->domain, 0, 1);
		return;
	}
	if (status == ARES_ENOTFOUND)
		route_fail(r, LKA_REJECT, "550 5.1.2 Domain %s does not exist",
		    r->domain);
	else
		route_fail(r, LKA_TEMPFAIL, "DNS error looking up the MX of "
		    "%s: %s", r->domain, ares_strerror(status));
}

/* The relay URL of this route, from `host` or the `domain` table. */
static int
route_url(struct route_req *r)
{
	char	 value[1024];
	int	 rc;

	if (r->a->host != NULL) {
		if (relay_url_parse(r->a->host, &r->url) != RELAY_URL_OK)
			return -1;
		r->have_url = 1;
		return 0;
	}
	if (r->a->domain == NULL)
		return 0;
	rc = table_cache_lookup(r->cache, r->a->domain, K_RELAYHOST,
	    r->domain, value, sizeof(value));
	if (rc == TABLE_BLOCKED)
		return 1;
	if (rc == -1) {
		route_fail(r, LKA_TEMPFAIL, "table %s: temporary failure",
		    r->a->domain->name);
		return 1;
	}
	if (rc == 0)
		return 0;		/* not listed: by MX */
	if (relay_url_parse(value, &r->url) != RELAY_URL_OK) {
		route_fail(r, LKA_TEMPFAIL, "table %s: bad relay URL for %s",
		    r->a->domain->name, r->domain);
		return 1;
	}
	r->have_url = 1;
	return 0;
}

/* `auth <t>`: the URL's label names "user:password" in the table. */
static int
route_auth(struct route_req *r)
{
	char	 value[1024];
	int	 rc;

	if (r->a->auth == NULL || !r->have_url || r->auth != NULL)
		return 0;
	if (r->url.label[0] == '\0') {
		route_fail(r, LKA_TEMPFAIL, "relay URL %s has no label for "
		    "the auth table", r->a->host ? r->a->host : "");
		return 1;
	}
	rc = table_cache_lookup(r->cache, r->a->auth, K_CREDENTIALS,
	    r->url.label, value, sizeof(value));
	if (rc == TABLE_BLOCKED)
		return 1;
	if (rc != 1 || strchr(value, ':') == NULL) {
		route_fail(r, LKA_TEMPFAIL, "table %s: %s for label %s",
		    r->a->auth->name, rc == -1 ? "temporary failure" :
		    rc == 0 ? "no credentials" : "credentials are not "
		    "\"user:password\"", r->url.label);
		explicit_bzero(value, sizeof(value));
		return 1;
	}
	r->auth = xstrdup(value);
	explicit_bzero(value, sizeof(value));
	return 0;
}

/* ----------------------------------------------- the local side */

/*
 * `src <t>`: the addresses to connect from, fetched in turn from the
 * table until it wraps around.  0 when done, 1 when waiting or failed.
 */
static int
route_src_list(struct route_req *r)
{
	char		 value[256], first[256] = "";
	unsigned	 i;
	size_t		 j;
	int		 rc;

	if (r->a->src == NULL || r->have_srcs)
		return 0;
	for (i = 0; i < ROUTE_MAX_SRC; i++) {
		rc = table_cache_fetch(r->cache, r->a->src, K_SOURCE, i,
		    value, sizeof(value));
		if (rc == TABLE_BLOCKED)
			return 1;
		if (rc == -1) {
			route_fail(r, LKA_TEMPFAIL, "table %s: cannot list "
			    "the source addresses", r->a->src->name);
			return 1;
		}
		if (rc == 0 || (i > 0 && strcmp(value, first) == 0))
			break;
		if (i == 0)
			msd_strlcpy(first, value, sizeof(first));
		if (!addr_literal(value, &r->srcs[r->nsrc].ss)) {
			log_warnx("dns: table %s: source \"%s\" is not an "
			    "address, skipped", r->a->src->name, value);
			continue;
		}
		for (j = 0; j < r->nsrc; j++)
			if (memcmp(&r->srcs[j].ss, &r->srcs[r->nsrc].ss,
			    sizeof(r->srcs[j].ss)) == 0)
				break;
		if (j == r->nsrc)
			r->nsrc++;
	}
	if (r->nsrc == 0) {
		route_fail(r, LKA_TEMPFAIL, "table %s has no source address",
		    r->a->src->name);
		return 1;
	}
	r->have_srcs = 1;
	return 0;
}

/*
 * Without `src` the kernel picks the local address: the one a UDP socket
 * connected to the host gets is the one TCP will use (same routing).
 */
static int
local_addr_for(const struct sockaddr_storage *dst, char *buf, size_t len)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);
	int			 fd, ok = 0;

	if ((fd = socket(dst->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	if (connect(fd, (const struct sockaddr *)dst, ss_len(dst)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		msd_strlcpy(buf, ss_to_text(&ss), len);
		ok = 1;
	}
	close(fd);
	return ok;
}

/* `helo-src <t>`: the name for one local address; 1 when waiting. */
static int
route_helo_one(struct route_req *r, const char *addr, char *helo,
    size_t len)
{
	int	 rc;

	rc = addrname_lookup(r->cache, r->a->helo_src, addr, helo, len);
	if (rc == TABLE_BLOCKED)
		return 1;
	if (rc == -1) {
		route_fail(r, LKA_TEMPFAIL, "table %s: temporary failure "
		    "looking up the HELO name of %s", r->a->helo_src->name,
		    addr);
		return 1;
	}
	if (rc == 0)
		helo[0] = '\0';	/* the action's helo or our name */
	return 0;
}

static int
route_helo_names(struct route_req *r)
{
	char	 addr[INET6_ADDRSTRLEN];
	size_t	 i;

	if (r->a->helo_src == NULL)
		return 0;
	for (i = 0; i < r->nsrc; i++)
		if (route_helo_one(r, ss_to_text(&r->srcs[i].ss),
		    r->srcs[i].helo, sizeof(r->srcs[i].helo)))
			return 1;
	for (i = 0; r->nsrc == 0 && i < r->nhosts; i++)
		if (local_addr_for(&r->hosts[i].ss, addr, sizeof(addr)) &&
		    route_helo_one(r, addr, r->hosts[i].helo,
		    sizeof(r->hosts[i].helo)))
			return 1;
	return 0;
}

/* Runs again, from here, each time a blocked table answer arrives. */
static void
route_local(struct route_req *r)
{
	if (route_src_list(r) != 0 || route_helo_names(r) != 0)
		return;
	route_send(r, LKA_OK, NULL);
}

/* Runs again each time a blocked table answer arrives. */
static void
route_step(void *arg)
{
	struct route_req	*r = arg;
	int			 rc;

	if (r->phase == 1) {
		route_local(r);
		return;
	}
	if ((rc = route_url(r)) != 0) {
		if (rc == -1)
			route_fail(r, LKA_TEMPFAIL, "bad relay URL");
		return;
	}
	if (route_auth(r) != 0)
		return;
	if (r->have_url) {
		resolve_host(r, r->url.host, 0, 0);
		if (r->pending == 0)
			route_answer(r, LKA_OK, NULL);
		return;
	}
	ares_query(channel, r->domain, ns_c_in, ns_t_mx, on_mx, r);
	dns_arm_timer();
}

/* IMSG_MTA_ROUTE from the smtp role: reqid, action, domain. */
void
dns_route_request(struct ipc_msg *m)
{
	struct route_req	*r = xcalloc(1, sizeof(*r));
	const char		*action, *domain;

	r->reqid = ipc_get_u64(m);
	action = ipc_get_str(m);
	domain = ipc_get_str(m);
	ipc_get_end(m);
	if (action == NULL || domain == NULL ||
	    (r->a = config_action(env.conf, action)) == NULL ||
	    r->a->method != A_RELAY)
		fatalx("dns: route for an unknown relay action");
	msd_strlcpy(r->domain, domain, sizeof(r->domain));
	lowercase(r->domain);
	r->salt = msd_random();
	r->cache = table_cache_new(route_step, r);
	route_step(r);
}

/* -------------------------------------------- client names (rDNS) */

/*
 * A connecting client's name: the PTR of its address, kept only if that
 * name resolves back to the address (forward-confirmed, "fcrdns").
 */
struct ptr_req {
	uint64_t		 sid;
	struct sockaddr_storage	 ss;
	char			 name[256];
};

static void
ptr_answer(struct ptr_req *p, const char *name, int fcrdns)
{
	struct ipc_out	*o;

	o = ipc_begin(env.peer[ROLE_SMTP], IMSG_DNS_PTR_RESULT);
	ipc_put_u64(o, p->sid);
	ipc_put_str(o, name);
	ipc_put_u32(o, fcrdns);
	ipc_end(o, -1);
	free(p);
}

static int
same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family)
		return 0;
	if (a->sa_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		    &((const struct sockaddr_in *)b)->sin_addr,
		    sizeof(struct in_addr)) == 0;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	    &((const struct sockaddr_in6 *)b)->sin6_addr,
	    sizeof(struct in6_addr)) == 0;
}

static void
on_forward(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct ptr_req		*p = arg;
	struct ares_addrinfo_node *n;
	int			 ok = 0;

	if (status == ARES_EDESTRUCTION)
		return;
	for (n = ai ? ai->nodes : NULL; n && !ok; n = n->ai_next)
		ok = same_addr(n->ai_addr, &p->ss);
	if (ai != NULL)
		ares_freeaddrinfo(ai);
	ptr_answer(p, p->name, ok);
}

static void
on_ptr(void *arg, int status, int timeouts, char *node, char *service)
{
	struct ptr_req		*p = arg;
	struct ares_addrinfo_hints hints;

	if (status == ARES_EDESTRUCTION)
		return;
	if (status != ARES_SUCCESS || node == NULL || *node == '\0' ||
	    strlen(node) >= sizeof(p->name)) {
		ptr_answer(p, NULL, 0);
		return;
	}
	msd_strlcpy(p->name, node, sizeof(p->name));
	lowercase(p->name);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = p->ss.ss_family;
	hints.ai_socktype = SOCK_STREAM;
	ares_getaddrinfo(channel, p->name, NULL, &hints, on_forward, p);
	dns_arm_timer();
}

/* IMSG_DNS_PTR from the smtp role: session id, client address. */
void
dns_ptr_request(struct ipc_msg *m)
{
	struct ptr_req	*p = xcalloc(1, sizeof(*p));
	const void	*ss;
	size_t		 len;

	p->sid = ipc_get_u64(m);
	ss = ipc_get_data(m, &len);
	ipc_get_end(m);
	if (len != sizeof(p->ss))
		fatalx("dns: bad address length");
	memcpy(&p->ss, ss, len);
	if (p->ss.ss_family != AF_INET && p->ss.ss_family != AF_INET6) {
		ptr_answer(p, NULL, 0);
		return;
	}
	ares_getnameinfo(channel, (struct sockaddr *)&p->ss, ss_len(&p->ss),
	    ARES_NI_NAMEREQD | ARES_NI_LOOKUPHOST, on_ptr, p);
	dns_arm_timer();
}
