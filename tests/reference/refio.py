"""refio: the files of tests/reference, stdlib only (no torch, no numpy).

Used by make-reference, train-fashion-pytorch and check:
  read_safetensors(path)                   -> ({name: (shape, [floats])}, metadata)
  write_safetensors(path, tensors, meta)   tensors: [(name, shape, [floats])], F32, atomic
  read_idx(path)                           -> (dims, bytes); PATH or PATH.gz
  write_idx(path, dims, data)              u8 IDX file, atomic
"""
import array
import gzip
import json
import os
import struct
import sys


def _atomic_write(path, blob):
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            continue
        s, e = t["data_offsets"]
        a = array.array("f")
        a.frombytes(blob[base + s:base + e])
        if sys.byteorder != "little":
            a.byteswap()
        out[name] = (tuple(t["shape"]), a.tolist())
    return out, meta


def write_safetensors(path, tensors, meta):
    """tensors: list of (name, shape, flat values), written F32 in that order."""
    header = {"__metadata__": {k: str(v) for k, v in meta.items()}}
    data = array.array("f")
    for name, shape, values in tensors:
        start = len(data) * 4
        data.extend(values)
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [start, len(data) * 4]}
    if sys.byteorder != "little":
        data.byteswap()
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    _atomic_write(path, struct.pack("<Q", len(text)) + text + data.tobytes())


def read_idx(path):
    """(dims, data) of a u8 IDX file; PATH or, where it is missing, PATH.gz."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        blob = f.read()
    zero, kind, ndim = struct.unpack(">HBB", blob[:4])
    if zero != 0 or kind != 8:
        raise ValueError("%s: not a u8 IDX file" % path)
    dims = struct.unpack(">%dI" % ndim, blob[4:4 + 4 * ndim])
    return dims, blob[4 + 4 * ndim:]


def write_idx(path, dims, data):
    head = struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(">%dI" % len(dims), *dims)
    _atomic_write(path, head + bytes(data))
