/*
 * expand.c - the format specifiers of smtpd.conf(5): "%{rcpt.domain}",
 * "%{rcpt.user[0:2]:lowercase|strip}", a leading "~/", as OpenSMTPD
 * expands them in maildir paths, mda commands and mda wrappers.
 *
 * Behaviour follows OpenSMTPD's expander wherever the manual is silent:
 *  - "~/" at the very start becomes the user's directory plus "/"; a "~"
 *    anywhere else, or not followed by "/", is literal text.
 *  - "%%" is one literal '%'; a '%' not followed by '{' is literal, so
 *    "100%" and "%x" pass through unchanged.
 *  - Token and modifier names are case-insensitive ("%{RCPT:Lowercase}").
 *  - A token is a name, an optional [slice], then optional ":mod|mod...".
 *    Modifiers run left to right, then the value is sanitised (unless
 *    raw), then sliced.
 *  - Slices: [N] is one character, [N:] from N, [:M] up to M, [N:M].  A
 *    positive end is an inclusive index, a negative one counts from the
 *    end so that [0:-4] drops four characters.  Negative starts count
 *    from the end.  An end past the string is clamped; a start past it,
 *    or a range that ends up empty or reversed, is an error.  That makes
 *    [-N] (start len-N, end len-1-N) an error, as it is in OpenSMTPD.
 *    An empty value expands to "" whatever the slice.
 * Deliberate differences, all for values OpenSMTPD never produces:
 *  - Anything between "]" and ":" is an error instead of being ignored.
 *  - :strip looks for the delimiter in the local part only, so a '-'
 *    delimiter cannot cut "user@my-host.org" inside the domain.
 *  - A sanitised value that is "." or contains ".." is refused.
 *    OpenSMTPD only accepts dot-atom local parts, which cannot hold
 *    either, and so relies on that to keep "%{rcpt.user}" inside its
 *    directory; our SMTP layer is more lenient, so the check lives here.
 * On failure out is left empty, so a half-expanded path is never used.
 */
#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"

/*
 * Replaced by ':' unless ":raw": OpenSMTPD's MAILADDR_ESCAPE, the
 * characters an address may legally hold that mean something to a shell.
 * '/' is not among them (it is valid in a local part); the ".." check
 * keeps it from climbing out of a directory.
 */
#define EXPAND_ESCAPE	"!#$%&'*?`{|}~"

/* Slice offsets are bounded like OpenSMTPD's (its expansion buffer). */
#define EXPAND_MAXOFF	1024
#define SLICE_TO_END	LONG_MAX

#define E_TOOLONG	"expansion too long"
#define E_UNTERMINATED	"unterminated %{ in format"
#define E_TOKEN		"unknown format token"
#define E_SLICE		"bad slice in format token"
#define E_RANGE		"slice out of range"
#define E_MODIFIER	"unknown format modifier"
#define E_ADDRESS	"malformed address in format expansion"
#define E_UNSAFE	"unsafe \".\" or \"..\" in expanded value"
#define E_HOME		"\"~/\" needs the user's home directory"

enum addr_part {
	PART_ALL,
	PART_USER,
	PART_DOMAIN,
};

static const struct token_def {
	const char	*name;
	size_t		 field;		/* offsetof in struct expand_ctx */
	enum addr_part	 part;
	int		 sanitise;	/* trusted values are left alone */
	const char	*missing;	/* error when the field is NULL */
} tokens[] = {
#define F(f)	offsetof(struct expand_ctx, f)
	{ "sender",	   F(sender), PART_ALL, 1,
	    "%{sender} is not available here" },
	{ "sender.user",   F(sender), PART_USER, 1,
	    "%{sender} is not available here" },
	{ "sender.domain", F(sender), PART_DOMAIN, 1,
	    "%{sender} is not available here" },
	{ "rcpt",	   F(rcpt), PART_ALL, 1,
	    "%{rcpt} is not available here" },
	{ "rcpt.user",	   F(rcpt), PART_USER, 1,
	    "%{rcpt} is not available here" },
	{ "rcpt.domain",   F(rcpt), PART_DOMAIN, 1,
	    "%{rcpt} is not available here" },
	{ "dest",	   F(dest), PART_ALL, 1,
	    "%{dest} is not available here" },
	{ "dest.user",	   F(dest), PART_USER, 1,
	    "%{dest} is not available here" },
	{ "dest.domain",   F(dest), PART_DOMAIN, 1,
	    "%{dest} is not available here" },
	{ "user.username", F(user), PART_ALL, 1,
	    "%{user.username} is not available here" },
	{ "user.directory", F(directory), PART_ALL, 0,
	    "%{user.directory} is not available here" },
	{ "mbox.from",	   F(mbox_from), PART_ALL, 1,
	    "%{mbox.from} is not available here" },
	{ "mda",	   F(mda), PART_ALL, 0,
	    "%{mda} is only available in mda wrappers" },
#undef F
};

struct slice {
	int	 set;
	long	 begin;
	long	 end;		/* inclusive; SLICE_TO_END when open */
};

/* One "%{...}" split into its parts; pointers are into the format. */
struct token {
	const char	*name;
	size_t		 namelen;
	struct slice	 slice;
	const char	*mods;		/* NULL: no ':' at all */
	size_t		 modslen;
};

/* Appends n bytes, keeping out NUL-terminated; *pos < outlen always. */
static int
append(char *out, size_t outlen, size_t *pos, const char *s, size_t n,
    const char **err)
{
	if (n >= outlen - *pos) {
		*err = E_TOOLONG;
		return -1;
	}
	memcpy(out + *pos, s, n);
	*pos += n;
	out[*pos] = '\0';
	return 0;
}

/* An optional sign and digits, within +-EXPAND_MAXOFF. */
static int
parse_offset(const char *s, size_t len, long *v)
{
	size_t	 i = 0;
	long	 n = 0;
	int	 neg = 0;

	if (len > 0 && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		i++;
	}
	if (i == len)
		return -1;
	for (; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		n = n * 10 + (s[i] - '0');
		if (n > EXPAND_MAXOFF)
			return -1;
	}
	*v = neg ? -n : n;
	return 0;
}

/* The text between '[' and ']': "N", "N:", ":M", "N:M" or ":". */
static int
parse_slice(const char *s, size_t len, struct slice *sl)
{
	const char	*colon;
	size_t		 left;

	if (len == 0)
		return -1;
	sl->set = 1;
	if ((colon = memchr(s, ':', len)) == NULL) {
		if (parse_offset(s, len, &sl->begin) == -1)
			return -1;
		sl->end = sl->begin;
		return 0;
	}
	left = colon - s;
	sl->begin = 0;
	sl->end = SLICE_TO_END;
	if (left > 0 && parse_offset(s, left, &sl->begin) == -1)
		return -1;
	if (len - left - 1 > 0 &&
	    parse_offset(colon + 1, len - left - 1, &sl->end) == -1)
		return -1;
	return 0;
}

/* "name[slice]:mods", the slice and the modifiers both optional. */
static int
parse_token(const char *s, size_t len, struct token *t, const char **err)
{
	const char	*end = s + len, *p, *close;

	memset(t, 0, sizeof(*t));
	t->name = s;
	for (p = s; p < end && *p != '[' && *p != ':'; p++)
		;
	t->namelen = p - s;
	if (p < end && *p == '[') {
		if ((close = memchr(p, ']', end - p)) == NULL ||
		    parse_slice(p + 1, close - p - 1, &t->slice) == -1) {
			*err = E_SLICE;
			return -1;
		}
		p = close + 1;
		if (p < end && *p != ':') {
			*err = E_SLICE;
			return -1;
		}
	}
	if (p < end) {
		t->mods = p + 1;
		t->modslen = end - t->mods;
	}
	return 0;
}

static const struct token_def *
token_lookup(const char *name, size_t len)
{
	size_t	 i;

	for (i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++)
		if (strncasecmp(tokens[i].name, name, len) == 0 &&
		    tokens[i].name[len] == '\0')
			return &tokens[i];
	return NULL;
}

/* A fresh copy of the whole address or of one side of it. */
static char *
address_part(const char *addr, enum addr_part part, const char **err)
{
	char	 user[SMTPD_MAXADDR], domain[SMTPD_MAXADDR];

	/* The null sender "<>" has empty parts, as in OpenSMTPD. */
	if (part == PART_ALL || addr[0] == '\0')
		return xstrdup(addr);
	if (addr_split(addr, user, sizeof(user), domain,
	    sizeof(domain)) == -1) {
		*err = E_ADDRESS;
		return NULL;
	}
	return xstrdup(part == PART_USER ? user : domain);
}

static void
uppercase(char *s)
{
	for (; *s; s++)
		*s = toupper((unsigned char)*s);
}

/* "User+Tag@Example.org" -> "User@Example.org"; "user+tag" -> "user". */
static void
strip_subaddress(char *v, char delim)
{
	char	*at = strrchr(v, '@'), *tag;
	size_t	 locallen = at != NULL ? (size_t)(at - v) : strlen(v);

	if ((tag = memchr(v, delim, locallen)) == NULL)
		return;
	if (at == NULL)
		*tag = '\0';
	else
		memmove(tag, at, strlen(at) + 1);
}

/* Applies "lowercase|strip|..." to v in place; raw is only a flag. */
static int
apply_modifiers(char *v, const struct token *t, char delim, int *raw,
    const char **err)
{
	const char	*p = t->mods, *end = t->mods + t->modslen, *bar;
	size_t		 n;

	/* Callers that zero the context still get the documented '+'. */
	if (delim == '\0')
		delim = DEFAULT_SUBADDR_DELIM;
	for (;;) {
		if ((bar = memchr(p, '|', end - p)) == NULL)
			bar = end;
		n = bar - p;
#define MOD(s)	(n == sizeof(s) - 1 && strncasecmp(p, s, n) == 0)
		if (MOD("lowercase"))
			lowercase(v);
		else if (MOD("uppercase"))
			uppercase(v);
		else if (MOD("strip"))
			strip_subaddress(v, delim);
		else if (MOD("raw"))
			*raw = 1;
		else {
			*err = E_MODIFIER;
			return -1;
		}
#undef MOD
		if (bar == end)
			return 0;
		p = bar + 1;
	}
}

/* Neutralises shell metacharacters; refuses directory climbing. */
static int
sanitise(char *v, const char **err)
{
	char	*p;

	for (p = v; *p; p++)
		if (strchr(EXPAND_ESCAPE, *p) != NULL)
			*p = ':';
	if (strcmp(v, ".") == 0 || strstr(v, "..") != NULL) {
		*err = E_UNSAFE;
		return -1;
	}
	return 0;
}

/* Resolves the slice against v into an offset and a length. */
static int
apply_slice(const char *v, const struct slice *sl, size_t *off, size_t *n,
    const char **err)
{
	long	 len = (long)strlen(v), b = sl->begin, e = sl->end;

	*off = 0;
	*n = (size_t)len;
	if (!sl->set || len == 0)
		return 0;
	if (b >= len)
		goto range;
	if (e >= len)
		e = len - 1;
	if (b < 0)
		b += len;
	if (e < 0)
		e += len - 1;
	if (b < 0 || e < 0 || e < b)
		goto range;
	*off = (size_t)b;
	*n = (size_t)(e - b + 1);
	return 0;
range:
	*err = E_RANGE;
	return -1;
}

/* Expands the text between "%{" and "}" and appends the result. */
static int
expand_token(const char *s, size_t len, const struct expand_ctx *ctx,
    char *out, size_t outlen, size_t *pos, const char **err)
{
	const struct token_def	*def;
	struct token		 t;
	const char		*field;
	char			*v;
	size_t			 off, n;
	int			 raw = 0, rc = -1;

	if (parse_token(s, len, &t, err) == -1)
		return -1;
	if ((def = token_lookup(t.name, t.namelen)) == NULL) {
		*err = E_TOKEN;
		return -1;
	}
	field = *(const char *const *)((const char *)ctx + def->field);
	if (field == NULL) {
		*err = def->missing;
		return -1;
	}
	if ((v = address_part(field, def->part, err)) == NULL)
		return -1;
	if (t.mods != NULL &&
	    apply_modifiers(v, &t, ctx->subaddr_delim, &raw, err) == -1)
		goto done;
	if (def->sanitise && !raw && sanitise(v, err) == -1)
		goto done;
	if (apply_slice(v, &t.slice, &off, &n, err) == -1)
		goto done;
	rc = append(out, outlen, pos, v + off, n, err);
done:
	free(v);
	return rc;
}

/* Everything after a possible leading "~/". */
static int
expand_body(const char *p, const struct expand_ctx *ctx, char *out,
    size_t outlen, size_t *pos, const char **err)
{
	const char	*end;
	size_t		 n;

	while (*p != '\0') {
		if ((n = strcspn(p, "%")) > 0) {
			if (append(out, outlen, pos, p, n, err) == -1)
				return -1;
			p += n;
			continue;
		}
		if (p[1] != '{') {
			/* "%%" is one '%'; a '%' not opening "%{" is itself. */
			if (append(out, outlen, pos, "%", 1, err) == -1)
				return -1;
			p += p[1] == '%' ? 2 : 1;
			continue;
		}
		if ((end = strchr(p + 2, '}')) == NULL) {
			*err = E_UNTERMINATED;
			return -1;
		}
		if (expand_token(p + 2, end - p - 2, ctx, out, outlen, pos,
		    err) == -1)
			return -1;
		p = end + 1;
	}
	return 0;
}

int
expand_format(const char *in, const struct expand_ctx *ctx, char *out,
    size_t outlen, const char **err)
{
	size_t	 pos = 0;

	if (outlen == 0) {
		*err = E_TOOLONG;
		return -1;
	}
	out[0] = '\0';
	if (strncmp(in, "~/", 2) == 0) {
		if (ctx->directory == NULL) {
			*err = E_HOME;
			return -1;
		}
		if (append(out, outlen, &pos, ctx->directory,
		    strlen(ctx->directory), err) == -1 ||
		    append(out, outlen, &pos, "/", 1, err) == -1)
			goto fail;
		in += 2;
	}
	if (expand_body(in, ctx, out, outlen, &pos, err) == -1)
		goto fail;
	return 0;
fail:
	out[0] = '\0';
	return -1;
}
