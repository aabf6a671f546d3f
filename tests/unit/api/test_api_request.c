/*
 * test_api_request.c - request parsing and validation (lib/api/request.c).
 *
 * Each case feeds a JSON body to api_req_parse() for one operation and checks
 * the error tier (SerializationException / ValidationException /
 * InvalidArgumentException), the AWS wording where clients or people match on
 * it, and, for valid requests, the typed fields ops.c relies on.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_internal.h"

static struct api_req req;
static struct api_error err;

static int
parse(enum api_op op, const char *body)
{
	api_req_free(&req);
	return api_req_parse(op, body, strlen(body), &req, &err);
}

static void
expect(enum api_op op, const char *body, enum api_err code, const char *needle)
{
	int rc = parse(op, body);

	if (rc != -1 || err.code != code || (needle && strstr(err.msg, needle) == NULL))
		fail_msg("%s %s: rc %d, got %s '%s', want %s containing '%s'", api_op_name(op),
		         body, rc, api_err_type(err.code), err.msg, api_err_type(code),
		         needle ? needle : "");
}

static void
expect_ok(enum api_op op, const char *body)
{
	if (parse(op, body) != 0)
		fail_msg("%s %s: %s %s", api_op_name(op), body, api_err_type(err.code), err.msg);
}

static int
teardown(void **state)
{
	(void)state;
	api_req_free(&req);
	return 0;
}

static void
test_serialization(void **state)
{
	(void)state;
	expect(OP_LIST_STREAMS, "{", API_E_SERIALIZATION, "Malformed JSON");
	expect(OP_LIST_STREAMS, "[1,2]", API_E_SERIALIZATION, "JSON object");
	expect(OP_LIST_STREAMS, "\"x\"", API_E_SERIALIZATION, NULL);
	expect(OP_LIST_STREAMS, "{\"Limit\":1,\"Limit\":2}", API_E_SERIALIZATION, NULL);
	expect(OP_CREATE_STREAM, "{\"StreamName\":\"s\",\"ShardCount\":\"2\"}", API_E_SERIALIZATION,
	       "ShardCount");
	expect(OP_CREATE_STREAM, "{\"StreamName\":\"s\",\"ShardCount\":2.5}", API_E_SERIALIZATION,
	       NULL);
	expect(OP_CREATE_STREAM, "{\"StreamName\":5,\"ShardCount\":2}", API_E_SERIALIZATION,
	       "StreamName");
	expect(OP_PUT_RECORD, "{\"StreamName\":\"s\",\"PartitionKey\":\"k\",\"Data\":\"@@@@\"}",
	       API_E_SERIALIZATION, "Base64");
	expect(OP_PUT_RECORDS, "{\"StreamName\":\"s\",\"Records\":{}}", API_E_SERIALIZATION,
	       "Records");
	expect(OP_PUT_RECORDS, "{\"StreamName\":\"s\",\"Records\":[1]}", API_E_SERIALIZATION, NULL);
	expect(OP_ADD_TAGS, "{\"StreamName\":\"s\",\"Tags\":{\"a\":1}}", API_E_SERIALIZATION, NULL);
	expect(OP_GET_SHARD_ITERATOR,
	       "{\"StreamName\":\"s\",\"ShardId\":\"shardId-0\",\"ShardIteratorType\":"
	       "\"AT_TIMESTAMP\",\"Timestamp\":\"yesterday\"}",
	       API_E_SERIALIZATION, "Timestamp");
	/* An empty body is an empty structure. */
	expect_ok(OP_DESCRIBE_LIMITS, "");
	expect(OP_CREATE_STREAM, "", API_E_VALIDATION, "Value null at 'streamName'");
}

static void
test_validation_messages(void **state)
{
	(void)state;
	expect(OP_CREATE_STREAM, "{\"StreamName\":\"\",\"ShardCount\":1}", API_E_VALIDATION,
	       "1 validation error detected: Value '' at 'streamName' failed to satisfy "
	       "constraint: Member must have length greater than or equal to 1");
	expect(OP_CREATE_STREAM, "{\"StreamName\":\"bad name\",\"ShardCount\":1}", API_E_VALIDATION,
	       "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
	/* Several problems are reported together, joined by "; ". */
	expect(OP_CREATE_STREAM, "{\"StreamName\":\"bad name\",\"ShardCount\":0}", API_E_VALIDATION,
	       "2 validation errors detected: ");
	assert_non_null(strstr(err.msg, "; Value '0' at 'shardCount' failed to satisfy "
	                                "constraint: Member must have value greater than or equal "
	                                "to 1"));
	expect(OP_DESCRIBE_STREAM, "{\"StreamName\":\"s\",\"Limit\":10001}", API_E_VALIDATION,
	       "less than or equal to 10000");
	expect(OP_GET_RECORDS, "{\"ShardIterator\":\"x\",\"Limit\":0}", API_E_VALIDATION,
	       "at 'limit'");
	expect(OP_GET_RECORDS, "{}", API_E_VALIDATION, "Value null at 'shardIterator'");
	expect(OP_LIST_TAGS, "{\"StreamName\":\"s\",\"Limit\":51}", API_E_VALIDATION,
	       "less than or equal to 50");
	expect(OP_GET_SHARD_ITERATOR,
	       "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\",\"ShardIteratorType\":"
	       "\"OLDEST\"}",
	       API_E_VALIDATION,
	       "Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, "
	       "TRIM_HORIZON, LATEST, AT_TIMESTAMP]");
	expect(OP_GET_SHARD_ITERATOR, "{\"StreamName\":\"s\",\"ShardIteratorType\":\"LATEST\"}",
	       API_E_VALIDATION, "Value null at 'shardId'");
	expect(OP_UPDATE_SHARD_COUNT,
	       "{\"StreamName\":\"s\",\"TargetShardCount\":2,\"ScalingType\":\"BY_HAND\"}",
	       API_E_VALIDATION, "[UNIFORM_SCALING]");
	expect(OP_SPLIT_SHARD,
	       "{\"StreamName\":\"s\",\"ShardToSplit\":\"shardId-000000000000\","
	       "\"NewStartingHashKey\":\"-1\"}",
	       API_E_VALIDATION, "0|([1-9]\\d{0,38})");
	expect(OP_INCREASE_RETENTION, "{\"StreamName\":\"s\"}", API_E_VALIDATION,
	       "retentionPeriodHours");
	expect(OP_REMOVE_TAGS, "{\"StreamName\":\"s\",\"TagKeys\":[]}", API_E_VALIDATION,
	       "tagKeys");
	expect(OP_PUT_RECORD, "{\"PartitionKey\":\"k\",\"Data\":\"\"}", API_E_VALIDATION,
	       "Value null at 'streamName'");
}

static void
test_put_records_validation(void **state)
{
	const char *pre = "{\"StreamName\":\"s\",\"PartitionKey\":\"k\",\"Data\":\"";
	size_t pl = strlen(pre);
	char *big, *body;
	size_t i, n;

	(void)state;
	expect(OP_PUT_RECORDS, "{\"StreamName\":\"s\",\"Records\":[]}", API_E_VALIDATION,
	       "greater than or equal to 1");
	/* 501 entries. */
	body = malloc(64 * 1024);
	n = (size_t)snprintf(body, 64 * 1024, "{\"StreamName\":\"s\",\"Records\":[");
	for (i = 0; i < 501; i++)
		n += (size_t)snprintf(body + n, 64 * 1024 - n,
		                      "%s{\"Data\":\"\",\"PartitionKey\":\"k\"}", i ? "," : "");
	snprintf(body + n, 64 * 1024 - n, "]}");
	expect(OP_PUT_RECORDS, body, API_E_VALIDATION, "less than or equal to 500");
	free(body);
	/* Members are numbered from 1 in messages. */
	expect(OP_PUT_RECORDS,
	       "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"a\"},"
	       "{\"Data\":\"\"}]}",
	       API_E_VALIDATION, "Value null at 'records.2.member.partitionKey'");
	expect(OP_PUT_RECORDS,
	       "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"a\","
	       "\"ExplicitHashKey\":\"007\"}]}",
	       API_E_VALIDATION, "'records.1.member.explicitHashKey'");
	/* 2^128 matches the pattern but is out of range: InvalidArgumentException. */
	expect(OP_PUT_RECORD,
	       "{\"StreamName\":\"s\",\"Data\":\"\",\"PartitionKey\":\"k\",\"ExplicitHashKey\":"
	       "\"340282366920938463463374607431768211456\"}",
	       API_E_INVALID_ARGUMENT, "ExplicitHashKey must be in the range");
	/* Data over 1 MiB (decoded). */
	n = ((1u << 20) + 3) / 3 * 4;
	big = malloc(n + 128);
	memcpy(big, pre, pl);
	memset(big + pl, 'A', n);
	memcpy(big + pl + n, "\"}", 3);
	expect(OP_PUT_RECORD, big, API_E_VALIDATION, "less than or equal to 1048576");
	/* Exactly 1 MiB is fine: 349525 full quanta plus one byte ("AA=="). */
	n = (1u << 20) / 3 * 4 + 4;
	memset(big + pl, 'A', n);
	big[pl + n - 2] = '=';
	big[pl + n - 1] = '=';
	memcpy(big + pl + n, "\"}", 3);
	expect_ok(OP_PUT_RECORD, big);
	assert_int_equal(req.records[0].data_len, 1u << 20);
	free(big);
}

static void
test_partition_keys(void **state)
{
	char body[4096], key[1200];
	size_t i, n = 0;

	(void)state;
	/* 85 characters of 3-byte UTF-8 (255 bytes) are fine; 86 (258 bytes) are not:
	 * firn holds keys to 256 bytes where AWS counts 256 characters. */
	for (i = 0; i < 86; i++)
		n += (size_t)snprintf(key + n, sizeof(key) - n, "\xe2\x82\xac");
	snprintf(body, sizeof(body), "{\"StreamName\":\"s\",\"Data\":\"\",\"PartitionKey\":\"%s\"}",
	         key);
	expect(OP_PUT_RECORD, body, API_E_VALIDATION, "less than or equal to 256 bytes of UTF-8");
	key[255] = '\0';
	snprintf(body, sizeof(body), "{\"StreamName\":\"s\",\"Data\":\"\",\"PartitionKey\":\"%s\"}",
	         key);
	expect_ok(OP_PUT_RECORD, body);
	assert_int_equal(req.records[0].key_len, 255);
	/* 257 ASCII characters is not. */
	memset(key, 'k', 257);
	key[257] = '\0';
	snprintf(body, sizeof(body), "{\"StreamName\":\"s\",\"Data\":\"\",\"PartitionKey\":\"%s\"}",
	         key);
	expect(OP_PUT_RECORD, body, API_E_VALIDATION,
	       "at 'partitionKey' failed to satisfy constraint: Member must have length less "
	       "than or equal to 256");
	expect(OP_PUT_RECORD, "{\"StreamName\":\"s\",\"Data\":\"\",\"PartitionKey\":\"\"}",
	       API_E_VALIDATION, "greater than or equal to 1");
}

static void
test_valid_requests(void **state)
{
	(void)state;
	expect_ok(OP_CREATE_STREAM, "{\"StreamName\":\"a.b-c_9\",\"ShardCount\":7,\"Tags\":"
	                            "{\"team\":\"x\",\"env\":\"\"}}");
	assert_string_equal(req.stream, "a.b-c_9");
	assert_true(req.has_shard_count);
	assert_int_equal(req.shard_count, 7);
	assert_int_equal(req.ntags, 2);
	expect_ok(OP_CREATE_STREAM,
	          "{\"StreamName\":\"od\",\"StreamModeDetails\":{\"StreamMode\":\"ON_DEMAND\"}}");
	assert_true(req.on_demand);
	assert_false(req.has_shard_count);

	expect_ok(OP_PUT_RECORDS,
	          "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"aGVsbG8=\",\"PartitionKey\":"
	          "\"a\"},{\"Data\":\"\",\"PartitionKey\":\"bb\",\"ExplicitHashKey\":"
	          "\"340282366920938463463374607431768211455\"}]}");
	assert_int_equal(req.nrecords, 2);
	assert_int_equal(req.records[0].data_len, 5);
	assert_memory_equal(req.records[0].data, "hello", 5);
	assert_int_equal(req.records[1].data_len, 0);
	assert_true(req.records[1].has_ehk);
	assert_true(req.records[1].ehk.hi == UINT64_MAX && req.records[1].ehk.lo == UINT64_MAX);
	assert_int_equal(req.records_bytes, 5 + 1 + 2);

	expect_ok(OP_SPLIT_SHARD, "{\"StreamName\":\"s\",\"ShardToSplit\":\"shardId-000000000003\","
	                          "\"NewStartingHashKey\":\"18446744073709551616\"}");
	assert_true(req.new_start.hi == 1 && req.new_start.lo == 0);
	assert_string_equal(req.shard_a, "shardId-000000000003");

	expect_ok(
	        OP_GET_SHARD_ITERATOR,
	        "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\",\"ShardIteratorType\":"
	        "\"AT_TIMESTAMP\",\"Timestamp\":1690000000.123}");
	assert_int_equal(req.iter_type, ITER_AT_TIMESTAMP);
	assert_true(req.has_ts);
	assert_int_equal(req.ts_ms, 1690000000123ll);
	expect_ok(
	        OP_GET_SHARD_ITERATOR,
	        "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\",\"ShardIteratorType\":"
	        "\"AT_TIMESTAMP\",\"Timestamp\":\"2023-07-22T04:26:40.5Z\"}");
	assert_int_equal(req.ts_ms, 1690000000500ll);
	expect_ok(OP_LIST_SHARDS, "{\"StreamName\":\"s\",\"ShardFilter\":{\"Type\":"
	                          "\"FROM_TIMESTAMP\",\"Timestamp\":1690000000}}");
	assert_int_equal(req.filter, FILTER_FROM_TIMESTAMP);
	assert_int_equal(req.filter_ts_ms, 1690000000000ll);
	/* ListShards needs a stream unless a NextToken names it. */
	expect_ok(OP_LIST_SHARDS, "{\"NextToken\":\"abc\"}");
	expect(OP_LIST_SHARDS, "{}", API_E_VALIDATION, "streamName");
	expect_ok(OP_REMOVE_TAGS, "{\"StreamName\":\"s\",\"TagKeys\":[\"a\",\"b\"]}");
	assert_int_equal(req.nkeys, 2);
	assert_string_equal(req.tag_keys[1], "b");
	/* Unknown members are ignored, as AWS does. */
	expect_ok(OP_DESCRIBE_STREAM_SUMMARY, "{\"StreamName\":\"s\",\"StreamId\":\"x\"}");
}

static void
test_stream_arn(void **state)
{
	char name[FIRN_STREAM_NAME_MAX + 1], region[32];

	(void)state;
	expect_ok(OP_DESCRIBE_STREAM_SUMMARY,
	          "{\"StreamARN\":\"arn:aws:kinesis:eu-west-1:123456789012:stream/clicks\"}");
	assert_string_equal(req.stream, "clicks");
	assert_true(req.has_arn);
	/* Both given and consistent. */
	expect_ok(OP_PUT_RECORD, "{\"StreamName\":\"clicks\",\"StreamARN\":\"arn:aws:kinesis:us-"
	                         "east-1:000000000000:stream/clicks\",\"Data\":\"\","
	                         "\"PartitionKey\":\"k\"}");
	/* Both given and different. */
	expect(OP_PUT_RECORD,
	       "{\"StreamName\":\"other\",\"StreamARN\":\"arn:aws:kinesis:us-"
	       "east-1:000000000000:stream/clicks\",\"Data\":\"\","
	       "\"PartitionKey\":\"k\"}",
	       API_E_INVALID_ARGUMENT, NULL);
	expect(OP_DESCRIBE_STREAM_SUMMARY,
	       "{\"StreamARN\":\"arn:aws:kinesis:eu-west-1:1234:stream/clicks\"}", API_E_VALIDATION,
	       "streamARN");
	assert_int_equal(api_arn_parse("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/x.y",
	                               name, region, sizeof(region)),
	                 0);
	assert_string_equal(name, "x.y");
	assert_string_equal(region, "cn-north-1");
	assert_int_equal(api_arn_parse("arn:aws:s3:r:123456789012:stream/x", name, NULL, 0),
	                 -EINVAL);
	assert_int_equal(api_arn_parse("arn:aws:kinesis:r:123456789012:table/x", name, NULL, 0),
	                 -EINVAL);
	assert_int_equal(api_arn_parse("arn:aws:kinesis:r:123456789012:stream/", name, NULL, 0),
	                 -EINVAL);
	assert_int_equal(api_arn_parse("arn:aws:kinesis:r:123456789012", name, NULL, 0), -EINVAL);
}

static void
test_shard_ids_and_ops(void **state)
{
	char buf[API_SHARD_ID_LEN + 1];
	uint32_t idx;
	int op;

	(void)state;
	api_shard_id_format(7, buf);
	assert_string_equal(buf, "shardId-000000000007");
	assert_int_equal(api_shard_id_parse(buf, &idx), 0);
	assert_int_equal(idx, 7);
	assert_int_equal(api_shard_id_parse("shardId-1", &idx), 0);
	assert_int_equal(idx, 1);
	assert_int_equal(api_shard_id_parse("shardId-2147483647", &idx), 0);
	assert_int_equal(api_shard_id_parse("shardId-2147483648", &idx), -EINVAL);
	assert_int_equal(api_shard_id_parse("shardId-", &idx), -EINVAL);
	assert_int_equal(api_shard_id_parse("shardId-0000000000001", &idx), -EINVAL);
	assert_int_equal(api_shard_id_parse("shard-1", &idx), -EINVAL);
	assert_int_equal(api_shard_id_parse("shardId-1x", &idx), -EINVAL);
	for (op = 0; op < OP_COUNT; op++)
		assert_int_equal(api_op_lookup(api_op_name((enum api_op)op),
		                               strlen(api_op_name((enum api_op)op))),
		                 op);
	assert_int_equal(api_op_lookup("ListStreamConsumers", 19), -1);
	assert_int_equal(api_op_lookup("PutRecordsX", 11), -1);
	assert_int_equal(api_op_lookup("PutRecord", 8), -1);
}

static void
test_error_table(void **state)
{
	struct api_reply rep = {0};
	struct api_error e = {0};
	json_error_t je;
	json_t *j;

	(void)state;
	assert_int_equal(api_err_http(API_E_INTERNAL), 500);
	assert_int_equal(api_err_http(API_E_UNAVAILABLE), 503);
	assert_int_equal(api_err_http(API_E_TOO_LARGE), 413);
	assert_int_equal(api_err_http(API_E_NOT_FOUND), 400);
	assert_int_equal(api_err_http(API_E_INVALID_SIG), 400);
	assert_string_equal(api_err_type(API_E_THROUGHPUT),
	                    "ProvisionedThroughputExceededException");
	assert_string_equal(api_err_type(API_E_INTERNAL), "InternalFailure");
	api_fail(&e, API_E_NOT_FOUND, "Stream %s under account %s not found.", "x", "000000000000");
	api_reply_error(&rep, &e);
	assert_int_equal(rep.status, 400);
	j = json_loadb(rep.body, rep.len, 0, &je);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "__type")),
	                    "ResourceNotFoundException");
	assert_string_equal(json_string_value(json_object_get(j, "message")),
	                    "Stream x under account 000000000000 not found.");
	json_decref(j);
	free(rep.body);
}

/* The PutRecords fast path takes the common shapes and hands everything else on. */
static void
test_put_records_fast_path(void **state)
{
	static const char *const taken[] = {
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"aGk=\",\"PartitionKey\":\"k\"}]}",
	        " {\n\t\"Records\" : [ { \"PartitionKey\" : \"\xc3\xa9\" , \"Data\" : \"\" , "
	        "\"ExplicitHashKey\" : \"0\" } ] ,\r\n \"StreamName\" : \"a.b\" } ",
	};
	static const char *const passed_on[] = {
	        /* escapes, StreamARN, unknown or duplicate members, wrong types */
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"\\u00e9\"}]}",
	        "{\"StreamARN\":\"arn:aws:kinesis:r:123456789012:stream/s\",\"Records\":[{\"Data\":"
	        "\"\",\"PartitionKey\":\"k\"}]}",
	        "{\"StreamName\":\"s\",\"Extra\":1,\"Records\":[{\"Data\":\"\",\"PartitionKey\":"
	        "\"k\"}]}",
	        "{\"StreamName\":\"s\",\"StreamName\":\"t\",\"Records\":[{\"Data\":\"\","
	        "\"PartitionKey\":\"k\"}]}",
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\","
	        "\"Data\":\"\"}]}",
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":null,\"PartitionKey\":\"k\"}]}",
	        /* constraint violations: the general path words the error */
	        "{\"StreamName\":\"bad "
	        "name\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\"}]}",
	        "{\"StreamName\":\"s\",\"Records\":[]}",
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"\"}]}",
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"@\",\"PartitionKey\":\"k\"}]}",
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\","
	        "\"ExplicitHashKey\":\"340282366920938463463374607431768211456\"}]}",
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"\xff\"}]}",
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\"}]} x",
	        "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\"},]}",
	};
	struct api_req fast, slow;
	struct api_error e;
	unsigned i, k;

	(void)state;
	for (i = 0; i < FIRN_ARRAY_SIZE(taken); i++) {
		assert_int_equal(api_put_records_fast(taken[i], strlen(taken[i]), &fast), 1);
		assert_int_equal(
		        api_req_parse_json(OP_PUT_RECORDS, taken[i], strlen(taken[i]), &slow, &e),
		        0);
		assert_string_equal(fast.stream, slow.stream);
		assert_int_equal(fast.nrecords, slow.nrecords);
		assert_int_equal(fast.records_bytes, slow.records_bytes);
		for (k = 0; k < fast.nrecords; k++) {
			assert_int_equal(fast.records[k].key_len, slow.records[k].key_len);
			assert_memory_equal(fast.records[k].key, slow.records[k].key,
			                    fast.records[k].key_len);
			assert_int_equal(fast.records[k].data_len, slow.records[k].data_len);
			assert_memory_equal(fast.records[k].data, slow.records[k].data,
			                    fast.records[k].data_len);
			assert_int_equal(fast.records[k].has_ehk, slow.records[k].has_ehk);
		}
		api_req_free(&fast);
		api_req_free(&slow);
	}
	for (i = 0; i < FIRN_ARRAY_SIZE(passed_on); i++) {
		if (api_put_records_fast(passed_on[i], strlen(passed_on[i]), &fast) != 0)
			fail_msg("fast path took: %s", passed_on[i]);
		assert_null(fast.records);
		assert_null(fast.blob);
		api_req_free(&fast);
	}
	/* The first of these is valid JSON the general path accepts; the rest it refuses. */
	expect_ok(OP_PUT_RECORDS, passed_on[0]);
	assert_int_equal(req.records[0].key_len, 2);
	expect(OP_PUT_RECORDS, passed_on[6], API_E_VALIDATION, "streamName");
	expect(OP_PUT_RECORDS, passed_on[11], API_E_SERIALIZATION, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_teardown(test_serialization, teardown),
	        cmocka_unit_test_teardown(test_validation_messages, teardown),
	        cmocka_unit_test_teardown(test_put_records_validation, teardown),
	        cmocka_unit_test_teardown(test_partition_keys, teardown),
	        cmocka_unit_test_teardown(test_put_records_fast_path, teardown),
	        cmocka_unit_test_teardown(test_valid_requests, teardown),
	        cmocka_unit_test_teardown(test_stream_arn, teardown),
	        cmocka_unit_test(test_shard_ids_and_ops),
	        cmocka_unit_test(test_error_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
