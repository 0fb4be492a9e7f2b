#!/usr/bin/env node
// Compares two id streams (one JSON array per line: ours, the reference's) produced from the same
// JSON Lines input, and names the first mismatching document (input line, first differing
// position). Used by run-tokenizer-conformance.sh.
//
//   compare-ids.js INPUT.jsonl OURS PEER LABEL [--allow-added TOKENIZER_JSON]
//
// Both tools skip blank input lines, so output line k is the k-th non-blank input line.
// --allow-added: longmixd's default treats added-token strings ("<s>", "<|begin_of_text|>") in a
// document as plain text, while HF matches them; documents containing such a string may then
// differ (they are counted), every other document must match exactly.
"use strict";
const fs = require("fs");
const [input, oursPath, peerPath, label, ...rest] = process.argv.slice(2);
let added = null;
if (rest[0] === "--allow-added") {
  const tj = JSON.parse(fs.readFileSync(rest[1], "utf8"));
  added = (tj.added_tokens || []).map((t) => t.content).filter((c) => c.length > 0);
}
const split = (p) => {
  const s = fs.readFileSync(p, "utf8");
  const l = s.split(/\r?\n/);
  if (l.length && l[l.length - 1] === "") l.pop();
  return l;
};
const inLines = split(input);
const docs = []; // [input line number (1-based), text]
inLines.forEach((l, i) => {
  if (l.trim()) docs.push([i + 1, JSON.parse(l).text]);
});
const ours = split(oursPath), peer = split(peerPath);
const show = (a) => JSON.stringify(a.slice(0, 8)) + (a.length > 8 ? "..." : "");
let bad = 0, tolerated = 0, first = null;
if (ours.length !== peer.length || ours.length !== docs.length) {
  console.error(`${label}: line counts differ: input docs ${docs.length}, longmixd ${ours.length}, reference ${peer.length}`);
  bad++;
}
const n = Math.min(ours.length, peer.length, docs.length);
for (let k = 0; k < n; k++) {
  if (ours[k] === peer[k]) continue;
  const text = docs[k][1];
  if (added && added.some((c) => text.includes(c))) {
    tolerated++;
    continue;
  }
  bad++;
  if (!first) {
    const a = JSON.parse(ours[k]), b = JSON.parse(peer[k]);
    let p = 0;
    while (p < a.length && p < b.length && a[p] === b[p]) p++;
    first = `${label}: first mismatch: ${input} line ${docs[k][0]}, token position ${p} ` +
      `(longmixd ${a.length} ids, reference ${b.length}): longmixd ${show(a.slice(p))} vs ` +
      `reference ${show(b.slice(p))}; text ${JSON.stringify(text.slice(0, 120))}` +
      (text.length > 120 ? "..." : "");
  }
}
if (first) console.error(first);
const extra = added ? `, ${tolerated} differ only through added-token strings (allowed)` : "";
console.log(`${label}: ${n} documents, ${bad} mismatching${extra}`);
process.exit(bad ? 1 : 0);
