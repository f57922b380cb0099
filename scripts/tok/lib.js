'use strict';
// lib.js: shared helpers of scripts/tok/*.js, the reference side of mvl's
// tokenizer exactness tests and benchmark.
//
// The reference tokenizers are the npm packages pinned in tests/node/package.json
// (tiktoken: OpenAI's Rust core compiled to WASM; js-tiktoken: pure JS port),
// installed by `npm ci` into tests/node/node_modules.  MVL_TOK_NODE_DIR may name
// another folder holding package.json and node_modules.

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const NODE_DIR = process.env.MVL_TOK_NODE_DIR
	? path.resolve(process.env.MVL_TOK_NODE_DIR)
	: path.resolve(__dirname, '..', '..', 'tests', 'node');

// The encodings these scripts handle.  gpt2 and r50k_base are one encoding
// under two names (same ranks, pattern and special token).
const ENCODINGS = ['gpt2', 'r50k_base', 'p50k_base', 'cl100k_base', 'o200k_base'];

function die(msg) {
	process.stderr.write(`${path.basename(process.argv[1] || 'tok')}: ${msg}\n`);
	process.exit(2);
}

let nodeRequire = null;
function req(name) {
	if (!nodeRequire) {
		const pj = path.join(NODE_DIR, 'package.json');
		if (!fs.existsSync(path.join(NODE_DIR, 'node_modules', 'tiktoken', 'package.json')))
			die(`reference packages missing under ${NODE_DIR}/node_modules: ` +
			    `run scripts/deps.sh (npm ci --prefix ${NODE_DIR})`);
		nodeRequire = createRequire(pj);
	}
	return nodeRequire(name);
}

function checkEncoding(name) {
	if (!ENCODINGS.includes(name))
		die(`unknown encoding '${name}' (known: ${ENCODINGS.join(', ')})`);
	return name;
}

// Installed version of a reference package, for reports.
function pkgVersion(name) {
	req(name); // resolves NODE_DIR or dies
	const pj = path.join(NODE_DIR, 'node_modules', name, 'package.json');
	return JSON.parse(fs.readFileSync(pj, 'utf8')).version;
}

// The definition the tiktoken package ships for an encoding:
// { pat_str, special_tokens, bpe_ranks (compressed), explicit_n_vocab? }.
// It is the same data the WASM get_encoding() compiles in (checked by
// export_ranks.js), and the same ranks js-tiktoken ships.
function tiktokenDefinition(name) {
	const file = path.join(NODE_DIR, 'node_modules', 'tiktoken', 'encoders', `${name}.json`);
	let j;
	try {
		j = JSON.parse(fs.readFileSync(file, 'utf8'));
	} catch (e) {
		die(`cannot read ${file}: ${e.message}`);
	}
	j.file = file;
	return j;
}

// The packages' compressed rank format: lines "KEY OFFSET TOK0 TOK1 ...", the
// TOKi being base64 of the token bytes and having rank OFFSET+i (KEY is
// ignored, as both packages' parsers do).  Returns an array indexed by rank of
// base64 strings; throws on a gap or a duplicate rank.
function parseCompressedRanks(bpeRanks, what) {
	const byRank = [];
	for (const line of bpeRanks.split('\n')) {
		if (!line) continue;
		const f = line.split(' ');
		const off = Number.parseInt(f[1], 10);
		if (!Number.isInteger(off) || off < 0) throw new Error(`${what}: bad offset '${f[1]}'`);
		for (let i = 2; i < f.length; i++) {
			const r = off + i - 2;
			if (byRank[r] !== undefined) throw new Error(`${what}: rank ${r} twice`);
			byRank[r] = f[i];
		}
	}
	for (let r = 0; r < byRank.length; r++)
		if (byRank[r] === undefined) throw new Error(`${what}: rank ${r} missing`);
	return byRank;
}

// Reads a file as UTF-8 text, byte for byte: a BOM is kept as U+FEFF and
// invalid UTF-8 is an error (the reference encoders take JS strings, so bytes
// that are not UTF-8 could not be passed through unchanged).
function readUtf8(file) {
	const buf = file === '-' ? fs.readFileSync(0) : fs.readFileSync(file);
	try {
		return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf);
	} catch (e) {
		die(`${file}: not valid UTF-8 (the reference tokenizers take text only)`);
	}
}

// Encoders with encode_ordinary semantics: special-token text is encoded as
// ordinary text, never as a special token and never an error.
function tiktokenEncoder(name) {
	const enc = req('tiktoken').get_encoding(name);
	return { impl: 'tiktoken', name, enc, encode: (s) => enc.encode_ordinary(s) };
}

function jsTiktokenEncoder(name) {
	const enc = req('js-tiktoken').getEncoding(name);
	// encode(text, allowedSpecial=[], disallowedSpecial=[]): nothing allowed,
	// nothing disallowed = encode_ordinary (js-tiktoken has no such method).
	return { impl: 'js-tiktoken', name, enc, encode: (s) => enc.encode(s, [], []) };
}

function encoder(impl, name) {
	checkEncoding(name);
	if (impl === 'tiktoken') return tiktokenEncoder(name);
	if (impl === 'js-tiktoken') return jsTiktokenEncoder(name);
	die(`unknown implementation '${impl}' (tiktoken, js-tiktoken)`);
}

// Writes a large string to stdout or a file.
function output(file, text) {
	if (file && file !== '-') fs.writeFileSync(file, text);
	else process.stdout.write(text);
}

module.exports = {
	NODE_DIR, ENCODINGS, die, req, checkEncoding, pkgVersion, tiktokenDefinition,
	parseCompressedRanks, readUtf8, encoder, output,
};
