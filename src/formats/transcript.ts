/** The transcript shapes of the public API (POST /v1/transcribe response). */
export interface Word {
  word: string;
  start: number;
  end: number;
  probability?: number;
  speaker?: string;
}

export interface Segment {
  start: number;
  end: number;
  text: string;
  speaker?: string | null;
  confidence: number;
  words: Word[];
}

export interface Transcript {
  text: string;
  language: string;
  duration: number;
  segments: Segment[];
  speakers: string[];
}
