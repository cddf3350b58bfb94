#!/usr/bin/python3
"""Checks the generated fashion_explain against PyTorch's autograd.

Writes the C of examples/fashion.cnn with the weights baked in, builds a
small driver around fashion_explain with cc, and runs it on Fashion-MNIST
test images; PyTorch computes the same logit, its gradient with respect to
the image, and the last convolution's output and gradient. Prints the
largest difference of each, relative to the largest PyTorch value.

    make && /usr/bin/python3 examples/explain/check_pytorch.py [WEIGHTS]

WEIGHTS defaults to build/fashion.safetensors (make fashion). Needs Debian's
python3-torch and python3-numpy.
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGES = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
CASES = [(0, 9), (1, 2), (19, 0), (23, 5), (23, 9)]  # (test image, class)

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "fashion.h"
static fashion_work w;
static fashion_grads g;
int main(void) {
  static float x[fashion_INPUT_SIZE], dx[fashion_INPUT_SIZE], y[fashion_OUTPUT_SIZE];
  static float a[fashion_CAM_H * fashion_CAM_W * fashion_CAM_C], d[sizeof a / sizeof a[0]];
  int cls;
  while (scanf("%d", &cls) == 1) {
    for (int i = 0; i < fashion_INPUT_SIZE; i++)
      if (scanf("%f", &x[i]) != 1)
        return 1;
    float s = fashion_explain(&fashion_trained, &w, &g, x, cls, y, dx, a, d);
    printf("%.9g\n", s);
    for (int i = 0; i < fashion_INPUT_SIZE; i++)
      printf("%.9g ", dx[i]);
    printf("\n");
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
      printf("%.9g ", a[i]);
    printf("\n");
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
      printf("%.9g ", d[i]);
    printf("\n");
  }
  return 0;
}
"""


def read_safetensors(path):
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    tensors = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        s, e = v["data_offsets"]
        data = np.frombuffer(blob[8 + n + s:8 + n + e], dtype=np.float32)
        tensors[name] = torch.tensor(data.reshape(v["shape"]).copy())
    return tensors


def reference(T, image, cls):
    x = torch.tensor(image, dtype=torch.float32).reshape(1, 1, 28, 28).requires_grad_(True)
    z = F.max_pool2d(F.relu(F.conv2d(x, T["conv1.weight"], T["conv1.bias"])), 2)
    z = F.max_pool2d(F.relu(F.conv2d(z, T["conv2.weight"], T["conv2.bias"])), 2)
    a = F.relu(F.conv2d(z, T["conv3.weight"], T["conv3.bias"]))
    a.retain_grad()
    z = F.relu(F.linear(a.flatten(1), T["dense1.weight"], T["dense1.bias"]))
    logit = F.linear(z, T["dense2.weight"], T["dense2.bias"])[0, cls]
    logit.backward()
    hwc = lambda t: t.detach().numpy()[0].transpose(1, 2, 0).reshape(-1)  # as the C: H, W, C
    return logit.item(), x.grad.numpy().reshape(-1), hwc(a), hwc(a.grad)


def main():
    weights = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/fashion.safetensors")
    images = np.frombuffer(gzip.open(IMAGES).read()[16:], dtype=np.uint8).reshape(-1, 28, 28)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([os.path.join(ROOT, "build/cnngen"), os.path.join(ROOT, "examples/fashion.cnn"),
                        "-o", os.path.join(tmp, "fashion.c"), "--weights", weights], check=True)
        open(os.path.join(tmp, "driver.c"), "w").write(DRIVER)
        subprocess.run(["cc", "-O2", "-o", os.path.join(tmp, "driver"), os.path.join(tmp, "driver.c"),
                        os.path.join(tmp, "fashion.c"), "-lm"], check=True)
        feed = ""
        for index, cls in CASES:
            feed += f"{cls}\n" + " ".join(repr(float(np.float32(b / 255.0))) for b in images[index].reshape(-1)) + "\n"
        out = subprocess.run([os.path.join(tmp, "driver")], input=feed, capture_output=True, text=True,
                             check=True).stdout.split("\n")
    T = read_safetensors(weights)
    print("image class   logit (C / PyTorch)       dx      cam_act  cam_grad  (max |C - PyTorch| / max |PyTorch|)")
    worst = 0.0
    for k, (index, cls) in enumerate(CASES):
        s, dx, act, grad = (np.array(line.split(), dtype=np.float64) for line in out[4 * k:4 * k + 4])
        rs, rdx, ract, rgrad = reference(T, images[index] / 255.0, cls)
        rel = [float(np.abs(c - r).max() / np.abs(r).max()) for c, r in ((dx, rdx), (act, ract), (grad, rgrad))]
        worst = max([worst] + rel)
        print(f"{index:5d} {cls:5d}   {s[0]:9.5f} / {rs:9.5f}   {rel[0]:.1e}  {rel[1]:.1e}  {rel[2]:.1e}")
    print(f"largest relative difference: {worst:.1e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
