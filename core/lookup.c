/*
 * lookup.c - the lookup role: rule matching and recipient checks for the
 * smtp role.  Runs unprivileged.  This is where table modules, expansion,
 * DNS and filters will run, so that nothing slow ever blocks smtp.
 */
#include <sys/socket.h>

#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

/*
 * A recipient delivered as its own user must exist, or the mail could be
 * accepted and then never delivered.  Unprivileged, everything is
 * delivered as the caller, so there is nothing to check.
 */
static int
rcpt_user_ok(const struct action *a, const char *rcpt)
{
	char	 user[SMTPD_MAXADDR], domain[SMTPD_MAXADDR];

	if (!env.privileged || a->user)
		return 1;
	if (addr_split(rcpt, user, sizeof(user), domain, sizeof(domain)) == -1)
		return 0;
	subaddr_strip(user, env.conf->subaddr_delim);
	lowercase(user);
	return getpwnam(user) != NULL;
}

static void
lookup_rcpt(struct ipc_msg *m)
{
	struct match_ctx	 ctx;
	struct sockaddr_storage	 ss;
	const struct rule	*r;
	const void		*p;
	size_t			 len;
	uint64_t		 reqid;
	uint32_t		 status = LKA_REJECT;
	int			 tempfail;
	const char		*action = NULL;
	struct ipc_out		*o;

	memset(&ctx, 0, sizeof(ctx));
	reqid = ipc_get_u64(m);
	ctx.local = ipc_get_u32(m);
	p = ipc_get_data(m, &len);
	if (len != sizeof(ss))
		fatalx("lookup: bad address length");
	memcpy(&ss, p, sizeof(ss));
	ctx.src = ctx.local ? NULL : &ss;
	ctx.tag = ipc_get_str(m);
	ctx.helo = ipc_get_str(m);
	ctx.auth = ipc_get_str(m);
	ctx.tls = ipc_get_u32(m);
	ctx.sender = ipc_get_str(m);
	ctx.rcpt = ipc_get_str(m);
	ipc_get_end(m);
	if (ctx.sender == NULL || ctx.rcpt == NULL)
		fatalx("lookup: missing address");

	r = ruleset_match(env.conf, &ctx, &tempfail);
	if (tempfail) {
		status = LKA_TEMPFAIL;
		log_warnx("lookup: rcpt <%s>: a table lookup failed",
		    ctx.rcpt);
	} else if (r && !r->reject && r->action) {
		if (rcpt_user_ok(r->action, ctx.rcpt)) {
			status = LKA_OK;
			action = r->action->name;
		} else
			log_info("lookup: no such user for <%s>", ctx.rcpt);
	}
	log_debug("lookup: rcpt <%s> from <%s> %s: %s", ctx.rcpt, ctx.sender,
	    ss_to_text(ctx.src), r ? (r->reject ? "reject rule" : action) :
	    "no rule");
	o = ipc_begin(env.peer[ROLE_SMTP], IMSG_LKA_RCPT_RESULT);
	ipc_put_u64(o, reqid);
	ipc_put_u32(o, status);
	ipc_put_str(o, action);
	ipc_end(o, -1);
}

void
lookup_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	enum smtpd_role from = (enum smtpd_role)(intptr_t)arg;

	if (m->type == IMSG_NONE)
		fatalx("lookup: lost the %s process", role_name(from));
	if (from == ROLE_SMTP && m->type == IMSG_LKA_RCPT) {
		lookup_rcpt(m);
		return;
	}
	fatalx("lookup: unexpected %s from %s", ipc_type_name(m->type),
	    role_name(from));
}

void
lookup_main(void)
{
}
