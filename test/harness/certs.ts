/** The throw-away PKI lives with the demo network (src/demo/pki.ts); tests use the same one. */
export * from '../../src/demo/pki.js';
