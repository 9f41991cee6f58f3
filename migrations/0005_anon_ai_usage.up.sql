-- Anonymous AI calls (summarize, analyze, generate, translate, chat, embed, tts, enhance-audio) per
-- client address and UTC day, counted apart from anonymous transcriptions (anon_daily_usage) so
-- that each has its own allowance (ANON_DAILY_AI_LIMIT). Incremented atomically like
-- anon_daily_usage. Runs unchanged on PostgreSQL 15+ and PGlite.

CREATE TABLE anon_daily_ai_usage (
  ip    text NOT NULL,
  day   date NOT NULL,
  count integer NOT NULL CHECK (count >= 0),
  PRIMARY KEY (ip, day)
);
