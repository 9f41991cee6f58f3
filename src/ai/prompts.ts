/** Prompts and output schemas of the AI endpoints. Kept in one place: changing them changes behaviour, not shape. */
import { arr, obj, oneOf, str } from './structured.ts';
import type { JsonSchema } from '../engines/llm/chat-backend.ts';

export const SUMMARY_STYLES = ['brief', 'detailed', 'action_items', 'bullet_points'] as const;
export type SummaryStyle = (typeof SUMMARY_STYLES)[number];

export const SUMMARY_INSTRUCTIONS: Record<SummaryStyle, string> = {
  brief: 'Write a brief summary of the transcript in 2-4 sentences. Only state what the transcript says.',
  detailed: 'Write a detailed summary of the transcript: the main points, decisions, numbers and who said what, in a few paragraphs.',
  action_items: 'List the action items agreed in the transcript, one per line as "- [owner] task (due date)", leaving out unknown owners or dates. If there are none, say so.',
  bullet_points: 'Summarise the transcript as 3-10 short bullet points, one per line starting with "- ".',
};

export const MAP_INSTRUCTION =
  'This is one part of a longer transcript. Write concise notes of everything important in this part (facts, decisions, action items, names, numbers). Notes only, no preamble.';

export const SYSTEM_TRANSCRIPT = 'You are an assistant that works on transcripts of recorded speech. Transcripts may contain recognition errors. Never invent facts.';

export const ANALYSIS_TYPES = ['sentiment', 'topics', 'entities', 'action_items', 'questions', 'pii_redact'] as const;
export type AnalysisType = (typeof ANALYSIS_TYPES)[number];

export const ENTITY_TYPES = ['person', 'organization', 'location', 'date', 'product', 'event', 'other'] as const;

export const ANALYSIS_SCHEMAS: Record<Exclude<AnalysisType, 'pii_redact'>, JsonSchema> = {
  sentiment: obj({
    label: oneOf(['positive', 'neutral', 'negative', 'mixed']),
    confidence: oneOf(['low', 'medium', 'high']),
    explanation: str(300),
  }),
  topics: obj({ topics: arr(obj({ topic: str(80), summary: str(200) }), 8) }),
  entities: obj({ entities: arr(obj({ text: str(80), type: oneOf(ENTITY_TYPES) }), 25) }),
  action_items: obj({ action_items: arr(obj({ task: str(200), owner: str(60), due: str(40) }), 15) }),
  questions: obj({ questions: arr(obj({ question: str(200), answered: { type: 'boolean' }, answer: str(200) }), 15) }),
};

export const ANALYSIS_INSTRUCTIONS: Record<AnalysisType, string> = {
  sentiment: 'Classify the overall sentiment of the transcript. Answer in JSON with label, confidence and a one-sentence explanation.',
  topics: 'List the main topics of the transcript (at most 8), each with a one-sentence summary. Answer in JSON.',
  entities: 'Extract the named entities of the transcript (people, organisations, locations, dates, products, events). Answer in JSON, each entity once.',
  action_items: 'Extract the action items: the task, its owner ("" when unknown) and its due date ("" when unknown). Answer in JSON.',
  questions: 'List the questions asked in the transcript, whether they were answered, and the answer ("" when unanswered). Answer in JSON.',
  pii_redact: 'Extract the names of people mentioned in the transcript. Answer in JSON.',
};

export const PERSON_NAMES_SCHEMA: JsonSchema = obj({ names: arr(str(60), 25) });

export const GENERATE_TYPES = ['blog_post', 'social_media', 'newsletter', 'key_quotes', 'show_notes', 'meeting_notes', 'study_guide', 'flashcards', 'quiz', 'chapter_markers'] as const;
export type GenerateType = (typeof GENERATE_TYPES)[number];
export type StructuredGenerateType = 'key_quotes' | 'flashcards' | 'quiz' | 'chapter_markers';

export const GENERATE_SCHEMAS: Record<StructuredGenerateType, JsonSchema> = {
  key_quotes: obj({ quotes: arr(obj({ quote: str(300), speaker: str(60), context: str(200) }), 10) }),
  flashcards: obj({ flashcards: arr(obj({ front: str(200), back: str(300) }), 15) }),
  quiz: obj({
    questions: arr(obj({ question: str(200), options: { type: 'array', items: str(120), minItems: 4, maxItems: 4 }, answer: oneOf(['A', 'B', 'C', 'D']), explanation: str(200) }), 10),
  }),
  chapter_markers: obj({ chapters: arr(obj({ title: str(80), starts_with: str(80) }), 15) }),
};

export const GENERATE_INSTRUCTIONS: Record<GenerateType, string> = {
  blog_post: 'Write a blog post in Markdown based on the transcript: a title, an introduction, sections with headings and a conclusion.',
  social_media: 'Write three short social media posts about the transcript (one for X/Twitter under 280 characters, one for LinkedIn, one for Instagram with hashtags), separated by blank lines.',
  newsletter: 'Write a newsletter issue in Markdown based on the transcript: a subject line, a short intro, the key points and a closing.',
  key_quotes: 'Pick the most quotable sentences of the transcript, verbatim, with the speaker ("" when unknown) and one line of context. Answer in JSON.',
  show_notes: 'Write podcast show notes in Markdown: a one-paragraph summary, the topics covered, and the people and resources mentioned.',
  meeting_notes: 'Write meeting notes in Markdown: attendees (when named), agenda/topics, decisions, action items with owners, open questions.',
  study_guide: 'Write a study guide in Markdown: the key concepts with short explanations, important terms, and review questions.',
  flashcards: 'Make study flashcards from the transcript: a question or term on the front, the answer or definition on the back. Answer in JSON.',
  quiz: 'Write multiple-choice quiz questions about the transcript, each with four options, the letter of the correct one and a short explanation. Answer in JSON.',
  chapter_markers: 'Split the transcript into chapters. For each chapter give a short title and the first words of the chapter copied exactly from the transcript (starts_with). Answer in JSON.',
};
