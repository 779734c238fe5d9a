/** Generated studies come from the modality simulator (src/simulators/modality/study.ts). */
export * from '../../src/simulators/modality/study.js';
