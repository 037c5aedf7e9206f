-- Prompt search that always answers: each prompt's text-search vector stored beside it.
--
-- With only an expression index, a search the planner misjudged (an absent word, a rare word
-- beside common ones: the default guess for a lexeme it has no statistics on is 0.5 %) walked
-- created_at backwards running to_tsvector on every row, and stopped at the 5 s guard with no
-- results. The panel now chooses the path itself (tracking/search.py): it asks the text index
-- for the matches first, and walks the newest rows only when there are many; both need the
-- vector stored, so that checking a row costs a comparison, not a parse of its prompt.
--
-- Adding a stored generated column rewrites the table (about N minutes at 10M rows, under an
-- exclusive lock; see docs/OPERATIONS.md): admissions wait or, past their timeout, go to the
-- journal and are replayed when it ends.

-- The expression index goes first, so that the rewrite does not rebuild it.
DROP INDEX video_requests_prompt_fts_idx;
ALTER TABLE video_requests
    ADD COLUMN prompt_tsv tsvector NOT NULL GENERATED ALWAYS AS (to_tsvector('english'::regconfig, prompt)) STORED;
-- Lexeme statistics the planner uses for the ordered walk's filters and joins: ten times the
-- default, as the expression index had.
ALTER TABLE video_requests ALTER COLUMN prompt_tsv SET STATISTICS 1000;
CREATE INDEX video_requests_prompt_tsv_idx ON video_requests USING gin (prompt_tsv);
ANALYZE video_requests (prompt_tsv);

COMMENT ON COLUMN video_requests.prompt_tsv IS 'to_tsvector(''english'', prompt), stored for the moderation search (GIN-indexed).';
