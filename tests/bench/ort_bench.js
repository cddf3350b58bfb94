#!/usr/bin/env node
// ONNX Runtime side of `make bench` (npm package onnxruntime-node, CPU provider).
//
//   node ort_bench.js MODEL.onnx IMAGES.f32 [OUT.f32 K]
//   node ort_bench.js MODEL.onnx IMAGES.f32 - 0 NAME CxHxW
//
// Measures latency at batch 1 on 1 thread and throughput at batch 64 on 2 threads
// (intraOpNumThreads 1 / 2, graphOptimizationLevel 'all'), each the median over
// BENCH_REPS repetitions of the mean time of one session.run(). With OUT.f32 K, also
// writes the outputs for the first K images (the sanity check against PyTorch).
// Results go to stdout as `RESULT ort METRIC VALUE` lines that tests/bench/run collects.
// The second form times a model of input [N, C, H, W] (a grouped or depthwise layer) at
// batch 1 on 1 thread only, as `RESULT ort_NAME latency_b1_t1 VALUE`.
'use strict';

const fs = require('fs');
const ort = require('onnxruntime-node');

let IMAGE = 28 * 28;
let DIMS = [1, 28, 28];

function now() {
  return Number(process.hrtime.bigint()) / 1e9;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Median over `reps` repetitions of the mean seconds per call; each repetition runs
// enough calls to last about targetS.
async function measure(fn, reps, targetS = 0.25) {
  for (let i = 0; i < 20; i++) await fn();
  let calls = 0;
  const t0 = now();
  while (now() - t0 < 0.1) {
    await fn();
    calls++;
  }
  const perRep = Math.max(1, Math.floor((calls * targetS) / (now() - t0)));
  const times = [];
  for (let r = 0; r < reps; r++) {
    const t = now();
    for (let i = 0; i < perRep; i++) await fn();
    times.push((now() - t) / perRep);
  }
  return median(times);
}

async function session(model, threads) {
  return ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
}

function batches(images, batch) {
  const out = [];
  const n = Math.floor(images.length / IMAGE);
  for (let i = 0; i + batch <= n; i += batch) {
    const data = images.slice(i * IMAGE, (i + batch) * IMAGE);
    out.push({x: new ort.Tensor('float32', data, [batch, ...DIMS])});
  }
  return out;
}

async function main() {
  const [model, imagesPath, outPath, k, name, dims] = process.argv.slice(2);
  let peer = 'ort';
  if (dims) {
    DIMS = dims.split('x').map(Number);
    IMAGE = DIMS[0] * DIMS[1] * DIMS[2];
    peer = `ort_${name}`;
  }
  const reps = parseInt(process.env.BENCH_REPS || '7', 10);
  const buf = fs.readFileSync(imagesPath);
  const images = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);

  if (outPath && outPath !== '-') {
    const s = await session(model, 1);
    const n = parseInt(k, 10);
    const x = new ort.Tensor('float32', images.slice(0, n * IMAGE), [n, 1, 28, 28]);
    const y = (await s.run({x})).y.data;
    fs.writeFileSync(outPath, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  }

  const configs = [
    ['latency_b1_t1', 1, 1],
    ['throughput_b64_t2', 2, 64],
  ].slice(0, dims ? 1 : 2);
  for (const [metric, threads, batch] of configs) {
    const s = await session(model, threads);
    const feeds = batches(images, batch);
    let i = 0;
    const t = await measure(() => s.run(feeds[i++ % feeds.length]), reps);
    const value = batch === 1 ? t * 1e6 : batch / t;
    console.log(`${peer} ${metric}: ${value.toFixed(1)} ${batch === 1 ? 'us/image' : 'images/s'}`);
    console.log(`RESULT ${peer} ${metric} ${value.toFixed(3)}`);
    await s.release();
  }
  console.log(`RESULT ort version ${ort.env.versions.node || ort.env.versions.common}`);
}

main().catch((e) => {
  console.error(`ort_bench.js: ${e.message || e}`);
  process.exit(1);
});
