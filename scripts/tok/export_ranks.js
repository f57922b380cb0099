#!/usr/bin/env node
'use strict';
// export_ranks.js: writes the rank files of tiktoken's encodings, taken from the
// npm package `tiktoken` (tests/node), in the standard `.tiktoken` form, one
// line per token: base64 of the token bytes, a space, the rank, "\n", in rank
// order; and beside each a small JSON with the pre-tokenization pattern and
// the special tokens exactly as the package defines them.
//
// Usage: node scripts/tok/export_ranks.js OUTDIR [--encodings gpt2,cl100k_base,o200k_base]
//                                                [--no-verify] [--quiet]
// Writes OUTDIR/NAME.tiktoken and OUTDIR/NAME.json for each NAME.
//
// Source: tiktoken/encoders/NAME.json (pat_str, special_tokens, compressed
// bpe_ranks).  Unless --no-verify, before writing anything it checks that
//   - js-tiktoken ships the same ranks and special tokens,
//   - the WASM encoder the tests compare against (tiktoken get_encoding(NAME))
//     holds exactly these bytes at every rank and these special-token ids, and
//     encodes a sample text identically when built from this pattern and these
//     ranks,
//   - the file written has the SHA-256 of OpenAI's published file
//     (tiktoken_ext/openai_public.py expected_hash), where one is known.
// Exit status 0 when every check passes, 1 when one fails, 2 on usage errors.

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const lib = require('./lib');

// SHA-256 of https://openaipublic.blob.core.windows.net/encodings/NAME.tiktoken
// as tiktoken_ext/openai_public.py expects them (gpt2 has the r50k_base ranks).
const OPENAI_SHA256 = {
	gpt2: '306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930',
	r50k_base: '306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930',
	p50k_base: '94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069',
	cl100k_base: '223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7',
	o200k_base: '446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d',
};

const SAMPLE = [
	"Hello world! It's 2024; they'LL say \"WE'VE\" won't. \u00a0 tabs\t\there\r\n",
	'  \n\n\n   trailing   \n',
	'\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002',
	'\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0645\u0631\u062d\u0628\u0627 \u0928\u092e\u0938\u094d\u0924\u0947 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35',
	'\u{1F468}\u200d\u{1F469}\u200d\u{1F467}\u200d\u{1F466} \u{1F44D}\u{1F3FD} \u{1F1EF}\u{1F1F5} 12345678901234567890',
	'int main(void) {\n\treturn 0;\n}\n{"a": [1, 2.5e-3, null]}\n',
	'<|endoftext|> <|fim_prefix|> <|endofprompt|>',
].join('\n');

function main() {
	const args = process.argv.slice(2);
	let out = null, names = ['gpt2', 'cl100k_base', 'o200k_base'], verify = true, quiet = false;
	for (let i = 0; i < args.length; i++) {
		const a = args[i];
		if (a === '--encodings') names = (args[++i] || '').split(',').filter(Boolean);
		else if (a === '--no-verify') verify = false;
		else if (a === '--quiet') quiet = true;
		else if (a === '-h' || a === '--help') {
			process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(2).join('\n').match(/^(\/\/.*\n)+/)[0]);
			return 0;
		} else if (a.startsWith('-')) lib.die(`unknown option ${a}`);
		else if (out === null) out = a;
		else lib.die(`extra argument ${a}`);
	}
	if (out === null) lib.die('usage: export_ranks.js OUTDIR [--encodings a,b] [--no-verify]');
	names.forEach(lib.checkEncoding);
	fs.mkdirSync(out, { recursive: true });
	const version = lib.pkgVersion('tiktoken');
	let failed = 0;
	const log = (s) => { if (!quiet) process.stderr.write(s + '\n'); };

	for (const name of names) {
		const def = lib.tiktokenDefinition(name);
		const byRank = lib.parseCompressedRanks(def.bpe_ranks, def.file);
		const text = byRank.map((b, r) => `${b} ${r}\n`).join('');
		const sha = crypto.createHash('sha256').update(text).digest('hex');
		const problems = [];

		// Every token's bytes are distinct (a rank file is a bijection).
		const seen = new Map();
		byRank.forEach((b, r) => {
			const key = Buffer.from(b, 'base64').toString('latin1');
			if (seen.has(key)) problems.push(`ranks ${seen.get(key)} and ${r} have the same bytes`);
			seen.set(key, r);
			if (Buffer.from(b, 'base64').toString('base64') !== b)
				problems.push(`rank ${r}: non-canonical base64 '${b}'`);
		});
		const specialIds = Object.values(def.special_tokens);
		for (const [s, id] of Object.entries(def.special_tokens))
			if (id < byRank.length) problems.push(`special token ${s} id ${id} collides with a rank`);

		if (verify) {
			// js-tiktoken ships the same data.
			const js = lib.req(`js-tiktoken/ranks/${name}`);
			const jd = js.default || js;
			if (jd.bpe_ranks !== def.bpe_ranks) problems.push('js-tiktoken ranks differ');
			if (JSON.stringify(jd.special_tokens) !== JSON.stringify(def.special_tokens))
				problems.push('js-tiktoken special tokens differ');
			// The WASM encoder holds the same bytes at every rank.
			const tk = lib.req('tiktoken');
			const enc = tk.get_encoding(name);
			for (let r = 0; r < byRank.length; r++) {
				const got = Buffer.from(enc.decode_single_token_bytes(r)).toString('base64');
				if (got !== byRank[r]) {
					problems.push(`WASM get_encoding: rank ${r} is ${got}, file has ${byRank[r]}`);
					if (problems.length > 20) break;
				}
			}
			const nWasm = enc.token_byte_values().length;
			if (nWasm !== byRank.length)
				problems.push(`WASM get_encoding has ${nWasm} ranked tokens, the file ${byRank.length}`);
			for (const [s, id] of Object.entries(def.special_tokens)) {
				const ids = Array.from(enc.encode(s, 'all'));
				if (ids.length !== 1 || ids[0] !== id)
					problems.push(`WASM get_encoding: ${s} encodes to [${ids}], definition says ${id}`);
			}
			// Built from this pattern and these ranks, it encodes as get_encoding does.
			const mine = new tk.Tiktoken(def.bpe_ranks, def.special_tokens, def.pat_str);
			const a = Array.from(mine.encode_ordinary(SAMPLE)).join(' ');
			const b = Array.from(enc.encode_ordinary(SAMPLE)).join(' ');
			if (a !== b) problems.push('pattern+ranks of the definition encode a sample differently from get_encoding');
			mine.free();
			enc.free();
			if (OPENAI_SHA256[name] && OPENAI_SHA256[name] !== sha)
				problems.push(`sha256 ${sha} is not OpenAI's ${OPENAI_SHA256[name]}`);
		}

		if (problems.length) {
			failed++;
			process.stderr.write(`export_ranks: ${name}: NOT written:\n  ${problems.join('\n  ')}\n`);
			continue;
		}
		const meta = {
			name,
			pat_str: def.pat_str,
			special_tokens: def.special_tokens,
			n_ranks: byRank.length,
			n_vocab: Math.max(byRank.length, ...specialIds.map((x) => x + 1)),
		};
		if (def.explicit_n_vocab !== undefined) meta.explicit_n_vocab = def.explicit_n_vocab;
		Object.assign(meta, {
			ranks_file: `${name}.tiktoken`,
			ranks_sha256: sha,
			source: `npm tiktoken@${version} encoders/${name}.json`,
		});
		fs.writeFileSync(path.join(out, `${name}.tiktoken`), text);
		fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify(meta, null, 2) + '\n');
		log(`${name}: ${byRank.length} ranks, ${Object.keys(def.special_tokens).length} special, ` +
		    `sha256 ${sha}${verify ? ' (verified)' : ''}`);
	}
	return failed ? 1 : 0;
}

process.exitCode = main();
