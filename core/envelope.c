/*
 * envelope.c - envelopes as JSON objects (jansson), the form they take in
 * the queue and between processes.  Loading checks every field's type and
 * length: a spool file is input like any other.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "smtpd.h"

#define ENVELOPE_VERSION	1

char *
envelope_dump(const struct envelope *ev)
{
	json_t	*o;
	char	 id[24], msgid[12];
	char	*s;

	snprintf(id, sizeof(id), "%016" PRIx64, ev->id);
	snprintf(msgid, sizeof(msgid), "%08" PRIx32, ev->msgid);
	o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s,"
	    " s:s, s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:I,"
	    " s:i, s:i, s:s, s:s, s:I, s:s}",
	    "version", ENVELOPE_VERSION,
	    "id", id,
	    "msgid", msgid,
	    "sender", ev->sender,
	    "rcpt", ev->rcpt,
	    "dest", ev->dest,
	    "helo", ev->helo,
	    "hostname", ev->hostname,
	    "src", ev->src,
	    "tag", ev->tag,
	    "action", ev->action,
	    "user", ev->user,
	    "dlv", (int)ev->dlv,
	    "dlv_arg", ev->dlv_arg,
	    "errorline", ev->errorline,
	    "creation", (json_int_t)ev->creation,
	    "lasttry", (json_int_t)ev->lasttry,
	    "nexttry", (json_int_t)ev->nexttry,
	    "expire", (json_int_t)ev->expire,
	    "retry", (json_int_t)ev->retry,
	    "dsn_notify", (int)ev->dsn_notify,
	    "dsn_ret", (int)ev->dsn_ret,
	    "dsn_envid", ev->dsn_envid,
	    "dsn_orcpt", ev->dsn_orcpt,
	    "dsn_warned", (json_int_t)ev->dsn_warned,
	    "dsn_success", ev->dsn_success);
	if (o == NULL)
		fatalx("envelope_dump: json_pack");
	if ((s = json_dumps(o, JSON_COMPACT)) == NULL)
		fatalx("envelope_dump: json_dumps");
	json_decref(o);
	return s;
}

static int
get_str(json_t *o, const char *key, char *dst, size_t len)
{
	json_t	*v = json_object_get(o, key);

	if (v == NULL) {
		dst[0] = '\0';
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) >= len ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return -1;
	msd_strlcpy(dst, json_string_value(v), len);
	return 0;
}

static int
get_int(json_t *o, const char *key, int64_t *dst)
{
	json_t	*v = json_object_get(o, key);

	if (v == NULL) {
		*dst = 0;
		return 0;
	}
	if (!json_is_integer(v))
		return -1;
	*dst = json_integer_value(v);
	return 0;
}

static int
get_hex(json_t *o, const char *key, uint64_t *dst, size_t digits)
{
	char	 buf[24], *end;

	if (get_str(o, key, buf, sizeof(buf)) == -1 ||
	    strlen(buf) != digits)
		return -1;
	*dst = strtoull(buf, &end, 16);
	return *end == '\0' ? 0 : -1;
}

int
envelope_load_json(struct envelope *ev, const char *buf, size_t len)
{
	json_t		*o;
	json_error_t	 err;
	int64_t		 version, expire, retry, dlv, notify, ret, warned;
	uint64_t	 msgid;
	int		 r = -1;

	memset(ev, 0, sizeof(*ev));
	if ((o = json_loadb(buf, len, 0, &err)) == NULL)
		return -1;
	if (!json_is_object(o) || get_int(o, "version", &version) == -1 ||
	    version != ENVELOPE_VERSION)
		goto done;
	if (get_hex(o, "id", &ev->id, 16) == -1 ||
	    get_hex(o, "msgid", &msgid, 8) == -1 ||
	    get_str(o, "sender", ev->sender, sizeof(ev->sender)) == -1 ||
	    get_str(o, "rcpt", ev->rcpt, sizeof(ev->rcpt)) == -1 ||
	    get_str(o, "dest", ev->dest, sizeof(ev->dest)) == -1 ||
	    get_str(o, "helo", ev->helo, sizeof(ev->helo)) == -1 ||
	    get_str(o, "hostname", ev->hostname, sizeof(ev->hostname)) == -1 ||
	    get_str(o, "src", ev->src, sizeof(ev->src)) == -1 ||
	    get_str(o, "tag", ev->tag, sizeof(ev->tag)) == -1 ||
	    get_str(o, "action", ev->action, sizeof(ev->action)) == -1 ||
	    get_str(o, "user", ev->user, sizeof(ev->user)) == -1 ||
	    get_int(o, "dlv", &dlv) == -1 ||
	    get_str(o, "dlv_arg", ev->dlv_arg, sizeof(ev->dlv_arg)) == -1 ||
	    get_str(o, "errorline", ev->errorline, sizeof(ev->errorline)) == -1 ||
	    get_int(o, "creation", &ev->creation) == -1 ||
	    get_int(o, "lasttry", &ev->lasttry) == -1 ||
	    get_int(o, "nexttry", &ev->nexttry) == -1 ||
	    get_int(o, "expire", &expire) == -1 ||
	    get_int(o, "retry", &retry) == -1 ||
	    get_int(o, "dsn_notify", &notify) == -1 ||
	    get_int(o, "dsn_ret", &ret) == -1 ||
	    get_str(o, "dsn_envid", ev->dsn_envid, sizeof(ev->dsn_envid)) == -1 ||
	    get_str(o, "dsn_orcpt", ev->dsn_orcpt, sizeof(ev->dsn_orcpt)) == -1 ||
	    get_int(o, "dsn_warned", &warned) == -1 ||
	    get_str(o, "dsn_success", ev->dsn_success,
	    sizeof(ev->dsn_success)) == -1)
		goto done;
	if (notify < 0 || notify > 0x0f || ret < 0 || ret > DSN_RET_HDRS ||
	    warned < 0 || warned > MAX_WARN_INTERVALS)
		goto done;
	/* The Action of a success notice: nothing else may reach a header. */
	if (ev->dsn_success[0] != '\0' &&
	    strcmp(ev->dsn_success, "delivered") != 0 &&
	    strcmp(ev->dsn_success, "relayed") != 0)
		goto done;
	ev->dsn_warned = warned;
	ev->dsn_notify = notify;
	ev->dsn_ret = ret;
	if (expire < 0 || expire > UINT32_MAX || retry < 0 ||
	    retry > UINT32_MAX || ev->rcpt[0] == '\0' || ev->action[0] == '\0')
		goto done;
	if (dlv != DLV_ACTION && (dlv > DLV_COMMAND || dlv < 0 ||
	    ev->dlv_arg[0] == '\0'))
		goto done;
	ev->dlv = dlv;
	/* The id field is informative: the queue names the envelope. */
	ev->msgid = msgid;
	ev->expire = expire;
	ev->retry = retry;
	r = 0;
done:
	json_decref(o);
	return r;
}
