CREATE INDEX IF NOT EXISTS video_requests_prompt_tsv_idx ON video_requests USING gin (prompt_tsv);
DROP INDEX video_requests_search_idx;
DROP FUNCTION request_facets(text, text, text, text, smallint, text, bigint, integer, timestamptz, timestamptz);
