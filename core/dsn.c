/*
 * dsn.c - the RFC 3461 parameters of MAIL FROM (RET, ENVID) and RCPT TO
 * (NOTIFY, ORCPT): parsed and checked here, so that the session only says
 * 501 with the text a parser gives, and whoever reads an envelope's DSN
 * fields (bounces, the relay) agrees on what they mean.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"

/* RFC 3461 4.1: the values NOTIFY may list, by name. */
static const struct {
	const char	*name;
	uint32_t	 bit;
} notify_kw[] = {
	{ "NEVER",	DSN_NOTIFY_NEVER },
	{ "SUCCESS",	DSN_NOTIFY_SUCCESS },
	{ "FAILURE",	DSN_NOTIFY_FAILURE },
	{ "DELAY",	DSN_NOTIFY_DELAY },
};

/*
 * RFC 3461 4.2 and 4.4: once decoded, ENVID and ORCPT are printable
 * US-ASCII, which also keeps them safe in the headers of a notice.
 */
static int
printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < ' ' || (unsigned char)*s > '~')
			return 0;
	return 1;
}

int
dsn_parse_ret(const char *v, uint32_t *ret, char *err, size_t errlen)
{
	if (strcasecmp(v, "FULL") == 0)
		*ret = DSN_RET_FULL;
	else if (strcasecmp(v, "HDRS") == 0)
		*ret = DSN_RET_HDRS;
	else {
		snprintf(err, errlen, "RET must be FULL or HDRS");
		return -1;
	}
	return 0;
}

int
dsn_parse_envid(const char *v, char *out, size_t outlen, char *err,
    size_t errlen)
{
	if (strlen(v) > DSN_ENVID_MAX) {
		snprintf(err, errlen, "ENVID longer than %d characters",
		    DSN_ENVID_MAX);
		return -1;
	}
	if (*v == '\0') {
		snprintf(err, errlen, "ENVID is empty");
		return -1;
	}
	if (xtext_decode(v, out, outlen) == -1 || !printable(out)) {
		snprintf(err, errlen, "ENVID is not valid xtext of printable"
		    " US-ASCII");
		return -1;
	}
	return 0;
}

/* One NOTIFY value (len bytes at v) into *bits; -1 with err. */
static int
notify_one(const char *v, size_t len, uint32_t *bits, char *err,
    size_t errlen)
{
	size_t	 i;

	for (i = 0; i < sizeof(notify_kw) / sizeof(notify_kw[0]); i++) {
		if (strlen(notify_kw[i].name) != len ||
		    strncasecmp(v, notify_kw[i].name, len) != 0)
			continue;
		if (*bits & notify_kw[i].bit) {
			snprintf(err, errlen, "NOTIFY value %s given twice",
			    notify_kw[i].name);
			return -1;
		}
		*bits |= notify_kw[i].bit;
		return 0;
	}
	if (len == 0)
		snprintf(err, errlen, "empty NOTIFY value");
	else
		snprintf(err, errlen, "unknown NOTIFY value \"%.*s\" (expected"
		    " NEVER, or SUCCESS, FAILURE and DELAY)",
		    (int)(len > 40 ? 40 : len), v);
	return -1;
}

int
dsn_parse_notify(const char *v, uint32_t *notify, char *err, size_t errlen)
{
	uint32_t	 bits = 0;
	size_t		 n;

	for (;;) {
		n = strcspn(v, ",");
		if (notify_one(v, n, &bits, err, errlen) == -1)
			return -1;
		if (v[n] == '\0')
			break;
		v += n + 1;
	}
	if ((bits & DSN_NOTIFY_NEVER) && bits != DSN_NOTIFY_NEVER) {
		snprintf(err, errlen, "NOTIFY=NEVER cannot be combined with"
		    " other values");
		return -1;
	}
	*notify = bits;
	return 0;
}

/* RFC 5322 atext: what an addr-type (an atom) is made of. */
static int
atom(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') ||
		    strchr("!#$%&'*+-/=?^_`{|}~", s[i]) != NULL))
			return 0;
	return 1;
}

int
dsn_parse_orcpt(const char *v, char *out, size_t outlen, char *err,
    size_t errlen)
{
	const char	*semi = strchr(v, ';');
	size_t		 tlen;

	if (strlen(v) > DSN_ORCPT_MAX) {
		snprintf(err, errlen, "ORCPT longer than %d characters",
		    DSN_ORCPT_MAX);
		return -1;
	}
	if (semi == NULL || !atom(v, semi - v)) {
		snprintf(err, errlen, "ORCPT must be addr-type;xtext");
		return -1;
	}
	tlen = semi - v + 1;
	if (tlen >= outlen) {
		snprintf(err, errlen, "ORCPT too long");
		return -1;
	}
	memcpy(out, v, tlen);
	if (xtext_decode(semi + 1, out + tlen, outlen - tlen) == -1 ||
	    !printable(out + tlen)) {
		snprintf(err, errlen, "ORCPT address is not valid xtext of"
		    " printable US-ASCII");
		return -1;
	}
	if (out[tlen] == '\0') {
		snprintf(err, errlen, "ORCPT address is empty");
		return -1;
	}
	return 0;
}

int
dsn_orcpt_encode(const char *orcpt, char *out, size_t outlen)
{
	const char	*semi = strchr(orcpt, ';');
	size_t		 tlen;
	int		 n;

	if (semi == NULL || (tlen = semi - orcpt + 1) >= outlen)
		return -1;
	memcpy(out, orcpt, tlen);
	if ((n = xtext_encode(semi + 1, out + tlen, outlen - tlen)) == -1)
		return -1;
	return (int)tlen + n;
}

/*
 * RFC 3461 4.1: without NOTIFY, the sender is told of failures and
 * delays (the MTA may choose; OpenSMTPD and Postfix tell of both).
 */
int
dsn_wants(const struct envelope *ev, uint32_t what)
{
	if (ev->sender[0] == '\0')
		return 0;		/* nothing ever goes to <> */
	if (ev->dsn_notify == 0)
		return (what & (DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY)) != 0;
	return (ev->dsn_notify & what) != 0;
}
