/*
 * test-srs.c - the Sender Rewriting Scheme: addresses byte for byte as
 * OpenSMTPD makes them (one captured from OpenSMTPD 6.8.0p2 itself), SRS1
 * for a forwarder's SRS0 and SRS1, and what decoding refuses: a wrong
 * hash, a changed case, an expired or future day stamp, the backup key
 * after a rotation, addresses too long for OpenSMTPD; then when the relay
 * rewrites a sender and when a bounce is turned back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "tap.h"

#define DAY	86400

/*
 * Made by OpenSMTPD 6.8.0p2 (Debian) with `srs key "s3cret"`: alice@
 * example.com wrote to fwd@example.org, an alias of a remote address, on
 * day 20779 (TT "JL", 20779 % 1024 = 299).
 */
#define OSD_TIME	((time_t)20779 * DAY + 3600)
#define OSD_SRS0	"SRS0=L6ov=JL=example.com=alice@example.org"

static const struct srs_keys keys = { "s3cret", NULL, 4 * DAY };

static int
decodes_to(const struct srs_keys *k, const char *rcpt, time_t now,
    const char *want)
{
	char		 out[SRS_ADDR_MAX];
	const char	*why;
	int		 r = srs_decode(k, rcpt, now, out, sizeof(out), &why);

	if (r != 1 || strcmp(out, want) != 0) {
		printf("# decode <%s>: %d %s (want %s)\n", rcpt, r,
		    r == 1 ? out : why ? why : "-", want);
		return 0;
	}
	return 1;
}

/* -1 with a reason containing want. */
static int
refused(const struct srs_keys *k, const char *rcpt, time_t now,
    const char *want)
{
	char		 out[SRS_ADDR_MAX];
	const char	*why = NULL;
	int		 r = srs_decode(k, rcpt, now, out, sizeof(out), &why);

	if (r != -1 || why == NULL || strstr(why, want) == NULL) {
		printf("# decode <%s>: %d %s (want refused: %s)\n", rcpt, r,
		    r == 1 ? out : why ? why : "-", want);
		return 0;
	}
	return 1;
}

static int
encodes_to(const char *key, const char *sender, const char *domain,
    time_t now, const char *want)
{
	char	 out[SRS_ADDR_MAX];

	if (srs_encode(key, sender, domain, now, out, sizeof(out)) != 0 ||
	    strcmp(out, want) != 0) {
		printf("# encode <%s> for %s: <%s> (want %s)\n", sender,
		    domain, out, want);
		return 0;
	}
	return 1;
}

static void
test_opensmtpd_vectors(void)
{
	ok(encodes_to("s3cret", "alice@example.com", "example.org", OSD_TIME,
	    OSD_SRS0), "SRS0 as OpenSMTPD 6.8 made it");
	ok(decodes_to(&keys, OSD_SRS0, OSD_TIME, "alice@example.com"),
	    "OpenSMTPD's SRS0 decodes");
	/* Computed from OpenSMTPD's srs.c by hand; "-" is base64's '+'. */
	ok(encodes_to("s3cret", "alice@example.com", "forward.example",
	    1700000000, "SRS0=R6T-=G3=example.com=alice@forward.example"),
	    "URL-safe base64 in the hash");
	ok(encodes_to("s3cret", "SRS0=R6T-=G3=example.com=alice@"
	    "forward.example", "second.example", 1700000000,
	    "SRS1=8EbD=forward.example==R6T-=G3=example.com=alice@"
	    "second.example"), "SRS1 of a forwarder's SRS0");
	ok(encodes_to("s3cret", "SRS1=8EbD=forward.example==R6T-=G3="
	    "example.com=alice@second.example", "third.example", 1700000000,
	    "SRS1=vzr4=forward.example==R6T-=G3=example.com=alice@"
	    "third.example"), "SRS1 of an SRS1: first forwarder kept, rehashed");
	ok(decodes_to(&keys, "SRS1=vzr4=forward.example==R6T-=G3=example.com="
	    "alice@third.example", 1700000000,
	    "SRS0=R6T-=G3=example.com=alice@forward.example"),
	    "SRS1 decodes to the SRS0 at the first forwarder");
	ok(encodes_to("s3cret", "srs0=R6T-=G3=example.com=alice@"
	    "forward.example", "second.example", 1700000000,
	    "SRS1=8EbD=forward.example==R6T-=G3=example.com=alice@"
	    "second.example"), "the SRS0= prefix is case-insensitive");
}

static void
test_round_trip(void)
{
	char	 a[SRS_ADDR_MAX], b[SRS_ADDR_MAX];
	time_t	 now = time(NULL);

	ok(srs_encode("k", "Bob.Smith+tag@Sub.Example.NET", "fwd.example.org",
	    now, a, sizeof(a)) == 0 && strncmp(a, "SRS0=", 5) == 0 &&
	    decodes_to(&(struct srs_keys){ "k", NULL, 4 * DAY }, a, now,
	    "Bob.Smith+tag@Sub.Example.NET"), "round trip keeps the case");
	ok(srs_encode("k", "x=y@example.com", "fwd.example", now, a,
	    sizeof(a)) == 0 && decodes_to(&(struct srs_keys){ "k", NULL,
	    4 * DAY }, a, now, "x=y@example.com"),
	    "an '=' in the local part survives");
	ok(srs_encode("k", a, "second.example", now, b, sizeof(b)) == 0 &&
	    strncmp(b, "SRS1=", 5) == 0 && decodes_to(&(struct srs_keys){ "k",
	    NULL, 4 * DAY }, b, now, a), "SRS1 round trip");
	ok(srs_encode("k", "nodomain", "fwd.example", now, a, sizeof(a)) ==
	    -1 && srs_encode("k", "", "fwd.example", now, a, sizeof(a)) == -1,
	    "no address, no rewriting");
}

static void
test_refusals(void)
{
	struct srs_keys	 k = keys;
	char		 out[SRS_ADDR_MAX], bad[SRS_ADDR_MAX];
	const char	*why;

	ok(srs_decode(&k, "alice@example.org", OSD_TIME, out, sizeof(out),
	    &why) == 0, "not an SRS address");
	msd_strlcpy(bad, OSD_SRS0, sizeof(bad));
	bad[5] = 'M';
	ok(refused(&k, bad, OSD_TIME, "bad hash"), "a changed hash");
	msd_strlcpy(bad, OSD_SRS0, sizeof(bad));
	bad[strlen(bad) - 1] = 'x';
	ok(refused(&k, bad, OSD_TIME, "bad hash"),
	    "a changed domain (the hash covers it)");
	ok(refused(&k, "SRS0=l6ov=JL=example.com=alice@example.org", OSD_TIME,
	    "bad hash"), "the hash is case-sensitive");
	ok(refused(&k, "SRS0=L6ov=JL=example.com=Alice@example.org", OSD_TIME,
	    "bad hash"), "so is the rest of the address");
	ok(decodes_to(&k, "srs0=L6ov=JL=example.com=alice@example.org",
	    OSD_TIME, "alice@example.com"), "but not the prefix");
	ok(refused(&(struct srs_keys){ "other", NULL, 4 * DAY }, OSD_SRS0,
	    OSD_TIME, "bad hash"), "another key");
	ok(refused(&k, "SRS0=L6o", OSD_TIME, "malformed") &&
	    refused(&k, "SRS1=", OSD_TIME, "malformed"), "too short");
	/* a valid hash over a body without the '=' the decoder needs */
	ok(srs_encode("s3cret", "SRS1=XXXX=nodomain", "fwd.example", OSD_TIME,
	    out, sizeof(out)) == -1, "an SRS1 sender without a domain");
}

static void
test_days(void)
{
	struct srs_keys	 k = keys;
	char		 a[SRS_ADDR_MAX], b[SRS_ADDR_MAX];

	ok(decodes_to(&k, OSD_SRS0, OSD_TIME + 4 * DAY, "alice@example.com"),
	    "valid on the last day of the ttl (4d)");
	ok(refused(&k, OSD_SRS0, OSD_TIME + 5 * DAY, "expired"),
	    "expired the day after");
	k.ttl = 7 * DAY + 3600;		/* counted in whole days */
	ok(decodes_to(&k, OSD_SRS0, OSD_TIME + 7 * DAY, "alice@example.com") &&
	    refused(&k, OSD_SRS0, OSD_TIME + 8 * DAY, "expired"),
	    "srs ttl 7d");
	k.ttl = 4 * DAY;
	ok(decodes_to(&k, OSD_SRS0, OSD_TIME - DAY, "alice@example.com"),
	    "one day ahead is tolerated (clock skew)");
	ok(refused(&k, OSD_SRS0, OSD_TIME - 2 * DAY, "expired"),
	    "two days ahead is not");
	ok(refused(&k, "SRS0=L6ov=Jl=example.com=alice@example.org",
	    OSD_TIME, "bad hash"), "a changed day is caught by the hash");
	/* day 1022 of the 1024-day cycle, read on day 1 of the next */
	ok(srs_encode("k", "a@b.example", "c.example", (time_t)1022 * DAY,
	    a, sizeof(a)) == 0 && strstr(a, "=76=") != NULL &&
	    decodes_to(&(struct srs_keys){ "k", NULL, 4 * DAY }, a,
	    (time_t)1025 * DAY, "a@b.example"), "the day stamp wraps at 1024");
	ok(srs_encode("k", "a@b.example", "c.example", (time_t)1022 * DAY,
	    a, sizeof(a)) == 0 && srs_encode("k", a, "d.example",
	    (time_t)1022 * DAY, b, sizeof(b)) == 0 &&
	    refused(&(struct srs_keys){ "k", NULL, 4 * DAY }, b,
	    (time_t)1030 * DAY, "expired"),
	    "an SRS1's inner day stamp is checked too");
}

static void
test_backup_key(void)
{
	char	 a[SRS_ADDR_MAX];

	ok(srs_encode("old key", "alice@example.com", "fwd.example",
	    OSD_TIME, a, sizeof(a)) == 0, "made with the old key");
	ok(refused(&(struct srs_keys){ "new key", NULL, 4 * DAY }, a,
	    OSD_TIME, "bad hash"), "refused after rotation without backup");
	ok(decodes_to(&(struct srs_keys){ "new key", "old key", 4 * DAY }, a,
	    OSD_TIME, "alice@example.com"), "accepted with `srs key backup`");
	ok(refused(&(struct srs_keys){ "new key", "older key", 4 * DAY }, a,
	    OSD_TIME, "bad hash"), "not with another backup");
}

static void
test_lengths(void)
{
	char	 user[300], sender[400], out[SRS_ADDR_MAX], small[32];
	size_t	 n;

	/* 100-byte local part: the SRS local part passes 64, as it does in
	 * OpenSMTPD, and still decodes. */
	memset(user, 'u', 100);
	user[100] = '\0';
	snprintf(sender, sizeof(sender), "%s@example.com", user);
	ok(srs_encode("k", sender, "fwd.example", OSD_TIME, out,
	    sizeof(out)) == 0 && strchr(out, '@') - out > 64 &&
	    decodes_to(&(struct srs_keys){ "k", NULL, 4 * DAY }, out,
	    OSD_TIME, sender), "a local part over 64 is made and decoded");
	/* the longest address OpenSMTPD keeps is 255 bytes */
	for (n = 100; n < 260; n++) {
		memset(user, 'u', n);
		user[n] = '\0';
		snprintf(sender, sizeof(sender), "%s@example.com", user);
		if (srs_encode("k", sender, "fwd.example", OSD_TIME, out,
		    sizeof(out)) == -1)
			break;
	}
	/* "SRS0=HHHH=TT=example.com=" + n + "@fwd.example" is n + 37 */
	ok(n == SRS_ADDR_MAX - 37, "the first sender refused would make %d"
	    " bytes (n=%zu)", SRS_ADDR_MAX, n);
	ok(srs_encode("k", "a@b.example", "c.example", OSD_TIME, small,
	    sizeof(small)) == -1, "a small output buffer is refused");
}

/* The relay's MAIL FROM and the lookup role's bounce, from the config. */
static void
test_hooks(void)
{
	struct config	 conf;
	struct action	 a;
	char		 buf[SRS_ADDR_MAX], out[SRS_ADDR_MAX];
	const char	*r;

	memset(&conf, 0, sizeof(conf));
	memset(&a, 0, sizeof(a));
	conf.srs_key = "s3cret";
	conf.srs_ttl = 4 * DAY;
	env.conf = &conf;
	a.srs = 1;
	r = srs_mail_from(&a, "alice@example.com", "fwd@example.org",
	    "bob@example.net", buf, sizeof(buf));
	ok(r == buf && strncmp(r, "SRS0=", 5) == 0 &&
	    strstr(r, "=example.com=alice@example.org") != NULL,
	    "a forward: SRS0 in the domain it was sent to (%s)", r);
	ok(srs_bounce_rcpt(r, out, sizeof(out)) == 1 &&
	    strcmp(out, "alice@example.com") == 0, "and its bounce comes back");
	r = srs_mail_from(&a, "alice@example.com", "bob@example.net",
	    "bob@example.net", buf, sizeof(buf));
	ok(strcmp(r, "alice@example.com") == 0, "not a forward: unchanged");
	r = srs_mail_from(&a, "", "fwd@example.org", "bob@example.net", buf,
	    sizeof(buf));
	ok(strcmp(r, "") == 0, "a bounce (<>): unchanged");
	a.srs = 0;
	r = srs_mail_from(&a, "alice@example.com", "fwd@example.org",
	    "bob@example.net", buf, sizeof(buf));
	ok(strcmp(r, "alice@example.com") == 0, "action without srs: unchanged");
	ok(srs_bounce_rcpt("SRS0=XXXX=JL=example.com=alice@example.org", out,
	    sizeof(out)) == 0, "a bad bounce address is not rewritten");
	conf.srs_key = NULL;
	a.srs = 1;
	r = srs_mail_from(&a, "alice@example.com", "fwd@example.org",
	    "bob@example.net", buf, sizeof(buf));
	ok(strcmp(r, "alice@example.com") == 0 &&
	    srs_bounce_rcpt(OSD_SRS0, out, sizeof(out)) == 0,
	    "no srs key: nothing rewritten either way");
	env.conf = NULL;
}

int
main(void)
{
	log_init(1, 0);
	test_opensmtpd_vectors();
	test_round_trip();
	test_refusals();
	test_days();
	test_backup_key();
	test_lengths();
	test_hooks();
	return tap_done();
}
