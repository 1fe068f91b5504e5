/*
 * password.c - crypt(3) password hashes: checking a password against the
 * hash in a credentials table or the shadow file, and making new hashes
 * for `smtpctl encrypt`.  Any scheme libcrypt knows is accepted: bcrypt
 * ($2b$), SHA-512 ($6$), yescrypt ($y$) ...; new hashes are bcrypt.
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"

/* 2^10 rounds: about 0.1 s per check on a current core, as OpenSMTPD. */
#define BCRYPT_COST	10

/* Differs in time only with the lengths, never with the contents. */
static int
same_string(const char *a, const char *b)
{
	size_t		 la = strlen(a), lb = strlen(b), i;
	unsigned char	 d = la != lb;

	for (i = 0; i < la && i < lb; i++)
		d |= (unsigned char)a[i] ^ (unsigned char)b[i];
	return d == 0;
}

/*
 * 1 when pass matches the crypt(3) hash, 0 when not (or the account is
 * locked: "*", "!..." or an empty hash never matches), -1 when the hash
 * is of no scheme libcrypt knows.
 */
int
password_check(const char *pass, const char *hash)
{
	struct crypt_data	*cd;
	const char		*out;
	int			 r;

	if (hash[0] == '\0' || hash[0] == '*' || hash[0] == '!')
		return 0;
	cd = xcalloc(1, sizeof(*cd));
	out = crypt_r(pass, hash, cd);
	if (out == NULL || out[0] == '*')
		r = -1;
	else
		r = same_string(out, hash);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return r;
}

/* A new bcrypt hash of pass (smtpctl encrypt); NULL on failure. */
char *
password_hash(const char *pass)
{
	struct crypt_data	*cd = xcalloc(1, sizeof(*cd));
	char			 salt[CRYPT_GENSALT_OUTPUT_SIZE];
	const char		*out;
	char			*hash = NULL;

	if (crypt_gensalt_rn("$2b$", BCRYPT_COST, NULL, 0, salt,
	    sizeof(salt)) != NULL &&
	    (out = crypt_r(pass, salt, cd)) != NULL && out[0] != '*')
		hash = xstrdup(out);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return hash;
}
