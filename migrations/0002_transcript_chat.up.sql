-- Transcript chat (issue 9): segment embeddings cached per transcript and embedding model, and the
-- turns of each chat session. Plain real[] vectors (no pgvector needed): cosine ranking happens in the
-- application over one transcript's segments. Runs unchanged on PostgreSQL 15+ and PGlite.
--
-- No foreign keys to transcripts (a TRUNCATE of transcripts alone must keep working); a trigger
-- removes a transcript's embeddings and chat turns when the transcript row is deleted (also when its
-- account is deleted and the transcripts go by cascade).

CREATE TABLE transcript_segment_embeddings (
  transcript_id uuid NOT NULL,
  model         text NOT NULL,
  segment_order integer NOT NULL CHECK (segment_order >= 0),
  embedding     real[] NOT NULL,
  PRIMARY KEY (transcript_id, model, segment_order)
);

CREATE TABLE transcript_chat_turns (
  id            bigserial PRIMARY KEY,
  session_id    uuid NOT NULL,
  transcript_id uuid NOT NULL,
  owner_id      uuid NOT NULL,
  role          text NOT NULL CHECK (role IN ('user', 'assistant')),
  content       text NOT NULL,
  created_at    timestamptz NOT NULL
);
CREATE INDEX transcript_chat_turns_session_idx ON transcript_chat_turns (session_id, id);
CREATE INDEX transcript_chat_turns_transcript_idx ON transcript_chat_turns (transcript_id);

CREATE FUNCTION transcript_chat_cleanup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM transcript_segment_embeddings WHERE transcript_id = OLD.id;
  DELETE FROM transcript_chat_turns WHERE transcript_id = OLD.id;
  RETURN OLD;
END;
$$;

CREATE TRIGGER transcripts_chat_cleanup AFTER DELETE ON transcripts
  FOR EACH ROW EXECUTE FUNCTION transcript_chat_cleanup();
