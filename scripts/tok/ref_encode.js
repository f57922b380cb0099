#!/usr/bin/env node
'use strict';
// ref_encode.js: reference token ids and reference timings from tiktoken (npm
// `tiktoken`, OpenAI's Rust core compiled to WASM) and js-tiktoken, installed
// in tests/node/node_modules (scripts/deps.sh).
//
// Ids (encode_ordinary semantics: special-token text is ordinary text):
//   ref_encode.js --encoding NAME --lines [--impl I] [-o OUT] FILE
//       one output line per input line: the ids of the line (without its "\n";
//       a "\r" before it stays part of the line) separated by single spaces;
//       an empty line gives an empty line.  A final "\n" ends the last line
//       and does not start another.  The form `mvl tok encode --lines` prints.
//   ref_encode.js --encoding NAME --whole [--impl I] [-o OUT] FILE
//       the whole file as one text: its ids separated by spaces, one line.
//   ref_encode.js --encoding NAME --jsonl [--field text] [--impl I] [-o OUT] FILE
//       one output line per JSON line: the ids of its string field (default "text").
//   FILE is UTF-8 ('-': stdin); invalid UTF-8 is refused (exit 2), a BOM is text.
//   --impl: tiktoken (default, the reference) or js-tiktoken.
//
// Timing (single thread, MB = 10^6 bytes of UTF-8 input):
//   ref_encode.js --bench FILE [--encoding cl100k_base,gpt2] [--impl tiktoken,js-tiktoken]
//                [--repeat N] [--json]
//       encode_ordinary over the whole file content in one call, after a warm-up
//       on its first MB; prints MB/s per implementation and encoding (best of N),
//       and whether the implementations' ids agree.
//   ref_encode.js --worst [--size BYTES] [--cap SECONDS] [--kinds letters,emoji]
//                [--encoding cl100k_base] [--impl tiktoken,js-tiktoken] [--json]
//       one piece with no pre-token boundary ('a' * SIZE; a repeated emoji),
//       timed at growing sizes up to SIZE (default 1000000), each run in a child
//       process killed after --cap seconds (default 60): a killed run is reported
//       as a lower bound (">= cap"), with a quadratic extrapolation from the
//       largest size that finished.

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const lib = require('./lib');

function parseArgs(argv) {
	const o = { mode: null, encoding: null, impl: null, out: null, field: 'text', file: null,
		repeat: 1, json: false, size: 1000000, cap: 60, kinds: 'letters,emoji' };
	const setMode = (m) => {
		if (o.mode && o.mode !== m) lib.die(`--${o.mode} and --${m} exclude each other`);
		o.mode = m;
	};
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const val = () => {
			if (i + 1 >= argv.length) lib.die(`${a} needs a value`);
			return argv[++i];
		};
		switch (a) {
		case '--lines': setMode('lines'); break;
		case '--whole': setMode('whole'); break;
		case '--jsonl': setMode('jsonl'); break;
		case '--bench': setMode('bench'); o.file = val(); break;
		case '--worst': setMode('worst'); break;
		case '--worst-child': setMode('worst-child'); o.child = [val(), val(), val(), val()]; break;
		case '--encoding': o.encoding = val(); break;
		case '--impl': o.impl = val(); break;
		case '-o': case '--out': o.out = val(); break;
		case '--field': o.field = val(); break;
		case '--repeat': o.repeat = Math.max(1, parseInt(val(), 10) || 1); break;
		case '--json': o.json = true; break;
		case '--size': o.size = parseInt(val(), 10); break;
		case '--cap': o.cap = parseFloat(val()); break;
		case '--kinds': o.kinds = val(); break;
		case '-h': case '--help':
			process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(2).join('\n').match(/^(\/\/.*\n)+/)[0]);
			process.exit(0);
		default:
			if (a.startsWith('-') && a !== '-') lib.die(`unknown option ${a}`);
			if (o.file !== null) lib.die(`extra argument ${a}`);
			o.file = a;
		}
	}
	if (!o.mode) lib.die('one of --lines, --whole, --jsonl, --bench FILE, --worst is needed (--help)');
	return o;
}

function ids(arr) {
	// Uint32Array or Array -> "1 2 3"
	return Array.prototype.join.call(arr, ' ');
}

function encodeIds(o) {
	if (!o.encoding) lib.die('--encoding NAME is needed');
	if (o.file === null) lib.die('input FILE is needed (- for stdin)');
	const e = lib.encoder(o.impl || 'tiktoken', o.encoding);
	const text = lib.readUtf8(o.file);
	const out = [];
	if (o.mode === 'whole') {
		out.push(ids(e.encode(text)));
	} else {
		const lines = text.split('\n');
		if (lines.length && lines[lines.length - 1] === '') lines.pop();
		for (let n = 0; n < lines.length; n++) {
			let s = lines[n];
			if (o.mode === 'jsonl') {
				let rec;
				try {
					rec = JSON.parse(s);
				} catch (err) {
					lib.die(`${o.file}:${n + 1}: not JSON: ${err.message}`);
				}
				s = rec === null ? undefined : rec[o.field];
				if (typeof s !== 'string') lib.die(`${o.file}:${n + 1}: no string field "${o.field}"`);
			}
			out.push(ids(e.encode(s)));
		}
	}
	lib.output(o.out, out.length ? out.join('\n') + '\n' : '');
}

function hrSeconds(t0) {
	const d = process.hrtime.bigint() - t0;
	return Number(d) / 1e9;
}

function listOpt(v, dflt) {
	return (v || dflt).split(',').filter(Boolean);
}

function bench(o) {
	const text = lib.readUtf8(o.file);
	const bytes = Buffer.byteLength(text, 'utf8');
	const encs = listOpt(o.encoding, 'cl100k_base,gpt2');
	const impls = listOpt(o.impl, 'tiktoken,js-tiktoken');
	const warm = text.slice(0, 1000000);
	const results = [];
	const versions = {};
	for (const impl of impls) versions[impl] = lib.pkgVersion(impl);
	for (const name of encs) {
		let refIds = null;
		for (const impl of impls) {
			const e = lib.encoder(impl, name);
			e.encode(warm);
			let best = Infinity, toks = null;
			for (let r = 0; r < o.repeat; r++) {
				const t0 = process.hrtime.bigint();
				toks = e.encode(text);
				best = Math.min(best, hrSeconds(t0));
			}
			let agree = null;
			if (refIds === null) refIds = toks;
			else {
				agree = toks.length === refIds.length;
				for (let i = 0; agree && i < toks.length; i++) if (toks[i] !== refIds[i]) agree = false;
			}
			const res = { impl, version: versions[impl], encoding: name, bytes, tokens: toks.length,
				seconds: +best.toFixed(4), mb_per_s: +(bytes / 1e6 / best).toFixed(3) };
			if (agree !== null) res.same_ids_as_first = agree;
			results.push(res);
			if (!o.json)
				process.stdout.write(`${impl}@${versions[impl]} ${name}: ${res.mb_per_s.toFixed(2)} MB/s ` +
					`(${(bytes / 1e6).toFixed(2)} MB, ${toks.length} tokens, ${best.toFixed(3)} s` +
					`${agree === null ? '' : agree ? ', same ids as ' + impls[0] : ', IDS DIFFER from ' + impls[0]})\n`);
			if (impl === 'tiktoken') e.enc.free();
		}
	}
	if (o.json) process.stdout.write(JSON.stringify({ file: o.file, bytes, results }, null, 1) + '\n');
}

// The pieces of --worst: SIZE bytes of UTF-8 with no pre-token boundary in any
// of the encodings' patterns.
const KINDS = {
	letters: { desc: "'a' * N", unit: 'a' },
	emoji: { desc: 'U+1F600 repeated', unit: '\u{1F600}' },
	family: { desc: 'ZWJ family emoji repeated', unit: '\u{1F468}\u200d\u{1F469}\u200d\u{1F467}\u200d\u{1F466}' },
	thumbs: { desc: 'thumbs-up + skin tone repeated', unit: '\u{1F44D}\u{1F3FD}' },
	spaces: { desc: "' ' * N", unit: ' ' },
};

function piece(kind, size) {
	const k = KINDS[kind];
	if (!k) lib.die(`unknown kind '${kind}' (${Object.keys(KINDS).join(', ')})`);
	const ub = Buffer.byteLength(k.unit, 'utf8');
	return k.unit.repeat(Math.max(1, Math.floor(size / ub)));
}

function worstChild(o) {
	const [impl, name, kind, size] = o.child;
	const e = lib.encoder(impl, name);
	e.encode(piece(kind, 1000));
	const s = piece(kind, parseInt(size, 10));
	const t0 = process.hrtime.bigint();
	const toks = e.encode(s);
	const sec = hrSeconds(t0);
	process.stdout.write(JSON.stringify({ seconds: sec, tokens: toks.length,
		bytes: Buffer.byteLength(s, 'utf8') }) + '\n');
}

function worst(o) {
	const encs = listOpt(o.encoding, 'cl100k_base');
	const impls = listOpt(o.impl, 'tiktoken,js-tiktoken');
	const kinds = listOpt(o.kinds, 'letters,emoji');
	kinds.forEach((k) => piece(k, 1));
	const sizes = [];
	for (let s = 10000; s < o.size; s *= Math.sqrt(10)) sizes.push(Math.round(s));
	sizes.push(o.size);
	const results = [];
	for (const name of encs) for (const kind of kinds) for (const impl of impls) {
		const runs = [];
		let last = null, killed = false;
		for (const size of sizes) {
			if (killed) break;
			const r = spawnSync(process.execPath, [__filename, '--worst-child', impl, name, kind, String(size)],
				{ encoding: 'utf8', timeout: Math.round(o.cap * 1000) + 3000, killSignal: 'SIGKILL',
				  maxBuffer: 1 << 20 });
			if (r.status === 0) {
				const j = JSON.parse(r.stdout);
				runs.push({ bytes: j.bytes, seconds: +j.seconds.toFixed(4), tokens: j.tokens });
				last = j;
				if (j.seconds > o.cap) killed = true;
			} else if (r.error && r.error.code === 'ETIMEDOUT' || r.signal === 'SIGKILL') {
				runs.push({ bytes: size, seconds_at_least: o.cap, killed: true });
				killed = true;
			} else {
				lib.die(`worst-case child failed (${impl} ${name} ${kind} ${size}): ${r.stderr || r.error}`);
			}
		}
		const full = runs.find((x) => x.bytes >= o.size * 0.999);
		const res = { impl, encoding: name, kind, desc: KINDS[kind].desc, runs };
		if (full && !full.killed) res.seconds_at_size = full.seconds;
		else {
			res.seconds_at_size_at_least = o.cap;
			if (last) res.quadratic_estimate_s = +(last.seconds * (o.size / last.bytes) ** 2).toFixed(1);
		}
		results.push(res);
		if (!o.json) {
			const series = runs.map((x) => `${x.bytes}B:${x.killed ? '>=' + o.cap : x.seconds.toFixed(3)}s`).join(' ');
			const head = res.seconds_at_size !== undefined
				? `${res.seconds_at_size.toFixed(3)} s`
				: `>= ${o.cap} s (killed; quadratic extrapolation ${res.quadratic_estimate_s === undefined ? 'n/a' : res.quadratic_estimate_s + ' s'})`;
			process.stdout.write(`${impl} ${name} ${KINDS[kind].desc} ${o.size} B: ${head}   [${series}]\n`);
		}
	}
	if (o.json) process.stdout.write(JSON.stringify({ size: o.size, cap_s: o.cap, results }, null, 1) + '\n');
}

const o = parseArgs(process.argv.slice(2));
if (o.mode === 'bench') bench(o);
else if (o.mode === 'worst') worst(o);
else if (o.mode === 'worst-child') worstChild(o);
else encodeIds(o);
