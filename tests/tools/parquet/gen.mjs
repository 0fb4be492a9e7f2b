// Writes the same documents as Parquet with three independent writers (DuckDB's native writer,
// Arrow's Rust writer compiled to wasm = parquet-wasm, and hyparquet-writer) across codecs,
// dictionary on/off, page versions, encodings, row-group and page sizes, nulls and a struct
// column (`meta.redpajama_set_name`, the Hub's SlimPajama layout), plus expected.jsonl: the
// documents themselves, one JSON object per row ({text, domain, id, n}; null = null).
//
//   node gen.mjs OUT_DIR ROWS [fixtures|matrix]
//
// `fixtures` writes the small committed set (tests/unit/data/parquet), `matrix` the larger set the
// ctest parquet.independent_writers builds at test time. Deterministic: no clocks, no randomness.
import fs from 'node:fs'
import path from 'node:path'
import { DuckDBInstance } from '@duckdb/node-api'
import * as arrow from 'apache-arrow'
import * as pw from 'parquet-wasm/node'
import { parquetWriteFile } from 'hyparquet-writer'

const [outDir, rowsArg, mode = 'fixtures'] = process.argv.slice(2)
if (!outDir || !rowsArg) {
  console.error('usage: node gen.mjs OUT_DIR ROWS [fixtures|matrix]')
  process.exit(2)
}
const ROWS = Number(rowsArg)
fs.mkdirSync(outDir, { recursive: true })

const DOMAINS = ['RedPajamaC4', 'RedPajamaBook', 'RedPajamaArXiv', 'RedPajamaGithub']
const WORDS = ['the', 'long', 'context', 'café', '日本語', 'data', '😀', 'mixture', 'book', 'x\ty', 'a"b', 'back\\slash']

function makeDocs (n, long) {
  const docs = []
  for (let i = 0; i < n; i++) {
    let text
    if (i % 17 === 5) text = null
    else if (i % 13 === 0) text = ''
    else {
      const k = 3 + (i * 7) % 40
      const w = []
      for (let j = 0; j < k; j++) w.push(WORDS[(i + j * j) % WORDS.length])
      text = `doc ${i}: ` + w.join(' ')
      if (i % 31 === 3) text += '\n' + 'long '.repeat(long + i)
      if (i % 11 === 1) text = text.slice(0, 6) // shared prefixes for DELTA_BYTE_ARRAY
    }
    const domain = i % 23 === 11 ? null : DOMAINS[(i * 5 + (i >> 3)) % DOMAINS.length]
    const id = BigInt(i) * 1000003n - 500000n
    const num = ((i * 7919) % 1000) - 500
    // pre-tokenized ids (a list column, as Hub datasets store `input_ids`); null and empty lists too
    const ids = i % 19 === 7 ? null : Array.from({ length: (i * 13) % 50 }, (_, j) => (i * 7 + j * 3) % 250)
    docs.push({ text, domain, id, n: num, ids })
  }
  return docs
}

const docs = makeDocs(ROWS, mode === 'fixtures' ? 300 : 1500)
const jsonDoc = d => JSON.stringify({ text: d.text, domain: d.domain, id: d.id.toString(), n: d.n, input_ids: d.ids })
fs.writeFileSync(path.join(outDir, 'expected.jsonl'), docs.map(jsonDoc).join('\n') + '\n')

// ---- DuckDB ----
async function duckdbFiles (variants) {
  const inst = await DuckDBInstance.create(':memory:')
  const con = await inst.connect()
  const tmp = path.join(outDir, 'docs.tmp.jsonl')
  fs.writeFileSync(tmp, docs.map(jsonDoc).join('\n') + '\n')
  await con.run(`CREATE TABLE d AS SELECT row_number() OVER () AS r, text, domain, CAST(id AS BIGINT) AS id, CAST(n AS INTEGER) AS n, input_ids
                 FROM read_json('${tmp}', columns={text:'VARCHAR', domain:'VARCHAR', id:'VARCHAR', n:'INTEGER', input_ids:'INTEGER[]'},
                                format='newline_delimited')`)
  for (const v of variants) {
    const file = path.join(outDir, v.name)
    await con.run(`COPY (SELECT text, {'redpajama_set_name': domain} AS meta, id, n, input_ids FROM d ORDER BY r)
                   TO '${file}' (FORMAT parquet, COMPRESSION ${v.codec}, ROW_GROUP_SIZE ${v.rowGroup}${v.v2 ? ", PARQUET_VERSION v2" : ''})`)
  }
  fs.unlinkSync(tmp)
  if (small) { // columns the reader must refuse by name: a list, a map, a float
    await con.run(`COPY (SELECT 'a' AS text, [1, 2, 3] AS input_ids, MAP {'k': 'v'} AS m, 1.5::DOUBLE AS f,
                   {'x': [1]} AS s, [[1, 2]] AS nested, ['x', 'y'] AS strs) TO '${path.join(outDir, 'duckdb-lists.parquet')}' (FORMAT parquet)`)
  }
}

// ---- parquet-wasm (arrow-rs) ----
function arrowTable () {
  const metaType = new arrow.Struct([new arrow.Field('redpajama_set_name', new arrow.Utf8(), true)])
  return new arrow.Table({
    text: arrow.vectorFromArray(docs.map(d => d.text), new arrow.Utf8()),
    meta: arrow.vectorFromArray(docs.map(d => ({ redpajama_set_name: d.domain })), metaType),
    id: arrow.vectorFromArray(docs.map(d => d.id), new arrow.Int64()),
    n: arrow.vectorFromArray(docs.map(d => d.n), new arrow.Int32()),
    input_ids: arrow.vectorFromArray(docs.map(d => d.ids), new arrow.List(new arrow.Field('item', new arrow.Int32(), true))),
  })
}

function wasmFiles (variants) {
  const ipc = arrow.tableToIPC(arrowTable(), 'stream')
  for (const v of variants) {
    let b = new pw.WriterPropertiesBuilder()
      .setCompression(pw.Compression[v.codec])
      .setDictionaryEnabled(v.dict)
      .setMaxRowGroupSize(v.rowGroup)
      .setDataPageSizeLimit(v.pageBytes)
      .setWriterVersion(v.v2 ? pw.WriterVersion.V2 : pw.WriterVersion.V1)
    if (v.textEncoding) b = b.setColumnEncoding('text', pw.Encoding[v.textEncoding])
    if (v.intEncoding) b = b.setColumnEncoding('id', pw.Encoding[v.intEncoding]).setColumnEncoding('n', pw.Encoding[v.intEncoding])
    const bytes = pw.writeParquet(pw.Table.fromIPCStream(ipc), b.build())
    fs.writeFileSync(path.join(outDir, v.name), bytes)
  }
}

// ---- hyparquet-writer ----
function hyparquetFiles (variants) {
  for (const v of variants) {
    const nullable = { repetition_type: 'OPTIONAL' }
    parquetWriteFile({
      filename: path.join(outDir, v.name),
      codec: v.codec,
      pageSize: v.pageBytes,
      rowGroupSize: v.rowGroup,
      statistics: false,
      schema: [
        { name: 'root', num_children: 5 },
        { name: 'text', type: 'BYTE_ARRAY', converted_type: 'UTF8', ...nullable },
        { name: 'meta', num_children: 1, ...nullable },
        { name: 'redpajama_set_name', type: 'BYTE_ARRAY', converted_type: 'UTF8', ...nullable },
        { name: 'id', type: 'INT64', repetition_type: 'REQUIRED' },
        { name: 'n', type: 'INT32', repetition_type: 'REQUIRED' },
        { name: 'input_ids', converted_type: 'LIST', num_children: 1, ...nullable },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'element', type: 'INT32', repetition_type: 'REQUIRED' },
      ],
      columnData: [
        { name: 'text', data: docs.map(d => d.text), encoding: v.textEncoding },
        { name: 'meta', data: docs.map(d => ({ redpajama_set_name: d.domain })) },
        { name: 'id', data: docs.map(d => d.id), encoding: v.intEncoding },
        { name: 'n', data: docs.map(d => d.n), encoding: v.intEncoding },
        { name: 'input_ids', data: docs.map(d => d.ids) },
      ],
    })
  }
}

const small = mode === 'fixtures'
const rg = small ? 40 : 700
const page = small ? 1024 : 8192
const duck = small
  ? [
      { name: 'duckdb-snappy-v1.parquet', codec: 'snappy', rowGroup: rg },
      { name: 'duckdb-zstd-v2.parquet', codec: 'zstd', rowGroup: rg, v2: true },
      { name: 'duckdb-gzip-v1.parquet', codec: 'gzip', rowGroup: 1000 },
      { name: 'duckdb-brotli-v2.parquet', codec: 'brotli', rowGroup: rg, v2: true },
      { name: 'duckdb-lz4-v1.parquet', codec: 'lz4', rowGroup: rg },
      { name: 'duckdb-uncompressed-v1.parquet', codec: 'uncompressed', rowGroup: rg },
    ]
  : ['uncompressed', 'snappy', 'gzip', 'zstd', 'brotli', 'lz4'].flatMap(c => [false, true].map(v2 =>
      ({ name: `duckdb-${c}-${v2 ? 'v2' : 'v1'}.parquet`, codec: c, rowGroup: rg, v2 })))
const wasm = small
  ? [
      { name: 'arrowrs-snappy-dict-v1.parquet', codec: 'SNAPPY', dict: true, rowGroup: rg, pageBytes: page },
      { name: 'arrowrs-zstd-plain-v2.parquet', codec: 'ZSTD', dict: false, rowGroup: rg, pageBytes: page, v2: true,
        textEncoding: 'PLAIN', intEncoding: 'PLAIN' },
      { name: 'arrowrs-lz4raw-dba-v2.parquet', codec: 'LZ4_RAW', dict: false, rowGroup: rg, pageBytes: page, v2: true,
        textEncoding: 'DELTA_BYTE_ARRAY', intEncoding: 'DELTA_BINARY_PACKED' },
      { name: 'arrowrs-lz4-dlba-v1.parquet', codec: 'LZ4', dict: false, rowGroup: rg, pageBytes: page,
        textEncoding: 'DELTA_LENGTH_BYTE_ARRAY', intEncoding: 'DELTA_BINARY_PACKED' },
      { name: 'arrowrs-gzip-dict-v2.parquet', codec: 'GZIP', dict: true, rowGroup: 1000, pageBytes: page, v2: true },
      { name: 'arrowrs-brotli-plain-v1.parquet', codec: 'BROTLI', dict: false, rowGroup: rg, pageBytes: page },
    ]
  : ['UNCOMPRESSED', 'SNAPPY', 'GZIP', 'BROTLI', 'LZ4', 'ZSTD', 'LZ4_RAW'].flatMap(c =>
      [[true, null, null], [false, 'PLAIN', 'PLAIN'], [false, 'DELTA_BYTE_ARRAY', 'DELTA_BINARY_PACKED'],
        [false, 'DELTA_LENGTH_BYTE_ARRAY', 'DELTA_BINARY_PACKED']].flatMap(([dict, te, ie]) => [false, true].map(v2 => ({
        name: `arrowrs-${c.toLowerCase()}-${dict ? 'dict' : (te || 'plain').toLowerCase()}-${v2 ? 'v2' : 'v1'}.parquet`,
        codec: c, dict, rowGroup: rg, pageBytes: page, v2, textEncoding: te, intEncoding: ie,
      }))))
const hyp = small
  ? [
      { name: 'hyparquet-snappy-auto.parquet', codec: 'SNAPPY', rowGroup: rg, pageBytes: page },
      { name: 'hyparquet-uncompressed-dba.parquet', codec: 'UNCOMPRESSED', rowGroup: rg, pageBytes: page,
        textEncoding: 'DELTA_BYTE_ARRAY', intEncoding: 'DELTA_BINARY_PACKED' },
      { name: 'hyparquet-snappy-dlba.parquet', codec: 'SNAPPY', rowGroup: 1000, pageBytes: page,
        textEncoding: 'DELTA_LENGTH_BYTE_ARRAY', intEncoding: 'PLAIN' },
    ]
  : ['UNCOMPRESSED', 'SNAPPY'].flatMap(c => [[undefined, undefined], ['PLAIN', 'PLAIN'],
      ['DELTA_BYTE_ARRAY', 'DELTA_BINARY_PACKED'], ['DELTA_LENGTH_BYTE_ARRAY', 'DELTA_BINARY_PACKED']].map(([te, ie]) => ({
      name: `hyparquet-${c.toLowerCase()}-${(te || 'auto').toLowerCase()}.parquet`, codec: c, rowGroup: rg, pageBytes: page,
      textEncoding: te, intEncoding: ie,
    })))

await duckdbFiles(duck)
wasmFiles(wasm)
hyparquetFiles(hyp)
console.log(`wrote ${duck.length + wasm.length + hyp.length} files of ${ROWS} rows to ${outDir}`)
