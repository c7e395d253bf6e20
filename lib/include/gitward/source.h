/* The Git source: a bare cache under the state dir, fetched (never re-cloned),
 * refs resolved to commits, manifests read straight from tree objects. */
#ifndef GITWARD_SOURCE_H
#define GITWARD_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gitward/manifest.h"
#include "gitward/util.h"

struct gw_source;

/* How to reach the remote: trust, credentials and bounds. Strings are
 * borrowed for the life of the source. */
struct gw_source_opts {
	const char *ca_file; /* PEM bundle replacing the system CA store */
	bool insecure_skip_tls_verify; /* warned about on every fetch */
	const char *known_hosts; /* default ~/.ssh/known_hosts */
	const char *ssh_key; /* private key; default $GITWARD_SSH_KEY, ssh-agent, ~/.ssh/id_* */
	const char *username; /* default: the URL's, $GITWARD_GIT_USERNAME */
	const char *password_file; /* default $GITWARD_GIT_PASSWORD */
	const char *password; /* from the URL; wins over the file */
	int64_t connect_timeout_ms; /* until the server first answers */
	int64_t idle_timeout_ms; /* then, the longest time without progress */
	int64_t deadline_ms; /* the longest a whole fetch takes, progress or not (0: 5 minutes) */
	const struct gw_cancel *cancel; /* a stop request ends the fetch at once */
	/* Never write under cache_dir (a dry-run beside the agent, which alone
	 * writes the cache): fetch into a private temporary repository that
	 * borrows the cache's objects (alternates) and its refs (for the
	 * negotiation), removed by gw_source_free. */
	bool read_only;
};

/* Prepare the bare cache at cache_dir for url (opened if it exists; made by
 * the first fetch otherwise). A relative local path is made absolute. opts
 * may be NULL (defaults). */
int gw_source_open(struct gw_source **out, const char *cache_dir, const char *url, const struct gw_source_opts *opts,
		   struct gw_error *err);
/* Fetch branches and tags from the remote and remember its default branch.
 * The fetch runs in a child process bounded by the timeouts of opts: a
 * server that stops answering ends the fetch with an error, and the cache
 * is left as before it. A first clone is made aside and moved into place
 * only when complete, so a failed one leaves nothing behind. */
int gw_source_fetch(struct gw_source *src, struct gw_error *err);
/* The fetch child, `gitward __fetch`: its job (JSON) on stdin, its reports
 * on fd 3. Never returns. */
int gw_source_fetch_main(void);
/* Resolve ref (NULL: the remote's default branch) to a commit id. *out_ref is
 * the name used, e.g. "main" (caller frees). */
int gw_source_resolve(char out_commit[41], char **out_ref, struct gw_source *src, const char *ref,
		      struct gw_error *err);
/* Does ref (as given to gw_source_resolve; NULL: the default branch) name
 * a branch of the cache, rather than a tag or a commit id? */
bool gw_source_ref_is_branch(struct gw_source *src, const char *ref);
/* *out: commit descends from ancestor (or is it). -ENOENT: ancestor is not
 * in the cache (a cache made anew since), so nothing can be told. */
int gw_source_descends(bool *out, struct gw_source *src, const char *commit, const char *ancestor,
		       struct gw_error *err);
/* Read every manifest under paths (NULL/empty: repo root) of commit into set.
 * Problems with the manifests go to set->diags; a failure to read the
 * repository is returned. */
int gw_source_read_manifests(struct gw_manifest_set *set, struct gw_source *src, const char *commit,
			     const char *const *paths, size_t npaths, struct gw_error *err);

/* The keys a commit may be signed with (--verify-signatures). */
struct gw_verify_opts {
	const char *allowed_signers; /* SSH: a file in the format of gpg.ssh.allowedSignersFile, or NULL */
	const char *gpg_keyring; /* OpenPGP: a GnuPG home directory or a file of public keys, or NULL */
	const char *state_dir; /* where ssh-keygen's signature file is written for a moment */
	/* the private GnuPG home a --gpg-keyring file is imported into (the
	 * state layer names it: gw_path_gnupg) */
	const char *gnupg_home;
};
/* Check that commit carries a good signature by an allowed key. Only the
 * commit itself is checked, not its ancestors. -EPERM: the commit is refused
 * (unsigned, signed by a key not allowed, a bad signature) and err says which,
 * naming the commit; another negative errno: the check itself could not run
 * (ssh-keygen or gpg missing, an unreadable key file). */
int gw_source_verify_commit(struct gw_source *src, const char *commit, const struct gw_verify_opts *opts,
			    struct gw_error *err);
void gw_source_free(struct gw_source *src);
/* read_only: the private temporary directory (for files a check needs, such
 * as a signature or a GnuPG home), else NULL. */
const char *gw_source_scratch_dir(const struct gw_source *src);
/* The repository url names, as recorded to tell state dirs apart (caller
 * frees): no user info for HTTP(S) and never a password; a local path or
 * file:// URL absolute, symlinks resolved, "DIR/.git" of a work tree as DIR;
 * scheme and host in lower case, default ports dropped; no trailing slash,
 * no ".git" suffix on a remote path. Two spellings of one repository give
 * the same string. */
char *gw_source_canonical_url(const char *url);
/* The commit that id (a full id, or an unambiguous prefix of 7 to 40 hex
 * digits) names in the Git cache at cache_dir, without fetching: -ENOENT
 * when the cache has no such commit, -EINVAL for a bad or ambiguous id (err
 * says which). */
int gw_source_find_commit(char out[41], const char *cache_dir, const char *id, struct gw_error *err);
/* The version of the libgit2 linked at run time, e.g. "1.5.1". */
void gw_source_libgit2_version(char *buf, size_t size);

#endif
