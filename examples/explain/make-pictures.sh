#!/bin/sh
# examples/explain/make-pictures.sh: the pictures of the README's section on
# `cnngen explain`, from a fresh clone. Builds cnngen, trains the README's
# network (examples/fashion.cnn) with `make fashion` unless its weights are there already (or
# WEIGHTS=file.safetensors names others), then explains a few Fashion-MNIST
# test images (DATA=dir overrides Debian's dataset-fashion-mnist) with
# saliency and Grad-CAM. Each picture is the image, 8x, and the heat map
# over it. Run from anywhere: sh examples/explain/make-pictures.sh
set -eu
cd "$(dirname "$0")/../.."
weights=${WEIGHTS:-build/fashion.safetensors}
images=${DATA:-/usr/share/datasets/fashion-mnist}/t10k-images-idx3-ubyte.gz
out=examples/explain

make
if [ ! -f "$weights" ]; then
  if [ -n "${WEIGHTS:-}" ]; then
    echo "make-pictures.sh: $weights: no such file" >&2
    exit 1
  fi
  make fashion
fi

explain() { # INDEX NAME [OPTIONS...]
  index=$1 name=$2
  shift 2
  for method in saliency gradcam; do
    build/cnngen explain examples/fashion.cnn --weights "$weights" --method "$method" \
      --index "$index" "$images" --out "$out/$index-$name-$method.png" "$@"
  done
}

# Test images by index in t10k-images-idx3-ubyte and their true class.
explain 0 ankle-boot
explain 1 pullover
explain 2 trouser
explain 18 bag
explain 19 t-shirt
# An ankle boot the network takes for a sandal (class 5); then what speaks
# for the true class, ankle boot (9).
explain 23 ankle-boot
explain 23 ankle-boot-as-class-9 --class 9
