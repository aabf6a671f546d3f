/*
 * test_common.c - the error chain, strict parsing, hex, atomic files, agents.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "firn_common.h"

static void
test_err_chain(void **state)
{
	(void)state;
	firn_err_clear();
	assert_string_equal(firn_err_msg(), "");
	assert_int_equal(firn_err_set(-ENOENT, "open %s", "x.seg"), -ENOENT);
	assert_int_equal(firn_err_wrap(-EIO, "recover shard %u", 3), -EIO);
	assert_string_equal(firn_err_msg(), "open x.seg\n  in: recover shard 3");
	assert_int_equal(firn_err_code(), -ENOENT);
	firn_err_clear();
	/* wrap with nothing set starts the chain */
	firn_err_wrap(-EINVAL, "only");
	assert_string_equal(firn_err_msg(), "only");
}

static void
test_err_overflow(void **state)
{
	char big[4000];

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	firn_err_set(-E2BIG, "%s", big);
	firn_err_wrap(-E2BIG, "%s", big);
	assert_true(strlen(firn_err_msg()) < 1024);
}

static void
test_parse(void **state)
{
	uint64_t u;
	int64_t i;
	bool b;

	(void)state;
	assert_int_equal(firn_parse_u64("18446744073709551615", &u), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(firn_parse_u64("18446744073709551616", &u), -ERANGE);
	assert_int_equal(firn_parse_u64("-1", &u), -EINVAL);
	assert_int_equal(firn_parse_u64("12x", &u), -EINVAL);
	assert_int_equal(firn_parse_u64("", &u), -EINVAL);
	assert_int_equal(firn_parse_u64(" 1", &u), -EINVAL);
	assert_int_equal(firn_parse_i64("-42", &i), 0);
	assert_int_equal(i, -42);
	assert_int_equal(firn_parse_size("64M", &u), 0);
	assert_true(u == 64ull << 20);
	assert_int_equal(firn_parse_size("2GiB", &u), 0);
	assert_true(u == 2ull << 30);
	assert_int_equal(firn_parse_size("4096", &u), 0);
	assert_true(u == 4096);
	assert_int_equal(firn_parse_size("1X", &u), -EINVAL);
	assert_int_equal(firn_parse_size("99999999999T", &u), -ERANGE);
	assert_int_equal(firn_parse_bool("On", &b), 0);
	assert_true(b);
	assert_int_equal(firn_parse_bool("no", &b), 0);
	assert_false(b);
	assert_int_equal(firn_parse_bool("maybe", &b), -EINVAL);
}

static void
test_hex(void **state)
{
	uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
	char hex[9];

	(void)state;
	firn_hex_encode(in, 4, hex);
	assert_string_equal(hex, "00ab7fff");
	assert_int_equal(firn_hex_decode("00AB7fff", out, 4), 0);
	assert_memory_equal(in, out, 4);
	assert_int_equal(firn_hex_decode("00ab7ff", out, 4), -EINVAL);
	assert_int_equal(firn_hex_decode("00ab7fgf", out, 4), -EINVAL);
}

static void
test_files(void **state)
{
	char dir[] = "/tmp/firn-common-XXXXXX", path[256], sub[256];
	char *buf;
	size_t len;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	assert_int_equal(firn_mkdir_p(path, 0755), 0);
	assert_int_equal(firn_mkdir_p(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/a/f.json", dir);
	assert_int_equal(firn_file_write_atomic(path, "one", 3, 0644), 0);
	assert_int_equal(firn_file_write_atomic(path, "second", 6, 0644), 0);
	assert_int_equal(firn_file_read_all(path, &buf, &len), 0);
	assert_int_equal(len, 6);
	assert_string_equal(buf, "second");
	free(buf);
	snprintf(sub, sizeof(sub), "%s/a/f.json.tmp", dir);
	assert_int_equal(access(sub, F_OK), -1); /* no temp file left behind */
	snprintf(path, sizeof(path), "%s/missing", dir);
	assert_int_equal(firn_file_read_all(path, &buf, &len), -ENOENT);
	assert_non_null(strstr(firn_err_msg(), "missing"));
	assert_int_equal(firn_rm_rf(dir), 0);
	assert_int_equal(access(dir, F_OK), -1);
}

struct counter {
	int calls;
	int stop_at;
	int closed;
};

static int
count_work(void *arg)
{
	struct counter *c = arg;

	c->calls++;
	if (c->stop_at && c->calls >= c->stop_at)
		return -ECANCELED;
	return c->calls % 3 == 0 ? 1 : 0;
}

static void
count_close(void *arg)
{
	((struct counter *)arg)->closed = 1;
}

static void
test_agent(void **state)
{
	struct counter c = {0, 0, 0};
	struct firn_agent a = {"test-agent", count_work, count_close, &c, 100};
	struct firn_agent_runner *r;

	(void)state;
	r = firn_agent_runner_start(&a);
	assert_non_null(r);
	usleep(20000);
	firn_agent_runner_wake(r);
	assert_int_equal(firn_agent_runner_stop(r), 0);
	assert_true(c.calls > 0);
	assert_int_equal(c.closed, 1);

	/* An agent that fails stops itself and reports its rc. */
	c = (struct counter){0, 5, 0};
	r = firn_agent_runner_start(&a);
	assert_non_null(r);
	usleep(20000);
	assert_int_equal(firn_agent_runner_stop(r), -ECANCELED);
	assert_int_equal(c.calls, 5);
	assert_int_equal(c.closed, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_err_chain), cmocka_unit_test(test_err_overflow),
	        cmocka_unit_test(test_parse),     cmocka_unit_test(test_hex),
	        cmocka_unit_test(test_files),     cmocka_unit_test(test_agent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
