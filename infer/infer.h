/*
 * infer.h - the Open Inference Protocol v2 (KServe, Triton) codec: tensor
 * declarations, v2 infer requests decoded into typed tensors, and outputs
 * encoded into v2 responses, in JSON or with the binary tensor extension.
 *
 * Pure functions over memory, unit tested; the replica decodes requests
 * and encodes responses with them (so the parsing cost is spread over the
 * replicas, not paid on the proxy's one thread), and the controller and
 * proxy use the declaration helpers for model metadata.
 *
 * Why its own JSON reader: tensor data are long arrays of numbers, and a
 * general JSON library builds a node per number (jansson: about 150 us for
 * 784 floats here); reading them straight into a typed buffer is some ten
 * times faster. The reader is strict JSON (RFC 8259) all the same.
 */
#ifndef SERVE_INFER_H
#define SERVE_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "ipc/ipc.h"
#include "serve_plugin.h"

/* ---- Datatypes and declarations ---------------------------------------- */

/* "FP32" for SERVE_FP32 ...; NULL for an invalid value. */
const char *infer_datatype_name(serve_datatype dt);
/* The datatype named by the `n` bytes at `s` ("FP32", exact case), or
   SERVE_INVALID. */
serve_datatype infer_datatype_parse(const char *s, size_t n);

/* Check a deployment's declared tensors: each has a non-empty unique name,
   a valid datatype, 1..SERVE_MAX_DIMS dimensions, each >= 1 or -1;
   `optional` only on inputs. Returns 0, or -EINVAL with a message naming
   the tensor ("outputs[1] (probabilities): ...") in err. */
int infer_specs_check(const serve_deployment *dep, char *err, size_t errlen);

/* The declaration as v2 metadata JSON text (malloc'd, NULL when out of
   memory): {"inputs":[{"name":..,"datatype":..,"shape":[..]}],
   "outputs":[..]}, and "optional":true on optional inputs. */
char *infer_specs_json(const serve_deployment *dep);

/* The number of elements of a shape into *count: 0, or -EOVERFLOW when
   its data could not be addressed (more than SIZE_MAX / 8 elements). A
   dimension of 0 makes it 0 whatever the others. */
int infer_shape_elements(const int64_t *shape, int ndim, size_t *count);

/* The number of elements of BYTES data (each a 4-byte little-endian
   length and its bytes) filling `n` bytes exactly, or -1 when malformed. */
long infer_bytes_elements(const void *data, size_t n);

/* The declared tensor called `name` among `n`, or NULL. */
const serve_tensor_spec *infer_spec_find(const serve_tensor_spec *specs, size_t n,
                                         const char *name);

/* Does a tensor of this datatype and shape fit the declaration (same
   datatype and rank, each dimension equal or declared -1)? 0, or -EINVAL
   with a message in err that does not name the tensor (the caller
   prefixes it): "datatype FP64, the model declares FP32". */
int infer_shape_check(const serve_tensor_spec *spec, serve_datatype dt, const int64_t *shape,
                      int ndim, char *err, size_t errlen);

/* ---- Requests ----------------------------------------------------------- */

/* An output the client asked for, and whether as binary data. */
typedef struct infer_output_req {
    const char *name;
    int binary;
} infer_output_req;

/* A decoded infer request. Everything it points to lives in its arena and
   is released by infer_request_free. */
typedef struct infer_request {
    const char *id;            /* the request's "id", or NULL */
    serve_tensor *inputs;      /* in the order the request gave them */
    size_t n_inputs;           /* >= 1 */
    infer_output_req *outputs; /* the "outputs" the client listed */
    size_t n_outputs;          /* 0: every output */
    int binary_output;         /* parameters.binary_data_output */
    struct infer_arena *arena;
} infer_request;

/*
 * Decode the body of a POST /v2/models/{name}/infer. `header_len` is the
 * value of its Inference-Header-Content-Length header, or -1 without one:
 * then the body is JSON alone; with one, the first header_len bytes are
 * the JSON and the rest the binary data of the inputs that have
 * parameters.binary_data_size, in order.
 *
 * Checked against dep's declaration, each failing with -EINVAL and a
 * message for a 400: malformed JSON (with the byte offset), a missing or
 * empty "inputs", an unknown input or output name, an input given twice, a
 * required input missing, an unknown datatype or one other than declared,
 * a shape of the wrong rank or a dimension other than declared, a data
 * length (JSON elements or binary bytes) other than the shape's element
 * count times the datatype's size, a value out of range for its datatype
 * (300 in a UINT8, 1.5 in an INT32, a string in FP32, true in an INT64),
 * binary sizes that do not add up to the body. Data may be nested arrays
 * or flat; nesting is flattened row-major. Unknown members are ignored.
 * Out of memory is -ENOMEM.
 */
int infer_request_decode(const void *body, size_t len, long header_len, const serve_deployment *dep,
                         infer_request *out, char *err, size_t errlen);
void infer_request_free(infer_request *r);

/* ---- Responses ----------------------------------------------------------- */

/*
 * Encode a v2 infer response into `out`:
 *     {"model_name":..,"id":..,"outputs":[{"name":..,"datatype":..,
 *      "shape":[..],"data":[..]}]}
 * ("id" only when req has one). With req NULL or listing no outputs, every
 * output in `outputs` is sent, in order, binary if req->binary_output;
 * else the ones listed, in the client's order, each binary as it asked.
 * Binary outputs carry "parameters":{"binary_data_size":N} instead of
 * "data" and their bytes follow the JSON, in order. FP32 is written with 9
 * significant digits and FP64 with 17 (both round-trip exactly); BYTES as
 * JSON strings; an infinite or NaN value, which JSON cannot express, as
 * null, and a BYTES byte that is not valid UTF-8, which JSON cannot carry,
 * as U+FFFD (binary outputs keep every byte). The response is appended
 * to `out`; *json_len is the JSON part's length, which is the whole
 * response when nothing is binary (the caller then needs no
 * Inference-Header-Content-Length header).
 *
 * Returns 0; -ENOENT with a message in err when the client asked for an
 * output the handler did not produce; -EINVAL when a tensor's data do not
 * fill its shape (nothing is written then); -ENOMEM.
 */
int infer_response_encode(ipc_buf *out, const char *model_name, const infer_request *req,
                          const serve_tensor *outputs, size_t n_outputs, size_t *json_len,
                          char *err, size_t errlen);

#endif
