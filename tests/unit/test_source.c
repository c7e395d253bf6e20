/* The repository's identity: two spellings of one repository give one
 * string, and a password never survives. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gitward/source.h"

static void expect_canonical(const char *url, const char *want)
{
	char *got = gw_source_canonical_url(url);
	if (strcmp(got, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", url, got, want);
	free(got);
}

static void test_remote_urls_are_normalised(void **state)
{
	(void)state;
	expect_canonical("https://github.com/Team/Repo.git", "https://github.com/Team/Repo");
	expect_canonical("HTTPS://GitHub.COM:443/Team/Repo/", "https://github.com/Team/Repo");
	expect_canonical("https://u:SECRET@git.example.com/x.git/", "https://git.example.com/x");
	expect_canonical("https://u@git.example.com:8443/x", "https://git.example.com:8443/x");
	expect_canonical("http://git.example.com:80/x", "http://git.example.com/x");
	expect_canonical("ssh://git:pw@Host:22/srv/x.git", "ssh://git@host/srv/x");
	expect_canonical("ssh://git@host:2222/srv/x", "ssh://git@host:2222/srv/x");
	expect_canonical("ssh://git@[::1]:2222/x", "ssh://git@[::1]:2222/x");
	expect_canonical("git@GitHub.com:team/repo.git", "git@github.com:team/repo");
	expect_canonical("git@github.com:team/repo/", "git@github.com:team/repo");
	/* a query may carry a token: never recorded */
	expect_canonical("https://h/x.git?access_token=T0K", "https://h/x");
	expect_canonical("https://h/x/#frag", "https://h/x");
}

static void test_local_paths_are_absolute(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-src-XXXXXX", path[256], want[256], cwd[4096];
	assert_non_null(mkdtemp(dir));
	assert_non_null(realpath(dir, want));
	snprintf(path, sizeof(path), "%s/", dir);
	expect_canonical(path, want);
	snprintf(path, sizeof(path), "file://%s//", dir);
	expect_canonical(path, want);
	/* relative: from the cwd */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	expect_canonical(".", want);
	expect_canonical("./", want);
	snprintf(path, sizeof(path), "%s/missing", want);
	expect_canonical("missing/", path);
	/* the .git folder of a work tree names the work tree; a bare
	 * repository named x.git is not x */
	assert_int_equal(mkdir(".git", 0700), 0);
	char plain[300];
	snprintf(path, sizeof(path), "%s/.git", dir);
	snprintf(plain, sizeof(plain), "%s/.git", want);
	expect_canonical(path, plain); /* no HEAD: an ordinary folder */
	FILE *f = fopen(".git/HEAD", "w");
	assert_non_null(f);
	fclose(f);
	expect_canonical(path, want);
	expect_canonical(".git/", want);
	snprintf(path, sizeof(path), "%s/x.git", want);
	expect_canonical("x.git", path);
	unlink(".git/HEAD");
	rmdir(".git");
	assert_int_equal(chdir(cwd), 0);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_remote_urls_are_normalised),
		cmocka_unit_test(test_local_paths_are_absolute),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
