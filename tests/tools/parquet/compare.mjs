// Compares longmix's Parquet reader (parquet_dump; columns text, meta.redpajama_set_name, id, n and
// the list column input_ids) with two peers on every *.parquet in DIR:
// hyparquet (a pure-JS reader) and DuckDB, and all three with DIR/expected.jsonl.
//   node compare.mjs DIR PARQUET_DUMP
// Prints one line per file; exits 1 on any difference.
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { parquetReadObjects } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import { DuckDBInstance } from '@duckdb/node-api'

const [dir, dump] = process.argv.slice(2)
const expected = fs.readFileSync(path.join(dir, 'expected.jsonl'), 'utf8').trim().split('\n').map(l => {
  const e = JSON.parse(l)
  return [e.text, e.domain, e.id, String(e.n), e.input_ids === null ? null : e.input_ids.map(String)]
})
const key = r => JSON.stringify(r)
const con = await (await DuckDBInstance.create(':memory:')).connect()
let bad = 0
function diff (what, file, rows) {
  if (rows.length !== expected.length) return `${what}: ${rows.length} rows, expected ${expected.length}`
  for (let i = 0; i < rows.length; i++) {
    if (key(rows[i]) !== key(expected[i])) return `${what}: row ${i + 1} is ${key(rows[i]).slice(0, 120)}, expected ${key(expected[i]).slice(0, 120)}`
  }
  return null
}
for (const name of fs.readdirSync(dir).filter(f => f.endsWith('.parquet')).sort()) {
  const file = path.join(dir, name)
  const ours = spawnSync(dump, [file, 'text', 'meta.redpajama_set_name', 'id', 'n', 'input_ids'], { maxBuffer: 1 << 30, encoding: 'utf8' })
  const problems = []
  if (ours.status !== 0) problems.push(`longmix: ${ours.stderr.trim()}`)
  else problems.push(diff('longmix', file, ours.stdout.trim().split('\n').map(l => JSON.parse(l))))
  const buf = fs.readFileSync(file)
  const hyp = await parquetReadObjects({ file: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength), columns: ['text', 'meta', 'id', 'n', 'input_ids'], compressors })
  problems.push(diff('hyparquet', file, hyp.map(r => [r.text ?? null, r.meta?.redpajama_set_name ?? null, String(r.id), String(r.n),
    r.input_ids == null ? null : Array.from(r.input_ids, String)])))
  try {
    const res = await con.runAndReadAll(`SELECT text, meta.redpajama_set_name, CAST(id AS VARCHAR), CAST(n AS VARCHAR),
                                                CAST(to_json(input_ids) AS VARCHAR) FROM read_parquet('${file}')`)
    problems.push(diff('duckdb', file, res.getRows().map(r => [...r.slice(0, 4), r[4] === null ? null : JSON.parse(r[4]).map(String)])))
  } catch (e) { // DuckDB does not read the deprecated Hadoop-framed LZ4 codec; the others still compare
    if (!/Unsupported compression codec "LZ4"/.test(String(e))) problems.push(`duckdb: ${e}`)
  }
  const p = problems.filter(Boolean)
  console.log(`${p.length ? 'FAIL' : 'ok  '} ${name}${p.length ? ': ' + p.join('; ') : ''}`)
  bad += p.length
}
process.exit(bad ? 1 : 0)
