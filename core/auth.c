/*
 * auth.c - checks the user name and password of an SMTP AUTH.
 *
 * The smtp role never sees a password hash: it sends the credentials to
 * the lookup role, which checks them against the listener's `auth <t>`
 * credentials table, or hands them to the parent for the system's users
 * (auth_system.c: PAM or /etc/shadow, which only root can use).  The
 * answer is ok, refused or temporary (a table or the system could not
 * tell).
 *
 * Hashes are crypt(3) strings (password.c).  Passwords are wiped from
 * memory as soon as they are checked.
 */
#include <sys/types.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

#define CRED_MAX	1024		/* a credentials table value */

/* ------------------------------------------------------- lookup side */

struct auth_req {
	struct auth_req		*next;
	uint64_t		 id;		/* ours, for the parent */
	uint64_t		 reqid;		/* the smtp role's */
	struct table		*table;		/* NULL: system users */
	char			*user;
	char			*pass;
	struct table_cache	*cache;
};

static struct auth_req	*reqs;
static uint64_t		 next_id;

static void
req_free(struct auth_req *a)
{
	struct auth_req	**p;

	for (p = &reqs; *p; p = &(*p)->next)
		if (*p == a) {
			*p = a->next;
			break;
		}
	table_cache_free(a->cache);
	free(a->user);
	explicit_bzero(a->pass, strlen(a->pass));
	free(a->pass);
	free(a);
}

static void
req_reply(struct auth_req *a, uint32_t status)
{
	struct ipc_out	*o;

	o = ipc_begin(env.peer[ROLE_SMTP], IMSG_AUTH_RESULT);
	ipc_put_u64(o, a->reqid);
	ipc_put_u32(o, status);
	ipc_end(o, -1);
	req_free(a);
}

/*
 * A credentials value: "hash", or "user:hash" as table programs such as
 * table-passwd answer (the user part must be the one asked for).
 */
static uint32_t
cred_check(struct auth_req *a, char *value)
{
	char	*hash = value, *colon;
	int	 r;

	if ((colon = strchr(value, ':')) != NULL && value[0] != '$') {
		*colon = '\0';
		hash = colon + 1;
		if (strcasecmp(value, a->user) != 0)
			return LKA_REJECT;
	}
	if ((r = password_check(a->pass, hash)) == -1) {
		log_warnx("auth: table %s: the hash for %s is of an unknown"
		    " scheme", a->table->name, a->user);
		return LKA_TEMPFAIL;
	}
	return r ? LKA_OK : LKA_REJECT;
}

/* Runs again from the start when the table's answer was not in yet. */
static void
req_run(void *arg)
{
	struct auth_req	*a = arg;
	char		 value[CRED_MAX];
	uint32_t	 status;
	int		 r;

	if ((r = table_cache_lookup(a->cache, a->table, K_CREDENTIALS,
	    a->user, value, sizeof(value))) == TABLE_BLOCKED)
		return;
	if (r == 1)
		status = cred_check(a, value);
	else
		status = r == 0 ? LKA_REJECT : LKA_TEMPFAIL;
	explicit_bzero(value, sizeof(value));
	req_reply(a, status);
}

/* Lookup: IMSG_AUTH from smtp: reqid, table name or NULL, user, password. */
void
auth_request(struct ipc_msg *m)
{
	struct auth_req	*a = xcalloc(1, sizeof(*a));
	const char	*table, *user, *pass;
	struct ipc_out	*o;

	a->reqid = ipc_get_u64(m);
	table = ipc_get_str(m);
	user = ipc_get_str(m);
	pass = ipc_get_str(m);
	ipc_get_end(m);
	if (user == NULL || pass == NULL)
		fatalx("auth: missing credentials");
	a->id = ++next_id;
	a->user = xstrdup(user);
	a->pass = xstrdup(pass);
	explicit_bzero((void *)(uintptr_t)pass, strlen(pass));
	a->next = reqs;
	reqs = a;
	if (table != NULL) {
		if ((a->table = config_table(env.conf, table)) == NULL)
			fatalx("auth: no table %s", table);
		a->cache = table_cache_new(req_run, a);
		req_run(a);
		return;
	}
	o = ipc_begin(env.peer[ROLE_PARENT], IMSG_AUTH_SYSTEM);
	ipc_put_u64(o, a->id);
	ipc_put_str(o, a->user);
	ipc_put_str(o, a->pass);
	ipc_end(o, -1);
}

/*
 * `senders <t>`: the addresses the authenticated user may use as MAIL
 * FROM, a mailaddrmap entry ("alice  alice@example.org, @example.net").
 */
struct senders_req {
	uint64_t		 reqid;
	struct table		*table;
	char			*user;
	char			*sender;
	struct table_cache	*cache;
};

static uint32_t
senders_match(const char *sender, char *list)
{
	char	*entry;

	while ((entry = strsep(&list, ", \t")) != NULL)
		if (*entry != '\0' && mailaddr_match(sender, entry))
			return LKA_OK;
	return LKA_REJECT;
}

/* Runs again from the start when the table's answer was not in yet. */
static void
senders_run(void *arg)
{
	struct senders_req	*q = arg;
	struct ipc_out		*o;
	char			 value[CRED_MAX * 4];
	uint32_t		 status;
	int			 r;

	if ((r = table_cache_lookup(q->cache, q->table, K_MAILADDRMAP,
	    q->user, value, sizeof(value))) == TABLE_BLOCKED)
		return;
	if (r == 1)
		status = q->sender[0] != '\0' ? senders_match(q->sender,
		    value) : LKA_REJECT;
	else
		status = r == 0 ? LKA_REJECT : LKA_TEMPFAIL;
	o = ipc_begin(env.peer[ROLE_SMTP], IMSG_AUTH_RESULT);
	ipc_put_u64(o, q->reqid);
	ipc_put_u32(o, status);
	ipc_end(o, -1);
	table_cache_free(q->cache);
	free(q->user);
	free(q->sender);
	free(q);
}

/* Lookup: IMSG_AUTH_SENDERS from smtp: reqid, table, user, sender. */
void
auth_senders(struct ipc_msg *m)
{
	struct senders_req	*q = xcalloc(1, sizeof(*q));
	const char		*table, *user, *sender;

	q->reqid = ipc_get_u64(m);
	table = ipc_get_str(m);
	user = ipc_get_str(m);
	sender = ipc_get_str(m);
	ipc_get_end(m);
	if (table == NULL || user == NULL || sender == NULL ||
	    (q->table = config_table(env.conf, table)) == NULL)
		fatalx("auth: bad senders request");
	q->user = xstrdup(user);
	q->sender = xstrdup(sender);
	q->cache = table_cache_new(senders_run, q);
	senders_run(q);
}

/* Lookup: the parent's verdict for a system user. */
void
auth_system_result(struct ipc_msg *m)
{
	struct auth_req	*a;
	uint64_t	 id = ipc_get_u64(m);
	uint32_t	 status = ipc_get_u32(m);

	ipc_get_end(m);
	if (status > LKA_TEMPFAIL)
		fatalx("auth: bad status from the parent");
	for (a = reqs; a; a = a->next)
		if (a->id == id && a->table == NULL) {
			req_reply(a, status);
			return;
		}
	fatalx("auth: an answer for no request");
}
