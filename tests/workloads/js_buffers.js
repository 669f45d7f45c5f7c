// Buffers kept by one JavaScript function: memtop's ground truth for JIT
// frames named from node's perf map (node --perf-basic-prof
// --interpreted-frames-native-stack --expose-gc --no-compilation-cache).
//
// Prints "READY <pid>" and waits for SIGUSR2 (SIGUSR1 starts node's
// inspector). Then 200 functions compiled at run time (decoy0..decoy199 in
// decoys.js) each allocate one Buffer and hold it for JS_HOLD_MS, so that a
// tracer names their JIT code; they are dropped and collected, their code
// freed (code space V8 may hand to the functions compiled next); then
// keepBuffers allocates N Buffers of SIZE bytes and keeps them in a global
// array. Prints "EXPECT keepBuffers BYTES N" (the Buffers' own bytes; node
// adds a small record per Buffer), "EXPECT_DECOYS BYTES N" and DONE, then
// waits to be killed. The line marked KEEP is the one a perf map names.
'use strict';
const vm = require('vm');

const N = Number(process.env.JS_BUFFERS || 200);
const SIZE = Number(process.env.JS_BUFFER_SIZE || 65536);
const HOLD_MS = Number(process.env.JS_HOLD_MS || 1500);
const kept = [];
let held = [];

function keepBuffers(n, size) { // KEEP
	for (let i = 0; i < n; i++)
		kept.push(Buffer.alloc(size));
}

function decoys(n, size) {
	for (let i = 0; i < n; i++) {
		const f = vm.runInThisContext(
			'(function decoy' + i + '(s) { return Buffer.alloc(s); })',
			{filename: 'decoys.js'});
		held.push(f(size));
	}
}

process.on('SIGUSR2', () => {
	decoys(N, SIZE);
	console.log('HELD');
	setTimeout(() => {
		held = null;
		global.gc();
		global.gc();
		setTimeout(() => {
			keepBuffers(N, SIZE);
			console.log('EXPECT keepBuffers ' + N * SIZE + ' ' + N);
			console.log('EXPECT_DECOYS ' + N * SIZE + ' ' + N);
			console.log('DONE');
		}, HOLD_MS);
	}, HOLD_MS);
});
console.log('READY ' + process.pid);
setInterval(() => {}, 1 << 30);
