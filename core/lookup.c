/*
 * lookup.c - the lookup role: rule matching and recipient expansion
 * (aliases.c) for the smtp and queue roles, AUTH credentials (auth.c),
 * and the filter chains of filtered listeners (filter.c).  Runs
 * unprivileged.  This is where table modules and DNS run too, so that
 * nothing slow ever blocks smtp.
 */
#include <sys/socket.h>

#include <ctype.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

/*
 * `listen on ... hostnames <t>`: the server name for the local address a
 * client connected to.  The address is looked up as text ("192.0.2.1",
 * "::1"), then for IPv6 in OpenSMTPD's "IPv6:::1" spelling too.
 */
struct hostname_req {
	uint64_t		 reqid;
	struct table		*table;
	char			*addr;
	struct table_cache	*cache;
};

#define HOSTNAME_MAX	256

/* It goes into the banner and Received: letters, digits, "-._:[]". */
static int
hostname_valid(const char *name)
{
	const char	*p;

	if (name[0] == '\0')
		return 0;
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && strchr("-._:[]", *p) == NULL)
			return 0;
	return 1;
}

/*
 * A host name for one of our addresses from an addrname table
 * (`hostnames`, `helo-src`): 1, 0 (none, or not a host name), -1, or
 * TABLE_BLOCKED.
 */
int
addrname_lookup(struct table_cache *c, struct table *t, const char *addr,
    char *name, size_t len)
{
	char	 key[INET6_ADDRSTRLEN + 8];
	int	 r;

	r = table_cache_lookup(c, t, K_ADDRNAME, addr, name, len);
	if (r == 0 && strchr(addr, ':') != NULL) {
		snprintf(key, sizeof(key), "IPv6:%s", addr);
		r = table_cache_lookup(c, t, K_ADDRNAME, key, name, len);
	}
	if (r == 1 && !hostname_valid(name)) {
		log_warnx("lookup: table %s: \"%s\" for %s is not a host"
		    " name, using the default", t->name, name, addr);
		r = 0;
	}
	return r;
}

/* Runs again from the start when the table's answer was not in yet. */
static void
hostname_run(void *arg)
{
	struct hostname_req	*q = arg;
	struct ipc_out		*o;
	char			 name[HOSTNAME_MAX];
	int			 r;

	if ((r = addrname_lookup(q->cache, q->table, q->addr, name,
	    sizeof(name))) == TABLE_BLOCKED)
		return;
	o = ipc_begin(env.peer[ROLE_SMTP], IMSG_LKA_HOSTNAME_RESULT);
	ipc_put_u64(o, q->reqid);
	ipc_put_u32(o, r == 1 ? LKA_OK : r == 0 ? LKA_REJECT : LKA_TEMPFAIL);
	ipc_put_str(o, r == 1 ? name : NULL);
	ipc_end(o, -1);
	table_cache_free(q->cache);
	free(q->addr);
	free(q);
}

static void
hostname_request(struct ipc_msg *m)
{
	struct hostname_req	*q = xcalloc(1, sizeof(*q));
	const char		*table, *addr;

	q->reqid = ipc_get_u64(m);
	table = ipc_get_str(m);
	addr = ipc_get_str(m);
	ipc_get_end(m);
	if (table == NULL || addr == NULL ||
	    (q->table = config_table(env.conf, table)) == NULL)
		fatalx("lookup: bad hostname request");
	q->addr = xstrdup(addr);
	q->cache = table_cache_new(hostname_run, q);
	hostname_run(q);
}

void
lookup_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	enum smtpd_role from = (enum smtpd_role)(intptr_t)arg;

	if (m->type == IMSG_NONE)
		fatalx("lookup: lost the %s process", role_name(from));
	if ((from == ROLE_SMTP || from == ROLE_QUEUE) &&
	    m->type == IMSG_LKA_RCPT) {
		aliases_expand(m, from);
		return;
	}
	if (from == ROLE_SMTP && m->type == IMSG_MTA_ROUTE) {
		dns_route_request(m);
		return;
	}
	if (from == ROLE_SMTP && m->type == IMSG_DNS_PTR) {
		dns_ptr_request(m);
		return;
	}
	if (from == ROLE_SMTP && m->type == IMSG_AUTH) {
		auth_request(m);
		return;
	}
	if (from == ROLE_SMTP && m->type == IMSG_AUTH_SENDERS) {
		auth_senders(m);
		return;
	}
	if (from == ROLE_SMTP && m->type == IMSG_LKA_HOSTNAME) {
		hostname_request(m);
		return;
	}
	if (from == ROLE_PARENT && m->type == IMSG_AUTH_SYSTEM_RESULT) {
		auth_system_result(m);
		return;
	}
	if (from == ROLE_PARENT && m->type == IMSG_LKA_UPDATE_TABLES) {
		const char *name = ipc_get_str(m);

		ipc_get_end(m);
		if (table_update_all(env.conf, name) == 0)
			log_info("lookup: %s%s updated", name ? "table " :
			    "tables", name ? name : "");
		return;
	}
	if (m->type >= IMSG_FILTER_PROC && m->type <= IMSG_FILTER_RESULT) {
		filter_imsg(m, from);
		return;
	}
	if (from == ROLE_PARENT && m->type == IMSG_LKA_FORWARD_RESULT) {
		aliases_forward_result(m);
		return;
	}
	fatalx("lookup: unexpected %s from %s", ipc_type_name(m->type),
	    role_name(from));
}

void
lookup_main(void)
{
	if (table_reopen_lookups(env.conf) == -1)
		fatalx("lookup: cannot open the tables");
	filter_init();
	dns_init();
}
