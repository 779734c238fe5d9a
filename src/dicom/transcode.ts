import { createRequire } from 'node:module';
import path from 'node:path';
import { UNCOMPRESSED_SYNTAXES } from './part10.js';

/**
 * Decoding of compressed pixel data (JPEG baseline/lossless, JPEG-LS, JPEG 2000, RLE, …) with dcmjs-codecs'
 * WebAssembly codecs, for rendering and for clients that ask for a native transfer syntax. Instances are
 * stored as received; this runs only on request, one instance at a time.
 */
const require = createRequire(import.meta.url);
let ready: Promise<any> | undefined;

function codecs(): Promise<any> {
  ready ??= (async () => {
    const mod = require('dcmjs-codecs');
    const wasm = path.join(path.dirname(require.resolve('dcmjs-codecs')), 'dcmjs-native-codecs.wasm');
    await mod.NativeCodecs.initializeAsync({ webAssemblyModulePathOrUrl: wasm });
    mod.log?.setLevel?.('error');
    return mod;
  })();
  return ready;
}

export class TranscodeError extends Error {
  override name = 'TranscodeError';
}

/** A Part 10 file in any supported syntax → the same instance as Part 10 in a native little-endian syntax. */
export async function toNative(part10: Buffer, target = '1.2.840.10008.1.2.1'): Promise<Buffer> {
  if (!UNCOMPRESSED_SYNTAXES.has(target)) throw new TranscodeError(`${target} is not a native syntax`);
  const { Transcoder } = await codecs();
  try {
    // dcmjs-codecs wants an ArrayBuffer of its own (a Node Buffer is taken for an element map).
    const t = new Transcoder(part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.byteLength));
    t.transcode(target);
    return Buffer.from(t.getDicomPart10());
  } catch (e) {
    throw new TranscodeError(`cannot decode this instance: ${(e as Error).message}`);
  }
}
