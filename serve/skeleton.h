/*
 * skeleton.h - `serve new NAME`: write a plugin project to start from.
 */
#ifndef SERVE_SKELETON_H
#define SERVE_SKELETON_H

#include <stddef.h>

/* `serve new [--help] PATH`. `exe` is the serve binary's real path, `cmd`
   how the user runs it (printed in the next steps). Returns the process
   exit code. */
int skeleton_main(int argc, char **argv, const char *exe, const char *cmd);

/* The deployment name for a project name: each part between '_' or '-'
   capitalised and joined ("my_model" -> "MyModel"). Writes at most `size`
   bytes; returns 0, or -ENAMETOOLONG. */
int skeleton_deployment_name(const char *name, char *out, size_t size);

/* NULL when `name` is usable as a project name (a file name, a C source
   name, an application name and a route prefix), else why not. */
const char *skeleton_check_name(const char *name);

#endif
