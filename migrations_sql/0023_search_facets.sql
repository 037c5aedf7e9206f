-- A common word that the filters leave few or no rows of, answered from the text index alone.
--
-- The text index (0017) knows which prompts hold a word, not their status, resolution or date:
-- "lighthouse" (626,000 prompts at 10M rows) with status failed and resolution 1080p (none of
-- them) had every failed lighthouse request read from the table to check its resolution
-- (33,000 pages, 0.6 s), and without the status filter all 626,000 of them (seconds). Here the
-- text index gets a second column: the request's facets, one lexeme per filter of the panel's
-- request list ("status failed", "resolution 1080p", "day 20430", ...). A search with filters
-- also asks for their facets (tracking/search_facets.py), and GIN intersects the word's
-- entries with the facets' inside the index: an empty intersection reads no table page.
--
-- The index replaces video_requests_prompt_tsv_idx (its first column is the same): a write adds
-- ten small entries more to the one GIN index it already updates, and no update that was HOT
-- stops being HOT (every column here is already in an index or an index's predicate).
-- Its build blocks writes to video_requests (minutes at 10M rows); docs/OPERATIONS.md shows how
-- to build it beforehand without blocking, which makes the CREATE below a no-op.

-- The facets as lexemes. Every one holds a space, which no lexeme of a prompt can (the parser
-- splits words there), and the same names as the admin's filters. The day is the UTC day
-- (days since 2000-01-01), so that a date range asks for its days.
-- An SQL function of one expression: the planner inlines it, in the index as in a query.
CREATE OR REPLACE FUNCTION request_facets(
    status text, review_status text, resolution text, aspect_ratio text, duration_seconds smallint,
    source text, guild_id bigint, safety_filtered_count integer, delivered_at timestamptz, created_at timestamptz
) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_to_tsvector(ARRAY[
        'status ' || status,
        'review ' || review_status,
        'resolution ' || resolution,
        'aspect ' || aspect_ratio,
        'duration ' || duration_seconds::text,
        'source ' || source,
        'guild ' || coalesce(guild_id::text, 'none'),
        CASE WHEN safety_filtered_count > 0 THEN 'safety yes' ELSE 'safety no' END,
        CASE WHEN delivered_at IS NULL THEN 'delivered no' ELSE 'delivered yes' END,
        'day ' || floor(extract(epoch FROM created_at - timestamptz '2000-01-01 00:00:00+00') / 86400)::bigint::text])
$$;

CREATE INDEX IF NOT EXISTS video_requests_search_idx ON video_requests USING gin (
    prompt_tsv,
    request_facets(status, review_status, resolution, aspect_ratio, duration_seconds, source, guild_id,
                   safety_filtered_count, delivered_at, created_at));
-- Statistics on the facets (the planner's estimate of a filtered search's index scan).
ANALYZE video_requests;
-- Last: dropping an index locks the table against reads too, until the migration commits.
DROP INDEX IF EXISTS video_requests_prompt_tsv_idx;

COMMENT ON FUNCTION request_facets(text, text, text, text, smallint, text, bigint, integer, timestamptz, timestamptz) IS
    'A request''s filter values as lexemes ("status failed", "day 20430"), the second column of the search index.';
