#!/usr/bin/python3
"""PyTorch side of `make bench` (run with Debian's /usr/bin/python3, which has torch).

Subcommands:
  prep DIR         stdlib only: DIR/params.f32 (the flat array of a raw .f32 weights file,
                   from tests/reference/fashion-pytorch.safetensors) and DIR/images.f32
                   (the first IMAGES Fashion-MNIST test images, x = byte/255, H,W,C order)
  export-onnx OUT  the same network, same weights, as ONNX opset 13 (dynamic batch)
  outputs DIR K    PyTorch's outputs for the first K images -> DIR/torch_out.f32
  infer            latency at batch 1 on 1 thread, throughput at batch 64 on 2 threads,
                   eager, jit.trace+freeze, and jit.trace+optimize_for_inference (freeze
                   plus oneDNN convolutions); the best of the three is reported
  train            images/s for an epoch at batch 32, Adam lr=0.001, sparse CE,
                   at 1 and 2 threads (env BENCH_TRAIN_IMAGES, default 60000)
  compare DIR K    stdlib only: max |difference| between the *_out.f32 files in DIR
  layer NAME SPEC [OUT.onnx]
                   one conv + ReLU (SPEC HxWxC:F:K:G, groups G) at batch 1 on 1 thread,
                   eager, channels_last and oneDNN, the best reported; OUT.onnx: the
                   same layer for ONNX Runtime

Results go to stdout as `RESULT PEER METRIC VALUE` lines that tests/bench/run collects;
everything else is commentary. Times are medians over repetitions (time.perf_counter).
"""

import array
import gzip
import json
import os
import statistics
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEIGHTS = os.path.join(ROOT, "tests", "reference", "fashion-pytorch.safetensors")
DATASET = "/usr/share/datasets/fashion-mnist"
# Section 3 order: conv1.., then dense1.., each weight then bias; the value is the
# index of the layer in the nn.Sequential that model() builds.
LAYERS = [("conv1", 0), ("conv2", 3), ("conv3", 6), ("dense1", 9), ("dense2", 11)]
N_IMAGES = 1024  # test images written by prep and cycled through by every peer


def read_safetensors(path):
    """Returns {name: (shape, array('f'))}, stdlib only."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", name
        a = array.array("f")
        a.frombytes(data[t["data_offsets"][0] : t["data_offsets"][1]])
        if sys.byteorder != "little":
            a.byteswap()
        out[name] = (t["shape"], a)
    return out


def read_idx_images(path, count):
    with gzip.open(path, "rb") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803, path
        count = min(count, n)
        return count, h, w, f.read(count * h * w)


def cmd_prep(outdir):
    os.makedirs(outdir, exist_ok=True)
    tensors = read_safetensors(WEIGHTS)
    flat = array.array("f")
    for layer, _ in LAYERS:
        for kind in ("weight", "bias"):
            flat.extend(tensors[layer + "." + kind][1])
    with open(os.path.join(outdir, "params.f32"), "wb") as f:
        flat.tofile(f)
    n, h, w, pixels = read_idx_images(os.path.join(DATASET, "t10k-images-idx3-ubyte.gz"), N_IMAGES)
    x = array.array("f", (p / 255.0 for p in pixels))
    with open(os.path.join(outdir, "images.f32"), "wb") as f:
        x.tofile(f)
    print("prep: %d parameters, %d test images %dx%d in %s" % (len(flat), n, h, w, outdir))


# ---- everything below needs torch -------------------------------------------------------


def model(softmax=True, load=True):
    import torch
    from torch import nn

    layers = [
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),  # 0 1 2
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),  # 3 4 5
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),  # 6 7 8
        nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10),  # 9 10 11
    ]  # fmt: skip
    if softmax:
        layers.append(nn.Softmax(dim=1))
    m = nn.Sequential(*layers)
    if not load:
        return m
    state = {}
    for layer, index in LAYERS:
        for kind in ("weight", "bias"):
            shape, a = read_safetensors_cached()[layer + "." + kind]
            state["%d.%s" % (index, kind)] = torch.frombuffer(bytearray(a.tobytes()), dtype=torch.float32).reshape(shape)
    m.load_state_dict(state)
    return m


_tensors = None


def read_safetensors_cached():
    global _tensors
    if _tensors is None:
        _tensors = read_safetensors(WEIGHTS)
    return _tensors


def images(n=N_IMAGES):
    import torch

    count, h, w, pixels = read_idx_images(os.path.join(DATASET, "t10k-images-idx3-ubyte.gz"), n)
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).float().div_(255.0)
    return x.reshape(count, 1, h, w)


def measure(fn, reps, target_s=0.25):
    """Median over `reps` repetitions of the mean time of one call, in seconds; each
    repetition runs enough calls to last about target_s."""
    fn()
    t0 = time.perf_counter()
    calls = 0
    while time.perf_counter() - t0 < 0.1:
        fn()
        calls += 1
    per_rep = max(1, int(calls * target_s / (time.perf_counter() - t0)))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(per_rep):
            fn()
        times.append((time.perf_counter() - t0) / per_rep)
    return statistics.median(times)


def cmd_export_onnx(out):
    import torch

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    m = model().eval()
    torch.onnx.export(
        m, torch.zeros(1, 1, 28, 28), out, opset_version=13,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )  # fmt: skip
    print("export-onnx: wrote %s" % out)


def cmd_outputs(outdir, k):
    import torch

    x = images(k)
    with torch.inference_mode():
        eager = model().eval()
        y = eager(x)
        # the fastest variant must compute the same function (at batch 1, as timed)
        onednn = torch.jit.optimize_for_inference(torch.jit.trace(eager, x[:1]).eval())
        y1 = torch.cat([onednn(x[i : i + 1]) for i in range(k)])
    print("RESULT torch_jit_onednn maxdiff %.3g" % (y1 - y).abs().max().item())
    same = bool((y1.argmax(1) == y.argmax(1)).all())
    print("RESULT torch_jit_onednn same_class %s" % ("yes" if same else "NO"))
    with open(os.path.join(outdir, "torch_out.f32"), "wb") as f:
        f.write(y.contiguous().numpy().astype("<f4").tobytes())


def cmd_infer(reps):
    import torch

    x = images()
    singles = [x[i : i + 1].clone() for i in range(64)]
    batches = [x[i : i + 64].clone() for i in range(0, x.shape[0] - 63, 64)]
    eager = model().eval()
    with torch.inference_mode():
        frozen = torch.jit.freeze(torch.jit.trace(eager, singles[0]).eval())
        # freeze + conversion of the convolutions to oneDNN (MKL-DNN) with weights
        # pre-packed: without it, Debian's build runs batch-1 3x3 convolutions through
        # im2col and the reference (netlib) BLAS.
        onednn = torch.jit.optimize_for_inference(torch.jit.trace(eager, singles[0]).eval())
    # (label, threads, batch, inputs); the value reported is µs per image at batch 1
    # and images/s at batch 64.
    configs = [("latency_b1_t1", 1, 1, singles), ("throughput_b64_t2", 2, 64, batches)]
    for metric, threads, batch, inputs in configs:
        torch.set_num_threads(threads)
        best = None
        for name, m in (("eager", eager), ("jit", frozen), ("jit_onednn", onednn)):
            with torch.inference_mode():
                i = [0]

                def step():
                    m(inputs[i[0] % len(inputs)])
                    i[0] += 1

                for _ in range(20):  # the profiling executor specializes on the first runs
                    step()
                t = measure(step, reps)
            value = t * 1e6 if batch == 1 else batch / t
            unit = "us/image" if batch == 1 else "images/s"
            print("torch %s %s: %.1f %s" % (metric, name, value, unit))
            print("RESULT torch_%s %s %.3f" % (name, metric, value))
            if best is None or t < best[1]:
                best = (name, t, value)
        print("RESULT torch %s %.3f" % (metric, best[2]))
        print("RESULT torch %s_mode %s" % (metric, best[0]))


def cmd_layer(name, spec, reps, onnx_out=None):
    """One conv layer + ReLU at batch 1 on 1 thread, as tests/bench/run's grouped and
    depthwise networks: spec HxWxC:F:K:G (KxK kernel, padding K // 2, stride 1, groups G),
    random weights, 64 random inputs cycled through. Times eager NCHW, eager channels_last and jit.trace +
    optimize_for_inference; RESULT torch_NAME latency_b1_t1 (the best) and _mode. With
    onnx_out, also exports the layer for ONNX Runtime."""
    import copy

    import torch

    dims, f, k, g = spec.split(":")
    h, w, c = (int(v) for v in dims.split("x"))
    f, k, g = int(f), int(k), int(g)
    torch.manual_seed(1)
    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(c, f, k, padding=k // 2, groups=g), torch.nn.ReLU())
    net = net.eval()
    # 64 inputs cycled through, as cnngen_infer and ort_bench.js do: each call reads an
    # input that is not in the caches
    xs = [torch.rand(1, c, h, w) for _ in range(64)]
    x = xs[0]
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    xcls = [v.contiguous(memory_format=torch.channels_last) for v in xs]
    with torch.inference_mode():
        onednn = torch.jit.optimize_for_inference(torch.jit.trace(copy.deepcopy(net), x).eval())
        best = None
        for mode, m, inps in (("eager", net, xs), ("channels_last", cl, xcls), ("jit_onednn", onednn, xs)):
            i = [0]

            def step():
                m(inps[i[0] % 64])
                i[0] += 1

            for _ in range(20):
                step()
            t = measure(step, reps)
            print("torch %s %s: %.1f us/image" % (name, mode, t * 1e6))
            if best is None or t < best[1]:
                best = (mode, t)
    print("RESULT torch_%s latency_b1_t1 %.3f" % (name, best[1] * 1e6))
    print("RESULT torch_%s latency_b1_t1_mode %s" % (name, best[0]))
    if onnx_out:
        torch.onnx.export(
            net, x, onnx_out, opset_version=13, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )  # fmt: skip


def cmd_train(n_images, threads_list, batch=32, segments=10):
    import torch
    from torch import nn

    with gzip.open(os.path.join(DATASET, "train-images-idx3-ubyte.gz"), "rb") as f:
        _, n, h, w = struct.unpack(">IIII", f.read(16))
        pixels = f.read(n * h * w)
    with gzip.open(os.path.join(DATASET, "train-labels-idx1-ubyte.gz"), "rb") as f:
        f.read(8)
        labels = f.read(n)
    xs = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).float().div_(255.0)
    xs = xs.reshape(n, 1, h, w)
    ys = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    n_images = max(batch * segments, min(n_images, n))
    steps = n_images // batch
    bounds = [steps * s // segments for s in range(segments + 1)]
    for threads in threads_list:
        torch.set_num_threads(threads)
        torch.manual_seed(1)
        m = model(softmax=False, load=False).train()  # softmax is in the loss
        opt = torch.optim.Adam(m.parameters(), lr=0.001, eps=1e-7)
        loss_fn = nn.CrossEntropyLoss()
        order = torch.randperm(n)

        def step(s):
            idx = order[(s * batch) % n : (s * batch) % n + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(m(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
            return loss

        for s in range(10):  # warm-up: allocator, first-call overheads
            step(s)
        seg_times = []
        t_all = time.perf_counter()
        for k in range(segments):
            t0 = time.perf_counter()
            for s in range(bounds[k], bounds[k + 1]):
                loss = step(s)
            seg_times.append((time.perf_counter() - t0) / (bounds[k + 1] - bounds[k]))
        whole = steps * batch / (time.perf_counter() - t_all)
        median = batch / statistics.median(seg_times)
        print("torch train %d thread(s): %d images, %.0f images/s (median of %d segments), "
              "%.0f images/s whole run, last loss %.4f"
              % (threads, steps * batch, median, segments, whole, loss.item()))  # fmt: skip
        print("RESULT torch train_t%d %.3f" % (threads, median))
    print("RESULT torch train_images %d" % (steps * batch))


def cmd_compare(outdir, k):
    outs = {}
    for peer in ("torch", "ort", "cnngen"):
        path = os.path.join(outdir, peer + "_out.f32")
        if os.path.exists(path):
            a = array.array("f")
            with open(path, "rb") as f:
                a.frombytes(f.read())
            if len(a) == k * 10:
                outs[peer] = a
    if "torch" not in outs:
        return
    for peer, a in outs.items():
        if peer == "torch":
            continue
        diff = max(abs(p - q) for p, q in zip(a, outs["torch"]))
        same = all(
            max(range(10), key=lambda c: a[i * 10 + c])
            == max(range(10), key=lambda c: outs["torch"][i * 10 + c])
            for i in range(k)
        )
        print("RESULT %s maxdiff %.3g" % (peer, diff))
        print("RESULT %s same_class %s" % (peer, "yes" if same else "NO"))


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "prep":
        cmd_prep(args[0])
    elif cmd == "export-onnx":
        cmd_export_onnx(args[0])
    elif cmd == "outputs":
        cmd_outputs(args[0], int(args[1]))
    elif cmd == "infer":
        cmd_infer(int(os.environ.get("BENCH_REPS", "7")))
    elif cmd == "train":
        threads = [int(t) for t in os.environ.get("BENCH_TRAIN_THREADS", "1,2").split(",")]
        cmd_train(int(os.environ.get("BENCH_TRAIN_IMAGES", "60000")), threads)
    elif cmd == "layer":
        cmd_layer(args[0], args[1], int(os.environ.get("BENCH_REPS", "7")), *args[2:3])
    elif cmd == "compare":
        cmd_compare(args[0], int(args[1]))
    else:
        sys.exit("torch_bench.py: unknown subcommand %r\n%s" % (cmd, __doc__))


if __name__ == "__main__":
    main(sys.argv)
