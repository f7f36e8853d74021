/* Unit tests of makemap's pure parts: the input line parser (every rule and
 * every error) and the bounded line reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "makemap.h"

static const struct makemap_opts defaults = {.comment = '#'};

static char line_buf[MAKEMAP_LINE_MAX + 2];

static enum makemap_line parse(const struct makemap_opts *o, const char *text,
                               struct makemap_entry *e)
{
    size_t len = strlen(text);
    assert_true(len < sizeof line_buf);
    memcpy(line_buf, text, len);
    return makemap_parse_line(o, line_buf, len, e);
}

static void expect_entry(const struct makemap_opts *o, const char *text, const char *key,
                         const char *value)
{
    struct makemap_entry e;
    assert_int_equal(parse(o, text, &e), MAKEMAP_ENTRY);
    assert_string_equal(e.key, key);
    assert_int_equal(e.keylen, strlen(key));
    assert_string_equal(e.value, value);
    assert_int_equal(e.valuelen, strlen(value));
}

static void test_key_and_value(void **state)
{
    (void)state;
    expect_entry(&defaults, "Connect:192.168.1 RELAY", "connect:192.168.1", "RELAY");
    expect_entry(&defaults, "From:Spammer@Example.COM\t554 Go Away", "from:spammer@example.com",
                 "554 Go Away");
    /* several separators; the value keeps inner and trailing white space */
    expect_entry(&defaults, "a \t  b  c  ", "a", "b  c  ");
    expect_entry(&defaults, "to:x.org\tERROR:5.7.1:550 no", "to:x.org", "ERROR:5.7.1:550 no");
}

static void test_keep_case(void **state)
{
    (void)state;
    struct makemap_opts o = defaults;
    o.keep_case = true;
    expect_entry(&o, "MixedCase Value", "MixedCase", "Value");
    /* only the key folds, never the value */
    expect_entry(&defaults, "MixedCase VALUE", "mixedcase", "VALUE");
    /* 8-bit bytes are left alone by the ASCII fold */
    expect_entry(&defaults, "\xc3\x84X v", "\xc3\x84x", "v");
}

static void test_skipped_lines(void **state)
{
    (void)state;
    struct makemap_entry e;
    assert_int_equal(parse(&defaults, "", &e), MAKEMAP_SKIP);
    assert_int_equal(parse(&defaults, "# a comment", &e), MAKEMAP_SKIP);
    assert_int_equal(parse(&defaults, "#", &e), MAKEMAP_SKIP);
    assert_int_equal(parse(&defaults, "\r", &e), MAKEMAP_SKIP);
    /* '#' after the key is part of the value, as in sendmail */
    expect_entry(&defaults, "key v#1", "key", "v#1");
}

static void test_comment_char(void **state)
{
    (void)state;
    struct makemap_opts o = defaults;
    o.comment = ';';
    struct makemap_entry e;
    assert_int_equal(parse(&o, "; comment", &e), MAKEMAP_SKIP);
    expect_entry(&o, "#key value", "#key", "value");
}

static void test_leading_space(void **state)
{
    (void)state;
    struct makemap_entry e;
    assert_int_equal(parse(&defaults, " key value", &e), MAKEMAP_LEADING_SPACE);
    assert_int_equal(parse(&defaults, "\tkey value", &e), MAKEMAP_LEADING_SPACE);
    assert_int_equal(parse(&defaults, "   ", &e), MAKEMAP_LEADING_SPACE);
}

static void test_no_rhs(void **state)
{
    (void)state;
    struct makemap_entry e;
    assert_int_equal(parse(&defaults, "Lonely", &e), MAKEMAP_NO_RHS);
    assert_string_equal(e.key, "lonely");
    assert_int_equal(parse(&defaults, "lonely   \t", &e), MAKEMAP_NO_RHS);
    assert_string_equal(e.key, "lonely");
    struct makemap_opts o = defaults;
    o.allow_empty = true;
    expect_entry(&o, "lonely", "lonely", "");
    expect_entry(&o, "lonely \t ", "lonely", "");
}

static void test_delimiter(void **state)
{
    (void)state;
    struct makemap_opts o = defaults;
    o.sep = ':';
    expect_entry(&o, "Key With Spaces:value: more", "key with spaces", "value: more");
    expect_entry(&o, "k:::v", "k", "v");
    /* white space is no separator and no error at the start */
    expect_entry(&o, " k:v", " k", "v");
    struct makemap_entry e;
    assert_int_equal(parse(&o, ":value", &e), MAKEMAP_EMPTY_KEY);
    assert_int_equal(parse(&o, "k:", &e), MAKEMAP_NO_RHS);
    assert_int_equal(parse(&o, "k", &e), MAKEMAP_NO_RHS);
}

static void test_crlf_and_nul(void **state)
{
    (void)state;
    expect_entry(&defaults, "k v\r", "k", "v");
    struct makemap_entry e;
    char raw[] = "k v\0x";
    memcpy(line_buf, raw, 5);
    assert_int_equal(makemap_parse_line(&defaults, line_buf, 5, &e), MAKEMAP_NUL_BYTE);
}

static void test_longest_line(void **state)
{
    (void)state;
    char text[MAKEMAP_LINE_MAX + 1];
    memset(text, 'v', MAKEMAP_LINE_MAX);
    memcpy(text, "k ", 2);
    text[MAKEMAP_LINE_MAX] = '\0';
    struct makemap_entry e;
    assert_int_equal(parse(&defaults, text, &e), MAKEMAP_ENTRY);
    assert_int_equal(e.valuelen, MAKEMAP_LINE_MAX - 2);
}

static void test_read_line(void **state)
{
    (void)state;
    static char input[MAKEMAP_LINE_MAX * 3];
    size_t n = 0;
    n += (size_t)sprintf(input + n, "first line\n\n");
    memset(input + n, 'x', MAKEMAP_LINE_MAX);
    n += MAKEMAP_LINE_MAX;
    input[n++] = '\n';
    memset(input + n, 'y', MAKEMAP_LINE_MAX + 1);
    n += MAKEMAP_LINE_MAX + 1;
    input[n++] = '\n';
    n += (size_t)sprintf(input + n, "last without newline");
    FILE *f = fmemopen(input, n, "r");
    assert_non_null(f);
    char buf[MAKEMAP_LINE_MAX + 2];
    size_t len = 0;
    assert_int_equal(makemap_read_line(f, buf, sizeof buf, &len), 1);
    assert_int_equal(len, 10);
    assert_string_equal(buf, "first line");
    assert_int_equal(makemap_read_line(f, buf, sizeof buf, &len), 1);
    assert_int_equal(len, 0);
    assert_int_equal(makemap_read_line(f, buf, sizeof buf, &len), 1);
    assert_int_equal(len, MAKEMAP_LINE_MAX);
    assert_int_equal(makemap_read_line(f, buf, sizeof buf, &len), -2);
    assert_int_equal(makemap_read_line(f, buf, sizeof buf, &len), 1);
    assert_string_equal(buf, "last without newline");
    assert_int_equal(makemap_read_line(f, buf, sizeof buf, &len), 0);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_and_value), cmocka_unit_test(test_keep_case),
        cmocka_unit_test(test_skipped_lines), cmocka_unit_test(test_comment_char),
        cmocka_unit_test(test_leading_space), cmocka_unit_test(test_no_rhs),
        cmocka_unit_test(test_delimiter),     cmocka_unit_test(test_crlf_and_nul),
        cmocka_unit_test(test_longest_line),  cmocka_unit_test(test_read_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
