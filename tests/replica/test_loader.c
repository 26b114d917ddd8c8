/*
 * test_loader.c - loading plugins: a good one yields its deployment, and
 * each way a plugin can be wrong gives an error that names the plugin, the
 * deployment and the cause.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replica/internal.h"

static char err[1024];

/* Path of a plugin built by this tree: $SERVE_BUILD_DIR/<sub>/<name>.so */
static const char *plugin(const char *sub, const char *name)
{
    static char path[4096];
    const char *build = getenv("SERVE_BUILD_DIR");
    cr_assert_not_null(build, "run through meson test (SERVE_BUILD_DIR unset)");
    snprintf(path, sizeof(path), "%s/%s/%s.so", build, sub, name);
    return path;
}

Test(loader, a_good_plugin_yields_the_named_deployment)
{
    loader_plugin p;
    cr_assert_eq(loader_open(plugin("examples", "hello"), "Hello", &p, err, sizeof(err)), 0, "%s",
                 err);
    cr_expect_str_eq(p.dep->name, "Hello");
    cr_expect_not_null(p.dep->init);
    cr_expect_not_null(p.dep->reconfigure);
    loader_close(&p);
    cr_expect_null(p.dl);
}

Test(loader, a_missing_file_is_named)
{
    loader_plugin p;
    cr_expect_eq(loader_open("/nonexistent/x.so", "X", &p, err, sizeof(err)), -ENOENT);
    cr_expect(strstr(err, "/nonexistent/x.so") && strstr(err, "deployment X"), "%s", err);
}

Test(loader, a_shared_object_without_the_symbol_is_refused)
{
    loader_plugin p;
    cr_expect_eq(loader_open(plugin("tests/plugins", "no_symbol"), "X", &p, err, sizeof(err)),
                 -EINVAL);
    cr_expect(strstr(err, "no_symbol.so") && strstr(err, "serve_plugin"), "%s", err);
}

Test(loader, a_wrong_abi_version_names_both_versions)
{
    loader_plugin p;
    cr_expect_eq(loader_open(plugin("tests/plugins", "bad_abi"), "Old", &p, err, sizeof(err)),
                 -ENOTSUP);
    char expect[64];
    snprintf(expect, sizeof(expect), "ABI %u", SERVE_PLUGIN_ABI_VERSION + 98);
    cr_expect(strstr(err, expect) && strstr(err, "bad_abi.so") && strstr(err, "deployment Old"),
              "%s", err);
}

Test(loader, an_unknown_deployment_lists_the_exported_ones)
{
    loader_plugin p;
    cr_expect_eq(loader_open(plugin("tests/plugins", "faulty"), "Nope", &p, err, sizeof(err)),
                 -EINVAL);
    cr_expect(strstr(err, "'Nope'") && strstr(err, "Crash") && strstr(err, "Sleepy"), "%s", err);
}

Test(loader, a_deployment_without_handle_is_refused)
{
    loader_plugin p;
    cr_expect_eq(
        loader_open(plugin("tests/plugins", "no_handle"), "NoHandle", &p, err, sizeof(err)),
        -EINVAL);
    cr_expect(strstr(err, "'handle'") && strstr(err, "NoHandle"), "%s", err);
}
