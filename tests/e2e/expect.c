/*
 * expect.c - see expect.h.
 */
#include "expect.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

h_serve *serve_up(const char *ready_path, const char *http_extra, const char *apps)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s, "cannot make a scratch folder for serve");
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"host\": \"127.0.0.1\", \"port\": %d%s},\n"
                             " \"admin\": {\"host\": \"127.0.0.1\", \"port\": %d},\n"
                             " \"applications\": [%s]}\n",
                             s->port, http_extra, s->admin_port, apps),
        0, "cannot write the config");
    cr_assert_eq(h_serve_start(s), 0, "cannot start serve (is SERVE_BIN set?)");
    cr_assert_eq(h_serve_wait_ready(s, ready_path, READY_TIMEOUT_S), 0,
                 "serve did not become ready (healthz, then %s) within %.0f s\n%s",
                 ready_path ? ready_path : "-", READY_TIMEOUT_S, LOG(s));
    return s;
}

void request_ok(h_serve *s, const char *method, const char *path, const char *const *headers,
                const void *body, size_t body_len, h_response *r)
{
    int rc = h_request(s, method, path, headers, body, body_len, r);
    cr_assert_eq(rc, 0, "%s %s: no answer: %s\n%s", method, path, r->error, LOG(s));
}

void get_expect_h(h_serve *s, const char *path, const char *const *headers, long status,
                  h_response *r)
{
    request_ok(s, "GET", path, headers, NULL, 0, r);
    cr_assert_eq(r->status, status, "GET %s: status %ld, expected %ld; body: %s\n%s", path,
                 r->status, status, r->body, LOG(s));
}

void get_expect(h_serve *s, const char *path, long status, h_response *r)
{
    get_expect_h(s, path, NULL, status, r);
}

json_t *body_json(const h_serve *s, const h_response *r)
{
    json_error_t err;
    json_t *obj = json_loadb(r->body, r->body_len, 0, &err);
    cr_assert(json_is_object(obj), "answer (status %ld) is not a JSON object (%s): '%s'\n%s",
              r->status, err.text, r->body, LOG(s));
    return obj;
}

const char *jstr(json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : "";
}

static size_t page_write(char *data, size_t size, size_t n, void *arg)
{
    admin_page *p = arg;
    char *grown = realloc(p->body, p->len + size * n + 1);
    if (!grown) return 0;
    memcpy(grown + p->len, data, size * n);
    p->len += size * n;
    grown[p->len] = '\0';
    p->body = grown;
    return size * n;
}

long admin_fetch(const h_serve *s, const char *method, const char *path, const char *token,
                 const char *send, admin_page *out)
{
    char url[256], auth[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->admin_port, path);
    memset(out, 0, sizeof(*out));
    out->body = calloc(1, 1);
    out->status = -1;
    CURL *e = curl_easy_init();
    struct curl_slist *h = NULL;
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (send) curl_easy_setopt(e, CURLOPT_POSTFIELDS, send);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, page_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
    if (curl_easy_perform(e) == CURLE_OK) {
        char *type = NULL;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
        curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &type);
        snprintf(out->type, sizeof(out->type), "%s", type ? type : "");
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return out->status;
}

void admin_page_free(admin_page *p)
{
    free(p->body);
    p->body = NULL;
}

/* METHOD on /api/serve/applications/, the answer copied into `body`. */
static long admin_send(const h_serve *s, const char *method, const char *token, const char *send,
                       char *body)
{
    admin_page p;
    long status = admin_fetch(s, method, "/api/serve/applications/", token, send, &p);
    snprintf(body, 65536, "%s", p.body ? p.body : "");
    admin_page_free(&p);
    return status;
}

long admin_request(const h_serve *s, const char *method, const char *token, char *body)
{
    return admin_send(s, method, token, NULL, body);
}

long admin_put(const h_serve *s, const char *config, char *body)
{
    return admin_send(s, "PUT", NULL, config, body);
}

void wait_log(const h_serve *s, const char *text, int times)
{
    for (int i = 0; i < 500; i++) {
        char *log = h_serve_log(s);
        int n = 0;
        for (const char *p = log; p && (p = strstr(p, text)); p++) n++;
        free(log);
        if (n >= times) return;
        h_sleep_ms(10);
    }
    cr_assert_fail("'%s' not logged %d times:\n%s", text, times, LOG(s));
}
