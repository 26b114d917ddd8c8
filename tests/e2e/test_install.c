/*
 * test_install.c - the plugin author's path (docs/tutorial.md): `meson
 * install` into a scratch prefix, a plugin built out of tree with nothing
 * but the installed files and `pkg-config serve-plugin`, served by the
 * installed binary; and `serve new`, whose project builds and serves as
 * written, then takes a live `serve deploy` of its own config.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "expect.h"
#include "harness.h"

TestSuite(install, .fini = h_cleanup_all, .timeout = 120);

/* A scratch folder with the build tree installed in it; s->bin is the
   installed serve. */
static h_serve *installed(h_install *inst)
{
    h_serve *s = h_serve_new();
    cr_assert(s, "cannot make a scratch folder");
    char out[H_PATH_MAX + H_DIR_MAX];
    snprintf(out, sizeof(out), "%s/install.out", s->dir);
    cr_assert_eq(h_install_into(s, inst), 0, "meson install failed: %s", h_read_file(out, NULL));
    snprintf(s->bin, sizeof(s->bin), "%s", inst->bin);
    return s;
}

/* `sh -c command` in cwd with PKG_CONFIG_PATH at the install; must exit 0.
   Returns its output (malloc'd). */
static char *sh_ok(const h_serve *s, const h_install *inst, const char *cwd, const char *command)
{
    char env[H_PATH_MAX + 32], *out = NULL;
    snprintf(env, sizeof(env), "PKG_CONFIG_PATH=%s", inst->pkgconfig);
    int code = h_sh(s, cwd, command, env, "sh.out", &out);
    cr_assert_eq(code, 0, "`%s` exited %d:\n%s", command, code, out ? out : "");
    return out ? out : strdup("");
}

static void expect_same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    cr_assert(realpath(a, ra), "%s does not exist", a);
    cr_assert(realpath(b, rb), "%s does not exist", b);
    cr_expect_str_eq(ra, rb);
}

/* Rewrite config file `path` for this test's ports, and make it the one
   h_serve_start runs. */
static void use_config(h_serve *s, const char *path)
{
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    cr_assert(cfg, "%s: %s", path, jerr.text);
    json_object_set_new(json_object_get(cfg, "http_options"), "port", json_integer(s->port));
    json_object_set_new(cfg, "admin", json_pack("{si}", "port", s->admin_port));
    cr_assert_eq(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
    json_decref(cfg);
    snprintf(s->config_path, sizeof(s->config_path), "%s", path);
}

static void get_body(h_serve *s, const char *path, const char *want)
{
    h_response r;
    get_expect(s, path, 200, &r);
    cr_expect_str_eq(r.body, want);
    h_response_free(&r);
}

Test(install, puts_the_binary_header_pkg_config_file_and_examples_in_the_prefix)
{
    h_install inst;
    h_serve *s = installed(&inst);
    char path[H_PATH_MAX + 64];
    cr_expect_eq(access(inst.bin, X_OK), 0, "%s", inst.bin);
    snprintf(path, sizeof(path), "%s/serve_plugin.h", inst.include);
    cr_expect_eq(access(path, R_OK), 0, "%s", path);
    snprintf(path, sizeof(path), "%s/hello.so", inst.plugindir);
    cr_expect_eq(access(path, R_OK), 0, "%s", path);
    snprintf(path, sizeof(path), "%s/weights.bin", inst.plugindir);
    cr_expect_eq(access(path, R_OK), 0, "%s (mlp.so looks for it beside itself)", path);
    cr_expect_eq(access(inst.demo_config, R_OK), 0, "%s", inst.demo_config);

    /* the .pc file is relocatable: it points into wherever it was copied */
    char *cflags = sh_ok(s, &inst, NULL, "pkg-config --cflags serve-plugin");
    char *libs = sh_ok(s, &inst, NULL, "pkg-config --libs serve-plugin");
    char *dir = sh_ok(s, &inst, NULL, "pkg-config --variable=plugindir serve-plugin");
    cr_assert(strncmp(cflags, "-I", 2) == 0, "%s", cflags);
    cflags[strcspn(cflags, " \n")] = dir[strcspn(dir, "\n")] = '\0';
    expect_same_file(cflags + 2, inst.include);
    expect_same_file(dir, inst.plugindir);
    cr_expect_eq(strspn(libs, " \n"), strlen(libs), "a plugin links nothing: '%s'", libs);
    free(cflags);
    free(libs);
    free(dir);
}

Test(install, a_plugin_built_out_of_tree_with_pkg_config_is_served_by_the_installed_binary)
{
    h_install inst;
    h_serve *s = installed(&inst);
    char command[4 * H_PATH_MAX];
    snprintf(command, sizeof(command),
             "cc -shared -fPIC '%s/examples/hello/hello.c' "
             "$(pkg-config --cflags --libs serve-plugin jansson) -o my.so",
             getenv("SERVE_SOURCE_DIR"));
    free(sh_ok(s, &inst, NULL, command));
    /* my.so beside the config; echo.so found in the installed plugin
       folder, with no SERVE_PLUGIN_PATH */
    cr_assert_eq(h_serve_write_apps(s, APP("my", "/my", "my.so", "{\"name\": \"Hello\"}") ", " APP(
                                           "echo", "/echo", "echo.so", "{\"name\": \"Echo\"}")),
                 0);
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/my", READY_TIMEOUT_S), 0, "%s", LOG(s));
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    get_body(s, "/my?name=Ada", "Hello, Ada!\n");
}

Test(install, serve_new_writes_a_project_that_builds_serves_and_redeploys_as_written)
{
    h_install inst;
    h_serve *s = installed(&inst);
    char command[H_PATH_MAX + 64], project[H_DIR_MAX + 16], config[H_DIR_MAX + 32];
    snprintf(command, sizeof(command), "'%s' new greeter", inst.bin);
    char *out = sh_ok(s, &inst, NULL, command);
    cr_expect(strstr(out, "created greeter/ with greeter.c, meson.build, serve.json and README.md"),
              "%s", out);
    cr_expect(strstr(out, "meson setup build"), "%s", out);
    free(out);
    snprintf(project, sizeof(project), "%s/greeter", s->dir);
    free(sh_ok(s, &inst, project, "meson setup build && meson compile -C build"));

    snprintf(config, sizeof(config), "%s/serve.json", project);
    use_config(s, config);
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/greeter", READY_TIMEOUT_S), 0, "%s", LOG(s));
    get_body(s, "/greeter?name=Ada", "Hello, Ada!\n");
    get_body(s, "/greeter", "Hello, world!\n");
    pid_t before[H_MAX_REPLICAS], after[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_replicas(s, before, H_MAX_REPLICAS), 1);

    /* the same file, edited and sent with `serve deploy`: its plugin is
       outside the plugin folders, but it is the one serve run started */
    json_t *cfg = json_load_file(config, 0, NULL);
    json_t *dep = json_array_get(
        json_object_get(json_array_get(json_object_get(cfg, "applications"), 0), "deployments"), 0);
    json_object_set_new(dep, "user_config", json_pack("{ss}", "greeting", "Bonjour"));
    cr_assert_eq(json_dump_file(cfg, config, 0), 0);
    json_decref(cfg);
    snprintf(command, sizeof(command), "'%s' deploy serve.json -a http://127.0.0.1:%d", inst.bin,
             s->admin_port);
    free(sh_ok(s, &inst, project, command));
    h_response r = {0};
    for (int i = 0; i < 100; i++, h_sleep_ms(50)) {
        h_response_free(&r);
        get_expect(s, "/greeter?name=Ada", 200, &r);
        if (strcmp(r.body, "Bonjour, Ada!\n") == 0) break;
    }
    cr_expect_str_eq(r.body, "Bonjour, Ada!\n", "%s", LOG(s));
    h_response_free(&r);
    cr_assert_eq(h_serve_replicas(s, after, H_MAX_REPLICAS), 1);
    cr_expect_eq(after[0], before[0], "user_config is applied without a restart");
}

Test(install, serve_new_refuses_a_bad_name_and_never_overwrites)
{
    h_install inst;
    h_serve *s = installed(&inst);
    char command[H_PATH_MAX + 64], *out = NULL;
    struct {
        const char *arg, *message;
        int code;
    } cases[] = {
        {"9lives", "serve new: the name '9lives' must start with a letter", 2},
        {"my.model", "may only contain letters, digits, '_' and '-'", 2},
        {"", "serve new: the name '' is empty", 2},
        {"taken", "serve new: taken already exists; choose another name, or remove it", 1},
    };
    cr_assert_eq(h_sh(s, NULL, "mkdir taken", NULL, "mkdir.out", NULL), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(command, sizeof(command), "'%s' new '%s'", inst.bin, cases[i].arg);
        cr_expect_eq(h_sh(s, NULL, command, NULL, "new.out", &out), cases[i].code, "%s: %s",
                     cases[i].arg, out);
        cr_expect(strstr(out, cases[i].message), "%s: %s", cases[i].arg, out);
        free(out);
    }
    cr_expect_eq(h_sh(s, NULL, "[ ! -e 9lives ] && [ ! -e my.model ] && [ -z \"$(ls -A taken)\" ]",
                      NULL, "ls.out", NULL),
                 0, "nothing was written");
    snprintf(command, sizeof(command), "'%s' new --help", inst.bin);
    cr_expect_eq(h_sh(s, NULL, command, NULL, "help.out", &out), 0);
    cr_expect(strstr(out, "usage: serve new PATH"), "%s", out);
    free(out);
}
