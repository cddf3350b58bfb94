#!/usr/bin/python3
"""Trains a .cnn network (examples/resnet.cnn by default) with PyTorch, from cnngen's start.

usage: examples/resnet/pytorch.py [--net NET.cnn] [--init W.safetensors] [--data DIR]
                                  [--epochs N] [--stop-after N] [--threads N] [--cnngen BIN]

The network is read from the .cnn file (the layers these examples use: conv2d with
stride, padding, groups, bias=false and an activation, batchnorm with momentum and eps,
maxpool, avgpool, globalavgpool, flatten, dense, relu, residual { ... shortcut { ... } }),
and so is its train block
(adam with lr, beta1, beta2, eps; schedule cosine [min_lr] [warmup]; label_smoothing;
batch; epochs; augment hflip, crop). Anything else is refused, so the two trainers
cannot quietly train different things. The starting weights are cnngen's own:
`cnngen train NET --epochs 0 --out INIT` writes them (Glorot-uniform from the seed),
which this script runs when --init is not given. Each epoch shuffles the training set,
augments as cnngen does (mirror with probability 1/2, then pad and crop at a random
offset; the draws are PyTorch's, not cnngen's), sets the learning rate of every step by
the formulas of docs/language.md, and prints the training loss and accuracy, the test
loss and accuracy, the rate, the seconds and images/s. Needs Debian's python3-torch.
"""
import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import refio  # noqa: E402


def refuse(path, lineno, what):
    sys.exit("pytorch.py: error: %s:%d: %s (this script knows only what the examples use)"
             % (path, lineno, what))


def options(words):
    """'k=v' words into a dict, the others into a list."""
    kv, bare = {}, []
    for w in words:
        if "=" in w:
            k, v = w.split("=", 1)
            kv[k] = v
        else:
            bare.append(w)
    return kv, bare


class Residual(nn.Module):
    def __init__(self, main, shortcut):
        super().__init__()
        self.main, self.shortcut = main, shortcut

    def forward(self, x):
        return self.main(x) + self.shortcut(x)


def parse(path):
    """The network as an nn.Sequential (logits: a final softmax is left to the loss), the
    names of its parameterized layers in cnngen's order, and the train block as a dict."""
    lines = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            words = line.split("#", 1)[0].split()
            if words:
                lines.append((lineno, words))
    names, train, count = [], {}, {"conv": 0, "dense": 0, "bn": 0}
    pos = 0

    def layers(c, h, w, block_in):
        """Layers up to a closing '}' (or the end of the file). block_in: the shape the
        enclosing residual block starts from (for its shortcut). Returns the layers, the
        shortcut's layers (None: none) and the shape after them."""
        nonlocal pos
        out = []
        while pos < len(lines):
            lineno, words = lines[pos]
            pos += 1
            op = words[0]
            kv, bare = options(words[1:])
            if op == "}":
                return out, None, c, h, w
            if op in ("network", "classes"):
                continue
            if op == "input":
                h, w, c = (int(v) for v in words[1].split("x"))
                continue
            if op == "train":
                while lines[pos][1][0] != "}":
                    train[lines[pos][1][0]] = (lines[pos][0], lines[pos][1][1:])
                    pos += 1
                pos += 1
                continue
            act = [a for a in bare if a in ("relu", "softmax", "linear")]
            if op == "conv2d":
                count["conv"] += 1
                names.append(kv.get("name", "conv%d" % count["conv"]))
                f = int(bare[0])
                kh, kw = (int(v) for v in (bare[1].split("x") * 2)[:2])
                s = int(kv.get("stride", "1"))
                p = kv.get("padding", "valid")
                if p == "same" and s == 1 and kh % 2 and kw % 2:
                    ph, pw = kh // 2, kw // 2
                elif p == "valid":
                    ph = pw = 0
                elif p.isdigit():
                    ph = pw = int(p)
                else:
                    refuse(path, lineno, "padding=%s" % p)
                g = int(kv.get("groups", "1"))
                out.append(nn.Conv2d(c, f, (kh, kw), stride=s, padding=(ph, pw), groups=g,
                                     bias=kv.get("bias", "true") != "false"))
                c, h, w = f, (h + 2 * ph - kh) // s + 1, (w + 2 * pw - kw) // s + 1
            elif op == "dense":
                count["dense"] += 1
                names.append(kv.get("name", "dense%d" % count["dense"]))
                out.append(nn.Linear(c * h * w, int(bare[0]),
                                     bias=kv.get("bias", "true") != "false"))
                c, h, w = int(bare[0]), 1, 1
            elif op == "batchnorm":
                count["bn"] += 1
                names.append(kv.get("name", "bn%d" % count["bn"]))
                bn = nn.BatchNorm2d if h * w > 1 else nn.BatchNorm1d
                out.append(bn(c, eps=float(kv.get("eps", "1e-5")),
                              momentum=float(kv.get("momentum", "0.1"))))
            elif op in ("maxpool", "avgpool"):
                k = tuple(int(v) for v in (bare[0].split("x") * 2)[:2])
                s = (int(kv["stride"]),) * 2 if "stride" in kv else k
                out.append((nn.MaxPool2d if op == "maxpool" else nn.AvgPool2d)(k, s))
                h, w = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
            elif op == "globalavgpool":
                out += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
                h = w = 1
            elif op == "flatten":
                out.append(nn.Flatten())
            elif op in ("relu", "softmax"):
                act = [op]
            elif op == "residual":
                main, short, mc, mh, mw = layers(c, h, w, (c, h, w))
                out.append(Residual(nn.Sequential(*main), nn.Sequential(*(short or []))))
                c, h, w = mc, mh, mw
            elif op == "shortcut" and block_in:
                short, _, _, _, _ = layers(*block_in, None)
                if pos >= len(lines) or lines[pos][1] != ["}"]:
                    refuse(path, lineno, "a shortcut { } must be its block's last statement")
                pos += 1
                return out, short, c, h, w
            else:
                refuse(path, lineno, "'%s'" % op)
            if "relu" in act:
                out.append(nn.ReLU())
        return out, None, c, h, w

    body, _, _, _, _ = layers(0, 0, 0, None)
    return nn.Sequential(*body), names, train


def recipe(path, train):
    """The train block's settings, refusing what this script does not implement."""
    r = {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "min_lr": 0.0, "warmup": 0,
         "cosine": False, "smoothing": 0.0, "batch": 32, "epochs": 5, "hflip": False, "crop": 0}
    for key, (lineno, words) in train.items():
        kv, bare = options(words)
        if key == "loss" and words == ["sparse_categorical_crossentropy"]:
            continue
        if key == "optimizer" and bare == ["adam"] and set(kv) <= {"lr", "beta1", "beta2", "eps"}:
            r.update({k: float(v) for k, v in kv.items()})
        elif key == "schedule" and bare in (["cosine"], ["constant"]) \
                and set(kv) <= {"min_lr", "warmup"}:
            r["cosine"] = bare == ["cosine"]
            r["min_lr"] = float(kv.get("min_lr", 0))
            r["warmup"] = int(kv.get("warmup", 0))
        elif key == "label_smoothing":
            r["smoothing"] = float(words[0])
        elif key in ("batch", "epochs"):
            r[key] = int(words[0])
        elif key == "augment" and set(bare) <= {"hflip"} and set(kv) <= {"crop"}:
            r["hflip"] = "hflip" in bare
            r["crop"] = int(kv.get("crop", 0))
        else:
            refuse(path, lineno, "'%s %s'" % (key, " ".join(words)))
    return r


def rate(r, t, steps_per_epoch):
    """The learning rate of step t (docs/language.md, Training: the train block)."""
    total, warm = r["epochs"] * steps_per_epoch, r["warmup"] * steps_per_epoch
    if t < warm:
        return r["lr"] * (t + 1) / warm
    if not r["cosine"]:
        return r["lr"]
    t, total = t - warm, total - warm
    return r["min_lr"] + (r["lr"] - r["min_lr"]) * (1 + math.cos(math.pi * t / total)) / 2


def augment(x, r, gen):
    """hflip (probability 1/2), then pad r['crop'] zeros and crop back at a random offset."""
    n, _, h, w = x.shape
    if r["hflip"]:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    p = r["crop"]
    if p:
        padded = nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, 1, h, w + 2 * p)
        padded = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, 1, h, w)
        x = padded.gather(3, cols)
    return x


def load(data, split):
    (n, h, w), pixels = refio.read_idx(os.path.join(data, "%s-images-idx3-ubyte" % split))
    _, labels = refio.read_idx(os.path.join(data, "%s-labels-idx1-ubyte" % split))
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).to(torch.float32) / 255.0
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).to(torch.int64)
    return x.reshape(n, 1, h, w), y  # NCHW; C = 1, so the same bytes as cnngen's NHWC


def evaluate(m, x, y):
    """Mean cross-entropy (no smoothing) and accuracy."""
    m.eval()
    with torch.no_grad():
        logits = torch.cat([m(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    m.train()
    loss = nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(1) == y).double().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default=os.path.join(ROOT, "examples", "resnet.cnn"))
    ap.add_argument("--init", help="starting weights (default: cnngen's, written to a temp file)")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, help="override the train block's epochs")
    ap.add_argument("--stop-after", type=int, metavar="N",
                    help="stop after N epochs, the schedule still that of the whole run "
                         "(to compare the first epochs of a long run)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--cnngen", default=os.path.join(ROOT, "build", "cnngen"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    m, names, train = parse(args.net)
    r = recipe(args.net, train)
    if args.epochs:
        r["epochs"] = args.epochs
    init = args.init
    if not init:
        init = os.path.join(tempfile.mkdtemp(), "init.safetensors")
        subprocess.run([args.cnngen, "train", args.net, "--epochs", "0", "--out", init,
                        "--data", args.data, "--backend", "tcc"], check=True,
                       stdout=subprocess.DEVNULL)
    weights, _ = refio.read_safetensors(init)
    kinds = {nn.Conv2d: ("weight", "bias"), nn.Linear: ("weight", "bias"),
             nn.BatchNorm2d: ("weight", "bias", "running_mean", "running_var"),
             nn.BatchNorm1d: ("weight", "bias", "running_mean", "running_var")}
    params = [l for l in m.modules() if type(l) in kinds]
    tensors = {"%s.%s" % (n, k): getattr(l, k) for n, l in zip(names, params)
               for k in kinds[type(l)] if getattr(l, k) is not None}
    # num_batches_tracked, where the file has it, only counts (the momentum is given)
    given = {k for k in weights if not k.endswith(".num_batches_tracked")}
    if set(tensors) != given:
        sys.exit("pytorch.py: error: %s has %s, the network %s"
                 % (init, sorted(given), sorted(tensors)))
    with torch.no_grad():
        for key, t in tensors.items():  # every parameter and statistic from the file
            shape, values = weights[key]
            t.copy_(torch.tensor(values).reshape(shape))
    x, y = load(args.data, "train")
    tx, ty = load(args.data, "t10k")
    opt = torch.optim.Adam(m.parameters(), lr=r["lr"], betas=(r["beta1"], r["beta2"]),
                           eps=r["eps"])
    gen = torch.Generator().manual_seed(1)
    batch, steps = r["batch"], (len(x) + r["batch"] - 1) // r["batch"]
    print("training %s with PyTorch %s: %d images (%d test), batch %d, %d epochs, adam, "
          "%d threads" % (os.path.basename(args.net), torch.__version__, len(x), len(tx), batch,
                          r["epochs"], torch.get_num_threads()), flush=True)
    t_all, t = time.time(), 0
    for epoch in range(min(r["epochs"], args.stop_after or r["epochs"])):
        t0 = time.time()
        order = torch.randperm(len(x), generator=gen)
        total, right = 0.0, 0
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            xb, yb = augment(x[idx], r, gen), y[idx]
            lr = rate(r, t, steps)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad()
            logits = m(xb)
            loss = nn.functional.cross_entropy(logits, yb, label_smoothing=r["smoothing"])
            loss.backward()
            opt.step()
            t += 1
            total += loss.item() * len(idx)
            right += (logits.argmax(1) == yb).sum().item()
        seconds = time.time() - t0
        test_loss, test_acc = evaluate(m, tx, ty)
        print("epoch %d/%d  loss %.4f  accuracy %.4f  test loss %.4f  test accuracy %.4f  lr %g  "
              "%.1f s  %.0f images/s" % (epoch + 1, r["epochs"], total / len(x), right / len(x),
                                         test_loss, test_acc, lr, seconds, len(x) / seconds),
              flush=True)
    print("trained in %.1f s (%d threads)" % (time.time() - t_all, torch.get_num_threads()))


if __name__ == "__main__":
    main()
