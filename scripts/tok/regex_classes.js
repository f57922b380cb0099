#!/usr/bin/env node
'use strict';
// regex_classes.js: which code points tiktoken's own regex engine (the Rust
// regex/fancy-regex compiled into the npm `tiktoken` WASM) puts in each
// character class the pre-tokenization patterns use, as code point ranges.
// A C pre-tokenizer (PCRE2) must classify exactly the same way to give the
// same pieces: diff its classes against this output.
//
// Usage: node scripts/tok/regex_classes.js [CLASS ...] > classes.json
//   default classes: \s \p{L} \p{N} \p{M} \p{Lu} \p{Ll} \p{Lt} \p{Lm} \p{Lo}
//                    (?i:s) (?i:t) (?i:r) (?i:e) (?i:v) (?i:m) (?i:l) (?i:d)
// Output: {"engine": "...", "classes": {"\\s": [[9, 13], [32, 32], ...], ...}}
//
// How: the regex engine is not exposed, so each class is observed through
// encode_ordinary of an encoder built for the purpose: pattern
// x(?:CLASS)|[\s\S], ranks = the 256 bytes plus "x"+c for every code point c.
// "x"+c comes out as one token exactly when c is in CLASS.  About 3 s a class.

const lib = require('./lib');

const DEFAULT = ['\\s', '\\p{L}', '\\p{N}', '\\p{M}', '\\p{Lu}', '\\p{Ll}', '\\p{Lt}', '\\p{Lm}', '\\p{Lo}',
	'(?i:s)', '(?i:t)', '(?i:r)', '(?i:e)', '(?i:v)', '(?i:m)', '(?i:l)', '(?i:d)'];

function members(tk, cls) {
	const byteToks = [];
	for (let i = 0; i < 256; i++) byteToks.push(Buffer.from([i]).toString('base64'));
	const out = [];
	for (let plane = 0; plane < 17; plane++) {
		const cps = [];
		for (let c = plane * 65536; c < (plane + 1) * 65536; c++)
			if (c < 0xD800 || c > 0xDFFF) cps.push(c);
		const toks = byteToks.slice();
		const seen = new Set(toks);
		for (const c of cps) {
			const k = Buffer.from('x' + String.fromCodePoint(c), 'utf8').toString('base64');
			if (!seen.has(k)) { seen.add(k); toks.push(k); }
		}
		const enc = new tk.Tiktoken('! 0 ' + toks.join(' '), {}, `x(?:${cls})|[\\s\\S]`);
		const ids = enc.encode_ordinary(cps.map((c) => 'x' + String.fromCodePoint(c)).join(''));
		for (const id of ids)
			if (id >= 256) out.push(Buffer.from(toks[id], 'base64').toString('utf8').codePointAt(1));
		enc.free();
	}
	return out;
}

function ranges(cps) {
	const r = [];
	for (const c of cps) {
		if (r.length && r[r.length - 1][1] === c - 1) r[r.length - 1][1] = c;
		else r.push([c, c]);
	}
	return r;
}

const tk = lib.req('tiktoken');
const classes = process.argv.slice(2).length ? process.argv.slice(2) : DEFAULT;
const res = { engine: `npm tiktoken@${lib.pkgVersion('tiktoken')} (Rust regex in WASM)`, classes: {} };
for (const cls of classes) {
	const m = members(tk, cls).sort((a, b) => a - b);
	res.classes[cls] = ranges(m);
	process.stderr.write(`${cls}: ${m.length} code points\n`);
}
process.stdout.write(JSON.stringify(res) + '\n');
