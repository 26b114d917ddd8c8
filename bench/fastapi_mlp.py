"""FastAPI peer of the model benchmark: the MLP of examples/mlp in numpy.

It reads the same weights file (examples/mlp/weights.bin, format in
examples/mlp/model.h) and serves the same two endpoints as the C plugin, so
the benchmark sends both identical bodies:

    POST /v2/models/mlp/infer   v2 JSON: inputs[0] "input" FP32 [n, 784], data
                                flat or nested -> outputs "probabilities" FP32
                                [n, 10] and "class" INT64 [n]
    POST /v2/models/mlp_typed/infer   the same with the body declared as pydantic
                                models (FastAPI's usual style; flat data only)
    POST /mlp                   {"instances": [[784 numbers], ...]} (or one flat
                                instance) -> {"predictions": [{"class": k,
                                "probabilities": [10 numbers]}, ...]}

Run with Debian's python, which sees the Debian packages (python3-fastapi,
-uvicorn, -uvloop, -httptools, -numpy), on uvloop + httptools (the asyncio
loop lacks TCP_NODELAY, see ../shared/bench-notes.md), 1 worker, no access log:

    /usr/bin/python3 bench/fastapi_mlp.py --port PORT [--weights FILE]

The endpoints are `async def`: the work is short and CPU-bound, and with one
worker a thread pool (a plain `def`) would only add a hand-off per request.
"""
import argparse
import json
import os
from typing import List, Optional

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

N_IN, N_OUT = 784, 10
DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                               "mlp", "weights.bin")


class TensorIn(BaseModel):
    name: str
    datatype: str
    shape: List[int]
    data: List[float]  # flat: what the benchmark sends


class InferRequest(BaseModel):
    id: Optional[str] = None
    inputs: List[TensorIn]


class TensorOut(BaseModel):
    name: str
    datatype: str
    shape: List[int]
    data: List[float]


class InferResponse(BaseModel):
    model_name: str
    id: Optional[str] = None
    outputs: List[TensorOut]


class BadRequest(Exception):
    """A request the model cannot take: answered 400 {"error": reason}."""


def load_weights(path):
    """W1, b1, W2, b2 from the weights file, checked as model.c checks it."""
    with open(path, "rb") as f:
        if f.read(4) != b"MLP1":
            raise SystemExit(f"{path}: bad magic: not an MLP weights file (expected \"MLP1\")")
    n_in, n_hidden, n_out = (int(v) for v in np.fromfile(path, dtype="<u4", count=3, offset=4))
    values = np.fromfile(path, dtype="<f4", offset=16)
    sizes = [n_hidden * n_in, n_hidden, n_out * n_hidden, n_out]
    if (n_in, n_out) != (N_IN, N_OUT) or values.size != sum(sizes):
        raise SystemExit(f"{path}: expected a {N_IN}-H-{N_OUT} network of "
                         f"{sum(sizes)} floats, found {n_in}-{n_hidden}-{n_out} and {values.size}")
    w1, b1, w2, b2 = np.split(values, np.cumsum(sizes)[:-1])
    return w1.reshape(n_hidden, n_in), b1, w2.reshape(n_out, n_hidden), b2


def create_app(weights_path):
    w1, b1, w2, b2 = load_weights(weights_path)
    app = FastAPI()

    def forward(x):
        """Class probabilities of n samples (n x 784 float32): softmax(relu(x W1' + b1) W2' + b2)."""
        h = np.maximum(x @ w1.T + b1, 0.0)
        logits = h @ w2.T + b2
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def json_response(obj, status=200):
        return Response(json.dumps(obj), status_code=status, media_type="application/json")

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def read_json(request):
        try:
            return json.loads(await request.body())
        except ValueError as e:
            raise BadRequest(f"invalid JSON: {e}")

    def v2_samples(body):
        """The "input" tensor of a v2 request as an n x 784 float32 array."""
        inputs = body.get("inputs") if isinstance(body, dict) else None
        tensor = next((t for t in inputs or [] if t.get("name") == "input"), None)
        if tensor is None or tensor.get("datatype") != "FP32":
            raise BadRequest("expected an input \"input\" of datatype FP32")
        shape = tensor.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and shape[1] == N_IN and shape[0] >= 1):
            raise BadRequest(f"input: shape {shape}: expected [n, {N_IN}]")
        try:
            x = np.asarray(tensor.get("data"), dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise BadRequest("input: data: expected numbers")
        if x.size != shape[0] * N_IN:
            raise BadRequest(f"input: {x.size} values for shape {shape}")
        return x.reshape(shape[0], N_IN)

    def instances_samples(body):
        """The samples of {"instances": ...} as an n x 784 float32 array."""
        instances = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(instances, list) or not instances:
            raise BadRequest(f"expected {{\"instances\": [[{N_IN} numbers], ...]}}")
        flat = not isinstance(instances[0], list)
        rows = [instances] if flat else instances
        for i, row in enumerate(rows):
            name = "instances" if flat else f"instances[{i}]"
            if not isinstance(row, list):
                raise BadRequest(f"{name}: expected an array of {N_IN} numbers")
            if len(row) != N_IN:
                raise BadRequest(f"{name}: expected {N_IN} numbers, got {len(row)}")
        try:
            return np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError):
            raise BadRequest("instances: expected numbers")

    @app.post("/v2/models/mlp/infer")
    async def infer(request: Request):
        body = await read_json(request)
        x = v2_samples(body)
        probs = forward(x)
        n = x.shape[0]
        outputs = [
            {"name": "probabilities", "datatype": "FP32", "shape": [n, N_OUT],
             "data": probs.ravel().tolist()},
            {"name": "class", "datatype": "INT64", "shape": [n],
             "data": probs.argmax(axis=1).tolist()},
        ]
        wanted = {o.get("name") for o in body.get("outputs") or []}
        answer = {"model_name": "mlp",
                  "outputs": [o for o in outputs if not wanted or o["name"] in wanted]}
        if "id" in body:
            answer["id"] = body["id"]
        return json_response(answer)

    @app.post("/v2/models/mlp_typed/infer")
    async def infer_typed(req: InferRequest):
        """The same, written as FastAPI's documentation (and KServe's Python
        server) write it: the body declared as pydantic models, which parse
        and validate it."""
        tensor = next((t for t in req.inputs if t.name == "input"), None)
        if tensor is None or tensor.datatype != "FP32" or len(tensor.shape) != 2:
            raise BadRequest("expected an input \"input\" FP32 [n, 784]")
        x = np.asarray(tensor.data, dtype=np.float32)
        if x.size != tensor.shape[0] * N_IN:
            raise BadRequest(f"input: {x.size} values for shape {tensor.shape}")
        probs = forward(x.reshape(tensor.shape[0], N_IN))
        n = x.shape[0] // N_IN
        return InferResponse(model_name="mlp", id=req.id, outputs=[
            TensorOut(name="probabilities", datatype="FP32", shape=[n, N_OUT],
                      data=probs.ravel().tolist()),
            TensorOut(name="class", datatype="INT64", shape=[n],
                      data=probs.argmax(axis=1).tolist())])

    @app.post("/mlp")
    async def predict(request: Request):
        probs = forward(instances_samples(await read_json(request)))
        return json_response({"predictions": [
            {"class": int(p.argmax()), "probabilities": p.tolist()} for p in probs]})

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS)
    args = parser.parse_args()
    uvicorn.run(create_app(args.weights), host=args.host, port=args.port, loop="uvloop",
                http="httptools", workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
