/*
 * smtp_filter.c - the smtp role's side of proc filters: the messages a
 * filtered session sends to the lookup role, which runs the listener's
 * filter chain (filter.c).  The session logic (when to ask, what to do
 * with a verdict) is in smtp_session.c; this file only builds messages,
 * so a session's reports, requests and data keep their order on the one
 * channel to the lookup role.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "smtpd.h"
#include "smtp_filter.h"

/* "1.2.3.4:25", "[::1]:25" or "unix:/path", as link-connect has them. */
static void
addr_port(const struct sockaddr_storage *ss, socklen_t len, char *buf,
    size_t size)
{
	char	 host[NI_MAXHOST], serv[NI_MAXSERV];
	int	 n;

	if (ss->ss_family == AF_UNIX)
		n = snprintf(buf, size, "unix:%s",
		    ((const struct sockaddr_un *)ss)->sun_path);
	else if (getnameinfo((const struct sockaddr *)ss, len, host,
	    sizeof(host), serv, sizeof(serv),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		n = -1;
	else if (ss->ss_family == AF_INET6)
		n = snprintf(buf, size, "[%s]:%s", host, serv);
	else
		n = snprintf(buf, size, "%s:%s", host, serv);
	if (n < 0 || (size_t)n >= size)
		msd_strlcpy(buf, "unknown", size);
}

/* self and peer: the session's addresses, as a PROXY header gave them. */
void
smtp_filter_begin(uint64_t sid, const char *chain,
    const struct sockaddr_storage *self, const struct sockaddr_storage *peer,
    const char *name, int fcrdns_ok)
{
	struct ipc_out		*o;
	char			 src[NI_MAXHOST + 16], dest[NI_MAXHOST + 16];
	char			 conn[NI_MAXHOST + 300];
	const char		*rdns, *fcrdns;
	int			 local = peer->ss_family == AF_UNIX;

	addr_port(self, sizeof(*self), dest, sizeof(dest));
	if (local)
		msd_strlcpy(src, dest, sizeof(src));
	else
		addr_port(peer, sizeof(*peer), src, sizeof(src));
	/* OpenSMTPD's values for a client without a name. */
	rdns = name ? name : "<unknown>";
	fcrdns = fcrdns_ok ? "pass" : "fail";
	snprintf(conn, sizeof(conn), "%s|%s", rdns, ss_to_text(peer));

	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_FILTER_BEGIN);
	ipc_put_u64(o, sid);
	ipc_put_str(o, chain);
	ipc_put_str(o, rdns);
	ipc_put_str(o, fcrdns);
	ipc_put_str(o, src);
	ipc_put_str(o, dest);
	ipc_put_str(o, conn);
	ipc_end(o, -1);
}

/* n strings follow; at most 8 (the most any event has is 4). */
void
smtp_filter_report(uint64_t sid, enum filter_event e, size_t n, ...)
{
	struct ipc_out	*o;
	va_list		 ap;
	size_t		 i;

	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_FILTER_REPORT);
	ipc_put_u64(o, sid);
	ipc_put_u32(o, e);
	ipc_put_u32(o, n);
	va_start(ap, n);
	for (i = 0; i < n; i++)
		ipc_put_str(o, va_arg(ap, const char *));
	va_end(ap);
	ipc_end(o, -1);
}

void
smtp_filter_phase(uint64_t sid, enum fphase phase, const char *param)
{
	struct ipc_out	*o = ipc_begin(env.peer[ROLE_LOOKUP],
			    IMSG_FILTER_PHASE);

	ipc_put_u64(o, sid);
	ipc_put_u32(o, phase);
	ipc_put_str(o, param);
	ipc_end(o, -1);
}

/* Lines buffered for the chain, each ending with "\n". */
void
smtp_filter_data(uint64_t sid, struct evbuffer *buf)
{
	struct ipc_out	*o;
	size_t		 len = evbuffer_get_length(buf);

	if (len == 0)
		return;
	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_FILTER_DATA);
	ipc_put_u64(o, sid);
	ipc_put_data(o, evbuffer_pullup(buf, -1), len);
	ipc_end(o, -1);
	evbuffer_drain(buf, len);
}

void
smtp_filter_end(uint64_t sid)
{
	struct ipc_out	*o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_FILTER_END);

	ipc_put_u64(o, sid);
	ipc_end(o, -1);
}

/*
 * The address as the client typed it between < and > after "FROM:" or
 * "TO:" (what mail-from, rcpt-to, tx-mail and tx-rcpt carry); -1 when
 * there is none, and the command's own checks answer.
 */
int
smtp_filter_addr(const char *arg, const char *prefix, char *out, size_t len,
    const char **after)
{
	const char	*lt, *gt;
	size_t		 plen = strlen(prefix);

	if (strncasecmp(arg, prefix, plen) != 0)
		return -1;
	for (lt = arg + plen; *lt == ' '; lt++)
		;
	if (*lt != '<' || (gt = strchr(lt, '>')) == NULL ||
	    (size_t)(gt - lt - 1) >= len)
		return -1;
	memcpy(out, lt + 1, gt - lt - 1);
	out[gt - lt - 1] = '\0';
	if (after)
		*after = gt + 1;
	return 0;
}
