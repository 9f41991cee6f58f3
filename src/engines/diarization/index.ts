export { createDiarizer, diarizerFromModels, DIARIZATION_PARAMS, type CreateDiarizerOptions, type DiarizeOptions, type Diarizer, type SpeakerTurn } from './diarizer.ts';
export { assignSpeakers, speakerAt } from './assign.ts';
export { diarizationErrorRate, parseRttm, toRttm, type DerResult, type Turn } from './der.ts';
export { applyCmn, kaldiFbank, WESPEAKER_FBANK, type Fbank } from './fbank.ts';
export { clusterEmbeddings, type ClusterOptions } from './clustering.ts';
export { PyannoteSegmenter, powersetClasses, powersetToMultilabel, segmentationFrameCount, segmentationFrameTime, segmentationGeometry } from './segmentation.ts';
export { WespeakerEmbedder } from './wespeaker.ts';
