/*
 * masquerade.c - `senders <t> masquerade`: the From: header of an
 * authenticated user's message is rewritten to name the MAIL FROM sender
 * of the session (smtpd.conf(5)).
 *
 * The smtp role gathers one From: header (with its folded lines) while
 * the message streams through and hands it here.  Every address of the
 * header is replaced; display names, comments, folding outside the
 * replaced address and everything after the header stay byte for byte.
 * A header this code cannot read with confidence (a group, an unclosed
 * quote, comment or angle bracket) is left as it is rather than guessed
 * at.
 */
#include <string.h>

#include "smtpd.h"

/* Where one address of the list sits in the header text: [beg, end). */
struct span {
	size_t	beg;
	size_t	end;
};

struct scan {
	int	quote;		/* inside "..." */
	int	comment;	/* nesting depth of (...) */
	int	angle;		/* inside <...> */
	int	escape;		/* the previous byte was a backslash */
	/* the current address: <...> contents, else its bare extent */
	int	has_angle;
	size_t	angle_beg, angle_end;
	int	has_bare;
	size_t	bare_beg, bare_end;
};

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The span of the address just ended; 0 when the entry was empty. */
static int
scan_take(struct scan *sc, struct span *sp)
{
	int	 found = 1;

	if (sc->has_angle) {
		sp->beg = sc->angle_beg;
		sp->end = sc->angle_end;
	} else if (sc->has_bare) {
		sp->beg = sc->bare_beg;
		sp->end = sc->bare_end;
	} else
		found = 0;
	sc->has_angle = sc->has_bare = 0;
	return found;
}

/* The bare text of the current entry reaches byte i. */
static void
scan_extend(struct scan *sc, size_t i)
{
	if (sc->angle)
		return;
	if (!sc->has_bare)
		sc->bare_beg = i;
	sc->has_bare = 1;
	sc->bare_end = i + 1;
}

/* One byte outside quotes, comments and escapes; -1: not rewritable. */
static int
scan_plain(struct scan *sc, size_t i, char c)
{
	if (c == '<' && !sc->angle) {
		if (sc->has_angle)
			return -1;	/* two addresses in one entry */
		sc->angle = 1;
		sc->has_angle = 1;
		sc->angle_beg = i + 1;
		return 0;
	}
	if (c == '>' && sc->angle) {
		sc->angle = 0;
		sc->angle_end = i;
		return 0;
	}
	if ((c == ':' || c == ';') && !sc->angle)
		return -1;		/* a group: left alone */
	if (!is_wsp(c))
		scan_extend(sc, i);
	return 0;
}

/*
 * The addresses of the header value v (len bytes), at most max; the
 * count, or -1 when the value is not one this code rewrites.
 */
static int
find_addresses(const char *v, size_t len, struct span *spans, size_t max)
{
	struct scan	 sc;
	struct span	 sp;
	size_t		 i, n = 0;
	char		 c;

	memset(&sc, 0, sizeof(sc));
	for (i = 0; i <= len; i++) {
		if (i == len && (sc.quote || sc.comment || sc.angle ||
		    sc.escape))
			return -1;
		c = i < len ? v[i] : ',';	/* the last entry ends */
		if (sc.escape || c == '\\') {
			sc.escape = !sc.escape;
			if (!sc.comment)
				scan_extend(&sc, i);
			continue;
		}
		if (sc.quote) {
			sc.quote = c != '"';
			scan_extend(&sc, i);
			continue;
		}
		if (sc.comment || c == '(') {
			sc.comment += c == '(' ? 1 : c == ')' ? -1 : 0;
			continue;
		}
		if (c == '"') {
			sc.quote = 1;
			scan_extend(&sc, i);
			continue;
		}
		if (c == ',' && !sc.angle) {
			if (scan_take(&sc, &sp)) {
				if (n == max)
					return -1;
				spans[n++] = sp;
			}
			continue;
		}
		if (scan_plain(&sc, i, c) == -1)
			return -1;
	}
	return (int)n;
}

#define MASQ_MAX_ADDRS	64	/* addresses in one From: header */

/*
 * hdr is a whole From: header (its lines joined by "\n", no final line
 * end).  Returns the rewritten header (malloc'd, its length in *outlen),
 * or NULL when it is to be kept as it is.
 */
char *
masquerade_from(const char *hdr, size_t len, const char *addr,
    size_t *outlen)
{
	struct span	 spans[MASQ_MAX_ADDRS];
	const char	*colon;
	size_t		 vbeg, alen = strlen(addr), total, o, prev, i;
	char		*out;
	int		 n;

	if ((colon = memchr(hdr, ':', len)) == NULL || alen == 0)
		return NULL;
	vbeg = colon + 1 - hdr;
	n = find_addresses(hdr + vbeg, len - vbeg, spans, MASQ_MAX_ADDRS);
	if (n <= 0)
		return NULL;
	total = len;
	for (i = 0; i < (size_t)n; i++)
		total += alen - (spans[i].end - spans[i].beg);
	out = xmalloc(total + 1);
	for (i = 0, o = 0, prev = 0; i < (size_t)n; i++) {
		memcpy(out + o, hdr + prev, vbeg + spans[i].beg - prev);
		o += vbeg + spans[i].beg - prev;
		memcpy(out + o, addr, alen);
		o += alen;
		prev = vbeg + spans[i].end;
	}
	memcpy(out + o, hdr + prev, len - prev);
	o += len - prev;
	out[o] = '\0';
	*outlen = o;
	return out;
}

/* "From:" (any case, blanks allowed before the colon) starts line. */
int
masquerade_is_from(const char *line, size_t len)
{
	size_t	 i;

	if (len < 5 || strncasecmp(line, "From", 4) != 0)
		return 0;
	for (i = 4; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	return i < len && line[i] == ':';
}
