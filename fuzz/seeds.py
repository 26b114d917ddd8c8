#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets into fuzz/corpus/<target>/.

The seeds are checked in; this script says what they are and makes them
again (run it from anywhere: python3 fuzz/seeds.py). Each seed is a small
input the target accepts, so that the fuzzer starts from inside the
formats rather than from random bytes. Configs are the examples' files
plus a few that use every section.
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# ---- config ---------------------------------------------------------------

def config_seeds():
    for src, name in [("examples/serve.json", "examples_serve.json"),
                      ("examples/autoscale/serve.json", "examples_autoscale.json")]:
        shutil.copyfile(os.path.join(ROOT, src), os.path.join(CORPUS, "config", name))
    write("config", "full.json", json.dumps({
        "http_options": {"host": "0.0.0.0", "port": 9000, "request_timeout_s": 12.5,
                         "max_body_bytes": 1048576, "max_header_bytes": 4096,
                         "access_log": False},
        "admin": {"host": "127.0.0.1", "port": 9265, "auth_token": "secret"},
        "logging_config": {"log_level": "WARNING", "encoding": "JSON", "logs_dir": "/tmp/x"},
        "applications": [
            {"name": "lang", "route_prefix": "/lang", "plugin": "lang.so",
             "ingress": "Classifier", "logging_config": {"log_level": "error"},
             "deployments": [
                 {"name": "Classifier", "num_replicas": 3, "max_ongoing_requests": 40,
                  "max_queued_requests": 100,
                  "init_args": {"spanish": {"deployment": "Spanish"}, "n": [1, 2]},
                  "user_config": {"greeting": "Hola", "k": 1.5},
                  "graceful_shutdown_timeout_s": 5, "health_check_period_s": 2.5,
                  "health_check_timeout_s": 7,
                  "batching": {"max_batch_size": 32, "batch_wait_timeout_s": 0.05}},
                 {"name": "Spanish", "logging_config": {"log_level": "DEBUG"},
                  "autoscaling_config": {
                      "min_replicas": 0, "initial_replicas": 2, "max_replicas": 4,
                      "target_ongoing_requests": 3.5, "metrics_interval_s": 1,
                      "look_back_period_s": 6, "upscale_delay_s": 0.5,
                      "downscale_delay_s": 12, "downscale_to_zero_delay_s": 60,
                      "upscaling_factor": 1.5, "downscaling_factor": 0.5}}]},
            {"name": "echo", "route_prefix": "/", "plugin": "/opt/echo.so",
             "deployments": [{"name": "Echo", "user_config": 7}]}]}))
    write("config", "bindings.json", json.dumps({"applications": [
        {"name": "a", "plugin": "a.so", "ingress": "D1", "deployments": [
            {"name": "D1", "init_args": {"h": {"deployment": "D2"},
                                         "o": {"deployment": "E", "app": "b"}}},
            {"name": "D2"}]},
        {"name": "b", "route_prefix": "/b", "plugin": "b.so",
         "deployments": [{"name": "E"}]}]}))
    write("config", "minimal.json", '{"applications": []}')
    write("config", "bad_field.json",
          '{"applications": [{"name": "a", "plugin": "a.so", "deployments": '
          '[{"name": "d", "num_replicas": -1, "colour": "red"}]}]}')


# ---- frame ----------------------------------------------------------------

def frame(ftype, payload=b"", fid=1, flags=0):
    return struct.pack("<IBBHQ", len(payload), ftype, flags, 0, fid) + payload


def s(text):
    if isinstance(text, str):
        text = text.encode()
    return struct.pack("<I", len(text)) + text + b"\0"


def headers(pairs):
    return struct.pack("<I", len(pairs)) + b"".join(s(k) + s(v) for k, v in pairs)


def request(method="GET", path="/echo/x", route="/x", query="a=1", rid="r1",
            hdrs=(("host", "h"),), body=b""):
    return s(method) + s(path) + s(route) + s(query) + s(rid) + headers(list(hdrs)) + s(body)


def response(status=200, hdrs=(("content-type", "text/plain"),), body=b"ok"):
    return struct.pack("<H", status) + headers(list(hdrs)) + s(body)


INIT, READY, FAILED, STOP, RECONFIGURE, RECONFIGURED, HEALTH, HEALTH_RESULT, STATS, LOGGING = \
    range(1, 11)
REQUEST, RESPONSE, CANCEL, CANCELLED, RESPONSE_PART, CALL, CALL_CANCEL, CALL_PART, CALL_RESULT = \
    range(16, 25)


def frame_seeds():
    specs = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
             "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]}
    stats = {"latency": {"counts": [1] * 17, "sum": 0.25},
             "batch": {"counts": [0, 2] + [0] * 12, "sum": 4}}
    write("frame", "request", frame(REQUEST, request(body=b"hello")))
    write("frame", "request_infer", frame(REQUEST, request(
        "POST", "/v2/models/m/infer", "/v2/models/m/infer", "", "abc",
        (("content-type", "application/json"), ("inference-header-content-length", "2")),
        b'{}\x01\x02'), flags=1))
    write("frame", "response", frame(RESPONSE, response()))
    write("frame", "stream", frame(RESPONSE_PART, response(body=b"a"), 7) +
          frame(RESPONSE_PART, response(hdrs=(), body=b"b"), 7) +
          frame(RESPONSE, response(hdrs=(), body=b""), 7, flags=1))
    write("frame", "call", frame(CALL, s("app") + s("Dep") + struct.pack("<I", 500) +
                                 request(rid="call-1"), 3) + frame(CALL_CANCEL, b"", 3))
    write("frame", "call_result", frame(CALL_PART, response(body=b"x"), 3) +
          frame(CALL_RESULT, response(404, body=b'{"error":"no"}'), 3))
    write("frame", "cancel", frame(CANCEL, b"", 9) + frame(CANCELLED, b"", 9))
    write("frame", "control", frame(READY, json.dumps(specs).encode(), 0) +
          frame(STATS, json.dumps(stats).encode(), 0) +
          frame(LOGGING, b'{"level": "debug", "encoding": "JSON"}', 0) +
          frame(HEALTH_RESULT, b"sick", 0, flags=1) + frame(FAILED, b"init failed", 0))
    write("frame", "cut", frame(RESPONSE, response())[:-3])


# ---- tensor ---------------------------------------------------------------

def tensor_seeds():
    base = [{"name": "x", "datatype": "FP32", "shape": [2, 3],
             "data": [[1, 2.5, -3e-2], [4, 5, 6]]},
            {"name": "ids", "datatype": "INT64", "shape": [2], "data": [7, -9007199254740993]}]
    write("tensor", "json", json.dumps({"id": "r1", "inputs": base}))
    every = base + [
        {"name": "mask", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["hi", "\u00e9\\n"]},
        {"name": "pixels", "datatype": "UINT8", "shape": [1, 2, 2], "data": [0, 1, 254, 255]},
        {"name": "u16", "datatype": "UINT16", "shape": [4], "data": [0, 1, 2, 65535]},
        {"name": "u32", "datatype": "UINT32", "shape": [1], "data": [4294967295]},
        {"name": "u64", "datatype": "UINT64", "shape": [1], "data": [18446744073709551615]},
        {"name": "i8", "datatype": "INT8", "shape": [1, 2], "data": [[-128, 127]]},
        {"name": "i16", "datatype": "INT16", "shape": [1], "data": [-32768]},
        {"name": "i32", "datatype": "INT32", "shape": [2], "data": [-2147483648, 2147483647]},
        {"name": "f64", "datatype": "FP64", "shape": [3], "data": [1e308, -0.0, 5e-324]}]
    write("tensor", "every_type", json.dumps({
        "inputs": every, "outputs": [{"name": "x"}, {"name": "ids",
                                                      "parameters": {"binary_data": True}}]}))
    # The binary extension: two bytes of header length, the JSON, the data.
    head = json.dumps({"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 3],
         "parameters": {"binary_data_size": 12}},
        {"name": "ids", "datatype": "INT64", "shape": [1], "data": [3]},
        {"name": "text", "datatype": "BYTES", "shape": [2],
         "parameters": {"binary_data_size": 11}}],
        "parameters": {"binary_data_output": True}}).encode()
    data = struct.pack("<3f", 1.0, -2.0, 0.5) + struct.pack("<I", 3) + b"abc" + \
        struct.pack("<I", 0)
    write("tensor", "binary", struct.pack("<H", len(head)) + head + data)
    write("tensor", "refused", '{"inputs": [{"name": "x", "datatype": "FP64", "shape": [3],'
                               ' "data": [1, 2, 3]}]}')


# ---- http -----------------------------------------------------------------

def http(lines, body=b""):
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_seeds():
    infer = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                    "data": [1, 2, 3]}]}).encode()
    write("http", "get", http(["GET /echo/hi?name=Ada HTTP/1.1", "Host: x"]))
    write("http", "post", http(["POST /echo/deep/a%20b HTTP/1.1", "Host: x",
                                "Content-Type: text/plain", "Content-Length: 5",
                                "x-request-id: my-id-1", "x-request-timeout-seconds: 2.5"],
                               b"hello"))
    write("http", "chunked", http(["POST /echo?stream=1 HTTP/1.1", "Host: x",
                                   "Transfer-Encoding: chunked"],
                                  b"5\r\nhello\r\n4;ext=1\r\n abc\r\n0\r\n\r\n"))
    write("http", "pipelined",
          http(["GET /-/healthz HTTP/1.1", "Host: x"]) +
          http(["GET /-/routes HTTP/1.1", "Host: x", "Connection: keep-alive"]) +
          http(["GET /hello/x HTTP/1.1", "Host: x"]) +
          http(["DELETE /echo?bad HTTP/1.1", "Host: x"]) +
          http(["GET /nowhere HTTP/1.1", "Host: x", "Connection: close"]))
    write("http", "v2", b"".join(http([line, "Host: x"]) for line in [
        "GET /v2 HTTP/1.1", "GET /v2/health/live HTTP/1.1", "GET /v2/health/ready HTTP/1.1",
        "GET /v2/models/mlp HTTP/1.1", "GET /v2/models/mlp/versions/1/ready HTTP/1.1",
        "GET /v2/models/plain HTTP/1.1", "GET /v2/models/starting/ready HTTP/1.1",
        "PUT /v2/models/mlp/infer HTTP/1.1", "GET /v2/models/gone HTTP/1.1"]))
    write("http", "infer", http(["POST /v2/models/mlp/infer HTTP/1.1", "Host: x",
                                 "Content-Type: application/json",
                                 "Content-Length: %d" % len(infer)], infer))
    write("http", "too_large", http(["POST /echo HTTP/1.1", "Host: x",
                                     "Content-Length: 100000", "Expect: 100-continue"]))
    write("http", "big_header", http(["GET /echo HTTP/1.1", "Host: x",
                                      "X-Big: " + "a" * 2000]))
    write("http", "http10", http(["HEAD /echo/stream?stream&abort HTTP/1.0"]))
    write("http", "bad_timeout", http(["OPTIONS /gone HTTP/1.1", "Host: x",
                                       "x-request-timeout-seconds: nan"]) +
          http(["PATCH /starting HTTP/1.1", "Host: x", "x-request-id: \x01bad"]))


if __name__ == "__main__":
    for target in ["config", "frame", "tensor", "http"]:
        shutil.rmtree(os.path.join(CORPUS, target), ignore_errors=True)
        os.makedirs(os.path.join(CORPUS, target))
    config_seeds()
    frame_seeds()
    tensor_seeds()
    http_seeds()
