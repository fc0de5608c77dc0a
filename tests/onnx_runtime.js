// onnx_runtime.js - run an ONNX model exported by `backprop export` in ONNX Runtime
// (onnxruntime-node, CPU) on the first COUNT images of an IDX image file, as one batch, and
// write what it outputs as CSV: index,predicted,out0,...  (predicted: the first largest output,
// as backprop counts a sample right). tests/test_onnx.py compares it with `backprop predict`.
//
//     node onnx_runtime.js MODEL.onnx IMAGES-IDX COUNT SCALE OUT.csv
//
// Each pixel byte becomes the float32 byte * SCALE, rounded once, as backprop's gather computes
// it (the scale is the model's input_scale metadata, which the caller reads). NODE_PATH must
// reach onnxruntime-node (scripts/install-onnxruntime.sh).
'use strict';

const fs = require('fs');
const zlib = require('zlib');
const ort = require('onnxruntime-node');

function fail(message) {
    process.stderr.write(`onnx_runtime.js: ${message}\n`);
    process.exit(1);
}

// An IDX image file (magic 0x00000803, big-endian count, rows, cols, then the bytes); gzip when
// its name says so.
function readImages(path, count) {
    let bytes = fs.readFileSync(path);
    if (path.endsWith('.gz'))
        bytes = zlib.gunzipSync(bytes);
    if (bytes.length < 16 || bytes.readUInt32BE(0) !== 0x803)
        fail(`${path}: not an IDX image file`);
    const n = bytes.readUInt32BE(4), rows = bytes.readUInt32BE(8), cols = bytes.readUInt32BE(12);
    if (count > n)
        fail(`${path} holds ${n} images, ${count} asked for`);
    if (bytes.length < 16 + n * rows * cols)
        fail(`${path} is truncated`);
    return {pixels: bytes.subarray(16, 16 + count * rows * cols), width: rows * cols};
}

async function main() {
    const [model, images, countText, scaleText, out] = process.argv.slice(2);
    if (!out)
        fail('usage: node onnx_runtime.js MODEL.onnx IMAGES-IDX COUNT SCALE OUT.csv');
    const count = Number(countText), scale = Math.fround(Number(scaleText));
    if (!Number.isInteger(count) || count < 1 || !(scale > 0))
        fail(`bad COUNT '${countText}' or SCALE '${scaleText}'`);
    const {pixels, width} = readImages(images, count);

    const x = new Float32Array(count * width);
    for (let k = 0; k < x.length; k++)
        x[k] = pixels[k] * scale; // an exact product in double, rounded once to float32

    const session = await ort.InferenceSession.create(model, {executionProviders: ['cpu']});
    if (session.inputNames.join() !== 'input' || session.outputNames.join() !== 'output')
        fail(`inputs [${session.inputNames}] and outputs [${session.outputNames}], expected ` +
             '[input] and [output]');
    const result = await session.run({input: new ort.Tensor('float32', x, [count, width])});
    const y = result.output;
    if (y.dims.length !== 2 || y.dims[0] !== count)
        fail(`output of shape [${y.dims}] for ${count} samples`);
    const classes = y.dims[1];

    const lines = [];
    for (let i = 0; i < count; i++) {
        const row = y.data.subarray(i * classes, (i + 1) * classes);
        let best = 0;
        for (let k = 1; k < classes; k++)
            if (row[k] > row[best])
                best = k;
        // A float32 widened to a double prints exactly in JavaScript's shortest form.
        lines.push([i, best, ...Array.from(row, v => String(v))].join(','));
    }
    fs.writeFileSync(out, lines.join('\n') + '\n');
    process.stdout.write(`onnx_runtime.js: ${count} samples of ${width} inputs, ${classes} ` +
                         `outputs each, ONNX Runtime ${ort.env.versions.node || ''}\n`);
}

main().catch(e => fail(e && e.stack ? e.stack : String(e)));
