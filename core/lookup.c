/*
 * lookup.c - the lookup role: rule matching and recipient expansion
 * (aliases.c) for the smtp and queue roles, AUTH credentials (auth.c),
 * and the filter chains of filtered listeners (filter.c).  Runs
 * unprivileged.  This is where table modules and DNS run too, so that
 * nothing slow ever blocks smtp.
 */
#include <sys/socket.h>

#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

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
