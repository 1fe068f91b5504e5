/*
 * test-ipc.c - the framed IPC layer: round trips with descriptors, and
 * the decoder's refusal of malformed frames (which must be fatal, never
 * undefined behaviour).
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"
#include "tap.h"


static int	 got;
static uint64_t	 got_u64;
static char	 got_str[64];
static int	 got_null;
static int	 got_fd = -1;
static int	 got_closed;

static void
handler(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	if (m->type == IMSG_NONE) {
		got_closed = 1;
		event_base_loopbreak(env.evbase);
		return;
	}
	got++;
	got_u64 = ipc_get_u64(m);
	msd_strlcpy(got_str, ipc_get_str(m), sizeof(got_str));
	got_null = ipc_get_str(m) == NULL;
	ipc_get_end(m);
	if (m->fd != -1) {
		if (got_fd != -1)
			close(got_fd);
		got_fd = m->fd;
	}
	if (got == 100)
		event_base_loopbreak(env.evbase);
}

static void
test_roundtrip(void)
{
	struct ipc	*a, *b;
	int		 sp[2], pfd[2], i;
	char		 buf[8] = "";

	socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
	a = ipc_new(sp[0], "a", handler, NULL);
	b = ipc_new(sp[1], "b", handler, NULL);
	if (pipe(pfd) == -1)
		abort();
	for (i = 0; i < 100; i++) {
		struct ipc_out *o = ipc_begin(a, IMSG_QUEUE_CREATE);
		ipc_put_u64(o, 0x1122334455667788ULL + i);
		ipc_put_str(o, "hello");
		ipc_put_str(o, NULL);
		/* The last frame carries the pipe's write end. */
		ipc_end(o, i == 99 ? pfd[1] : -1);
	}
	event_base_dispatch(env.evbase);
	ok(got == 100, "100 frames arrive in one burst");
	ok(got_u64 == 0x1122334455667788ULL + 99, "u64 survives");
	ok(strcmp(got_str, "hello") == 0 && got_null, "strings and NULL");
	ok(got_fd != -1 && write(got_fd, "x", 1) == 1 &&
	    read(pfd[0], buf, 1) == 1 && buf[0] == 'x',
	    "descriptor passed with its frame works");
	ipc_free(a);
	event_base_dispatch(env.evbase);
	ok(got_closed, "peer closing is reported as IMSG_NONE");
	ipc_free(b);
	close(pfd[0]);
	close(got_fd);
}

static void
test_decode(void)
{
	struct ipc_hdr	 h, out;
	uint8_t		 buf[64];

	memset(&h, 0, sizeof(h));
	h.type = IMSG_QUEUE_CREATE;
	h.len = 4;
	memcpy(buf, &h, sizeof(h));
	ok(ipc_decode(buf, sizeof(h) - 1, &out) == 0, "short header waits");
	ok(ipc_decode(buf, sizeof(h) + 3, &out) == 0, "short payload waits");
	ok(ipc_decode(buf, sizeof(h) + 4, &out) == 1, "whole frame decodes");
	h.len = IPC_MAX_MSG + 1;
	memcpy(buf, &h, sizeof(h));
	ok(ipc_decode(buf, sizeof(buf), &out) == -1, "oversized frame refused");
	h.len = 0;
	h.type = IMSG_MAX;
	memcpy(buf, &h, sizeof(h));
	ok(ipc_decode(buf, sizeof(buf), &out) == -1, "unknown type refused");
	h.type = IMSG_QUEUE_CREATE;
	h.flags = 0x80;
	memcpy(buf, &h, sizeof(h));
	ok(ipc_decode(buf, sizeof(buf), &out) == -1, "unknown flag refused");
}

/* Reading past a payload must kill the process with a clear message. */
static int
dies_reading(const uint8_t *data, size_t len, int what)
{
	struct ipc_msg	 m;
	pid_t		 pid;
	int		 status;

	fflush(stdout);	/* or the child prints our lines again */
	if ((pid = fork()) == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		memset(&m, 0, sizeof(m));
		m.type = IMSG_QUEUE_COMMIT;
		m.data = data;
		m.len = len;
		if (what == 0)
			ipc_get_u64(&m);
		else if (what == 1)
			ipc_get_str(&m);
		else
			ipc_get_end(&m);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) && WEXITSTATUS(status) == 1;
}

static void
test_readers(void)
{
	uint8_t	 u32[] = { 1, 0, 0, 0, 0 };		/* a u32 field */
	uint8_t	 badstr[] = { 3, 3, 0, 0, 0, 'a', 'b', 'c' };	/* no NUL */
	uint8_t	 longstr[] = { 3, 200, 0, 0, 0, 'a', 0 };	/* claims 200 */

	ok(dies_reading(u32, 3, 0), "truncated field is fatal");
	ok(dies_reading(u32, sizeof(u32), 0), "wrong field type is fatal");
	ok(dies_reading(badstr, sizeof(badstr), 1), "unterminated string is fatal");
	ok(dies_reading(longstr, sizeof(longstr), 1), "string past the frame is fatal");
	ok(dies_reading(u32, sizeof(u32), 2), "trailing bytes are fatal");
}

int
main(void)
{
	log_init(1, 0);
	env.evbase = event_base_new();
	test_roundtrip();
	test_decode();
	test_readers();
	return tap_done();
}
