-- Phrase search through the index: the pairs of words that stand side by side in a prompt.
--
-- The text index (0017) knows which prompts hold a word, not where: a phrase ("forest fox")
-- whose words often meet apart but never side by side had every prompt holding both checked
-- row by row (62,578 rows, 0.8 s at 10M). Indexed pairs of neighbouring lexemes answer it from
-- the index: a prompt matches the phrase 'a' <-> 'b' <-> 'c' only if it holds the pairs
-- "a b" and "b c", so the search asks for those pairs as well (tracking/search.py), and only
-- the prompts that hold them are checked.
--
-- An expression index, not a column: nothing is stored in the table and nothing rewritten. Its
-- build blocks writes to video_requests (minutes at 10M rows); docs/OPERATIONS.md shows how to
-- build it beforehand without blocking (CREATE INDEX CONCURRENTLY), which makes the statements
-- below no-ops. Every write of a row computes its pairs once more for the index (about 25 us).

-- "a b" for each lexeme a immediately followed by lexeme b (positions p and p + 1). A stop word
-- leaves a gap in the positions, so no pair spans it, as no <-> in a phrase query does.
CREATE OR REPLACE FUNCTION prompt_word_pairs(v tsvector) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    -- PL/pgSQL keeps this query's plan for the session; as an SQL function it would be planned
    -- again by every statement that writes a row (0.14 ms against 0.03 ms a call).
    RETURN (
        SELECT COALESCE(array_to_tsvector(array_agg(DISTINCT a.lexeme || ' ' || b.lexeme)), ''::tsvector)
        FROM (SELECT u.lexeme, p FROM unnest(v) AS u, unnest(u.positions) AS p) AS a
        JOIN (SELECT u.lexeme, p FROM unnest(v) AS u, unnest(u.positions) AS p) AS b ON b.p = a.p + 1);
END;
$$;

CREATE INDEX IF NOT EXISTS video_requests_prompt_pairs_idx ON video_requests USING gin (prompt_word_pairs(prompt_tsv));
-- Statistics on the pairs, so that the planner knows a pair that never occurs as rare.
ALTER INDEX video_requests_prompt_pairs_idx ALTER COLUMN 1 SET STATISTICS 1000;
ANALYZE video_requests;

COMMENT ON FUNCTION prompt_word_pairs(tsvector) IS
    'The neighbouring lexeme pairs of a text-search vector ("a b"), GIN-indexed for phrase search.';
