/*
 * test_skeleton.c - `serve new`'s names: which project names it takes, and
 * the deployment name it makes of each. (tests/e2e/test_install.c builds
 * and serves what it writes.)
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "serve/skeleton.h"

static void expect_deployment(const char *name, const char *want)
{
    char out[64];
    cr_assert_eq(skeleton_deployment_name(name, out, sizeof out), 0, "%s", name);
    cr_expect_str_eq(out, want, "%s", name);
}

Test(skeleton, the_deployment_name_capitalises_each_part_of_the_project_name)
{
    expect_deployment("greeter", "Greeter");
    expect_deployment("my_model", "MyModel");
    expect_deployment("my-model-v2", "MyModelV2");
    expect_deployment("MLP", "MLP");
    expect_deployment("a__b", "AB");
}

Test(skeleton, a_deployment_name_that_does_not_fit_is_refused)
{
    char out[4];
    cr_expect_eq(skeleton_deployment_name("abcd", out, sizeof out), -ENAMETOOLONG);
    cr_expect_eq(skeleton_deployment_name("abc", out, sizeof out), 0);
    cr_expect_str_eq(out, "Abc");
}

Test(skeleton, a_project_name_is_a_letter_then_letters_digits_underscores_and_dashes)
{
    const char *good[] = {"greeter", "g", "my_model-2", "Model"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        cr_expect_null(skeleton_check_name(good[i]), "%s", good[i]);
    struct {
        const char *name, *why;
    } bad[] = {
        {"", "is empty"},
        {"2fast", "must start with a letter"},
        {"_x", "must start with a letter"},
        {"a.b", "may only contain letters, digits, '_' and '-'"},
        {"a b", "may only contain letters, digits, '_' and '-'"},
        {"a/b", "may only contain letters, digits, '_' and '-'"},
        {"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl",
         "is too long (at most 63 characters)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *why = skeleton_check_name(bad[i].name);
        cr_expect(why && strcmp(why, bad[i].why) == 0, "%s: %s", bad[i].name, why ? why : "(ok)");
    }
}
