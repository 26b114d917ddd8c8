/*
 * expect.h - criterion-side helpers shared by the e2e test files: start a
 * server and fail the test if it does not come up, requests that must be
 * answered, JSON bodies. The harness itself (harness.h) stays free of
 * criterion; these are the assertions built on it.
 */
#ifndef SERVE_E2E_EXPECT_H
#define SERVE_E2E_EXPECT_H

#include <jansson.h>

#include "harness.h"

#define READY_TIMEOUT_S 10.0
#define TEST_TIMEOUT_S  40.0 /* criterion kills a test that takes longer */

/* One application of a config: name, route prefix, plugin, deployments. */
#define APP(name, prefix, plugin, deployments)                                                     \
    "{\"name\": \"" name "\", \"route_prefix\": \"" prefix "\", \"plugin\": \"" plugin             \
    "\", \"deployments\": [" deployments "]}"

/* The tail of the server's log, for assertion messages. */
#define LOG(s) h_serve_log_tail(s)

/*
 * Start serve with `http_extra` added to http_options (",\"key\": value..."
 * or "") and these applications (the contents of "applications"); wait
 * until /-/healthz and `ready_path` (may be NULL) answer 200.
 */
h_serve *serve_up(const char *ready_path, const char *http_extra, const char *apps);

/* A request that must get an HTTP answer (any status). */
void request_ok(h_serve *s, const char *method, const char *path, const char *const *headers,
                const void *body, size_t body_len, h_response *r);

/* A GET (with these headers, may be NULL) that must answer `status`. */
void get_expect_h(h_serve *s, const char *path, const char *const *headers, long status,
                  h_response *r);
void get_expect(h_serve *s, const char *path, long status, h_response *r);

/* Wait (up to 5 s) until serve's log holds `text` `times` times, or fail. */
void wait_log(const h_serve *s, const char *text, int times);

/* The body of `r` as a JSON object (the test fails if it is not one). */
json_t *body_json(const h_serve *s, const h_response *r);

/* A string member of `obj`, or "" when absent or not a string. */
const char *jstr(json_t *obj, const char *key);

/* METHOD /api/serve/applications/ on the admin port, with a bearer token
   if given; the body lands in `body` (64 KiB). Returns the HTTP status, or
   -1 without an answer. */
long admin_request(const h_serve *s, const char *method, const char *token, char *body);

/* One answer of the admin port; `body` is malloc'd and NUL-terminated. */
typedef struct admin_page {
    long status; /* -1 without an answer */
    char *body;
    size_t len;
    char type[128]; /* content-type, "" when absent */
} admin_page;

/* METHOD `path` on the admin port, with a bearer token and a body when not
   NULL. Returns the status; free `out` with admin_page_free either way. */
long admin_fetch(const h_serve *s, const char *method, const char *path, const char *token,
                 const char *send, admin_page *out);
void admin_page_free(admin_page *p);

/* PUT a config (JSON text) to the admin API; as admin_request. */
long admin_put(const h_serve *s, const char *config, char *body);

#endif
