/*
 * cli.h - the commands that talk to a running serve through its admin API.
 */
#ifndef SERVE_CLI_H
#define SERVE_CLI_H

/* `serve status [-a ADDRESS] [--json]`: print the applications, their
   deployments and replicas. Returns the process exit code. */
int cli_status(int argc, char **argv);

/* `serve config [-a ADDRESS]`: print the config the applications were
   deployed with. Returns the process exit code. */
int cli_config(int argc, char **argv);

/* `serve deploy CONFIG [-a ADDRESS]`: PUT CONFIG to the admin API. */
int cli_deploy(int argc, char **argv);

/* `serve shutdown [-a ADDRESS]`: DELETE every application. */
int cli_shutdown(int argc, char **argv);

#endif
