/*
 * test-dsn.c - the RFC 3461 parameters: xtext both ways, and what RET,
 * ENVID, NOTIFY and ORCPT accept and refuse (with which reason), and who
 * gets which notice by default.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "tap.h"

static void
test_xtext(void)
{
	char	 out[64], small[4];

	ok(xtext_decode("a+2Bb+3Dc", out, sizeof(out)) == 5 &&
	    strcmp(out, "a+b=c") == 0, "xtext decodes +2B and +3D");
	ok(xtext_decode("", out, sizeof(out)) == 0 && out[0] == '\0',
	    "empty xtext decodes to empty");
	ok(xtext_decode("a+2b", out, sizeof(out)) == -1,
	    "lowercase hex refused");
	ok(xtext_decode("a+2", out, sizeof(out)) == -1 &&
	    xtext_decode("a+", out, sizeof(out)) == -1,
	    "truncated +XX refused");
	ok(xtext_decode("a=b", out, sizeof(out)) == -1, "bare '=' refused");
	ok(xtext_decode("a b", out, sizeof(out)) == -1, "space refused");
	ok(xtext_decode("a\x7f", out, sizeof(out)) == -1, "DEL refused");
	ok(xtext_decode("+00", out, sizeof(out)) == -1, "+00 (NUL) refused");
	ok(xtext_decode("abcd", small, sizeof(small)) == -1 &&
	    xtext_decode("abc", small, sizeof(small)) == 3,
	    "decode checks the output size");
	ok(xtext_encode("a+b=c d\x01", out, sizeof(out)) > 0 &&
	    strcmp(out, "a+2Bb+3Dc+20d+01") == 0, "encode");
	ok(xtext_encode("abcd", small, sizeof(small)) == -1 &&
	    xtext_encode("+", small, sizeof(small)) == 3 &&
	    xtext_encode("a+", small, sizeof(small)) == -1,
	    "encode checks the output size");
}

static void
test_ret_envid(void)
{
	char		 err[200], out[DSN_ENVID_MAX + 1], big[DSN_ENVID_MAX + 2];
	uint32_t	 ret = 0;

	ok(dsn_parse_ret("FULL", &ret, err, sizeof(err)) == 0 &&
	    ret == DSN_RET_FULL, "RET=FULL");
	ok(dsn_parse_ret("hdrs", &ret, err, sizeof(err)) == 0 &&
	    ret == DSN_RET_HDRS, "RET=hdrs, any case");
	ok(dsn_parse_ret("BODY", &ret, err, sizeof(err)) == -1 &&
	    strcmp(err, "RET must be FULL or HDRS") == 0, "RET=BODY refused");
	ok(dsn_parse_ret("", &ret, err, sizeof(err)) == -1, "RET= refused");

	ok(dsn_parse_envid("QQ+2B314", out, sizeof(out), err,
	    sizeof(err)) == 0 && strcmp(out, "QQ+314") == 0, "ENVID decoded");
	ok(dsn_parse_envid("", out, sizeof(out), err, sizeof(err)) == -1 &&
	    strcmp(err, "ENVID is empty") == 0, "empty ENVID refused");
	ok(dsn_parse_envid("a+ZZ", out, sizeof(out), err, sizeof(err)) == -1 &&
	    strstr(err, "not valid xtext") != NULL, "bad xtext refused");
	ok(dsn_parse_envid("a+0A", out, sizeof(out), err, sizeof(err)) == -1,
	    "ENVID decoding to a control character refused");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ok(dsn_parse_envid(big, out, sizeof(out), err, sizeof(err)) == -1 &&
	    strcmp(err, "ENVID longer than 100 characters") == 0,
	    "101-character ENVID refused");
	big[DSN_ENVID_MAX] = '\0';
	ok(dsn_parse_envid(big, out, sizeof(out), err, sizeof(err)) == 0 &&
	    strlen(out) == DSN_ENVID_MAX, "100-character ENVID taken");
}

static void
test_notify(void)
{
	char		 err[200];
	uint32_t	 n = 0;

	ok(dsn_parse_notify("NEVER", &n, err, sizeof(err)) == 0 &&
	    n == DSN_NOTIFY_NEVER, "NOTIFY=NEVER");
	ok(dsn_parse_notify("success,Failure,DELAY", &n, err,
	    sizeof(err)) == 0 && n == (DSN_NOTIFY_SUCCESS |
	    DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY), "three values, any case");
	n = 77;
	ok(dsn_parse_notify("NEVER,SUCCESS", &n, err, sizeof(err)) == -1 &&
	    strcmp(err, "NOTIFY=NEVER cannot be combined with other values")
	    == 0 && n == 77, "NEVER with another refused, result untouched");
	ok(dsn_parse_notify("DELAY,NEVER", &n, err, sizeof(err)) == -1,
	    "NEVER last refused too");
	ok(dsn_parse_notify("SUCCESS,SUCCESS", &n, err, sizeof(err)) == -1 &&
	    strcmp(err, "NOTIFY value SUCCESS given twice") == 0,
	    "duplicate value refused");
	ok(dsn_parse_notify("SUCCESS,,DELAY", &n, err, sizeof(err)) == -1 &&
	    strcmp(err, "empty NOTIFY value") == 0, "empty element refused");
	ok(dsn_parse_notify("", &n, err, sizeof(err)) == -1 &&
	    dsn_parse_notify("DELAY,", &n, err, sizeof(err)) == -1,
	    "empty NOTIFY and a trailing comma refused");
	ok(dsn_parse_notify("SOMETIMES", &n, err, sizeof(err)) == -1 &&
	    strncmp(err, "unknown NOTIFY value \"SOMETIMES\"", 32) == 0,
	    "unknown value named");
	ok(dsn_parse_notify("SUCCESSFUL", &n, err, sizeof(err)) == -1,
	    "a longer word is not a prefix match");
}

static void
test_orcpt(void)
{
	char	 err[200], out[SMTPD_MAXADDR + 16], big[DSN_ORCPT_MAX + 2];
	char	 enc[700];

	ok(dsn_parse_orcpt("rfc822;Bob+2Bsales@Example.org", out, sizeof(out),
	    err, sizeof(err)) == 0 &&
	    strcmp(out, "rfc822;Bob+sales@Example.org") == 0,
	    "ORCPT decoded, type kept");
	ok(dsn_parse_orcpt("rfc822", out, sizeof(out), err, sizeof(err)) == -1
	    && strcmp(err, "ORCPT must be addr-type;xtext") == 0,
	    "ORCPT without ';' refused");
	ok(dsn_parse_orcpt(";a@b", out, sizeof(out), err, sizeof(err)) == -1,
	    "ORCPT without type refused");
	ok(dsn_parse_orcpt("rfc 822;a@b", out, sizeof(out), err,
	    sizeof(err)) == -1 && dsn_parse_orcpt("rfc(822);a@b", out,
	    sizeof(out), err, sizeof(err)) == -1, "type not an atom refused");
	ok(dsn_parse_orcpt("rfc822;", out, sizeof(out), err, sizeof(err)) == -1
	    && strcmp(err, "ORCPT address is empty") == 0,
	    "empty address refused");
	ok(dsn_parse_orcpt("rfc822;a+2", out, sizeof(out), err,
	    sizeof(err)) == -1 && strstr(err, "not valid xtext") != NULL,
	    "bad xtext refused");
	ok(dsn_parse_orcpt("rfc822;a+0D+0Ab", out, sizeof(out), err,
	    sizeof(err)) == -1, "CR LF in the address refused");
	memset(big, 'a', sizeof(big) - 1);
	memcpy(big, "rfc822;", 7);
	big[sizeof(big) - 1] = '\0';
	ok(dsn_parse_orcpt(big, out, sizeof(out), err, sizeof(err)) == -1 &&
	    strcmp(err, "ORCPT longer than 500 characters") == 0,
	    "501-character ORCPT refused");
	big[DSN_ORCPT_MAX] = '\0';
	ok(dsn_parse_orcpt(big, out, sizeof(out), err, sizeof(err)) == 0,
	    "500-character ORCPT taken");
	ok(dsn_orcpt_encode("rfc822;a+b c@d", enc, sizeof(enc)) > 0 &&
	    strcmp(enc, "rfc822;a+2Bb+20c@d") == 0, "ORCPT encoded to send on");
	ok(dsn_orcpt_encode("no-type", enc, sizeof(enc)) == -1 &&
	    dsn_orcpt_encode("rfc822;abc", enc, 9) == -1,
	    "encode refuses no type and a short buffer");
}

static void
test_wants(void)
{
	struct envelope	 ev;

	memset(&ev, 0, sizeof(ev));
	strcpy(ev.sender, "a@b");
	ok(dsn_wants(&ev, DSN_NOTIFY_FAILURE) && dsn_wants(&ev,
	    DSN_NOTIFY_DELAY) && !dsn_wants(&ev, DSN_NOTIFY_SUCCESS),
	    "no NOTIFY: failures and delays");
	ev.dsn_notify = DSN_NOTIFY_NEVER;
	ok(!dsn_wants(&ev, DSN_NOTIFY_FAILURE) && !dsn_wants(&ev,
	    DSN_NOTIFY_DELAY), "NEVER: nothing");
	ev.dsn_notify = DSN_NOTIFY_SUCCESS;
	ok(dsn_wants(&ev, DSN_NOTIFY_SUCCESS) && !dsn_wants(&ev,
	    DSN_NOTIFY_FAILURE) && !dsn_wants(&ev, DSN_NOTIFY_DELAY),
	    "SUCCESS only: no failure, no delay");
	ev.sender[0] = '\0';
	ok(!dsn_wants(&ev, DSN_NOTIFY_SUCCESS), "never anything to <>");
}

int
main(void)
{
	log_init(1, 0);
	test_xtext();
	test_ret_envid();
	test_notify();
	test_orcpt();
	test_wants();
	return tap_done();
}
