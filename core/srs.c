/*
 * srs.c - the Sender Rewriting Scheme, in the form OpenSMTPD writes it, so
 * that an address either server made decodes on the other with the same
 * `srs key`.
 *
 *   SRS0=HHHH=TT=orig.domain=orig.user@our.domain
 *   SRS1=HHHH=first.forwarder==HHHH=TT=orig.domain=orig.user@our.domain
 *
 * HHHH is the first four characters of the URL-safe base64 (RFC 4648
 * section 5) of SHA-1(key || everything after "SRSn=HHHH="), our domain
 * included; it is a plain digest of the concatenation, not an HMAC,
 * because that is what OpenSMTPD computes.  TT is the day number
 * (seconds since the epoch / 86400) modulo 1024 in two characters of the
 * base32 alphabet A-Z2-7.  Only the "SRS0="/"SRS1=" prefixes are
 * case-insensitive; the hash, the timestamp and the rest are compared as
 * written, as OpenSMTPD does.
 *
 * The relay (smtp role) rewrites the sender of forwarded mail through
 * srs_mail_from(); the lookup role turns a bounce to one of our SRS
 * addresses back into the address it hides with srs_bounce_rcpt().
 * Nothing here blocks or allocates.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "smtpd.h"

static const char	 b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

#define SRS_DAY		86400
#define SRS_TS_MOD	1024		/* 10 bits of days: ~2.8 years */
#define SRS_HASH_LEN	4		/* base64 characters kept */
#define SRS_PREFIX_LEN	5		/* "SRS0=" */

/* The 10-bit day stamp of t. */
static unsigned
srs_day(time_t t)
{
	return (unsigned)((t / SRS_DAY) % SRS_TS_MOD);
}

/* HHHH for data: 0, or -1 when the digest could not be made. */
static int
srs_hash(const char *key, const char *data, char out[SRS_HASH_LEN + 1])
{
	EVP_MD_CTX	*ctx;
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen = 0;
	char		 b64[EVP_MAX_MD_SIZE * 2];
	int		 ok, i;

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, key, strlen(key)) == 1 &&
	    EVP_DigestUpdate(ctx, data, strlen(data)) == 1 &&
	    EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok || base64_encode(md, mdlen, b64, sizeof(b64)) < SRS_HASH_LEN)
		return -1;
	/* '+' and '/' would be awkward in a local part: RFC 4648 5. */
	for (i = 0; i < SRS_HASH_LEN; i++)
		out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	out[SRS_HASH_LEN] = '\0';
	return 0;
}

/* 1 if hash is HHHH of data under key or, failing that, the backup key. */
static int
srs_hash_ok(const struct srs_keys *k, const char *hash, const char *data)
{
	char	 h[SRS_HASH_LEN + 1];

	if (srs_hash(k->key, data, h) == 0 &&
	    strncmp(h, hash, SRS_HASH_LEN) == 0)
		return 1;
	return k->backup != NULL && srs_hash(k->backup, data, h) == 0 &&
	    strncmp(h, hash, SRS_HASH_LEN) == 0;
}

/*
 * The day stamp in s[0..1]: within ttl days before today, or at most one
 * day ahead (the clocks of two servers sharing a key).
 */
static int
srs_day_ok(const struct srs_keys *k, const char *s, time_t now)
{
	const char	*c0, *c1;
	unsigned	 ts, today, ttl;

	if (s[0] == '\0' || s[1] == '\0' || (c0 = strchr(b32, s[0])) == NULL ||
	    (c1 = strchr(b32, s[1])) == NULL)
		return 0;
	ts = (unsigned)(c0 - b32) << 5 | (unsigned)(c1 - b32);
	today = srs_day(now);
	ttl = k->ttl / SRS_DAY;
	return (today - ts + SRS_TS_MOD) % SRS_TS_MOD <= ttl ||
	    (ts - today + SRS_TS_MOD) % SRS_TS_MOD <= 1;
}

/* user@domain split at the last '@', each part within OpenSMTPD's sizes. */
static int
srs_split(const char *addr, char *user, char *domain)
{
	return addr_split(addr, user, SRS_ADDR_MAX, domain, SRS_ADDR_MAX);
}

/* "SRSn=" + HHHH of body + "=" + body into out; -1 when too long. */
static int
srs_make(const char *key, char n, const char *body, char *out, size_t outlen)
{
	char	 h[SRS_HASH_LEN + 1];
	int	 len;

	if (srs_hash(key, body, h) == -1)
		return -1;
	len = snprintf(out, outlen, "SRS%c=%s=%s", n, h, body);
	return len < 0 || (size_t)len >= outlen || len >= SRS_ADDR_MAX ?
	    -1 : 0;
}

/* SRS1 of an SRS1 sender "HHHH=first==...@prev": rehashed for domain. */
static int
srs1_again(const char *key, const char *srs1, const char *domain, char *out,
    size_t outlen)
{
	char	 user[SRS_ADDR_MAX], dom[SRS_ADDR_MAX], body[SRS_ADDR_MAX];
	int	 len;

	if (srs_split(srs1, user, dom) == -1 || strlen(user) < SRS_PREFIX_LEN ||
	    strchr("=+-", user[SRS_HASH_LEN]) == NULL)
		return -1;
	len = snprintf(body, sizeof(body), "%s@%s", user + SRS_PREFIX_LEN,
	    domain);
	if (len < 0 || (size_t)len >= sizeof(body))
		return -1;
	return srs_make(key, '1', body, out, outlen);
}

/*
 * SRS1 of a forwarder's SRS0 "HHHH=TT=d=u@first": "first==HHHH=TT=d=u",
 * the second '=' standing for the SRS0 prefix the decoder puts back.
 */
static int
srs1_first(const char *key, const char *srs0, const char *domain, char *out,
    size_t outlen)
{
	char	 user[SRS_ADDR_MAX], dom[SRS_ADDR_MAX], body[SRS_ADDR_MAX];
	int	 len;

	if (srs_split(srs0, user, dom) == -1)
		return -1;
	len = snprintf(body, sizeof(body), "%s==%s@%s", dom, user, domain);
	if (len < 0 || (size_t)len >= sizeof(body))
		return -1;
	return srs_make(key, '1', body, out, outlen);
}

int
srs_encode(const char *key, const char *sender, const char *domain,
    time_t now, char *out, size_t outlen)
{
	char		 user[SRS_ADDR_MAX], dom[SRS_ADDR_MAX];
	char		 body[SRS_ADDR_MAX];
	unsigned	 day = srs_day(now);
	int		 len;

	if (strncasecmp(sender, "SRS1=", SRS_PREFIX_LEN) == 0)
		return srs1_again(key, sender + SRS_PREFIX_LEN, domain, out,
		    outlen);
	if (strncasecmp(sender, "SRS0=", SRS_PREFIX_LEN) == 0)
		return srs1_first(key, sender + SRS_PREFIX_LEN, domain, out,
		    outlen);
	if (srs_split(sender, user, dom) == -1)
		return -1;
	len = snprintf(body, sizeof(body), "%c%c=%s=%s@%s", b32[day >> 5 & 31],
	    b32[day & 31], dom, user, domain);
	if (len < 0 || (size_t)len >= sizeof(body))
		return -1;
	return srs_make(key, '0', body, out, outlen);
}

/* "first==HHHH=TT=d=u": the SRS0 address at the first forwarder. */
static int
srs1_inner(const struct srs_keys *k, const char *user, time_t now,
    char *out, size_t outlen, const char **why)
{
	const char	*eq = strchr(user, '=');
	const char	*srs0;
	int		 len;

	if (eq == NULL || eq == user) {
		*why = "malformed SRS1 address";
		return -1;
	}
	srs0 = eq + 1;		/* "=HHHH=TT=...": "SRS0" comes back */
	/* The inner hash is the first forwarder's to check, the day ours. */
	if (strlen(srs0) < 1 + SRS_PREFIX_LEN + 3 ||
	    strchr("=+-", srs0[1 + SRS_PREFIX_LEN + 2]) == NULL) {
		*why = "malformed SRS1 address";
		return -1;
	}
	if (!srs_day_ok(k, srs0 + 1 + SRS_PREFIX_LEN, now)) {
		*why = "expired or bad timestamp";
		return -1;
	}
	len = snprintf(out, outlen, "SRS0%s@%.*s", srs0, (int)(eq - user),
	    user);
	if (len < 0 || (size_t)len >= outlen) {
		*why = "decoded address too long";
		return -1;
	}
	return 1;
}

/* "TT=d=u": the original sender. */
static int
srs0_inner(const struct srs_keys *k, const char *rest, time_t now,
    char *out, size_t outlen, const char **why)
{
	char		 user[SRS_ADDR_MAX], dom[SRS_ADDR_MAX];
	const char	*eq;
	int		 len;

	if (strlen(rest) < 3) {
		*why = "malformed SRS0 address";
		return -1;
	}
	if (!srs_day_ok(k, rest, now)) {
		*why = "expired or bad timestamp";
		return -1;
	}
	if (srs_split(rest + 3, user, dom) == -1 ||
	    (eq = strchr(user, '=')) == NULL || eq == user || eq[1] == '\0') {
		*why = "malformed SRS0 address";
		return -1;
	}
	len = snprintf(out, outlen, "%s@%.*s", eq + 1, (int)(eq - user), user);
	if (len < 0 || (size_t)len >= outlen) {
		*why = "decoded address too long";
		return -1;
	}
	return 1;
}

int
srs_decode(const struct srs_keys *k, const char *rcpt, time_t now,
    char *out, size_t outlen, const char **why)
{
	char		 user[SRS_ADDR_MAX], dom[SRS_ADDR_MAX];
	const char	*p = rcpt + SRS_PREFIX_LEN;
	int		 srs1;

	*why = NULL;
	if (strncasecmp(rcpt, "SRS0=", SRS_PREFIX_LEN) != 0 &&
	    strncasecmp(rcpt, "SRS1=", SRS_PREFIX_LEN) != 0)
		return 0;
	srs1 = rcpt[3] == '1';
	if (strlen(p) < SRS_HASH_LEN + 1) {
		*why = "malformed SRS address";
		return -1;
	}
	if (!srs_hash_ok(k, p, p + SRS_HASH_LEN + 1)) {
		*why = "bad hash";
		return -1;
	}
	p += SRS_HASH_LEN + 1;
	if (!srs1)
		return srs0_inner(k, p, now, out, outlen, why);
	if (srs_split(p, user, dom) == -1) {
		*why = "malformed SRS1 address";
		return -1;
	}
	/* dom is ours: the hash covered it */
	return srs1_inner(k, user, now, out, outlen, why);
}

/* ------------------------------------------------------------- hooks */

const char *
srs_mail_from(const struct action *a, const char *sender, const char *rcpt,
    const char *dest, char *buf, size_t len)
{
	const struct config	*conf = env.conf;
	const char		*at;

	/*
	 * OpenSMTPD's condition: an `srs` action, a sender to rewrite (not
	 * a bounce), and a forward: the address the mail came in for is not
	 * the one it goes to.  That address names our domain.
	 */
	if (conf == NULL || conf->srs_key == NULL || a == NULL || !a->srs ||
	    strchr(sender, '@') == NULL || strcmp(rcpt, dest) == 0 ||
	    (at = strrchr(rcpt, '@')) == NULL)
		return sender;
	if (srs_encode(conf->srs_key, sender, at + 1, time(NULL), buf,
	    len) == -1) {
		log_warnx("srs: cannot rewrite <%s> for %s (too long, or a"
		    " malformed SRS address): sent as it is", sender, at + 1);
		return sender;
	}
	log_debug("srs: <%s> sent as <%s>", sender, buf);
	return buf;
}

int
srs_bounce_rcpt(const char *rcpt, char *out, size_t outlen)
{
	const struct config	*conf = env.conf;
	struct srs_keys		 k;
	const char		*why;
	int			 r;

	if (conf == NULL || conf->srs_key == NULL)
		return 0;
	k.key = conf->srs_key;
	k.backup = conf->srs_key_backup;
	k.ttl = conf->srs_ttl;
	r = srs_decode(&k, rcpt, time(NULL), out, outlen, &why);
	if (r == -1)
		log_warnx("srs: cannot decode <%s>: %s", rcpt, why);
	else if (r == 1)
		log_debug("srs: <%s> is <%s>", rcpt, out);
	return r == 1;
}
