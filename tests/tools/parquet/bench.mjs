// DuckDB side of tests/bench/bench_parquet.sh.
//   node bench.mjs convert IN.jsonl OUT.parquet   SlimPajama JSON Lines -> Parquet (snappy; text + meta struct)
//   node bench.mjs read THREADS FILE...           reads column text of FILEs to nothing (sum of its byte
//                                                 lengths), prints "WALL_S CPU_S BYTES ROWS" (the query only;
//                                                 CPU = user+system of all DuckDB threads)
import { DuckDBInstance } from '@duckdb/node-api'

const [cmd, ...args] = process.argv.slice(2)
const con = await (await DuckDBInstance.create(':memory:')).connect()
const list = fs => '[' + fs.map(f => `'${f}'`).join(', ') + ']'
if (cmd === 'convert') {
  const [inp, out] = args
  await con.run(`COPY (SELECT text, meta FROM read_json('${inp}', format='newline_delimited',
                   columns={text: 'VARCHAR', meta: 'STRUCT(redpajama_set_name VARCHAR)'}))
                 TO '${out}' (FORMAT parquet, COMPRESSION snappy)`)
} else if (cmd === 'read') {
  const [threads, ...files] = args
  await con.run(`SET threads = ${Number(threads)}`)
  const t0 = process.hrtime.bigint()
  const c0 = process.cpuUsage()
  const r = await con.runAndReadAll(`SELECT sum(octet_length(encode(text)))::BIGINT, count(*)::BIGINT FROM read_parquet(${list(files)})`)
  const c1 = process.cpuUsage(c0)
  const t1 = process.hrtime.bigint()
  const [bytes, rows] = r.getRows()[0]
  console.log(`${Number(t1 - t0) / 1e9} ${(c1.user + c1.system) / 1e6} ${bytes} ${rows}`)
} else {
  console.error('usage: node bench.mjs convert IN OUT | read THREADS FILE...')
  process.exit(2)
}
