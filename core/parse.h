/*
 * parse.h - shared by the smtpd.conf reader's files only: parse.c (lexer,
 * macros, files, top-level directives, listeners), parse_rule.c (action,
 * match, filter), parse_legacy.c (the pre-6.4 grammar) and config.c.
 */
#ifndef PARSE_H
#define PARSE_H

#include "smtpd.h"

enum tok_type {
	T_ERR,			/* after an error: stops every rule */
	T_EOF,
	T_NL,
	T_WORD,			/* bare word or quoted string */
	T_LBRACE,
	T_RBRACE,
	T_LT,
	T_GT,
	T_BANG,
	T_EQ,
	T_COMMA,
};

struct token {
	enum tok_type	 type;
	char		*text;		/* T_WORD only */
	int		 quoted;	/* quoted words are never keywords */
	int		 line;
};

struct lexer;
struct macrodef;

/* What a name read before the end of the file must resolve to. */
enum ref_kind {
	REF_TABLE,		/* slot: struct table ** */
	REF_ACTION,		/* slot: struct action ** */
	REF_PKI,		/* slot unused: the name must exist */
	REF_CA,
	REF_FILTER,
	REF_PROC,
	REF_WRAPPER,
};

struct ref {
	enum ref_kind	 kind;
	char		*name;
	char		*file;
	int		 line;
	void		*slot;
};

struct parser {
	struct config	*conf;
	struct lexer	*lx;		/* innermost file */
	int		 depth;		/* include nesting */
	int		 failed;
	unsigned int	 nanon;		/* anonymous tables/filters made */
	struct macrodef	*macros;
	size_t		 nmacros;
	struct ref	*refs;
	size_t		 nrefs;
	/* Files already warned about as pre-6.4 grammar. */
	char		**legacy_files;
	size_t		 nlegacy_files;
	unsigned int	 nlegacy_actions;
	/* Old `from local` rules: they also took authenticated clients. */
	struct rule	**legacy_local;
	size_t		 nlegacy_local;
};

/* parse.c: tokens */
const struct token *cf_peek(struct parser *, size_t n);
const struct token *cf_take(struct parser *);
int	 cf_is_kw(const struct token *, const char *kw);
int	 cf_is_eol(const struct token *);
int	 cf_is_reserved(const char *);
int	 cf_in_list(const char *, const char *const *list, size_t n);
#define CF_IN_LIST(s, a)	cf_in_list((s), (a), sizeof(a) / sizeof((a)[0]))
int	 cf_line(const struct parser *);	/* line of the last token */
const char *cf_last(const struct parser *);	/* text of the last token */

/* parse.c: errors; all return -1 */
int	 cf_err(struct parser *, int line, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
int	 cf_err_at(struct parser *, const char *file, int line,
	    const char *, ...) __attribute__((format(printf, 4, 5)));
int	 cf_unexpected(struct parser *, const struct token *, const char *what);
int	 cf_twice(struct parser *, const char *option);
void	 cf_warn(struct parser *, int line, const char *, ...)
	    __attribute__((format(printf, 3, 4)));

/* parse.c: values */
int	 cf_word(struct parser *, const char *what, char **out);
int	 cf_name(struct parser *, const char *what, char **out);
int	 cf_eol(struct parser *);
int	 cf_abspath(struct parser *, const char *what, char **out);
int	 cf_count(struct parser *, const char *what, size_t min, size_t max,
	    size_t *out);
int	 cf_duration(struct parser *, const char *what, uint32_t *out);
int	 cf_size(struct parser *, size_t *out);
int	 cf_string_opt(struct parser *, const char *opt, const char *what,
	    char **slot);
char	*cf_here(const struct parser *);
void	 cf_ref(struct parser *, enum ref_kind, const char *name, int line,
	    void *slot);
/* <name> or a literal (an anonymous one-value table). */
int	 cf_table_arg(struct parser *, const char *what, struct table **);
int	 cf_table_ref(struct parser *, struct table **);
struct table *cf_table_literal(struct parser *, const char *value, int line);
/* One warning per file: "this file uses the pre-6.4 grammar". */
void	 cf_legacy(struct parser *, int line);

/* Resolves (and forgets) the names read since refs[mark]. */
int	 cf_resolve_from(struct parser *, size_t mark);
/* What may follow a proc or proc-exec command. */
struct proc_params {
	char		**user;
	char		**group;
	char		**chroot;
	char		**protocol;
	uint32_t	 *timeout;
};
int	 cf_proc_params(struct parser *, const struct proc_params *);
int	 cf_filter_protocol(struct parser *, char **);
int	 cf_warn_intervals(struct parser *);

/* parse.c: directives other files call */
int	 cf_listen_options(struct parser *, struct listen_conf *, int legacy);
int	 cf_listen_finish(struct parser *, struct listen_conf *);

/* parse_rule.c */
int	 parse_action(struct parser *);
int	 parse_match(struct parser *);
int	 parse_filter(struct parser *);
int	 cf_action_option(struct parser *, struct action *, const char *opt,
	    int *handled);
int	 cf_action_check(struct parser *, struct action *);
int	 cf_method_args(struct parser *, struct action *, const char *stop);
struct action *cf_action_new(struct parser *, char *name, int line);
struct rule *cf_rule_new(struct parser *, int line);
int	 cf_check_rules(struct parser *);

/* parse_legacy.c */
int	 parse_legacy_accept(struct parser *, int reject);
int	 parse_legacy_expire(struct parser *);
int	 parse_legacy_limit(struct parser *);
int	 parse_legacy_bounce_warn(struct parser *);
void	 cf_legacy_finish(struct parser *);

/* config.c */
struct config *config_new(void);
struct table  *config_table_find(const struct config *, const char *);
struct action *config_action_find(const struct config *, const char *);
struct pki    *config_pki_find(const struct config *, const char *);
struct ca     *config_ca_find(const struct config *, const char *);
struct filter *config_filter_find(const struct config *, const char *);
struct proc   *config_proc_find(const struct config *, const char *);
int	 action_equal(const struct action *, const struct action *);
void	 action_free(struct action *);

#endif /* PARSE_H */
