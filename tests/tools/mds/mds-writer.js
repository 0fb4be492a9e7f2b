#!/usr/bin/env node
// An MDS (MosaicML Streaming) writer for tests, written from the published format (the
// MDSWriter / MDSReader documentation and encodings of mosaicml-streaming, layout "version": 2 as
// written by streaming 0.7+, which puts the writer's JSON config between the sample table and the
// samples). It shares no code with longmixd's reader (C); the real Python library is not
// installable here, so this is the independent writer the reader is tested against.
//
//   node mds-writer.js OUT_DIR --columns NAME:ENCODING,... [--size-limit BYTES]
//        [--compression zstd[:L]|gz[:L]] [--keep-raw] [--no-config] < samples.jsonl
//
// One JSON object per input line = one sample. Values by encoding:
//   str, str_int, json            a string / an integer / any JSON value
//   int, uint8..int64              a number (scalars, fixed size)
//   bytes                          {"dtype": "uint16|uint32|int32|int64", "values": [ints]}
//   ndarray:DTYPE[:SHAPE]          [ints] or {"shape": [..], "values": [ints]}
//   ndarray                        {"dtype": "...", "values": [ints], "shape"?: [..]}
// Columns are stored sorted by name, as MDSWriter does. Shards: shard.NNNNN.mds (+ .zstd/.gz,
// compressed with the zstd CLI / node's zlib; the raw file is removed unless --keep-raw).
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { execFileSync } = require('child_process');

const DTYPES = { uint8: [8, 1], int8: [9, 1], uint16: [16, 2], int16: [17, 2], uint32: [32, 4], int32: [33, 4],
                 uint64: [64, 8], int64: [65, 8] };

function usage(msg) {
  process.stderr.write(`mds-writer: ${msg}\n`);
  process.exit(2);
}

function packInts(values, dtype) {
  const [, size] = DTYPES[dtype] || usage(`unknown dtype ${dtype}`);
  const buf = Buffer.alloc(values.length * size);
  values.forEach((v, i) => {
    const o = i * size;
    switch (dtype) {
      case 'uint8': buf.writeUInt8(v, o); break;
      case 'int8': buf.writeInt8(v, o); break;
      case 'uint16': buf.writeUInt16LE(v, o); break;
      case 'int16': buf.writeInt16LE(v, o); break;
      case 'uint32': buf.writeUInt32LE(v, o); break;
      case 'int32': buf.writeInt32LE(v, o); break;
      case 'uint64': buf.writeBigUInt64LE(BigInt(v), o); break;
      case 'int64': buf.writeBigInt64LE(BigInt(v), o); break;
    }
  });
  return buf;
}

// Shape header of a dynamic-shape ndarray: one byte (ndim << 2 | width code), then the dims in
// the smallest unsigned width that holds the largest.
function shapeHeader(shape) {
  const max = Math.max(...shape);
  const code = max < 256 ? 0 : max < 65536 ? 1 : max < 2 ** 32 ? 2 : 3;
  const dt = ['uint8', 'uint16', 'uint32', 'uint64'][code];
  return Buffer.concat([Buffer.from([(shape.length << 2) | code]), packInts(shape, dt)]);
}

// [encoded bytes, fixed size or null] of one column.
function columnSize(enc) {
  if (enc === 'int') return 8;
  if (DTYPES[enc]) return DTYPES[enc][1];
  const m = /^ndarray:(\w+):([\d,]+)$/.exec(enc);
  if (m) return m[2].split(',').reduce((a, d) => a * Number(d), 1) * DTYPES[m[1]][1];
  return null;
}

function encode(enc, v) {
  if (enc === 'str') return Buffer.from(v, 'utf8');
  if (enc === 'str_int') return Buffer.from(String(v), 'utf8');
  if (enc === 'json') return Buffer.from(JSON.stringify(v), 'utf8');
  if (enc === 'int') return packInts([v], 'int64');
  if (DTYPES[enc]) return packInts([v], enc);
  if (enc === 'bytes') return packInts(v.values, v.dtype);
  const m = /^ndarray(?::(\w+))?(?::([\d,]+))?$/.exec(enc);
  if (!m) usage(`encoding ${enc} not supported by this test writer`);
  const values = Array.isArray(v) ? v : v.values;
  const shape = (!Array.isArray(v) && v.shape) || [values.length];
  const dtype = m[1] || v.dtype;
  const parts = [];
  if (!m[1]) parts.push(Buffer.from([DTYPES[dtype][0]]));
  if (!m[2]) parts.push(shapeHeader(shape));
  parts.push(packInts(values, dtype));
  return Buffer.concat(parts);
}

function main() {
  const args = process.argv.slice(2);
  const out = args.shift();
  let columns = null, sizeLimit = 1 << 26, compression = null, keepRaw = false, withConfig = true;
  while (args.length) {
    const a = args.shift();
    if (a === '--columns') columns = args.shift();
    else if (a === '--size-limit') sizeLimit = Number(args.shift());
    else if (a === '--compression') compression = args.shift();
    else if (a === '--keep-raw') keepRaw = true;
    else if (a === '--no-config') withConfig = false;
    else usage(`unknown argument ${a}`);
  }
  if (!out || !columns) usage('want OUT_DIR --columns NAME:ENCODING,...');
  const cols = columns.split(',').map((c) => {
    const i = c.indexOf(':');
    return { name: c.slice(0, i), enc: c.slice(i + 1) };
  }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const config = {
    column_encodings: cols.map((c) => c.enc),
    column_names: cols.map((c) => c.name),
    column_sizes: cols.map((c) => columnSize(c.enc)),
    compression,
    format: 'mds',
    hashes: [],
    size_limit: sizeLimit,
    version: 2,
  };
  const configBytes = withConfig ? Buffer.from(JSON.stringify(config), 'utf8') : Buffer.alloc(0);
  fs.mkdirSync(out, { recursive: true });
  const shards = [];
  let samples = [], bytes = 0;

  function flush() {
    if (!samples.length) return;
    const n = samples.length;
    const head = Buffer.alloc(4 + 4 * (n + 1));
    head.writeUInt32LE(n, 0);
    let off = head.length + configBytes.length;
    samples.forEach((s, i) => { head.writeUInt32LE(off, 4 + 4 * i); off += s.length; });
    head.writeUInt32LE(off, 4 + 4 * n);
    const raw = Buffer.concat([head, configBytes, ...samples]);
    const base = `shard.${String(shards.length).padStart(5, '0')}.mds`;
    const entry = { ...config, raw_data: { basename: base, bytes: raw.length, hashes: {} }, samples: n,
                    zip_data: null };
    fs.writeFileSync(path.join(out, base), raw);
    if (compression) {
      const [algo, level] = compression.split(':');
      const zbase = `${base}.${algo}`;
      let z;
      if (algo === 'gz') z = zlib.gzipSync(raw, { level: level ? Number(level) : 9 });
      else if (algo === 'zstd') {
        execFileSync('zstd', ['-q', '-f', `-${level || 3}`, path.join(out, base), '-o', path.join(out, zbase)]);
        z = fs.readFileSync(path.join(out, zbase));
      } else usage(`compression ${algo} not supported by this test writer`);
      fs.writeFileSync(path.join(out, zbase), z);
      entry.zip_data = { basename: zbase, bytes: z.length, hashes: {} };
      if (!keepRaw) fs.unlinkSync(path.join(out, base));
    }
    shards.push(entry);
    samples = [];
    bytes = 0;
  }

  const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.trim() !== '');
  for (const line of lines) {
    const obj = JSON.parse(line);
    const sizes = [], data = [];
    for (const c of cols) {
      if (!(c.name in obj)) usage(`sample without column ${c.name}: ${line.slice(0, 80)}`);
      const d = encode(c.enc, obj[c.name]);
      const fixed = columnSize(c.enc);
      if (fixed === null) sizes.push(d.length);
      else if (fixed !== d.length) usage(`column ${c.name}: ${d.length} bytes, encoding says ${fixed}`);
      data.push(d);
    }
    const sample = Buffer.concat([packInts(sizes, 'uint32'), ...data]);
    // A new shard when this sample would push the current one past the size limit.
    const extra = 4 + 4 + configBytes.length;
    if (sizeLimit && samples.length && extra + bytes + sample.length + 4 * (samples.length + 1) > sizeLimit) flush();
    samples.push(sample);
    bytes += sample.length;
  }
  flush();
  fs.writeFileSync(path.join(out, 'index.json'), JSON.stringify({ shards, version: 2 }, null, 2));
}

main();
