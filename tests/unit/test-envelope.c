/*
 * test-envelope.c - envelopes survive the JSON round trip, and corrupt or
 * hostile spool content is refused rather than trusted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "tap.h"


int
main(void)
{
	struct envelope	 a, b;
	char		*json, addr[1100], big[1300];

	log_init(1, 0);
	memset(&a, 0, sizeof(a));
	a.id = 0xdeadbeef00c0ffeeULL;
	a.msgid = 0xdeadbeef;
	strcpy(a.sender, "");
	strcpy(a.rcpt, "User@Example.org");
	strcpy(a.dest, "user@example.org");
	strcpy(a.helo, "client \"quoted\" \\ name");
	strcpy(a.action, "local");
	strcpy(a.user, "nobody");
	a.dlv = DLV_COMMAND;
	strcpy(a.dlv_arg, "/usr/bin/procmail -d \"$USER\"");
	a.creation = 1700000000;
	a.expire = 345600;
	a.retry = 3;
	json = envelope_dump(&a);
	ok(envelope_load_json(&b, json, strlen(json)) == 0, "round trip loads");
	ok(memcmp(&a, &b, sizeof(a)) == 0, "round trip is exact");
	free(json);

	ok(envelope_load_json(&b, "{", 1) == -1, "truncated JSON refused");
	ok(envelope_load_json(&b, "[]", 2) == -1, "non-object refused");
	json = "{\"version\":2,\"id\":\"0000000000000000\",\"msgid\":\"00000000\","
	    "\"rcpt\":\"a@b\",\"action\":\"x\"}";
	ok(envelope_load_json(&b, json, strlen(json)) == -1,
	    "unknown version refused");
	json = "{\"version\":1,\"id\":\"0000000000000000\",\"msgid\":\"00000000\","
	    "\"rcpt\":\"a@b\",\"action\":\"x\",\"retry\":\"3\"}";
	ok(envelope_load_json(&b, json, strlen(json)) == -1,
	    "wrongly typed field refused");
	json = "{\"version\":1,\"id\":\"0000000000000000\",\"msgid\":\"00000000\","
	    "\"rcpt\":\"a\\u0000b@c\",\"action\":\"x\"}";
	ok(envelope_load_json(&b, json, strlen(json)) == -1,
	    "embedded NUL refused");
	memset(addr, 'a', sizeof(addr) - 1);
	addr[sizeof(addr) - 1] = '\0';
	snprintf(big, sizeof(big), "{\"version\":1,\"id\":\"0000000000000000\","
	    "\"msgid\":\"00000000\",\"action\":\"x\",\"rcpt\":\"%s@b\"}", addr);
	ok(envelope_load_json(&b, big, strlen(big)) == -1,
	    "overlong address refused");
	json = "{\"version\":1,\"id\":\"0000000000000000\",\"msgid\":\"00000000\","
	    "\"rcpt\":\"a@b\",\"action\":\"x\",\"dlv\":3,\"dlv_arg\":\"y\"}";
	ok(envelope_load_json(&b, json, strlen(json)) == -1,
	    "unknown delivery kind refused");
	json = "{\"version\":1,\"id\":\"0000000000000000\",\"msgid\":\"00000000\","
	    "\"rcpt\":\"a@b\",\"action\":\"x\",\"dlv\":1}";
	ok(envelope_load_json(&b, json, strlen(json)) == -1,
	    "file delivery without a file refused");
	json = "{\"version\":1,\"id\":\"0000000000000000\",\"msgid\":\"00000000\","
	    "\"rcpt\":\"a@b\",\"action\":\"x\"}";
	ok(envelope_load_json(&b, json, strlen(json)) == 0 && b.dlv == DLV_ACTION &&
	    b.user[0] == '\0', "an envelope from before expansion fields loads");
	ok(b.dsn_notify == 0 && b.dsn_ret == 0 && b.dsn_warned == 0 &&
	    b.dsn_envid[0] == '\0' && b.dsn_orcpt[0] == '\0' &&
	    b.dsn_success[0] == '\0', "... with no DSN fields: all zero");

	a.dsn_notify = DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY;
	a.dsn_ret = DSN_RET_HDRS;
	strcpy(a.dsn_envid, "QQ+314");
	strcpy(a.dsn_orcpt, "rfc822;Bob@Example.org");
	a.dsn_warned = 2;
	strcpy(a.dsn_success, "relayed");
	json = envelope_dump(&a);
	ok(envelope_load_json(&b, json, strlen(json)) == 0 &&
	    memcmp(&a, &b, sizeof(a)) == 0, "DSN fields round trip");
	free(json);
	json = "{\"version\":1,\"id\":\"0000000000000000\",\"msgid\":\"00000000\","
	    "\"rcpt\":\"a@b\",\"action\":\"x\",\"dsn_warned\":5}";
	ok(envelope_load_json(&b, json, strlen(json)) == -1,
	    "more warnings than warn-intervals refused");
	json = "{\"version\":1,\"id\":\"0000000000000000\",\"msgid\":\"00000000\","
	    "\"rcpt\":\"a@b\",\"action\":\"x\",\"dsn_success\":\"failed\"}";
	ok(envelope_load_json(&b, json, strlen(json)) == -1,
	    "a success Action other than delivered or relayed refused");
	return tap_done();
}
