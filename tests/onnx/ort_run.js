#!/usr/bin/env node
// Runs an ONNX model with ONNX Runtime (the npm package onnxruntime-node that
// tests/bench installs: cd tests/bench && npm ci --ignore-scripts), for tests/test_onnx_peers.c.
//
//   node tests/onnx/ort_run.js MODEL.onnx IN.f32 N C H W OUT.f32
//
// IN.f32 holds N images [C][H][W] as little-endian floats; OUT.f32 gets the model's one
// output for them. Exit status 77 when onnxruntime-node is not installed.
'use strict';

const fs = require('fs');
const path = require('path');

let ort;
try {
  ort = require(require.resolve('onnxruntime-node', {paths: [path.join(__dirname, '..', 'bench')]}));
} catch (e) {
  console.error('onnxruntime-node is not installed (cd tests/bench && npm ci --ignore-scripts)');
  process.exit(77);
}

async function main() {
  const [model, inPath, n, c, h, w, outPath] = process.argv.slice(2);
  const buf = fs.readFileSync(inPath);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const s = await ort.InferenceSession.create(model, {executionProviders: ['cpu']});
  const dims = [n, c, h, w].map((v) => parseInt(v, 10));
  const feeds = {[s.inputNames[0]]: new ort.Tensor('float32', x, dims)};
  const y = (await s.run(feeds))[s.outputNames[0]].data;
  fs.writeFileSync(outPath, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
