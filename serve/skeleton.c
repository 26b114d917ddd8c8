/*
 * skeleton.c - `serve new NAME` writes a small plugin project: the source
 * of one deployment, a meson.build, the config that serves it and a README.
 * The four templates live in serve/skeleton/ and are compiled into the
 * binary (scripts/embed.py), so an installed serve carries them. They are
 * filled in by replacing @NAME@ and @DEPLOYMENT@.
 *
 * Nothing is overwritten: the folder must not exist yet, and each file is
 * created with O_EXCL.
 */
#include "serve/skeleton.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

extern const char skeleton_plugin_c[], skeleton_meson_build[], skeleton_serve_json[],
    skeleton_readme_md[];

#define SKELETON_NAME_MAX 64

static const char usage_new[] =
    "usage: serve new PATH\n"
    "\n"
    "Write a deployment to start from in the new folder PATH, named after its\n"
    "last part NAME (letters, digits, '_' and '-', starting with a letter):\n"
    "  NAME.c        the plugin, one deployment answering GET /NAME?name=Ada\n"
    "  meson.build   builds build/NAME.so (pkg-config package serve-plugin)\n"
    "  serve.json    the config that serves it on http://127.0.0.1:8000/NAME\n"
    "  README.md     how to build, serve and change it\n"
    "It builds and serves as written; docs/tutorial.md takes it from there.\n"
    "\n"
    "options:\n"
    "  -h, --help    show this help\n";

const char *skeleton_check_name(const char *name)
{
    if (!*name) return "is empty";
    if (strlen(name) >= SKELETON_NAME_MAX) return "is too long (at most 63 characters)";
    if (!isalpha((unsigned char)name[0])) return "must start with a letter";
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return "may only contain letters, digits, '_' and '-'";
    return NULL;
}

int skeleton_deployment_name(const char *name, char *out, size_t size)
{
    size_t n = 0;
    int upper = 1;
    for (const char *p = name; *p; p++) {
        if (*p == '_' || *p == '-') {
            upper = 1;
            continue;
        }
        if (n + 1 >= size) return -ENAMETOOLONG;
        out[n++] = upper ? (char)toupper((unsigned char)*p) : *p;
        upper = 0;
    }
    if (n == 0 || size == 0) return -ENAMETOOLONG;
    out[n] = '\0';
    return 0;
}

/* Write `template` to dir/file with @NAME@ and @DEPLOYMENT@ filled in. */
static int write_template(const char *dir, const char *file, const char *template, const char *name,
                          const char *deployment)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int rc = -errno;
        if (fd >= 0) close(fd);
        fprintf(stderr, "serve new: cannot create %s: %s\n", path, strerror(-rc));
        return rc;
    }
    for (const char *p = template; *p;) {
        if (strncmp(p, "@NAME@", 6) == 0) {
            fputs(name, f);
            p += 6;
        } else if (strncmp(p, "@DEPLOYMENT@", 12) == 0) {
            fputs(deployment, f);
            p += 12;
        } else {
            fputc(*p++, f);
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "serve new: cannot write %s: %s\n", path, strerror(errno));
        return -EIO;
    }
    return 0;
}

/*
 * How to build against this serve: with an installed one, pkg-config finds
 * serve-plugin by itself; run from a build tree, it needs the folder of
 * serve-plugin-uninstalled.pc, which meson writes to <build>/include.
 */
static void print_next_steps(const char *dir, const char *name, const char *exe, const char *cmd)
{
    char pc[PATH_MAX], pcdir[PATH_MAX] = "";
    char *copy = strdup(exe);
    if (copy) {
        snprintf(pc, sizeof(pc), "%s/../include/serve-plugin-uninstalled.pc", dirname(copy));
        if (access(pc, R_OK) == 0 && realpath(pc, pcdir)) *strrchr(pcdir, '/') = '\0';
        free(copy);
    }
    printf("created %s/ with %s.c, meson.build, serve.json and README.md\n\n", dir, name);
    printf("build and serve it:\n  cd %s\n", dir);
    if (*pcdir)
        printf("  PKG_CONFIG_PATH=%s meson setup build\n", pcdir);
    else
        printf("  meson setup build\n");
    printf("  meson compile -C build\n  %s run serve.json\n", cmd);
    printf("  curl 'localhost:8000/%s?name=Ada'\n", name);
}

static int write_project(const char *dir, const char *name, const char *deployment)
{
    const struct {
        const char *suffix, *template;
    } files[] = {
        {".c", skeleton_plugin_c},
        {"meson.build", skeleton_meson_build},
        {"serve.json", skeleton_serve_json},
        {"README.md", skeleton_readme_md},
    };
    if (mkdir(dir, 0755) != 0) {
        if (errno == EEXIST)
            fprintf(stderr, "serve new: %s already exists; choose another name, or remove it\n",
                    dir);
        else
            fprintf(stderr, "serve new: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < UTIL_ARRAY_LEN(files); i++) {
        char file[SKELETON_NAME_MAX + 16];
        snprintf(file, sizeof(file), "%s%s", files[i].suffix[0] == '.' ? name : "",
                 files[i].suffix);
        if (write_template(dir, file, files[i].template, name, deployment) != 0) return -1;
    }
    return 0;
}

int skeleton_main(int argc, char **argv, const char *exe, const char *cmd)
{
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage_new, stdout);
            return 0;
        }
        fputs(usage_new, stderr);
        return 2;
    }
    if (argc - optind != 1) {
        fprintf(stderr, "serve new: %s\n\n%s", argc == optind ? "which PATH?" : "one PATH only",
                usage_new);
        return 2;
    }
    char dir[PATH_MAX], copy[PATH_MAX], deployment[SKELETON_NAME_MAX];
    snprintf(dir, sizeof(dir), "%s", argv[optind]);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) dir[n - 1] = '\0';
    snprintf(copy, sizeof(copy), "%s", dir);
    const char *name = *copy ? basename(copy) : "", *why = skeleton_check_name(name);
    if (why) {
        fprintf(stderr,
                "serve new: the name '%s' %s (it names the plugin file, the "
                "application and its route /%s)\n",
                name, why, name);
        return 2;
    }
    skeleton_deployment_name(name, deployment, sizeof(deployment));
    if (write_project(dir, name, deployment) != 0) return 1;
    print_next_steps(dir, name, exe, cmd);
    return 0;
}
